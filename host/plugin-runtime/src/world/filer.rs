//! The `filer` world: linking (`log` always; `config`, `workspace`, `object-store` and
//! outgoing HTTP when granted), and staging calls, each on a fresh instance.
//!
//! A call is about one task: its [`FilerWorkspace`] (the container paths the plugin may
//! open, mapped to host directories) is handed to the store of that call only. Streams of
//! workspace files, object-store objects and HTTP bodies are all `wasi:io` streams, so a
//! plugin can `splice` one into another without the bytes passing through its memory,
//! and every blocking wait on them ends at the call's deadline (`capability/io.rs`).

use std::sync::Arc;

use tessera_core::plugin::Contract;
use wasmtime::Store;
use wasmtime::component::Linker;

use crate::bindings::PluginError;
use crate::bindings::filer as v0_1;
use crate::bindings::filer::exports::tessera::plugin::filing as filing_v0_1;
use crate::bindings::v0_2::filer as v0_2;
use crate::capability::object_store::{HasObjectStore, ObjectGrant, ObjectStoreView};
use crate::capability::workspace::{FilerWorkspace, HasWorkspace, WorkspaceView};
use crate::capability::{http, io, object_store, workspace};
use crate::error::{CallError, LoadError};
use crate::host::HostState;
use crate::manifest::{Capability, Manifest, World};
use crate::metrics::PluginMetrics;
use crate::per_call::{self, CallState, FreshCalls, WasiParts};
use crate::runtime::{CompiledComponent, ComponentInfo, Grants, PluginRuntime, PluginWorld};

pub use crate::bindings::v0_2::filer::exports::tessera::plugin0_2_0::filing::{
    FileKind, StagedFile, UrlInfo,
};
use crate::validate::contract_of;

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
    pre: Pre,
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
        let pre = match contract_of(World::Filer, &compiled.info.interfaces.exports) {
            Some(Contract::V0_1) => {
                Pre::V0_1(v0_1::FilerPre::new(instance_pre).map_err(&world_error)?)
            }
            _ => Pre::V0_2(v0_2::FilerPre::new(instance_pre).map_err(&world_error)?),
        };
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
        let store = plugin.new_store(&FilerWorkspace::new());
        match &plugin.inner.pre {
            Pre::V0_1(pre) => plugin.inner.calls.trial(
                store,
                pre.instance_pre(),
                "filer",
                |store, instance| {
                    v0_1::FilerIndices::new(pre.instance_pre())?.load(store, instance)?;
                    Ok(())
                },
            )?,
            Pre::V0_2(pre) => plugin.inner.calls.trial(
                store,
                pre.instance_pre(),
                "filer",
                |store, instance| {
                    v0_2::FilerIndices::new(pre.instance_pre())?.load(store, instance)?;
                    Ok(())
                },
            )?,
        }
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
        self.call(ws, |call, store| match call {
            Call::V0_1(f) => Ok(f
                .call_stage_in(store, url, path, kind_v0_1(kind))?
                .map(staged_from_v0_1)),
            Call::V0_2(f) => f.call_stage_in(store, url, path, kind),
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
        self.call(ws, |call, store| match call {
            Call::V0_1(f) => Ok(f
                .call_stage_out(store, path, url, kind_v0_1(kind))?
                .map(staged_from_v0_1)),
            Call::V0_2(f) => f.call_stage_out(store, path, url, kind),
        })
    }

    /// What `url` holds, without copying it. A 0.1.0 filer has no `stat`: that is an
    /// [`CallError::Unsupported`], and nothing is called. Blocks like
    /// [`FilerPlugin::stage_in`]; no workspace is open during the call.
    pub fn stat(&self, url: &str) -> Result<UrlInfo, CallError> {
        if self.contract() == Contract::V0_1 {
            return Err(CallError::Unsupported(format!(
                "the filer {} is built against tessera:plugin@0.1.0, which has no `stat`",
                self.manifest().name
            )));
        }
        self.call(&FilerWorkspace::new(), |call, store| match call {
            Call::V0_1(_) => unreachable!("checked above"),
            Call::V0_2(f) => f.call_stat(store, url),
        })
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        match self.inner.pre {
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2(_) => Contract::V0_2,
        }
    }

    fn call<R>(
        &self,
        ws: &FilerWorkspace,
        f: impl FnOnce(Call<'_>, &mut Store<FilerState>) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<R, CallError> {
        let calls = &self.inner.calls;
        match &self.inner.pre {
            Pre::V0_1(pre) => calls.call(
                self.new_store(ws),
                |store| pre.instantiate(store),
                |filer: &v0_1::Filer, store| f(Call::V0_1(filer.tessera_plugin_filing()), store),
            ),
            Pre::V0_2(pre) => calls.call(
                self.new_store(ws),
                |store| pre.instantiate(store),
                |filer: &v0_2::Filer, store| {
                    f(Call::V0_2(filer.tessera_plugin0_2_0_filing()), store)
                },
            ),
        }
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

/// The bindings of the contract version a filer was built against.
enum Pre {
    V0_1(v0_1::FilerPre<FilerState>),
    V0_2(v0_2::FilerPre<FilerState>),
}

/// One call, written once for each contract version.
enum Call<'a> {
    V0_1(&'a filing_v0_1::Guest),
    V0_2(&'a v0_2::exports::tessera::plugin0_2_0::filing::Guest),
}

fn kind_v0_1(kind: FileKind) -> filing_v0_1::FileKind {
    match kind {
        FileKind::File => filing_v0_1::FileKind::File,
        FileKind::Directory => filing_v0_1::FileKind::Directory,
    }
}

fn staged_from_v0_1(files: Vec<filing_v0_1::StagedFile>) -> Vec<StagedFile> {
    files
        .into_iter()
        .map(|f| StagedFile {
            url: f.url,
            path: f.path,
            size: f.size,
        })
        .collect()
}
