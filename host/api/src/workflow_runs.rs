//! The Workflow API's runs (`/v1/workflow-runs`): runs of a workflow revision, their
//! task runs, cancel and retry; and the scheduler that drives runs of the native engine.
//! What differs between engines (advancing a run, retrying its tasks, a task run's log)
//! goes through `engines::Engine`; runs on adapters are synced by `workflow_adapters`.
//!
//! A run belongs to its workflow's group. Its task runs are the attempts of the
//! workflow's tasks; with the native engine each attempt is a task of the one task model
//! (origin `workflow`, id derived from the run, the task and the attempt), so it runs
//! wherever the router sends it and shows in the TES and Task API listings, tagged with
//! the run.
//!
//! The scheduler ([`round`]) reads each active run's task runs and their tasks' states,
//! asks `tessera_workflow::plan` what to do, writes the answer under a compare-and-set
//! on the run (several servers: one applies it), then submits and cancels tasks. It wakes
//! when a task changes state in this process, when a request changes a run, at a retry's
//! backoff, and once a second for what other servers changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_core::error::FieldError;
use tessera_core::identity::Role;
use tessera_core::task::Origin;
use tessera_core::time_fmt::format_rfc3339;
use tessera_core::{ApiError, ErrorCode};
use tessera_store::{
    NewTaskRun, NewWorkflowRun, RunChange, TaskRunChange, TaskRunRow, WorkflowRow,
    WorkflowRunQuery, WorkflowRunRow,
};
use tessera_workflow::native::{self, Definition};
use tessera_workflow::plan::{Action, Attempt, Input, plan};
use tessera_workflow::{CleanupPolicy, Dag, RunState, TaskRunState};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::engines::Engine;
use crate::query::{bad_token, page_size};
use crate::workflows::label_filter;
use crate::{AppState, Error};

/// Most runs one scheduler round looks at.
const ROUND_RUNS: u32 = 1000;
/// How long the scheduler sleeps when nothing wakes it (other servers' changes).
const IDLE_POLL: Duration = Duration::from_secs(1);

pub(crate) use tessera_core::time_fmt::now_ms;

fn at_ms(ms: i64) -> Option<String> {
    tessera_core::time_fmt::from_ms(ms).map(format_rfc3339)
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::internal("a stored workflow run does not decode", e)
}

fn store_error(context: &str) -> impl FnOnce(tessera_store::StoreError) -> Error + '_ {
    move |e| Error::internal(context, e)
}

// ---- views --------------------------------------------------------------------------

/// A run as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowRunView {
    id: String,
    workflow: String,
    version: i64,
    engine: String,
    group: String,
    state: RunState,
    /// Cancel was asked for and the run has not ended yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    canceling: bool,
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    labels: BTreeMap<String, String>,
    cleanup: CleanupPolicy,
    cleaned: bool,
    external_id: Option<String>,
    message: Option<String>,
    created_at: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    created_by: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowRunList {
    workflow_runs: Vec<WorkflowRunView>,
    next_page_token: Option<String>,
}

/// One attempt of one task of a run.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskRunView {
    id: String,
    run_id: String,
    task_title: String,
    /// 1 for the first; a retry makes the next.
    attempt: i64,
    state: TaskRunState,
    /// The task of the one task model that runs it (`GET /v1/tasks/{id}`).
    task_id: Option<String>,
    external_id: Option<String>,
    /// A retry waits until then.
    not_before: Option<String>,
    started_at: Option<String>,
    ended_at: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskRunList {
    task_runs: Vec<TaskRunView>,
}

fn run_view(r: &WorkflowRunRow) -> Result<WorkflowRunView, Error> {
    Ok(WorkflowRunView {
        id: r.id.clone(),
        workflow: r.title.clone(),
        version: r.version,
        engine: r.engine.clone(),
        group: r.group.clone(),
        state: r.state.parse().map_err(corrupt)?,
        canceling: r.cancel_requested,
        params: serde_json::from_str(&r.params).map_err(corrupt)?,
        labels: serde_json::from_str(&r.labels).map_err(corrupt)?,
        cleanup: serde_json::from_value(Value::String(r.cleanup.clone())).map_err(corrupt)?,
        cleaned: r.cleaned,
        external_id: r.external_id.clone(),
        message: r.message.clone(),
        created_at: at_ms(r.created_ms),
        started_at: r.started_ms.and_then(at_ms),
        ended_at: r.ended_ms.and_then(at_ms),
        created_by: r.created_by.clone(),
    })
}

fn task_run_view(t: &TaskRunRow, canceling: bool) -> Result<TaskRunView, Error> {
    Ok(TaskRunView {
        id: t.id.clone(),
        run_id: t.run_id.clone(),
        task_title: t.task_title.clone(),
        attempt: t.attempt,
        state: effective_state(t, canceling)?,
        task_id: t.task_id.clone(),
        external_id: t.external_id.clone(),
        not_before: t.not_before_ms.and_then(at_ms),
        started_at: t.started_ms.and_then(at_ms),
        ended_at: t.ended_ms.and_then(at_ms),
        message: t.message.clone(),
    })
}

/// A task run's state: as stored, or read from its task while it holds one. A task
/// canceled while its run is not canceling was canceled from outside the run: an error
/// of the attempt (retried if it may be), not a skip.
fn effective_state(t: &TaskRunRow, canceling: bool) -> Result<TaskRunState, Error> {
    let stored: TaskRunState = t.state.parse().map_err(corrupt)?;
    Ok(match (&t.task_state, stored.is_active()) {
        (Some(ts), true) => match ts.parse::<tessera_core::State>() {
            Ok(tessera_core::State::Canceled) if !canceling => TaskRunState::Error,
            Ok(s) => TaskRunState::of_task(s),
            Err(_) => stored,
        },
        _ => stored,
    })
}

// ---- creating and reading runs ------------------------------------------------------

/// Which revision a run runs: a version number, or `"latest"`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum VersionSelector {
    Number(i64),
    Named(String),
}

/// `POST /v1/workflow-runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(crate::workflow_runs::example_run))]
pub struct NewRunBody {
    /// The workflow's title.
    workflow: String,
    /// A version, or `"latest"` (the default).
    #[serde(default)]
    version: Option<VersionSelector>,
    /// Parameter values by name.
    #[serde(default, alias = "parameters")]
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// What happens to the run's data when it ends.
    #[serde(default)]
    cleanup: CleanupPolicy,
}

pub fn example_run() -> Value {
    serde_json::json!({"workflow": "etl", "params": {"count": 5}, "labels": {"env": "test"}})
}

/// A run the caller sees, else 404.
async fn visible_run(state: &AppState, caller: &Caller, id: &str) -> Result<WorkflowRunRow, Error> {
    let run = state
        .runner()
        .store()
        .workflow_run(id)
        .await
        .map_err(store_error("reading the workflow run failed"))?
        .ok_or_else(|| Error(ApiError::not_found("workflow run", id)))?;
    caller.check_sees(&run.group, "workflow run", id)?;
    Ok(run)
}

#[utoipa::path(
    post,
    operation_id = "create_workflow_run",
    path = "/v1/workflow-runs",
    tag = "workflow-runs",
    params(crate::openapi::InGroup),
    request_body = NewRunBody,
    responses((status = 201, body = WorkflowRunView))
)]
pub async fn create_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let group = crate::query::target_group(&caller, raw.as_deref())?;
    let b: NewRunBody = crate::body::json(&body, "workflow run")?;
    let version = match &b.version {
        None => None,
        Some(VersionSelector::Number(n)) => Some(*n),
        Some(VersionSelector::Named(s)) if s == "latest" => None,
        Some(VersionSelector::Named(s)) => {
            return Err(Error(ApiError::invalid_document(
                "workflow run",
                vec![FieldError::at(
                    "version",
                    format!("{s:?} is not a version number or \"latest\""),
                )],
            )));
        }
    };
    let wf = crate::workflows::find(&state, &caller, &group, &b.workflow, version).await?;
    caller.check_role(Role::Write, &group, "workflow", &b.workflow)?;
    if Engine::named(&state, &wf.engine).is_none() {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "workflow {} runs on engine {:?}, and no engine adapter is bound to it now \
                 (see `tessera plugin`)",
                wf.title, wf.engine
            ),
        ));
    }
    let parameters = crate::workflows::parameters_of(&wf)?;
    let mut errs = Vec::new();
    if let Err(e) = tessera_core::params::resolve(&parameters, &b.params, "workflow") {
        errs.extend(e);
    }
    tessera_core::operation::check_labels(&b.labels, &mut errs);
    if !errs.is_empty() {
        return Err(Error(ApiError::invalid_document("workflow run", errs)));
    }
    let id = tessera_core::id::new_task_id();
    let created = OffsetDateTime::now_utc();
    let created_ms = tessera_core::time_fmt::store_ms(created);
    // A first attempt of each task.
    let task_runs: Vec<NewTaskRun> = crate::workflows::dag_of(&wf)?
        .tasks
        .iter()
        .map(|t| NewTaskRun {
            id: tessera_workflow::task_run_id(&id, created, &t.title, 1),
            task_title: t.title.clone(),
            attempt: 1,
            state: TaskRunState::Created.as_str().to_string(),
            task_id: None,
            not_before_ms: None,
        })
        .collect();
    let params = Value::Object(b.params.clone()).to_string();
    let cleanup = serde_json::to_value(b.cleanup)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "Never".to_string());
    let run = state
        .runner()
        .store()
        .create_workflow_run(
            &NewWorkflowRun {
                id: &id,
                group: &group,
                workflow: &wf,
                state: RunState::Created.as_str(),
                params: &params,
                labels: &b.labels,
                cleanup: &cleanup,
                created_ms,
                by: &caller.username,
            },
            &task_runs,
        )
        .await
        .map_err(store_error("storing the workflow run failed"))?;
    tracing::info!(run = %id, %group, workflow = %wf.title, version = wf.version, "workflow run created");
    state.workflow_wake().notify_one();
    Ok(crate::audit::naming(
        (
            StatusCode::CREATED,
            [(header::LOCATION, format!("/v1/workflow-runs/{id}"))],
            Json(run_view(&run)?),
        ),
        &id,
    ))
}

#[utoipa::path(
    get,
    operation_id = "show_workflow_run",
    path = "/v1/workflow-runs/{id}",
    tag = "workflow-runs",
    params(("id" = String, Path)),
    responses((status = 200, body = WorkflowRunView))
)]
pub async fn show_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<WorkflowRunView>, Error> {
    let run = visible_run(&state, &caller, &id).await?;
    let active = run
        .state
        .parse::<RunState>()
        .is_ok_and(|s| !s.is_terminal());
    if !active {
        return Ok(Json(run_view(&run)?));
    }
    // An active run is brought up to date before it is shown (the lazy sync).
    if let Err(e) = step(&state, &id, now_ms()).await {
        tracing::warn!(run = %id, error = %e.0.message, "syncing a workflow run on read failed");
    }
    Ok(Json(run_view(&visible_run(&state, &caller, &id).await?)?))
}

/// `GET /v1/workflow-runs` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RunFilter {
    /// The workflow's title.
    workflow: Option<String>,
    /// Repeatable.
    #[param(inline)]
    state: Option<Vec<RunState>>,
    /// `key=value` (repeatable).
    label: Option<Vec<String>>,
    /// Created at or after (RFC 3339).
    created_after: Option<String>,
    /// Created before (RFC 3339).
    created_before: Option<String>,
}

fn time_param(k: &str, v: &str) -> Result<i64, Error> {
    tessera_core::time_fmt::parse_rfc3339(v)
        .map(tessera_core::time_fmt::store_ms)
        .ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameter,
                format!("{k} {v:?} is not an RFC 3339 time"),
            )
        })
}

fn run_query(caller: &Caller, raw: Option<&str>) -> Result<WorkflowRunQuery, Error> {
    let mut q = WorkflowRunQuery {
        groups: crate::query::listed_groups(caller, raw)?,
        limit: 100,
        ..WorkflowRunQuery::default()
    };
    for (k, v) in crate::query::pairs(raw)? {
        match k.as_str() {
            "page_size" => q.limit = page_size(&v)?,
            "page_token" if !v.is_empty() => {
                q.before_seq = Some(tessera_core::page::decode(&v).ok_or_else(bad_token)?);
            }
            "workflow" if !v.is_empty() => q.title = Some(v),
            "state" if !v.is_empty() => {
                let s: RunState = v
                    .parse()
                    .map_err(|e: String| Error::new(ErrorCode::InvalidParameter, e))?;
                q.states.push(s.as_str().to_string());
            }
            "label" if !v.is_empty() => q.labels.push(label_filter(&v)?),
            "created_after" if !v.is_empty() => q.created_after_ms = Some(time_param(&k, &v)?),
            "created_before" if !v.is_empty() => q.created_before_ms = Some(time_param(&k, &v)?),
            _ => {}
        }
    }
    Ok(q)
}

/// Runs, newest first.
#[utoipa::path(
    get,
    operation_id = "list_workflow_runs",
    path = "/v1/workflow-runs",
    tag = "workflow-runs",
    params(crate::openapi::ListedGroups, crate::openapi::Paging, RunFilter),
    responses((status = 200, body = WorkflowRunList))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WorkflowRunList>, Error> {
    let q = run_query(&caller, raw.as_deref())?;
    let rows = state
        .runner()
        .store()
        .list_workflow_runs(&q)
        .await
        .map_err(store_error("listing workflow runs failed"))?;
    let next = (rows.len() == q.limit as usize)
        .then(|| rows.last().map(|r| tessera_core::page::encode(r.seq)))
        .flatten();
    Ok(Json(WorkflowRunList {
        workflow_runs: rows.iter().map(run_view).collect::<Result<_, _>>()?,
        next_page_token: next,
    }))
}

// ---- lifecycle ----------------------------------------------------------------------

/// Stop a run: what runs is canceled (its containers stop), what has not started is
/// skipped; the run ends Canceled.
#[utoipa::path(
    put,
    operation_id = "cancel_workflow_run",
    path = "/v1/workflow-runs/{id}/cancel",
    tag = "workflow-runs",
    params(("id" = String, Path)),
    responses((status = 200, body = WorkflowRunView))
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<WorkflowRunView>, Error> {
    let run = visible_run(&state, &caller, &id).await?;
    caller.check_role(Role::Write, &run.group, "workflow run", &id)?;
    let store = state.runner().store();
    store
        .request_workflow_cancel(&id)
        .await
        .map_err(store_error("canceling the workflow run failed"))?;
    tracing::info!(run = %id, by = %caller.username, "workflow run cancel requested");
    // Apply it now, so the answer shows where the run stands.
    step(&state, &id, now_ms()).await?;
    Ok(Json(run_view(&visible_run(&state, &caller, &id).await?)?))
}

/// `PUT /v1/workflow-runs/{id}/retry`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryBody {
    /// Tasks to run again; absent: every failed, skipped and upstream-failed task.
    #[serde(default)]
    tasks: Option<Vec<String>>,
    /// With `tasks`: everything downstream of them too.
    #[serde(default)]
    downstream: bool,
}

/// Run a finished run's failed tasks again (or chosen ones), keeping every earlier
/// attempt.
#[utoipa::path(
    put,
    operation_id = "retry_workflow_run",
    path = "/v1/workflow-runs/{id}/retry",
    tag = "workflow-runs",
    params(("id" = String, Path)),
    request_body(content = Option<RetryBody>),
    responses((status = 200, body = WorkflowRunView))
)]
pub async fn retry_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Json<WorkflowRunView>, Error> {
    let b: RetryBody = crate::body::json_or_default(&body, "retry request")?;
    let run = visible_run(&state, &caller, &id).await?;
    retry(&state, &caller, &run, b).await?;
    Ok(Json(run_view(&visible_run(&state, &caller, &id).await?)?))
}

/// Retry ended run `run` (see [`retry_run`]).
async fn retry(
    state: &AppState,
    caller: &Caller,
    run: &WorkflowRunRow,
    b: RetryBody,
) -> Result<(), Error> {
    let id = run.id.as_str();
    caller.check_role(Role::Write, &run.group, "workflow run", id)?;
    let state_now: RunState = run.state.parse().map_err(corrupt)?;
    if !state_now.is_terminal() {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "workflow run {id} is {}: only a run that has ended is retried",
                state_now.as_str()
            ),
        ));
    }
    if run.cleaned {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!("workflow run {id} was cleaned: the outputs its tasks would read are gone"),
        ));
    }
    let store = state.runner().store();
    let wf = store
        .workflow_by_id(&run.workflow_id)
        .await
        .map_err(store_error("reading the workflow failed"))?
        .ok_or_else(|| Error::internal("a workflow run's workflow is missing", &run.workflow_id))?;
    let dag = crate::workflows::dag_of(&wf)?;
    let rows = store
        .task_runs(id)
        .await
        .map_err(store_error("reading the task runs failed"))?;
    let attempts = latest_attempts(&rows, run.cancel_requested)?;
    let selection: Option<BTreeSet<String>> = b.tasks.map(|t| t.into_iter().collect());
    let chosen =
        tessera_workflow::plan::retry_set(&dag, &attempts, selection.as_ref(), b.downstream)
            .map_err(|unknown| {
                Error(ApiError::invalid_document(
                    "retry request",
                    unknown
                        .into_iter()
                        .map(|t| {
                            FieldError::at("tasks", format!("{t:?} is not a task of the workflow"))
                        })
                        .collect(),
                ))
            })?;
    let engine = Engine::named(state, &run.engine).ok_or_else(|| {
        Error::new(
            ErrorCode::Conflict,
            format!(
                "workflow run {id} runs on engine {:?}, and no engine adapter is bound to it now",
                run.engine
            ),
        )
    })?;
    // An adapter that reported no graph (0.1) chooses by itself.
    let engine_chooses = !matches!(engine, Engine::Native) && dag.tasks.is_empty();
    if chosen.is_empty() && !engine_chooses {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!("workflow run {id} has no failed, skipped or upstream-failed task to retry"),
        ));
    }
    let selection = selection.map(|s| s.into_iter().collect());
    engine
        .retry(
            state,
            run,
            &dag,
            &attempts,
            chosen.clone(),
            selection,
            b.downstream,
        )
        .await?;
    tracing::info!(run = %id, tasks = ?chosen, by = %caller.username, "workflow run retried");
    state.workflow_wake().notify_one();
    Ok(())
}

/// New attempts of `tasks` of ended native run `run` (after the latest of `attempts`),
/// which reopens (the scheduler starts them); earlier attempts are kept.
pub(crate) async fn new_attempts(
    state: &AppState,
    run: &WorkflowRunRow,
    attempts: &[Attempt],
    tasks: &[String],
) -> Result<(), Error> {
    let id = run.id.as_str();
    let store = state.runner().store();
    let created =
        tessera_core::time_fmt::from_ms(run.created_ms).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let new_task_runs = tasks
        .iter()
        .map(|title| {
            let next = attempts
                .iter()
                .find(|a| &a.task == title)
                .map_or(1, |a| a.attempt + 1);
            NewTaskRun {
                id: tessera_workflow::task_run_id(id, created, title, next),
                task_title: title.clone(),
                attempt: i64::from(next),
                state: TaskRunState::Created.as_str().to_string(),
                task_id: None,
                not_before_ms: None,
            }
        })
        .collect();
    let change = RunChange {
        state: Some(RunState::Pending.as_str().to_string()),
        reopen: true,
        wake_ms: Some(None),
        new_task_runs,
        ..RunChange::default()
    };
    if !store
        .change_workflow_run(id, run.revision, &change)
        .await
        .map_err(store_error("retrying the workflow run failed"))?
    {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!("workflow run {id} changed meanwhile; ask again"),
        ));
    }
    Ok(())
}

// ---- many runs at once -------------------------------------------------------------

/// What a bulk request did.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResult {
    /// The runs it acted on.
    workflow_runs: Vec<String>,
    /// Runs it matched and left alone, with why.
    skipped: Vec<BulkSkip>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkSkip {
    id: String,
    reason: String,
}

/// The runs a bulk request matches: the list filters, up to `page_size` (default 100).
async fn matching(
    state: &AppState,
    caller: &Caller,
    raw: Option<&str>,
) -> Result<Vec<WorkflowRunRow>, Error> {
    state
        .runner()
        .store()
        .list_workflow_runs(&run_query(caller, raw)?)
        .await
        .map_err(store_error("listing workflow runs failed"))
}

/// Cancel every run the filters match that has not ended (the list's filters).
#[utoipa::path(
    put,
    operation_id = "cancel_workflow_runs",
    path = "/v1/workflow-runs/cancel",
    tag = "workflow-runs",
    params(crate::openapi::ListedGroups, RunFilter),
    responses((status = 200, body = BulkResult))
)]
pub async fn cancel_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<BulkResult>, Error> {
    let mut out = BulkResult {
        workflow_runs: Vec::new(),
        skipped: Vec::new(),
    };
    for run in matching(&state, &caller, raw.as_deref()).await? {
        if caller
            .check_role(Role::Write, &run.group, "workflow run", &run.id)
            .is_err()
        {
            out.skipped.push(BulkSkip {
                id: run.id,
                reason: "you may not change the runs of its group".into(),
            });
            continue;
        }
        let canceled = state
            .runner()
            .store()
            .request_workflow_cancel(&run.id)
            .await
            .map_err(store_error("canceling the workflow run failed"))?;
        if canceled {
            out.workflow_runs.push(run.id);
        } else {
            out.skipped.push(BulkSkip {
                id: run.id,
                reason: "it has ended".into(),
            });
        }
    }
    state.workflow_wake().notify_one();
    Ok(Json(out))
}

/// Retry every ended run the filters match that has failed, skipped or upstream-failed
/// tasks.
#[utoipa::path(
    put,
    operation_id = "retry_workflow_runs",
    path = "/v1/workflow-runs/retry",
    tag = "workflow-runs",
    params(crate::openapi::ListedGroups, RunFilter),
    responses((status = 200, body = BulkResult))
)]
pub async fn retry_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<BulkResult>, Error> {
    let mut out = BulkResult {
        workflow_runs: Vec::new(),
        skipped: Vec::new(),
    };
    for run in matching(&state, &caller, raw.as_deref()).await? {
        match retry(&state, &caller, &run, RetryBody::default()).await {
            Ok(()) => out.workflow_runs.push(run.id),
            Err(e) => out.skipped.push(BulkSkip {
                id: run.id,
                reason: e.0.message,
            }),
        }
    }
    Ok(Json(out))
}

/// Bring runs up to date with their engines now (the scheduler does it when tasks
/// change and every second; this is the on-demand sync).
#[utoipa::path(
    post,
    operation_id = "sync_workflow_runs",
    path = "/v1/workflow-runs/sync",
    tag = "workflow-runs",
    params(crate::openapi::ListedGroups, RunFilter),
    responses((status = 200, body = BulkResult))
)]
pub async fn sync_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<BulkResult>, Error> {
    let mut out = BulkResult {
        workflow_runs: Vec::new(),
        skipped: Vec::new(),
    };
    let now = now_ms();
    for run in matching(&state, &caller, raw.as_deref()).await? {
        let ended = run
            .state
            .parse::<RunState>()
            .map(RunState::is_terminal)
            .unwrap_or(true);
        if ended {
            out.skipped.push(BulkSkip {
                id: run.id,
                reason: "it has ended".into(),
            });
            continue;
        }
        step(&state, &run.id, now).await?;
        out.workflow_runs.push(run.id);
    }
    Ok(Json(out))
}

// ---- clean-up -----------------------------------------------------------------------

/// Where a run keeps its data: its group's bucket, under `workflow-runs/ID/`.
fn data_prefix(id: &str) -> String {
    format!("workflow-runs/{id}/")
}

/// How much data a run keeps.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSize {
    id: String,
    /// Bytes of the outputs its tasks wrote (kept for the tasks downstream and for you).
    bytes: u64,
    objects: u64,
    cleaned: bool,
}

#[utoipa::path(
    get,
    operation_id = "workflow_run_data_size",
    path = "/v1/workflow-runs/{id}/data-size",
    tag = "workflow-runs",
    params(("id" = String, Path)),
    responses((status = 200, body = DataSize))
)]
pub async fn data_size(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DataSize>, Error> {
    let run = visible_run(&state, &caller, &id).await?;
    let objects = crate::data::list_all(&state, &run.group, &data_prefix(&id)).await?;
    Ok(Json(DataSize {
        bytes: objects.iter().map(|o| o.size).sum(),
        objects: objects.len() as u64,
        cleaned: run.cleaned,
        id,
    }))
}

/// What a clean did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CleanResult {
    id: String,
    /// `started` (202: it goes on in the background) or `clean` (200: nothing was left).
    status: String,
}

/// Remove a finished run's data (its tasks' outputs). 202 when it starts, 200 when the
/// run is already clean, 409 while it runs.
#[utoipa::path(
    post,
    operation_id = "clean_workflow_run",
    path = "/v1/workflow-runs/{id}/clean",
    tag = "workflow-runs",
    params(("id" = String, Path)),
    responses(
        (status = 202, body = CleanResult, description = "Cleaning started"),
        (status = 200, body = CleanResult, description = "Already clean"),
    )
)]
pub async fn clean_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let run = visible_run(&state, &caller, &id).await?;
    caller.check_role(Role::Write, &run.group, "workflow run", &id)?;
    let ended = run
        .state
        .parse::<RunState>()
        .map_err(corrupt)?
        .is_terminal();
    if !ended {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "workflow run {id} is {}: cancel it or let it end first",
                run.state
            ),
        ));
    }
    if run.cleaned {
        return Ok((
            StatusCode::OK,
            Json(CleanResult {
                id,
                status: "clean".into(),
            }),
        )
            .into_response());
    }
    tokio::spawn(clean(state.clone(), run.group.clone(), id.clone()));
    Ok((
        StatusCode::ACCEPTED,
        Json(CleanResult {
            id,
            status: "started".into(),
        }),
    )
        .into_response())
}

/// Mark an ended run clean, then remove its data. Marking first, only while the run is
/// still ended, moves its revision: a retry that read the run before is refused, and a
/// run reopened first is not touched.
/// Starts the clean-up of run `id` of `group` in the background.
pub(crate) fn spawn_clean(state: &AppState, group: &str, id: &str) {
    tokio::spawn(clean(state.clone(), group.to_string(), id.to_string()));
}

async fn clean(state: AppState, group: String, id: String) {
    match state.runner().store().mark_workflow_run_cleaned(&id).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(run = %id, error = %e, "marking a workflow run clean failed");
            return;
        }
    }
    match crate::data::delete_prefix(&state, &group, &data_prefix(&id)).await {
        Ok(n) => tracing::info!(run = %id, objects = n, "workflow run cleaned"),
        Err(e) => tracing::warn!(run = %id, error = %e.0.message, "cleaning a workflow run failed"),
    }
}

/// `DELETE /v1/workflow-runs` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DeleteBefore {
    /// Delete runs that ended and were created before this time (RFC 3339).
    before: String,
    /// Only this group's; default every group.
    group: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    deleted: Vec<String>,
}

/// Delete finished runs created before a time, with their task runs and data (instance
/// admins).
#[utoipa::path(
    delete,
    operation_id = "delete_workflow_runs",
    path = "/v1/workflow-runs",
    tag = "workflow-runs",
    params(DeleteBefore),
    responses((status = 200, body = Deleted))
)]
pub async fn delete_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Deleted>, Error> {
    caller.check_instance_admin()?;
    let (mut before, mut group) = (None, None);
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        match k.as_str() {
            "before" => before = Some(time_param("before", &v)?),
            "group" if !v.is_empty() => group = Some(vec![v]),
            _ => {}
        }
    }
    let Some(before) = before else {
        return Err(Error::new(
            ErrorCode::InvalidParameter,
            "before is required: delete runs created before this time (RFC 3339)",
        ));
    };
    let store = state.runner().store();
    let runs = store
        .list_workflow_runs(&WorkflowRunQuery {
            groups: group.clone(),
            created_before_ms: Some(before),
            limit: 100_000,
            ..WorkflowRunQuery::default()
        })
        .await
        .map_err(store_error("listing workflow runs failed"))?;
    for r in runs
        .iter()
        .filter(|r| r.state.parse::<RunState>().is_ok_and(RunState::is_terminal) && !r.cleaned)
    {
        clean(state.clone(), r.group.clone(), r.id.clone()).await;
    }
    let deleted = store
        .delete_finished_workflow_runs(before, group.as_deref())
        .await
        .map_err(store_error("deleting workflow runs failed"))?;
    tracing::info!(runs = deleted.len(), by = %caller.username, "finished workflow runs deleted");
    Ok(Json(Deleted { deleted }))
}

// ---- task runs ----------------------------------------------------------------------

/// `GET /v1/workflow-runs/{id}/task-runs` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TaskRunFilter {
    /// Only this task's attempts.
    task_title: Option<String>,
}

/// Every attempt of every task of the run, by task then attempt.
#[utoipa::path(
    get,
    operation_id = "list_task_runs",
    path = "/v1/workflow-runs/{id}/task-runs",
    tag = "workflow-runs",
    params(("id" = String, Path), TaskRunFilter),
    responses((status = 200, body = TaskRunList))
)]
pub async fn list_task_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TaskRunList>, Error> {
    let mut title = None;
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        if k == "task_title" && !v.is_empty() {
            title = Some(v);
        }
    }
    let run = visible_run(&state, &caller, &id).await?;
    let rows = state
        .runner()
        .store()
        .task_runs(&id)
        .await
        .map_err(store_error("reading the task runs failed"))?;
    Ok(Json(TaskRunList {
        task_runs: rows
            .iter()
            .filter(|r| title.as_ref().is_none_or(|t| &r.task_title == t))
            .map(|r| task_run_view(r, run.cancel_requested))
            .collect::<Result<_, _>>()?,
    }))
}

#[utoipa::path(
    get,
    operation_id = "show_task_run",
    path = "/v1/workflow-runs/{id}/task-runs/{task_run_id}",
    tag = "workflow-runs",
    params(("id" = String, Path), ("task_run_id" = String, Path)),
    responses((status = 200, body = TaskRunView))
)]
pub async fn show_task_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, task_run)): Path<(String, String)>,
) -> Result<Json<TaskRunView>, Error> {
    let run = visible_run(&state, &caller, &id).await?;
    let rows = state
        .runner()
        .store()
        .task_runs(&id)
        .await
        .map_err(store_error("reading the task runs failed"))?;
    rows.iter()
        .find(|r| r.id == task_run)
        .map(|r| task_run_view(r, run.cancel_requested))
        .transpose()?
        .map(Json)
        .ok_or_else(|| Error(ApiError::not_found("task run", &task_run)))
}

/// `GET .../task-runs/{task_run_id}/logs` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TaskRunLogQuery {
    /// `stdout` (default) or `stderr`.
    stream: Option<String>,
    /// `next_page_token` of the page before (a byte offset into the output).
    page_token: Option<String>,
    /// Bytes per page: 1 to 1 MiB, default 64 KiB.
    page_size: Option<u32>,
    /// Stream the output as text from the page token on while the task runs, until it
    /// ends.
    follow: Option<bool>,
}

/// One page of a task run's output.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskRunLogs {
    pub(crate) task_run_id: String,
    pub(crate) text: String,
    /// Bytes of output before `text` (what the page token said, plus any not kept).
    pub(crate) offset: u64,
    /// Bytes after the page token that the store no longer keeps (it keeps a tail).
    pub(crate) missed_bytes: u64,
    /// Present while there is more: more output now, or a task run still running.
    pub(crate) next_page_token: Option<String>,
}

const LOG_PAGE: u32 = 64 << 10;
const MAX_LOG_PAGE: u32 = 1 << 20;

/// A task run's output (its task's executors' stdout or stderr): paged, or followed.
#[utoipa::path(
    get,
    path = "/v1/workflow-runs/{id}/task-runs/{task_run_id}/logs",
    tag = "workflow-runs",
    params(("id" = String, Path), ("task_run_id" = String, Path), TaskRunLogQuery),
    responses(
        (status = 200, description = "A page, or with `follow` the output as text",
            content((TaskRunLogs = "application/json"), (String = "text/plain")))
    )
)]
pub async fn task_run_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, task_run)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Error> {
    let mut q = crate::task_output::Query::parse(raw.as_deref())?;
    let mut page = LOG_PAGE;
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        match k.as_str() {
            "page_token" if !v.is_empty() => {
                q.skip = tessera_core::page::decode(&v)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(bad_token)?;
            }
            "page_size" => {
                page = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_LOG_PAGE).contains(n))
                    .ok_or_else(|| {
                        Error::new(
                            ErrorCode::InvalidParameter,
                            format!("page_size must be 1 to {MAX_LOG_PAGE} bytes"),
                        )
                    })?;
            }
            _ => {}
        }
    }
    let run = visible_run(&state, &caller, &id).await?;
    let store = state.runner().store();
    let row = store
        .task_runs(&id)
        .await
        .map_err(store_error("reading the task runs failed"))?
        .into_iter()
        .find(|r| r.id == task_run)
        .ok_or_else(|| Error(ApiError::not_found("task run", &task_run)))?;
    let engine = Engine::named(&state, &run.engine).ok_or_else(|| {
        Error::new(
            ErrorCode::Unavailable,
            format!(
                "no engine adapter is bound to {:?}, which keeps this log",
                run.engine
            ),
        )
    })?;
    engine.log(&state, run, row, &q, page).await
}

/// A page of a native task run's output (its task's executors' stdout or stderr), or
/// the output followed.
pub(crate) async fn native_log(
    state: &AppState,
    run: WorkflowRunRow,
    row: TaskRunRow,
    q: &crate::task_output::Query,
    page: u32,
) -> Result<Response, Error> {
    let store = state.runner().store();
    let task = match &row.task_id {
        Some(t) => store
            .get_task(t)
            .await
            .map_err(store_error("reading the task failed"))?,
        None => None,
    };
    let Some(task) = task else {
        // Not started yet (or its task was cleaned away): nothing to show.
        let done = effective_state(&row, run.cancel_requested)?.is_terminal();
        return Ok(Json(TaskRunLogs {
            task_run_id: row.id,
            text: String::new(),
            offset: q.skip,
            missed_bytes: 0,
            next_page_token: (!done).then(|| tessera_core::page::encode(q.skip as i64)),
        })
        .into_response());
    };
    if q.follow {
        return Ok(crate::task_output::text(state, task, q));
    }
    let (total, missed, mut text) = crate::task_output::after(&task, q.stream, q.skip);
    let mut cut = (page as usize).min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    let offset = q.skip + missed;
    let next = offset + text.len() as u64;
    let more = next < total || !task.state.is_terminal();
    Ok(Json(TaskRunLogs {
        task_run_id: row.id,
        text,
        offset,
        missed_bytes: missed,
        next_page_token: more
            .then(|| tessera_core::page::encode(i64::try_from(next).unwrap_or(i64::MAX))),
    })
    .into_response())
}

// ---- the scheduler ------------------------------------------------------------------

/// The latest attempt of each task, as the planner sees it.
fn latest_attempts(rows: &[TaskRunRow], canceling: bool) -> Result<Vec<Attempt>, Error> {
    let mut latest: BTreeMap<&str, &TaskRunRow> = BTreeMap::new();
    for r in rows {
        let keep = latest
            .get(r.task_title.as_str())
            .is_none_or(|l| l.attempt < r.attempt);
        if keep {
            latest.insert(&r.task_title, r);
        }
    }
    latest
        .values()
        .map(|r| {
            Ok(Attempt {
                task: r.task_title.clone(),
                attempt: u32::try_from(r.attempt).unwrap_or(u32::MAX),
                state: effective_state(r, canceling)?,
                not_before_ms: r.not_before_ms,
                ended_ms: r.ended_ms,
                has_task: r.task_state.is_some(),
            })
        })
        .collect()
}

/// A revision's definition, parsed, with its graph.
struct Compiled {
    definition: Definition,
    dag: Dag,
}

fn compile(wf: &WorkflowRow) -> Result<Compiled, Error> {
    let value: Value = serde_json::from_str(&wf.definition).map_err(corrupt)?;
    let definition = Definition::parse(&value)
        .map_err(|e| corrupt(e.first().map(|f| f.message.clone()).unwrap_or_default()))?;
    Ok(Compiled {
        definition,
        dag: crate::workflows::dag_of(wf)?,
    })
}

/// Parsed revisions by id (they never change).
#[derive(Default)]
pub(crate) struct WorkflowCache(std::sync::Mutex<BTreeMap<String, Arc<Compiled>>>);

impl WorkflowCache {
    fn get(&self, wf: &WorkflowRow) -> Result<Arc<Compiled>, Error> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(&wf.id) {
            return Ok(c.clone());
        }
        let c = Arc::new(compile(wf)?);
        map.insert(wf.id.clone(), c.clone());
        Ok(c)
    }
}

pub(crate) fn start(state: AppState) {
    tokio::spawn(async move {
        let mut changes = state.runner().store().watch_changes();
        loop {
            changes.borrow_and_update();
            let wake = match round(&state, now_ms()).await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e.0.message, "workflow scheduler round failed; will retry");
                    None
                }
            };
            let sleep = wake
                .map(|w| Duration::from_millis(u64::try_from(w - now_ms()).unwrap_or(0)))
                .map_or(IDLE_POLL, |d| d.min(IDLE_POLL));
            tokio::select! {
                _ = changes.changed() => {}
                _ = state.workflow_wake().notified() => {}
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    });
}

/// One scheduler round at `now_ms` over every active run: runs of the native engine
/// are advanced here, runs on adapters get a background sync each; the earliest time a
/// run waits for.
pub async fn round(state: &AppState, now_ms: i64) -> Result<Option<i64>, Error> {
    let mut wake: Option<i64> = None;
    let mut after = 0;
    loop {
        let runs = state
            .runner()
            .store()
            .active_workflow_runs(after, ROUND_RUNS)
            .await
            .map_err(store_error("reading active workflow runs failed"))?;
        for run in &runs {
            // An adapter's calls block on its engine: its runs are synced beside the
            // round, not in it.
            if let Some(Engine::Adapter(a)) = Engine::named(state, &run.engine) {
                crate::workflow_adapters::spawn_sync(state, &run.id, &a);
                continue;
            }
            match step(state, &run.id, now_ms).await {
                Ok(Some(w)) => wake = Some(wake.map_or(w, |x| x.min(w))),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(run = %run.id, error = %e.0.message, "a workflow run could not be advanced")
                }
            }
        }
        match runs.last() {
            Some(last) if runs.len() == ROUND_RUNS as usize => after = last.seq,
            _ => return Ok(wake),
        }
    }
}

/// Advance one native run: plan, write the plan under the run's revision, then submit
/// and cancel tasks. The time it waits for next, if any.
async fn step(state: &AppState, id: &str, now_ms: i64) -> Result<Option<i64>, Error> {
    let store = state.runner().store();
    let Some(run) = store
        .workflow_run(id)
        .await
        .map_err(store_error("reading the workflow run failed"))?
    else {
        return Ok(None);
    };
    let run_state: RunState = run.state.parse().map_err(corrupt)?;
    if run_state.is_terminal() {
        return Ok(None);
    }
    match Engine::named(state, &run.engine) {
        Some(engine) => engine.advance(state, &run, now_ms).await,
        None => {
            crate::workflow_adapters::no_adapter(state, &run).await?;
            Ok(None)
        }
    }
}

/// One step of native run `run` (active): plan, write the plan under the run's
/// revision, then submit and cancel tasks. The time it waits for next, if any.
pub(crate) async fn plan_and_apply(
    state: &AppState,
    run: &WorkflowRunRow,
    now_ms: i64,
) -> Result<Option<i64>, Error> {
    let store = state.runner().store();
    let id = run.id.as_str();
    let run_state: RunState = run.state.parse().map_err(corrupt)?;
    let wf = store
        .workflow_by_id(&run.workflow_id)
        .await
        .map_err(store_error("reading the workflow failed"))?
        .ok_or_else(|| Error::internal("a workflow run's workflow is missing", &run.workflow_id))?;
    let compiled = state.workflow_cache().get(&wf)?;
    let def = &compiled.definition;
    let rows = store
        .task_runs(id)
        .await
        .map_err(store_error("reading the task runs failed"))?;
    let attempts = latest_attempts(&rows, run.cancel_requested)?;
    let room = match def.concurrency.max_tasks_per_workflow {
        Some(limit) => Some(
            limit.saturating_sub(
                store
                    .active_workflow_task_runs(&run.group, &run.title)
                    .await
                    .map_err(store_error("counting a workflow's task runs failed"))?,
            ),
        ),
        None => None,
    };
    let retries = |t: &str| def.task(t).and_then(|t| t.retries);
    let p = plan(&Input {
        dag: &compiled.dag,
        attempts: &attempts,
        retries: &retries,
        canceling: run.cancel_requested,
        max_active: def.concurrency.max_tasks_per_run,
        room,
        now_ms,
    });
    // The row of each task's latest attempt.
    let row_of = |task: &str, attempt: u32| {
        rows.iter()
            .find(|r| r.task_title == task && r.attempt == i64::from(attempt))
    };
    let mut change = RunChange::default();
    let mut starts: Vec<&TaskRunRow> = Vec::new();
    let mut cancels: Vec<String> = Vec::new();
    // States read from tasks, written down.
    for a in &attempts {
        let Some(r) = row_of(&a.task, a.attempt) else {
            continue;
        };
        let stored: TaskRunState = r.state.parse().map_err(corrupt)?;
        if stored != a.state {
            change.task_runs.push(TaskRunChange {
                id: r.id.clone(),
                state: Some(a.state.as_str().to_string()),
                started_ms: (a.state == TaskRunState::Running && r.started_ms.is_none())
                    .then_some(now_ms),
                ended_ms: a.state.is_terminal().then_some(now_ms),
                ..TaskRunChange::default()
            });
        }
        // Scheduled with no task: its submission was lost (a crash between writing the
        // plan and submitting). Submit it again; its id makes that idempotent.
        if stored == TaskRunState::Scheduled
            && r.task_state.is_none()
            && r.task_id.is_some()
            && !run.cancel_requested
        {
            starts.push(r);
        }
    }
    for action in &p.actions {
        match action {
            Action::Start { task, attempt } => {
                if let Some(r) = row_of(task, *attempt) {
                    upsert(&mut change.task_runs, &r.id, |c| {
                        c.state = Some(TaskRunState::Scheduled.as_str().to_string());
                        c.task_id = Some(r.id.clone());
                    });
                    starts.push(r);
                }
            }
            Action::Mark {
                task,
                attempt,
                state: s,
            } => {
                if let Some(r) = row_of(task, *attempt) {
                    upsert(&mut change.task_runs, &r.id, |c| {
                        c.state = Some(s.as_str().to_string());
                        if s.is_terminal() {
                            c.ended_ms = Some(now_ms);
                        }
                    });
                }
            }
            Action::Retry {
                task,
                attempt,
                not_before_ms,
            } => {
                let created = tessera_core::time_fmt::from_ms(run.created_ms)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                change.new_task_runs.push(NewTaskRun {
                    id: tessera_workflow::task_run_id(id, created, task, *attempt),
                    task_title: task.clone(),
                    attempt: i64::from(*attempt),
                    state: TaskRunState::Pending.as_str().to_string(),
                    task_id: None,
                    not_before_ms: Some(*not_before_ms),
                });
            }
            Action::Cancel { task, attempt } => {
                if let Some(task_id) = row_of(task, *attempt).and_then(|r| r.task_id.clone()) {
                    cancels.push(task_id);
                }
            }
        }
    }
    let new_state = p.state;
    if new_state != run_state {
        change.state = Some(new_state.as_str().to_string());
        if matches!(new_state, RunState::Scheduled | RunState::Running) {
            change.started_ms = Some(now_ms);
        }
        if new_state.is_terminal() {
            change.ended_ms = Some(now_ms);
        }
    }
    if run.wake_ms != p.wake_at_ms {
        change.wake_ms = Some(p.wake_at_ms);
    }
    let writes = change != RunChange::default();
    if writes
        && !store
            .change_workflow_run(id, run.revision, &change)
            .await
            .map_err(store_error("advancing the workflow run failed"))?
    {
        // Another server (or a request) changed the run first; it is looked at again.
        return Ok(Some(now_ms));
    }
    if writes && new_state != run_state {
        tracing::info!(run = %id, from = run_state.as_str(), to = new_state.as_str(), "workflow run state");
        let policy: CleanupPolicy =
            serde_json::from_value(Value::String(run.cleanup.clone())).unwrap_or_default();
        if policy.cleans(new_state) {
            spawn_clean(state, &run.group, id);
        }
    }
    // Effects, after the plan is written: a crash in between resubmits (above).
    for task_id in cancels {
        if let Err(e) = state.runner().cancel(&task_id).await {
            tracing::warn!(run = %id, %task_id, error = %e, "canceling a workflow task failed");
        }
    }
    if !starts.is_empty() {
        submit_attempts(state, run, &wf, def, &starts).await;
    }
    Ok(p.wake_at_ms)
}

/// The change to task run `id` in `changes`, made if missing, updated by `f`.
fn upsert(changes: &mut Vec<TaskRunChange>, id: &str, f: impl FnOnce(&mut TaskRunChange)) {
    if let Some(c) = changes.iter_mut().find(|c| c.id == id) {
        f(c);
    } else {
        let mut c = TaskRunChange {
            id: id.to_string(),
            ..TaskRunChange::default()
        };
        f(&mut c);
        changes.push(c);
    }
}

/// Submit the tasks of `attempts` (each with its task run's id). One whose task cannot
/// be made (the task is refused) ends Error with the reason.
async fn submit_attempts(
    state: &AppState,
    run: &WorkflowRunRow,
    wf: &WorkflowRow,
    def: &Definition,
    attempts: &[&TaskRunRow],
) {
    let store = state.runner().store();
    let parameters = match crate::workflows::parameters_of(wf) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(run = %run.id, error = %e.0.message, "a workflow's parameters do not decode");
            return;
        }
    };
    let given: Map<String, Value> = serde_json::from_str(&run.params).unwrap_or_default();
    let labels: BTreeMap<String, String> = serde_json::from_str(&run.labels).unwrap_or_default();
    let values = match tessera_core::params::resolve(&parameters, &given, "workflow") {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(run = %run.id, errors = ?e, "a workflow run's values no longer resolve");
            return;
        }
    };
    let data_url = format!("s3://{}/workflow-runs/{}/", run.group, run.id);
    let ctx = native::RunContext {
        workflow: &run.title,
        version: run.version,
        run_id: &run.id,
        labels: &labels,
        values: &values,
        data_url: &data_url,
    };
    let caller = Caller::writer_of(&run.group, &format!("workflow-run:{}", run.id));
    let mut failed: Vec<(String, String)> = Vec::new();
    for r in attempts {
        let Some(t) = def.task(&r.task_title) else {
            continue;
        };
        let attempt = u32::try_from(r.attempt).unwrap_or(u32::MAX);
        let task = native::task_for(def, t, attempt, &ctx);
        let sub = crate::tes::Submission {
            id: r.id.clone(),
            group: run.group.clone(),
            task,
            origin: Origin::Workflow,
            priority: 0,
            extra: Default::default(),
            run: None,
        };
        match crate::tes::submit(state, &caller, sub).await {
            Ok(_) => {}
            Err(e) => match store.get_task(&r.id).await {
                // Another server, or this one before a crash, made it.
                Ok(Some(_)) => {}
                // Refused for what it is (an invalid task, storage it may not use): the
                // attempt fails. Anything else (a full queue, the store) is tried again
                // by the next round, which finds the attempt Scheduled without a task.
                _ if (400..500).contains(&e.0.code.http_status())
                    && e.0.code != ErrorCode::QuotaExceeded =>
                {
                    failed.push((r.id.clone(), e.0.message))
                }
                _ => {
                    tracing::info!(run = %run.id, task = %r.task_title, error = %e.0.message, "a workflow task was not submitted; the next round tries again");
                }
            },
        }
    }
    if failed.is_empty() {
        return;
    }
    // Record why; the next round plans from there (the run's revision has moved once).
    let change = RunChange {
        task_runs: failed
            .into_iter()
            .map(|(id, message)| TaskRunChange {
                id,
                state: Some(TaskRunState::Error.as_str().to_string()),
                ended_ms: Some(now_ms()),
                message: Some(format!("its task was refused: {message}")),
                ..TaskRunChange::default()
            })
            .collect(),
        ..RunChange::default()
    };
    if let Ok(Some(now)) = store.workflow_run(&run.id).await
        && let Err(e) = store
            .change_workflow_run(&run.id, now.revision, &change)
            .await
    {
        tracing::warn!(run = %run.id, error = %e, "recording a refused workflow task failed");
    }
}
