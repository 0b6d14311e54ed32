//! The boundary between the Workflow API and the engines that run workflows: the
//! native engine inside this server (`tessera`; its scheduler is in `workflow_runs`) and
//! the engine-adapter plugin bound to any other engine's name (`workflow_adapters`).
//!
//! The API resolves a workflow's engine here, once per request or scheduler step, and
//! asks it the same things whatever it is: check a definition and report its task graph,
//! bring an active run forward, run chosen tasks of an ended run again, and give a task
//! run's log. Everything else (revisions, runs and task runs in the store, their states
//! and events, cancel requests, the choice of tasks to retry, clean-up, identity) is the
//! API's, the same for every engine. An engine name that nothing serves is refused,
//! never run on something else.

use axum::response::Response;
use serde_json::Value;
use tessera_core::error::FieldError;
use tessera_core::params::Parameter;
use tessera_core::{ApiError, ErrorCode};
use tessera_plugin_runtime::{CallError, EngineAdapterPlugin};
use tessera_store::{TaskRunRow, WorkflowRunRow};
use tessera_workflow::plan::Attempt;
use tessera_workflow::{Dag, native};

use crate::{AppState, Error};

/// An engine that runs workflows.
#[derive(Clone)]
pub(crate) enum Engine {
    /// `tessera`: this server's scheduler; each attempt is a task of the one task model.
    Native,
    /// The engine-adapter plugin bound to the engine's name.
    Adapter(EngineAdapterPlugin),
}

/// What an engine says of a definition: its canonical text and its task graph.
pub(crate) struct Validated {
    pub(crate) canonical: String,
    pub(crate) dag: Dag,
}

impl Engine {
    /// The engine named `name`: the native one, the adapter bound to the name now, or
    /// none.
    pub(crate) fn named(state: &AppState, name: &str) -> Option<Engine> {
        if name == native::ENGINE {
            return Some(Engine::Native);
        }
        state.registry().engine_adapter(name).map(Engine::Adapter)
    }

    /// As [`Engine::named`]; none is a `400` on the document's `engine` field.
    pub(crate) fn named_or_400(state: &AppState, name: &str) -> Result<Engine, Error> {
        Engine::named(state, name).ok_or_else(|| {
            Error(ApiError::invalid_document(
                "workflow",
                vec![FieldError::at(
                    "engine",
                    format!(
                        "no engine {name:?}: the native engine is {:?}, and no engine adapter \
                         is bound to {name:?} (see `tessera plugin`)",
                        native::ENGINE
                    ),
                )],
            ))
        })
    }

    /// Checks `definition` (with the workflow's `parameters`): its canonical text and
    /// task graph, or a `400` naming what is wrong.
    pub(crate) async fn validate(
        &self,
        definition: &Value,
        parameters: &[Parameter],
    ) -> Result<Validated, Error> {
        let adapter = match self {
            Engine::Native => {
                let def = native::Definition::parse(definition)
                    .map_err(|e| Error(ApiError::invalid_document("workflow", e)))?;
                let dag = def
                    .check(parameters)
                    .map_err(|e| Error(ApiError::invalid_document("workflow", e)))?;
                return Ok(Validated {
                    canonical: tessera_workflow::canonical_definition(&def.to_value()),
                    dag,
                });
            }
            Engine::Adapter(a) => a.clone(),
        };
        let engine = adapter.manifest().name.clone();
        let text = tessera_workflow::canonical_definition(definition);
        let checked = text.clone();
        let outcome = tokio::task::spawn_blocking(move || adapter.validate(&checked))
            .await
            .map_err(|e| Error::internal("the engine adapter's call failed", e))?;
        let graph = outcome.map_err(|e| match e {
            // What the engine says is wrong with the definition.
            CallError::Plugin(_) => Error(ApiError::invalid_document(
                "workflow",
                vec![FieldError::at("definition", e.to_string())],
            )),
            // The adapter or its engine failed: nothing is known about the definition.
            _ => Error::new(
                ErrorCode::Unavailable,
                format!("engine adapter {engine:?} could not check the definition: {e}"),
            ),
        })?;
        // A 0.1 adapter does not report the graph; its runs show the task runs the engine
        // reports as they come. A 0.2 adapter's graph is held to the same rules as ours.
        let dag = match graph {
            None => Dag { tasks: Vec::new() },
            Some(nodes) => {
                let tasks: Vec<(String, Vec<String>)> =
                    nodes.into_iter().map(|n| (n.id, n.upstream)).collect();
                Dag::new(&tasks).map_err(|errs| {
                    Error::new(
                        ErrorCode::Unavailable,
                        format!(
                            "engine adapter {engine:?} reported a task graph that is not one: {}",
                            errs.iter()
                                .map(|e| e.message.as_str())
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    )
                })?
            }
        };
        Ok(Validated {
            canonical: text,
            dag,
        })
    }

    /// Brings active run `run` forward at `now_ms`: the native engine plans and starts
    /// or cancels its tasks; an adapter's run is submitted, or synced with the engine.
    /// The time the run waits for next, if any.
    pub(crate) async fn advance(
        &self,
        state: &AppState,
        run: &WorkflowRunRow,
        now_ms: i64,
    ) -> Result<Option<i64>, Error> {
        match self {
            Engine::Native => crate::workflow_runs::plan_and_apply(state, run, now_ms).await,
            Engine::Adapter(a) => crate::workflow_adapters::sync(state, run, a, now_ms)
                .await
                .map(|()| None),
        }
    }

    /// Runs `tasks` of ended run `run` again, which the API chose from the graph and
    /// `attempts` (the latest of each task: the failed ones, or chosen ones and what
    /// depends on them). `selection` and `downstream` are the request as given, for an
    /// adapter that reported no graph.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn retry(
        &self,
        state: &AppState,
        run: &WorkflowRunRow,
        dag: &Dag,
        attempts: &[Attempt],
        tasks: Vec<String>,
        selection: Option<Vec<String>>,
        downstream: bool,
    ) -> Result<(), Error> {
        match self {
            Engine::Native => {
                crate::workflow_runs::new_attempts(state, run, attempts, &tasks).await
            }
            Engine::Adapter(a) => {
                let (tasks, downstream) = if dag.tasks.is_empty() {
                    (selection.unwrap_or_default(), downstream)
                } else {
                    (tasks, false)
                };
                crate::workflow_adapters::retry(state, run, a, tasks, downstream).await?;
                crate::workflow_adapters::spawn_sync(state, &run.id, a);
                Ok(())
            }
        }
    }

    /// Task run `row`'s log from the query's offset: a page of up to `page` bytes, or
    /// followed as text.
    pub(crate) async fn log(
        &self,
        state: &AppState,
        run: WorkflowRunRow,
        row: TaskRunRow,
        q: &crate::task_output::Query,
        page: u32,
    ) -> Result<Response, Error> {
        match self {
            Engine::Native => crate::workflow_runs::native_log(state, run, row, q, page).await,
            Engine::Adapter(a) if q.follow => Ok(crate::workflow_adapters::follow(
                state,
                a.clone(),
                run,
                row,
                q.skip,
                page,
            )),
            Engine::Adapter(a) => crate::workflow_adapters::page(&run, a, row, q.skip, page).await,
        }
    }
}
