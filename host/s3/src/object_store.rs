//! This client as a `tessera_objstore::ObjectStore`: the store behind `s3://` URLs when
//! an S3 endpoint is configured. Calls arrive on blocking threads (plugin calls and the
//! data API's blocking tasks) and wait on the tokio runtime the [`BlockingS3`] was given.

use std::io::{self, Write};
use std::time::Instant;

use tessera_objstore::{
    ObjectError, ObjectInfo, ObjectMeta, ObjectRead, ObjectStore, ObjectUpload,
};

use crate::{BlockingS3, ObjectWriter, S3Error};

fn error(e: S3Error) -> ObjectError {
    match e {
        S3Error::NotFound => ObjectError::NotFound,
        S3Error::Denied(m) => ObjectError::Denied(m),
        S3Error::InvalidInput(m) => ObjectError::InvalidInput(m),
        S3Error::Unavailable(m) => ObjectError::Unavailable(m),
        S3Error::Other(m) => ObjectError::Other(m),
    }
}

impl ObjectStore for BlockingS3 {
    fn describe(&self) -> String {
        format!("S3 at {}", self.store().endpoint())
    }

    fn head(&self, bucket: &str, key: &str, deadline: Instant) -> Result<ObjectInfo, ObjectError> {
        match self.with_deadline(deadline).head(bucket, key) {
            Ok(Some(i)) => Ok(i),
            Ok(None) => Err(ObjectError::NotFound),
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
    ) -> Result<Vec<ObjectInfo>, ObjectError> {
        self.with_deadline(deadline)
            .list(bucket, prefix, start_after, limit)
            .map_err(error)
    }

    fn get(&self, bucket: &str, key: &str, deadline: Instant) -> Result<ObjectRead, ObjectError> {
        // The response's headers describe the bytes of its body.
        let reader = self
            .with_deadline(deadline)
            .get(bucket, key)
            .map_err(error)?;
        Ok(ObjectRead {
            info: reader.info().clone(),
            body: Box::new(reader),
        })
    }

    fn get_range(
        &self,
        bucket: &str,
        key: &str,
        start: u64,
        end: u64,
        deadline: Instant,
    ) -> Result<ObjectRead, ObjectError> {
        let reader = self
            .with_deadline(deadline)
            .get_range(bucket, key, Some((start, end)))
            .map_err(error)?;
        Ok(ObjectRead {
            info: reader.info().clone(),
            body: Box::new(reader),
        })
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        size: u64,
        meta: &ObjectMeta,
        deadline: Instant,
    ) -> Result<Box<dyn ObjectUpload>, ObjectError> {
        let writer = self
            .with_deadline(deadline)
            .put_writer_with(bucket, key, size, meta)
            .map_err(error)?;
        Ok(Box::new(Upload(writer)))
    }

    fn delete(&self, bucket: &str, key: &str, deadline: Instant) -> Result<(), ObjectError> {
        // S3 deletes are idempotent (a missing key is no error); say NotFound as the
        // embedded store does.
        let this = self.with_deadline(deadline);
        match this.head(bucket, key).map_err(error)? {
            None => Err(ObjectError::NotFound),
            Some(_) => this.delete(bucket, key).map_err(error),
        }
    }

    fn buckets(&self, deadline: Instant) -> Result<Vec<String>, ObjectError> {
        self.with_deadline(deadline).buckets().map_err(error)
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
    fn finish(self: Box<Self>) -> Result<u64, ObjectError> {
        self.0.finish().map_err(error)
    }
}
