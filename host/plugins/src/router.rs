//! The `router` world: bindings, linking, and calls on fresh or warm instances.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, Trap, WasmBacktrace};

use crate::error::{CallError, LoadError};
use crate::host::{HostState, LogLevel, PluginContext};
use crate::manifest::{Capability, Manifest, PluginConfig};
use crate::metrics::PluginMetrics;
use crate::runtime::{CompiledComponent, ComponentInfo, RuntimeInner};

/// Also the home of the shared `types`, `log` and `config` bindings, which the other
/// worlds' bindings reuse (`with:`), so `PluginError` and `TaskInfo` are one type.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "tessera:plugin/router",
        additional_derives: [PartialEq, Eq],
    });
}

use bindings::tessera::plugin::{config, log};
use bindings::{Router, RouterPre};

pub use bindings::exports::tessera::plugin::routing::{
    Decision, Label, LabelSet, Request as RouteRequest, Target as RouteTarget, Task as RouteTask,
};
pub use bindings::tessera::plugin::types::{Pair, PluginError};

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        HostState::log(self, level, &message);
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config_get(&key)
    }

    fn secret(&mut self, name: String) -> Option<String> {
        self.config_secret(&name)
    }
}

impl bindings::tessera::plugin::types::Host for HostState {}

/// A loaded router plugin version: compiled, validated, linked (`InstancePre`), with its
/// metrics. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct RouterPlugin {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    /// Keeps the engine and its epoch ticker alive while the plugin can be called.
    runtime: Arc<RuntimeInner>,
    pre: RouterPre<HostState>,
    ctx: Arc<PluginContext>,
    manifest: Manifest,
    info: ComponentInfo,
    deadline_ticks: u64,
    memory_cap: usize,
}

impl RouterPlugin {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        compiled: CompiledComponent,
        config: PluginConfig,
    ) -> Result<Self, LoadError> {
        let mut linker = Linker::<HostState>::new(&runtime.engine);
        // Only what the manifest grants is linked: `log` always, `config` if granted.
        // (`types` has no functions; nothing to link.)
        log::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| LoadError::Setup(format!("{e:#}")))?;
        if manifest.grants(Capability::Config) {
            config::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s)
                .map_err(|e| LoadError::Setup(format!("{e:#}")))?;
        }
        let instance_pre = linker.instantiate_pre(&compiled.component).map_err(|e| {
            LoadError::World(format!("does not match the router world: {}", one_line(&e)))
        })?;
        let pre = RouterPre::new(instance_pre).map_err(|e| {
            LoadError::World(format!("does not match the router world: {}", one_line(&e)))
        })?;
        let deadline_ticks = runtime.deadline_ticks(manifest.limits.timeout());
        let memory_cap = usize::try_from(manifest.limits.memory_bytes()).unwrap_or(usize::MAX);
        let ctx = Arc::new(PluginContext::new(&manifest, config));
        let plugin = RouterPlugin {
            inner: Arc::new(RouterInner {
                runtime,
                pre,
                ctx,
                manifest,
                info: compiled.info,
                deadline_ticks,
                memory_cap,
            }),
        };
        plugin.trial()?;
        Ok(plugin)
    }

    /// Instantiates once, at load: the export signatures are only type-checked against an
    /// instance, and a component that cannot even start within its limits is better
    /// refused at upload than failing every call.
    fn trial(&self) -> Result<(), LoadError> {
        let mut store = self.new_store();
        let instance_pre = self.inner.pre.instance_pre();
        let instance = instance_pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Start(classify(e, store.data(), true).to_string()))?;
        bindings::RouterIndices::new(instance_pre)
            .and_then(|indices| indices.load(&mut store, &instance))
            .map_err(|e| {
                LoadError::World(format!(
                    "does not match the router world: `route` of tessera:plugin/routing@0.1.0: {}",
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

    /// Decides where each task of `request` runs, on a fresh instance that is dropped
    /// afterwards. On success there is exactly one decision per task, in the order of
    /// `request.tasks`, and every assignment names an index of `request.targets`.
    pub fn route(&self, request: &RouteRequest) -> Result<Vec<Decision>, CallError> {
        let start = Instant::now();
        let mut store = self.new_store();
        let result = self
            .instantiate(&mut store)
            .and_then(|router| call_route(&router, &mut store, request));
        store.data_mut().end_call();
        self.inner
            .ctx
            .metrics
            .record(start.elapsed(), result.as_ref().err().map(CallError::kind));
        result
    }

    /// A router that keeps one instance across calls. Keep one per tenant or group (an
    /// instance's memory carries over from call to call, so it must never be shared
    /// between groups).
    pub fn warm(&self) -> WarmRouter {
        WarmRouter {
            plugin: self.clone(),
            instance: None,
        }
    }

    fn new_store(&self) -> Store<HostState> {
        let inner = &*self.inner;
        let mut store = Store::new(
            &inner.runtime.engine,
            HostState::new(inner.ctx.clone(), inner.memory_cap),
        );
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(inner.deadline_ticks);
        store
    }

    fn instantiate(&self, store: &mut Store<HostState>) -> Result<Router, CallError> {
        self.inner.ctx.metrics.instantiated();
        self.inner
            .pre
            .instantiate(&mut *store)
            .map_err(|e| classify(e, store.data(), true))
    }
}

/// A router instance reused across calls (the caller keeps one per tenant or group and
/// calls it from one thread at a time). After any trap, timeout or out-of-memory the
/// instance is dropped and the next call builds a new one.
pub struct WarmRouter {
    plugin: RouterPlugin,
    instance: Option<(Store<HostState>, Router)>,
}

impl WarmRouter {
    pub fn plugin(&self) -> &RouterPlugin {
        &self.plugin
    }

    /// Whether an instance is ready (false before the first call and after a trap).
    pub fn is_warm(&self) -> bool {
        self.instance.is_some()
    }

    /// As [`RouterPlugin::route`], on this router's instance (built on the first call
    /// and after a call that poisoned it).
    pub fn route(&mut self, request: &RouteRequest) -> Result<Vec<Decision>, CallError> {
        let start = Instant::now();
        let result = self.route_inner(request);
        let metrics = &self.plugin.inner.ctx.metrics;
        metrics.record(start.elapsed(), result.as_ref().err().map(CallError::kind));
        result
    }

    fn route_inner(&mut self, request: &RouteRequest) -> Result<Vec<Decision>, CallError> {
        let (store, router) = match &mut self.instance {
            Some((store, router)) => {
                store.data_mut().begin_call();
                store.set_epoch_deadline(self.plugin.inner.deadline_ticks);
                (store, router)
            }
            slot @ None => {
                let mut store = self.plugin.new_store();
                let router = self.plugin.instantiate(&mut store)?;
                let (store, router) = slot.insert((store, router));
                (store, router)
            }
        };
        let result = call_route(router, store, request);
        store.data_mut().end_call();
        if result.as_ref().is_err_and(CallError::poisons_instance) {
            self.instance = None;
        }
        result
    }
}

fn call_route(
    router: &Router,
    store: &mut Store<HostState>,
    request: &RouteRequest,
) -> Result<Vec<Decision>, CallError> {
    let answer = router
        .tessera_plugin_routing()
        .call_route(&mut *store, request)
        .map_err(|e| classify(e, store.data(), false))?;
    let decisions = answer.map_err(CallError::Plugin)?;
    check_decisions(&decisions, request)?;
    Ok(decisions)
}

/// The contract of `route`: one decision per task, assignments only to given targets.
fn check_decisions(decisions: &[Decision], request: &RouteRequest) -> Result<(), CallError> {
    let (tasks, targets) = (request.tasks.len(), request.targets.len());
    if decisions.len() != tasks {
        return Err(CallError::InvalidResult(format!(
            "{} decisions for {tasks} tasks (there must be exactly one per task)",
            decisions.len(),
        )));
    }
    for (i, d) in decisions.iter().enumerate() {
        if let Decision::Assign(j) = *d
            && !usize::try_from(j).is_ok_and(|j| j < targets)
        {
            return Err(CallError::InvalidResult(format!(
                "decision {i} assigns target {j}, but the request has {targets} target{}",
                if targets == 1 { "" } else { "s" }
            )));
        }
    }
    Ok(())
}

/// Turns a wasmtime error from instantiating or calling into a [`CallError`].
pub(crate) fn classify(e: wasmtime::Error, state: &HostState, instantiating: bool) -> CallError {
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::Interrupt) {
        return CallError::Timeout;
    }
    if state.limiter.hit {
        return CallError::OutOfMemory;
    }
    match trap {
        Some(trap) => {
            // The whole error carries the wasm backtrace (a kilobyte or more): the
            // reason a task or an operator sees is the trap and where it happened; the
            // rest goes to the debug log.
            tracing::debug!(plugin = %state.ctx.name, version = %state.ctx.version, error = %one_line(&e), "plugin trapped");
            CallError::Trap(trap_reason(&e, trap))
        }
        None if instantiating => CallError::Instantiate(one_line(&e)),
        None => CallError::Trap(one_line(&e)),
    }
}

/// "wasm `unreachable` instruction executed in parse_config", or without a name
/// section "… in function 17".
fn trap_reason(e: &wasmtime::Error, trap: Trap) -> String {
    let frame = e
        .downcast_ref::<WasmBacktrace>()
        .and_then(|bt| bt.frames().first());
    let what = trap.to_string();
    let what = what.strip_prefix("wasm trap: ").unwrap_or(&what);
    match frame {
        Some(f) => match f.func_name() {
            Some(name) => format!("{what} in {name}"),
            None => format!("{what} in function {}", f.func_index()),
        },
        None => what.to_string(),
    }
}

/// An error and its causes on one line, whitespace collapsed (backtraces are multi-line).
pub(crate) fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
