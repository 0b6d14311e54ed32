//! `tessera operator`: Kubernetes resources of group `tessera.dev` reconciled into a
//! Tessera server's Task API, and what the server says written back into their status.
//! A `Task` becomes a contextual task (`POST /v1/tasks`), an `Agent` an agent, a
//! `CronTask` a cron task; deleting a resource cancels its task or removes what it made
//! (a finalizer makes sure). The operator is a client of the REST API with a token like
//! any other, so the tasks it makes belong to the token's group and every API shows them.
//!
//! The decisions are plain functions ([`task_request`], [`task_status`], [`ttl_left`]);
//! the controllers only read, call and write.

pub mod crd;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::crd::{Agent, Condition, CronTask, Task, TaskSpec, TaskStatus, TesseraConfig};

/// The finalizer on every resource the operator reconciles.
pub const FINALIZER: &str = "tessera.dev/operator";
/// The label on a server task naming the resource it was made for (its uid): a retried
/// create finds the task instead of making a second. (Keys under `tessera.` are the
/// server's own.)
pub const RESOURCE_LABEL: &str = "kubernetes-uid";
/// How often an unfinished task's status is read.
const POLL: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("the Tessera server: {0}")]
    Server(String),
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// The server's REST API, as the operator uses it.
pub struct TesseraApi {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl TesseraApi {
    pub fn new(url: &str, token: &str) -> TesseraApi {
        TesseraApi {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), OpError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| OpError::Server(tessera_core::error::chain(&e)))?;
        let status = resp.status().as_u16();
        let value = resp.json::<Value>().await.unwrap_or(Value::Null);
        if status >= 500 {
            return Err(OpError::Server(format!("{path}: {status} {value}")));
        }
        Ok((status, value))
    }
}

/// The server's words for a refusal.
fn error_message(v: &Value) -> String {
    v["message"]
        .as_str()
        .or_else(|| v["error"]["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

/// The Task API request for a `Task` resource.
pub fn task_request(name: &str, uid: &str, spec: &TaskSpec) -> Value {
    let mut body = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    body["name"] = json!(name);
    let labels = body
        .as_object_mut()
        .map(|o| o.entry("labels").or_insert_with(|| json!({})));
    if let Some(Value::Object(l)) = labels {
        l.insert(RESOURCE_LABEL.into(), json!(uid));
    }
    body
}

/// A `Task`'s status from the server's view of its task (`GET /v1/tasks/{id}`: the
/// state and reason, with the TES view under `task`).
pub fn task_status(id: &str, task: &Value, previous: &TaskStatus) -> TaskStatus {
    let state: Option<tessera_core::State> = task["state"].as_str().and_then(|s| s.parse().ok());
    let last = task["task"]["logs"].as_array().and_then(|l| l.last());
    let terminal = state.is_some_and(|s| s.is_terminal());
    let phase = state.map(|s| s.phase().to_string());
    let mut conditions = Vec::new();
    if terminal {
        let complete = state == Some(tessera_core::State::Complete);
        let since = last
            .and_then(|l| l["end_time"].as_str())
            .map(str::to_string);
        // A condition keeps the time it first became true.
        let at = previous
            .conditions
            .iter()
            .find(|c| c.type_ == if complete { "Complete" } else { "Failed" })
            .and_then(|c| c.last_transition_time.clone())
            .or(since);
        conditions.push(Condition {
            type_: if complete { "Complete" } else { "Failed" }.into(),
            status: "True".into(),
            reason: state.map(|s| s.as_str().to_string()),
            message: task["reason"].as_str().map(str::to_string),
            last_transition_time: at,
        });
    }
    TaskStatus {
        phase,
        task_id: Some(id.to_string()),
        job_name: last
            .and_then(|l| l["metadata"]["kubernetes_job"].as_str())
            .map(str::to_string),
        start_time: last
            .and_then(|l| l["start_time"].as_str())
            .map(str::to_string),
        completion_time: if terminal {
            last.and_then(|l| l["end_time"].as_str())
                .map(str::to_string)
        } else {
            None
        },
        message: task["reason"].as_str().map(str::to_string),
        conditions,
    }
}

/// How long a finished `Task` has left before it is deleted (`None`: kept; zero: now).
pub fn ttl_left(status: &TaskStatus, ttl_secs: Option<u64>, now_unix: i64) -> Option<Duration> {
    let ttl = ttl_secs?;
    let done = status.completion_time.as_deref()?;
    let ended = time::OffsetDateTime::parse(done, &time::format_description::well_known::Rfc3339)
        .ok()?
        .unix_timestamp();
    let left = ended.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)) - now_unix;
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

struct Ctx {
    client: Client,
    api: TesseraApi,
}

async fn patch_status<K>(
    api: &Api<K>,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<(), OpError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await?;
    Ok(())
}

/// The namespace's TesseraConfig TTL, if any.
async fn ttl_of(client: &Client, ns: &str) -> Option<u64> {
    let configs: Api<TesseraConfig> = Api::namespaced(client.clone(), ns);
    configs
        .list(&ListParams::default())
        .await
        .ok()?
        .items
        .iter()
        .find_map(|c| c.spec.ttl_seconds_after_finished)
}

async fn apply_task(task: Arc<Task>, ctx: &Ctx) -> Result<Action, OpError> {
    let ns = task.namespace().unwrap_or_default();
    let name = task.name_any();
    let tasks: Api<Task> = Api::namespaced(ctx.client.clone(), &ns);
    let previous = task.status.clone().unwrap_or_default();
    let id = match &previous.task_id {
        Some(id) => id.clone(),
        None => {
            let uid = task.uid().unwrap_or_default();
            // Made already (the status write after it was lost)?
            let (_, found) = ctx
                .api
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/tasks?label={RESOURCE_LABEL}={uid}"),
                    None,
                )
                .await?;
            let existing = found["tasks"]
                .as_array()
                .and_then(|t| t.first())
                .and_then(|t| t["id"].as_str())
                .map(str::to_string);
            match existing {
                Some(id) => id,
                None => {
                    let body = task_request(&name, &uid, &task.spec);
                    let (code, made) = ctx
                        .api
                        .call(reqwest::Method::POST, "/v1/tasks", Some(&body))
                        .await?;
                    if code >= 400 {
                        let message = error_message(&made);
                        let status = TaskStatus {
                            phase: Some("Failed".into()),
                            message: Some(message.clone()),
                            conditions: vec![Condition {
                                type_: "Failed".into(),
                                status: "True".into(),
                                reason: Some("Refused".into()),
                                message: Some(message),
                                last_transition_time: Some(now_rfc3339()),
                            }],
                            ..TaskStatus::default()
                        };
                        patch_status(&tasks, &name, &status).await?;
                        return Ok(Action::await_change());
                    }
                    made["id"].as_str().unwrap_or_default().to_string()
                }
            }
        }
    };
    let (code, view) = ctx
        .api
        .call(reqwest::Method::GET, &format!("/v1/tasks/{id}"), None)
        .await?;
    let status = if code == 404 {
        TaskStatus {
            phase: Some("Failed".into()),
            task_id: Some(id.clone()),
            message: Some("the task is gone from the server".into()),
            ..previous.clone()
        }
    } else {
        task_status(&id, &view, &previous)
    };
    if status != previous {
        patch_status(&tasks, &name, &status).await?;
    }
    if !status.conditions.is_empty() || code == 404 {
        let ttl = ttl_of(&ctx.client, &ns).await;
        return match ttl_left(
            &status,
            ttl,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        ) {
            Some(left) if left.is_zero() => {
                tasks.delete(&name, &DeleteParams::default()).await?;
                Ok(Action::await_change())
            }
            Some(left) => Ok(Action::requeue(left)),
            None => Ok(Action::await_change()),
        };
    }
    Ok(Action::requeue(POLL))
}

async fn cleanup_task(task: Arc<Task>, ctx: &Ctx) -> Result<Action, OpError> {
    let status = task.status.clone().unwrap_or_default();
    if let Some(id) = status.task_id
        && status.conditions.is_empty()
    {
        // `kubectl delete task` stops the work.
        ctx.api
            .call(
                reqwest::Method::POST,
                &format!("/v1/tasks/{id}/cancel"),
                None,
            )
            .await?;
        tracing::info!(task_id = %id, resource = %task.name_any(), "task canceled (its resource was deleted)");
    }
    Ok(Action::await_change())
}

/// Sync a resource that maps to one named server object: `PUT collection/name` (`POST
/// collection` when the server has none yet), `DELETE collection/name` when it goes.
async fn sync_named<K>(
    obj: Arc<K>,
    ctx: &Ctx,
    collection: &str,
    body: Value,
    event_delete: bool,
) -> Result<Action, OpError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    let path = format!("{collection}/{}", obj.name_any());
    if event_delete {
        ctx.api.call(reqwest::Method::DELETE, &path, None).await?;
        return Ok(Action::await_change());
    }
    let (mut code, mut answer) = ctx
        .api
        .call(reqwest::Method::PUT, &path, Some(&body))
        .await?;
    if code == 404 {
        (code, answer) = ctx
            .api
            .call(reqwest::Method::POST, collection, Some(&body))
            .await?;
    }
    let status = crd::SyncStatus {
        synced: code < 400,
        message: (code >= 400).then(|| error_message(&answer)),
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    patch_status(&api, &obj.name_any(), &status).await?;
    Ok(Action::await_change())
}

fn agent_body(agent: &Agent) -> Value {
    let mut body = serde_json::to_value(&agent.spec).unwrap_or_else(|_| json!({}));
    body["name"] = json!(agent.name_any());
    body
}

fn cron_body(cron: &CronTask) -> Value {
    let mut body = serde_json::to_value(&cron.spec).unwrap_or_else(|_| json!({}));
    body["name"] = json!(cron.name_any());
    body
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn error_policy<K>(_: Arc<K>, e: &OpError, _: Arc<Ctx>) -> Action {
    tracing::warn!(error = %e, "reconciling failed; will retry");
    Action::requeue(Duration::from_secs(5))
}

fn fin(e: kube::runtime::finalizer::Error<OpError>) -> OpError {
    OpError::Finalizer(e.to_string())
}

/// The controller of a kind the server keeps by name (agents, cron tasks): each resource
/// PUT (or POSTed) to `collection` as `body` says, and deleted with it.
async fn named_controller<K>(
    api: Api<K>,
    ctx: Arc<Ctx>,
    collection: &'static str,
    body: fn(&K) -> Value,
) where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    Controller::new(api.clone(), watcher::Config::default())
        .shutdown_on_signal()
        .run(
            move |obj: Arc<K>, ctx: Arc<Ctx>| {
                let api = api.clone();
                async move {
                    finalizer(&api, FINALIZER, obj, |event| async {
                        let (obj, delete) = match event {
                            Event::Apply(obj) => (obj, false),
                            Event::Cleanup(obj) => (obj, true),
                        };
                        let body = body(&obj);
                        sync_named(obj, &ctx, collection, body, delete).await
                    })
                    .await
                    .map_err(fin)
                }
            },
            error_policy,
            ctx,
        )
        .for_each(|_| async {})
        .await
}

/// Run the controllers of `namespace` until SIGTERM or Ctrl-C (then what is running
/// finishes first).
pub async fn run(client: Client, namespace: &str, api: TesseraApi) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        api,
    });
    let tasks: Api<Task> = Api::namespaced(client.clone(), namespace);
    let agents: Api<Agent> = Api::namespaced(client.clone(), namespace);
    let crons: Api<CronTask> = Api::namespaced(client.clone(), namespace);
    let task_controller = Controller::new(tasks.clone(), watcher::Config::default())
        // SIGTERM (a pod being replaced) or Ctrl-C: finish what runs, then stop.
        .shutdown_on_signal()
        .run(
            move |t: Arc<Task>, ctx: Arc<Ctx>| {
                let tasks = tasks.clone();
                async move {
                    finalizer(&tasks, FINALIZER, t, |event| async {
                        match event {
                            Event::Apply(t) => apply_task(t, &ctx).await,
                            Event::Cleanup(t) => cleanup_task(t, &ctx).await,
                        }
                    })
                    .await
                    .map_err(fin)
                }
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let agent_controller = named_controller(agents, ctx.clone(), "/v1/agents", agent_body);
    let cron_controller = named_controller(crons, ctx, "/v1/cron-tasks", cron_body);
    tracing::info!(namespace, "operator started");
    tokio::join!(task_controller, agent_controller, cron_controller);
    tracing::info!(namespace, "operator stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_resource_becomes_a_labelled_task_request() {
        let spec: TaskSpec = serde_json::from_value(json!({
            "agentRef": "coder", "labels": {"team": "a"},
            "contexts": [{"text": "hi", "filePath": "a.md"}]
        }))
        .unwrap();
        let body = task_request("hello", "uid-1", &spec);
        assert_eq!(body["name"], "hello");
        assert_eq!(body["agentRef"], "coder");
        assert_eq!(body["labels"]["team"], "a");
        assert_eq!(body["labels"][RESOURCE_LABEL], "uid-1");
        assert_eq!(body["contexts"][0]["filePath"], "a.md");
    }

    #[test]
    fn the_status_follows_the_server_and_a_finished_task_has_its_condition() {
        let running = json!({"state": "RUNNING", "reason": "runs", "task": {
            "logs": [{"start_time": "2026-12-07T10:00:00Z",
                      "metadata": {"kubernetes_job": "tessera-x-0"}}]}});
        let s = task_status("x", &running, &TaskStatus::default());
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.job_name.as_deref(), Some("tessera-x-0"));
        assert!(s.completion_time.is_none() && s.conditions.is_empty());
        let done = json!({"state": "EXECUTOR_ERROR", "reason": "executor 0 exited with code 2",
            "task": {"logs": [{"start_time": "2026-12-07T10:00:00Z",
                               "end_time": "2026-12-07T10:00:05Z"}]}});
        let s = task_status("x", &done, &s);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.completion_time.as_deref(), Some("2026-12-07T10:00:05Z"));
        assert_eq!(s.conditions[0].type_, "Failed");
        assert_eq!(s.conditions[0].reason.as_deref(), Some("EXECUTOR_ERROR"));
        let ended = time::macros::datetime!(2026-12-07 10:00:05 UTC).unix_timestamp();
        assert_eq!(ttl_left(&s, None, ended), None);
        assert_eq!(
            ttl_left(&s, Some(60), ended + 20),
            Some(Duration::from_secs(40))
        );
        assert_eq!(ttl_left(&s, Some(60), ended + 90), Some(Duration::ZERO));
    }
}
