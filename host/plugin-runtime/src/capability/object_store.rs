//! `tessera:plugin/object-store`, when the manifest grants `object-store`: the host's
//! object store (`tessera_objstore::ObjectStore`: the embedded store or S3), in the
//! buckets the binding grants only; credentials never reach the plugin. Objects stream
//! through `object_stream`, and every wait ends at the call's deadline.

use std::sync::Arc;
use std::time::Instant;

use tessera_objstore::{MAX_LIST, ObjectError, ObjectInfo, ObjectStore};
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::bindings::filer::tessera::plugin::object_store;
use crate::capability::io::{self, Guarded};
use crate::capability::log::setup;
use crate::capability::object_stream::{
    ObjectInputStream, Upload, bucket_granted, check_buckets, complete,
};
use crate::error::LoadError;

/// What a binding grants of the object store: the store (none when the host has none)
/// and the buckets (exact names, or `*`).
#[derive(Clone, Default)]
pub(crate) struct ObjectGrant {
    pub(crate) store: Option<Arc<dyn ObjectStore>>,
    pub(crate) buckets: Arc<[String]>,
}

/// What the `object-store` host functions see of a store.
pub(crate) struct ObjectStoreView<'a> {
    pub(crate) grant: &'a ObjectGrant,
    pub(crate) io: Guarded<'a>,
}

/// Store data that serves `object-store`.
pub(crate) trait HasObjectStore: Send + 'static {
    fn object_store(&mut self) -> ObjectStoreView<'_>;
}

struct ObjectStoreData;

impl HasData for ObjectStoreData {
    type Data<'a> = ObjectStoreView<'a>;
}

/// Links `object-store`; the bucket grants are checked first.
pub(crate) fn link<T: HasObjectStore>(
    linker: &mut Linker<T>,
    buckets: &[String],
) -> Result<(), LoadError> {
    check_buckets(buckets).map_err(|e| LoadError::Settings(e.to_string()))?;
    object_store::add_to_linker::<_, ObjectStoreData>(linker, |s| s.object_store()).map_err(setup)
}

type WitStoreError = object_store::StoreError;

fn wit_error(e: ObjectError) -> WitStoreError {
    match e {
        ObjectError::NotFound => WitStoreError::NotFound,
        ObjectError::Denied(m) => WitStoreError::Denied(m),
        ObjectError::InvalidInput(m) | ObjectError::Conflict(m) => WitStoreError::InvalidInput(m),
        ObjectError::Unavailable(m) => WitStoreError::Unavailable(m),
        ObjectError::Other(m) => WitStoreError::Other(m),
    }
}

fn wit_info(i: ObjectInfo) -> object_store::ObjectInfo {
    object_store::ObjectInfo {
        key: i.key,
        size: i.size,
        etag: i.etag,
        modified_ms: i.modified_ms,
    }
}

impl ObjectStoreView<'_> {
    /// The store to use for `bucket`, or why there is none.
    fn store_for(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, WitStoreError> {
        let Some(s) = &self.grant.store else {
            return Err(WitStoreError::Unavailable(
                "no object store is configured".into(),
            ));
        };
        if !bucket_granted(&self.grant.buckets, bucket) {
            return Err(WitStoreError::Denied(format!(
                "the binding does not grant bucket `{bucket}`"
            )));
        }
        Ok(s.clone())
    }

    /// Runs `op` on the store for `bucket` off this thread, until the deadline.
    fn on_store<R: Send + 'static>(
        &mut self,
        bucket: &str,
        op: impl FnOnce(&dyn ObjectStore, Instant) -> Result<R, ObjectError> + Send + 'static,
    ) -> wasmtime::Result<Result<R, WitStoreError>> {
        let s = match self.store_for(bucket) {
            Ok(s) => s,
            Err(e) => return Ok(Err(e)),
        };
        let deadline = self.io.guard.deadline;
        let r = io::blocking(self.io.guard, move || op(&*s, deadline))?;
        Ok(r.map_err(wit_error))
    }
}

impl object_store::Host for ObjectStoreView<'_> {
    fn head(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<object_store::ObjectInfo, WitStoreError>> {
        let b = bucket.clone();
        let r = self.on_store(&bucket, move |s, deadline| s.head(&b, &key, deadline))?;
        Ok(r.map(wit_info))
    }

    fn list(
        &mut self,
        bucket: String,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<object_store::ObjectInfo>, WitStoreError>> {
        if limit == 0 {
            return Ok(Err(WitStoreError::InvalidInput(
                "limit must be at least 1".into(),
            )));
        }
        let limit = limit.min(MAX_LIST);
        let b = bucket.clone();
        let r = self.on_store(&bucket, move |s, deadline| {
            s.list(&b, &prefix, start_after.as_deref(), limit, deadline)
        })?;
        Ok(r.map(|v| v.into_iter().take(limit as usize).map(wit_info).collect()))
    }

    fn get(
        &mut self,
        bucket: String,
        key: String,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, WitStoreError>> {
        let b = bucket.clone();
        match self.on_store(&bucket, move |s, deadline| s.get(&b, &key, deadline))? {
            Ok(object) => {
                let stream: DynInputStream = Box::new(ObjectInputStream::start(object.body));
                Ok(Ok(self.io.table.push(stream)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn put(
        &mut self,
        bucket: String,
        key: String,
        size: u64,
    ) -> wasmtime::Result<Result<Resource<Upload>, WitStoreError>> {
        let b = bucket.clone();
        match self.on_store(&bucket, move |s, deadline| {
            s.put(
                &b,
                &key,
                size,
                &tessera_objstore::ObjectMeta::default(),
                deadline,
            )
        })? {
            Ok(upload) => Ok(Ok(self.io.table.push(Upload::start(upload, size))?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl object_store::HostUpload for ObjectStoreView<'_> {
    fn body(
        &mut self,
        upload: Resource<Upload>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, WitStoreError>> {
        match self.io.table.get_mut(&upload)?.body() {
            Ok(writer) => {
                let stream: DynOutputStream = Box::new(writer);
                Ok(Ok(self.io.table.push(stream)?))
            }
            Err(e) => Ok(Err(wit_error(e))),
        }
    }

    fn finish(&mut self, upload: Resource<Upload>) -> wasmtime::Result<Result<u64, WitStoreError>> {
        let finishing = self.io.table.delete(upload)?.finish();
        let r = io::until_deadline(self.io.guard, complete(finishing))?;
        Ok(r.map_err(wit_error))
    }

    fn drop(&mut self, upload: Resource<Upload>) -> wasmtime::Result<()> {
        // Dropping it closes its channel: the upload is abandoned.
        self.io.table.delete(upload)?;
        Ok(())
    }
}
