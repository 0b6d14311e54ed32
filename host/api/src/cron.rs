//! `/v1/cron-tasks`: tasks made on a schedule, and the scheduler that makes them.
//!
//! Each server runs [`round`] every second with the time it is given (tests give their
//! own). A due tick's child has an id derived from the cron task and the tick, so when
//! several servers handle the same tick the store keeps one child; the tick is then
//! moved on with a compare-and-set. Children are contextual tasks of origin `cron`,
//! named `{cron}-{unix seconds}` and tagged `tessera.cron`.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use tessera_core::agent::TaskRequest;
use tessera_core::identity::Role;
use tessera_core::task::Origin;
use tessera_core::time_fmt::format_rfc3339;
use tessera_core::{ApiError, ErrorCode, State as TaskState, TaskRecord};
use tessera_cron::{
    CRON_TAG, ConcurrencyPolicy, CronSpec, Decision, child_id, child_name, decide, due,
};
use tessera_store::{CronRow, ListQuery};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::query::target_group;
use crate::{AppState, Error};

/// How often the scheduler looks for due ticks.
const POLL: Duration = Duration::from_secs(1);
/// Children of one cron task looked at for its status and history.
const MAX_CHILDREN: u32 = 1000;

use tessera_core::time_fmt::{from_ms as at_ms, store_ms as ms};

fn parse_spec(body: &[u8], path_name: Option<&str>) -> Result<CronSpec, Error> {
    let spec: CronSpec = crate::body::json(body, "cron task")?;
    if let Some(p) = path_name
        && p != spec.name
    {
        return Err(Error::new(
            ErrorCode::InvalidDocument,
            format!("the document names {:?}, the path {p:?}", spec.name),
        ));
    }
    spec.parsed()
        .map_err(|e| Error(ApiError::invalid_document("cron task", e)))?;
    Ok(spec)
}

/// The first tick after `now` (`None`: never).
fn first_tick(spec: &CronSpec, now: OffsetDateTime) -> Option<i64> {
    let (schedule, zone) = spec.parsed().ok()?;
    schedule.next_after(now, &zone).map(ms)
}

fn encode(spec: &CronSpec) -> Result<String, Error> {
    serde_json::to_string(spec).map_err(|e| Error::internal("encoding the cron task failed", e))
}

/// The children of a cron task, newest first.
async fn children(state: &AppState, group: &str, name: &str) -> Result<Vec<TaskRecord>, Error> {
    state
        .runner()
        .store()
        .list_tasks(&ListQuery {
            groups: Some(vec![group.to_string()]),
            tags: vec![(CRON_TAG.to_string(), name.to_string())],
            limit: MAX_CHILDREN,
            minimal: false,
            ..ListQuery::default()
        })
        .await
        .map_err(|e| Error::internal("listing the cron task's children failed", e))
}

/// A cron task as the API shows it: its document (the fields of [`CronSpec`]) with its
/// group, times and status.
#[derive(Serialize, ToSchema)]
pub struct CronView {
    name: String,
    group: String,
    created_at: String,
    updated_at: String,
    schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
    concurrency_policy: ConcurrencyPolicy,
    suspend: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    starting_deadline_seconds: Option<u64>,
    successful_history_limit: u32,
    failed_history_limit: u32,
    task: TaskRequest,
    status: CronStatus,
}

/// Where a cron task stands.
#[derive(Serialize, ToSchema)]
pub struct CronStatus {
    /// Ids of its children that have not ended.
    active: Vec<String>,
    last_schedule_time: Option<String>,
    last_success_time: Option<String>,
    /// None while suspended.
    next_schedule_time: Option<String>,
    /// Why the last tick made no child, if it did not.
    last_skip: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CronList {
    cron_tasks: Vec<CronView>,
}

async fn view(state: &AppState, row: &CronRow) -> Result<CronView, Error> {
    let spec: CronSpec = serde_json::from_str(&row.spec)
        .map_err(|e| Error::internal("a stored cron task does not decode", e))?;
    let kids = children(state, &row.group, &row.name).await?;
    let active: Vec<String> = kids
        .iter()
        .filter(|t| !t.state.is_terminal())
        .map(|t| t.id.clone())
        .collect();
    let last_success = kids
        .iter()
        .find(|t| t.state == TaskState::Complete)
        .and_then(|t| t.logs.last().and_then(|l| l.end_time.clone()));
    let status = CronStatus {
        active,
        last_schedule_time: row.last_schedule_ms.and_then(at_ms).map(format_rfc3339),
        last_success_time: last_success,
        next_schedule_time: if spec.suspend {
            None
        } else {
            row.next_ms.and_then(at_ms).map(format_rfc3339)
        },
        last_skip: row.last_skip.clone(),
    };
    Ok(CronView {
        name: spec.name,
        group: row.group.clone(),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        schedule: spec.schedule,
        time_zone: spec.time_zone,
        concurrency_policy: spec.concurrency_policy,
        suspend: spec.suspend,
        starting_deadline_seconds: spec.starting_deadline_seconds,
        successful_history_limit: spec.successful_history_limit,
        failed_history_limit: spec.failed_history_limit,
        task: spec.task,
        status,
    })
}

async fn find(
    state: &AppState,
    caller: &Caller,
    group: &str,
    name: &str,
) -> Result<CronRow, Error> {
    caller.check_sees(group, "cron task", name)?;
    state
        .runner()
        .store()
        .cron(group, name)
        .await
        .map_err(|e| Error::internal("reading the cron task failed", e))?
        .ok_or_else(|| Error(ApiError::not_found("cron task", name)))
}

#[utoipa::path(
    post,
    operation_id = "create_cron_task",
    path = "/v1/cron-tasks",
    tag = "cron-tasks",
    params(crate::openapi::InGroup),
    request_body = CronSpec,
    responses((status = 201, body = CronView))
)]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let group = target_group(&caller, raw.as_deref())?;
    let spec = parse_spec(&body, None)?;
    let next = first_tick(&spec, OffsetDateTime::now_utc());
    state
        .runner()
        .store()
        .put_cron(&group, &spec.name, &encode(&spec)?, next, false)
        .await
        .map_err(|e| match e {
            tessera_store::StoreError::Conflict(m) => Error::new(ErrorCode::Conflict, m),
            e => Error::internal("storing the cron task failed", e),
        })?;
    let row = find(&state, &caller, &group, &spec.name).await?;
    tracing::info!(%group, name = %spec.name, schedule = %spec.schedule, "cron task created");
    Ok(crate::audit::naming(
        (StatusCode::CREATED, Json(view(&state, &row).await?)),
        &format!("{group}/{}", spec.name),
    ))
}

#[utoipa::path(
    get,
    operation_id = "list_cron_tasks",
    path = "/v1/cron-tasks",
    tag = "cron-tasks",
    params(crate::openapi::ListedGroups),
    responses((status = 200, body = CronList))
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CronList>, Error> {
    let groups = crate::query::listed_groups(&caller, raw.as_deref())?;
    let rows = state
        .runner()
        .store()
        .list_crons(groups.as_deref(), 1000)
        .await
        .map_err(|e| Error::internal("listing cron tasks failed", e))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(view(&state, r).await?);
    }
    Ok(Json(CronList { cron_tasks: out }))
}

#[utoipa::path(
    get,
    operation_id = "show_cron_task",
    path = "/v1/cron-tasks/{name}",
    tag = "cron-tasks",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 200, body = CronView))
)]
pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<CronView>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let row = find(&state, &caller, &group, &name).await?;
    Ok(Json(view(&state, &row).await?))
}

#[utoipa::path(
    put,
    operation_id = "replace_cron_task",
    path = "/v1/cron-tasks/{name}",
    tag = "cron-tasks",
    params(("name" = String, Path), crate::openapi::InGroup),
    request_body = CronSpec,
    responses((status = 200, body = CronView))
)]
pub async fn replace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Json<CronView>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    find(&state, &caller, &group, &name).await?;
    caller.check_role(Role::Write, &group, "cron task", &name)?;
    let spec = parse_spec(&body, Some(&name))?;
    let next = first_tick(&spec, OffsetDateTime::now_utc());
    state
        .runner()
        .store()
        .put_cron(&group, &name, &encode(&spec)?, next, true)
        .await
        .map_err(|e| Error::internal("storing the cron task failed", e))?;
    let row = find(&state, &caller, &group, &name).await?;
    Ok(Json(view(&state, &row).await?))
}

#[utoipa::path(
    delete,
    operation_id = "delete_cron_task",
    path = "/v1/cron-tasks/{name}",
    tag = "cron-tasks",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    find(&state, &caller, &group, &name).await?;
    caller.check_role(Role::Write, &group, "cron task", &name)?;
    state
        .runner()
        .store()
        .delete_cron(&group, &name)
        .await
        .map_err(|e| Error::internal("deleting the cron task failed", e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/cron-tasks/{name}/trigger`: a tick now, under the concurrency policy (409
/// under Forbid while a child runs), also when the cron task is suspended.
#[utoipa::path(
    post,
    operation_id = "trigger_cron_task",
    path = "/v1/cron-tasks/{name}/trigger",
    tag = "cron-tasks",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 201, body = crate::agents::TaskView))
)]
pub async fn trigger(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let row = find(&state, &caller, &group, &name).await?;
    caller.check_role(Role::Write, &group, "cron task", &name)?;
    let mut spec: CronSpec = serde_json::from_str(&row.spec)
        .map_err(|e| Error::internal("a stored cron task does not decode", e))?;
    spec.suspend = false;
    spec.starting_deadline_seconds = None;
    let now = OffsetDateTime::now_utc();
    let tick = now.replace_nanosecond(0).unwrap_or(now);
    // A manual tick has an id of its own (the scheduler's ticks share theirs).
    let id = tessera_core::id::new_task_id();
    match fire(&state, &row, &spec, tick, now, id).await? {
        Fired::Made(task) => {
            Ok((StatusCode::CREATED, Json(crate::agents::task_view(&task))).into_response())
        }
        Fired::Skipped(reason) => Err(Error::new(ErrorCode::Conflict, reason)),
    }
}

enum Fired {
    Made(Box<TaskRecord>),
    Skipped(String),
}

/// Handle the tick `tick` of `row`: decide under its policy, cancel what Replace
/// replaces, and make the child `id` (a scheduled tick's id is the same on every server:
/// a second maker finds it made).
async fn fire(
    state: &AppState,
    row: &CronRow,
    spec: &CronSpec,
    tick: OffsetDateTime,
    now: OffsetDateTime,
    id: String,
) -> Result<Fired, Error> {
    let store = state.runner().store();
    if let Some(made) = store
        .get_task(&id)
        .await
        .map_err(|e| Error::internal("reading the child failed", e))?
    {
        return Ok(Fired::Made(Box::new(made)));
    }
    let running: Vec<String> = children(state, &row.group, &row.name)
        .await?
        .into_iter()
        .filter(|t| !t.state.is_terminal())
        .map(|t| t.id)
        .collect();
    match decide(spec, tick, now, &running) {
        Decision::Skip(reason) => Ok(Fired::Skipped(reason)),
        Decision::Fire { cancel } => {
            for old in cancel {
                if let Err(e) = state.runner().cancel(&old).await {
                    tracing::warn!(task_id = %old, error = %e, "replacing a cron child: cancel failed");
                }
            }
            let mut req = spec.task.clone();
            req.name = Some(child_name(&row.name, tick));
            let caller = Caller::writer_of(&row.group, &format!("cron:{}", row.name));
            let tags = vec![(CRON_TAG.to_string(), row.name.clone())];
            match crate::agents::submit_agent_task(
                state,
                &caller,
                &row.group,
                req,
                id.clone(),
                Origin::Cron,
                tags,
            )
            .await
            {
                Ok(t) => {
                    tracing::info!(group = %row.group, cron = %row.name, task_id = %t.id, "cron tick fired");
                    Ok(Fired::Made(Box::new(t)))
                }
                // Another server made it first.
                Err(e) => match store.get_task(&id).await {
                    Ok(Some(t)) => Ok(Fired::Made(Box::new(t))),
                    _ => Ok(Fired::Skipped(format!(
                        "the child could not be made: {}",
                        e.0.message
                    ))),
                },
            }
        }
    }
}

/// One scheduler round at `now`: every due tick handled, each cron task's history kept
/// within its limits.
pub async fn round(state: &AppState, now: OffsetDateTime) -> Result<(), Error> {
    let store = state.runner().store();
    let due_rows = store
        .due_crons(ms(now), 100)
        .await
        .map_err(|e| Error::internal("reading due cron tasks failed", e))?;
    for row in due_rows {
        let spec: CronSpec = match serde_json::from_str(&row.spec) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(group = %row.group, cron = %row.name, error = %e, "a stored cron task does not decode; it stops");
                let _ = store
                    .advance_cron(
                        &row.group,
                        &row.name,
                        row.next_ms,
                        None,
                        None,
                        Some("its stored document does not decode"),
                    )
                    .await;
                continue;
            }
        };
        let Ok((schedule, zone)) = spec.parsed() else {
            continue;
        };
        let Some(next) = row.next_ms.and_then(at_ms) else {
            continue;
        };
        let (tick, after) = due(&schedule, &zone, next, now);
        let Some(tick) = tick else { continue };
        let id = child_id(&row.group, &row.name, tick);
        let (fired, skip) = match fire(state, &row, &spec, tick, now, id).await {
            Ok(Fired::Made(_)) => (Some(ms(tick)), None),
            Ok(Fired::Skipped(reason)) => {
                tracing::info!(group = %row.group, cron = %row.name, %reason, "cron tick skipped");
                (None, Some(reason))
            }
            Err(e) => (None, Some(e.0.message)),
        };
        store
            .advance_cron(
                &row.group,
                &row.name,
                row.next_ms,
                after.map(ms),
                fired,
                skip.as_deref(),
            )
            .await
            .map_err(|e| Error::internal("moving the cron task on failed", e))?;
        prune(state, &row, &spec).await?;
    }
    Ok(())
}

/// Delete a cron task's finished children beyond its history limits (newest kept).
async fn prune(state: &AppState, row: &CronRow, spec: &CronSpec) -> Result<(), Error> {
    let kids = children(state, &row.group, &row.name).await?;
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut gone = Vec::new();
    for t in kids.iter().filter(|t| t.state.is_terminal()) {
        let (n, limit) = if t.state == TaskState::Complete {
            (&mut ok, spec.successful_history_limit)
        } else {
            (&mut failed, spec.failed_history_limit)
        };
        *n += 1;
        if *n > limit {
            gone.push(t.id.clone());
        }
    }
    state
        .runner()
        .store()
        .delete_finished(&gone)
        .await
        .map_err(|e| Error::internal("deleting old cron children failed", e))?;
    Ok(())
}

/// Run the scheduler on the system clock until the process ends.
pub(crate) fn start(state: AppState) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = round(&state, OffsetDateTime::now_utc()).await {
                tracing::warn!(error = %e.0.message, "cron round failed; will retry");
            }
            tokio::time::sleep(POLL).await;
        }
    });
}
