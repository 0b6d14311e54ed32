//! The host's object store for filer plugins (feature `plugins`): this S3 client behind
//! the plugin runtime's `ObjectStore` trait. Calls arrive on blocking threads (plugin
//! calls run off the async workers) and wait on the tokio runtime the
//! [`BlockingObjectStore`] was given.

use std::io::{self, Read, Write};
use std::time::Instant;

use crate::{BlockingObjectStore, ObjectWriter, S3Error};
use tessera_plugins::{ObjectInfo, ObjectStore, ObjectUpload, StoreError};

/// A [`BlockingObjectStore`] as the object store of filer plugins
/// (`tessera:plugin/object-store`). The plugin names buckets and keys; credentials stay
/// here.
pub struct PluginObjectStore(pub BlockingObjectStore);

fn error(e: S3Error) -> StoreError {
    match e {
        S3Error::NotFound => StoreError::NotFound,
        S3Error::Denied(m) => StoreError::Denied(m),
        S3Error::InvalidInput(m) => StoreError::InvalidInput(m),
        S3Error::Unavailable(m) => StoreError::Unavailable(m),
        other => StoreError::Other(other.to_string()),
    }
}

fn info(i: crate::ObjectInfo) -> ObjectInfo {
    ObjectInfo {
        key: i.key,
        size: i.size,
        etag: i.etag,
        modified_ms: i.modified_ms,
    }
}

impl ObjectStore for PluginObjectStore {
    fn head(&self, bucket: &str, key: &str, deadline: Instant) -> Result<ObjectInfo, StoreError> {
        match self.0.with_deadline(deadline).head(bucket, key) {
            Ok(Some(i)) => Ok(info(i)),
            Ok(None) => Err(StoreError::NotFound),
            Err(e) => Err(error(e)),
        }
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
        deadline: Instant,
    ) -> Result<Vec<ObjectInfo>, StoreError> {
        self.0
            .with_deadline(deadline)
            .list(bucket, prefix, start_after, limit)
            .map(|v| v.into_iter().map(info).collect())
            .map_err(error)
    }

    fn get(
        &self,
        bucket: &str,
        key: &str,
        deadline: Instant,
    ) -> Result<Box<dyn Read + Send>, StoreError> {
        let reader = self
            .0
            .with_deadline(deadline)
            .get(bucket, key)
            .map_err(error)?;
        Ok(Box::new(reader))
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        deadline: Instant,
    ) -> Result<Box<dyn ObjectUpload>, StoreError> {
        let writer = self
            .0
            .with_deadline(deadline)
            .put_writer(bucket, key, size)
            .map_err(error)?;
        Ok(Box::new(Upload(writer)))
    }
}

struct Upload(ObjectWriter);

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl ObjectUpload for Upload {
    fn finish(self: Box<Self>) -> Result<u64, StoreError> {
        self.0.finish().map_err(error)
    }
}
