//! The Task API's KubeTask half: `/v1/configs`, `/v1/secrets`, `/v1/agents` and
//! contextual tasks (`POST /v1/tasks`, `GET /v1/tasks`).
//!
//! Configs, secrets and agents belong to a group and are named within it (`?group=`,
//! default the caller's personal group), like objects of a Kubernetes namespace. Members
//! read them, writers change them; for anyone else they do not exist. Secret values are
//! sealed before they reach the store and are never returned.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tessera_auth::sealed::SealKey;
use tessera_core::agent::{
    AgentSpec, Context, Credential, HumanInTheLoop, TaskRequest, agent_task, resolve_contexts,
};
use tessera_core::identity::Role;
use tessera_core::task::Origin;
use tessera_core::{ApiError, ErrorCode};
use tessera_store::{EntryKind, NamedRow, Store};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::body::RequestBody;
use crate::query::target_group;
use crate::tes::{Submission, submit};
use crate::{AppState, Error};

/// Most configs, secrets or agents one list shows.
const MAX_LIST: u32 = 1000;

/// Which named thing an endpoint serves.
#[derive(Clone, Copy)]
enum Kind {
    Config,
    Secret,
    Agent,
}

impl Kind {
    fn entry(self) -> Option<EntryKind> {
        match self {
            Kind::Config => Some(EntryKind::Config),
            Kind::Secret => Some(EntryKind::Secret),
            Kind::Agent => None,
        }
    }
    fn word(self) -> &'static str {
        match self {
            Kind::Config => "config",
            Kind::Secret => "secret",
            Kind::Agent => "agent",
        }
    }
}

/// A config's or secret's document.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesBody {
    #[serde(default)]
    name: Option<String>,
    data: BTreeMap<String, String>,
}

/// An entry key: a file name (letters, digits, `.`, `_`, `-`; not `.` or `..`).
fn check_key(k: &str) -> Result<(), String> {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{k:?} is not an entry key: letters, digits, '.', '_' and '-', not . or .."
        ))
    }
}

/// Where a secret entry is sealed for: its group, secret and key.
fn seal_place(group: &str, name: &str, key: &str) -> String {
    format!("{group}/{name}/{key}")
}

fn parse_entries(
    kind: Kind,
    body: &[u8],
    name_from_path: Option<&str>,
) -> Result<(String, BTreeMap<String, String>), Error> {
    let b: EntriesBody = crate::body::json(body, kind.word())?;
    let name = match (name_from_path, b.name) {
        (Some(p), Some(n)) if p != n => {
            return Err(Error::new(
                ErrorCode::InvalidDocument,
                format!("the document names {n:?}, the path {p:?}"),
            ));
        }
        (Some(p), _) => p.to_string(),
        (None, Some(n)) => n,
        (None, None) => {
            return Err(Error(ApiError::invalid_document(
                kind.word(),
                vec![tessera_core::error::FieldError::at("name", "is required")],
            )));
        }
    };
    let mut errs = Vec::new();
    if let Err(m) = tessera_core::operation::check_name(&name) {
        errs.push(tessera_core::error::FieldError::at("name", m));
    }
    for k in b.data.keys() {
        if let Err(m) = check_key(k) {
            errs.push(tessera_core::error::FieldError::at(format!("data.{k}"), m));
        }
    }
    if !errs.is_empty() {
        return Err(Error(ApiError::invalid_document(kind.word(), errs)));
    }
    Ok((name, b.data))
}

/// The stored form of a document: configs as given, secrets sealed entry by entry,
/// agents checked.
fn stored_data(
    state: &AppState,
    kind: Kind,
    group: &str,
    body: &[u8],
    name_from_path: Option<&str>,
) -> Result<(String, String), Error> {
    let encoded = |r: Result<String, serde_json::Error>| {
        r.map_err(|e| Error::internal("encoding the document failed", e))
    };
    match kind {
        Kind::Agent => {
            let spec: AgentSpec = crate::body::json(body, "agent")?;
            if let Some(p) = name_from_path
                && p != spec.name
            {
                return Err(Error::new(
                    ErrorCode::InvalidDocument,
                    format!("the document names {:?}, the path {p:?}", spec.name),
                ));
            }
            let errs = spec.check();
            if !errs.is_empty() {
                return Err(Error(ApiError::invalid_document("agent", errs)));
            }
            Ok((spec.name.clone(), encoded(serde_json::to_string(&spec))?))
        }
        Kind::Config => {
            let (name, data) = parse_entries(kind, body, name_from_path)?;
            Ok((name, encoded(serde_json::to_string(&data))?))
        }
        Kind::Secret => {
            let (name, data) = parse_entries(kind, body, name_from_path)?;
            let key = state.secrets_key();
            let sealed: BTreeMap<String, String> = data
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        key.seal(&seal_place(group, &name, k), v.as_bytes()),
                    )
                })
                .collect();
            Ok((name, encoded(serde_json::to_string(&sealed))?))
        }
    }
}

fn corrupt(e: serde_json::Error) -> Error {
    Error::internal("a stored document does not decode", e)
}

/// A config as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    name: String,
    group: String,
    created_at: String,
    updated_at: String,
    /// Entries: key (a file name) to text.
    data: BTreeMap<String, String>,
}

fn config_view(row: &NamedRow) -> Result<ConfigView, Error> {
    Ok(ConfigView {
        name: row.name.clone(),
        group: row.group.clone(),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        data: serde_json::from_str(&row.data).map_err(corrupt)?,
    })
}

/// A secret as the API shows it: its keys, never its values.
#[derive(Serialize, ToSchema)]
pub struct SecretView {
    name: String,
    group: String,
    created_at: String,
    updated_at: String,
    keys: Vec<String>,
}

fn secret_view(row: &NamedRow) -> Result<SecretView, Error> {
    let sealed: BTreeMap<String, String> = serde_json::from_str(&row.data).map_err(corrupt)?;
    Ok(SecretView {
        name: row.name.clone(),
        group: row.group.clone(),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        keys: sealed.into_keys().collect(),
    })
}

/// An agent as the API shows it: its document (the fields of [`AgentSpec`]) with its
/// group and times.
#[derive(Serialize, ToSchema)]
pub struct AgentView {
    name: String,
    group: String,
    created_at: String,
    updated_at: String,
    image: String,
    command: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workdir: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    contexts: Vec<Context>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    credentials: Vec<Credential>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    placement: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    human_in_the_loop: Option<HumanInTheLoop>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrent_tasks: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<tessera_core::tes::Resources>,
}

fn agent_view(row: &NamedRow) -> Result<AgentView, Error> {
    let a: AgentSpec = serde_json::from_str(&row.data).map_err(corrupt)?;
    Ok(AgentView {
        name: row.name.clone(),
        group: row.group.clone(),
        created_at: row.created_at.clone(),
        updated_at: row.updated_at.clone(),
        image: a.image,
        command: a.command,
        workdir: a.workdir,
        env: a.env,
        contexts: a.contexts,
        credentials: a.credentials,
        labels: a.labels,
        placement: a.placement,
        human_in_the_loop: a.human_in_the_loop,
        max_concurrent_tasks: a.max_concurrent_tasks,
        resources: a.resources,
    })
}

#[derive(Serialize, ToSchema)]
pub struct ConfigList {
    configs: Vec<ConfigView>,
}

#[derive(Serialize, ToSchema)]
pub struct SecretList {
    secrets: Vec<SecretView>,
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    agents: Vec<AgentView>,
}

/// A config's or secret's document as written.
#[derive(ToSchema)]
#[schema(examples(tessera_core::examples::entries))]
#[allow(dead_code)]
pub struct EntriesDocument {
    /// Required on POST; on PUT it must match the path when given.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    name: Option<String>,
    /// Entries: key (letters, digits, `.`, `_`, `-`) to text.
    data: BTreeMap<String, String>,
}

async fn find(
    store: &Store,
    caller: &Caller,
    kind: Kind,
    group: &str,
    name: &str,
) -> Result<NamedRow, Error> {
    caller.check_sees(group, kind.word(), name)?;
    store
        .named(kind.entry(), group, name)
        .await
        .map_err(|e| Error::internal("reading the store failed", e))?
        .ok_or_else(|| Error(ApiError::not_found(kind.word(), name)))
}

async fn create(
    state: AppState,
    caller: Caller,
    kind: Kind,
    raw: Option<String>,
    body: Bytes,
) -> Result<NamedRow, Error> {
    let group = target_group(&caller, raw.as_deref())?;
    let (name, data) = stored_data(&state, kind, &group, &body, None)?;
    let store = state.runner().store();
    store
        .put_named(kind.entry(), &group, &name, &data, false)
        .await
        .map_err(|e| match e {
            tessera_store::StoreError::Conflict(m) => Error::new(ErrorCode::Conflict, m),
            e => Error::internal("storing failed", e),
        })?;
    let row = find(store, &caller, kind, &group, &name).await?;
    tracing::info!(kind = kind.word(), %group, %name, "created");
    Ok(row)
}

/// The answer to a create: 201 with the view, audited under `group/name`.
fn created<V: Serialize>(row: &NamedRow, view: V) -> Response {
    crate::audit::naming(
        (StatusCode::CREATED, Json(view)),
        &format!("{}/{}", row.group, row.name),
    )
}

async fn list(
    state: AppState,
    caller: Caller,
    kind: Kind,
    raw: Option<String>,
) -> Result<Vec<NamedRow>, Error> {
    let groups = crate::query::listed_groups(&caller, raw.as_deref())?;
    state
        .runner()
        .store()
        .list_named(kind.entry(), groups.as_deref(), MAX_LIST)
        .await
        .map_err(|e| Error::internal("listing failed", e))
}

async fn show(
    state: AppState,
    caller: Caller,
    kind: Kind,
    name: String,
    raw: Option<String>,
) -> Result<NamedRow, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    find(state.runner().store(), &caller, kind, &group, &name).await
}

async fn replace(
    state: AppState,
    caller: Caller,
    kind: Kind,
    name: String,
    raw: Option<String>,
    body: Bytes,
) -> Result<NamedRow, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let store = state.runner().store();
    find(store, &caller, kind, &group, &name).await?;
    caller.check_role(Role::Write, &group, kind.word(), &name)?;
    let (_, data) = stored_data(&state, kind, &group, &body, Some(&name))?;
    if !store
        .put_named(kind.entry(), &group, &name, &data, true)
        .await
        .map_err(|e| Error::internal("storing failed", e))?
    {
        return Err(Error(ApiError::not_found(kind.word(), &name)));
    }
    find(store, &caller, kind, &group, &name).await
}

async fn remove(
    state: AppState,
    caller: Caller,
    kind: Kind,
    name: String,
    raw: Option<String>,
) -> Result<StatusCode, Error> {
    let group = crate::query::group(&caller, raw.as_deref())?;
    let store = state.runner().store();
    find(store, &caller, kind, &group, &name).await?;
    caller.check_role(Role::Write, &group, kind.word(), &name)?;
    store
        .delete_named(kind.entry(), &group, &name)
        .await
        .map_err(|e| Error::internal("deleting failed", e))?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- /v1/configs ----

#[utoipa::path(
    get,
    path = "/v1/configs",
    tag = "configs",
    params(crate::openapi::ListedGroups),
    responses((status = 200, body = ConfigList))
)]
pub async fn list_configs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ConfigList>, Error> {
    let rows = list(state, caller, Kind::Config, raw).await?;
    Ok(Json(ConfigList {
        configs: rows.iter().map(config_view).collect::<Result<_, _>>()?,
    }))
}

/// Config entries (the ConfigMap analogue).
#[utoipa::path(
    post,
    path = "/v1/configs",
    tag = "configs",
    params(crate::openapi::InGroup),
    request_body = EntriesDocument,
    responses((status = 201, body = ConfigView))
)]
pub async fn create_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let row = create(state, caller, Kind::Config, raw, body).await?;
    Ok(created(&row, config_view(&row)?))
}

#[utoipa::path(
    get,
    path = "/v1/configs/{name}",
    tag = "configs",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 200, body = ConfigView))
)]
pub async fn show_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ConfigView>, Error> {
    let row = show(state, caller, Kind::Config, name, raw).await?;
    Ok(Json(config_view(&row)?))
}

#[utoipa::path(
    put,
    path = "/v1/configs/{name}",
    tag = "configs",
    params(("name" = String, Path), crate::openapi::InGroup),
    request_body = EntriesDocument,
    responses((status = 200, body = ConfigView))
)]
pub async fn replace_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Json<ConfigView>, Error> {
    let row = replace(state, caller, Kind::Config, name, raw, body).await?;
    Ok(Json(config_view(&row)?))
}

#[utoipa::path(
    delete,
    path = "/v1/configs/{name}",
    tag = "configs",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, Error> {
    remove(state, caller, Kind::Config, name, raw).await
}

// ---- /v1/secrets ----

#[utoipa::path(
    get,
    path = "/v1/secrets",
    tag = "secrets",
    params(crate::openapi::ListedGroups),
    responses((status = 200, body = SecretList))
)]
pub async fn list_secrets(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SecretList>, Error> {
    let rows = list(state, caller, Kind::Secret, raw).await?;
    Ok(Json(SecretList {
        secrets: rows.iter().map(secret_view).collect::<Result<_, _>>()?,
    }))
}

/// Secret entries: sealed at rest, never returned.
#[utoipa::path(
    post,
    path = "/v1/secrets",
    tag = "secrets",
    params(crate::openapi::InGroup),
    request_body = EntriesDocument,
    responses((status = 201, body = SecretView))
)]
pub async fn create_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let row = create(state, caller, Kind::Secret, raw, body).await?;
    Ok(created(&row, secret_view(&row)?))
}

#[utoipa::path(
    get,
    path = "/v1/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 200, body = SecretView))
)]
pub async fn show_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<SecretView>, Error> {
    let row = show(state, caller, Kind::Secret, name, raw).await?;
    Ok(Json(secret_view(&row)?))
}

#[utoipa::path(
    put,
    path = "/v1/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path), crate::openapi::InGroup),
    request_body = EntriesDocument,
    responses((status = 200, body = SecretView))
)]
pub async fn replace_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Json<SecretView>, Error> {
    let row = replace(state, caller, Kind::Secret, name, raw, body).await?;
    Ok(Json(secret_view(&row)?))
}

#[utoipa::path(
    delete,
    path = "/v1/secrets/{name}",
    tag = "secrets",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_secret(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, Error> {
    remove(state, caller, Kind::Secret, name, raw).await
}

// ---- /v1/agents ----

#[utoipa::path(
    get,
    path = "/v1/agents",
    tag = "agents",
    params(crate::openapi::ListedGroups),
    responses((status = 200, body = AgentList))
)]
pub async fn list_agents(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AgentList>, Error> {
    let rows = list(state, caller, Kind::Agent, raw).await?;
    Ok(Json(AgentList {
        agents: rows.iter().map(agent_view).collect::<Result<_, _>>()?,
    }))
}

/// An agent: the image, command, contexts and credentials its tasks run with.
#[utoipa::path(
    post,
    path = "/v1/agents",
    tag = "agents",
    params(crate::openapi::InGroup),
    request_body = AgentSpec,
    responses((status = 201, body = AgentView))
)]
pub async fn create_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let row = create(state, caller, Kind::Agent, raw, body).await?;
    Ok(created(&row, agent_view(&row)?))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{name}",
    tag = "agents",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 200, body = AgentView))
)]
pub async fn show_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<AgentView>, Error> {
    let row = show(state, caller, Kind::Agent, name, raw).await?;
    Ok(Json(agent_view(&row)?))
}

#[utoipa::path(
    put,
    path = "/v1/agents/{name}",
    tag = "agents",
    params(("name" = String, Path), crate::openapi::InGroup),
    request_body = AgentSpec,
    responses((status = 200, body = AgentView))
)]
pub async fn replace_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Json<AgentView>, Error> {
    let row = replace(state, caller, Kind::Agent, name, raw, body).await?;
    Ok(Json(agent_view(&row)?))
}

#[utoipa::path(
    delete,
    path = "/v1/agents/{name}",
    tag = "agents",
    params(("name" = String, Path), crate::openapi::InGroup),
    responses((status = 204, description = "Deleted"))
)]
pub async fn delete_agent(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<StatusCode, Error> {
    remove(state, caller, Kind::Agent, name, raw).await
}

/// Secret values for the runner: opened from the store with the server's key.
pub struct SealedSecrets {
    pub store: Store,
    pub key: Arc<SealKey>,
}

impl tessera_runner::SecretSource for SealedSecrets {
    fn value<'a>(
        &'a self,
        group: &'a str,
        secret: &'a str,
        key: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let row = self
                .store
                .named(Some(EntryKind::Secret), group, secret)
                .await
                .map_err(|e| format!("reading secret {secret:?} failed: {e}"))?
                .ok_or_else(|| format!("there is no secret {secret:?} in group {group}"))?;
            let sealed: BTreeMap<String, String> = serde_json::from_str(&row.data)
                .map_err(|_| format!("secret {secret:?} does not decode"))?;
            let value = sealed
                .get(key)
                .ok_or_else(|| format!("secret {secret:?} has no key {key:?}"))?;
            let plain = self
                .key
                .open(&seal_place(group, secret, key), value)
                .map_err(|e| format!("secret {secret:?}: {e}"))?;
            String::from_utf8(plain)
                .map_err(|_| format!("secret {secret:?} key {key:?} is not text"))
        })
    }
}

// ---- contextual tasks ---------------------------------------------------------------

/// A task as the Task API shows it: its phase, agent and labels next to the one state.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    id: String,
    name: Option<String>,
    group: String,
    origin: Origin,
    agent_ref: Option<String>,
    /// Queued, Pending, Running, Completed or Failed.
    phase: &'static str,
    state: tessera_core::State,
    reason: Option<String>,
    priority: i32,
    labels: Option<BTreeMap<String, String>>,
    keep_alive_seconds: Option<u64>,
    created_at: String,
    start_time: Option<String>,
    end_time: Option<String>,
    exit_code: Option<i32>,
}

pub(crate) fn task_view(t: &tessera_core::TaskRecord) -> TaskView {
    let last = t.logs.last();
    TaskView {
        id: t.id.clone(),
        name: t.spec.name.clone(),
        group: t.group.clone(),
        origin: t.origin,
        agent_ref: t.extra.agent.clone(),
        phase: t.state.phase(),
        state: t.state,
        reason: t.reason.clone(),
        priority: t.priority,
        labels: t.spec.tags.clone(),
        keep_alive_seconds: t.extra.keep_alive_secs,
        created_at: tessera_core::time_fmt::format_rfc3339(t.creation_time),
        start_time: last.and_then(|l| l.start_time.clone()),
        end_time: last.and_then(|l| l.end_time.clone()),
        exit_code: last.and_then(|l| l.logs.last()).map(|e| e.exit_code),
    }
}

#[derive(Serialize, ToSchema)]
pub struct TaskList {
    tasks: Vec<TaskView>,
    next_page_token: Option<String>,
}

/// A task with contexts, run by an agent (`default` when it names none).
#[utoipa::path(
    post,
    path = "/v1/tasks",
    tag = "tasks",
    params(crate::openapi::InGroup),
    request_body = TaskRequest,
    responses((status = 201, body = TaskView))
)]
pub async fn create_task(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
    RequestBody(body): RequestBody,
) -> Result<Response, Error> {
    let group = target_group(&caller, raw.as_deref())?;
    let req: TaskRequest = crate::body::json(&body, "task")?;
    let id = tessera_core::id::new_task_id();
    let record =
        submit_agent_task(&state, &caller, &group, req, id, Origin::Task, Vec::new()).await?;
    let id = record.id.clone();
    Ok(crate::audit::naming(
        (
            StatusCode::CREATED,
            [(axum::http::header::LOCATION, format!("/v1/tasks/{id}"))],
            Json(task_view(&record)),
        )
            .into_response(),
        &id,
    ))
}

/// Make task `id` of `group` from a task request (its agent, contexts and credentials
/// checked against what the group has) and submit it: the one path of contextual tasks
/// and cron children.
pub(crate) async fn submit_agent_task(
    state: &AppState,
    caller: &Caller,
    group: &str,
    req: TaskRequest,
    id: String,
    origin: Origin,
    server_tags: Vec<(String, String)>,
) -> Result<tessera_core::TaskRecord, Error> {
    let group = group.to_string();
    let store = state.runner().store();
    let agent_row = store
        .named(None, &group, req.agent())
        .await
        .map_err(|e| Error::internal("reading the agent failed", e))?
        .ok_or_else(|| {
            Error(ApiError::invalid_document(
                "task",
                vec![tessera_core::error::FieldError::at(
                    "agent_ref",
                    format!("there is no agent {:?} in group {group}", req.agent()),
                )],
            ))
        })?;
    let agent: AgentSpec = serde_json::from_str(&agent_row.data)
        .map_err(|e| Error::internal("a stored agent does not decode", e))?;
    let mut errs = req.check(agent.workdir());
    // The configs the contexts name, read once.
    let mut configs: HashMap<String, Option<BTreeMap<String, String>>> = HashMap::new();
    for c in agent.contexts.iter().chain(&req.contexts) {
        if let Some(name) = &c.config
            && !configs.contains_key(name)
        {
            let row = store
                .named(Some(EntryKind::Config), &group, name)
                .await
                .map_err(|e| Error::internal("reading a config failed", e))?;
            let data = row.and_then(|r| serde_json::from_str(&r.data).ok());
            configs.insert(name.clone(), data);
        }
    }
    let contexts = agent
        .contexts
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("agent.contexts[{i}]"), c))
        .chain(
            req.contexts
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("contexts[{i}]"), c)),
        );
    let files = match resolve_contexts(agent.workdir(), contexts, &|n| {
        configs.get(n).cloned().flatten()
    }) {
        Ok(f) => f,
        Err(e) => {
            errs.extend(e);
            Vec::new()
        }
    };
    // Every credential names a secret entry that exists (its value is read at start).
    for (i, c) in agent.credentials.iter().enumerate() {
        let row = store
            .named(Some(EntryKind::Secret), &group, &c.secret)
            .await
            .map_err(|e| Error::internal("reading a secret failed", e))?;
        let has_key = row
            .and_then(|r| serde_json::from_str::<BTreeMap<String, String>>(&r.data).ok())
            .is_some_and(|d| d.contains_key(&c.key));
        if !has_key {
            errs.push(tessera_core::error::FieldError::at(
                format!("agent.credentials[{i}]"),
                format!(
                    "there is no secret {:?} with key {:?} in group {group}",
                    c.secret, c.key
                ),
            ));
        }
    }
    if !errs.is_empty() {
        return Err(Error(ApiError::invalid_document("task", errs)));
    }
    let (mut task, extra) = agent_task(&agent, &req, files)
        .map_err(|e| Error(ApiError::invalid_document("task", e)))?;
    task.tags
        .get_or_insert_with(Default::default)
        .extend(server_tags);
    submit(
        state,
        caller,
        Submission {
            id,
            group,
            task,
            origin,
            priority: req.priority,
            extra,
            run: None,
        },
    )
    .await
}

/// `GET /v1/tasks` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct TaskFilter {
    /// Repeatable; default `task` and `cron`.
    #[param(inline)]
    origin: Option<Vec<Origin>>,
    #[param(inline)]
    state: Option<tessera_core::State>,
    /// `key=value` (repeatable).
    label: Option<Vec<String>>,
    /// 1 to 1000, default 100.
    page_size: Option<u32>,
    page_token: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/tasks",
    tag = "tasks",
    params(crate::openapi::ListedGroups, TaskFilter),
    responses((status = 200, body = TaskList))
)]
/// `GET /v1/tasks`: the Task API's tasks (contextual tasks and cron children by
/// default; `origin=` any of tes, task, run, cron, workflow), newest first.
pub async fn list_tasks(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TaskList>, Error> {
    let mut q = tessera_store::ListQuery {
        limit: 100,
        minimal: false,
        max_bytes: crate::tes::PAGE_BYTES,
        groups: crate::query::listed_groups(&caller, raw.as_deref())?,
        ..Default::default()
    };
    let mut origins: Vec<Origin> = Vec::new();
    let pairs = crate::query::pairs(raw.as_deref())?;
    for (k, v) in pairs {
        match k.as_str() {
            "origin" if !v.is_empty() => origins.push(
                v.parse()
                    .map_err(|e: String| Error::new(ErrorCode::InvalidParameter, e))?,
            ),
            "state" if !v.is_empty() => {
                q.state = Some(v.parse().map_err(|e: tessera_core::state::UnknownState| {
                    Error::new(ErrorCode::InvalidParameter, e.to_string())
                })?);
            }
            "label" if !v.is_empty() => {
                let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
                q.tags.push((k.to_string(), val.to_string()));
            }
            "page_size" => {
                q.limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| {
                        Error::new(ErrorCode::InvalidParameter, "page_size must be 1 to 1000")
                    })?;
            }
            "page_token" if !v.is_empty() => {
                q.before_seq = Some(tessera_core::page::decode(&v).ok_or_else(|| {
                    Error::new(
                        ErrorCode::InvalidPageToken,
                        "page_token is not one this server issued; start again without it",
                    )
                })?);
            }
            _ => {}
        }
    }
    if origins.is_empty() {
        origins = vec![Origin::Task, Origin::Cron];
    }
    q.origins = Some(origins);
    let tasks = state
        .runner()
        .store()
        .list_tasks(&q)
        .await
        .map_err(|e| Error::internal("listing tasks failed", e))?;
    let next = (tasks.len() == q.limit as usize)
        .then(|| tasks.last().map(|t| tessera_core::page::encode(t.seq)))
        .flatten();
    Ok(Json(TaskList {
        tasks: tasks.iter().map(task_view).collect(),
        next_page_token: next,
    }))
}

/// `POST /v1/tasks/{id}/exec` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecBody {
    command: Vec<String>,
}

/// The most output of each stream `exec` returns.
const MAX_EXEC_OUTPUT: usize = 1 << 20;

/// What a command run in a kept task printed, and its exit code.
#[derive(Serialize, ToSchema)]
pub struct ExecOutput {
    stdout: String,
    stderr: String,
    exit_code: i64,
}

#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/exec",
    tag = "tasks",
    params(("id" = String, Path)),
    request_body = ExecBody,
    responses((status = 200, body = ExecOutput))
)]
/// `POST /v1/tasks/{id}/exec`: run a command in the container a task is kept in (human
/// in the loop); its stdout and stderr (text, lossy) and exit code.
pub async fn exec(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    RequestBody(body): RequestBody,
) -> Result<Json<ExecOutput>, Error> {
    let task = state
        .runner()
        .store()
        .get_task(&id)
        .await
        .map_err(|e| Error::internal("reading the task failed", e))?
        .ok_or_else(|| Error(ApiError::not_found("task", &id)))?;
    caller.check_role(Role::Write, &task.group, "task", &id)?;
    let body: ExecBody = crate::body::json(&body, "exec")?;
    if body.command.is_empty() {
        return Err(Error(ApiError::invalid_document(
            "exec",
            vec![tessera_core::error::FieldError::at(
                "command",
                "must have at least one element",
            )],
        )));
    }
    let out = state
        .runner()
        .exec_in_kept(&task, &body.command, MAX_EXEC_OUTPUT)
        .await
        .map_err(|m| Error::new(ErrorCode::Conflict, m))?;
    tracing::info!(task_id = %id, by = %caller.username, "ran a command in a kept task");
    Ok(Json(ExecOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        exit_code: out.exit_code,
    }))
}
