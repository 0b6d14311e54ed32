//! A 3-task chain on Apache Airflow 3, triggered directly through Airflow's REST API and
//! through Tessera's Workflow API with the built-in adapter (`engine-airflow`): wall
//! time from the trigger to the end as the client sees it, and Airflow's own hop (a
//! task's start after the one before ended). Runs when TESSERA_TEST_AIRFLOW names an
//! `airflow` executable (scripts/test-env.sh installs one): the benchmark starts its own
//! `airflow standalone` with the test DAGs (host/tessera/tests/airflow/).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Lat;

/// Runs of each kind, interleaved.
const ROUNDS: usize = 3;
/// How long one run may take before the benchmark gives up.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// How often the client looks at a run.
const POLL: Duration = Duration::from_millis(100);

struct Airflow {
    child: Child,
    url: String,
    _home: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Airflow {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        std::thread::sleep(Duration::from_secs(2));
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl Airflow {
    async fn start(bin: &Path) -> Airflow {
        let home = tempfile::tempdir().expect("tmp");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let log = std::fs::File::create(home.path().join("standalone.log")).expect("log");
        let mut cmd = Command::new("bash");
        cmd.arg(root.join("scripts/airflow-standalone.sh"))
            .arg(bin)
            .arg(home.path())
            .arg(port.to_string())
            .arg(root.join("host/tessera/tests/airflow/tessera_test.py"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().expect("airflow standalone");
        let af = Airflow {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _home: home,
            http: reqwest::Client::new(),
        };
        let start = Instant::now();
        while af
            .call(reqwest::Method::GET, "/api/v2/dags/tessera_chain", None)
            .await
            .0
            != 200
        {
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "Airflow did not serve the test DAGs"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // DAG files arrive paused; the adapter unpauses on its first submit, the direct
        // runs need it first.
        let (status, v) = af
            .call(
                reqwest::Method::PATCH,
                "/api/v2/dags/tessera_chain",
                Some(&json!({"is_paused": false})),
            )
            .await;
        assert_eq!(status, 200, "unpausing: {v}");
        af
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let Ok(r) = self
            .http
            .post(format!("{}/auth/token", self.url))
            .json(&json!({"username": "", "password": ""}))
            .send()
            .await
        else {
            return (0, Value::Null);
        };
        let token: Value = r.json().await.unwrap_or_default();
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token["access_token"].as_str().unwrap_or_default());
        if let Some(b) = body {
            req = req.json(b);
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    /// Airflow's hops of a finished chain run: each task's start after the end of the
    /// one before.
    async fn hops(&self, run_id: &str, hops: &mut Lat) {
        let (_, tis) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v2/dags/tessera_chain/dagRuns/{run_id}/taskInstances"),
                None,
            )
            .await;
        let at = |task: &str, k: &str| {
            tis["task_instances"]
                .as_array()
                .and_then(|l| l.iter().find(|t| t["task_id"] == task))
                .and_then(|t| t[k].as_str())
                .and_then(|s| {
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .ok()
                })
        };
        for (before, after) in [("extract", "transform"), ("transform", "load")] {
            if let (Some(end), Some(start)) = (at(before, "end_date"), at(after, "start_date")) {
                hops.0.push(Duration::from_secs_f64(
                    (start - end).as_seconds_f64().max(0.0),
                ));
            }
        }
    }

    /// Triggers the chain and waits for its end: the wall time and Airflow's run id.
    async fn direct(&self, n: usize) -> (f64, String) {
        let run_id = format!("bench-direct-{n}-{}", std::process::id());
        let start = Instant::now();
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/api/v2/dags/tessera_chain/dagRuns",
                Some(&json!({"dag_run_id": run_id, "logical_date": null, "conf": {"count": n}})),
            )
            .await;
        assert!((200..300).contains(&status), "trigger: {status} {v}");
        loop {
            assert!(
                start.elapsed() < RUN_DEADLINE,
                "direct run {run_id} did not end"
            );
            let (_, run) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/v2/dags/tessera_chain/dagRuns/{run_id}"),
                    None,
                )
                .await;
            match run["state"].as_str() {
                Some("success") => return (start.elapsed().as_secs_f64(), run_id),
                Some("failed") => panic!("direct run {run_id} failed"),
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}

/// The chain through Tessera: the wall time and Airflow's run id.
async fn through_tessera(http: &reqwest::Client, url: &str, n: usize) -> (f64, String) {
    let start = Instant::now();
    let run: Value = http
        .post(format!("{url}/v1/workflow-runs"))
        .json(&json!({"workflow": "airflow-chain", "params": {"count": n}}))
        .send()
        .await
        .expect("POST run")
        .json()
        .await
        .expect("json");
    let id = run["id"].as_str().expect("run id").to_string();
    loop {
        assert!(start.elapsed() < RUN_DEADLINE, "run {id} did not end");
        let run: Value = http
            .get(format!("{url}/v1/workflow-runs/{id}"))
            .send()
            .await
            .expect("GET run")
            .json()
            .await
            .expect("json");
        match run["state"].as_str() {
            Some("Completed") => {
                let external = run["external_id"].as_str().unwrap_or_default();
                let airflow_run = external.split_once('/').map_or("", |(_, r)| r);
                return (start.elapsed().as_secs_f64(), airflow_run.to_string());
            }
            Some("Error" | "Canceled") => panic!("run {id} ended {}", run["state"]),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The Airflow rows; `server_url` is a Tessera server (auth off) to bind the adapter on.
pub async fn bench_airflow(server_url: &str) {
    let Some(bin) = std::env::var_os("TESSERA_TEST_AIRFLOW").map(PathBuf::from) else {
        println!(
            "\nAirflow: skipped (TESSERA_TEST_AIRFLOW is not set; scripts/test-env.sh installs Airflow)."
        );
        return;
    };
    let started = Instant::now();
    let af = Airflow::start(&bin).await;
    let ready = started.elapsed().as_secs_f64();
    let http = reqwest::Client::new();
    let port = af.url.rsplit(':').next().unwrap_or_default().to_string();
    let r = http
        .post(format!(
            "{server_url}/v1/plugins/engine-airflow/versions/0.1.0/activate"
        ))
        .json(&json!({
            "scope": "airflow",
            "config": {"url": af.url},
            "allow_hosts": [format!("127.0.0.1:{port}")],
        }))
        .send()
        .await
        .expect("activate");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let r = http
        .post(format!("{server_url}/v1/workflows"))
        .json(&json!({
            "title": "airflow-chain",
            "engine": "airflow",
            "definition": {"dag_id": "tessera_chain"},
            "parameters": [{"name": "count", "type": "integer", "default": 1}],
        }))
        .send()
        .await
        .expect("POST workflow");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );

    // A first run of each, unmeasured: the DAG is unpaused, files are cached.
    let _ = af.direct(0).await;
    let _ = through_tessera(&http, server_url, 0).await;
    let (mut direct, mut ours) = (Vec::new(), Vec::new());
    let (mut direct_hops, mut our_hops) = (Lat(Vec::new()), Lat(Vec::new()));
    for n in 1..=ROUNDS {
        let (wall, run) = af.direct(n).await;
        direct.push(wall);
        af.hops(&run, &mut direct_hops).await;
        let (wall, run) = through_tessera(&http, server_url, n).await;
        ours.push(wall);
        af.hops(&run, &mut our_hops).await;
    }
    println!(
        "\n## Workflows on Airflow: a 3-task chain (`tessera_chain`, BashOperator `echo`), \
         Airflow 3 standalone on SQLite (ready in {ready:.1} s), {ROUNDS} runs each, \
         interleaved, medians\n"
    );
    println!("| path | wall s (trigger → end seen by the client) | Airflow hop p50 ms |");
    println!("| --- | ---: | ---: |");
    let (d, o) = (median(direct), median(ours));
    println!(
        "| Airflow REST API directly | {d:.2} | {:.0} |",
        direct_hops.pct(0.5)
    );
    println!(
        "| Tessera Workflow API → engine-airflow | {o:.2} | {:.0} |",
        our_hops.pct(0.5)
    );
    println!("| ratio | {:.2} | |", o / d);
}
