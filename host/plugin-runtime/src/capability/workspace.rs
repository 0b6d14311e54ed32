//! A task's workspace as a filer sees it (`tessera:plugin/workspace`): container paths
//! mapped onto host directories through the mounts the host lists, and files opened there
//! through `tessera_safefs`, which never follows a symbolic link.
//!
//! A container path is split into components (`..` refused), the mount whose container
//! prefix covers it is chosen, and the rest is opened below the mount's directory
//! component by component with `O_NOFOLLOW`. A symbolic link anywhere below the mount's
//! directory (one the task planted, pointing at `/etc` or at another task) is refused,
//! never resolved; so are FIFOs, devices and sockets. Error messages name container
//! paths only, never host paths.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use tessera_safefs::{FsError, Kind, Root, WalkLimits};
use wasmtime_wasi::p2::{StreamError, StreamResult};
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{InputStream, OutputStream};

use std::time::Instant;

use tessera_safefs::Overrun;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::bindings::PluginError;
use crate::bindings::filer::tessera::plugin::workspace;
use crate::capability::io::Guarded;
use crate::capability::log::setup;
use crate::error::LoadError;

/// The most one `read` of a workspace file returns (the guest asks for at most this).
const READ_MAX: usize = 1 << 20;
/// What `check-write` of a workspace file allows per write.
const WRITE_BUDGET: usize = 1 << 20;

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
    root: Root,
}

/// A mount that [`FilerWorkspace::mount`] refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("workspace mount `{container}`: {reason}")]
pub struct MountError {
    pub container: String,
    pub reason: &'static str,
}

/// A safe-file-system error as the plugin sees it.
fn plugin_error(e: FsError) -> PluginError {
    let text = e.to_string();
    match e {
        FsError::NotFound(_) => PluginError::NotFound(text),
        FsError::Symlink(..) | FsError::NotRegular(_) | FsError::Denied(_) => {
            PluginError::Denied(text)
        }
        FsError::IsADirectory(_) | FsError::NotADirectory(_) | FsError::Invalid(..) => {
            PluginError::InvalidInput(text)
        }
        FsError::Exhausted(..) => PluginError::Unavailable(text),
        FsError::TooLarge(..) | FsError::Other(..) => PluginError::Other(text),
    }
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
        if !container.starts_with('/') {
            return Err(err("not an absolute path"));
        }
        let parts = match tessera_safefs::components(container) {
            Ok(p) => p,
            Err(_) if container.contains('\0') => return Err(err("contains NUL")),
            Err(_) => return Err(err("contains `..`")),
        };
        let parts: Vec<String> = parts.into_iter().map(str::to_owned).collect();
        if self.mounts.iter().any(|m| m.parts == parts) {
            return Err(err("mounted twice"));
        }
        let mount = Mount {
            container: format!("/{}", parts.join("/")),
            parts,
            root: Root::new(host),
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
            .map(|m| (m.container.as_str(), m.root.path()))
    }

    /// The mount that serves `path`, and the path below it.
    fn resolve(&self, path: &str) -> Result<(&Mount, String), PluginError> {
        if !path.starts_with('/') {
            return Err(PluginError::InvalidInput(format!(
                "`{path}` is not an absolute container path"
            )));
        }
        let parts = tessera_safefs::components(path).map_err(plugin_error)?;
        let mount = self
            .mounts
            .iter()
            .find(|m| {
                parts.len() >= m.parts.len() && m.parts.iter().zip(&parts).all(|(a, b)| a == b)
            })
            .ok_or_else(|| {
                PluginError::Denied(format!("`{path}` is outside the task's workspace"))
            })?;
        Ok((mount, parts[mount.parts.len()..].join("/")))
    }

    /// `workspace.open-read`: a regular file of the workspace, for reading.
    pub(crate) fn open_read(&self, path: &str) -> Result<File, PluginError> {
        let (mount, rest) = self.resolve(path)?;
        mount.root.open_read(&rest, path).map_err(plugin_error)
    }

    /// `workspace.open-write`: creates (or replaces) a regular file of the workspace,
    /// creating missing parent directories. Whatever is at the path and is not a
    /// directory is removed first (a symbolic link is removed, not followed; a file with
    /// other hard links is not written through), then the file is created anew.
    pub(crate) fn open_write(&self, path: &str) -> Result<File, PluginError> {
        let (mount, rest) = self.resolve(path)?;
        mount.root.create(&rest, 0o644, path).map_err(plugin_error)
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
        Ok(mount
            .root
            .walk(&rest, path, WalkLimits::default(), deadline_passed)?
            .map(|entries| {
                entries
                    .into_iter()
                    .filter_map(|(rel, kind)| match kind {
                        Kind::File { size } => Some((rel, size)),
                        // Links, FIFOs, sockets, devices: not files to stage.
                        _ => None,
                    })
                    .collect()
            })
            .map_err(plugin_error))
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

/// What the `workspace` host functions see of a store.
pub(crate) struct WorkspaceView<'a> {
    pub(crate) workspace: &'a FilerWorkspace,
    pub(crate) io: Guarded<'a>,
}

/// Store data that serves `workspace`.
pub(crate) trait HasWorkspace: Send + 'static {
    fn workspace(&mut self) -> WorkspaceView<'_>;
}

struct WorkspaceData;

impl HasData for WorkspaceData {
    type Data<'a> = WorkspaceView<'a>;
}

/// Links `workspace`.
pub(crate) fn link<T: HasWorkspace>(linker: &mut Linker<T>) -> Result<(), LoadError> {
    workspace::add_to_linker::<_, WorkspaceData>(linker, |s| s.workspace()).map_err(setup)
}

impl workspace::Host for WorkspaceView<'_> {
    fn open_read(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, PluginError>> {
        match self.workspace.open_read(&path) {
            Ok(file) => {
                let stream: DynInputStream = Box::new(FileReader::new(file));
                Ok(Ok(self.io.table.push(stream)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn open_write(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, PluginError>> {
        match self.workspace.open_write(&path) {
            Ok(file) => {
                let stream: DynOutputStream = Box::new(FileWriter::new(file));
                Ok(Ok(self.io.table.push(stream)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn walk(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Vec<workspace::Entry>, PluginError>> {
        let guard = &mut *self.io.guard;
        let deadline = guard.deadline;
        let mut passed = || Instant::now() >= deadline;
        match self.workspace.walk(&path, &mut passed) {
            Ok(Ok(entries)) => Ok(Ok(entries
                .into_iter()
                .map(|(relative_path, size)| workspace::Entry {
                    relative_path,
                    size,
                })
                .collect())),
            Ok(Err(e)) => Ok(Err(e)),
            Err(Overrun) => Err(guard.overrun()),
        }
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
            (m.container.as_str(), rest.as_str()),
            ("/data/in", "a/b.txt")
        );
        let (m, rest) = w.resolve("/data/inputs/x").unwrap();
        assert_eq!(
            (m.container.as_str(), rest.as_str()),
            ("/", "data/inputs/x")
        );
        let (m, rest) = w.resolve("//data/./in//c").unwrap();
        assert_eq!((m.container.as_str(), rest.as_str()), ("/data/in", "c"));
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
        let dir = rustix::fs::open(
            &inn,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        rustix::fs::mkfifoat(&dir, "pipe", rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
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
