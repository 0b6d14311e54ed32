//! `/v1/cron-tasks`: tasks made on a schedule, and the scheduler that makes them.
//!
//! Each server runs [`round`] every second with the time it is given (tests give their
//! own). A due tick's child has an id derived from the cron task and the tick, so when
//! several servers handle the same tick the store keeps one child; the tick is then
//! moved on with a compare-and-set. Children are contextual tasks of origin `cron`,
//! named `{cron}-{unix seconds}` and tagged `tessera.cron`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Value, json};
use tessera_core::identity::{Principal, Role};
use tessera_core::task::Origin;
use tessera_core::time_fmt::{format_rfc3339, unix_ms};
use tessera_core::{ApiError, ErrorCode, State as TaskState, TaskRecord};
use tessera_cron::{CRON_TAG, CronSpec, Decision, child_id, child_name, decide, due};
use tessera_store::{CronRow, ListQuery};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::query::target_group;
use crate::tes::{parse_json, read_body};
use crate::{AppState, Error};

/// How often the scheduler looks for due ticks.
const POLL: Duration = Duration::from_secs(1);
/// Children of one cron task looked at for its status and history.
const MAX_CHILDREN: u32 = 1000;

fn ms(t: OffsetDateTime) -> i64 {
    i64::try_from(unix_ms(t)).unwrap_or(i64::MAX)
}

fn at_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn parse_spec(body: &[u8], path_name: Option<&str>) -> Result<CronSpec, Error> {
    let spec: CronSpec = parse_json(body, "cron task")?;
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

async fn view(state: &AppState, row: &CronRow) -> Result<Value, Error> {
    let spec: CronSpec = serde_json::from_str(&row.spec)
        .map_err(|e| Error::internal("a stored cron task does not decode", e))?;
    let kids = children(state, &row.group, &row.name).await?;
    let active: Vec<&str> = kids
        .iter()
        .filter(|t| !t.state.is_terminal())
        .map(|t| t.id.as_str())
        .collect();
    let last_success = kids
        .iter()
        .find(|t| t.state == TaskState::Complete)
        .and_then(|t| t.logs.last().and_then(|l| l.end_time.clone()));
    let mut v = serde_json::to_value(&spec)
        .map_err(|e| Error::internal("encoding the cron task failed", e))?;
    v["group"] = json!(row.group);
    v["created_at"] = json!(row.created_at);
    v["updated_at"] = json!(row.updated_at);
    v["status"] = json!({
        "active": active,
        "last_schedule_time": row.last_schedule_ms.and_then(at_ms).map(format_rfc3339),
        "last_success_time": last_success,
        "next_schedule_time": if spec.suspend { None } else { row.next_ms.and_then(at_ms).map(format_rfc3339) },
        "last_skip": row.last_skip,
    });
    Ok(v)
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

pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let group = target_group(&caller, raw.as_deref())?;
    let spec = parse_spec(&read_body(&state, body)?, None)?;
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

pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Error> {
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
    Ok(Json(json!({ "cron_tasks": out })))
}

pub async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let row = find(&state, &caller, &group, &name).await?;
    Ok(Json(view(&state, &row).await?))
}

pub async fn replace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    find(&state, &caller, &group, &name).await?;
    caller.check_role(Role::Write, &group, "cron task", &name)?;
    let spec = parse_spec(&read_body(&state, body)?, Some(&name))?;
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

/// The scheduler's identity for a group's children: a writer of that group.
fn scheduler(group: &str, cron: &str) -> Caller {
    Caller(Arc::new(Principal {
        username: format!("cron:{cron}"),
        instance_admin: false,
        roles: [(group.to_string(), Role::Write)].into(),
        default_group: group.to_string(),
        read_only: false,
    }))
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
            let caller = scheduler(&row.group, &row.name);
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
