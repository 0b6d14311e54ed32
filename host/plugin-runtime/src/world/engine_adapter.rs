//! The `engine-adapter` world: bindings, linking (`log` always, `config` and outgoing
//! HTTP when granted), and calls, each on a fresh instance.
//!
//! An adapter translates between Tessera's workflow runs and an external engine
//! (Airflow, …) that it reaches over HTTP; it keeps no state of its own between calls,
//! so everything it needs is in the arguments or at the engine.

use std::sync::Arc;

use tessera_core::plugin::Contract;

use crate::bindings::router::tessera::plugin::types::Pair;
use crate::error::{CallError, LoadError};
use crate::manifest::{Manifest, PluginConfig, World};
use crate::metrics::PluginMetrics;
use crate::per_call::{HttpState, HttpWorld};
use crate::runtime::{
    CompiledComponent, ComponentInfo, Grants, PluginRuntime, PluginWorld, RuntimeInner,
};
use crate::validate::contract_of;

use crate::bindings::engine_adapter as v0_1;
use crate::bindings::engine_adapter::exports::tessera::plugin::engine as engine_v0_1;
use crate::bindings::v0_2::engine_adapter as v0_2;

pub use crate::bindings::v0_2::engine_adapter::exports::tessera::plugin0_2_0::engine::{
    LogChunk, RunStatus, State as RunState, TaskNode, TaskRun,
};

/// A loaded engine-adapter plugin version: compiled, validated, linked (`InstancePre`),
/// with its metrics and (with the `http` grant) the hosts it may send requests to.
/// Cheap to clone; `Send + Sync`.
///
/// Either contract version loads; calls speak 0.2.0's types, and a 0.1.0 adapter's
/// answers are carried over ([`EngineAdapterPlugin::contract`] says which it is).
///
/// Every method runs on a fresh instance and blocks the calling thread for up to the
/// manifest's timeout (outgoing requests included): call it from a blocking context
/// (`spawn_blocking` or a plain thread), not from an async task.
#[derive(Clone)]
pub struct EngineAdapterPlugin {
    inner: Arc<Bound>,
}

enum Bound {
    V0_1(HttpWorld<v0_1::EngineAdapterPre<HttpState>>),
    V0_2(HttpWorld<v0_2::EngineAdapterPre<HttpState>>),
}

impl Bound {
    fn calls(&self) -> &crate::per_call::FreshCalls {
        match self {
            Bound::V0_1(w) => &w.calls,
            Bound::V0_2(w) => &w.calls,
        }
    }
}

/// One call, written once for each contract version.
enum Call<'a> {
    V0_1(&'a engine_v0_1::Guest),
    V0_2(&'a v0_2::exports::tessera::plugin0_2_0::engine::Guest),
}

impl EngineAdapterPlugin {
    pub(crate) fn new(
        runtime: Arc<RuntimeInner>,
        manifest: Manifest,
        compiled: CompiledComponent,
        config: PluginConfig,
        allowed_hosts: Vec<String>,
    ) -> Result<Self, LoadError> {
        let contract = contract_of(World::EngineAdapter, &compiled.info.interfaces.exports);
        let inner = match contract {
            Some(Contract::V0_1) => Bound::V0_1(HttpWorld::load(
                runtime,
                manifest,
                compiled,
                config,
                allowed_hosts,
                "engine-adapter",
                v0_1::EngineAdapterPre::new,
                v0_1::EngineAdapterPre::instance_pre,
                |pre, store, instance| {
                    v0_1::EngineAdapterIndices::new(pre)?.load(store, instance)?;
                    Ok(())
                },
            )?),
            _ => Bound::V0_2(HttpWorld::load(
                runtime,
                manifest,
                compiled,
                config,
                allowed_hosts,
                "engine-adapter",
                v0_2::EngineAdapterPre::new,
                v0_2::EngineAdapterPre::instance_pre,
                |pre, store, instance| {
                    v0_2::EngineAdapterIndices::new(pre)?.load(store, instance)?;
                    Ok(())
                },
            )?),
        };
        Ok(EngineAdapterPlugin {
            inner: Arc::new(inner),
        })
    }

    /// The contract version the component was built against.
    pub fn contract(&self) -> Contract {
        match &*self.inner {
            Bound::V0_1(_) => Contract::V0_1,
            Bound::V0_2(_) => Contract::V0_2,
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.inner.calls().manifest
    }

    pub fn info(&self) -> &ComponentInfo {
        &self.inner.calls().info
    }

    pub fn metrics(&self) -> &PluginMetrics {
        self.inner.calls().metrics()
    }

    /// The authorities this binding lets the plugin send requests to, as given at link
    /// time (meaningful only with the `http` grant).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.calls().allowed_hosts
    }

    /// Checks a workflow definition; the plugin's error says what is wrong. Returns the
    /// task graph, or `None` from a 0.1.0 adapter (which cannot report it).
    pub fn validate(&self, definition: &str) -> Result<Option<Vec<TaskNode>>, CallError> {
        self.call(|call, store| match call {
            Call::V0_1(e) => Ok(e.call_validate(store, definition)?.map(|()| None)),
            Call::V0_2(e) => Ok(e.call_validate(store, definition)?.map(Some)),
        })
    }

    /// Starts a run of `definition`; returns the engine's id for it.
    pub fn submit(
        &self,
        definition: &str,
        parameters: &[Pair],
        labels: &[Pair],
    ) -> Result<String, CallError> {
        self.call(|call, store| match call {
            Call::V0_1(e) => e.call_submit(store, definition, parameters, labels),
            Call::V0_2(e) => e.call_submit(store, definition, parameters, labels),
        })
    }

    /// The run's state and its task runs (from a 0.1.0 adapter: every task run is try
    /// 1, without a message).
    pub fn status(&self, external_id: &str) -> Result<RunStatus, CallError> {
        self.call(|call, store| match call {
            Call::V0_1(e) => Ok(e.call_status(store, external_id)?.map(status_from_v0_1)),
            Call::V0_2(e) => e.call_status(store, external_id),
        })
    }

    /// Cancels a run.
    pub fn cancel(&self, external_id: &str) -> Result<(), CallError> {
        self.call(|call, store| match call {
            Call::V0_1(e) => e.call_cancel(store, external_id),
            Call::V0_2(e) => e.call_cancel(store, external_id),
        })
    }

    /// Retries a run's failed tasks (or the listed ones), with `downstream` also every
    /// task downstream of them. A 0.1.0 adapter cannot be asked for `downstream`: that
    /// is an [`CallError::Unsupported`].
    pub fn retry(
        &self,
        external_id: &str,
        task_ids: &[String],
        downstream: bool,
    ) -> Result<(), CallError> {
        if downstream && self.contract() == Contract::V0_1 {
            return Err(CallError::Unsupported(
                "retrying downstream tasks needs an engine adapter of tessera:plugin@0.2.0".into(),
            ));
        }
        self.call(|call, store| match call {
            Call::V0_1(e) => e.call_retry(store, external_id, task_ids),
            Call::V0_2(e) => e.call_retry(store, external_id, task_ids, downstream),
        })
    }

    /// Up to `max_bytes` of the log of try `try_number` of a task from byte `offset` on
    /// (a 0.1.0 adapter knows only the latest try and returns what it has).
    pub fn logs(
        &self,
        external_id: &str,
        task_id: &str,
        try_number: u32,
        offset: u64,
        max_bytes: u32,
    ) -> Result<LogChunk, CallError> {
        let chunk = self.call(|call, store| match call {
            Call::V0_1(e) => Ok(e
                .call_logs(store, external_id, task_id, offset)?
                .map(|text| LogChunk {
                    next_offset: offset.saturating_add(text.len() as u64),
                    text,
                })),
            Call::V0_2(e) => {
                e.call_logs(store, external_id, task_id, try_number, offset, max_bytes)
            }
        })?;
        let expected = offset.saturating_add(chunk.text.len() as u64);
        if chunk.next_offset != expected {
            return Err(CallError::InvalidResult(format!(
                "a log piece of {} bytes from offset {offset} must continue at {expected}, \
                 not {}",
                chunk.text.len(),
                chunk.next_offset
            )));
        }
        Ok(chunk)
    }

    fn call<R>(
        &self,
        f: impl FnOnce(
            Call<'_>,
            &mut wasmtime::Store<HttpState>,
        ) -> wasmtime::Result<Result<R, crate::bindings::PluginError>>,
    ) -> Result<R, CallError> {
        match &*self.inner {
            Bound::V0_1(w) => w.calls.call(
                w.calls.store(None, HttpState::new),
                |store| w.pre.instantiate(store),
                |engine: &v0_1::EngineAdapter, store| {
                    f(Call::V0_1(engine.tessera_plugin_engine()), store)
                },
            ),
            Bound::V0_2(w) => w.calls.call(
                w.calls.store(None, HttpState::new),
                |store| w.pre.instantiate(store),
                |engine: &v0_2::EngineAdapter, store| {
                    f(Call::V0_2(engine.tessera_plugin0_2_0_engine()), store)
                },
            ),
        }
    }
}

fn state_from_v0_1(s: engine_v0_1::RunState) -> RunState {
    use engine_v0_1::RunState as Old;
    match s {
        Old::Queued => RunState::Queued,
        Old::Running => RunState::Running,
        Old::Succeeded => RunState::Succeeded,
        Old::Failed => RunState::Failed,
        Old::Canceled => RunState::Canceled,
        Old::Skipped => RunState::Skipped,
        Old::Unknown => RunState::Unknown,
    }
}

fn status_from_v0_1(s: engine_v0_1::RunStatus) -> RunStatus {
    RunStatus {
        state: state_from_v0_1(s.state),
        tasks: s
            .tasks
            .into_iter()
            .map(|t| TaskRun {
                task_id: t.task_id,
                try_number: 1,
                state: state_from_v0_1(t.state),
                start_ms: t.start_ms,
                end_ms: t.end_ms,
                message: None,
            })
            .collect(),
        message: s.message,
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
