//! The embedded object store: each bucket a directory under the store's root, each
//! object a regular file at its key's path, its SHA-256 kept with it as an extended
//! attribute.
//!
//! - Writes are atomic: an upload is written to a temporary file in `<root>/.tmp`
//!   (bucket names cannot begin with `.`), hashed as it is written, synced, given its
//!   hash, and renamed over the key's path only once complete. A reader sees the old
//!   object or the new one, never part of one; an abandoned upload leaves nothing.
//! - Keys are checked by `tessera_core::objects` before any path is built, so no key
//!   leaves its bucket (`..`, absolute keys, empty segments are refused).
//! - Buckets exist once something was put in them (S3's buckets are made by an
//!   operator; here there is nothing to configure).
//! - Keys are paths, so one key cannot be both an object and a folder of objects
//!   (`a` and `a/b`): the second is refused with [`ObjectError::Conflict`].
//! - Listings are in bytewise key order, as S3's: each directory's entries are sorted
//!   with `/` appended to directory names, which is exactly the order of the keys under
//!   them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tessera_core::objects::{check_bucket, check_key, check_prefix};

use crate::{MAX_LIST, ObjectError, ObjectInfo, ObjectMeta, ObjectRead, ObjectStore, ObjectUpload};

/// The extended attribute holding an object's SHA-256 (lower-case hex).
const HASH_ATTR: &str = "user.tessera.sha256";
/// Where uploads are written before they are renamed into place.
const TMP_DIR: &str = ".tmp";

/// The embedded object store. Cheap to share (`Arc`); every method blocks on the file
/// system.
#[derive(Debug)]
pub struct EmbeddedObjectStore {
    root: PathBuf,
    tmp: PathBuf,
    /// Whether the file system keeps extended attributes; when it does not, hashes are
    /// computed when asked for.
    xattrs: AtomicBool,
    uploads: AtomicU64,
}

impl EmbeddedObjectStore {
    /// Open (or create) the store at `root`, made readable by this user only. Removes
    /// what uploads that never finished left behind (a crash mid-upload).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<EmbeddedObjectStore> {
        use std::os::unix::fs::PermissionsExt;
        let root = root.into();
        fs::create_dir_all(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))?;
        let tmp = root.join(TMP_DIR);
        match fs::remove_dir_all(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir(&tmp)?;
        Ok(EmbeddedObjectStore {
            root,
            tmp,
            xattrs: AtomicBool::new(true),
            uploads: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, ObjectError> {
        check_bucket(bucket)?;
        Ok(self.root.join(bucket))
    }

    fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectError> {
        check_key(key)?;
        Ok(self.bucket_dir(bucket)?.join(key))
    }

    /// Open an object's file; `NotFound` for a missing key or a folder.
    fn open_object(&self, bucket: &str, key: &str) -> Result<(File, fs::Metadata), ObjectError> {
        let path = self.object_path(bucket, key)?;
        let file = File::open(&path).map_err(|e| io_error(e, bucket, key))?;
        let meta = file.metadata().map_err(|e| io_error(e, bucket, key))?;
        if !meta.is_file() {
            return Err(ObjectError::NotFound);
        }
        Ok((file, meta))
    }

    fn stored_hash(&self, file: &File) -> Option<String> {
        if !self.xattrs.load(Ordering::Relaxed) {
            return None;
        }
        let mut buf = [0u8; 64];
        match rustix::fs::fgetxattr(file, HASH_ATTR, &mut buf[..]) {
            Ok(64) => std::str::from_utf8(&buf).ok().map(str::to_string),
            _ => None,
        }
    }

    /// The content type and metadata kept with the object (none on a file system without
    /// extended attributes).
    fn stored_meta(&self, file: &File) -> ObjectMeta {
        if !self.xattrs.load(Ordering::Relaxed) {
            return ObjectMeta::default();
        }
        let mut buf = vec![0u8; MAX_META_BYTES];
        match rustix::fs::fgetxattr(file, META_ATTR, &mut buf[..]) {
            Ok(n) => decode_meta(&buf[..n.min(buf.len())]),
            Err(_) => ObjectMeta::default(),
        }
    }

    /// The object's SHA-256: kept with it, or computed (and kept) for a file put there by
    /// hand or on a file system without extended attributes.
    fn hash(&self, file: &mut File, bucket: &str, key: &str) -> Result<String, ObjectError> {
        if let Some(h) = self.stored_hash(file) {
            return Ok(h);
        }
        let mut hasher = Sha256::new();
        io::copy(file, &mut hasher).map_err(|e| io_error(e, bucket, key))?;
        let h = hex(&hasher.finalize());
        self.keep_hash(file, &h);
        Ok(h)
    }

    fn keep_hash(&self, file: &File, hex: &str) {
        if !self.xattrs.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = rustix::fs::fsetxattr(
            file,
            HASH_ATTR,
            hex.as_bytes(),
            rustix::fs::XattrFlags::empty(),
        ) && e == rustix::io::Errno::NOTSUP
        {
            self.xattrs.store(false, Ordering::Relaxed);
            tracing::warn!(root = %self.root.display(), "the object store's file system keeps no extended attributes; object hashes are computed when asked for");
        }
    }
}

/// The extended attribute holding an object's content type and metadata.
const META_ATTR: &str = "user.tessera.meta";
/// The most bytes of content type and metadata an object keeps (S3 allows 2 KiB of
/// user metadata).
pub const MAX_META_BYTES: usize = 4096;

/// `content type` then `name=value` lines (names and values cannot hold a newline: the
/// API refuses them).
fn encode_meta(meta: &ObjectMeta) -> Vec<u8> {
    if meta.is_empty() {
        return Vec::new();
    }
    let mut out = meta.content_type.clone().unwrap_or_default();
    for (k, v) in &meta.metadata {
        out.push('\n');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out.into_bytes()
}

fn decode_meta(bytes: &[u8]) -> ObjectMeta {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.split('\n');
    let content_type = lines.next().filter(|c| !c.is_empty()).map(str::to_string);
    let metadata = lines
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ObjectMeta {
        content_type,
        metadata,
    }
}

fn io_error(e: io::Error, bucket: &str, key: &str) -> ObjectError {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => ObjectError::NotFound,
        io::ErrorKind::PermissionDenied => ObjectError::Denied(format!("s3://{bucket}/{key}: {e}")),
        _ => ObjectError::Other(format!("s3://{bucket}/{key}: {e}")),
    }
}

fn modified_ms(meta: &fs::Metadata) -> Option<u64> {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn info(key: String, meta: &fs::Metadata, sha256: Option<String>) -> ObjectInfo {
    ObjectInfo {
        key,
        size: meta.len(),
        meta: ObjectMeta::default(),
        etag: sha256.clone(),
        modified_ms: modified_ms(meta),
        sha256,
    }
}

impl ObjectStore for EmbeddedObjectStore {
    fn describe(&self) -> String {
        format!("embedded object store at {}", self.root.display())
    }

    fn head(&self, bucket: &str, key: &str, _: Instant) -> Result<ObjectInfo, ObjectError> {
        let (mut file, meta) = self.open_object(bucket, key)?;
        let sha = self.hash(&mut file, bucket, key)?;
        let mut i = info(key.to_string(), &meta, Some(sha));
        i.meta = self.stored_meta(&file);
        Ok(i)
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
        _: Instant,
    ) -> Result<Vec<ObjectInfo>, ObjectError> {
        let dir = self.bucket_dir(bucket)?;
        check_prefix(prefix)?;
        if limit == 0 {
            return Err(ObjectError::InvalidInput("limit must be at least 1".into()));
        }
        let mut walk = Walk {
            store: self,
            prefix,
            start_after,
            limit: limit.min(MAX_LIST) as usize,
            out: Vec::new(),
        };
        match walk.dir(&dir, "") {
            Ok(()) => Ok(walk.out),
            Err(e) if e.kind() == io::ErrorKind::NotFound && walk.out.is_empty() => Ok(Vec::new()),
            Err(e) => Err(ObjectError::Other(format!(
                "listing s3://{bucket}/{prefix}: {e}"
            ))),
        }
    }

    fn get(&self, bucket: &str, key: &str, _: Instant) -> Result<ObjectRead, ObjectError> {
        // Metadata and bytes from one open file: a put renames a new file over the
        // key's path and never changes this one.
        // The hash only when it is kept: computing it would read the object twice.
        let (file, meta) = self.open_object(bucket, key)?;
        let mut i = info(key.to_string(), &meta, self.stored_hash(&file));
        i.meta = self.stored_meta(&file);
        Ok(ObjectRead {
            info: i,
            body: Box::new(file),
        })
    }

    fn get_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
        _: Instant,
    ) -> Result<ObjectRead, ObjectError> {
        use std::io::{Read as _, Seek as _};
        let (mut file, meta) = self.open_object(bucket, key)?;
        let mut info = info(key.to_string(), &meta, self.stored_hash(&file));
        info.meta = self.stored_meta(&file);
        file.seek(std::io::SeekFrom::Start(start))
            .map_err(|e| io_error(e, bucket, key))?;
        Ok(ObjectRead {
            info,
            body: Box::new(file.take(end.saturating_sub(start))),
        })
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
        _: Instant,
    ) -> Result<Box<dyn ObjectUpload>, ObjectError> {
        let dest = self.object_path(bucket, key)?;
        let encoded_meta = encode_meta(meta);
        if encoded_meta.len() > MAX_META_BYTES {
            return Err(ObjectError::InvalidInput(format!(
                "the content type and metadata take {} bytes, more than {MAX_META_BYTES}",
                encoded_meta.len()
            )));
        }
        let n = self.uploads.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = self.tmp.join(format!("{}-{n}-{nanos}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| ObjectError::Other(format!("starting the upload: {e}")))?;
        Ok(Box::new(EmbeddedUpload {
            store: StoreRef {
                xattrs: self.xattrs.load(Ordering::Relaxed),
                bucket_dir: self.root.join(bucket),
            },
            bucket: bucket.to_string(),
            key: key.to_string(),
            file: Some(file),
            tmp,
            dest,
            size,
            written: 0,
            hasher: Sha256::new(),
            meta: encoded_meta,
        }))
    }

    fn delete(&self, bucket: &str, key: &str, _: Instant) -> Result<(), ObjectError> {
        let path = self.object_path(bucket, key)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| io_error(e, bucket, key))?;
        if !meta.is_file() {
            return Err(ObjectError::NotFound);
        }
        fs::remove_file(&path).map_err(|e| io_error(e, bucket, key))?;
        // Folders left empty go too (the bucket stays); one that is not empty, or that a
        // concurrent upload just filled, stops this.
        let bucket_dir = self.root.join(bucket);
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != bucket_dir && d.starts_with(&bucket_dir)) {
            if fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn buckets(&self, _: Instant) -> Result<Vec<String>, ObjectError> {
        let mut names: Vec<String> = fs::read_dir(&self.root)
            .map_err(|e| ObjectError::Other(format!("listing buckets: {e}")))?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| check_bucket(n).is_ok())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// A depth-first listing in key order.
struct Walk<'a> {
    store: &'a EmbeddedObjectStore,
    prefix: &'a str,
    start_after: Option<&'a str>,
    limit: usize,
    out: Vec<ObjectInfo>,
}

impl Walk<'_> {
    /// List directory `dir`, whose objects' keys begin with `above` ("" or "a/b/").
    fn dir(&mut self, dir: &Path, above: &str) -> io::Result<()> {
        let mut entries: Vec<(String, bool, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue; // not a key this store wrote
            };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                entries.push((format!("{above}{name}/"), true, entry.path()));
            } else if kind.is_file() {
                entries.push((format!("{above}{name}"), false, entry.path()));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, is_dir, path) in entries {
            if self.out.len() >= self.limit {
                return Ok(());
            }
            if is_dir {
                let wanted = key.starts_with(self.prefix) || self.prefix.starts_with(&key);
                // Every key under `key` sorts after `key` and before anything greater
                // that does not start with it.
                let passed = self
                    .start_after
                    .is_some_and(|s| s >= key.as_str() && !s.starts_with(&key));
                if wanted && !passed {
                    match self.dir(&path, &key) {
                        // Removed meanwhile (its last object was deleted).
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        other => other?,
                    }
                }
            } else if key.starts_with(self.prefix)
                && self.start_after.is_none_or(|s| key.as_str() > s)
            {
                let Ok(file) = File::open(&path) else {
                    continue; // deleted meanwhile
                };
                let meta = file.metadata()?;
                let sha = self.store.stored_hash(&file);
                self.out.push(info(key, &meta, sha));
            }
        }
        Ok(())
    }
}

/// What an upload needs of its store once started.
struct StoreRef {
    xattrs: bool,
    bucket_dir: PathBuf,
}

struct EmbeddedUpload {
    store: StoreRef,
    bucket: String,
    key: String,
    /// `None` once finished (or failed).
    file: Option<File>,
    tmp: PathBuf,
    dest: PathBuf,
    size: u64,
    written: u64,
    hasher: Sha256,
    /// The content type and metadata, encoded (empty: none).
    meta: Vec<u8>,
}

impl Write for EmbeddedUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("the upload has ended"))?;
        if self.written + buf.len() as u64 > self.size {
            return Err(io::Error::other(ObjectError::InvalidInput(format!(
                "more than the {} bytes announced",
                self.size
            ))));
        }
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl EmbeddedUpload {
    fn clash(&self) -> ObjectError {
        ObjectError::Conflict(format!(
            "s3://{}/{}: the embedded store keeps keys as paths, and this key would be both \
             an object and a folder of other objects",
            self.bucket, self.key
        ))
    }

    fn complete(&mut self) -> Result<u64, ObjectError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| ObjectError::Other("the upload has ended".into()))?;
        if self.written != self.size {
            return Err(ObjectError::InvalidInput(format!(
                "{} bytes were written, {} announced",
                self.written, self.size
            )));
        }
        let other = |what: &str, e: io::Error| {
            ObjectError::Other(format!("s3://{}/{}: {what}: {e}", self.bucket, self.key))
        };
        file.sync_data().map_err(|e| other("syncing", e))?;
        if self.store.xattrs && !self.meta.is_empty() {
            // Kept on the file before it takes the key's place: readers see the new bytes
            // with their own type and metadata.
            let _ = rustix::fs::fsetxattr(
                &file,
                META_ATTR,
                &self.meta,
                rustix::fs::XattrFlags::empty(),
            );
        }
        if self.store.xattrs {
            let hash = hex(&std::mem::take(&mut self.hasher).finalize());
            // A file system without extended attributes: the hash is computed on demand.
            let _ = rustix::fs::fsetxattr(
                &file,
                HASH_ATTR,
                hash.as_bytes(),
                rustix::fs::XattrFlags::empty(),
            );
        }
        drop(file);
        // Folders this upload makes must be synced too, or a crash could lose them.
        let made_folders = self.dest.parent().is_some_and(|p| !p.is_dir());
        // A concurrent delete may remove an emptied parent folder between the two
        // steps: make it again.
        for attempt in 0..3 {
            if let Some(parent) = self.dest.parent()
                && parent.starts_with(&self.store.bucket_dir)
            {
                match fs::create_dir_all(parent) {
                    Ok(()) => {}
                    // A concurrent delete took a folder it had just made.
                    Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists
                        ) =>
                    {
                        return Err(self.clash());
                    }
                    Err(e) => return Err(other("making its folder", e)),
                }
            }
            match fs::rename(&self.tmp, &self.dest) {
                Ok(()) => {
                    self.sync_folders(made_folders);
                    return Ok(self.written);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < 2 => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::IsADirectory
                            | io::ErrorKind::DirectoryNotEmpty
                            | io::ErrorKind::NotADirectory
                    ) =>
                {
                    return Err(self.clash());
                }
                Err(e) => return Err(other("storing", e)),
            }
        }
        Err(ObjectError::Other(format!(
            "s3://{}/{}: its folder kept disappearing",
            self.bucket, self.key
        )))
    }
}

impl EmbeddedUpload {
    /// Make the rename durable (a crash after `finish` returned must not lose the
    /// object): its folder, and when this upload made folders, every folder up to the
    /// store's root. Best effort: the object is stored either way.
    fn sync_folders(&self, made_folders: bool) {
        let root = self.store.bucket_dir.parent();
        let mut dir = self.dest.parent();
        while let Some(d) = dir {
            if let Err(e) = File::open(d).and_then(|f| f.sync_all()) {
                tracing::warn!(bucket = %self.bucket, key = %self.key, error = %e, "syncing the object's folder failed");
                return;
            }
            if !made_folders || Some(d) == root {
                return;
            }
            dir = d.parent();
        }
    }
}

impl ObjectUpload for EmbeddedUpload {
    fn finish(mut self: Box<Self>) -> Result<u64, ObjectError> {
        self.complete()
    }
}

impl Drop for EmbeddedUpload {
    fn drop(&mut self) {
        // Abandoned or failed: the temporary file goes (after a rename it is gone).
        self.file = None;
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn put(
        s: &EmbeddedObjectStore,
        bucket: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<u64, ObjectError> {
        let mut u = s.put(
            bucket,
            key,
            bytes.len() as u64,
            &ObjectMeta::default(),
            soon(),
        )?;
        u.write_all(bytes)
            .map_err(|e| ObjectError::Other(e.to_string()))?;
        u.finish()
    }

    fn get(s: &EmbeddedObjectStore, bucket: &str, key: &str) -> Vec<u8> {
        let mut out = Vec::new();
        s.get(bucket, key, soon())
            .unwrap()
            .body
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn keys(v: &[ObjectInfo]) -> Vec<&str> {
        v.iter().map(|i| i.key.as_str()).collect()
    }

    #[test]
    fn a_read_keeps_the_version_it_opened() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedObjectStore::open(dir.path().join("objects")).unwrap();
        put(&s, "b", "k", b"old").unwrap();
        let mut read = s.get("b", "k", soon()).unwrap();
        put(&s, "b", "k", b"newer").unwrap();
        let mut bytes = Vec::new();
        read.body.read_to_end(&mut bytes).unwrap();
        assert_eq!((read.info.size, bytes.as_slice()), (3, &b"old"[..]));
        // sha256("old")
        assert_eq!(
            read.info.sha256.as_deref(),
            Some("cba06b5736faf67e54b07b561eae94395e774c517a7d910a54369e1263ccfbd4")
        );
        assert_eq!(s.get("b", "k", soon()).unwrap().info.size, 5);
    }

    #[test]
    fn put_get_head_delete_round_trip_with_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedObjectStore::open(dir.path().join("objects")).unwrap();
        assert_eq!(put(&s, "in", "data/x.txt", b"hello\n").unwrap(), 6);
        assert_eq!(get(&s, "in", "data/x.txt"), b"hello\n");
        let h = s.head("in", "data/x.txt", soon()).unwrap();
        assert_eq!(h.size, 6);
        // sha256("hello\n")
        assert_eq!(
            h.sha256.as_deref(),
            Some("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03")
        );
        assert!(h.modified_ms.is_some());
        assert_eq!(s.buckets(soon()).unwrap(), ["in"]);
        s.delete("in", "data/x.txt", soon()).unwrap();
        assert_eq!(
            s.head("in", "data/x.txt", soon()),
            Err(ObjectError::NotFound)
        );
        assert_eq!(
            s.delete("in", "data/x.txt", soon()),
            Err(ObjectError::NotFound)
        );
        // The emptied folder went with it; the bucket stays.
        assert!(!dir.path().join("objects/in/data").exists());
        assert_eq!(s.buckets(soon()).unwrap(), ["in"]);
    }

    #[test]
    fn a_hand_placed_file_gets_its_hash_computed() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedObjectStore::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("b0b")).unwrap();
        fs::write(dir.path().join("b0b/k"), b"hello\n").unwrap();
        let listed = s.list("b0b", "", None, 10, soon()).unwrap();
        assert_eq!(listed[0].sha256, None, "listings do not read content");
        let h = s.head("b0b", "k", soon()).unwrap();
        assert!(h.sha256.unwrap().starts_with("5891b5b5"));
        // Kept from then on.
        assert!(
            s.list("b0b", "", None, 10, soon()).unwrap()[0]
                .sha256
                .is_some()
        );
    }

    #[test]
    fn keys_that_leave_their_bucket_are_refused_before_any_path_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedObjectStore::open(dir.path().join("objects")).unwrap();
        fs::write(dir.path().join("secret"), b"s").unwrap();
        for key in [
            "../secret",
            "../../secret",
            "/etc/passwd",
            "a/../../secret",
            "a//b",
            "dir/",
        ] {
            assert!(
                matches!(
                    s.put("in", key, 1, &ObjectMeta::default(), soon()),
                    Err(ObjectError::InvalidInput(_))
                ),
                "{key}"
            );
            assert!(
                matches!(s.get("in", key, soon()), Err(ObjectError::InvalidInput(_))),
                "{key}"
            );
            assert!(matches!(
                s.head("in", key, soon()),
                Err(ObjectError::InvalidInput(_))
            ));
            assert!(matches!(
                s.delete("in", key, soon()),
                Err(ObjectError::InvalidInput(_))
            ));
        }
        for bucket in ["..", ".tmp", "a/b", "UP"] {
            assert!(matches!(
                s.put(bucket, "k", 1, &ObjectMeta::default(), soon()),
                Err(ObjectError::InvalidInput(_))
            ));
            assert!(matches!(
                s.list(bucket, "", None, 1, soon()),
                Err(ObjectError::InvalidInput(_))
            ));
        }
        assert!(matches!(
            s.list("in", "../", None, 1, soon()),
            Err(ObjectError::InvalidInput(_))
        ));
        assert_eq!(fs::read(dir.path().join("secret")).unwrap(), b"s");
    }

    #[test]
    fn an_upload_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedObjectStore::open(dir.path()).unwrap();
        put(&s, "b00", "k", b"old").unwrap();
        // Abandoned half way: the old object stays, nothing is left behind.
        let mut u = s
            .put("b00", "k", 10, &ObjectMeta::default(), soon())
            .unwrap();
        u.write_all(b"new").unwrap();
        drop(u);
        assert_eq!(get(&s, "b00", "k"), b"old");
        // Too short, too long.
        let mut u = s
            .put("b00", "k", 10, &ObjectMeta::default(), soon())
            .unwrap();
        u.write_all(b"new").unwrap();
        assert!(matches!(u.finish(), Err(ObjectError::InvalidInput(_))));
        let mut u = s
            .put("b00", "k", 2, &ObjectMeta::default(), soon())
            .unwrap();
        assert!(u.write_all(b"new").is_err());
        drop(u);
        assert_eq!(get(&s, "b00", "k"), b"old");
        assert_eq!(fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        // Reopening clears what a crash left in the temporary folder.
        fs::write(dir.path().join(".tmp/stale"), b"x").unwrap();
        let s = EmbeddedObjectStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join(".tmp")).unwrap().count(), 0);
        assert_eq!(get(&s, "b00", "k"), b"old");
    }

    #[test]
    fn a_key_cannot_be_an_object_and_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedObjectStore::open(dir.path()).unwrap();
        put(&s, "b00", "a", b"1").unwrap();
        assert!(matches!(
            put(&s, "b00", "a/b", b"2"),
            Err(ObjectError::Conflict(_))
        ));
        put(&s, "b00", "c/d", b"3").unwrap();
        assert!(matches!(
            put(&s, "b00", "c", b"4"),
            Err(ObjectError::Conflict(_))
        ));
        // A folder is not an object.
        assert_eq!(s.head("b00", "c", soon()), Err(ObjectError::NotFound));
        assert_eq!(s.delete("b00", "c", soon()), Err(ObjectError::NotFound));
        assert_eq!(get(&s, "b00", "c/d"), b"3");
    }

    #[test]
    fn listings_are_in_key_order_with_prefix_and_paging() {
        let dir = tempfile::tempdir().unwrap();
        let s = EmbeddedObjectStore::open(dir.path()).unwrap();
        // '-' (0x2d) sorts before '/' (0x2f): "a-c" comes before "a/b".
        let all = ["a-c", "a/b", "a/z/1", "a0", "b/x", "ba"];
        for k in all {
            put(&s, "b00", k, k.as_bytes()).unwrap();
        }
        let listed = s.list("b00", "", None, 100, soon()).unwrap();
        assert_eq!(keys(&listed), all);
        assert_eq!(listed[1].size, 3);
        assert_eq!(
            keys(&s.list("b00", "a/", None, 100, soon()).unwrap()),
            ["a/b", "a/z/1"]
        );
        assert_eq!(
            keys(&s.list("b00", "a", None, 100, soon()).unwrap()),
            ["a-c", "a/b", "a/z/1", "a0"]
        );
        assert_eq!(
            keys(&s.list("b00", "b", None, 100, soon()).unwrap()),
            ["b/x", "ba"]
        );
        // Paging: each page continues after the last key of the one before.
        let mut paged = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s.list("b00", "", after.as_deref(), 2, soon()).unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|i| i.key.clone());
            paged.extend(page.into_iter().map(|i| i.key));
        }
        assert_eq!(paged, all);
        assert_eq!(
            keys(&s.list("b00", "", Some("a/m"), 100, soon()).unwrap()),
            ["a/z/1", "a0", "b/x", "ba"]
        );
        assert!(s.list("nobucket", "", None, 10, soon()).unwrap().is_empty());
    }

    proptest::proptest! {
        /// Whatever keys are stored, a listing is exactly the sorted keys under the
        /// prefix, and paging through it loses and repeats nothing.
        #[test]
        fn listing_equals_sorted_keys(
            raw in proptest::collection::btree_set("[a-c\\-.]{1,3}(/[a-c\\-.]{1,3}){0,2}", 1..30),
            page in 1u32..5,
            prefix in "[a-c/]{0,2}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let s = EmbeddedObjectStore::open(dir.path()).unwrap();
            let mut stored = Vec::new();
            for k in &raw {
                if check_key(k).is_ok() && put(&s, "b00", k, b"x").is_ok() {
                    stored.push(k.clone());
                }
            }
            stored.sort();
            let want: Vec<String> = stored.into_iter().filter(|k| k.starts_with(&prefix)).collect();
            if check_prefix(&prefix).is_err() {
                return Ok(());
            }
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let p = s.list("b00", &prefix, after.as_deref(), page, soon()).unwrap();
                if p.is_empty() { break; }
                after = p.last().map(|i| i.key.clone());
                got.extend(p.into_iter().map(|i| i.key));
            }
            proptest::prop_assert_eq!(got, want);
        }
    }
}
