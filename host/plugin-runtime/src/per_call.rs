//! What the worlds whose every call gets a fresh instance share (notifier, filer, engine
//! adapter): the store of one call (limits, deadline, WASI parts), linking the
//! capabilities a world of log, config and outgoing HTTP gets, the trial instantiation
//! at load, and running a call with its metrics.
//!
//! Routers are not here on purpose: their warm instances keep a smaller store with no
//! WASI parts, which is what keeps a routing call near a microsecond.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre, Linker, ResourceTable};

use crate::bindings::PluginError;
use crate::capability::http::{self, HasHttp, HttpParts, HttpPolicy};
use crate::capability::io::{self, CallGuard, Guarded, HasIo};
use crate::capability::{config, log};
use crate::error::{CallError, LoadError};
use crate::host::{HostState, PluginContext};
use crate::manifest::{Capability, Manifest, PluginConfig};
use crate::metrics::PluginMetrics;
use crate::runtime::{CompiledComponent, ComponentInfo, RuntimeInner};
use crate::trap::one_line;

/// Resources (requests, responses, headers, streams, pollables, files…) one call may
/// hold at once; creating more fails in the guest.
const MAX_RESOURCES: usize = 1024;

/// The WASI side of one store (one instance, one call): the resource table, the call's
/// deadline for blocking host calls, and what outgoing HTTP needs.
pub(crate) struct WasiParts {
    pub(crate) table: ResourceTable,
    pub(crate) guard: CallGuard,
    pub(crate) http: HttpParts,
}

impl WasiParts {
    /// Host memory a guest can make the host hold (the memory cap covers only the
    /// guest's own) stays bounded: resources are capped.
    pub(crate) fn new(policy: Option<Arc<HttpPolicy>>, deadline: Instant) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        WasiParts {
            table,
            guard: CallGuard::new(deadline),
            http: HttpParts::new(policy, deadline),
        }
    }

    pub(crate) fn io(&mut self) -> Guarded<'_> {
        Guarded {
            table: &mut self.table,
            guard: &mut self.guard,
        }
    }
}

/// Store data of a fresh-instance world: the shared host state and the WASI parts.
pub(crate) trait CallState: Send + 'static {
    fn host(&mut self) -> &mut HostState;
    fn host_ref(&self) -> &HostState;
    fn wasi(&mut self) -> &mut WasiParts;
    fn wasi_ref(&self) -> &WasiParts;
}

impl<T: CallState> HasIo for T {
    fn io(&mut self) -> Guarded<'_> {
        self.wasi().io()
    }

    fn table(&mut self) -> &mut ResourceTable {
        &mut self.wasi().table
    }
}

impl<T: CallState> HasHttp for T {
    fn http_parts(&mut self) -> (&mut HttpParts, &mut ResourceTable) {
        let w = self.wasi();
        (&mut w.http, &mut w.table)
    }
}

/// The store data of worlds that import only log, config and outgoing HTTP (notifier,
/// engine adapter).
pub(crate) struct HttpState {
    host: HostState,
    wasi: WasiParts,
}

impl HttpState {
    pub(crate) fn new(host: HostState, wasi: WasiParts) -> Self {
        HttpState { host, wasi }
    }
}

impl CallState for HttpState {
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

/// Links `log` (always) and `config` (when granted).
pub(crate) fn link_log_config<T: CallState>(
    linker: &mut Linker<T>,
    manifest: &Manifest,
) -> Result<(), LoadError> {
    log::link(linker, T::host)?;
    config::link(linker, manifest, T::host)
}

/// Links what a world of log, config and outgoing HTTP gets ([`HttpState`]): nothing
/// beyond the grants; no filesystem, environment, sockets, random or wall clock.
pub(crate) fn link_http_world(
    linker: &mut Linker<HttpState>,
    manifest: &Manifest,
    allowed_hosts: &[String],
) -> Result<Option<Arc<HttpPolicy>>, LoadError> {
    link_log_config(linker, manifest)?;
    if manifest.grants(Capability::Http) {
        io::link(linker)?;
    }
    http::link(linker, manifest, allowed_hosts)
}

/// A load error for a component that does not fit `world`.
pub(crate) fn world_error(world: &str) -> impl Fn(wasmtime::Error) -> LoadError + '_ {
    move |e| {
        LoadError::World(format!(
            "does not match the {world} world: {}",
            one_line(&e)
        ))
    }
}

/// A loaded version of a world that imports only log, config and outgoing HTTP
/// (notifier, engine adapter): its bindings' pre-instance `P` (e.g. `NotifierPre`) and
/// its calls.
pub(crate) struct HttpWorld<P> {
    pub(crate) pre: P,
    pub(crate) calls: FreshCalls,
}

impl<P> HttpWorld<P> {
    /// Links `compiled` against `world` (`make_pre` wraps the linked `InstancePre` in
    /// the world's bindings) and runs the trial instantiation, whose `check` loads the
    /// world's export indices.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        compiled: CompiledComponent,
        config: PluginConfig,
        allowed_hosts: Vec<String>,
        world: &str,
        make_pre: impl FnOnce(InstancePre<HttpState>) -> wasmtime::Result<P>,
        instance_pre: impl Fn(&P) -> &InstancePre<HttpState>,
        check: impl FnOnce(
            &InstancePre<HttpState>,
            &mut Store<HttpState>,
            &Instance,
        ) -> wasmtime::Result<()>,
    ) -> Result<Self, LoadError> {
        let mut linker = Linker::new(&runtime.engine);
        let http = link_http_world(&mut linker, &manifest, &allowed_hosts)?;
        let pre = linker
            .instantiate_pre(&compiled.component)
            .and_then(make_pre)
            .map_err(world_error(world))?;
        let calls = FreshCalls::new(
            runtime,
            manifest,
            compiled.info,
            config,
            allowed_hosts,
            http,
        );
        let linked = instance_pre(&pre);
        calls.trial(
            calls.store(None, HttpState::new),
            linked,
            world,
            |store, instance| check(linked, store, instance),
        )?;
        Ok(HttpWorld { pre, calls })
    }
}

/// What one loaded version of a fresh-instance world keeps for its calls.
pub(crate) struct FreshCalls {
    /// Keeps the engine and its epoch ticker alive while the plugin can be called.
    runtime: Arc<RuntimeInner>,
    ctx: Arc<PluginContext>,
    pub(crate) manifest: Manifest,
    pub(crate) info: ComponentInfo,
    pub(crate) allowed_hosts: Vec<String>,
    /// `None` without the `http` grant (nothing of wasi:http is linked).
    http: Option<Arc<HttpPolicy>>,
    timeout: Duration,
    deadline_ticks: u64,
    memory_cap: usize,
}

impl FreshCalls {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        info: ComponentInfo,
        config: PluginConfig,
        allowed_hosts: Vec<String>,
        http: Option<Arc<HttpPolicy>>,
    ) -> Self {
        let timeout = manifest.limits.timeout();
        let deadline_ticks = runtime.deadline_ticks(timeout);
        let memory_cap = usize::try_from(manifest.limits.memory_bytes()).unwrap_or(usize::MAX);
        let ctx = Arc::new(PluginContext::new(&manifest, config));
        FreshCalls {
            runtime,
            ctx,
            manifest,
            info,
            allowed_hosts,
            http,
            timeout,
            deadline_ticks,
            memory_cap,
        }
    }

    pub(crate) fn metrics(&self) -> &PluginMetrics {
        &self.ctx.metrics
    }

    /// The store of one call, about `task` when there is one: the memory cap, the
    /// epoch deadline, and WASI parts whose blocking calls end at the same deadline.
    pub(crate) fn store<T: CallState>(
        &self,
        task: Option<String>,
        make: impl FnOnce(HostState, WasiParts) -> T,
    ) -> Store<T> {
        let deadline = Instant::now() + self.timeout;
        let mut host = HostState::new(self.ctx.clone(), self.memory_cap);
        host.task = task;
        let state = make(host, WasiParts::new(self.http.clone(), deadline));
        let mut store = Store::new(&self.runtime.engine, state);
        store.limiter(|s| &mut s.host().limiter);
        store.set_epoch_deadline(self.deadline_ticks);
        store
    }

    /// Instantiates once, at load: exports are only type-checked against an instance
    /// (`check` loads the world's export indices), and a component that cannot even
    /// start within its limits is better refused at upload than failing every call.
    pub(crate) fn trial<T: CallState>(
        &self,
        mut store: Store<T>,
        pre: &InstancePre<T>,
        world: &str,
        check: impl FnOnce(&mut Store<T>, &Instance) -> wasmtime::Result<()>,
    ) -> Result<(), LoadError> {
        let instance = pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Start(failure(e, store.data(), true).to_string()))?;
        check(&mut store, &instance).map_err(world_error(world))
    }

    /// Runs one call on a fresh instance: instantiate, call, then drop the store (and
    /// with it every file, stream and request the instance left open) and record the
    /// outcome. An error of any kind means the call did not happen as asked.
    pub(crate) fn call<T: CallState, I, R>(
        &self,
        mut store: Store<T>,
        instantiate: impl FnOnce(&mut Store<T>) -> wasmtime::Result<I>,
        call: impl FnOnce(&I, &mut Store<T>) -> wasmtime::Result<Result<R, PluginError>>,
    ) -> Result<R, CallError> {
        let start = Instant::now();
        self.ctx.metrics.instantiated();
        let result = instantiate(&mut store)
            .map_err(|e| failure(e, store.data(), true))
            .and_then(|instance| {
                call(&instance, &mut store)
                    .map_err(|e| failure(e, store.data(), false))?
                    .map_err(CallError::Plugin)
            });
        store.data_mut().host().end_call();
        drop(store);
        self.ctx
            .metrics
            .record(start.elapsed(), result.as_ref().err().map(CallError::kind));
        result
    }
}

fn failure<T: CallState>(e: wasmtime::Error, state: &T, instantiating: bool) -> CallError {
    io::failure(e, state.host_ref(), &state.wasi_ref().guard, instantiating)
}
