//! A task's workspace as a filer sees it (`tessera:plugin/workspace`): container paths
//! mapped onto host directories through the mounts the host lists, and files opened there
//! without ever following a symbolic link.
//!
//! Safety of the mapping does not rest on checking paths as strings and then opening
//! them: a path is split into components (`..` refused), the mount whose container
//! prefix covers it is opened, and every further component is opened relative to the
//! directory before it with `O_NOFOLLOW` (`openat`). A symbolic link anywhere below the
//! mount's directory (one the task planted, pointing at `/etc` or at another task) is
//! refused, never resolved; so are FIFOs, devices and sockets (files are opened
//! non-blocking, then checked to be regular files). Error messages name container paths
//! only, never host paths.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;
use wasmtime_wasi::p2::{StreamError, StreamResult};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream};

use crate::router::PluginError;

/// The most one `read` of a workspace file returns (the guest asks for at most this).
const READ_MAX: usize = 1 << 20;
/// What `check-write` of a workspace file allows per write.
const WRITE_BUDGET: usize = 1 << 20;
/// `walk` lists at most this many files…
const WALK_MAX_ENTRIES: usize = 100_000;
/// …whose relative paths together take at most this many bytes…
const WALK_MAX_NAME_BYTES: usize = 16 << 20;
/// …at most this many directories deep.
const WALK_MAX_DEPTH: usize = 128;

/// The workspace of the task a filer call is about: which container paths it may open,
/// and the host directories behind them. The host builds it per task, e.g. `/data/in` →
/// `/var/lib/tessera/work/<task>/mounts/3`; a container path is served by the mount with
/// the longest prefix that covers it (component by component, so `/data/inputs` is not
/// under `/data/in`), and a path no mount covers is refused.
///
/// The mounts' host directories are trusted (the host made them); everything below them
/// is not (the task's containers write there) and is opened without following symbolic
/// links.
#[derive(Debug, Clone, Default)]
pub struct FilerWorkspace {
    task: Option<String>,
    /// Longest container prefix first.
    mounts: Vec<Mount>,
}

#[derive(Debug, Clone)]
struct Mount {
    /// Normalized: `/` or `/a/b`.
    container: String,
    parts: Vec<String>,
    host: PathBuf,
}

/// A mount that [`FilerWorkspace::mount`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workspace mount `{container}`: {reason}")]
pub struct MountError {
    pub container: String,
    pub reason: &'static str,
}

impl FilerWorkspace {
    /// A workspace with no mounts (every path is refused).
    pub fn new() -> Self {
        Self::default()
    }

    /// The task the calls are about (their log lines carry its id).
    pub fn with_task(mut self, task_id: impl Into<String>) -> Self {
        self.task = Some(task_id.into());
        self
    }

    /// Adds a mount: container paths under `container` (absolute; `/` covers every path)
    /// are files under the host directory `host`.
    pub fn mount(mut self, container: &str, host: impl Into<PathBuf>) -> Result<Self, MountError> {
        let err = |reason| MountError {
            container: container.to_owned(),
            reason,
        };
        let parts = match components(container) {
            Ok(p) => p,
            Err(Bad::Relative) => return Err(err("not an absolute path")),
            Err(Bad::DotDot) => return Err(err("contains `..`")),
            Err(Bad::Nul) => return Err(err("contains NUL")),
        };
        let parts: Vec<String> = parts.into_iter().map(str::to_owned).collect();
        if self.mounts.iter().any(|m| m.parts == parts) {
            return Err(err("mounted twice"));
        }
        let mount = Mount {
            container: format!("/{}", parts.join("/")),
            parts,
            host: host.into(),
        };
        let at = self
            .mounts
            .iter()
            .position(|m| m.parts.len() < mount.parts.len())
            .unwrap_or(self.mounts.len());
        self.mounts.insert(at, mount);
        Ok(self)
    }

    pub fn task(&self) -> Option<&str> {
        self.task.as_deref()
    }

    /// The mounts: (container prefix, host directory), longest prefix first.
    pub fn mounts(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.mounts
            .iter()
            .map(|m| (m.container.as_str(), m.host.as_path()))
    }

    /// The mount that serves `path`, and the components of `path` below it.
    fn resolve<'p>(&self, path: &'p str) -> Result<(&Mount, Vec<&'p str>), PluginError> {
        let parts = components(path).map_err(|bad| {
            PluginError::InvalidInput(match bad {
                Bad::Relative => format!("`{path}` is not an absolute container path"),
                Bad::DotDot => format!("`{path}` contains `..`"),
                Bad::Nul => "the path contains NUL".to_owned(),
            })
        })?;
        let mount = self
            .mounts
            .iter()
            .find(|m| {
                parts.len() >= m.parts.len() && m.parts.iter().zip(&parts).all(|(a, b)| a == b)
            })
            .ok_or_else(|| {
                PluginError::Denied(format!("`{path}` is outside the task's workspace"))
            })?;
        let rest = parts[mount.parts.len()..].to_vec();
        Ok((mount, rest))
    }

    /// `workspace.open-read`: a regular file of the workspace, for reading.
    pub(crate) fn open_read(&self, path: &str) -> Result<File, PluginError> {
        let (mount, rest) = self.resolve(path)?;
        let Some((name, dirs)) = rest.split_last() else {
            return Err(PluginError::InvalidInput(format!(
                "`{path}` is a directory of the workspace, not a file"
            )));
        };
        let dir = open_dirs(mount, dirs, false, path)?;
        let fd = rustix::fs::openat(
            &dir,
            *name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| open_error(e, &dir, name, path))?;
        regular(fd, path)
    }

    /// `workspace.open-write`: creates (or replaces) a regular file of the workspace,
    /// creating missing parent directories. Whatever is at the path and is not a
    /// directory is removed first (a symbolic link is removed, not followed; a file with
    /// other hard links is not written through), then the file is created anew.
    pub(crate) fn open_write(&self, path: &str) -> Result<File, PluginError> {
        let (mount, rest) = self.resolve(path)?;
        let Some((name, dirs)) = rest.split_last() else {
            return Err(PluginError::InvalidInput(format!(
                "`{path}` is a directory of the workspace, not a file"
            )));
        };
        let dir = open_dirs(mount, dirs, true, path)?;
        match rustix::fs::unlinkat(&dir, *name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) | Err(Errno::PERM) if is_dir_at(&dir, name) => {
                return Err(PluginError::InvalidInput(format!(
                    "`{path}` is a directory"
                )));
            }
            Err(e) => return Err(fs_error(e, path)),
        }
        let fd = rustix::fs::openat(
            &dir,
            *name,
            OFlags::WRONLY
                | OFlags::CREATE
                | OFlags::EXCL
                | OFlags::NOFOLLOW
                | OFlags::CLOEXEC
                | OFlags::NONBLOCK
                | OFlags::NOCTTY,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|e| open_error(e, &dir, name, path))?;
        regular(fd, path)
    }

    /// `workspace.walk`: every regular file under the directory `path`, recursively, as
    /// (`/`-separated path relative to it, size), sorted by path. Symbolic links, FIFOs,
    /// sockets and devices are skipped (never followed). A `path` that is a regular file
    /// gives that one file, with the relative path `""` (how a filer learns a file's
    /// size). `deadline_passed` is asked now and then: a walk of a huge tree stops there.
    pub(crate) fn walk(
        &self,
        path: &str,
        deadline_passed: &mut dyn FnMut() -> bool,
    ) -> Result<Result<Vec<(String, u64)>, PluginError>, Overrun> {
        let (mount, rest) = match self.resolve(path) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let top = match rest.split_last() {
            None => open_mount(mount, path),
            Some((name, dirs)) => open_dirs(mount, dirs, false, path).and_then(|dir| {
                let fd = rustix::fs::openat(
                    &dir,
                    *name,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(|e| open_error(e, &dir, name, path))?;
                Ok(fd)
            }),
        };
        let top = match top {
            Ok(fd) => fd,
            Err(e) => return Ok(Err(e)),
        };
        match rustix::fs::fstat(&top) {
            Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => return Ok(Ok(vec![(String::new(), size_of(&st))])),
                FileType::Directory => {}
                _ => {
                    return Ok(Err(PluginError::InvalidInput(format!(
                        "`{path}` is neither a regular file nor a directory"
                    ))));
                }
            },
            Err(e) => return Ok(Err(fs_error(e, path))),
        }
        walk_tree(top, path, deadline_passed)
    }
}

/// The deadline passed during a host operation.
#[derive(Debug)]
pub(crate) struct Overrun;

enum Bad {
    Relative,
    DotDot,
    Nul,
}

/// The components of an absolute path; empty and `.` components are skipped.
fn components(path: &str) -> Result<Vec<&str>, Bad> {
    if path.contains('\0') {
        return Err(Bad::Nul);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Bad::Relative);
    };
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Bad::DotDot),
            p => parts.push(p),
        }
    }
    Ok(parts)
}

fn open_mount(mount: &Mount, path: &str) -> Result<OwnedFd, PluginError> {
    rustix::fs::open(
        &mount.host,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        Errno::NOENT => PluginError::Unavailable(format!(
            "the workspace directory behind `{}` does not exist (for `{path}`)",
            mount.container
        )),
        e => fs_error(e, path),
    })
}

/// Opens the directories `dirs` below `mount`, each relative to the one before with
/// `O_NOFOLLOW`; with `create`, missing ones are made.
fn open_dirs(
    mount: &Mount,
    dirs: &[&str],
    create: bool,
    path: &str,
) -> Result<OwnedFd, PluginError> {
    let mut dir = open_mount(mount, path)?;
    for name in dirs {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let next = match rustix::fs::openat(&dir, *name, flags, Mode::empty()) {
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(fs_error(e, path)),
                }
                rustix::fs::openat(&dir, *name, flags, Mode::empty())
            }
            other => other,
        };
        dir = next.map_err(|e| open_error(e, &dir, name, path))?;
    }
    Ok(dir)
}

fn is_dir_at(dir: &OwnedFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// A file descriptor as a [`File`] if it is a regular file, blocking again.
fn regular(fd: OwnedFd, path: &str) -> Result<File, PluginError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| fs_error(e, path))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => {
            return Err(PluginError::InvalidInput(format!(
                "`{path}` is a directory"
            )));
        }
        _ => {
            return Err(PluginError::Denied(format!(
                "`{path}` is not a regular file (a FIFO, socket or device)"
            )));
        }
    }
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| fs_error(e, path))?;
    rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK).map_err(|e| fs_error(e, path))?;
    Ok(File::from(fd))
}

/// Why opening `name` in `dir` failed: a symbolic link is refused as such.
fn open_error(e: Errno, dir: &OwnedFd, name: &str, path: &str) -> PluginError {
    if matches!(e, Errno::LOOP | Errno::NOTDIR | Errno::MLINK) {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                return PluginError::Denied(format!(
                    "`{path}`: `{name}` is a symbolic link, which the workspace does not follow"
                ));
            }
            Ok(_) if e == Errno::NOTDIR => {
                return PluginError::InvalidInput(format!("`{path}`: `{name}` is not a directory"));
            }
            _ => {}
        }
    }
    fs_error(e, path)
}

fn fs_error(e: Errno, path: &str) -> PluginError {
    match e {
        Errno::NOENT => PluginError::NotFound(format!("`{path}` does not exist")),
        Errno::ACCESS | Errno::PERM | Errno::ROFS => {
            PluginError::Denied(format!("`{path}`: {}", io::Error::from(e)))
        }
        Errno::ISDIR => PluginError::InvalidInput(format!("`{path}` is a directory")),
        Errno::NOTDIR => PluginError::InvalidInput(format!(
            "`{path}`: a component of the path is not a directory"
        )),
        Errno::NAMETOOLONG => PluginError::InvalidInput(format!("`{path}`: the name is too long")),
        Errno::NOSPC | Errno::DQUOT | Errno::MFILE | Errno::NFILE | Errno::NOMEM => {
            PluginError::Unavailable(format!("`{path}`: {}", io::Error::from(e)))
        }
        e => PluginError::Other(format!("`{path}`: {}", io::Error::from(e))),
    }
}

fn size_of(st: &rustix::fs::Stat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

/// Lists the regular files under the directory `top` (depth first; a directory's
/// descriptor is kept only while some of its subdirectories wait, so at most
/// [`WALK_MAX_DEPTH`] are open at once).
fn walk_tree(
    top: OwnedFd,
    path: &str,
    deadline_passed: &mut dyn FnMut() -> bool,
) -> Result<Result<Vec<(String, u64)>, PluginError>, Overrun> {
    struct Pending {
        parent: Rc<OwnedFd>,
        name: String,
        /// The directory's path relative to the top, with a trailing `/`.
        prefix: String,
        depth: usize,
    }
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut name_bytes = 0usize;
    let mut seen = 0usize;
    let mut stack: Vec<Pending> = Vec::new();
    let mut current = Some((top, String::new(), 0usize));
    loop {
        let (fd, prefix, depth) = match current.take() {
            Some(c) => c,
            None => match stack.pop() {
                None => break,
                Some(p) => {
                    let flags =
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                    match rustix::fs::openat(&*p.parent, p.name.as_str(), flags, Mode::empty()) {
                        Ok(fd) => (fd, p.prefix, p.depth),
                        // Gone since it was listed, or replaced by a link: not followed.
                        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => continue,
                        Err(e) => return Ok(Err(fs_error(e, &join(path, &p.prefix)))),
                    }
                }
            },
        };
        let fd = Rc::new(fd);
        let mut dir = match Dir::read_from(&*fd) {
            Ok(d) => d,
            Err(e) => return Ok(Err(fs_error(e, &join(path, &prefix)))),
        };
        while let Some(entry) = dir.read() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return Ok(Err(fs_error(e, &join(path, &prefix)))),
            };
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            seen += 1;
            if seen.is_multiple_of(256) && deadline_passed() {
                return Err(Overrun);
            }
            let Ok(name) = std::str::from_utf8(raw) else {
                return Ok(Err(PluginError::InvalidInput(format!(
                    "a file name under `{}` is not UTF-8",
                    join(path, &prefix)
                ))));
            };
            let st = match rustix::fs::statat(&*fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Ok(Err(fs_error(e, &join(path, &prefix)))),
            };
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {
                    let rel = format!("{prefix}{name}");
                    name_bytes += rel.len();
                    if out.len() >= WALK_MAX_ENTRIES || name_bytes > WALK_MAX_NAME_BYTES {
                        return Ok(Err(PluginError::Other(format!(
                            "`{path}` holds more than {WALK_MAX_ENTRIES} files (or more than \
                             {} MiB of file names); stage it in parts",
                            WALK_MAX_NAME_BYTES >> 20
                        ))));
                    }
                    out.push((rel, size_of(&st)));
                }
                FileType::Directory => {
                    if depth + 1 > WALK_MAX_DEPTH {
                        return Ok(Err(PluginError::Other(format!(
                            "`{path}` is more than {WALK_MAX_DEPTH} directories deep"
                        ))));
                    }
                    stack.push(Pending {
                        parent: fd.clone(),
                        name: name.to_owned(),
                        prefix: format!("{prefix}{name}/"),
                        depth: depth + 1,
                    });
                }
                // Links, FIFOs, sockets, devices: not files to stage.
                _ => {}
            }
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Ok(out))
}

fn join(path: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        path.to_owned()
    } else {
        format!(
            "{}/{}",
            path.trim_end_matches('/'),
            prefix.trim_end_matches('/')
        )
    }
}

/// A workspace file as a `wasi:io` input stream. Reads are synchronous (a local file is
/// always ready); the end of the file closes the stream.
pub(crate) struct FileReader {
    file: File,
}

impl FileReader {
    pub(crate) fn new(file: File) -> Self {
        FileReader { file }
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for FileReader {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi_io::async_trait]
impl InputStream for FileReader {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        let want = size.min(READ_MAX);
        if want == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = BytesMut::zeroed(want);
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return Err(StreamError::Closed),
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(buf.freeze());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StreamError::LastOperationFailed(e.into())),
            }
        }
    }
}

/// A workspace file as a `wasi:io` output stream. Writes are synchronous; `check-write`
/// allows [`WRITE_BUDGET`] bytes per write.
pub(crate) struct FileWriter {
    file: File,
    failed: bool,
}

impl FileWriter {
    pub(crate) fn new(file: File) -> Self {
        FileWriter {
            file,
            failed: false,
        }
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for FileWriter {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for FileWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.failed {
            return Err(StreamError::Closed);
        }
        if bytes.len() > WRITE_BUDGET {
            return Err(StreamError::trap(
                "write exceeded the budget of check-write",
            ));
        }
        self.file.write_all(&bytes).map_err(|e| {
            self.failed = true;
            StreamError::LastOperationFailed(e.into())
        })
    }

    fn flush(&mut self) -> StreamResult<()> {
        if self.failed {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        if self.failed {
            return Err(StreamError::Closed);
        }
        Ok(WRITE_BUDGET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> impl FnMut() -> bool {
        || false
    }

    fn ws(dir: &Path) -> FilerWorkspace {
        FilerWorkspace::new()
            .mount("/data/in", dir.join("in"))
            .unwrap()
            .mount("/", dir.join("root"))
            .unwrap()
    }

    #[test]
    fn paths_map_to_the_longest_mount() {
        let tmp = tempfile::tempdir().unwrap();
        let w = ws(tmp.path());
        let (m, rest) = w.resolve("/data/in/a/b.txt").unwrap();
        assert_eq!(
            (m.container.as_str(), rest),
            ("/data/in", vec!["a", "b.txt"])
        );
        let (m, rest) = w.resolve("/data/inputs/x").unwrap();
        assert_eq!(
            (m.container.as_str(), rest),
            ("/", vec!["data", "inputs", "x"])
        );
        let (m, rest) = w.resolve("//data/./in//c").unwrap();
        assert_eq!((m.container.as_str(), rest), ("/data/in", vec!["c"]));
        assert!(matches!(
            w.resolve("/data/in/../x"),
            Err(PluginError::InvalidInput(_))
        ));
        assert!(matches!(
            w.resolve("data/in/x"),
            Err(PluginError::InvalidInput(_))
        ));
        let only = FilerWorkspace::new()
            .mount("/data/in/", tmp.path())
            .unwrap();
        assert!(matches!(
            only.resolve("/data/out/x"),
            Err(PluginError::Denied(_))
        ));
        assert!(matches!(only.resolve("/data"), Err(PluginError::Denied(_))));
        assert_eq!(only.mounts().next().unwrap().0, "/data/in");
    }

    #[test]
    fn bad_mounts_are_refused() {
        let w = FilerWorkspace::new().mount("/a", "/x").unwrap();
        assert_eq!(
            w.clone().mount("/a/", "/y").unwrap_err().reason,
            "mounted twice"
        );
        assert!(w.clone().mount("a", "/y").is_err());
        assert!(w.clone().mount("/a/../b", "/y").is_err());
    }

    #[test]
    fn writes_create_parents_and_reads_come_back() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("in")).unwrap();
        let w = ws(tmp.path());
        let mut f = w.open_write("/data/in/a/b/c.txt").unwrap();
        f.write_all(b"hello").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read(tmp.path().join("in/a/b/c.txt")).unwrap(),
            b"hello"
        );
        let mut s = String::new();
        w.open_read("/data/in/a/b/c.txt")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hello");
        // Replacing makes a new file: another hard link keeps the old bytes.
        std::fs::hard_link(tmp.path().join("in/a/b/c.txt"), tmp.path().join("in/keep")).unwrap();
        w.open_write("/data/in/a/b/c.txt")
            .unwrap()
            .write_all(b"new")
            .unwrap();
        assert_eq!(std::fs::read(tmp.path().join("in/keep")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read(tmp.path().join("in/a/b/c.txt")).unwrap(),
            b"new"
        );

        assert!(matches!(
            w.open_read("/data/in/nope"),
            Err(PluginError::NotFound(_))
        ));
        assert!(matches!(
            w.open_read("/data/in/a"),
            Err(PluginError::InvalidInput(_))
        ));
        assert!(matches!(
            w.open_write("/data/in/a"),
            Err(PluginError::InvalidInput(_))
        ));
        assert!(matches!(
            w.open_read("/data/in"),
            Err(PluginError::InvalidInput(_))
        ));
    }

    #[test]
    fn symbolic_links_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"s3cret").unwrap();
        let inn = tmp.path().join("in");
        std::fs::create_dir_all(&inn).unwrap();
        std::os::unix::fs::symlink(&outside, inn.join("dir-link")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), inn.join("file-link")).unwrap();
        let w = ws(tmp.path());
        for p in ["/data/in/dir-link/secret", "/data/in/file-link"] {
            match w.open_read(p) {
                Err(PluginError::Denied(m)) => assert!(m.contains("symbolic link"), "{m}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        match w.open_write("/data/in/dir-link/secret") {
            Err(PluginError::Denied(m)) => assert!(m.contains("symbolic link"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Writing over a link replaces the link; the file it pointed at is untouched.
        w.open_write("/data/in/file-link")
            .unwrap()
            .write_all(b"mine")
            .unwrap();
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"s3cret");
        assert_eq!(std::fs::read(inn.join("file-link")).unwrap(), b"mine");
        // A walk lists neither the link nor what is behind it.
        let listed = w.walk("/data/in", &mut never()).unwrap().unwrap();
        assert_eq!(listed, vec![("file-link".to_string(), 4)]);
        assert!(matches!(
            w.walk("/data/in/dir-link", &mut never()).unwrap(),
            Err(PluginError::Denied(_))
        ));
    }

    #[test]
    fn a_fifo_is_not_opened_as_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let inn = tmp.path().join("in");
        std::fs::create_dir_all(&inn).unwrap();
        let dir =
            rustix::fs::open(&inn, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        rustix::fs::mkfifoat(&dir, "pipe", Mode::from_raw_mode(0o600)).unwrap();
        let w = ws(tmp.path());
        // Opening must not block waiting for a writer.
        assert!(matches!(
            w.open_read("/data/in/pipe"),
            Err(PluginError::Denied(_))
        ));
    }

    #[test]
    fn walk_lists_files_recursively_with_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        let inn = tmp.path().join("in");
        std::fs::create_dir_all(inn.join("a/b")).unwrap();
        std::fs::create_dir_all(inn.join("empty")).unwrap();
        std::fs::write(inn.join("top.txt"), b"12").unwrap();
        std::fs::write(inn.join("a/one"), b"1").unwrap();
        std::fs::write(inn.join("a/b/three"), b"333").unwrap();
        let w = ws(tmp.path());
        let listed = w.walk("/data/in", &mut never()).unwrap().unwrap();
        assert_eq!(
            listed,
            vec![
                ("a/b/three".to_string(), 3),
                ("a/one".to_string(), 1),
                ("top.txt".to_string(), 2),
            ]
        );
        let sub = w.walk("/data/in/a/b", &mut never()).unwrap().unwrap();
        assert_eq!(sub, vec![("three".to_string(), 3)]);
        let file = w.walk("/data/in/top.txt", &mut never()).unwrap().unwrap();
        assert_eq!(file, vec![(String::new(), 2)]);
        assert!(matches!(
            w.walk("/data/in/nope", &mut never()).unwrap(),
            Err(PluginError::NotFound(_))
        ));
        let mut calls = 0;
        let mut passed = || {
            calls += 1;
            true
        };
        for i in 0..300 {
            std::fs::write(inn.join(format!("f{i}")), b"").unwrap();
        }
        assert!(w.walk("/data/in", &mut passed).is_err());
    }
}
