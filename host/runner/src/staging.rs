//! Staging inputs into a task's workspace and outputs out of it, for inline content and
//! `file://` URLs inside the operator's allowed directories.
//!
//! Two boundaries are enforced here, at run time, in addition to validation at submit
//! time: host paths are canonicalised (so a symlink cannot lead outside the allowed
//! roots), and files taken from the workspace must resolve inside the workspace (so an
//! executor cannot plant a symlink that makes the host copy its own files out).

use crate::workspace::{Mount, Workspace};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use tessera_core::TaskRecord;
use tessera_core::staging::{Filers, scheme_of};
use tessera_core::tes::{FileType, OutputFileLog};
use tessera_core::validate::{file_url_path, normalise};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    pub files: u64,
    pub bytes: u64,
}

impl Staged {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// Create the workspace, the host side of every mount, and stage every input.
/// Runs blocking file I/O; call it from `spawn_blocking`.
pub fn stage_in(
    task: &TaskRecord,
    ws: &Workspace,
    mounts: &[Mount],
    roots: &[PathBuf],
    filers: &dyn Filers,
) -> Result<Staged, String> {
    let fs_root = ws.root.join("fs");
    fs::create_dir_all(&fs_root).map_err(|e| format!("creating the task workspace: {e}"))?;
    for m in mounts.iter().filter(|m| m.is_dir) {
        let host = ws.host_path(&m.container);
        fs::create_dir_all(&host)
            .map_err(|e| format!("creating the workspace directory for {}: {e}", m.container))?;
    }

    let mut staged = Staged::default();
    for (i, input) in task.inputs().iter().enumerate() {
        let dest = ws.host_path(&input.path);
        ensure_parent(&dest, &fs_root).map_err(|e| format!("inputs[{i}] {}: {e}", input.path))?;
        match input.content.as_deref().filter(|c| !c.is_empty()) {
            Some(content) => {
                write_new(&dest, content.as_bytes())
                    .map_err(|e| format!("inputs[{i}] {}: writing content: {e}", input.path))?;
                staged.add(content.len() as u64);
            }
            None if !is_file_url(input.url.as_deref().unwrap_or_default()) => {
                let url = input.url.as_deref().unwrap_or_default();
                let want_dir = input.r#type == Some(FileType::Directory);
                let files = filers
                    .stage_in(&task.id, &fs_root, url, &input.path, want_dir)
                    .map_err(|e| format!("inputs[{i}] {url}: {e}"))?;
                for f in files {
                    staged.add(f.size);
                }
            }
            None => {
                let url = input.url.as_deref().unwrap_or_default();
                let src =
                    allowed_host_path(url, roots).map_err(|e| format!("inputs[{i}] {url}: {e}"))?;
                let meta = fs::metadata(&src).map_err(|e| format!("inputs[{i}] {url}: {e}"))?;
                let want_dir = input.r#type == Some(FileType::Directory);
                if want_dir != meta.is_dir() {
                    return Err(format!(
                        "inputs[{i}] {url}: is a {}, but the input's type is {}",
                        if meta.is_dir() { "directory" } else { "file" },
                        if want_dir { "DIRECTORY" } else { "FILE" }
                    ));
                }
                if want_dir {
                    copy_tree(&src, &dest, &mut staged)
                        .map_err(|e| format!("inputs[{i}] {url}: {e}"))?;
                } else {
                    let n = copy_regular_in(&src, &dest)
                        .map_err(|e| format!("inputs[{i}] {url}: {e}"))?;
                    staged.add(n);
                }
            }
        }
    }
    // File mounts need their host file to exist, even for outputs not yet written.
    for m in mounts.iter().filter(|m| !m.is_dir) {
        let host = ws.host_path(&m.container);
        if fs::symlink_metadata(&host).is_err() {
            ensure_parent(&host, &fs_root).map_err(|e| format!("{}: {e}", m.container))?;
            fs::File::create(&host).map_err(|e| format!("{}: {e}", m.container))?;
        }
    }
    Ok(staged)
}

/// Copy every output out of the workspace. Returns the output file logs and, when some
/// output could not be staged, the reasons (the caller decides the task's state).
pub fn stage_out(
    task: &TaskRecord,
    ws: &Workspace,
    roots: &[PathBuf],
    filers: &dyn Filers,
) -> (Vec<OutputFileLog>, Staged, Vec<String>) {
    let fs_root = ws.root.join("fs");
    let mut logs = Vec::new();
    let mut staged = Staged::default();
    let mut errors = Vec::new();
    for (i, output) in task.outputs().iter().enumerate() {
        if !is_file_url(&output.url) {
            if let Err(e) =
                stage_out_by_filer(&task.id, output, &fs_root, filers, &mut logs, &mut staged)
            {
                errors.push(format!("outputs[{i}] {}: {e}", output.path));
            }
            continue;
        }
        let dest_root = match allowed_dest_path(&output.url, roots) {
            Ok(p) => p,
            Err(e) => {
                errors.push(format!("outputs[{i}] {}: {e}", output.url));
                continue;
            }
        };
        let result = if output.path.contains(['*', '?', '[']) {
            stage_wildcard(
                output,
                &fs_root,
                ws,
                &dest_root,
                roots,
                &mut logs,
                &mut staged,
            )
        } else {
            let src = ws.host_path(&output.path);
            let want_dir = output.r#type == Some(FileType::Directory);
            copy_out(
                &src,
                &fs_root,
                &output.path,
                &dest_root,
                &output.url,
                want_dir,
                roots,
                &mut logs,
                &mut staged,
            )
        };
        if let Err(e) = result {
            errors.push(format!("outputs[{i}] {}: {e}", output.path));
        }
    }
    (logs, staged, errors)
}

#[allow(clippy::too_many_arguments)]
fn copy_out(
    src: &Path,
    fs_root: &Path,
    container_path: &str,
    dest: &Path,
    url: &str,
    want_dir: bool,
    roots: &[PathBuf],
    logs: &mut Vec<OutputFileLog>,
    staged: &mut Staged,
) -> Result<(), String> {
    // The parent may be any directory inside the workspace; the path itself must not
    // be a link (executors control this tree, so nothing in it is followed).
    let parent = src.parent().ok_or("has no parent directory")?;
    let real = inside(parent, fs_root)?.join(src.file_name().ok_or("has no file name")?);
    let meta = fs::symlink_metadata(&real).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "the executors did not create it".to_string(),
        _ => e.to_string(),
    })?;
    let kind = |m: &fs::Metadata| {
        if m.file_type().is_symlink() {
            "symbolic link"
        } else if m.is_dir() {
            "directory"
        } else if m.is_file() {
            "file"
        } else {
            "special file"
        }
    };
    if (want_dir && !meta.is_dir()) || (!want_dir && !meta.is_file()) {
        return Err(format!(
            "is a {}, but the output's type is {}",
            kind(&meta),
            if want_dir { "DIRECTORY" } else { "FILE" }
        ));
    }
    if !want_dir {
        let n = copy_regular(&real, dest, roots)?;
        staged.add(n);
        logs.push(OutputFileLog {
            url: url.to_string(),
            path: normalise(container_path),
            size_bytes: n.to_string(),
        });
        return Ok(());
    }
    // Directory outputs are flattened into one log entry per file. Links and special
    // files inside are refused rather than followed (no loops, no escapes).
    let mut stack = vec![(real, String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(entry.path()).map_err(|e| e.to_string())?;
            if meta.is_dir() {
                stack.push((entry.path(), child_rel));
            } else if meta.is_file() {
                let n = copy_regular(&entry.path(), &dest.join(&child_rel), roots)?;
                staged.add(n);
                logs.push(OutputFileLog {
                    url: join_url(url, &child_rel),
                    path: normalise(&format!("{container_path}/{child_rel}")),
                    size_bytes: n.to_string(),
                });
            } else {
                return Err(format!(
                    "{child_rel} is a {}; outputs copy only regular files and directories",
                    kind(&meta)
                ));
            }
        }
    }
    Ok(())
}

fn stage_wildcard(
    output: &tessera_core::tes::Output,
    fs_root: &Path,
    ws: &Workspace,
    dest_root: &Path,
    roots: &[PathBuf],
    logs: &mut Vec<OutputFileLog>,
    staged: &mut Staged,
) -> Result<(), String> {
    for (host, container_path, pruned) in wildcard_matches(output, fs_root)? {
        let url = join_url(&output.url, &pruned);
        let is_dir = fs::metadata(inside(&host, fs_root)?)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        copy_out(
            &ws.host_path(&container_path),
            fs_root,
            &container_path,
            &dest_root.join(&pruned),
            &url,
            is_dir,
            roots,
            logs,
            staged,
        )?;
    }
    Ok(())
}

fn is_file_url(url: &str) -> bool {
    scheme_of(url).is_none_or(|s| s == "file")
}

/// An output to a URL a filer plugin serves: one call for a FILE or DIRECTORY, one per
/// match for a wildcard (each to the URL plus its path after `path_prefix`).
fn stage_out_by_filer(
    task_id: &str,
    output: &tessera_core::tes::Output,
    fs_root: &Path,
    filers: &dyn Filers,
    logs: &mut Vec<OutputFileLog>,
    staged: &mut Staged,
) -> Result<(), String> {
    let mut calls: Vec<(String, String, bool)> = Vec::new();
    if output.path.contains(['*', '?', '[']) {
        for (host, container_path, pruned) in wildcard_matches(output, fs_root)? {
            // Never follow a link the executor left: the filer's workspace access
            // refuses links anyway; a directory match stages its tree.
            let is_dir = fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir());
            calls.push((container_path, join_url(&output.url, &pruned), is_dir));
        }
    } else {
        calls.push((
            output.path.clone(),
            output.url.clone(),
            output.r#type == Some(FileType::Directory),
        ));
    }
    for (path, url, is_dir) in calls {
        for f in filers.stage_out(task_id, fs_root, &path, &url, is_dir)? {
            staged.add(f.size);
            logs.push(OutputFileLog {
                url: f.url,
                path: f.path,
                size_bytes: f.size.to_string(),
            });
        }
    }
    Ok(())
}

/// What a wildcard output matches in the workspace, sorted: each match's host path, its
/// container path, and that path after `path_prefix` (where it goes under the URL).
fn wildcard_matches(
    output: &tessera_core::tes::Output,
    fs_root: &Path,
) -> Result<Vec<(PathBuf, String, String)>, String> {
    let prefix = output.path_prefix.as_deref().unwrap_or("/");
    let pattern = format!(
        "{}{}",
        glob::Pattern::escape(&fs_root.to_string_lossy()),
        normalise(&output.path)
    );
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let matches = glob::glob_with(&pattern, options).map_err(|e| format!("bad pattern: {e}"))?;
    let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
    found.sort();
    found
        .into_iter()
        .map(|host| {
            let rel = host
                .strip_prefix(fs_root)
                .map_err(|_| "match outside the workspace".to_string())?;
            let container_path = format!("/{}", rel.to_string_lossy());
            let pruned = container_path
                .strip_prefix(prefix)
                .unwrap_or(&container_path)
                .trim_start_matches('/')
                .to_string();
            Ok((host, container_path, pruned))
        })
        .collect()
}

fn join_url(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), rel)
    }
}

/// Resolve `path` (which must exist) and require it to stay inside `root`.
fn inside(path: &Path, root: &Path) -> Result<PathBuf, String> {
    let real = fs::canonicalize(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => "the executors did not create it".to_string(),
        _ => e.to_string(),
    })?;
    let root = fs::canonicalize(root).map_err(|e| e.to_string())?;
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err("is a link that leads outside the task's workspace; refusing to follow it".into())
    }
}

/// The host path of a `file://` source, resolved and checked against the roots.
fn allowed_host_path(url: &str, roots: &[PathBuf]) -> Result<PathBuf, String> {
    let path = file_url_path(url)?.ok_or_else(|| "unsupported URL scheme".to_string())?;
    let real = fs::canonicalize(&path).map_err(|e| e.to_string())?;
    if roots.iter().any(|r| real.starts_with(r)) {
        Ok(real)
    } else {
        Err("resolves outside the directories this server allows".into())
    }
}

/// The host path of a `file://` destination (lexically inside the roots; the real check
/// happens in `copy_to_dest` once parent directories exist).
fn allowed_dest_path(url: &str, roots: &[PathBuf]) -> Result<PathBuf, String> {
    let path = file_url_path(url)?.ok_or_else(|| "unsupported URL scheme".to_string())?;
    if roots.iter().any(|r| path.starts_with(r)) {
        Ok(path)
    } else {
        Err("is outside the directories this server allows".into())
    }
}

/// Copy one regular file to `dest` (inside the roots), safely: the source is opened
/// without following links and without blocking (a FIFO would otherwise hang us), and
/// must then be a regular file; the destination is created without following a link;
/// modes are not carried over (no setuid files appear on the host).
fn copy_regular(src: &Path, dest: &Path, roots: &[PathBuf]) -> Result<u64, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut input = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_NONBLOCK)
        .open(src)
        .map_err(|e| format!("{}: {e}", src.display()))?;
    let meta = input.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", src.display()));
    }
    let parent = dest.parent().ok_or("destination has no parent directory")?;
    fs::create_dir_all(parent).map_err(|e| format!("creating {}: {e}", parent.display()))?;
    let real_parent = fs::canonicalize(parent).map_err(|e| e.to_string())?;
    if !roots.iter().any(|r| real_parent.starts_with(r)) {
        return Err(format!(
            "{} resolves outside the allowed directories",
            dest.display()
        ));
    }
    let target = real_parent.join(dest.file_name().ok_or("destination has no file name")?);
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc_flags::O_NOFOLLOW)
        .open(&target)
        .map_err(|e| format!("writing {}: {e}", target.display()))?;
    io::copy(&mut input, &mut output).map_err(|e| format!("copying to {}: {e}", target.display()))
}

/// The two open(2) flags we need, without a libc dependency (values for Linux).
mod libc_flags {
    pub const O_NONBLOCK: i32 = 0o4000;
    pub const O_NOFOLLOW: i32 = 0o400000;
}

fn copy_tree(src: &Path, dest: &Path, staged: &mut Staged) -> Result<(), String> {
    fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    for entry in fs::read_dir(src).map_err(|e| e.to_string())? {
        let entry = entry.map_err(|e| e.to_string())?;
        let meta = fs::symlink_metadata(entry.path()).map_err(|e| e.to_string())?;
        let target = dest.join(entry.file_name());
        if meta.is_dir() {
            copy_tree(&entry.path(), &target, staged)?;
        } else if meta.is_file() {
            staged.add(copy_regular_in(&entry.path(), &target)?);
        } else {
            return Err(format!(
                "{} is not a regular file or directory; directory inputs copy only those",
                entry.path().display()
            ));
        }
    }
    Ok(())
}

/// Copy a regular file from an allowed directory into the workspace (no container runs
/// while inputs are staged, so the workspace side cannot change under us).
fn copy_regular_in(src: &Path, dest: &Path) -> Result<u64, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut input = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_flags::O_NOFOLLOW | libc_flags::O_NONBLOCK)
        .open(src)
        .map_err(|e| format!("{}: {e}", src.display()))?;
    if !input.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err(format!("{} is not a regular file", src.display()));
    }
    if fs::symlink_metadata(dest).is_ok() {
        fs::remove_file(dest).map_err(|e| e.to_string())?;
    }
    let mut output = fs::File::create(dest).map_err(|e| e.to_string())?;
    io::copy(&mut input, &mut output).map_err(|e| e.to_string())
}

/// Make `path`'s parent directories inside `root`, refusing symlinked parents.
fn ensure_parent(path: &Path, root: &Path) -> Result<(), String> {
    let parent = path.parent().ok_or("no parent directory")?;
    fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    inside(parent, root).map(|_| ())
}

/// Write a file the host owns, replacing (not following) whatever is at `path`.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(path) {
        if meta.is_dir() {
            return Err(io::Error::other("a directory is in the way"));
        }
        fs::remove_file(path)?;
    }
    fs::write(path, bytes)
}

/// Put an executor's captured stdout/stderr (kept outside the container-visible tree
/// while it ran) at its container path. Called only once the executor's container has
/// stopped, so nothing can swap the path while we resolve it; the final component is
/// opened without following a link.
pub fn place_capture(ws: &Workspace, container_path: &str, captured: &Path) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dest = ws.host_path(container_path);
    ensure_parent(&dest, &ws.root.join("fs"))?;
    if fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_file()) {
        fs::remove_file(&dest).map_err(|e| format!("{container_path}: {e}"))?;
    }
    let mut output = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc_flags::O_NOFOLLOW)
        .open(&dest)
        .map_err(|e| format!("{container_path}: {e}"))?;
    let mut input = fs::File::open(captured).map_err(|e| e.to_string())?;
    io::copy(&mut input, &mut output)
        .map(|_| ())
        .map_err(|e| format!("{container_path}: {e}"))
}

/// The host file behind an executor's stdin path, which must be inside the workspace.
pub fn stdin_file(ws: &Workspace, container_path: &str) -> Result<PathBuf, String> {
    let p = ws.host_path(container_path);
    let real =
        inside(&p, &ws.root.join("fs")).map_err(|e| format!("stdin {container_path}: {e}"))?;
    if real.is_file() {
        Ok(real)
    } else {
        Err(format!("stdin {container_path}: is not a file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No filer bound (these tests stage inline content and file:// only).
    struct NoFilers;

    impl Filers for NoFilers {
        fn schemes(&self) -> Vec<String> {
            Vec::new()
        }
        fn stage_in(
            &self,
            _: &str,
            _: &Path,
            _: &str,
            _: &str,
            _: bool,
        ) -> Result<Vec<tessera_core::staging::StagedFile>, String> {
            Err("no filer is bound".into())
        }
        fn stage_out(
            &self,
            _: &str,
            _: &Path,
            _: &str,
            _: &str,
            _: bool,
        ) -> Result<Vec<tessera_core::staging::StagedFile>, String> {
            Err("no filer is bound".into())
        }
    }
    use tessera_core::State;
    use tessera_core::tes::{Input, Output, Task};

    fn record(spec: Task) -> TaskRecord {
        TaskRecord {
            id: "t".into(),
            seq: 1,
            state: State::Queued,
            reason: None,
            spec,
            logs: vec![],
            creation_time: String::new(),
        }
    }

    #[test]
    fn stages_content_files_and_dirs_in_and_outputs_out() {
        let tmp = tempfile::tempdir().unwrap();
        let allowed = fs::canonicalize(tmp.path()).unwrap().join("allowed");
        fs::create_dir_all(allowed.join("dir/sub")).unwrap();
        fs::write(allowed.join("a.txt"), "aaa").unwrap();
        fs::write(allowed.join("dir/sub/b.txt"), "bb").unwrap();
        let roots = vec![allowed.clone()];
        let t = record(Task {
            inputs: Some(vec![
                Input {
                    path: "/in/c.txt".into(),
                    content: Some("c".repeat(200_000)),
                    ..Input::default()
                },
                Input {
                    path: "/in/a.txt".into(),
                    url: Some(format!("file://{}/a.txt", allowed.display())),
                    ..Input::default()
                },
                Input {
                    path: "/ref".into(),
                    url: Some(format!("file://{}/dir", allowed.display())),
                    r#type: Some(FileType::Directory),
                    ..Input::default()
                },
            ]),
            outputs: Some(vec![
                Output {
                    path: "/in/a.txt".into(),
                    url: format!("file://{}/out/a.txt", allowed.display()),
                    ..Output::default()
                },
                Output {
                    path: "/ref".into(),
                    url: format!("file://{}/out/ref", allowed.display()),
                    r#type: Some(FileType::Directory),
                    ..Output::default()
                },
                Output {
                    path: "/in/*.txt".into(),
                    path_prefix: Some("/in/".into()),
                    url: format!("file://{}/out/glob/", allowed.display()),
                    ..Output::default()
                },
            ]),
            ..Task::default()
        });
        let ws = Workspace::new(&tmp.path().join("work"), "t");
        let mounts = crate::workspace::plan_mounts(&t);
        let staged = stage_in(&t, &ws, &mounts, &roots, &NoFilers).unwrap();
        assert_eq!(
            staged,
            Staged {
                files: 3,
                bytes: 200_005
            }
        );
        assert_eq!(
            fs::read_to_string(ws.host_path("/ref/sub/b.txt")).unwrap(),
            "bb"
        );

        let (logs, out, errors) = stage_out(&t, &ws, &roots, &NoFilers);
        assert!(errors.is_empty(), "{errors:?}");
        let paths: Vec<(&str, &str)> = logs
            .iter()
            .map(|l| (l.path.as_str(), l.size_bytes.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("/in/a.txt", "3"),
                ("/ref/sub/b.txt", "2"),
                ("/in/a.txt", "3"),
                ("/in/c.txt", "200000")
            ]
        );
        assert_eq!(out.files, 4);
        assert_eq!(
            fs::read_to_string(allowed.join("out/ref/sub/b.txt")).unwrap(),
            "bb"
        );
        assert_eq!(
            fs::read(allowed.join("out/glob/c.txt")).unwrap().len(),
            200_000
        );
        assert!(logs[3].url.ends_with("/out/glob/c.txt"), "{}", logs[3].url);
    }

    #[test]
    fn symlinks_cannot_escape_roots_or_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        let allowed = base.join("allowed");
        fs::create_dir_all(&allowed).unwrap();
        fs::write(base.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), allowed.join("link")).unwrap();
        let roots = vec![allowed.clone()];
        let t = record(Task {
            inputs: Some(vec![Input {
                path: "/in/x".into(),
                url: Some(format!("file://{}/link", allowed.display())),
                ..Input::default()
            }]),
            ..Task::default()
        });
        let ws = Workspace::new(&base.join("work"), "t");
        let err = stage_in(&t, &ws, &[], &roots, &NoFilers).unwrap_err();
        assert!(err.contains("outside"), "{err}");

        // An executor-made symlink in the workspace must not be followed on the way out.
        let t = record(Task {
            outputs: Some(vec![Output {
                path: "/out/x".into(),
                url: format!("file://{}/got", allowed.display()),
                ..Output::default()
            }]),
            ..Task::default()
        });
        fs::create_dir_all(ws.host_path("/out")).unwrap();
        std::os::unix::fs::symlink(base.join("secret"), ws.host_path("/out/x")).unwrap();
        let (logs, _, errors) = stage_out(&t, &ws, &roots, &NoFilers);
        assert!(logs.is_empty());
        // Refused as a symbolic link (never followed), and nothing is copied.
        assert!(errors[0].contains("symbolic link"), "{errors:?}");
        assert!(!allowed.join("got").exists());
    }

    #[test]
    fn missing_outputs_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let allowed = fs::canonicalize(tmp.path()).unwrap();
        let t = record(Task {
            outputs: Some(vec![Output {
                path: "/out/none".into(),
                url: format!("file://{}/x", allowed.display()),
                ..Output::default()
            }]),
            ..Task::default()
        });
        let ws = Workspace::new(&allowed.join("work"), "t");
        fs::create_dir_all(ws.host_path("/out")).unwrap();
        let (_, _, errors) = stage_out(&t, &ws, std::slice::from_ref(&allowed), &NoFilers);
        assert!(errors[0].contains("did not create it"), "{errors:?}");
    }
}
