//! The `engine-adapter` world: bindings, linking (`log` always, `config` and outgoing
//! HTTP when granted), and calls, each on a fresh instance.
//!
//! An adapter translates between Tessera's workflow runs and an external engine
//! (Airflow, …) that it reaches over HTTP; it keeps no state of its own between calls,
//! so everything it needs is in the arguments or at the engine.

use std::sync::Arc;

use crate::bindings::router::tessera::plugin::types::Pair;
use crate::error::{CallError, LoadError};
use crate::manifest::{Manifest, PluginConfig, World};
use crate::metrics::PluginMetrics;
use crate::per_call::{HttpState, HttpWorld};
use crate::runtime::{
    CompiledComponent, ComponentInfo, Grants, PluginRuntime, PluginWorld, RuntimeInner,
};

use crate::bindings::engine_adapter::exports::tessera::plugin::engine::Guest;
use crate::bindings::engine_adapter::{EngineAdapter, EngineAdapterIndices, EngineAdapterPre};

pub use crate::bindings::engine_adapter::exports::tessera::plugin::engine::{
    RunState, RunStatus, TaskRun,
};

/// A loaded engine-adapter plugin version: compiled, validated, linked (`InstancePre`),
/// with its metrics and (with the `http` grant) the hosts it may send requests to.
/// Cheap to clone; `Send + Sync`.
///
/// Every method runs on a fresh instance and blocks the calling thread for up to the
/// manifest's timeout (outgoing requests included): call it from a blocking context
/// (`spawn_blocking` or a plain thread), not from an async task.
#[derive(Clone)]
pub struct EngineAdapterPlugin {
    inner: Arc<HttpWorld<EngineAdapterPre<HttpState>>>,
}

impl EngineAdapterPlugin {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        compiled: CompiledComponent,
        config: PluginConfig,
        allowed_hosts: Vec<String>,
    ) -> Result<Self, LoadError> {
        let world = HttpWorld::load(
            runtime,
            manifest,
            compiled,
            config,
            allowed_hosts,
            "engine-adapter",
            EngineAdapterPre::new,
            EngineAdapterPre::instance_pre,
            |pre, store, instance| {
                EngineAdapterIndices::new(pre)?.load(store, instance)?;
                Ok(())
            },
        )?;
        Ok(EngineAdapterPlugin {
            inner: Arc::new(world),
        })
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

    /// Checks a workflow definition; the plugin's error says what is wrong.
    pub fn validate(&self, definition: &str) -> Result<(), CallError> {
        self.call(|engine, store| engine.call_validate(store, definition))
    }

    /// Starts a run of `definition`; returns the engine's id for it.
    pub fn submit(
        &self,
        definition: &str,
        parameters: &[Pair],
        labels: &[Pair],
    ) -> Result<String, CallError> {
        self.call(|engine, store| engine.call_submit(store, definition, parameters, labels))
    }

    /// The run's state and its task runs.
    pub fn status(&self, external_id: &str) -> Result<RunStatus, CallError> {
        self.call(|engine, store| engine.call_status(store, external_id))
    }

    /// Cancels a run.
    pub fn cancel(&self, external_id: &str) -> Result<(), CallError> {
        self.call(|engine, store| engine.call_cancel(store, external_id))
    }

    /// Retries a run's failed tasks (or the listed ones).
    pub fn retry(&self, external_id: &str, task_ids: &[String]) -> Result<(), CallError> {
        self.call(|engine, store| engine.call_retry(store, external_id, task_ids))
    }

    /// The log of one task run from byte `offset` on.
    pub fn logs(&self, external_id: &str, task_id: &str, offset: u64) -> Result<String, CallError> {
        self.call(|engine, store| engine.call_logs(store, external_id, task_id, offset))
    }

    fn call<R>(
        &self,
        f: impl FnOnce(
            &Guest,
            &mut wasmtime::Store<HttpState>,
        ) -> wasmtime::Result<Result<R, crate::bindings::PluginError>>,
    ) -> Result<R, CallError> {
        let calls = &self.inner.calls;
        calls.call(
            calls.store(None, HttpState::new),
            |store| self.inner.pre.instantiate(store),
            |engine: &EngineAdapter, store| f(engine.tessera_plugin_engine(), store),
        )
    }
}

impl PluginWorld for EngineAdapterPlugin {
    const WORLD: World = World::EngineAdapter;

    fn link_validated(
        runtime: &PluginRuntime,
        manifest: Manifest,
        compiled: CompiledComponent,
        grants: Grants,
    ) -> Result<Self, LoadError> {
        EngineAdapterPlugin::new(
            runtime.inner.clone(),
            manifest,
            compiled,
            grants.config,
            grants.allowed_hosts,
        )
    }
}
