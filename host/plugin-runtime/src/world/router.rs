//! The `router` world: linking (`log` always, `config` when granted), and calls on
//! fresh or warm instances. A router's store holds no WASI parts, which is what keeps a
//! routing call near a microsecond.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::Linker;

use crate::capability::{config, log};
use crate::error::{CallError, LoadError};
use crate::host::{HostState, PluginContext};
use crate::manifest::{Manifest, PluginConfig, World};
use crate::metrics::PluginMetrics;
use crate::runtime::{
    CompiledComponent, ComponentInfo, Grants, PluginRuntime, PluginWorld, RuntimeInner,
};
use crate::trap::{classify, one_line};

use crate::bindings::router as v0_1;
use crate::bindings::router::exports::tessera::plugin::routing as routing_v0_1;
use crate::bindings::v0_2::router as v0_2;
use crate::validate::contract_of;
use tessera_core::plugin::Contract;

pub use crate::bindings::router::tessera::plugin::types::Pair;
pub use crate::bindings::v0_2::router::exports::tessera::plugin0_2_0::routing::{
    Decision, Label, LabelSet, Request as RouteRequest, Target as RouteTarget, Task as RouteTask,
};

/// A loaded router plugin version: compiled, validated, linked (`InstancePre`), with its
/// metrics. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct RouterPlugin {
    inner: Arc<RouterInner>,
}

struct RouterInner {
    /// Keeps the engine and its epoch ticker alive while the plugin can be called.
    runtime: Arc<RuntimeInner>,
    pre: Pre,
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
        log::link(&mut linker, |s| s)?;
        config::link(&mut linker, &manifest, |s| s)?;
        let instance_pre = linker.instantiate_pre(&compiled.component).map_err(|e| {
            LoadError::World(format!("does not match the router world: {}", one_line(&e)))
        })?;
        let world_error = |e: wasmtime::Error| {
            LoadError::World(format!("does not match the router world: {}", one_line(&e)))
        };
        let pre = match contract_of(World::Router, &compiled.info.interfaces.exports) {
            Some(Contract::V0_1) => {
                Pre::V0_1(v0_1::RouterPre::new(instance_pre).map_err(world_error)?)
            }
            _ => Pre::V0_2(v0_2::RouterPre::new(instance_pre).map_err(world_error)?),
        };
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
        let instance_pre = match &self.inner.pre {
            Pre::V0_1(pre) => pre.instance_pre(),
            Pre::V0_2(pre) => pre.instance_pre(),
        };
        let instance = instance_pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Start(classify(e, store.data(), true).to_string()))?;
        let loaded = match &self.inner.pre {
            Pre::V0_1(pre) => v0_1::RouterIndices::new(pre.instance_pre())
                .and_then(|indices| indices.load(&mut store, &instance))
                .map(drop),
            Pre::V0_2(pre) => v0_2::RouterIndices::new(pre.instance_pre())
                .and_then(|indices| indices.load(&mut store, &instance))
                .map(drop),
        };
        loaded.map_err(|e| {
            LoadError::World(format!(
                "does not match the router world: `route` of tessera:plugin/routing@{}: {}",
                self.contract().version(),
                one_line(&e)
            ))
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        match self.inner.pre {
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2(_) => Contract::V0_2,
        }
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
        match &self.inner.pre {
            Pre::V0_1(pre) => pre.instantiate(&mut *store).map(Router::V0_1),
            Pre::V0_2(pre) => pre.instantiate(&mut *store).map(Router::V0_2),
        }
        .map_err(|e| classify(e, store.data(), true))
    }
}

impl PluginWorld for RouterPlugin {
    const WORLD: World = World::Router;

    fn link_validated(
        runtime: &PluginRuntime,
        manifest: Manifest,
        compiled: CompiledComponent,
        grants: Grants,
    ) -> Result<Self, LoadError> {
        RouterPlugin::new(runtime.inner.clone(), manifest, compiled, grants.config)
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
    let answer = match router {
        Router::V0_1(r) => r
            .tessera_plugin_routing()
            .call_route(&mut *store, &request_v0_1(request))
            .map(|answer| answer.map(decisions_from_v0_1)),
        Router::V0_2(r) => r
            .tessera_plugin0_2_0_routing()
            .call_route(&mut *store, request),
    }
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

/// The bindings of the contract version a router was built against.
enum Pre {
    V0_1(v0_1::RouterPre<HostState>),
    V0_2(v0_2::RouterPre<HostState>),
}

/// An instance of a router of either version.
enum Router {
    V0_1(v0_1::Router),
    V0_2(v0_2::Router),
}

/// A request as a 0.1.0 router takes it: the same, without each task's `group`.
fn request_v0_1(r: &RouteRequest) -> routing_v0_1::Request {
    routing_v0_1::Request {
        labels: r
            .labels
            .iter()
            .map(|l| match l {
                Label::Tag(pair) => routing_v0_1::Label::Tag(pair.clone()),
                Label::Group(g) => routing_v0_1::Label::Group(g.clone()),
            })
            .collect(),
        tasks: r
            .tasks
            .iter()
            .map(|t| routing_v0_1::Task {
                needs: t.needs,
                priority: t.priority,
                cpu_cores: t.cpu_cores,
                ram_bytes: t.ram_bytes,
                queued_at_ms: t.queued_at_ms,
            })
            .collect(),
        targets: r
            .targets
            .iter()
            .map(|t| routing_v0_1::Target {
                holds: t.holds,
                free_slots: t.free_slots,
                cpu_cores_free: t.cpu_cores_free,
                ram_bytes_free: t.ram_bytes_free,
            })
            .collect(),
    }
}

fn decisions_from_v0_1(decisions: Vec<routing_v0_1::Decision>) -> Vec<Decision> {
    decisions
        .into_iter()
        .map(|d| match d {
            routing_v0_1::Decision::Assign(i) => Decision::Assign(i),
            routing_v0_1::Decision::Defer(reason) => Decision::Defer(reason),
        })
        .collect()
}
