//! The one way the host opens paths under a directory whose contents it does not trust:
//! a task's workspace (its executors write there) or a directory the operator allowed
//! for `file://` URLs.
//!
//! A [`Root`] is a trusted directory; paths below it are not trusted. A path is split
//! into components (`..` and NUL refused), and every component is opened relative to the
//! directory before it with `O_NOFOLLOW` (`openat`, `mkdirat`, `unlinkat`, `fstatat`
//! through rustix, whose flag values are right on every architecture). A symbolic link
//! anywhere below the root is refused, never resolved; FIFOs, devices and sockets are
//! refused as files (opened non-blocking, then checked to be regular). Walks and
//! wildcard matches never descend into a linked directory.
//!
//! Errors name the path as the caller displays it (a container path, a URL), never the
//! host path behind it.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why an operation under a [`Root`] failed. Each carries the path as the caller shows it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("`{0}` does not exist")]
    NotFound(String),
    /// `.1` is the component that is a link.
    #[error("`{0}`: `{1}` is a symbolic link, which is never followed")]
    Symlink(String, String),
    #[error("`{0}` is a special file (a FIFO, socket or device), not a regular file")]
    NotRegular(String),
    #[error("`{0}` is a directory")]
    IsADirectory(String),
    #[error("`{0}`: a component of the path is not a directory")]
    NotADirectory(String),
    /// `..`, NUL, a relative path where an absolute one is needed.
    #[error("`{0}`: {1}")]
    Invalid(String, &'static str),
    #[error("`{0}`: permission denied")]
    Denied(String),
    /// Out of space, quota, file descriptors or memory.
    #[error("`{0}`: {1}")]
    Exhausted(String, String),
    /// A walk met more than its limits allow.
    #[error("`{0}`: {1}")]
    TooLarge(String, String),
    #[error("`{0}`: {1}")]
    Other(String, String),
}

fn errno(e: Errno, shown: &str) -> FsError {
    let shown = shown.to_string();
    match e {
        Errno::NOENT => FsError::NotFound(shown),
        Errno::ACCESS | Errno::PERM | Errno::ROFS => FsError::Denied(shown),
        Errno::ISDIR => FsError::IsADirectory(shown),
        Errno::NOTDIR => FsError::NotADirectory(shown),
        Errno::NOSPC | Errno::DQUOT | Errno::MFILE | Errno::NFILE | Errno::NOMEM => {
            FsError::Exhausted(shown, io::Error::from(e).to_string())
        }
        e => FsError::Other(shown, io::Error::from(e).to_string()),
    }
}

/// The components of a path below a root: a path such as `/a/b` or `a/b` (a leading `/`
/// means the root itself), empty and `.` components skipped; `..` and NUL refused.
pub fn components(path: &str) -> Result<Vec<&str>, FsError> {
    if path.contains('\0') {
        return Err(FsError::Invalid(path.to_string(), "the path contains NUL"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(FsError::Invalid(path.to_string(), "the path contains `..`")),
            p => parts.push(p),
        }
    }
    Ok(parts)
}

/// What is at a path, without following a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File {
        size: u64,
    },
    Directory,
    Symlink,
    /// A FIFO, socket or device.
    Special,
}

/// Limits of a [`Root::walk`] or a [`Root::glob`].
#[derive(Debug, Clone, Copy)]
pub struct WalkLimits {
    /// Directory entries read, directories included.
    pub max_entries: usize,
    pub max_name_bytes: usize,
    pub max_depth: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_entries: 100_000,
            max_name_bytes: 16 << 20,
            max_depth: 128,
        }
    }
}

/// A walk stopped because the caller's deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrun;

/// A trusted directory, below which nothing is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_root(&self, shown: &str) -> Result<OwnedFd, FsError> {
        rustix::fs::open(
            &self.path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno(e, shown))
    }

    /// Open the directories `dirs` below the root, each relative to the one before with
    /// `O_NOFOLLOW`; with `create`, missing ones are made (mode 0755).
    fn open_dirs(&self, dirs: &[&str], create: bool, shown: &str) -> Result<OwnedFd, FsError> {
        let mut dir = self.open_root(shown)?;
        for name in dirs {
            let next = match rustix::fs::openat(&dir, *name, DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&dir, *name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(errno(e, shown)),
                    }
                    rustix::fs::openat(&dir, *name, DIR_FLAGS, Mode::empty())
                }
                other => other,
            };
            dir = next.map_err(|e| open_error(e, &dir, name, shown))?;
        }
        Ok(dir)
    }

    /// Make the directory `path` (and its parents) below the root.
    pub fn create_dirs(&self, path: &str, shown: &str) -> Result<(), FsError> {
        let parts = components(path)?;
        self.open_dirs(&parts, true, shown).map(|_| ())
    }

    /// What is at `path`, without following a link (`NotFound` when nothing is).
    pub fn kind(&self, path: &str, shown: &str) -> Result<Kind, FsError> {
        let parts = components(path)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Ok(Kind::Directory);
        };
        let dir = self.open_dirs(dirs, false, shown)?;
        let st = rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| errno(e, shown))?;
        Ok(kind_of(&st))
    }

    /// A regular file below the root, for reading.
    pub fn open_read(&self, path: &str, shown: &str) -> Result<File, FsError> {
        let parts = components(path)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(FsError::IsADirectory(shown.to_string()));
        };
        let dir = self.open_dirs(dirs, false, shown)?;
        let fd = rustix::fs::openat(&dir, *name, READ_FLAGS, Mode::empty())
            .map_err(|e| open_error(e, &dir, name, shown))?;
        regular(fd, shown)
    }

    /// Create (or replace) the regular file `path` below the root, making missing parent
    /// directories. Whatever is at the path and is not a directory is removed first (a
    /// link is removed, not followed; a file with other hard links is not written
    /// through), then the file is created anew with `mode`.
    pub fn create(&self, path: &str, mode: u32, shown: &str) -> Result<File, FsError> {
        let parts = components(path)?;
        let Some((name, dirs)) = parts.split_last() else {
            return Err(FsError::IsADirectory(shown.to_string()));
        };
        let dir = self.open_dirs(dirs, true, shown)?;
        match rustix::fs::unlinkat(&dir, *name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(Errno::ISDIR) | Err(Errno::PERM) if is_dir_at(&dir, name) => {
                return Err(FsError::IsADirectory(shown.to_string()));
            }
            Err(e) => return Err(errno(e, shown)),
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
            Mode::from_raw_mode(mode),
        )
        .map_err(|e| open_error(e, &dir, name, shown))?;
        regular(fd, shown)
    }

    /// Everything under the directory `path` that is not a directory, recursively, as
    /// (`/`-separated path relative to it, what it is), sorted by path; a regular file at
    /// `path` gives itself with the relative path `""`. Links, FIFOs, sockets and devices
    /// are listed as such and never followed; `path` itself must be a file or a
    /// directory. `deadline_passed` is asked now and then: a walk of a huge tree stops
    /// there.
    pub fn walk(
        &self,
        path: &str,
        shown: &str,
        limits: WalkLimits,
        deadline_passed: &mut dyn FnMut() -> bool,
    ) -> Result<Result<Vec<(String, Kind)>, FsError>, Overrun> {
        let top = match self.open_any(path, shown) {
            Ok(fd) => fd,
            Err(e) => return Ok(Err(e)),
        };
        match rustix::fs::fstat(&top) {
            Ok(st) => match kind_of(&st) {
                kind @ Kind::File { .. } => return Ok(Ok(vec![(String::new(), kind)])),
                Kind::Directory => {}
                _ => return Ok(Err(FsError::NotRegular(shown.to_string()))),
            },
            Err(e) => return Ok(Err(errno(e, shown))),
        }
        walk_tree(top, shown, limits, deadline_passed)
    }

    /// Open whatever is at `path` (file or directory), without following a link.
    fn open_any(&self, path: &str, shown: &str) -> Result<OwnedFd, FsError> {
        let parts = components(path)?;
        match parts.split_last() {
            None => self.open_root(shown),
            Some((name, dirs)) => {
                let dir = self.open_dirs(dirs, false, shown)?;
                rustix::fs::openat(&dir, *name, READ_FLAGS, Mode::empty())
                    .map_err(|e| open_error(e, &dir, name, shown))
            }
        }
    }

    /// The paths below the root that `pattern` matches (components separated by `/`;
    /// `*`, `?` and `[…]` within a component, `**` for any number of directories, and a
    /// trailing `**` for everything that is not a directory below; leading dots only
    /// matched literally), with what is at each, sorted. Only real directories are
    /// descended into: a link is a match at most, never a way down. The match stays
    /// within `limits` (depth, entries read, bytes of names), or fails as too large.
    pub fn glob(
        &self,
        pattern: &str,
        shown: &str,
        limits: WalkLimits,
    ) -> Result<Vec<(String, Kind)>, FsError> {
        let parts = components(pattern)?;
        let segments: Vec<Segment> = parts
            .iter()
            .map(|p| Segment::parse(p).map_err(|why| FsError::Invalid(shown.to_string(), why)))
            .collect::<Result<_, _>>()?;
        let root = self.open_root(shown)?;
        let mut glob = Glob {
            shown,
            limits,
            read: 0,
            name_bytes: 0,
            out: Vec::new(),
        };
        glob.match_in(&root, "", 0, &segments)?;
        let mut out = glob.out;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }
}

/// One component of a wildcard pattern.
enum Segment {
    Literal(String),
    Pattern(glob::Pattern),
    /// `**`: zero or more directories.
    AnyDirs,
}

impl Segment {
    fn parse(part: &str) -> Result<Segment, &'static str> {
        if part == "**" {
            return Ok(Segment::AnyDirs);
        }
        if part.contains(['*', '?', '[']) {
            return glob::Pattern::new(part)
                .map(Segment::Pattern)
                .map_err(|_| "the wildcard pattern is malformed");
        }
        Ok(Segment::Literal(part.to_string()))
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Segment::Literal(l) => l == name,
            Segment::Pattern(p) => p.matches_with(
                name,
                glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    require_literal_leading_dot: true,
                },
            ),
            Segment::AnyDirs => !name.starts_with('.'),
        }
    }
}

/// The entries of directory `dir` (names and what they are, links not followed), at
/// most `max + 1` of them: one more than `max` says there are too many.
fn entries(dir: &OwnedFd, shown: &str, max: usize) -> Result<Vec<(String, Kind)>, FsError> {
    let mut out = Vec::new();
    let mut read = Dir::read_from(dir).map_err(|e| errno(e, shown))?;
    while let Some(entry) = read.read() {
        let entry = entry.map_err(|e| errno(e, shown))?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        if out.len() > max {
            break;
        }
        let Ok(name) = std::str::from_utf8(raw) else {
            // Neither matched nor refused would be a silent gap: refuse, as walks do.
            return Err(FsError::Invalid(
                shown.to_string(),
                "a file name here is not UTF-8",
            ));
        };
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => out.push((name.to_string(), kind_of(&st))),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(errno(e, shown)),
        }
    }
    Ok(out)
}

/// One wildcard match in progress: what it found and what it has spent of its limits.
struct Glob<'a> {
    shown: &'a str,
    limits: WalkLimits,
    /// Directory entries read so far, directories included.
    read: usize,
    name_bytes: usize,
    out: Vec<(String, Kind)>,
}

impl Glob<'_> {
    fn too_large(&self) -> FsError {
        FsError::TooLarge(
            self.shown.to_string(),
            format!(
                "the pattern reaches more than {} entries, {} directories deep or {} MiB of names",
                self.limits.max_entries,
                self.limits.max_depth,
                self.limits.max_name_bytes >> 20
            ),
        )
    }

    /// The entries of `dir` (each directory is read once per pattern position), counted
    /// against the limits as they are read.
    fn entries(&mut self, dir: &OwnedFd) -> Result<Vec<(String, Kind)>, FsError> {
        let left = self.limits.max_entries.saturating_sub(self.read);
        let found = entries(dir, self.shown, left)?;
        self.read += found.len();
        if self.read > self.limits.max_entries {
            return Err(self.too_large());
        }
        Ok(found)
    }

    fn push(&mut self, path: String, kind: Kind) -> Result<(), FsError> {
        self.name_bytes += path.len();
        if self.name_bytes > self.limits.max_name_bytes {
            return Err(self.too_large());
        }
        self.out.push((path, kind));
        Ok(())
    }

    /// Descend into the real directory `name` of `dir`, `depth` levels below the root.
    fn sub(&self, dir: &OwnedFd, name: &str, depth: usize) -> Result<Option<OwnedFd>, FsError> {
        if depth > self.limits.max_depth {
            return Err(self.too_large());
        }
        open_sub(dir, name)
    }

    /// Match `segments` in `dir` (at `prefix`, `depth` levels below the root).
    fn match_in(
        &mut self,
        dir: &OwnedFd,
        prefix: &str,
        depth: usize,
        segments: &[Segment],
    ) -> Result<(), FsError> {
        if segments.is_empty() {
            return Ok(());
        }
        let listed = self.entries(dir)?;
        self.match_listed(dir, &listed, prefix, depth, segments)
    }

    /// Match `segments` against `listed`, the entries of `dir`.
    fn match_listed(
        &mut self,
        dir: &OwnedFd,
        listed: &[(String, Kind)],
        prefix: &str,
        depth: usize,
        segments: &[Segment],
    ) -> Result<(), FsError> {
        let Some((first, rest)) = segments.split_first() else {
            return Ok(());
        };
        let join = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            }
        };
        for (name, kind) in listed {
            if !first.matches(name) {
                continue;
            }
            let is_dir = *kind == Kind::Directory;
            match first {
                // A trailing `**`: every entry below that is not a directory (links and
                // special files too, so that the caller can refuse them).
                Segment::AnyDirs if rest.is_empty() && !is_dir => {
                    self.push(join(name), *kind)?;
                }
                // `**` as one more real directory, and `**` again below it.
                Segment::AnyDirs if is_dir => {
                    if let Some(sub) = self.sub(dir, name, depth + 1)? {
                        self.match_in(&sub, &join(name), depth + 1, segments)?;
                    }
                }
                Segment::AnyDirs => {}
                _ if rest.is_empty() => self.push(join(name), *kind)?,
                _ if is_dir => {
                    if let Some(sub) = self.sub(dir, name, depth + 1)? {
                        self.match_in(&sub, &join(name), depth + 1, rest)?;
                    }
                }
                _ => {}
            }
        }
        // `**` as zero directories: the rest of the pattern here, on the same listing.
        if matches!(first, Segment::AnyDirs) && !rest.is_empty() {
            self.match_listed(dir, listed, prefix, depth, rest)?;
        }
        Ok(())
    }
}

/// Open the real directory `name` in `dir`; `None` when it went or became a link.
fn open_sub(dir: &OwnedFd, name: &str) -> Result<Option<OwnedFd>, FsError> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => Ok(None),
        Err(e) => Err(errno(e, name)),
    }
}

fn kind_of(st: &rustix::fs::Stat) -> Kind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Kind::File {
            size: u64::try_from(st.st_size).unwrap_or(0),
        },
        FileType::Directory => Kind::Directory,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Special,
    }
}

fn is_dir_at(dir: &OwnedFd, name: &str) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// A descriptor as a [`File`] if it is a regular file, blocking again.
fn regular(fd: OwnedFd, shown: &str) -> Result<File, FsError> {
    let st = rustix::fs::fstat(&fd).map_err(|e| errno(e, shown))?;
    match kind_of(&st) {
        Kind::File { .. } => {}
        Kind::Directory => return Err(FsError::IsADirectory(shown.to_string())),
        _ => return Err(FsError::NotRegular(shown.to_string())),
    }
    let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| errno(e, shown))?;
    rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK).map_err(|e| errno(e, shown))?;
    Ok(File::from(fd))
}

/// Why opening `name` in `dir` failed: a symbolic link is named as such.
fn open_error(e: Errno, dir: &OwnedFd, name: &str, shown: &str) -> FsError {
    if matches!(e, Errno::LOOP | Errno::NOTDIR | Errno::MLINK) {
        match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                return FsError::Symlink(shown.to_string(), name.to_string());
            }
            Ok(_) if e == Errno::NOTDIR => return FsError::NotADirectory(shown.to_string()),
            _ => {}
        }
    }
    errno(e, shown)
}

/// Lists the regular files under the directory `top` (depth first; a directory's
/// descriptor is kept only while some of its subdirectories wait, so at most
/// `max_depth` are open at once).
fn walk_tree(
    top: OwnedFd,
    shown: &str,
    limits: WalkLimits,
    deadline_passed: &mut dyn FnMut() -> bool,
) -> Result<Result<Vec<(String, Kind)>, FsError>, Overrun> {
    struct Pending {
        parent: Rc<OwnedFd>,
        name: String,
        /// The directory's path relative to the top, with a trailing `/`.
        prefix: String,
        depth: usize,
    }
    let mut out: Vec<(String, Kind)> = Vec::new();
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
                    match rustix::fs::openat(&*p.parent, p.name.as_str(), DIR_FLAGS, Mode::empty())
                    {
                        Ok(fd) => (fd, p.prefix, p.depth),
                        // Gone since it was listed, or replaced by a link: not followed.
                        Err(Errno::NOENT | Errno::LOOP | Errno::NOTDIR) => continue,
                        Err(e) => return Ok(Err(errno(e, &join(shown, &p.prefix)))),
                    }
                }
            },
        };
        let fd = Rc::new(fd);
        let mut dir = match Dir::read_from(&*fd) {
            Ok(d) => d,
            Err(e) => return Ok(Err(errno(e, &join(shown, &prefix)))),
        };
        while let Some(entry) = dir.read() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return Ok(Err(errno(e, &join(shown, &prefix)))),
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
                return Ok(Err(FsError::Invalid(
                    join(shown, &prefix),
                    "a file name here is not UTF-8",
                )));
            };
            let st = match rustix::fs::statat(&*fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Ok(Err(errno(e, &join(shown, &prefix)))),
            };
            match kind_of(&st) {
                Kind::Directory => {
                    if seen > limits.max_entries {
                        return Ok(Err(too_many(shown, limits)));
                    }
                    if depth + 1 > limits.max_depth {
                        return Ok(Err(FsError::TooLarge(
                            shown.to_string(),
                            format!("is more than {} directories deep", limits.max_depth),
                        )));
                    }
                    stack.push(Pending {
                        parent: fd.clone(),
                        name: name.to_owned(),
                        prefix: format!("{prefix}{name}/"),
                        depth: depth + 1,
                    });
                }
                // Files, and links, FIFOs, sockets, devices (listed, never followed).
                kind => {
                    let rel = format!("{prefix}{name}");
                    name_bytes += rel.len();
                    if seen > limits.max_entries || name_bytes > limits.max_name_bytes {
                        return Ok(Err(too_many(shown, limits)));
                    }
                    out.push((rel, kind));
                }
            }
        }
    }
    out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Ok(out))
}

fn too_many(shown: &str, limits: WalkLimits) -> FsError {
    FsError::TooLarge(
        shown.to_string(),
        format!(
            "holds more than {} entries (or more than {} MiB of file names)",
            limits.max_entries,
            limits.max_name_bytes >> 20
        ),
    )
}

fn join(shown: &str, prefix: &str) -> String {
    if prefix.is_empty() {
        shown.to_owned()
    } else {
        format!(
            "{}/{}",
            shown.trim_end_matches('/'),
            prefix.trim_end_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/one.txt"), "1").unwrap();
        std::fs::write(root.join("a/b/two.log"), "22").unwrap();
        std::fs::write(root.join("a/.hidden"), "h").unwrap();
        std::fs::create_dir_all(tmp.path().join("outside/deep")).unwrap();
        std::fs::write(tmp.path().join("outside/secret"), "s").unwrap();
        std::fs::write(tmp.path().join("outside/deep/secret.log"), "s").unwrap();
        symlink(tmp.path().join("outside"), root.join("a/linkdir")).unwrap();
        symlink(tmp.path().join("outside/secret"), root.join("a/link.txt")).unwrap();
        (tmp, Root::new(root))
    }

    #[test]
    fn links_are_refused_never_followed() {
        let (_tmp, r) = tree();
        let mut s = String::new();
        r.open_read("a/one.txt", "/a/one.txt")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "1");
        assert_eq!(
            r.open_read("/a/link.txt", "/a/link.txt").unwrap_err(),
            FsError::Symlink("/a/link.txt".into(), "link.txt".into())
        );
        assert!(matches!(
            r.open_read("/a/linkdir/secret", "x").unwrap_err(),
            FsError::Symlink(_, _)
        ));
        assert!(matches!(
            r.open_read("/a/../../outside/secret", "x").unwrap_err(),
            FsError::Invalid(_, _)
        ));
        assert_eq!(r.kind("/a/link.txt", "x").unwrap(), Kind::Symlink);
        // Writing through a link replaces the link; the target is untouched.
        r.create("/a/link.txt", 0o644, "x")
            .unwrap()
            .write_all(b"new")
            .unwrap();
        assert_eq!(
            std::fs::read(_tmp.path().join("outside/secret")).unwrap(),
            b"s"
        );
        assert!(r.create("/a/linkdir/x", 0o644, "x").is_err());
        assert!(!_tmp.path().join("outside/x").exists());
    }

    #[test]
    fn walks_and_globs_stay_out_of_linked_directories() {
        let (_tmp, r) = tree();
        let files = r
            .walk("/a", "/a", WalkLimits::default(), &mut || false)
            .unwrap()
            .unwrap();
        let names: Vec<(&str, Kind)> = files.iter().map(|(n, k)| (n.as_str(), *k)).collect();
        assert_eq!(
            names,
            [
                (".hidden", Kind::File { size: 1 }),
                ("b/two.log", Kind::File { size: 2 }),
                ("link.txt", Kind::Symlink),
                ("linkdir", Kind::Symlink),
                ("one.txt", Kind::File { size: 1 }),
            ]
        );

        let matched = |p: &str| -> Vec<String> {
            r.glob(p, p, WalkLimits::default())
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        assert_eq!(matched("/a/*.txt"), ["a/link.txt", "a/one.txt"]);
        assert_eq!(
            matched("/a/**/*.log"),
            ["a/b/two.log"],
            "not a/linkdir/deep/secret.log"
        );
        assert_eq!(matched("/**/secret*"), Vec::<String>::new());
        assert_eq!(
            matched("/a/*"),
            ["a/b", "a/link.txt", "a/linkdir", "a/one.txt"]
        );
        let kinds = r.glob("/a/link*", "x", WalkLimits::default()).unwrap();
        assert_eq!(kinds[0].1, Kind::Symlink, "a match, never a way down");
        // A trailing `**` is everything below that is not a directory, links included
        // (so that a caller refuses them) and never followed; dot names only literally.
        assert_eq!(
            matched("/a/**"),
            ["a/b/two.log", "a/link.txt", "a/linkdir", "a/one.txt"]
        );
        assert_eq!(matched("/a/b/**"), ["a/b/two.log"]);
    }

    #[test]
    fn walks_and_globs_keep_to_their_limits() {
        let tmp = tempfile::tempdir().unwrap();
        // Directories alone, no files: they still count.
        let mut deep = tmp.path().to_path_buf();
        for i in 0..6 {
            std::fs::create_dir(deep.join(format!("w{i}"))).unwrap();
            deep.push("d");
            std::fs::create_dir(&deep).unwrap();
        }
        let r = Root::new(tmp.path());
        let limits = |max_entries, max_depth| WalkLimits {
            max_entries,
            max_name_bytes: 1 << 20,
            max_depth,
        };
        let walk = |l| r.walk("/", "/", l, &mut || false).unwrap();
        assert_eq!(walk(limits(100, 100)).unwrap(), Vec::new());
        assert!(matches!(walk(limits(5, 100)), Err(FsError::TooLarge(..))));
        assert!(matches!(walk(limits(100, 3)), Err(FsError::TooLarge(..))));

        let glob = |p: &str, l| r.glob(p, p, l);
        assert_eq!(glob("/**/w5", limits(100, 100)).unwrap().len(), 1);
        // Each of the 12 entries is read once, whatever `**` tries at each level.
        assert_eq!(glob("/**/w5", limits(12, 100)).unwrap().len(), 1);
        assert!(matches!(
            glob("/**/w5", limits(11, 100)),
            Err(FsError::TooLarge(..))
        ));
        assert!(matches!(
            glob("/**/w5", limits(5, 100)),
            Err(FsError::TooLarge(..))
        ));
        assert!(matches!(
            glob("/**", limits(100, 3)),
            Err(FsError::TooLarge(..))
        ));
        assert!(matches!(
            glob("/d/d/d/d/*", limits(100, 3)),
            Err(FsError::TooLarge(..))
        ));
        assert_eq!(glob("/d/d/*", limits(100, 3)).unwrap().len(), 2);
    }

    #[test]
    fn special_files_are_not_regular() {
        let (_tmp, r) = tree();
        let fifo = r.path().join("a/fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Opened without blocking, then refused.
        assert_eq!(
            r.open_read("/a/fifo", "/a/fifo").unwrap_err(),
            FsError::NotRegular("/a/fifo".into())
        );
        assert_eq!(r.kind("/a/fifo", "x").unwrap(), Kind::Special);
    }

    #[test]
    fn creating_makes_parents_and_refuses_directories() {
        let (_tmp, r) = tree();
        r.create("/new/deep/f", 0o600, "f").unwrap();
        assert!(r.path().join("new/deep/f").is_file());
        assert_eq!(
            r.create("/a/b", 0o644, "/a/b").unwrap_err(),
            FsError::IsADirectory("/a/b".into())
        );
        r.create_dirs("/x/y", "/x/y").unwrap();
        assert_eq!(r.kind("/x/y", "x").unwrap(), Kind::Directory);
    }
}
