//! The `notifier` world: bindings, linking (`log` always, `config` and outgoing HTTP when
//! granted), and deliveries, each on a fresh instance.
//!
//! Notifiers have their own store state ([`NotifierState`]): the shared [`HostState`]
//! plus what `wasi:http` needs ([`WasiParts`]: a resource table, the HTTP hooks, a
//! monotonic clock and the call's deadline for blocking host calls). The router's store
//! stays as small as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{HasData, Linker};

use crate::error::{CallError, LoadError};
use crate::host::{HostState, PluginContext};
use crate::manifest::{Capability, Manifest, PluginConfig};
use crate::metrics::PluginMetrics;
use crate::outgoing::HttpPolicy;
use crate::router::bindings::tessera::plugin::{config, log};
use crate::router::one_line;
use crate::runtime::{CompiledComponent, ComponentInfo, RuntimeInner};
use crate::wasi_io::{self, HasWasi, WasiParts};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tessera:plugin/notifier",
        additional_derives: [PartialEq, Eq],
        with: {
            "tessera:plugin/types": crate::router::bindings::tessera::plugin::types,
            "tessera:plugin/log": crate::router::bindings::tessera::plugin::log,
            "tessera:plugin/config": crate::router::bindings::tessera::plugin::config,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use bindings::{Notifier, NotifierPre};

pub use crate::router::bindings::tessera::plugin::types::TaskInfo;
pub use bindings::exports::tessera::plugin::notify::Event as NotifyEvent;

/// The data of one notifier store (one instance, one call).
pub(crate) struct NotifierState {
    host: HostState,
    wasi: WasiParts,
}

impl HasWasi for NotifierState {
    fn wasi(&mut self) -> &mut WasiParts {
        &mut self.wasi
    }
}

/// [`HasData`] for the interfaces served by the shared [`HostState`] (`log`, `config`).
struct Shared;

impl HasData for Shared {
    type Data<'a> = &'a mut HostState;
}

/// A loaded notifier plugin version: compiled, validated, linked (`InstancePre`), with
/// its metrics and (with the `http` grant) the hosts it may send requests to. Cheap to
/// clone; `Send + Sync`.
#[derive(Clone)]
pub struct NotifierPlugin {
    inner: Arc<NotifierInner>,
}

struct NotifierInner {
    /// Keeps the engine and its epoch ticker alive while the plugin can be called.
    runtime: Arc<RuntimeInner>,
    pre: NotifierPre<NotifierState>,
    ctx: Arc<PluginContext>,
    manifest: Manifest,
    info: ComponentInfo,
    allowed_hosts: Vec<String>,
    /// `None` without the `http` grant (every request would be denied; none is linked).
    http: Option<Arc<HttpPolicy>>,
    timeout: Duration,
    deadline_ticks: u64,
    memory_cap: usize,
}

impl NotifierPlugin {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        compiled: CompiledComponent,
        config: PluginConfig,
        allowed_hosts: Vec<String>,
    ) -> Result<Self, LoadError> {
        let setup = |e: wasmtime::Error| LoadError::Setup(format!("{e:#}"));
        let mut linker = Linker::<NotifierState>::new(&runtime.engine);
        // Only what the manifest grants is linked: `log` always, `config` if granted,
        // outgoing HTTP and the WASI pieces it needs with `http`. No filesystem,
        // environment, sockets, random or wall clock.
        log::add_to_linker::<_, Shared>(&mut linker, |s| &mut s.host).map_err(setup)?;
        if manifest.grants(Capability::Config) {
            config::add_to_linker::<_, Shared>(&mut linker, |s| &mut s.host).map_err(setup)?;
        }
        let http = if manifest.grants(Capability::Http) {
            wasi_io::add_io(&mut linker).map_err(setup)?;
            wasi_io::add_http(&mut linker).map_err(setup)?;
            let policy = HttpPolicy::new(&manifest.name, &manifest.version, &allowed_hosts)
                .map_err(LoadError::Settings)?;
            Some(Arc::new(policy))
        } else {
            None
        };

        let instance_pre = linker.instantiate_pre(&compiled.component).map_err(|e| {
            LoadError::World(format!(
                "does not match the notifier world: {}",
                one_line(&e)
            ))
        })?;
        let pre = NotifierPre::new(instance_pre).map_err(|e| {
            LoadError::World(format!(
                "does not match the notifier world: {}",
                one_line(&e)
            ))
        })?;
        let timeout = manifest.limits.timeout();
        let deadline_ticks = runtime.deadline_ticks(timeout);
        let memory_cap = usize::try_from(manifest.limits.memory_bytes()).unwrap_or(usize::MAX);
        let ctx = Arc::new(PluginContext::new(&manifest, config));
        let plugin = NotifierPlugin {
            inner: Arc::new(NotifierInner {
                runtime,
                pre,
                ctx,
                manifest,
                info: compiled.info,
                allowed_hosts,
                http,
                timeout,
                deadline_ticks,
                memory_cap,
            }),
        };
        plugin.trial()?;
        Ok(plugin)
    }

    /// Instantiates once, at load: the export's signature is only type-checked against
    /// an instance, and a component that cannot even start within its limits is better
    /// refused at upload than failing every delivery.
    fn trial(&self) -> Result<(), LoadError> {
        let mut store = self.new_store();
        let instance_pre = self.inner.pre.instance_pre();
        let instance = instance_pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Start(failure(e, store.data(), true).to_string()))?;
        bindings::NotifierIndices::new(instance_pre)
            .and_then(|indices| indices.load(&mut store, &instance))
            .map_err(|e| {
                LoadError::World(format!(
                    "does not match the notifier world: `deliver` of \
                     tessera:plugin/notify@0.1.0: {}",
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

    /// Delivers one event on a fresh instance that is dropped afterwards (with every
    /// request it left open).
    ///
    /// Blocks the calling thread for up to the manifest's timeout (outgoing requests
    /// included): call it from a blocking context (`spawn_blocking` or a plain thread),
    /// not from an async task. An error of any kind means the event was not delivered;
    /// the plugin's own error says whether trying again can help
    /// ([`PluginError::Unavailable`](crate::PluginError::Unavailable)) or not.
    pub fn deliver(&self, event: &NotifyEvent) -> Result<(), CallError> {
        let start = Instant::now();
        let mut store = self.new_store();
        store.data_mut().host.task = Some(event.task.id.clone());
        let result = self.instantiate(&mut store).and_then(|notifier| {
            notifier
                .tessera_plugin_notify()
                .call_deliver(&mut store, event)
                .map_err(|e| failure(e, store.data(), false))?
                .map_err(CallError::Plugin)
        });
        store.data_mut().host.end_call();
        self.inner
            .ctx
            .metrics
            .record(start.elapsed(), result.as_ref().err().map(CallError::kind));
        result
    }

    fn new_store(&self) -> Store<NotifierState> {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.timeout;
        let state = NotifierState {
            host: HostState::new(inner.ctx.clone(), inner.memory_cap),
            wasi: WasiParts::new(inner.http.clone(), deadline),
        };
        let mut store = Store::new(&inner.runtime.engine, state);
        store.limiter(|s| &mut s.host.limiter);
        store.set_epoch_deadline(inner.deadline_ticks);
        store
    }

    fn instantiate(&self, store: &mut Store<NotifierState>) -> Result<Notifier, CallError> {
        self.inner.ctx.metrics.instantiated();
        self.inner
            .pre
            .instantiate(&mut *store)
            .map_err(|e| failure(e, store.data(), true))
    }
}

fn failure(e: wasmtime::Error, state: &NotifierState, instantiating: bool) -> CallError {
    wasi_io::failure(e, &state.host, &state.wasi.guard, instantiating)
}
