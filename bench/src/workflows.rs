//! The native workflow engine on real Docker: a 3-task chain and a 50-task fan-out/fan-in,
//! next to the same containers started directly in the same order; the per-hop delay
//! (a task's container starting after the last task it depends on ended) and the
//! overhead of the whole run; then, with Airflow present, a chain on Airflow directly and
//! through the adapter (`crate::airflow`).

use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::{Args, Lat, start_server, tessera_bin};

/// Width of the fan-out layer.
const FAN: usize = 50;
/// Containers at once, for the fan-out (the server's limit and the direct baseline's).
const CONCURRENCY: usize = 8;

fn parse(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
}

async fn docker_true(image: &str) {
    let status = tokio::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", image, "true"])
        .status()
        .await;
    assert!(status.is_ok_and(|s| s.success()), "docker run failed");
}

/// The same containers without Tessera: the chain one after another; the fan-out one,
/// then `FAN` at most `CONCURRENCY` at a time, then one.
async fn direct(image: &str, fan: bool) -> f64 {
    let start = Instant::now();
    if fan {
        docker_true(image).await;
        let owned = image.to_string();
        crate::drive(FAN, CONCURRENCY, move |_| {
            let image = owned.clone();
            async move { docker_true(&image).await }
        })
        .await;
        docker_true(image).await;
    } else {
        for _ in 0..3 {
            docker_true(image).await;
        }
    }
    start.elapsed().as_secs_f64()
}

/// When a task was made, and its container's start and end (its first executor's log).
async fn span(
    http: &reqwest::Client,
    url: &str,
    task: &str,
) -> (
    time::OffsetDateTime,
    time::OffsetDateTime,
    time::OffsetDateTime,
) {
    let t: Value = http
        .get(format!("{url}/ga4gh/tes/v1/tasks/{task}?view=FULL"))
        .send()
        .await
        .expect("GET task")
        .json()
        .await
        .expect("json");
    let log = &t["logs"][0]["logs"][0];
    let at = |k: &str| log[k].as_str().and_then(parse).expect("a time");
    let created = t["creation_time"]
        .as_str()
        .and_then(parse)
        .expect("a creation time");
    (created, at("start_time"), at("end_time"))
}

/// A workflow's run on the server: its wall time (created → ended, server clock) and,
/// for each hop (a task after the last task it depends on ended), the delay until the
/// engine made its task and until its container started (which includes waiting for
/// the server's concurrency limit).
async fn native(
    http: &reqwest::Client,
    url: &str,
    title: &str,
    definition: Value,
) -> (f64, Lat, Lat) {
    let r = http
        .post(format!("{url}/v1/workflows"))
        .json(&json!({"title": title, "definition": definition}))
        .send()
        .await
        .expect("POST workflow");
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let run: Value = http
        .post(format!("{url}/v1/workflow-runs"))
        .json(&json!({"workflow": title}))
        .send()
        .await
        .expect("POST run")
        .json()
        .await
        .expect("json");
    let id = run["id"].as_str().expect("run id").to_string();
    let run = loop {
        let run: Value = http
            .get(format!("{url}/v1/workflow-runs/{id}"))
            .send()
            .await
            .expect("GET run")
            .json()
            .await
            .expect("json");
        match run["state"].as_str() {
            Some("Completed") => break run,
            Some("Error" | "Canceled") => panic!("run {id} ended {}", run["state"]),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let wall = (run["ended_at"].as_str().and_then(parse).expect("ended")
        - run["created_at"].as_str().and_then(parse).expect("created"))
    .as_seconds_f64();
    let trs: Value = http
        .get(format!("{url}/v1/workflow-runs/{id}/task-runs"))
        .send()
        .await
        .expect("GET task runs")
        .json()
        .await
        .expect("json");
    let mut spans = std::collections::BTreeMap::new();
    for tr in trs["task_runs"].as_array().expect("task runs") {
        let title = tr["task_title"].as_str().unwrap_or_default().to_string();
        let task = tr["task_id"].as_str().expect("a task");
        spans.insert(title, span(http, url, task).await);
    }
    let tasks: Value = http
        .get(format!("{url}/v1/workflows/{title}/1/tasks"))
        .send()
        .await
        .expect("GET tasks")
        .json()
        .await
        .expect("json");
    let (mut made, mut started) = (Lat(Vec::new()), Lat(Vec::new()));
    for t in tasks["tasks"].as_array().expect("tasks") {
        let ups: Vec<&str> = t["upstream"]
            .as_array()
            .map(|u| u.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if ups.is_empty() {
            continue;
        }
        let last_end = ups.iter().map(|u| spans[*u].2).max().expect("an upstream");
        let (created, start, _) = spans[t["title"].as_str().unwrap_or_default()];
        let after = |t: time::OffsetDateTime| {
            Duration::from_secs_f64((t - last_end).as_seconds_f64().max(0.0))
        };
        made.0.push(after(created));
        started.0.push(after(start));
    }
    (wall, made, started)
}

fn task(name: &str, deps: &[String], image: &str) -> Value {
    json!({"name": name, "image": image, "command": ["true"], "depends_on": deps})
}

pub async fn bench_workflows(args: &Args) {
    println!(
        "\n## Workflows: the native engine on Docker, next to the same containers started directly\n"
    );
    let image = args.image.clone();
    // Warm up the engine.
    docker_true(&image).await;
    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(
        &tessera_bin(args),
        dir.path(),
        &[
            "--max-concurrent-tasks",
            &CONCURRENCY.to_string(),
            "--default-network",
            "none",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let chain = json!({"tasks": [
        task("a", &[], &image),
        task("b", &["a".to_string()], &image),
        task("c", &["b".to_string()], &image),
    ]});
    let wide: Vec<String> = (0..FAN).map(|i| format!("w{i:02}")).collect();
    let mut fan = vec![task("split", &[], &image)];
    fan.extend(wide.iter().map(|w| task(w, &["split".to_string()], &image)));
    fan.push(task("join", &wide, &image));
    let fan = json!({"tasks": fan});

    println!(
        "| workflow | direct s | native s | overhead ratio | hops | task made p50 ms | p99 ms | container started p50 ms | p99 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, def, is_fan) in [("chain-3", chain, false), ("fan-50", fan, true)] {
        let plain = direct(&image, is_fan).await;
        let (ours, mut made, mut started) = native(&http, &server.url, name, def).await;
        println!(
            "| {name} | {plain:.2} | {ours:.2} | {:.2} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ours / plain,
            made.0.len(),
            made.pct(0.5),
            made.pct(0.99),
            started.pct(0.5),
            started.pct(0.99)
        );
    }
    crate::airflow::bench_airflow(&server.url).await;
    drop(server);
}
