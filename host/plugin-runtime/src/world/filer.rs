//! The `filer` world: linking (`log` always; `config`, `workspace`, `object-store` and
//! outgoing HTTP when granted), and staging calls, each on a fresh instance.
//!
//! A call is about one task: its [`FilerWorkspace`] (the container paths the plugin may
//! open, mapped to host directories) is handed to the store of that call only. Streams of
//! workspace files, object-store objects and HTTP bodies are all `wasi:io` streams, so a
//! plugin can `splice` one into another without the bytes passing through its memory,
//! and every blocking wait on them ends at the call's deadline (`capability/io.rs`).

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::Linker;

use crate::bindings::PluginError;
use crate::bindings::filer::{Filer, FilerIndices, FilerPre};
use crate::capability::object_store::{HasObjectStore, ObjectGrant, ObjectStoreView};
use crate::capability::workspace::{FilerWorkspace, HasWorkspace, WorkspaceView};
use crate::capability::{http, io, object_store, workspace};
use crate::error::{CallError, LoadError};
use crate::host::HostState;
use crate::manifest::{Capability, Manifest, World};
use crate::metrics::PluginMetrics;
use crate::per_call::{self, CallState, FreshCalls, WasiParts};
use crate::runtime::{CompiledComponent, ComponentInfo, Grants, PluginRuntime, PluginWorld};

pub use crate::bindings::filer::exports::tessera::plugin::filing::{FileKind, StagedFile};

/// The data of one filer store (one instance, one call).
pub(crate) struct FilerState {
    host: HostState,
    wasi: WasiParts,
    workspace: FilerWorkspace,
    objects: ObjectGrant,
}

impl CallState for FilerState {
    fn host(&mut self) -> &mut HostState {
        &mut self.host
    }
    fn host_ref(&self) -> &HostState {
        &self.host
    }
    fn wasi(&mut self) -> &mut WasiParts {
        &mut self.wasi
    }
    fn wasi_ref(&self) -> &WasiParts {
        &self.wasi
    }
}

impl HasWorkspace for FilerState {
    fn workspace(&mut self) -> WorkspaceView<'_> {
        WorkspaceView {
            workspace: &self.workspace,
            io: self.wasi.io(),
        }
    }
}

impl HasObjectStore for FilerState {
    fn object_store(&mut self) -> ObjectStoreView<'_> {
        ObjectStoreView {
            grant: &self.objects,
            io: self.wasi.io(),
        }
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
    objects: ObjectGrant,
}

impl PluginWorld for FilerPlugin {
    const WORLD: World = World::Filer;

    fn link_validated(
        runtime: &PluginRuntime,
        manifest: Manifest,
        compiled: CompiledComponent,
        grants: Grants,
    ) -> Result<Self, LoadError> {
        let runtime = runtime.inner.clone();
        let mut linker = Linker::<FilerState>::new(&runtime.engine);
        // Only what the manifest grants is linked: `log` always; `config`, `workspace`,
        // `object-store` and outgoing HTTP (with the WASI pieces they need) if granted.
        // No wasi:filesystem, environment, sockets, random or wall clock.
        per_call::link_log_config(&mut linker, &manifest)?;
        // Every filer imports wasi:io (`filing` uses its stream types); without a grant
        // that makes streams it cannot get hold of one.
        io::link(&mut linker)?;
        if manifest.grants(Capability::Workspace) {
            workspace::link(&mut linker)?;
        }
        let objects = if manifest.grants(Capability::ObjectStore) {
            object_store::link(&mut linker, &grants.buckets)?;
            ObjectGrant {
                store: grants.object_store,
                buckets: grants.buckets.into(),
            }
        } else {
            ObjectGrant::default()
        };
        let http = http::link(&mut linker, &manifest, &grants.allowed_hosts)?;

        let world_error = per_call::world_error("filer");
        let instance_pre = linker
            .instantiate_pre(&compiled.component)
            .map_err(&world_error)?;
        let pre = FilerPre::new(instance_pre).map_err(&world_error)?;
        let calls = FreshCalls::new(
            runtime,
            manifest,
            compiled.info,
            grants.config,
            grants.allowed_hosts,
            http,
        );
        let plugin = FilerPlugin {
            inner: Arc::new(FilerInner {
                pre,
                calls,
                objects,
            }),
        };
        let instance_pre = plugin.inner.pre.instance_pre();
        plugin.inner.calls.trial(
            plugin.new_store(&FilerWorkspace::new()),
            instance_pre,
            "filer",
            |store, instance| {
                FilerIndices::new(instance_pre)?.load(store, instance)?;
                Ok(())
            },
        )?;
        Ok(plugin)
    }
}

impl FilerPlugin {
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
        &self.inner.objects.buckets
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
                objects: inner.objects.clone(),
            })
    }
}
