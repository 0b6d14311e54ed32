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
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream};

use crate::error::{CallError, LoadError};
use crate::host::{HostState, PluginContext};
use crate::manifest::{Capability, Manifest, PluginConfig};
use crate::metrics::PluginMetrics;
use crate::object_store::{self as store, ObjectStore, Upload};
use crate::outgoing::HttpPolicy;
use crate::router::PluginError;
use crate::router::bindings::tessera::plugin::{config, log};
use crate::router::one_line;
use crate::runtime::{CompiledComponent, ComponentInfo, RuntimeInner};
use crate::wasi_io::{self, HasWasi, WasiParts};
use crate::workspace::{FileReader, FileWriter, FilerWorkspace, Overrun};

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

/// [`HasData`] for the interfaces served by the shared [`HostState`] (`log`, `config`).
struct Shared;

impl HasData for Shared {
    type Data<'a> = &'a mut HostState;
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

fn wit_error(e: store::StoreError) -> WitStoreError {
    match e {
        store::StoreError::NotFound => WitStoreError::NotFound,
        store::StoreError::Denied(m) => WitStoreError::Denied(m),
        store::StoreError::InvalidInput(m) => WitStoreError::InvalidInput(m),
        store::StoreError::Unavailable(m) => WitStoreError::Unavailable(m),
        store::StoreError::Other(m) => WitStoreError::Other(m),
    }
}

fn wit_info(i: store::ObjectInfo) -> object_store::ObjectInfo {
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
        op: impl FnOnce(&dyn ObjectStore, Instant) -> Result<R, store::StoreError> + Send + 'static,
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
        let limit = limit.min(store::MAX_LIST);
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
    /// Keeps the engine and its epoch ticker alive while the plugin can be called.
    runtime: Arc<RuntimeInner>,
    pre: FilerPre<FilerState>,
    ctx: Arc<PluginContext>,
    manifest: Manifest,
    info: ComponentInfo,
    allowed_hosts: Vec<String>,
    /// `None` without the `http` grant (nothing of wasi:http is linked).
    http: Option<Arc<HttpPolicy>>,
    store: Option<Arc<dyn ObjectStore>>,
    buckets: Arc<[String]>,
    timeout: Duration,
    deadline_ticks: u64,
    memory_cap: usize,
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
        let setup = |e: wasmtime::Error| LoadError::Setup(format!("{e:#}"));
        let mut linker = Linker::<FilerState>::new(&runtime.engine);
        // Only what the manifest grants is linked: `log` always; `config`, `workspace`,
        // `object-store` and outgoing HTTP (with the WASI pieces they need) if granted.
        // No wasi:filesystem, environment, sockets, random or wall clock.
        log::add_to_linker::<_, Shared>(&mut linker, |s| &mut s.host).map_err(setup)?;
        if manifest.grants(Capability::Config) {
            config::add_to_linker::<_, Shared>(&mut linker, |s| &mut s.host).map_err(setup)?;
        }
        let http = manifest.grants(Capability::Http);
        let workspace = manifest.grants(Capability::Workspace);
        let objects = manifest.grants(Capability::ObjectStore);
        // Every filer imports wasi:io (`filing` uses its stream types); without a grant
        // that makes streams it cannot get hold of one.
        wasi_io::add_io(&mut linker).map_err(setup)?;
        if workspace {
            workspace::add_to_linker::<_, Own>(&mut linker, |s| s).map_err(setup)?;
        }
        if objects {
            store::check_buckets(&buckets).map_err(LoadError::Settings)?;
            object_store::add_to_linker::<_, Own>(&mut linker, |s| s).map_err(setup)?;
        }
        let http = if http {
            wasi_io::add_http(&mut linker).map_err(setup)?;
            let policy = HttpPolicy::new(&manifest.name, &manifest.version, &allowed_hosts)
                .map_err(LoadError::Settings)?;
            Some(Arc::new(policy))
        } else {
            None
        };

        let world_error = |e: wasmtime::Error| {
            LoadError::World(format!("does not match the filer world: {}", one_line(&e)))
        };
        let instance_pre = linker
            .instantiate_pre(&compiled.component)
            .map_err(world_error)?;
        let pre = FilerPre::new(instance_pre).map_err(world_error)?;
        let timeout = manifest.limits.timeout();
        let deadline_ticks = runtime.deadline_ticks(timeout);
        let memory_cap = usize::try_from(manifest.limits.memory_bytes()).unwrap_or(usize::MAX);
        let ctx = Arc::new(PluginContext::new(&manifest, config));
        let plugin = FilerPlugin {
            inner: Arc::new(FilerInner {
                runtime,
                pre,
                ctx,
                manifest,
                info: compiled.info,
                allowed_hosts,
                http,
                store: if objects { object_store } else { None },
                buckets: buckets.into(),
                timeout,
                deadline_ticks,
                memory_cap,
            }),
        };
        plugin.trial()?;
        Ok(plugin)
    }

    /// Instantiates once, at load: the exports' signatures are only type-checked against
    /// an instance, and a component that cannot even start within its limits is better
    /// refused at upload than failing every staging call.
    fn trial(&self) -> Result<(), LoadError> {
        let mut store = self.new_store(&FilerWorkspace::new());
        let instance_pre = self.inner.pre.instance_pre();
        let instance = instance_pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Start(failure(e, store.data(), true).to_string()))?;
        bindings::FilerIndices::new(instance_pre)
            .and_then(|indices| indices.load(&mut store, &instance))
            .map_err(|e| {
                LoadError::World(format!(
                    "does not match the filer world: tessera:plugin/filing@0.1.0: {}",
                    one_line(&e)
                ))
            })?;
        Ok(())
    }

    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    pub fn info(&self) -> &ComponentInfo {
        &self.inner.info
    }

    pub fn metrics(&self) -> &PluginMetrics {
        &self.inner.ctx.metrics
    }

    /// The authorities this binding lets the plugin send requests to, as given at link
    /// time (meaningful only with the `http` grant).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.allowed_hosts
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
        let start = Instant::now();
        let mut store = self.new_store(ws);
        let result = self.instantiate(&mut store).and_then(|filer| {
            f(&filer, &mut store)
                .map_err(|e| failure(e, store.data(), false))?
                .map_err(CallError::Plugin)
        });
        store.data_mut().host.end_call();
        // The instance's files, streams and requests close with the store, now.
        drop(store);
        self.inner
            .ctx
            .metrics
            .record(start.elapsed(), result.as_ref().err().map(CallError::kind));
        result
    }

    fn new_store(&self, ws: &FilerWorkspace) -> Store<FilerState> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.timeout;
        let mut host = HostState::new(inner.ctx.clone(), inner.memory_cap);
        host.task = ws.task().map(str::to_owned);
        let state = FilerState {
            host,
            wasi: WasiParts::new(inner.http.clone(), deadline),
            workspace: ws.clone(),
            store: inner.store.clone(),
            buckets: inner.buckets.clone(),
        };
        let mut store = Store::new(&inner.runtime.engine, state);
        store.limiter(|s| &mut s.host.limiter);
        store.set_epoch_deadline(inner.deadline_ticks);
        store
    }

    fn instantiate(&self, store: &mut Store<FilerState>) -> Result<Filer, CallError> {
        self.inner.ctx.metrics.instantiated();
        self.inner
            .pre
            .instantiate(&mut *store)
            .map_err(|e| failure(e, store.data(), true))
    }
}

fn failure(e: wasmtime::Error, state: &FilerState, instantiating: bool) -> CallError {
    wasi_io::failure(e, &state.host, &state.wasi.guard, instantiating)
}
