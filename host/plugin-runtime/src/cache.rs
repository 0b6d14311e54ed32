//! The on-disk cache of compiled components.
//!
//! An entry is keyed by the SHA-256 of the component's bytes and a digest of the engine's
//! `precompile_compatibility_hash` (target, wasmtime version, every setting that changes
//! generated code), so a different engine configuration or wasmtime version simply misses.
//!
//! Loading a precompiled artifact runs its machine code, so the host must only ever load
//! artifacts it produced itself. Every entry is therefore authenticated: it carries an
//! HMAC-SHA256 tag over its key and its bytes, made with a random per-installation key
//! (`cache-key`, 32 bytes, mode 0600, in a cache directory of mode 0700). An entry whose
//! tag does not verify (tampered, truncated, written by someone without the key, or moved
//! under another component's name) is rejected and the component is recompiled.

use std::fs::{self, File, OpenOptions};
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::TryRngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "cache-key";
const KEY_LEN: usize = 32;
/// The first bytes of every entry: format and version.
const MAGIC: &[u8; 8] = b"TSPCWv1\0";
const TAG_LEN: usize = 32;
/// Domain separation for the HMAC input.
const DOMAIN: &[u8] = b"tessera-plugin-cache/v1\0";

/// What an entry is stored under: the component's content and the engine's compatibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheKey {
    pub component_sha256: [u8; 32],
    pub engine: [u8; 32],
}

impl CacheKey {
    fn file_name(&self) -> String {
        format!(
            "{}-{}.cwasm",
            hex(&self.component_sha256),
            &hex(&self.engine)[..16]
        )
    }
}

/// The outcome of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// An authenticated artifact this installation wrote.
    Hit(Vec<u8>),
    /// Nothing stored under this key.
    Miss,
    /// Something is stored but it is not ours (or not intact); the reason says what.
    Rejected(String),
}

/// A directory of authenticated compiled artifacts.
pub struct ArtifactCache {
    dir: PathBuf,
    key: [u8; KEY_LEN],
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir`: makes the directory private and
    /// reads the installation key, generating it on first use.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let key = load_or_create_key(dir)?;
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file an entry is stored in.
    pub fn path_of(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    fn tag(&self, key: &CacheKey, artifact: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(DOMAIN);
        mac.update(&key.component_sha256);
        mac.update(&key.engine);
        mac.update(&(artifact.len() as u64).to_le_bytes());
        mac.update(artifact);
        mac
    }

    /// Reads and authenticates the entry for `key`.
    pub fn load(&self, key: &CacheKey) -> Lookup {
        let path = self.path_of(key);
        let mut bytes = Vec::new();
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return Lookup::Rejected(format!("cannot read {}: {e}", path.display())),
        }
        if bytes.len() < MAGIC.len() + TAG_LEN || &bytes[..MAGIC.len()] != MAGIC {
            return Lookup::Rejected(format!("{} is not a cache entry", path.display()));
        }
        let tag_end = MAGIC.len() + TAG_LEN;
        let (tag, artifact) = (&bytes[MAGIC.len()..tag_end], &bytes[tag_end..]);
        // Constant-time comparison.
        if self.tag(key, artifact).verify_slice(tag).is_err() {
            return Lookup::Rejected(format!(
                "{} fails authentication (not written by this installation, or altered)",
                path.display()
            ));
        }
        bytes.drain(..tag_end);
        Lookup::Hit(bytes)
    }

    /// Stores `artifact` under `key` (atomically: a temporary file renamed into place).
    pub fn store(&self, key: &CacheKey, artifact: &[u8]) -> io::Result<()> {
        let tag = self.tag(key, artifact).finalize().into_bytes();
        let path = self.path_of(key);
        let tmp = self.dir.join(format!(
            ".{}.{}.{:016x}.tmp",
            key.file_name(),
            std::process::id(),
            random_u64()
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(&tag)?;
            f.write_all(artifact)?;
            f.sync_data()?;
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

fn load_or_create_key(dir: &Path) -> io::Result<[u8; KEY_LEN]> {
    let path = dir.join(KEY_FILE);
    for _ in 0..3 {
        match read_key(&path) {
            Ok(Some(key)) => return Ok(key),
            Ok(None) => {
                // Wrong size or readable by others: no longer a secret. Replace it (which
                // invalidates every entry signed with it).
                tracing::warn!(path = %path.display(), "plugin cache key is unusable; replacing it");
                write_key(dir, &path, true)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // First use. `hard_link` refuses to replace, so when two processes race,
                // one key wins and both read it on the next pass.
                write_key(dir, &path, false)?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "cannot establish the plugin cache key {}",
        path.display()
    )))
}

/// The key, `None` when the file exists but must not be trusted.
fn read_key(path: &Path) -> io::Result<Option<[u8; KEY_LEN]>> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 || meta.len() != KEY_LEN as u64 {
        return Ok(None);
    }
    let mut key = [0u8; KEY_LEN];
    f.read_exact(&mut key)?;
    Ok(Some(key))
}

fn write_key(dir: &Path, path: &Path, replace: bool) -> io::Result<()> {
    let mut key = [0u8; KEY_LEN];
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(io::Error::other)?;
    let tmp = dir.join(format!(
        ".{KEY_FILE}.{}.{:016x}.tmp",
        std::process::id(),
        random_u64()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        if replace {
            fs::rename(&tmp, path)
        } else {
            match fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                r => r,
            }
        }
    })();
    let _ = fs::remove_file(&tmp);
    result
}

fn random_u64() -> u64 {
    rand::random()
}

/// A `Hasher` that feeds SHA-256, for turning the engine's `impl Hash` compatibility
/// value into a stable digest (`DefaultHasher` is not stable across releases).
#[derive(Default)]
pub(crate) struct Sha256Hasher(pub(crate) Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CacheKey {
        CacheKey {
            component_sha256: [n; 32],
            engine: [7; 32],
        }
    }

    #[test]
    fn round_trip_and_reject_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path()).unwrap();
        assert!(matches!(cache.load(&key(1)), Lookup::Miss));
        cache.store(&key(1), b"machine code").unwrap();
        match cache.load(&key(1)) {
            Lookup::Hit(b) => assert_eq!(b, b"machine code"),
            other => panic!("{other:?}"),
        }
        // Moved under another component's name: rejected.
        fs::copy(cache.path_of(&key(1)), cache.path_of(&key(2))).unwrap();
        assert!(matches!(cache.load(&key(2)), Lookup::Rejected(_)));
        // One byte flipped: rejected.
        let p = cache.path_of(&key(1));
        let mut b = fs::read(&p).unwrap();
        *b.last_mut().unwrap() ^= 1;
        fs::write(&p, b).unwrap();
        assert!(matches!(cache.load(&key(1)), Lookup::Rejected(_)));
    }

    #[test]
    fn key_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = ArtifactCache::open(dir.path()).unwrap();
        let b = ArtifactCache::open(dir.path()).unwrap();
        assert_eq!(a.key, b.key);
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another installation (another key) cannot produce entries this one accepts.
        a.store(&key(3), b"x").unwrap();
        let other = tempfile::tempdir().unwrap();
        let c = ArtifactCache::open(other.path()).unwrap();
        fs::copy(a.path_of(&key(3)), c.path_of(&key(3))).unwrap();
        assert!(matches!(c.load(&key(3)), Lookup::Rejected(_)));
    }

    #[test]
    fn world_readable_key_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let a = ArtifactCache::open(dir.path()).unwrap();
        a.store(&key(4), b"x").unwrap();
        let kp = dir.path().join(KEY_FILE);
        fs::set_permissions(&kp, fs::Permissions::from_mode(0o644)).unwrap();
        let b = ArtifactCache::open(dir.path()).unwrap();
        assert_ne!(a.key, b.key);
        assert!(matches!(b.load(&key(4)), Lookup::Rejected(_)));
    }
}
