//! The `filer` world: bindings, linking (`log` always; `config`, `workspace`,
//! `object-store` and outgoing HTTP when granted), and staging calls, each on a fresh
//! instance.
//!
//! A call is about one task: its [`FilerWorkspace`] (the container paths the plugin may
//! open, mapped to host directories) is handed to the store of that call only. Streams of
//! workspace files, object-store objects and HTTP bodies are all `wasi:io` streams, so a
//! plugin can `splice` one into another without the bytes passing through its memory,
//! and every blocking wait on them ends at the call's deadline (`wasi_io.rs`).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::error::{CallError, LoadError};
use crate::fresh::{self, CallState, FreshCalls};
use crate::host::HostState;
use crate::manifest::{Capability, Manifest, PluginConfig};
use crate::metrics::PluginMetrics;
use crate::object_store::{self as store, Upload};
use crate::router::PluginError;
use crate::runtime::{CompiledComponent, ComponentInfo, RuntimeInner};
use crate::wasi_io::{self, HasWasi, WasiParts};
use crate::workspace::{FileReader, FileWriter, FilerWorkspace, Overrun};
use tessera_objstore::{MAX_LIST, ObjectError, ObjectInfo, ObjectStore};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tessera:plugin/filer",
        additional_derives: [PartialEq, Eq],
        imports: { default: trappable },
        with: {
            "tessera:plugin/types": crate::router::bindings::tessera::plugin::types,
            "tessera:plugin/log": crate::router::bindings::tessera::plugin::log,
            "tessera:plugin/config": crate::router::bindings::tessera::plugin::config,
            "tessera:plugin/object-store.upload": crate::object_store::Upload,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use bindings::tessera::plugin::{object_store, workspace};
use bindings::{Filer, FilerPre};

pub use bindings::exports::tessera::plugin::filing::{FileKind, StagedFile};

/// The data of one filer store (one instance, one call).
pub(crate) struct FilerState {
    host: HostState,
    wasi: WasiParts,
    workspace: FilerWorkspace,
    store: Option<Arc<dyn ObjectStore>>,
    buckets: Arc<[String]>,
}

impl HasWasi for FilerState {
    fn wasi(&mut self) -> &mut WasiParts {
        &mut self.wasi
    }
}

impl CallState for FilerState {
    fn host(&mut self) -> &mut HostState {
        &mut self.host
    }
    fn host_ref(&self) -> &HostState {
        &self.host
    }
    fn wasi_ref(&self) -> &WasiParts {
        &self.wasi
    }
}

/// [`HasData`] for `workspace` and `object-store`, served by the whole state.
struct Own;

impl HasData for Own {
    type Data<'a> = &'a mut FilerState;
}

impl workspace::Host for FilerState {
    fn open_read(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Resource<DynInputStream>, PluginError>> {
        match self.workspace.open_read(&path) {
            Ok(file) => {
                let stream: DynInputStream = Box::new(FileReader::new(file));
                Ok(Ok(self.wasi.table.push(stream)?))
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
                Ok(Ok(self.wasi.table.push(stream)?))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    fn walk(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Vec<workspace::Entry>, PluginError>> {
        let guard = &mut self.wasi.guard;
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

impl FilerState {
    /// The store to use for `bucket`, or why there is none.
    fn store_for(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, WitStoreError> {
        let Some(s) = &self.store else {
            return Err(WitStoreError::Unavailable(
                "no object store is configured".into(),
            ));
        };
        if !store::bucket_granted(&self.buckets, bucket) {
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
        let deadline = self.wasi.guard.deadline;
        let r = wasi_io::blocking(&mut self.wasi.guard, move || op(&*s, deadline))?;
        Ok(r.map_err(wit_error))
    }
}

impl object_store::Host for FilerState {
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
            Ok(reader) => {
                let stream: DynInputStream = Box::new(store::ObjectReader::start(reader));
                Ok(Ok(self.wasi.table.push(stream)?))
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
        match self.on_store(&bucket, move |s, deadline| s.put(&b, &key, size, deadline))? {
            Ok(upload) => Ok(Ok(self.wasi.table.push(Upload::start(upload, size))?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl object_store::HostUpload for FilerState {
    fn body(
        &mut self,
        upload: Resource<Upload>,
    ) -> wasmtime::Result<Result<Resource<DynOutputStream>, WitStoreError>> {
        match self.wasi.table.get_mut(&upload)?.body() {
            Ok(writer) => {
                let stream: DynOutputStream = Box::new(writer);
                Ok(Ok(self.wasi.table.push(stream)?))
            }
            Err(e) => Ok(Err(wit_error(e))),
        }
    }

    fn finish(&mut self, upload: Resource<Upload>) -> wasmtime::Result<Result<u64, WitStoreError>> {
        let finishing = self.wasi.table.delete(upload)?.finish();
        let r = wasi_io::until_deadline(&mut self.wasi.guard, store::complete(finishing))?;
        Ok(r.map_err(wit_error))
    }

    fn drop(&mut self, upload: Resource<Upload>) -> wasmtime::Result<()> {
        // Dropping it closes its channel: the upload is abandoned.
        self.wasi.table.delete(upload)?;
        Ok(())
    }
}

/// A loaded filer plugin version: compiled, validated, linked (`InstancePre`), with its
/// metrics and what its binding grants (hosts, object store, buckets). Cheap to clone;
/// `Send + Sync`.
#[derive(Clone)]
pub struct FilerPlugin {
    inner: Arc<FilerInner>,
}

struct FilerInner {
    pre: FilerPre<FilerState>,
    calls: FreshCalls,
    store: Option<Arc<dyn ObjectStore>>,
    buckets: Arc<[String]>,
}

impl FilerPlugin {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        compiled: CompiledComponent,
        config: PluginConfig,
        allowed_hosts: Vec<String>,
        object_store: Option<Arc<dyn ObjectStore>>,
        buckets: Vec<String>,
    ) -> Result<Self, LoadError> {
        let mut linker = Linker::<FilerState>::new(&runtime.engine);
        // Only what the manifest grants is linked: `log` always; `config`, `workspace`,
        // `object-store` and outgoing HTTP (with the WASI pieces they need) if granted.
        // No wasi:filesystem, environment, sockets, random or wall clock.
        fresh::link_log_config(&mut linker, &manifest)?;
        let objects = manifest.grants(Capability::ObjectStore);
        // Every filer imports wasi:io (`filing` uses its stream types); without a grant
        // that makes streams it cannot get hold of one.
        wasi_io::add_io(&mut linker).map_err(fresh::setup)?;
        if manifest.grants(Capability::Workspace) {
            workspace::add_to_linker::<_, Own>(&mut linker, |s| s).map_err(fresh::setup)?;
        }
        if objects {
            store::check_buckets(&buckets).map_err(LoadError::Settings)?;
            object_store::add_to_linker::<_, Own>(&mut linker, |s| s).map_err(fresh::setup)?;
        }
        let http = fresh::link_http(&mut linker, &manifest, &allowed_hosts)?;

        let world_error = fresh::world_error("filer");
        let instance_pre = linker
            .instantiate_pre(&compiled.component)
            .map_err(&world_error)?;
        let pre = FilerPre::new(instance_pre).map_err(&world_error)?;
        let calls = FreshCalls::new(
            runtime,
            manifest,
            compiled.info,
            config,
            allowed_hosts,
            http,
        );
        let plugin = FilerPlugin {
            inner: Arc::new(FilerInner {
                pre,
                calls,
                store: if objects { object_store } else { None },
                buckets: buckets.into(),
            }),
        };
        let instance_pre = plugin.inner.pre.instance_pre();
        plugin.inner.calls.trial(
            plugin.new_store(&FilerWorkspace::new()),
            instance_pre,
            "filer",
            |store, instance| {
                bindings::FilerIndices::new(instance_pre)?.load(store, instance)?;
                Ok(())
            },
        )?;
        Ok(plugin)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.inner.calls.manifest
    }

    pub fn info(&self) -> &ComponentInfo {
        &self.inner.calls.info
    }

    pub fn metrics(&self) -> &PluginMetrics {
        self.inner.calls.metrics()
    }

    /// The authorities this binding lets the plugin send requests to, as given at link
    /// time (meaningful only with the `http` grant).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.calls.allowed_hosts
    }

    /// The buckets this binding grants (meaningful only with the `object-store` grant).
    pub fn buckets(&self) -> &[String] {
        &self.inner.buckets
    }

    /// Copies `url` into the task's workspace at container path `path` (a file, or with
    /// [`FileKind::Directory`] a directory tree), on a fresh instance that is dropped
    /// afterwards with every file and stream it left open. Returns what the plugin says
    /// it staged.
    ///
    /// Blocks the calling thread for up to the manifest's timeout: call it from a
    /// blocking context (`spawn_blocking` or a plain thread), not from an async task.
    pub fn stage_in(
        &self,
        ws: &FilerWorkspace,
        url: &str,
        path: &str,
        kind: FileKind,
    ) -> Result<Vec<StagedFile>, CallError> {
        self.call(ws, |filer, store| {
            filer
                .tessera_plugin_filing()
                .call_stage_in(store, url, path, kind)
        })
    }

    /// Copies container path `path` of the task's workspace to `url`. As
    /// [`FilerPlugin::stage_in`] otherwise.
    pub fn stage_out(
        &self,
        ws: &FilerWorkspace,
        path: &str,
        url: &str,
        kind: FileKind,
    ) -> Result<Vec<StagedFile>, CallError> {
        self.call(ws, |filer, store| {
            filer
                .tessera_plugin_filing()
                .call_stage_out(store, path, url, kind)
        })
    }

    fn call(
        &self,
        ws: &FilerWorkspace,
        f: impl FnOnce(
            &Filer,
            &mut Store<FilerState>,
        ) -> wasmtime::Result<Result<Vec<StagedFile>, PluginError>>,
    ) -> Result<Vec<StagedFile>, CallError> {
        self.inner.calls.call(
            self.new_store(ws),
            |store| self.inner.pre.instantiate(store),
            f,
        )
    }

    fn new_store(&self, ws: &FilerWorkspace) -> Store<FilerState> {
        let inner = &*self.inner;
        inner
            .calls
            .store(ws.task().map(str::to_owned), |host, wasi| FilerState {
                host,
                wasi,
                workspace: ws.clone(),
                store: inner.store.clone(),
                buckets: inner.buckets.clone(),
            })
    }
}
