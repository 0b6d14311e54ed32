//! The component: `tessera:plugin/engine@0.2.0` over Airflow's REST API v2, with
//! [`crate::logic`]. Each call fetches a token (`POST /auth/token`) and then makes its
//! requests; it keeps nothing between calls.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use serde_json::{Value, json};
use tessera_plugin_sdk::http::{Method, Request};
use tessera_plugin_sdk::v0_2::engine_adapter::{
    EngineAdapter, LogChunk, Pair, PluginError, RunStatus, State, TaskNode, TaskRun,
};
use tessera_plugin_sdk::{config, debug, info};

use crate::logic;

tessera_plugin_sdk::no_std_runtime!();

struct Airflow;

tessera_plugin_sdk::export_engine_adapter!(Airflow, v0_2);

/// Longest answer read from Airflow (task lists and logs of big DAGs).
const MAX_BODY: usize = 16 << 20;
/// Task instances asked for per page.
const PAGE: u32 = 100;

/// A session with the Airflow API server of the binding's `url`.
struct Api {
    base: String,
    token: String,
    timeout: Duration,
}

/// An answer: its status and its body as JSON (`null` when it has none).
struct Answer {
    status: u16,
    body: Value,
    raw: Vec<u8>,
}

impl Api {
    fn open() -> Result<Api, PluginError> {
        let base = config::require("url")?.trim_end_matches('/').to_string();
        let timeout = Duration::from_millis(config::parse_or("request-timeout-ms", 10_000u64)?);
        let credentials = json!({
            "username": config::secret("username").unwrap_or_default(),
            "password": config::secret("password").unwrap_or_default(),
        });
        let response = Request::new(Method::Post, format!("{base}/auth/token"))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(credentials.to_string())
            .timeout(timeout)
            .send()?;
        if !response.is_success() {
            return Err(status_error(
                "signing in to Airflow",
                response.status,
                &response.body,
            ));
        }
        let token = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| v.get("access_token")?.as_str().map(str::to_string))
            .ok_or_else(|| PluginError::other("Airflow's token answer has no access_token"))?;
        Ok(Api {
            base,
            token,
            timeout,
        })
    }

    fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, PluginError> {
        let mut request = Request::new(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", "application/json")
            .timeout(self.timeout)
            .max_body(MAX_BODY);
        if let Some(b) = body {
            request = request
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let response = request.send()?;
        if response.truncated {
            return Err(PluginError::other(format!(
                "Airflow's answer to {path} is over {MAX_BODY} bytes"
            )));
        }
        Ok(Answer {
            status: response.status,
            body: serde_json::from_slice(&response.body).unwrap_or(Value::Null),
            raw: response.body,
        })
    }

    /// `send`, and anything but a 2xx is an error saying what was being done.
    fn call(
        &self,
        doing: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, PluginError> {
        let a = self.send(method, path, body)?;
        if (200..300).contains(&a.status) {
            Ok(a.body)
        } else {
            Err(status_error(doing, a.status, &a.raw))
        }
    }
}

/// An error answer as a plugin error of the matching kind.
fn status_error(doing: &str, status: u16, body: &[u8]) -> PluginError {
    let m = format!(
        "{doing}: Airflow answered {status}: {}",
        logic::detail(body)
    );
    match status {
        404 => PluginError::not_found(m),
        401 | 403 => PluginError::denied(m),
        400 | 409 | 422 => PluginError::invalid_input(m),
        408 | 429 | 500..=599 => PluginError::unavailable(m),
        _ => PluginError::other(m),
    }
}

fn definition(text: &str) -> Result<logic::Definition, PluginError> {
    logic::parse_definition(text).map_err(PluginError::invalid_input)
}

fn external(id: &str) -> Result<(&str, &str), PluginError> {
    logic::split_external(id).map_err(PluginError::invalid_input)
}

fn task_name(id: &str) -> Result<&str, PluginError> {
    logic::check_name("task_id", id).map_err(PluginError::invalid_input)?;
    Ok(id)
}

fn state(s: logic::State) -> State {
    match s {
        logic::State::Queued => State::Queued,
        logic::State::Running => State::Running,
        logic::State::Succeeded => State::Succeeded,
        logic::State::Failed => State::Failed,
        logic::State::Canceled => State::Canceled,
        logic::State::Skipped => State::Skipped,
        logic::State::UpstreamFailed => State::UpstreamFailed,
        logic::State::Unknown => State::Unknown,
    }
}

/// The DAG, or `not-found` that says where DAGs come from.
fn dag(api: &Api, dag_id: &str) -> Result<Value, PluginError> {
    api.call(
        "reading the DAG",
        Method::Get,
        &format!("/api/v2/dags/{dag_id}"),
        None,
    )
    .map_err(|e| match e {
        PluginError::NotFound(_) => PluginError::not_found(format!(
            "Airflow has no DAG {dag_id:?} (is its file in the DAGs folder, and parsed?)"
        )),
        e => e,
    })
}

impl EngineAdapter for Airflow {
    fn validate(definition_text: String) -> Result<Vec<TaskNode>, PluginError> {
        let def = definition(&definition_text)?;
        let api = Api::open()?;
        dag(&api, &def.dag_id)?;
        let tasks = api.call(
            "listing the DAG's tasks",
            Method::Get,
            &format!("/api/v2/dags/{}/tasks", def.dag_id),
            None,
        )?;
        let graph = logic::graph(&tasks).map_err(PluginError::other)?;
        debug!("DAG {} has {} tasks", def.dag_id, graph.len());
        Ok(graph
            .into_iter()
            .map(|(id, upstream)| TaskNode { id, upstream })
            .collect())
    }

    fn submit(
        definition_text: String,
        parameters: Vec<Pair>,
        labels: Vec<Pair>,
    ) -> Result<String, PluginError> {
        let def = definition(&definition_text)?;
        let api = Api::open()?;
        let found = dag(&api, &def.dag_id)?;
        // A DAG file arrives paused; a run triggered from Tessera is meant to run.
        if found.get("is_paused") == Some(&Value::Bool(true))
            && config::parse_or("unpause-dags", true)?
        {
            api.call(
                "unpausing the DAG",
                Method::Patch,
                &format!("/api/v2/dags/{}", def.dag_id),
                Some(&json!({"is_paused": false})),
            )?;
            info!("unpaused DAG {}", def.dag_id);
        }
        let run_id = logic::run_id_of(&labels);
        let mut body = json!({
            "logical_date": null,
            "conf": Value::Object(logic::conf(&def, &parameters)),
        });
        if let Some(id) = &run_id {
            body["dag_run_id"] = Value::String(id.clone());
        }
        let path = format!("/api/v2/dags/{}/dagRuns", def.dag_id);
        let a = api.send(Method::Post, &path, Some(&body))?;
        let made = match (a.status, &run_id) {
            (200..=299, _) => a
                .body
                .get("dag_run_id")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| PluginError::other("Airflow's new run has no dag_run_id"))?,
            // Made before (a submit repeated after a crash): the same run.
            (409, Some(id)) => {
                api.call(
                    "reading the run",
                    Method::Get,
                    &format!("{path}/{id}"),
                    None,
                )?;
                id.clone()
            }
            (status, _) => return Err(status_error("triggering the DAG", status, &a.raw)),
        };
        info!("triggered DAG {} as run {made}", def.dag_id);
        Ok(logic::external_id(&def.dag_id, &made))
    }

    fn status(external_id: String) -> Result<RunStatus, PluginError> {
        let (dag_id, run_id) = external(&external_id)?;
        let api = Api::open()?;
        let run_path = format!("/api/v2/dags/{dag_id}/dagRuns/{run_id}");
        let run = api.call("reading the run", Method::Get, &run_path, None)?;
        let mut tasks = Vec::new();
        let mut offset = 0u64;
        loop {
            let page = api.call(
                "listing the run's task instances",
                Method::Get,
                &format!("{run_path}/taskInstances?limit={PAGE}&offset={offset}"),
                None,
            )?;
            let list = page
                .get("task_instances")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = page
                .get("total_entries")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            offset += list.len() as u64;
            for ti in &list {
                let Some(task_id) = ti.get("task_id").and_then(Value::as_str) else {
                    continue;
                };
                // A mapped task's instances (map_index >= 0) are one task to Tessera:
                // its first instance speaks for it.
                if ti.get("map_index").and_then(Value::as_i64).unwrap_or(-1) > 0 {
                    continue;
                }
                let st = ti.get("state").and_then(Value::as_str);
                let try_number = ti.get("try_number").and_then(Value::as_u64).unwrap_or(0);
                let time = |k: &str| ti.get(k).and_then(Value::as_str).and_then(logic::time_ms);
                let runs = !matches!(logic::task_state(st), logic::State::Queued);
                tasks.push(TaskRun {
                    task_id: task_id.to_string(),
                    try_number: logic::try_of(st, try_number),
                    state: state(logic::task_state(st)),
                    // A waiting instance still shows the times of the try before.
                    start_ms: if runs { time("start_date") } else { None },
                    end_ms: if runs { time("end_date") } else { None },
                    message: None,
                });
            }
            if list.is_empty() || offset >= total {
                break;
            }
        }
        Ok(RunStatus {
            state: state(logic::run_state(run.get("state").and_then(Value::as_str))),
            tasks,
            message: run
                .get("note")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        })
    }

    fn cancel(external_id: String) -> Result<(), PluginError> {
        let (dag_id, run_id) = external(&external_id)?;
        let api = Api::open()?;
        let path = format!("/api/v2/dags/{dag_id}/dagRuns/{run_id}");
        let run = api.call("reading the run", Method::Get, &path, None)?;
        if matches!(
            run.get("state").and_then(Value::as_str),
            Some("success" | "failed")
        ) {
            return Ok(());
        }
        // Airflow stops a run by marking it failed: what runs is stopped, what waits
        // does not start.
        api.call(
            "marking the run failed",
            Method::Patch,
            &path,
            Some(&json!({"state": "failed"})),
        )?;
        info!("marked run {run_id} of DAG {dag_id} failed");
        Ok(())
    }

    fn retry(
        external_id: String,
        task_ids: Vec<String>,
        downstream: bool,
    ) -> Result<(), PluginError> {
        let (dag_id, run_id) = external(&external_id)?;
        for t in &task_ids {
            task_name(t)?;
        }
        let api = Api::open()?;
        let mut body = json!({
            "dry_run": false,
            "dag_run_id": run_id,
            "only_failed": task_ids.is_empty(),
            "include_downstream": downstream,
            "reset_dag_runs": true,
        });
        if !task_ids.is_empty() {
            body["task_ids"] = json!(task_ids);
        }
        let cleared = api.call(
            "clearing task instances",
            Method::Post,
            &format!("/api/v2/dags/{dag_id}/clearTaskInstances"),
            Some(&body),
        )?;
        let n = cleared
            .get("task_instances")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if n == 0 {
            return Err(PluginError::invalid_input(format!(
                "nothing to retry in run {run_id} of DAG {dag_id}"
            )));
        }
        info!("cleared {n} task instances of run {run_id} of DAG {dag_id}");
        Ok(())
    }

    fn logs(
        external_id: String,
        task_id: String,
        try_number: u32,
        offset: u64,
        max_bytes: u32,
    ) -> Result<LogChunk, PluginError> {
        let (dag_id, run_id) = external(&external_id)?;
        let task = task_name(&task_id)?;
        let api = Api::open()?;
        let a = api.send(
            Method::Get,
            &format!(
                "/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task}/logs/{try_number}?full_content=true"
            ),
            None,
        )?;
        let text = match a.status {
            200..=299 => logic::render_log(a.body.get("content").unwrap_or(&Value::Null)),
            // No such try (yet): nothing to show.
            404 => String::new(),
            status => return Err(status_error("reading the log", status, &a.raw)),
        };
        let (text, next_offset) = logic::slice(&text, offset, max_bytes);
        Ok(LogChunk { text, next_offset })
    }
}
