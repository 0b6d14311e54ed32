//! The Workflow API's workflows (`/v1/workflows`): engine-agnostic, immutable revisions.
//!
//! A workflow belongs to a group (`?group=` at creation, else the caller's personal
//! group) and is named by its title within it. Posting a definition makes a revision;
//! posting the same one again (same engine, parameters and canonical definition) finds
//! the revision it made. The engine validates the definition and reports the task graph,
//! which is kept with the revision. An engine name with no engine is refused, never run
//! on something else.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_core::error::FieldError;
use tessera_core::identity::Role;
use tessera_core::params::Parameter;
use tessera_core::{ApiError, ErrorCode};
use tessera_store::{NewWorkflow, WorkflowQuery, WorkflowRow};
use tessera_workflow::dag::DagTask;
use tessera_workflow::{Dag, native};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::engines::Engine;
use crate::{AppState, Error};

/// `POST /v1/workflows`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(crate::workflows::example_workflow))]
pub struct NewWorkflowBody {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    title: String,
    /// `tessera` (the native engine; the default) or the name an engine adapter is
    /// bound to.
    #[serde(default = "native_engine")]
    engine: String,
    /// In the engine's own format: for `tessera` an object, or a string of YAML or JSON.
    #[schema(value_type = Object)]
    definition: Value,
    /// Typed parameters; runs give values, tasks see them where `{{name}}` is written.
    #[serde(default)]
    parameters: Vec<Parameter>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn native_engine() -> String {
    native::ENGINE.to_string()
}

/// The example of `POST /v1/workflows`: `examples/workflows/etl.yaml` as the definition.
pub fn example_workflow() -> Value {
    serde_json::json!({
        "title": "etl",
        "engine": "tessera",
        "parameters": [{"name": "count", "type": "integer", "default": 3, "minimum": 1}],
        "labels": {"team": "data"},
        "definition": include_str!("../../../examples/workflows/etl.yaml"),
    })
}

/// A revision as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowView {
    id: String,
    title: String,
    version: i64,
    engine: String,
    group: String,
    #[schema(value_type = Object)]
    definition: Value,
    parameters: Vec<Parameter>,
    /// The parameters as a JSON Schema (2020-12) of a run's `params`.
    #[schema(value_type = Object)]
    parameters_schema: Value,
    labels: BTreeMap<String, String>,
    /// SHA-256 of the engine, the parameters and the canonical definition.
    digest: String,
    created_at: String,
    created_by: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowList {
    workflows: Vec<WorkflowView>,
    next_page_token: Option<String>,
}

/// The task graph of a revision, as its engine reported it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowTaskList {
    tasks: Vec<DagTask>,
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::internal("a stored workflow does not decode", e)
}

pub(crate) fn view(row: &WorkflowRow) -> Result<WorkflowView, Error> {
    let parameters: Vec<Parameter> = serde_json::from_str(&row.parameters).map_err(corrupt)?;
    Ok(WorkflowView {
        id: row.id.clone(),
        title: row.title.clone(),
        version: row.version,
        engine: row.engine.clone(),
        group: row.group.clone(),
        definition: serde_json::from_str(&row.definition).map_err(corrupt)?,
        parameters_schema: tessera_core::params::schema(&parameters),
        parameters,
        labels: serde_json::from_str(&row.labels).map_err(corrupt)?,
        digest: row.digest.clone(),
        created_at: row.created_at.clone(),
        created_by: row.created_by.clone(),
        deleted: row.deleted,
    })
}

/// The stored graph of a revision.
pub(crate) fn dag_of(row: &WorkflowRow) -> Result<Dag, Error> {
    serde_json::from_str(&row.dag).map_err(corrupt)
}

/// The parameters of a revision.
pub(crate) fn parameters_of(row: &WorkflowRow) -> Result<Vec<Parameter>, Error> {
    serde_json::from_str(&row.parameters).map_err(corrupt)
}

#[utoipa::path(
    post,
    operation_id = "create_workflow",
    path = "/v1/workflows",
    tag = "workflows",
    params(crate::openapi::InGroup),
    request_body = NewWorkflowBody,
    responses(
        (status = 201, body = WorkflowView, description = "A new revision"),
        (status = 200, body = WorkflowView, description = "The revision with this definition"),
    )
)]
pub async fn create_workflow(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let group = crate::query::target_group(&caller, raw.as_deref())?;
    let b: NewWorkflowBody = crate::body::json(&body, "workflow")?;
    let mut errs = Vec::new();
    if let Err(m) = tessera_core::operation::check_name(&b.title) {
        errs.push(FieldError::at("title", m));
    }
    tessera_core::params::check_declared(&b.parameters, &mut errs);
    tessera_core::operation::check_labels(&b.labels, &mut errs);
    if !errs.is_empty() {
        return Err(Error(ApiError::invalid_document("workflow", errs)));
    }
    let v = Engine::named_or_400(&state, &b.engine)?
        .validate(&b.definition, &b.parameters)
        .await?;
    let parameters = serde_json::to_string(&b.parameters)
        .map_err(|e| Error::internal("encoding the workflow failed", e))?;
    let digest = tessera_workflow::definition_digest(&format!(
        "{}\n{}\n{}",
        b.engine,
        tessera_workflow::canonical_definition(
            &serde_json::to_value(&b.parameters).unwrap_or_default()
        ),
        v.canonical
    ));
    let dag = serde_json::to_string(&v.dag)
        .map_err(|e| Error::internal("encoding the workflow failed", e))?;
    let definition = b.definition.to_string();
    let id = tessera_core::id::new_task_id();
    let (row, created) = state
        .runner()
        .store()
        .create_workflow(&NewWorkflow {
            id: &id,
            group: &group,
            title: &b.title,
            engine: &b.engine,
            definition: &definition,
            digest: &digest,
            parameters: &parameters,
            labels: &b.labels,
            dag: &dag,
            by: &caller.username,
        })
        .await
        .map_err(|e| Error::internal("storing the workflow failed", e))?;
    if created {
        tracing::info!(%group, title = %row.title, version = row.version, engine = %row.engine, "workflow revision created");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = format!("/v1/workflows/{}/{}", row.title, row.version);
    let object = format!("{group}/{}/{}", row.title, row.version);
    Ok(crate::audit::naming(
        (status, [(header::LOCATION, location)], Json(view(&row)?)),
        &object,
    ))
}

/// `GET /v1/workflows` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct WorkflowFilter {
    title: Option<String>,
    engine: Option<String>,
    /// `key=value` (repeatable).
    label: Option<Vec<String>>,
    /// Every revision, not only the latest of each title.
    all_versions: Option<bool>,
}

fn bad_param(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameter, msg)
}

/// `key=value` of a `label=` filter.
pub(crate) fn label_filter(v: &str) -> Result<(String, String), Error> {
    v.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| bad_param(format!("label {v:?} is not key=value")))
}

#[utoipa::path(
    get,
    operation_id = "list_workflows",
    path = "/v1/workflows",
    tag = "workflows",
    params(crate::openapi::ListedGroups, crate::openapi::Paging, WorkflowFilter),
    responses((status = 200, body = WorkflowList))
)]
pub async fn list_workflows(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WorkflowList>, Error> {
    let mut q = WorkflowQuery {
        groups: crate::query::listed_groups(&caller, raw.as_deref())?,
        limit: crate::query::DEFAULT_PAGE,
        ..WorkflowQuery::default()
    };
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        match k.as_str() {
            "page_size" => q.limit = crate::query::page_size(&v)?,
            "page_token" if !v.is_empty() => {
                if !tessera_core::id::is_valid_task_id(&v) {
                    return Err(crate::query::bad_token());
                }
                q.after_id = Some(v);
            }
            "title" if !v.is_empty() => q.title = Some(v),
            "engine" if !v.is_empty() => q.engine = Some(v),
            "label" if !v.is_empty() => q.labels.push(label_filter(&v)?),
            "all_versions" => {
                q.all_versions = match v.as_str() {
                    "true" | "1" | "" => true,
                    "false" | "0" => false,
                    other => {
                        return Err(bad_param(format!(
                            "all_versions {other:?} is not true or false"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    let rows = state
        .runner()
        .store()
        .list_workflows(&q)
        .await
        .map_err(|e| Error::internal("listing workflows failed", e))?;
    let next = (rows.len() == q.limit as usize)
        .then(|| rows.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(WorkflowList {
        workflows: rows.iter().map(view).collect::<Result<_, _>>()?,
        next_page_token: next,
    }))
}

/// A revision the caller sees (`version` `None`: the latest), else 404.
pub(crate) async fn find(
    state: &AppState,
    caller: &Caller,
    group: &str,
    title: &str,
    version: Option<i64>,
) -> Result<WorkflowRow, Error> {
    let what = match version {
        Some(v) => format!("{title}/{v}"),
        None => title.to_string(),
    };
    caller.check_sees(group, "workflow", &what)?;
    state
        .runner()
        .store()
        .workflow(group, title, version)
        .await
        .map_err(|e| Error::internal("reading the workflow failed", e))?
        .filter(|w| !w.deleted)
        .ok_or_else(|| Error(ApiError::not_found("workflow", &what)))
}

fn version_of(v: &str) -> Result<i64, Error> {
    v.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| Error(ApiError::not_found("workflow version", v)))
}

#[utoipa::path(
    get,
    operation_id = "show_workflow",
    path = "/v1/workflows/{title}",
    tag = "workflows",
    params(("title" = String, Path), crate::openapi::InGroup),
    responses((status = 200, body = WorkflowView))
)]
pub async fn show_latest(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(title): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WorkflowView>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    Ok(Json(view(
        &find(&state, &caller, &group, &title, None).await?,
    )?))
}

#[utoipa::path(
    get,
    operation_id = "show_workflow_version",
    path = "/v1/workflows/{title}/{version}",
    tag = "workflows",
    params(("title" = String, Path), ("version" = i64, Path), crate::openapi::InGroup),
    responses((status = 200, body = WorkflowView))
)]
pub async fn show_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((title, version)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WorkflowView>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let v = version_of(&version)?;
    Ok(Json(view(
        &find(&state, &caller, &group, &title, Some(v)).await?,
    )?))
}

#[utoipa::path(
    get,
    operation_id = "list_workflow_tasks",
    path = "/v1/workflows/{title}/{version}/tasks",
    tag = "workflows",
    params(("title" = String, Path), ("version" = i64, Path), crate::openapi::InGroup),
    responses((status = 200, body = WorkflowTaskList))
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((title, version)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<WorkflowTaskList>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let v = version_of(&version)?;
    let row = find(&state, &caller, &group, &title, Some(v)).await?;
    Ok(Json(WorkflowTaskList {
        tasks: dag_of(&row)?.tasks,
    }))
}

#[utoipa::path(
    get,
    operation_id = "show_workflow_task",
    path = "/v1/workflows/{title}/{version}/tasks/{task_title}",
    tag = "workflows",
    params(
        ("title" = String, Path),
        ("version" = i64, Path),
        ("task_title" = String, Path),
        crate::openapi::InGroup
    ),
    responses((status = 200, body = DagTask))
)]
pub async fn show_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((title, version, task)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Json<DagTask>, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let v = version_of(&version)?;
    let row = find(&state, &caller, &group, &title, Some(v)).await?;
    dag_of(&row)?
        .tasks
        .into_iter()
        .find(|t| t.title == task)
        .map(Json)
        .ok_or_else(|| Error(ApiError::not_found("workflow task", &task)))
}

async fn delete(
    state: &AppState,
    caller: &Caller,
    raw: Option<&str>,
    title: &str,
    version: Option<i64>,
) -> Result<StatusCode, Error> {
    let group = crate::query::group(caller, raw)?;
    find(state, caller, &group, title, version).await?;
    caller.check_role(Role::Write, &group, "workflow", title)?;
    let n = state
        .runner()
        .store()
        .delete_workflow(&group, title, version)
        .await
        .map_err(|e| Error::internal("deleting the workflow failed", e))?;
    tracing::info!(%group, %title, ?version, revisions = n, "workflow deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Delete every revision (softly: runs stay readable).
#[utoipa::path(
    delete,
    operation_id = "delete_workflow",
    path = "/v1/workflows/{title}",
    tag = "workflows",
    params(("title" = String, Path), crate::openapi::InGroup),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_workflow(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(title): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, Error> {
    delete(&state, &caller, raw.as_deref(), &title, None).await
}

/// Delete one revision (softly: its runs stay readable).
#[utoipa::path(
    delete,
    operation_id = "delete_workflow_version",
    path = "/v1/workflows/{title}/{version}",
    tag = "workflows",
    params(("title" = String, Path), ("version" = i64, Path), crate::openapi::InGroup),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_version(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((title, version)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, Error> {
    let v = version_of(&version)?;
    delete(&state, &caller, raw.as_deref(), &title, Some(v)).await
}
