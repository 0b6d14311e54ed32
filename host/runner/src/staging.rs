//! Staging inputs into a task's directory and outputs out of it: inline content,
//! `file://` URLs inside the operator's allowed directories, and every other scheme
//! through the filer bound to it.
//!
//! Every path under the task's directory or an allowed directory is opened through
//! `tessera_safefs`, component by component without following a symbolic link: the
//! executors control the task's tree, so nothing in it is followed on the way out, and a
//! link inside an allowed directory is refused rather than resolved. Only regular files
//! and directories are copied; links and special files (FIFOs, devices) are refused with
//! a reason. Copies never keep modes (no setuid file appears on the host).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use tessera_core::TaskRecord;
use tessera_core::staging::{FilerError, Filers, scheme_of};
use tessera_core::tes::{FileType, OutputFileLog};
use tessera_core::validate::{file_url_path, normalise};
use tessera_safefs::{FsError, Kind, Overrun, Root, WalkLimits};

use crate::task_dir::{PlannedMount, TaskDir};

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

/// Why staging one input or output failed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Filer(#[from] FilerError),
    #[error("resolves outside the directories this server allows")]
    NotAllowed,
    #[error("is not a file:// URL")]
    NotAFileUrl,
    #[error(transparent)]
    BadUrl(#[from] tessera_core::validate::FileUrlError),
    #[error("is a {found}, but its type is {want}")]
    WrongType {
        found: &'static str,
        want: &'static str,
    },
    #[error("the executors did not create it")]
    Missing,
    #[error("{0} is a {1}; staging copies only regular files and directories")]
    NotCopied(String, &'static str),
    #[error("copying: {0}")]
    Copy(io::Error),
}

/// A staging error about one input or output: `inputs[2] file:///x: …`.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {error}")]
pub struct At {
    pub at: String,
    #[source]
    pub error: StagingError,
}

fn at(at: impl Into<String>) -> impl FnOnce(StagingError) -> At {
    let at = at.into();
    move |error| At { at, error }
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::File { .. } => "file",
        Kind::Directory => "directory",
        Kind::Symlink => "symbolic link",
        Kind::Special => "special file",
    }
}

fn type_word(directory: bool) -> &'static str {
    if directory { "DIRECTORY" } else { "FILE" }
}

/// The task's container file system, as a safe root (its host directory is ours).
fn workspace(dir: &TaskDir) -> Root {
    Root::new(dir.root.join("fs"))
}

/// The allowed directory that holds a `file://` URL's path, and the path below it.
fn allowed(url: &str, roots: &[PathBuf]) -> Result<(Root, String), StagingError> {
    let path = file_url_path(url)
        .map_err(StagingError::BadUrl)?
        .ok_or(StagingError::NotAFileUrl)?;
    let root = roots
        .iter()
        .find(|r| path.starts_with(r))
        .ok_or(StagingError::NotAllowed)?;
    let rel = path
        .strip_prefix(root)
        .map_err(|_| StagingError::NotAllowed)?
        .to_string_lossy()
        .into_owned();
    Ok((Root::new(root.clone()), rel))
}

fn is_file_url(url: &str) -> bool {
    scheme_of(url).is_none_or(|s| s == "file")
}

/// Copy the regular file `from` (below `src`) to `to` (below `dst`, replaced, never
/// followed), mode 0644. Returns the bytes copied.
fn copy_file(src: &Root, from: &str, dst: &Root, to: &str) -> Result<u64, StagingError> {
    let mut input = src.open_read(from, from)?;
    let mut output = dst.create(to, 0o644, to)?;
    io::copy(&mut input, &mut output).map_err(StagingError::Copy)
}

/// Copy what is at `from` below `src` (a file, or a directory's regular files) to `to`
/// below `dst`; `want_dir` is the declared type. Links and special files are refused.
/// Calls `each(relative path, size)` per file copied.
fn copy_tree(
    src: &Root,
    from: &str,
    dst: &Root,
    to: &str,
    want_dir: bool,
    each: &mut dyn FnMut(&str, u64),
) -> Result<(), StagingError> {
    let kind = match src.kind(from, from) {
        Err(FsError::NotFound(_)) => return Err(StagingError::Missing),
        other => other?,
    };
    if (kind == Kind::Directory) != want_dir || matches!(kind, Kind::Symlink | Kind::Special) {
        return Err(StagingError::WrongType {
            found: kind_word(kind),
            want: type_word(want_dir),
        });
    }
    if !want_dir {
        let n = copy_file(src, from, dst, to)?;
        each("", n);
        return Ok(());
    }
    dst.create_dirs(to, to)?;
    let entries = match src.walk(from, from, WalkLimits::default(), &mut || false) {
        Ok(listed) => listed?,
        // Without a deadline a walk never overruns; say so if it ever did.
        Err(Overrun) => {
            return Err(FsError::Other(from.to_string(), "the walk stopped early".into()).into());
        }
    };
    for (rel, kind) in entries {
        match kind {
            Kind::File { .. } => {
                let n = copy_file(src, &format!("{from}/{rel}"), dst, &format!("{to}/{rel}"))?;
                each(&rel, n);
            }
            other => return Err(StagingError::NotCopied(rel, kind_word(other))),
        }
    }
    Ok(())
}

/// Create the task's directory, the host side of every mount, and stage every input.
/// Blocking file I/O: call it from `spawn_blocking`.
/// Write a task's secret files (`(container path, mode, content)`) into its workspace,
/// after its inputs: without following a link an input may have placed, replacing what
/// is at the path.
pub fn place_secret_files(dir: &TaskDir, files: &[(String, u32, String)]) -> Result<(), At> {
    if files.is_empty() {
        return Ok(());
    }
    let ws = workspace(dir);
    for (path, mode, content) in files {
        let shown = format!("secret file {path}");
        let mut f = ws
            .create(path, *mode, &shown)
            .map_err(|e| at(shown.clone())(StagingError::Fs(e)))?;
        std::io::Write::write_all(&mut f, content.as_bytes())
            .map_err(|e| at(shown)(StagingError::Copy(e)))?;
    }
    Ok(())
}

pub fn stage_in(
    task: &TaskRecord,
    dir: &TaskDir,
    mounts: &[PlannedMount],
    roots: &[PathBuf],
    filers: &dyn Filers,
) -> Result<Staged, At> {
    let fs_root = dir.root.join("fs");
    std::fs::create_dir_all(&fs_root).map_err(|e| At {
        at: "the task's workspace".into(),
        error: StagingError::Copy(e),
    })?;
    let ws = workspace(dir);
    for m in mounts.iter().filter(|m| m.is_dir) {
        ws.create_dirs(&m.container, &m.container)
            .map_err(|e| at(m.container.clone())(e.into()))?;
    }

    let mut staged = Staged::default();
    for (i, input) in task.inputs().iter().enumerate() {
        let url = input.url.as_deref().unwrap_or_default();
        let want_dir = input.r#type == Some(FileType::Directory);
        match input.content.as_deref().filter(|c| !c.is_empty()) {
            Some(content) => {
                let mut f = ws
                    .create(&input.path, 0o644, &input.path)
                    .map_err(|e| at(format!("inputs[{i}] {}", input.path))(e.into()))?;
                io::Write::write_all(&mut f, content.as_bytes()).map_err(|e| {
                    at(format!("inputs[{i}] {}", input.path))(StagingError::Copy(e))
                })?;
                staged.add(content.len() as u64);
            }
            None if !is_file_url(url) => {
                let files = filers
                    .stage_in(&task.id, &fs_root, url, &input.path, want_dir)
                    .map_err(|e| at(format!("inputs[{i}] {url}"))(e.into()))?;
                for f in files {
                    staged.add(f.size);
                }
            }
            None => {
                let fail = || at(format!("inputs[{i}] {url}"));
                let (src, rel) = allowed(url, roots).map_err(|e| fail()(e))?;
                copy_tree(&src, &rel, &ws, &input.path, want_dir, &mut |_, n| {
                    staged.add(n)
                })
                .map_err(|e| fail()(e))?;
            }
        }
    }
    // File mounts need their host file to exist, even for outputs not yet written.
    for m in mounts.iter().filter(|m| !m.is_dir) {
        if let Err(FsError::NotFound(_)) = ws.kind(&m.container, &m.container) {
            ws.create(&m.container, 0o644, &m.container)
                .map_err(|e| at(m.container.clone())(e.into()))?;
        }
    }
    Ok(staged)
}

/// Copy every output out of the task's directory. Returns the output file logs and,
/// when some output could not be staged, the reasons (the caller decides the state).
pub fn stage_out(
    task: &TaskRecord,
    dir: &TaskDir,
    roots: &[PathBuf],
    filers: &dyn Filers,
) -> (Vec<OutputFileLog>, Staged, Vec<At>) {
    let fs_root = dir.root.join("fs");
    let ws = workspace(dir);
    let mut logs = Vec::new();
    let mut staged = Staged::default();
    let mut errors = Vec::new();
    for (i, output) in task.outputs().iter().enumerate() {
        let result = if is_file_url(&output.url) {
            stage_out_to_dir(output, &ws, roots, &mut logs, &mut staged)
        } else {
            stage_out_by_filer(
                &task.id,
                output,
                &ws,
                &fs_root,
                filers,
                &mut logs,
                &mut staged,
            )
        };
        if let Err(e) = result {
            errors.push(at(format!("outputs[{i}] {}", output.path))(e));
        }
    }
    (logs, staged, errors)
}

/// What an output stages: (container path, URL, whether it is a directory). A wildcard
/// is each of its matches (to the URL plus its path after `path_prefix`); a match that
/// is a link or a special file is refused.
fn output_items(
    output: &tessera_core::tes::Output,
    ws: &Root,
) -> Result<Vec<(String, String, bool)>, StagingError> {
    if !output.path.contains(['*', '?', '[']) {
        return Ok(vec![(
            normalise(&output.path),
            output.url.clone(),
            output.r#type == Some(FileType::Directory),
        )]);
    }
    let prefix = output.path_prefix.as_deref().unwrap_or("/");
    let mut items = Vec::new();
    for (rel, kind) in ws.glob(
        &normalise(&output.path),
        &output.path,
        WalkLimits::default(),
    )? {
        let container = format!("/{rel}");
        if matches!(kind, Kind::Symlink | Kind::Special) {
            return Err(StagingError::NotCopied(container, kind_word(kind)));
        }
        let pruned = container
            .strip_prefix(prefix)
            .unwrap_or(&container)
            .trim_start_matches('/')
            .to_string();
        items.push((
            container,
            join_url(&output.url, &pruned),
            kind == Kind::Directory,
        ));
    }
    Ok(items)
}

/// An output to a `file://` URL in an allowed directory.
fn stage_out_to_dir(
    output: &tessera_core::tes::Output,
    ws: &Root,
    roots: &[PathBuf],
    logs: &mut Vec<OutputFileLog>,
    staged: &mut Staged,
) -> Result<(), StagingError> {
    for (path, url, is_dir) in output_items(output, ws)? {
        let (dst, rel) = allowed(&url, roots)?;
        copy_tree(ws, &path, &dst, &rel, is_dir, &mut |file, n| {
            staged.add(n);
            logs.push(OutputFileLog {
                url: join_url(&url, file),
                path: if file.is_empty() {
                    path.clone()
                } else {
                    normalise(&format!("{path}/{file}"))
                },
                size_bytes: n.to_string(),
            });
        })?;
    }
    Ok(())
}

/// An output to a URL a filer plugin serves: one call per item.
fn stage_out_by_filer(
    task_id: &str,
    output: &tessera_core::tes::Output,
    ws: &Root,
    fs_root: &Path,
    filers: &dyn Filers,
    logs: &mut Vec<OutputFileLog>,
    staged: &mut Staged,
) -> Result<(), StagingError> {
    for (path, url, is_dir) in output_items(output, ws)? {
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

fn join_url(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        base.to_string()
    } else {
        format!("{}/{}", base.trim_end_matches('/'), rel)
    }
}

/// Put an executor's captured stdout/stderr (kept outside the container-visible tree
/// while it ran) at its container path, replacing whatever is there (a link is
/// replaced, not followed).
pub fn place_capture(dir: &TaskDir, container_path: &str, captured: &Path) -> Result<(), At> {
    let fail = at(container_path.to_string());
    let mut output = workspace(dir)
        .create(container_path, 0o644, container_path)
        .map_err(|e| fail(e.into()))?;
    let mut input = File::open(captured).map_err(|e| At {
        at: container_path.into(),
        error: StagingError::Copy(e),
    })?;
    io::copy(&mut input, &mut output)
        .map(|_| ())
        .map_err(|e| At {
            at: container_path.into(),
            error: StagingError::Copy(e),
        })
}

/// The host file behind an executor's stdin path, which must be a regular file of the
/// task's directory (not a link). The file is opened here; the executor reads it by path
/// once, before any executor of the task runs again.
pub fn stdin_file(dir: &TaskDir, container_path: &str) -> Result<PathBuf, At> {
    let shown = format!("stdin {container_path}");
    workspace(dir)
        .open_read(container_path, &shown)
        .map_err(|e| at(shown.clone())(e.into()))?;
    Ok(dir.host_path(container_path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
            url: &str,
            _: &str,
            _: bool,
        ) -> Result<Vec<tessera_core::staging::StagedFile>, FilerError> {
            Err(FilerError::NoFiler(url.into()))
        }
        fn stage_out(
            &self,
            _: &str,
            _: &Path,
            _: &str,
            url: &str,
            _: bool,
        ) -> Result<Vec<tessera_core::staging::StagedFile>, FilerError> {
            Err(FilerError::NoFiler(url.into()))
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
            group: String::new(),
            origin: Default::default(),
            priority: 0,
            extra: Default::default(),
            spec,
            logs: vec![],
            creation_time: time::OffsetDateTime::UNIX_EPOCH,
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
        let dir = TaskDir::new(&tmp.path().join("work"), "t");
        let mounts = crate::task_dir::plan_mounts(&t);
        let staged = stage_in(&t, &dir, &mounts, &roots, &NoFilers).unwrap();
        assert_eq!(
            staged,
            Staged {
                files: 3,
                bytes: 200_005
            }
        );
        assert_eq!(
            fs::read_to_string(dir.host_path("/ref/sub/b.txt")).unwrap(),
            "bb"
        );

        let (logs, out, errors) = stage_out(&t, &dir, &roots, &NoFilers);
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
    fn symlinks_are_refused_in_allowed_directories_and_the_workspace() {
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
        let dir = TaskDir::new(&base.join("work"), "t");
        let err = stage_in(&t, &dir, &[], &roots, &NoFilers).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        // An executor-made symlink in the workspace must not be followed on the way out,
        // nor a linked directory on a wildcard's way down.
        let t = record(Task {
            outputs: Some(vec![
                Output {
                    path: "/out/x".into(),
                    url: format!("file://{}/got", allowed.display()),
                    ..Output::default()
                },
                Output {
                    path: "/out/**/*.txt".into(),
                    path_prefix: Some("/out".into()),
                    url: format!("file://{}/glob", allowed.display()),
                    ..Output::default()
                },
            ]),
            ..Task::default()
        });
        fs::create_dir_all(dir.host_path("/out/real")).unwrap();
        fs::write(dir.host_path("/out/real/ok.txt"), "ok").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), dir.host_path("/out/x")).unwrap();
        fs::create_dir_all(base.join("elsewhere")).unwrap();
        fs::write(base.join("elsewhere/stolen.txt"), "no").unwrap();
        std::os::unix::fs::symlink(base.join("elsewhere"), dir.host_path("/out/linked")).unwrap();
        let (logs, _, errors) = stage_out(&t, &dir, &roots, &NoFilers);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].to_string().contains("symbolic link"),
            "{errors:?}"
        );
        assert!(!allowed.join("got").exists());
        let urls: Vec<&str> = logs.iter().map(|l| l.url.as_str()).collect();
        assert_eq!(
            urls,
            [format!("file://{}/glob/real/ok.txt", allowed.display())]
        );
        assert!(!allowed.join("glob/linked").exists());
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
        let dir = TaskDir::new(&allowed.join("work"), "t");
        fs::create_dir_all(dir.host_path("/out")).unwrap();
        let (_, _, errors) = stage_out(&t, &dir, std::slice::from_ref(&allowed), &NoFilers);
        assert!(
            errors[0].to_string().contains("did not create it"),
            "{errors:?}"
        );
    }
}
