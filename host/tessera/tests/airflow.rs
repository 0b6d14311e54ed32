//! The Airflow engine adapter (builtin-plugins/engine-airflow) against a real Airflow 3
//! (`airflow standalone` from PyPI, SQLite, on loopback; scripts/test-env.sh installs it
//! and sets TESSERA_TEST_AIRFLOW), driven through the Workflow API: the DAG's graph at
//! validation, a run from submit to Completed with its parameters reaching the DAG, a
//! failing run to Error with the failing task's log, a retry of the failed task (and
//! what depends on it) to Completed keeping the failed try, and a cancel that stops the
//! run at Airflow.
//!
//! Starting Airflow takes about 30 seconds and the runs about a minute; the test skips
//! without TESSERA_TEST_AIRFLOW (it fails instead under TESSERA_REQUIRE_ALL=1, unless
//! TESSERA_SKIP_AIRFLOW=1 says to leave Airflow out).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A running `airflow standalone` of the test's own, killed (with its scheduler, DAG
/// processor, triggerer and API server) when dropped.
struct Airflow {
    child: Child,
    port: u16,
    home: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Airflow {
    fn drop(&mut self) {
        // Its own process group: the standalone's children go with it.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Airflow {
    /// Starts Airflow with tests/airflow/tessera_test.py as its only DAG file, and waits
    /// until its API answers and has parsed the test DAGs. `None` (skipped) without
    /// TESSERA_TEST_AIRFLOW.
    async fn start() -> Option<Airflow> {
        let Ok(airflow) = std::env::var("TESSERA_TEST_AIRFLOW") else {
            assert!(
                std::env::var("TESSERA_REQUIRE_ALL").is_err()
                    || std::env::var("TESSERA_SKIP_AIRFLOW").as_deref() == Ok("1"),
                "TESSERA_TEST_AIRFLOW is not set; scripts/test-env.sh installs Airflow"
            );
            eprintln!("SKIPPED: TESSERA_TEST_AIRFLOW not set (run scripts/test.sh)");
            return None;
        };
        let home = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(home.path().join("standalone.log")).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("scripts/airflow-standalone.sh"))
            .arg(&airflow)
            .arg(home.path())
            .arg(port.to_string())
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/airflow/tessera_test.py"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("airflow standalone");
        let af = Airflow {
            child,
            port,
            home,
            http: reqwest::Client::new(),
        };
        let started = Instant::now();
        for dag in ["tessera_chain", "tessera_flaky", "tessera_slow"] {
            loop {
                if af.get(&format!("/api/v2/dags/{dag}")).await.0 == 200 {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(300),
                    "Airflow did not serve DAG {dag}:\n{}",
                    af.log()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        eprintln!("Airflow ready in {:.1?}", started.elapsed());
        Some(af)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        let text =
            std::fs::read_to_string(self.home.path().join("standalone.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// A GET of Airflow's API with a fresh token (connection errors as status 0).
    async fn get(&self, path: &str) -> (u16, Value) {
        let token = match self
            .http
            .post(format!("{}/auth/token", self.url()))
            .json(&json!({"username": "", "password": ""}))
            .send()
            .await
        {
            Ok(r) => r.json::<Value>().await.unwrap_or_default()["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Err(_) => return (0, Value::Null),
        };
        match self
            .http
            .get(format!("{}{path}", self.url()))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }
}

/// The run's task runs as (task, attempt, state), sorted.
async fn task_runs(c: &Client<'_>, run: &str) -> Vec<(String, u64, String)> {
    let (status, v) = c.get(&format!("/v1/workflow-runs/{run}/task-runs")).await;
    assert_eq!(status, 200, "{v}");
    let mut out: Vec<(String, u64, String)> = v["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_title"].as_str().unwrap().to_string(),
                t["attempt"].as_u64().unwrap(),
                t["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn tr(task: &str, attempt: u64, state: &str) -> (String, u64, String) {
    (task.to_string(), attempt, state.to_string())
}

/// The id of the task run of `task`, attempt `attempt`.
async fn task_run_id(c: &Client<'_>, run: &str, task: &str, attempt: u64) -> String {
    let (_, v) = c
        .get(&format!(
            "/v1/workflow-runs/{run}/task-runs?task_title={task}"
        ))
        .await;
    v["task_runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["attempt"] == attempt)
        .and_then(|t| t["id"].as_str())
        .unwrap_or_else(|| panic!("no attempt {attempt} of {task}: {v}"))
        .to_string()
}

async fn run_of(c: &Client<'_>, workflow: &str, params: Value) -> String {
    let (status, v) = c
        .post(
            "/v1/workflow-runs",
            &json!({"workflow": workflow, "params": params}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// The run once it has ended (the caller checks how).
async fn wait_end(c: &Client<'_>, run: &str) -> Value {
    c.wait_until(&format!("/v1/workflow-runs/{run}"), "an end", is_final)
        .await
}

fn is_final(v: &Value) -> bool {
    matches!(
        v["state"].as_str(),
        Some("Completed" | "Error" | "Canceled")
    )
}

#[tokio::test]
async fn workflows_run_on_airflow_through_the_adapter() {
    let Some(af) = Airflow::start().await else {
        return;
    };
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let c = admin(&s);

    // No adapter bound to the engine name yet: a workflow on it is refused.
    let chain = json!({
        "title": "chain",
        "engine": "airflow",
        "definition": {"dag_id": "tessera_chain"},
        "parameters": [{"name": "count", "type": "integer", "default": 1}],
    });
    let (status, v) = c.post("/v1/workflows", &chain).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("no engine adapter"), "{v}");

    // The built-in adapter, bound to `airflow`, reaching this Airflow only.
    let (status, v) = c
        .post(
            "/v1/plugins/engine-airflow/versions/0.1.0/activate",
            &json!({
                "scope": "airflow",
                "config": {"url": af.url()},
                "allow_hosts": [format!("127.0.0.1:{}", af.port)],
            }),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    // Validation: the DAG must exist, and its graph is kept with the revision.
    let (status, v) = c
        .post(
            "/v1/workflows",
            &json!({"title": "nope", "engine": "airflow", "definition": {"dag_id": "no_such_dag"}}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("no DAG \\\"no_such_dag\\\""), "{v}");
    let (status, v) = c.post("/v1/workflows", &chain).await;
    assert_eq!(status, 201, "{v}");
    let (_, tasks) = c.get("/v1/workflows/chain/1/tasks").await;
    let graph: Vec<(String, Value, Value)> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["title"].as_str().unwrap().to_string(),
                t["upstream"].clone(),
                t["downstream"].clone(),
            )
        })
        .collect();
    assert_eq!(
        graph,
        [
            ("extract".to_string(), json!([]), json!(["transform"])),
            ("transform".to_string(), json!(["extract"]), json!(["load"])),
            ("load".to_string(), json!(["transform"]), json!([])),
        ]
    );

    // A run from submit to Completed; its parameter reaches the DAG's conf.
    let run = run_of(&c, "chain", json!({"count": 3})).await;
    let done = wait_end(&c, &run).await;
    assert_eq!(done["state"], "Completed", "{done}\n{}", af.log());
    assert_eq!(
        task_runs(&c, &run).await,
        [
            tr("extract", 1, "Completed"),
            tr("load", 1, "Completed"),
            tr("transform", 1, "Completed"),
        ]
    );
    let (dag, airflow_run) = done["external_id"]
        .as_str()
        .and_then(|e| e.split_once('/'))
        .unwrap_or_else(|| panic!("no external id: {done}"));
    assert_eq!(dag, "tessera_chain");
    let (_, at_airflow) = af
        .get(&format!("/api/v2/dags/tessera_chain/dagRuns/{airflow_run}"))
        .await;
    assert_eq!(at_airflow["state"], "success", "{at_airflow}");
    assert_eq!(at_airflow["conf"]["count"], 3, "{at_airflow}");
    let extract = task_run_id(&c, &run, "extract", 1).await;
    let (status, logs) = c
        .get(&format!("/v1/workflow-runs/{run}/task-runs/{extract}/logs"))
        .await;
    assert_eq!(status, 200, "{logs}");
    assert!(
        logs["text"].as_str().unwrap().contains("extract 3"),
        "{logs}"
    );

    // A failing run ends Error; the failing task's log says why.
    let flaky =
        json!({"title": "flaky", "engine": "airflow", "definition": {"dag_id": "tessera_flaky"}});
    let (status, v) = c.post("/v1/workflows", &flaky).await;
    assert_eq!(status, 201, "{v}");
    let run = run_of(&c, "flaky", json!({})).await;
    let failed = wait_end(&c, &run).await;
    assert_eq!(failed["state"], "Error", "{failed}\n{}", af.log());
    assert_eq!(
        task_runs(&c, &run).await,
        [
            tr("after", 1, "UpstreamFailed"),
            tr("first", 1, "Completed"),
            tr("flaky", 1, "Error"),
        ]
    );
    let try1 = task_run_id(&c, &run, "flaky", 1).await;
    let (_, logs) = c
        .get(&format!(
            "/v1/workflow-runs/{run}/task-runs/{try1}/logs?page_size=1000000"
        ))
        .await;
    let text = logs["text"].as_str().unwrap();
    assert!(text.contains("failing on purpose"), "{logs}");
    // Followed, the log of an ended try is the same text, and the answer ends.
    let (status, followed) = c
        .bytes(&format!(
            "/v1/workflow-runs/{run}/task-runs/{try1}/logs?follow=true"
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&followed), text);

    // Retry the failed task and what depends on it: its second try passes; the first
    // stays in the history.
    let (status, v) = c
        .put(
            &format!("/v1/workflow-runs/{run}/retry"),
            &json!({"tasks": ["flaky"], "downstream": true}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let retried = wait_end(&c, &run).await;
    assert_eq!(retried["state"], "Completed", "{retried}\n{}", af.log());
    assert_eq!(
        task_runs(&c, &run).await,
        [
            tr("after", 1, "Completed"),
            tr("first", 1, "Completed"),
            tr("flaky", 1, "Error"),
            tr("flaky", 2, "Completed"),
        ]
    );
    let try2 = task_run_id(&c, &run, "flaky", 2).await;
    let (_, logs) = c
        .get(&format!("/v1/workflow-runs/{run}/task-runs/{try2}/logs"))
        .await;
    assert!(logs["text"].as_str().unwrap().contains("try 2"), "{logs}");

    // Cancel while a task runs: the run ends Canceled, and Airflow stopped it.
    let slow =
        json!({"title": "slow", "engine": "airflow", "definition": {"dag_id": "tessera_slow"}});
    let (status, v) = c.post("/v1/workflows", &slow).await;
    assert_eq!(status, 201, "{v}");
    let run = run_of(&c, "slow", json!({})).await;
    c.wait_until(
        &format!("/v1/workflow-runs/{run}/task-runs"),
        "a running task",
        |v| v["task_runs"][0]["state"] == "Running",
    )
    .await;
    let (status, v) = c
        .put(&format!("/v1/workflow-runs/{run}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    let canceled = wait_end(&c, &run).await;
    assert_eq!(canceled["state"], "Canceled", "{canceled}");
    let runs = task_runs(&c, &run).await;
    assert!(runs.iter().all(|(_, _, st)| st != "Running"), "{runs:?}");
    let airflow_run = canceled["external_id"]
        .as_str()
        .and_then(|e| e.split_once('/'))
        .map(|(_, r)| r.to_string())
        .unwrap();
    let (_, at_airflow) = af
        .get(&format!(
            "/api/v2/dags/tessera_slow/dagRuns/{airflow_run}/taskInstances"
        ))
        .await;
    let ti = &at_airflow["task_instances"][0];
    assert_ne!(ti["state"], "running", "{at_airflow}");
}
