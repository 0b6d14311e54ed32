//! GA4GH TES v1.1.0 handlers.

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::{AppState, Error};
use axum::extract::{Path, RawQuery, State};
use axum::{Extension, Json};
use serde::Serialize;
use tessera_core::id::{is_valid_task_id, new_task_id};
use tessera_core::identity::Role;
use tessera_core::task::{NewTask, Origin};
use tessera_core::tes::{
    CancelTaskResponse, CreateTaskResponse, ListTasksResponse, Organization, ServiceInfo,
    ServiceType, Task, TaskLog, View,
};
use tessera_core::validate::{storage_prefixes, validate};
use tessera_core::{ApiError, ErrorCode, Event, State as TaskState, page, view};
use tessera_runner::CancelOutcome;
use tessera_store::ListQuery;

/// Default and largest list page. The spec says page_size "must be less than 2048";
/// larger requests are clamped to 2047 (and page on with next_page_token).
pub const DEFAULT_PAGE_SIZE: u32 = 256;
pub const MAX_PAGE_SIZE: u32 = 2047;
/// Upper bound of task-document bytes one BASIC/FULL list page holds.
pub const PAGE_BYTES: usize = 32 << 20;

#[utoipa::path(
    get,
    operation_id = "GetServiceInfo",
    path = "/ga4gh/tes/v1/service-info",
    tag = "TES",
    responses((status = 200, body = ServiceInfo))
)]
pub async fn service_info(State(state): State<AppState>) -> Json<ServiceInfo> {
    let policy = state.policy();
    Json(ServiceInfo {
        id: "org.tessera.tes".into(),
        name: "Tessera".into(),
        r#type: ServiceType {
            group: "org.ga4gh".into(),
            artifact: "tes".into(),
            version: "1.1.0".into(),
        },
        description: Some(
            "Tessera task execution service (GA4GH TES v1.1.0) running containers on Docker".into(),
        ),
        organization: Organization {
            name: "Tessera".into(),
            url: "https://github.com/tessera".into(),
        },
        contact_url: None,
        documentation_url: None,
        created_at: None,
        updated_at: None,
        environment: None,
        version: env!("CARGO_PKG_VERSION").into(),
        storage: storage_prefixes(&policy),
        tes_resources_backend_parameters: policy.backend_parameters.clone(),
    })
}

#[utoipa::path(
    post,
    operation_id = "CreateTask",
    path = "/ga4gh/tes/v1/tasks",
    tag = "TES",
    request_body = Task,
    responses((status = 200, body = CreateTaskResponse))
)]
pub async fn create_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RequestBody(body): RequestBody,
) -> Result<axum::response::Response, Error> {
    let task: Task = crate::body::json(&body, "task")?;
    let group = submit_group(&caller, &task, &state.auth().config().group_tag)?;
    let record = submit(&state, &caller, Submission::tes(group, task)).await?;
    let id = record.id;
    Ok(crate::audit::naming(
        Json(CreateTaskResponse { id: id.clone() }),
        &id,
    ))
}

/// A task for [`submit`], from any API.
pub(crate) struct Submission {
    pub id: String,
    pub group: String,
    pub task: Task,
    pub origin: Origin,
    pub priority: i32,
    pub extra: tessera_core::task::TaskExtra,
    /// A run's link to its operation, stored with the task.
    pub run: Option<tessera_core::task::RunLink>,
}

impl Submission {
    /// A TES task (a new id, priority 0, nothing beyond TES).
    pub fn tes(group: String, task: Task) -> Submission {
        Submission {
            id: new_task_id(),
            group,
            task,
            origin: Origin::Tes,
            priority: 0,
            extra: Default::default(),
            run: None,
        }
    }
}

/// Submit a task for `caller` (who may write in its group): the group's queue quota,
/// the caller's right to each storage URL, validation, then the store. Every API's
/// tasks come in here.
pub(crate) async fn submit(
    state: &AppState,
    caller: &Caller,
    sub: Submission,
) -> Result<tessera_core::TaskRecord, Error> {
    let Submission {
        id,
        group,
        task,
        origin,
        priority,
        extra,
        run,
    } = sub;
    let group = group.as_str();
    check_queue_quota(state, group).await?;
    check_storage(caller, &task)?;
    let validated = validate(task, &state.policy()).map_err(ApiError::invalid_task)?;
    let logs = if validated.warnings.is_empty() {
        Vec::new()
    } else {
        vec![TaskLog {
            system_logs: Some(validated.warnings.clone()),
            ..TaskLog::default()
        }]
    };
    let new = NewTask {
        id,
        group: group.to_string(),
        origin,
        priority,
        spec: validated.spec,
        extra,
        run,
        creation_time: time::OffsetDateTime::now_utc(),
        reason: None,
        logs,
    };
    let record = state
        .runner()
        .submit(new)
        .await
        .map_err(|e| Error::internal("storing the task failed", e))?;
    tracing::debug!(task_id = %record.id, origin = origin.as_str(), "task created");
    Ok(record)
}

/// The group a TES task goes to: the one its group tag names, else the caller's default
/// group; the caller must be allowed to submit there.
fn submit_group(caller: &Caller, task: &Task, tag: &str) -> Result<String, Error> {
    let named = task
        .tags
        .as_ref()
        .and_then(|t| t.get(tag))
        .filter(|g| !g.is_empty());
    let group = named.map_or_else(|| caller.default_group.clone(), Clone::clone);
    if !caller.sees(&group) {
        return Err(Error::new(
            ErrorCode::NotFound,
            format!("there is no group {group:?} (named by the tag {tag:?})"),
        ));
    }
    caller.check_role(Role::Write, &group, "group", &group)?;
    Ok(group)
}

/// Every input and output URL is one the caller may use (see
/// `identity::check_storage_url`); otherwise 403 naming each.
fn check_storage(caller: &Caller, task: &Task) -> Result<(), Error> {
    let mut refused = Vec::new();
    for (i, input) in task.inputs.iter().flatten().enumerate() {
        if let Some(url) = &input.url
            && let Err(m) = tessera_core::identity::check_storage_url(caller, url, false)
        {
            refused.push(tessera_core::error::FieldError {
                field: format!("inputs[{i}].url"),
                message: m,
            });
        }
    }
    for (i, output) in task.outputs.iter().flatten().enumerate() {
        if let Err(m) = tessera_core::identity::check_storage_url(caller, &output.url, true) {
            refused.push(tessera_core::error::FieldError {
                field: format!("outputs[{i}].url"),
                message: m,
            });
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    let mut err = ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "{} of the task's URLs may not be used by you: {}",
            refused.len(),
            refused[0].message
        ),
    );
    err.details = refused;
    Err(Error(err))
}

/// A group whose queue is full takes no more tasks (429). Counted only for groups with
/// a queue limit; creates racing for the last places may pass it by as many as race.
async fn check_queue_quota(state: &AppState, group: &str) -> Result<(), Error> {
    let quotas = state
        .runner()
        .quotas()
        .await
        .map_err(|e| Error::internal("reading the group's quota failed", e))?;
    let Some(max) = quotas.get(group).and_then(|q| q.max_queued) else {
        return Ok(());
    };
    let queued = state
        .runner()
        .store()
        .count_queued(group)
        .await
        .map_err(|e| Error::internal("counting the group's queue failed", e))?;
    if queued >= i64::from(max) {
        return Err(Error::new(
            ErrorCode::QuotaExceeded,
            format!(
                "group {group} has {queued} tasks queued, its limit is {max}; submit again \
                 when some have started"
            ),
        ));
    }
    Ok(())
}

/// `GET /ga4gh/tes/v1/tasks` query, as documented (parsed by [`parse_list_params`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TesListQuery {
    /// Only tasks whose name starts with this.
    name_prefix: Option<String>,
    #[param(inline)]
    state: Option<TaskState>,
    /// Only tasks with these tags (repeat; pairs with `tag_value` in order).
    tag_key: Option<Vec<String>>,
    tag_value: Option<Vec<String>>,
    /// 0 or absent: 256; at most 2047.
    page_size: Option<i64>,
    page_token: Option<String>,
    #[param(inline)]
    view: Option<View>,
}

/// `?view=` of one task.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct ViewQuery {
    #[param(inline)]
    view: Option<View>,
}

/// Query parameters, parsed by hand: `tag_key`/`tag_value` repeat.
#[derive(Default)]
struct ListParams {
    name_prefix: Option<String>,
    state: Option<TaskState>,
    tag_keys: Vec<String>,
    tag_values: Vec<String>,
    page_size: u32,
    page_token: Option<i64>,
    view: View,
}

fn bad_param(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameter, msg)
}

fn parse_view(v: &str) -> Result<View, Error> {
    match v.to_ascii_uppercase().as_str() {
        "MINIMAL" => Ok(View::Minimal),
        "BASIC" => Ok(View::Basic),
        "FULL" => Ok(View::Full),
        _ => Err(bad_param(format!(
            "view {v:?} is not one of MINIMAL, BASIC, FULL"
        ))),
    }
}

fn parse_list_params(raw: Option<&str>) -> Result<ListParams, Error> {
    let mut p = ListParams {
        page_size: DEFAULT_PAGE_SIZE,
        ..ListParams::default()
    };
    for (k, v) in crate::query::pairs(raw)? {
        match k.as_str() {
            "name_prefix" => p.name_prefix = Some(v).filter(|s| !s.is_empty()),
            "state" => {
                p.state = Some(
                    v.parse::<TaskState>()
                        .map_err(|e| bad_param(e.to_string()))?,
                );
            }
            "tag_key" => p.tag_keys.push(v),
            "tag_value" => p.tag_values.push(v),
            "page_size" => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| bad_param(format!("page_size {v:?} is not an integer")))?;
                p.page_size = match n {
                    n if n < 0 => return Err(bad_param("page_size must not be negative")),
                    0 => DEFAULT_PAGE_SIZE,
                    n => n.min(MAX_PAGE_SIZE as i64) as u32,
                };
            }
            "page_token" if !v.is_empty() => {
                p.page_token = Some(page::decode(&v).ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidPageToken,
                        "page_token is not one this server issued; start again without it",
                    )
                })?);
            }
            "view" => p.view = parse_view(&v)?,
            _ => {}
        }
    }
    if p.tag_values.len() > p.tag_keys.len() {
        return Err(bad_param(
            "there are more tag_value parameters than tag_key parameters",
        ));
    }
    Ok(p)
}

#[utoipa::path(
    get,
    operation_id = "ListTasks",
    path = "/ga4gh/tes/v1/tasks",
    tag = "TES",
    params(TesListQuery),
    responses((status = 200, body = ListTasksResponse))
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ListTasksResponse>, Error> {
    let p = parse_list_params(raw.as_deref())?;
    let tags = p
        .tag_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.clone(), p.tag_values.get(i).cloned().unwrap_or_default()))
        .collect();
    let minimal = p.view == View::Minimal;
    let page_size = p.page_size as usize;
    let store = state.runner().store();
    // One more row than the page tells whether another exists. BASIC/FULL pages also
    // end once they hold PAGE_BYTES of task documents (the store stops reading there),
    // so one request cannot make the server hold gigabytes; the token continues there.
    let mut query = ListQuery {
        name_prefix: p.name_prefix,
        state: p.state,
        tags,
        groups: caller
            .visible_groups()
            .map(|g| g.into_iter().map(str::to_string).collect()),
        // Every API's tasks: a run or a contextual task is a TES task too.
        origins: None,
        before_seq: p.page_token,
        limit: p.page_size + 1,
        minimal,
        max_bytes: if minimal { 0 } else { PAGE_BYTES },
    };
    let mut records = store
        .list_tasks(&query)
        .await
        .map_err(|e| Error::internal("listing tasks failed", e))?;
    let more = if records.len() > page_size {
        records.truncate(page_size);
        true
    } else if records.len() < page_size + 1 && !minimal && !records.is_empty() {
        // Fewer rows: the end, or the byte budget. Whether anything follows the last.
        query.before_seq = records.last().map(|r| r.seq);
        query.limit = 1;
        query.minimal = true;
        query.max_bytes = 0;
        !store
            .list_tasks(&query)
            .await
            .map_err(|e| Error::internal("listing tasks failed", e))?
            .is_empty()
    } else {
        false
    };
    let next_page_token = if more {
        records.last().map(|r| page::encode(r.seq))
    } else {
        None
    };
    Ok(Json(ListTasksResponse {
        tasks: records.iter().map(|r| view::render(r, p.view)).collect(),
        next_page_token,
    }))
}

fn check_id(id: &str) -> Result<(), Error> {
    if is_valid_task_id(id) {
        Ok(())
    } else {
        Err(Error(ApiError::not_found("task", id)))
    }
}

#[utoipa::path(
    get,
    operation_id = "GetTask",
    path = "/ga4gh/tes/v1/tasks/{id}",
    tag = "TES",
    params(("id" = String, Path), ViewQuery),
    responses((status = 200, body = Task))
)]
pub async fn get_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Task>, Error> {
    let mut view_param = View::Minimal;
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        if k == "view" {
            view_param = parse_view(&v)?;
        }
    }
    check_id(&id)?;
    let record = state
        .runner()
        .store()
        .get_task(&id)
        .await
        .map_err(|e| Error::internal("reading the task failed", e))?
        .ok_or_else(|| Error(ApiError::not_found("task", &id)))?;
    caller.check_sees(&record.group, "task", &id)?;
    Ok(Json(view::render(&record, view_param)))
}

/// `POST /tasks/{id}:cancel`. The router cannot split `{id}:cancel` inside one path
/// segment, so the suffix is checked here.
/// (Documented at its TES path; routed by hand at `/tasks/{id}`, see `lib.rs`.)
#[utoipa::path(
    post,
    operation_id = "CancelTask",
    path = "/ga4gh/tes/v1/tasks/{id}:cancel",
    tag = "TES",
    params(("id" = String, Path)),
    responses((status = 200, body = CancelTaskResponse))
)]
pub async fn cancel_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id_action): Path<String>,
) -> Result<Json<CancelTaskResponse>, Error> {
    let Some(id) = id_action.strip_suffix(":cancel") else {
        return Err(Error::new(
            ErrorCode::NotFound,
            "POST is only defined for /tasks/{id}:cancel",
        ));
    };
    check_id(id)?;
    check_may_cancel(&state, &caller, id).await?;
    match state
        .runner()
        .cancel(id)
        .await
        .map_err(|e| Error::internal("canceling the task failed", e))?
    {
        CancelOutcome::NotFound => Err(Error(ApiError::not_found("task", id))),
        CancelOutcome::AlreadyFinished(_) | CancelOutcome::Canceling => {
            Ok(Json(CancelTaskResponse {}))
        }
    }
}

/// The task exists for the caller (404 otherwise) and it may cancel there (403).
async fn check_may_cancel(state: &AppState, caller: &Caller, id: &str) -> Result<(), Error> {
    let group = state
        .runner()
        .store()
        .task_group(id)
        .await
        .map_err(|e| Error::internal("reading the task failed", e))?
        .ok_or_else(|| Error(ApiError::not_found("task", id)))?;
    caller.check_role(Role::Write, &group, "task", id)
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskStatus {
    pub id: String,
    pub state: TaskState,
    /// The Task API's phase (Queued, Pending, Running, Completed, Failed).
    pub phase: &'static str,
    pub group: String,
    pub origin: Origin,
    pub priority: i32,
    /// The agent of a Task API task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_ref: Option<String>,
    /// Why the task is where it is, in words a person can act on.
    pub reason: Option<String>,
    pub task: Task,
    pub events: Vec<Event>,
}

/// `GET /v1/tasks/{id}`: the FULL TES view plus the reason and the event history.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}",
    tag = "tasks",
    params(("id" = String, Path)),
    responses((status = 200, body = TaskStatus))
)]
pub async fn task_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<TaskStatus>, Error> {
    check_id(&id)?;
    let store = state.runner().store();
    let record = store
        .get_task(&id)
        .await
        .map_err(|e| Error::internal("reading the task failed", e))?
        .ok_or_else(|| Error(ApiError::not_found("task", &id)))?;
    caller.check_sees(&record.group, "task", &id)?;
    let events = store
        .events(&id)
        .await
        .map_err(|e| Error::internal("reading the task's events failed", e))?;
    Ok(Json(TaskStatus {
        id: record.id.clone(),
        state: record.state,
        phase: record.state.phase(),
        group: record.group.clone(),
        origin: record.origin,
        priority: record.priority,
        agent_ref: record.extra.agent.clone(),
        reason: record.reason.clone(),
        task: view::render(&record, View::Full),
        events,
    }))
}

/// What `POST /v1/tasks/{id}/cancel` did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CancelResult {
    pub id: String,
    /// The task's state after the request: CANCELING or CANCELED, or the terminal state it
    /// had already reached.
    pub state: TaskState,
    /// True when the task had already ended, so nothing was canceled.
    pub already_ended: bool,
}

/// `POST /v1/tasks/{id}/cancel`: TES's cancel, telling the caller what happened.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/cancel",
    tag = "tasks",
    params(("id" = String, Path)),
    responses((status = 200, body = CancelResult))
)]
pub async fn cancel_v1(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<CancelResult>, Error> {
    check_id(&id)?;
    check_may_cancel(&state, &caller, &id).await?;
    cancel_answer(&state, &id).await.map(Json)
}

/// Cancel a task the caller may cancel, and say where it stands.
pub(crate) async fn cancel_answer(state: &AppState, id: &str) -> Result<CancelResult, Error> {
    let outcome = state
        .runner()
        .cancel(id)
        .await
        .map_err(|e| Error::internal("canceling the task failed", e))?;
    match outcome {
        CancelOutcome::NotFound => Err(Error(ApiError::not_found("task", id))),
        CancelOutcome::AlreadyFinished(s) => Ok(CancelResult {
            id: id.to_string(),
            state: s,
            already_ended: true,
        }),
        CancelOutcome::Canceling => {
            let now = state
                .runner()
                .store()
                .get_task(id)
                .await
                .map_err(|e| Error::internal("reading the task failed", e))?
                .map_or(TaskState::Canceling, |t| t.state);
            Ok(CancelResult {
                id: id.to_string(),
                state: now,
                already_ended: false,
            })
        }
    }
}
