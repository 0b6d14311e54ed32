//! Tessera's object store: buckets of objects named by keys, the project's one way to
//! keep blobs (task inputs and outputs behind `s3://` URLs, datasets of the data API).
//!
//! [`ObjectStore`] is the interface every store implements: plain Rust types, blocking
//! I/O, objects streamed both ways (an [`ObjectRead`] per get, an [`ObjectUpload`] per put), so
//! that a store serves a wasmtime host call as easily as an HTTP handler's blocking
//! task. Two implementations:
//!
//! - [`EmbeddedObjectStore`] (here): buckets and keys as directories and files under a
//!   directory of the server's data directory. The default, with nothing to configure.
//! - the S3 client of `tessera-s3`, for any S3-compatible service.
//!
//! Bucket and key rules are decided once, in `tessera_core::objects`.

mod embedded;

pub use embedded::EmbeddedObjectStore;

use std::io::{Read, Write};
use std::time::Instant;

/// The most objects one `list` call returns (a larger `limit` is cut to this).
pub const MAX_LIST: u32 = 1000;

/// What an object says about itself besides its bytes: its content type and user
/// metadata (names lower-case). Kept by `put`, given back by `head` and `get` (a
/// listing leaves them empty).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: Option<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
}

impl ObjectMeta {
    pub fn is_empty(&self) -> bool {
        self.content_type.is_none() && self.metadata.is_empty()
    }
}

/// Metadata of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Content type and user metadata (see [`ObjectMeta`]).
    pub meta: ObjectMeta,
    /// The store's entity tag, unquoted (for the embedded store, the SHA-256).
    pub etag: Option<String>,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: Option<u64>,
    /// SHA-256 of the content, lower-case hex, where the store keeps it.
    pub sha256: Option<String>,
}

/// An object being read: its metadata and its bytes, from the same version of it (a
/// put that replaces the object meanwhile changes neither).
pub struct ObjectRead {
    pub info: ObjectInfo,
    /// Streams the bytes (never the whole object in memory). A read error is
    /// `io::Error::other(ObjectError)`.
    pub body: Box<dyn Read + Send>,
}

/// Why an object-store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("not found")]
    NotFound,
    /// A grant does not cover this bucket, or the store refused.
    #[error("denied: {0}")]
    Denied(String),
    /// A bad bucket, key, size or limit.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The key clashes with other objects (in the embedded store, where keys are paths, a
    /// key cannot be both an object and a folder of objects).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Not reachable now (the caller may retry).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl From<tessera_core::objects::NameError> for ObjectError {
    fn from(e: tessera_core::objects::NameError) -> Self {
        ObjectError::InvalidInput(e.0)
    }
}

/// An object store (embedded, S3, …), shared across threads. Every method may block; each
/// gets a deadline and should give up by then. Credentials stay inside the
/// implementation; callers that grant buckets (filer bindings) check them before calling.
pub trait ObjectStore: Send + Sync {
    /// What this store is, for logs and for `tessera data` (e.g. "embedded at /srv/objects").
    fn describe(&self) -> String;

    /// Metadata of one object; [`ObjectError::NotFound`] when there is none.
    fn head(&self, bucket: &str, key: &str, deadline: Instant) -> Result<ObjectInfo, ObjectError>;

    /// The objects whose keys start with `prefix`, in key order (bytewise), after
    /// `start_after` (exclusive) when given, at most `limit` (1..=[`MAX_LIST`]). Empty
    /// when there are no more.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
        deadline: Instant,
    ) -> Result<Vec<ObjectInfo>, ObjectError>;

    /// The object's metadata and bytes; [`ObjectError::NotFound`] when there is none.
    fn get(&self, bucket: &str, key: &str, deadline: Instant) -> Result<ObjectRead, ObjectError>;

    /// Bytes `start..end` of an object (`end` at most its size; the caller resolved the
    /// range against it); `info` describes the whole object. Stores that can seek or ask
    /// for a range override this; the default reads and drops the bytes before `start`.
    fn get_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
        deadline: Instant,
    ) -> Result<ObjectRead, ObjectError> {
        let mut read = self.get(bucket, key, deadline)?;
        let skipped = std::io::copy(&mut (&mut read.body).take(start), &mut std::io::sink())
            .map_err(|e| ObjectError::Other(format!("s3://{bucket}/{key}: {e}")))?;
        if skipped < start {
            return Err(ObjectError::InvalidInput(format!(
                "the range starts at {start}, past the object's end"
            )));
        }
        read.body = Box::new(read.body.take(end.saturating_sub(start)));
        Ok(read)
    }

    /// An upload of exactly `size` bytes, with `meta`: write them, then
    /// [`ObjectUpload::finish`]. An
    /// upload dropped without `finish` is abandoned: the object is not created (or
    /// replaced), and what was written is cleaned up.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
        deadline: Instant,
    ) -> Result<Box<dyn ObjectUpload>, ObjectError>;

    /// Delete one object; [`ObjectError::NotFound`] when there is none.
    fn delete(&self, bucket: &str, key: &str, deadline: Instant) -> Result<(), ObjectError>;

    /// The buckets, sorted by name.
    fn buckets(&self, deadline: Instant) -> Result<Vec<String>, ObjectError>;
}

/// An upload in progress: `Write` the object's bytes, then `finish`.
pub trait ObjectUpload: Write + Send {
    /// Completes the upload once every byte is written; returns the stored size. Fails
    /// (and creates nothing) unless exactly the `size` given to [`ObjectStore::put`]
    /// was written.
    fn finish(self: Box<Self>) -> Result<u64, ObjectError>;
}
