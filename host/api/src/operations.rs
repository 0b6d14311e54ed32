//! The Task API's operations and runs (`/v1/operations`, `/v1/runs`).
//!
//! An operation belongs to a group (`?group=` at creation, else the caller's personal
//! group): its members read it, writers edit it and run it. A run is a task of the
//! operation's group (origin `run`), submitted through the one path every task takes
//! (`tes::submit`), so it also shows in the TES listing, tagged `tessera.operation`.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use tessera_core::identity::Role;
use tessera_core::operation::{
    DatasetInput, OperationSpec, Parameter, RerunRequest, RunRequest, run_task,
};
use tessera_core::task::Origin;
use tessera_core::tes::Task;
use tessera_core::{ApiError, ErrorCode, State as TaskState, TaskRecord, page};
use tessera_store::{OperationRow, RunQuery, RunRow};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::tes::submit;
use crate::{AppState, Error};

fn bad_param(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameter, msg)
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(&format!("a stored {what} does not decode"), e)
}

fn store_error(context: &str, e: tessera_store::StoreError) -> Error {
    match e {
        tessera_store::StoreError::Conflict(m) => Error::new(ErrorCode::Conflict, m),
        e => Error::internal(context, e),
    }
}

// ---- operations --------------------------------------------------------------------

/// An operation as the API shows it: one version of its document (the fields of
/// [`OperationSpec`]) with its identity and versions.
#[derive(Serialize, ToSchema)]
pub struct OperationView {
    id: String,
    group: String,
    /// The version shown.
    version: i64,
    latest_version: i64,
    created_at: String,
    version_created_at: String,
    version_created_by: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    image: String,
    command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    parameters: Vec<Parameter>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workdir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<tessera_core::tes::Resources>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dir: Option<String>,
    /// The parameters as a JSON Schema (2020-12) of a run's `params`.
    #[schema(value_type = Object)]
    parameters_schema: Value,
    /// Every version (`GET /v1/operations/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    versions: Option<Vec<OperationVersion>>,
}

/// One version of an operation.
#[derive(Serialize, ToSchema)]
pub struct OperationVersion {
    version: i64,
    created_at: String,
    created_by: String,
}

#[derive(Serialize, ToSchema)]
pub struct OperationList {
    operations: Vec<OperationView>,
    next_page_token: Option<String>,
}

fn operation_view(row: &OperationRow) -> Result<OperationView, Error> {
    let spec: OperationSpec =
        serde_json::from_str(&row.spec).map_err(|e| corrupt("operation", e))?;
    let parameters_schema = spec.parameters_schema();
    Ok(OperationView {
        id: row.id.clone(),
        group: row.group.clone(),
        version: row.version,
        latest_version: row.latest,
        created_at: row.created_at.clone(),
        version_created_at: row.version_created_at.clone(),
        version_created_by: row.version_created_by.clone(),
        deleted: row.deleted,
        name: spec.name,
        description: spec.description,
        image: spec.image,
        command: spec.command,
        parameters: spec.parameters,
        env: spec.env,
        workdir: spec.workdir,
        resources: spec.resources,
        timeout_seconds: spec.timeout_seconds,
        output_dir: spec.output_dir,
        parameters_schema,
        versions: None,
    })
}

fn parse_operation(body: &[u8]) -> Result<OperationSpec, Error> {
    let spec: OperationSpec = crate::body::json(body, "operation")?;
    spec.check()
        .map_err(|d| Error(ApiError::invalid_document("operation", d)))?;
    Ok(spec)
}

fn encode_spec(spec: &OperationSpec) -> Result<String, Error> {
    serde_json::to_string(spec).map_err(|e| Error::internal("encoding the operation failed", e))
}

/// An operation the caller sees (deleted ones only when `deleted_ok`), else 404.
async fn visible_operation(
    state: &AppState,
    caller: &Caller,
    id: &str,
    version: Option<i64>,
    deleted_ok: bool,
) -> Result<OperationRow, Error> {
    let row = state
        .runner()
        .store()
        .operation(id, version)
        .await
        .map_err(|e| Error::internal("reading the operation failed", e))?;
    visible(caller, id, row, deleted_ok)
}

fn visible(
    caller: &Caller,
    id: &str,
    row: Option<OperationRow>,
    deleted_ok: bool,
) -> Result<OperationRow, Error> {
    let row = row
        .filter(|r| deleted_ok || !r.deleted)
        .ok_or_else(|| Error(ApiError::not_found("operation", id)))?;
    caller.check_sees(&row.group, "operation", id)?;
    Ok(row)
}

/// How long a run's read of an operation is reused (changes through this server are
/// seen at once; another server's within this).
const OPERATION_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Most operation versions kept.
const OPERATION_CACHE_MAX: usize = 10_000;

/// A cached read: when, and what it found, by (id, version asked for).
type CachedOperations =
    std::collections::HashMap<(String, Option<i64>), (std::time::Instant, Option<OperationRow>)>;

/// Operations as runs read them: a run submits at the cost of a TES task, without a
/// store read for its operation each time.
#[derive(Default)]
pub(crate) struct OperationCache(std::sync::Mutex<CachedOperations>);

impl OperationCache {
    async fn get(
        &self,
        state: &AppState,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<OperationRow>, Error> {
        let key = (id.to_string(), version);
        if let Ok(map) = self.0.lock()
            && let Some((at, row)) = map.get(&key)
            && at.elapsed() < OPERATION_CACHE_TTL
        {
            return Ok(row.clone());
        }
        let row = state
            .runner()
            .store()
            .operation(id, version)
            .await
            .map_err(|e| Error::internal("reading the operation failed", e))?;
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= OPERATION_CACHE_MAX {
                map.clear();
            }
            map.insert(key, (std::time::Instant::now(), row.clone()));
        }
        Ok(row)
    }

    /// Forget an operation (it changed here).
    fn forget(&self, id: &str) {
        if let Ok(mut map) = self.0.lock() {
            map.retain(|(k, _), _| k != id);
        }
    }
}

/// [`visible_operation`] through the cache, for runs.
async fn operation_for_run(
    state: &AppState,
    caller: &Caller,
    id: &str,
    version: Option<i64>,
    deleted_ok: bool,
) -> Result<OperationRow, Error> {
    let row = state.operations().get(state, id, version).await?;
    visible(caller, id, row, deleted_ok)
}

/// Register an operation (version 1).
#[utoipa::path(
    post,
    path = "/v1/operations",
    tag = "operations",
    params(crate::openapi::InGroup),
    request_body = OperationSpec,
    responses((status = 201, body = OperationView))
)]
pub async fn create_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let group = crate::query::target_group(&caller, raw.as_deref())?;
    let spec = parse_operation(&body)?;
    let id = tessera_core::id::new_task_id();
    let row = state
        .runner()
        .store()
        .create_operation(
            &id,
            &group,
            &spec.name,
            &encode_spec(&spec)?,
            &caller.username,
        )
        .await
        .map_err(|e| store_error("storing the operation failed", e))?;
    tracing::info!(operation = %id, name = %spec.name, group = %group, "operation created");
    let resp = (
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, format!("/v1/operations/{id}"))],
        Json(operation_view(&row)?),
    );
    Ok(crate::audit::naming(resp, &id))
}

/// `GET /v1/operations` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct OperationQuery {
    /// Only operations of this name.
    name: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/operations",
    tag = "operations",
    params(crate::openapi::ListedGroups, crate::openapi::Paging, OperationQuery),
    responses((status = 200, body = OperationList))
)]
pub async fn list_operations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<OperationList>, Error> {
    let (mut limit, mut after, mut name) = (crate::query::DEFAULT_PAGE, None, None);
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        match k.as_str() {
            "page_size" => limit = crate::query::page_size(&v)?,
            "page_token" if !v.is_empty() => {
                if !tessera_core::id::is_valid_task_id(&v) {
                    return Err(crate::query::bad_token());
                }
                after = Some(v);
            }
            "name" if !v.is_empty() => name = Some(v),
            _ => {}
        }
    }
    let groups = crate::query::listed_groups(&caller, raw.as_deref())?;
    let rows = state
        .runner()
        .store()
        .list_operations(groups.as_deref(), name.as_deref(), after.as_deref(), limit)
        .await
        .map_err(|e| Error::internal("listing operations failed", e))?;
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    let operations = rows
        .iter()
        .map(operation_view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(OperationList {
        operations,
        next_page_token: next,
    }))
}

fn version_param(raw: Option<&str>) -> Result<Option<i64>, Error> {
    for (k, v) in crate::query::pairs(raw)? {
        if k == "version" && !v.is_empty() {
            return v
                .parse::<i64>()
                .ok()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| bad_param(format!("version {v:?} is not a positive integer")));
        }
    }
    Ok(None)
}

/// `?version=` of an operation.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct VersionQuery {
    /// A version (deleted operations too); default the latest.
    #[param(minimum = 1)]
    version: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path), VersionQuery),
    responses((status = 200, body = OperationView))
)]
pub async fn show_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<OperationView>, Error> {
    let version = version_param(raw.as_deref())?;
    let row = visible_operation(&state, &caller, &id, version, version.is_some()).await?;
    let mut view = operation_view(&row)?;
    let versions = state
        .runner()
        .store()
        .operation_versions(&id)
        .await
        .map_err(|e| Error::internal("reading the operation's versions failed", e))?;
    view.versions = Some(
        versions
            .into_iter()
            .map(|(version, created_at, created_by)| OperationVersion {
                version,
                created_at,
                created_by,
            })
            .collect(),
    );
    Ok(Json(view))
}

/// A new version of the operation (runs keep the version they ran).
#[utoipa::path(
    put,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path)),
    request_body = OperationSpec,
    responses((status = 200, body = OperationView))
)]
pub async fn update_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Json<OperationView>, Error> {
    let row = visible_operation(&state, &caller, &id, None, false).await?;
    caller.check_role(Role::Write, &row.group, "operation", &id)?;
    let spec = parse_operation(&body)?;
    let row = state
        .runner()
        .store()
        .update_operation(&id, &spec.name, &encode_spec(&spec)?, &caller.username)
        .await
        .map_err(|e| store_error("storing the operation failed", e))?
        .ok_or_else(|| Error(ApiError::not_found("operation", &id)))?;
    state.operations().forget(&id);
    tracing::info!(operation = %id, version = row.version, "operation updated");
    Ok(Json(operation_view(&row)?))
}

/// Delete (softly: its runs stay readable).
#[utoipa::path(
    delete,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_operation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, Error> {
    let row = visible_operation(&state, &caller, &id, None, false).await?;
    caller.check_role(Role::Write, &row.group, "operation", &id)?;
    state
        .runner()
        .store()
        .delete_operation(&id)
        .await
        .map_err(|e| Error::internal("deleting the operation failed", e))?;
    state.operations().forget(&id);
    tracing::info!(operation = %id, "operation deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- runs --------------------------------------------------------------------------

/// Where a run's artifacts go: its group's bucket, under `runs/ID/`.
pub(crate) fn artifacts_prefix(run_id: &str) -> String {
    format!("runs/{run_id}/")
}

/// The bucket of a group's artifacts (buckets belong to the group of their name).
fn artifacts_bucket(group: &str) -> &str {
    group
}

/// Make a run of `op` with `req`: check the request and the values, build its task, and
/// submit it (the run row first; see the store).
async fn start_run(
    state: &AppState,
    caller: &Caller,
    op: &OperationRow,
    req: RunRequest,
    rerun_of: Option<String>,
) -> Result<(TaskRecord, RunRow), Error> {
    caller.check_role(Role::Write, &op.group, "operation", &op.id)?;
    let spec: OperationSpec =
        serde_json::from_str(&op.spec).map_err(|e| corrupt("operation", e))?;
    let mut errs = req.check();
    let values = match spec.resolve(&req.params) {
        Ok(v) => Some(v),
        Err(e) => {
            errs.extend(e);
            None
        }
    };
    let Some(values) = values.filter(|_| errs.is_empty()) else {
        return Err(Error(ApiError::invalid_document("run request", errs)));
    };
    let run_id = tessera_core::id::new_task_id();
    let url = format!(
        "s3://{}/{}",
        artifacts_bucket(&op.group),
        artifacts_prefix(&run_id)
    );
    let task: Task = run_task(&spec, op.version, &req, &values, &url);
    let request =
        serde_json::to_string(&req).map_err(|e| Error::internal("encoding the run failed", e))?;
    let link = tessera_core::task::RunLink {
        operation_id: op.id.clone(),
        version: op.version,
        request,
        rerun_of,
        response_url: req.response_url.clone(),
    };
    // The run as it is stored with its task.
    let run = RunRow {
        task_id: run_id.clone(),
        operation_id: link.operation_id.clone(),
        version: link.version,
        request: link.request.clone(),
        rerun_of: link.rerun_of.clone(),
        response_url: link.response_url.clone(),
        delivery: link
            .response_url
            .as_ref()
            .map(|_| tessera_store::DELIVERY_PENDING.to_string()),
        delivery_attempts: 0,
        delivery_error: None,
    };
    let sub = crate::tes::Submission {
        id: run_id,
        group: op.group.clone(),
        task,
        origin: Origin::Run,
        priority: req.priority,
        extra: Default::default(),
        run: Some(link),
    };
    let record = submit(state, caller, sub).await?;
    Ok((record, run))
}

/// A run as the API shows it (its id is its task's).
#[derive(Serialize, ToSchema)]
pub struct RunView {
    id: String,
    operation_id: String,
    /// The task's name (the operation's name).
    operation: Option<String>,
    version: i64,
    group: String,
    state: TaskState,
    reason: Option<String>,
    priority: i32,
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    env: BTreeMap<String, String>,
    inputs: Vec<DatasetInput>,
    labels: BTreeMap<String, String>,
    response_url: Option<String>,
    /// The summary's delivery to `response_url`.
    delivery: Option<Delivery>,
    rerun_of: Option<String>,
    created_at: String,
    start_time: Option<String>,
    end_time: Option<String>,
    exit_code: Option<i32>,
}

/// Where the delivery of a run's summary stands.
#[derive(Serialize, ToSchema)]
pub struct Delivery {
    /// pending, delivered or failed.
    state: String,
    attempts: i64,
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    runs: Vec<RunView>,
    next_page_token: Option<String>,
}

pub(crate) fn run_view(task: &TaskRecord, run: &RunRow) -> Result<RunView, Error> {
    let req: RunRequest = serde_json::from_str(&run.request).map_err(|e| corrupt("run", e))?;
    let last = task.logs.last();
    let exec = last.and_then(|l| l.logs.last());
    Ok(RunView {
        id: task.id.clone(),
        operation_id: run.operation_id.clone(),
        operation: task.spec.name.clone(),
        version: run.version,
        group: task.group.clone(),
        state: task.state,
        reason: task.reason.clone(),
        priority: task.priority,
        params: req.params,
        env: req.env,
        inputs: req.inputs,
        labels: req.labels,
        response_url: req.response_url,
        delivery: run.delivery.as_ref().map(|d| Delivery {
            state: d.clone(),
            attempts: run.delivery_attempts,
            error: run.delivery_error.clone(),
        }),
        rerun_of: run.rerun_of.clone(),
        created_at: tessera_core::time_fmt::format_rfc3339(task.creation_time),
        start_time: last.and_then(|l| l.start_time.clone()),
        end_time: last.and_then(|l| l.end_time.clone()),
        exit_code: exec.map(|e| e.exit_code),
    })
}

/// Run the operation (the body may be empty: every parameter default).
#[utoipa::path(
    post,
    path = "/v1/operations/{id}/runs",
    tag = "runs",
    params(("id" = String, Path)),
    request_body(content = Option<RunRequest>),
    responses((status = 201, body = RunView))
)]
pub async fn create_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let req: RunRequest = crate::body::json_or_default(&body, "run request")?;
    let op = operation_for_run(&state, &caller, &id, req.version, false).await?;
    let (task, run) = start_run(&state, &caller, &op, req, None).await?;
    created_run(&task, &run)
}

fn created_run(task: &TaskRecord, run: &RunRow) -> Result<Response, Error> {
    let resp = (
        StatusCode::CREATED,
        [(
            axum::http::header::LOCATION,
            format!("/v1/runs/{}", task.id),
        )],
        Json(run_view(task, run)?),
    );
    Ok(crate::audit::naming(resp, &task.id))
}

/// A run the caller sees, else 404.
async fn visible_run(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(TaskRecord, RunRow), Error> {
    let found = state
        .runner()
        .store()
        .run(id)
        .await
        .map_err(|e| Error::internal("reading the run failed", e))?
        .ok_or_else(|| Error(ApiError::not_found("run", id)))?;
    caller.check_sees(&found.0.group, "run", id)?;
    Ok(found)
}

#[utoipa::path(
    get,
    path = "/v1/runs/{id}",
    tag = "runs",
    params(("id" = String, Path)),
    responses((status = 200, body = RunView))
)]
pub async fn show_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<RunView>, Error> {
    let (task, run) = visible_run(&state, &caller, &id).await?;
    Ok(Json(run_view(&task, &run)?))
}

/// `GET /v1/runs` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RunFilter {
    /// Only runs of this operation.
    operation_id: Option<String>,
    #[param(inline)]
    state: Option<TaskState>,
}

/// Runs, newest first.
#[utoipa::path(
    get,
    path = "/v1/runs",
    tag = "runs",
    params(crate::openapi::ListedGroups, crate::openapi::Paging, RunFilter),
    responses((status = 200, body = RunList))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<RunList>, Error> {
    let mut q = RunQuery {
        groups: crate::query::listed_groups(&caller, raw.as_deref())?,
        limit: crate::query::DEFAULT_PAGE,
        ..RunQuery::default()
    };
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        match k.as_str() {
            "page_size" => q.limit = crate::query::page_size(&v)?,
            "page_token" if !v.is_empty() => {
                q.before_seq = Some(page::decode(&v).ok_or_else(crate::query::bad_token)?);
            }
            "operation_id" | "operation" if !v.is_empty() => q.operation_id = Some(v),
            "state" if !v.is_empty() => {
                q.state = Some(
                    v.parse::<TaskState>()
                        .map_err(|e| bad_param(e.to_string()))?,
                )
            }
            _ => {}
        }
    }
    let rows = state
        .runner()
        .store()
        .list_runs(&q)
        .await
        .map_err(|e| Error::internal("listing runs failed", e))?;
    let next = (rows.len() == q.limit as usize)
        .then(|| rows.last().map(|(t, _)| page::encode(t.seq)))
        .flatten();
    let runs = rows
        .iter()
        .map(|(t, r)| run_view(t, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(RunList {
        runs,
        next_page_token: next,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/runs/{id}/cancel",
    tag = "runs",
    params(("id" = String, Path)),
    responses((status = 200, body = crate::tes::CancelResult))
)]
pub async fn cancel_run(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let (task, _) = visible_run(&state, &caller, &id).await?;
    caller.check_role(Role::Write, &task.group, "run", &id)?;
    Ok(Json(crate::tes::cancel_answer(&state, &id).await?).into_response())
}

/// Run again, with overrides (the body may be empty).
#[utoipa::path(
    post,
    path = "/v1/runs/{id}/rerun",
    tag = "runs",
    params(("id" = String, Path)),
    request_body(content = Option<RerunRequest>),
    responses((status = 201, body = RunView))
)]
pub async fn rerun(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let overrides: RerunRequest = crate::body::json_or_default(&body, "rerun request")?;
    let (_, original) = visible_run(&state, &caller, &id).await?;
    let mut req: RunRequest =
        serde_json::from_str(&original.request).map_err(|e| corrupt("run", e))?;
    // The original version unless the rerun names another.
    req.version = Some(original.version);
    let req = req.rerun(overrides);
    let op = operation_for_run(&state, &caller, &original.operation_id, req.version, true).await?;
    let (task, run) = start_run(&state, &caller, &op, req, Some(id)).await?;
    created_run(&task, &run)
}

/// `GET /v1/runs/{id}/logs` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct LogQuery {
    /// `stdout` (default) or `stderr`.
    stream: Option<String>,
    /// Stream while the run is RUNNING, until it ends.
    follow: Option<bool>,
    /// Bytes the client already has (after a dropped connection).
    skip: Option<u64>,
}

/// The output of the run's executors (text).
#[utoipa::path(
    get,
    path = "/v1/runs/{id}/logs",
    tag = "runs",
    params(("id" = String, Path), LogQuery),
    responses((status = 200, content_type = "text/plain", body = String))
)]
pub async fn run_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Error> {
    let q = crate::task_output::Query::parse(raw.as_deref())?;
    let (task, _) = visible_run(&state, &caller, &id).await?;
    Ok(crate::task_output::text(&state, task, &q))
}

/// One file a run wrote to its output directory.
#[derive(Serialize, ToSchema)]
pub struct Artifact {
    /// The path under the output directory.
    pub(crate) path: String,
    pub(crate) size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sha256: Option<String>,
    /// Where to download it (`GET`).
    pub(crate) download: String,
    /// The object it is in the group's bucket.
    pub(crate) url: String,
}

/// The artifacts of run `id` of `group`, by path.
pub(crate) async fn artifacts(
    state: &AppState,
    group: &str,
    id: &str,
) -> Result<Vec<Artifact>, Error> {
    let bucket = artifacts_bucket(group);
    let prefix = artifacts_prefix(id);
    Ok(crate::data::list_all(state, bucket, &prefix)
        .await?
        .into_iter()
        .map(|o| {
            let path = o.key.strip_prefix(&prefix).unwrap_or(&o.key).to_string();
            Artifact {
                download: format!("/v1/runs/{id}/artifacts/{path}"),
                url: format!("s3://{bucket}/{}", o.key),
                path,
                size: o.size,
                sha256: o.sha256,
            }
        })
        .collect())
}

#[derive(Serialize, ToSchema)]
pub struct ArtifactList {
    artifacts: Vec<Artifact>,
}

#[utoipa::path(
    get,
    path = "/v1/runs/{id}/artifacts",
    tag = "runs",
    params(("id" = String, Path)),
    responses((status = 200, body = ArtifactList))
)]
pub async fn list_artifacts(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ArtifactList>, Error> {
    let (task, _) = visible_run(&state, &caller, &id).await?;
    let artifacts = artifacts(&state, &task.group, &id).await?;
    Ok(Json(ArtifactList { artifacts }))
}

/// An artifact's bytes (streamed).
#[utoipa::path(
    get,
    path = "/v1/runs/{id}/artifacts/{*path}",
    tag = "runs",
    params(("id" = String, Path), ("path" = String, Path, description = "The artifact's path; may contain `/`.")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>))
)]
pub async fn download_artifact(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, path)): Path<(String, String)>,
) -> Result<Response, Error> {
    let (task, _) = visible_run(&state, &caller, &id).await?;
    let bucket = artifacts_bucket(&task.group).to_string();
    let key = format!("{}{path}", artifacts_prefix(&id));
    let what = crate::data::checked(&bucket, &key)?;
    crate::data::download(&state, bucket, key, what).await
}
