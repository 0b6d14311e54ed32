//! The Workflow API end to end on the real binary and real Docker, with the native
//! engine: revisions, validation at POST time, DAG shapes run in order with outputs
//! feeding inputs, a failure in the middle, automatic retries with backoff, retry of a
//! finished run, cancel while running, and group isolation.

mod common;

use common::{BUSYBOX, Client, Options, Server, admin, read_events, subscribe, user};
use serde_json::{Value, json};

async fn docker_server() -> Server {
    Server::start(Options::default()).await
}

fn etl_yaml() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/workflows/etl.yaml"
    ))
    .expect("examples/workflows/etl.yaml")
}

/// Post a workflow: status and answer.
async fn post_workflow(
    c: &Client<'_>,
    title: &str,
    definition: Value,
    params: Value,
) -> (u16, Value) {
    c.post(
        "/v1/workflows",
        &json!({"title": title, "definition": definition, "parameters": params}),
    )
    .await
}

/// Start a run of the latest revision of `workflow`; its id.
async fn start(c: &Client<'_>, workflow: &str, params: Value) -> String {
    let (status, run) = c
        .post(
            "/v1/workflow-runs",
            &json!({"workflow": workflow, "params": params}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    run["id"].as_str().expect("an id").to_string()
}

fn ended(run: &Value) -> bool {
    matches!(
        run["state"].as_str(),
        Some("Completed" | "Error" | "Canceled")
    )
}

async fn wait_run(c: &Client<'_>, id: &str) -> Value {
    c.wait_until(&format!("/v1/workflow-runs/{id}"), "an end", ended)
        .await
}

/// The task runs of a run: title -> list of (attempt, state), attempts in order.
async fn task_runs(c: &Client<'_>, id: &str) -> Vec<Value> {
    let (status, body) = c.get(&format!("/v1/workflow-runs/{id}/task-runs")).await;
    assert_eq!(status, 200, "{body}");
    body["task_runs"].as_array().expect("task_runs").clone()
}

fn states(trs: &[Value]) -> Vec<(String, i64, String)> {
    trs.iter()
        .map(|t| {
            (
                t["task_title"].as_str().unwrap_or_default().to_string(),
                t["attempt"].as_i64().unwrap_or_default(),
                t["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// The stdout of a task run's task.
async fn stdout(c: &Client<'_>, tr: &Value) -> String {
    let id = tr["task_id"].as_str().expect("a task");
    let (_, t) = c.get(&format!("/ga4gh/tes/v1/tasks/{id}?view=FULL")).await;
    t["logs"][0]["logs"][0]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// When each task run's task started and ended (from its TES log), by title.
async fn spans(c: &Client<'_>, trs: &[Value]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for tr in trs {
        let Some(id) = tr["task_id"].as_str() else {
            continue;
        };
        let (_, t) = c.get(&format!("/ga4gh/tes/v1/tasks/{id}?view=FULL")).await;
        let log = &t["logs"][0];
        out.push((
            tr["task_title"].as_str().unwrap_or_default().to_string(),
            log["start_time"].as_str().unwrap_or_default().to_string(),
            log["end_time"].as_str().unwrap_or_default().to_string(),
        ));
    }
    out
}

fn task(name: &str, deps: &[&str], script: &str) -> Value {
    json!({"name": name, "image": BUSYBOX, "command": ["sh", "-c", script], "depends_on": deps})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etl_example_runs_in_order_with_outputs_feeding_inputs() {
    let s = docker_server().await;
    let c = user(&s, "ada").await;
    let params = json!([{"name": "count", "type": "integer", "default": 3, "minimum": 1}]);
    let (status, wf) = post_workflow(&c, "etl", json!(etl_yaml()), params.clone()).await;
    assert_eq!(status, 201, "{wf}");
    assert_eq!(
        (wf["version"].as_i64(), wf["group"].as_str()),
        (Some(1), Some("ada"))
    );
    // The same definition again is the same revision; the graph is the engine's.
    let (status, again) = post_workflow(&c, "etl", json!(etl_yaml()), params.clone()).await;
    assert_eq!(
        (status, again["id"].clone()),
        (200, wf["id"].clone()),
        "{again}"
    );
    let (_, tasks) = c.get("/v1/workflows/etl/1/tasks").await;
    let graph: Vec<(String, Value)> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["title"].as_str().unwrap().to_string(),
                t["downstream"].clone(),
            )
        })
        .collect();
    assert_eq!(
        graph,
        [
            ("extract".to_string(), json!(["sum", "count"])),
            ("sum".to_string(), json!(["report"])),
            ("count".to_string(), json!(["report"])),
            ("report".to_string(), json!([])),
        ]
    );
    let (status, report) = c.get("/v1/workflows/etl/1/tasks/report").await;
    assert_eq!(
        (status, report["upstream"].clone()),
        (200, json!(["sum", "count"]))
    );

    let id = start(&c, "etl", json!({"count": 5})).await;
    let run = wait_run(&c, &id).await;
    assert_eq!(run["state"], "Completed", "{run}\n{}", s.server_log());
    assert!(
        run["started_at"].is_string() && run["ended_at"].is_string(),
        "{run}"
    );
    let trs = task_runs(&c, &id).await;
    assert!(
        states(&trs)
            .iter()
            .all(|(_, a, st)| *a == 1 && st == "Completed"),
        "{trs:?}"
    );
    let report = trs.iter().find(|t| t["task_title"] == "report").unwrap();
    assert_eq!(stdout(&c, report).await.trim(), "sum 15 of 5 numbers");
    // Its log through the Workflow API, whole and in pages of 4 bytes.
    let logs = format!(
        "/v1/workflow-runs/{id}/task-runs/{}/logs",
        report["id"].as_str().unwrap()
    );
    let (status, page) = c.get(&logs).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["text"], "sum 15 of 5 numbers\n");
    assert!(page["next_page_token"].is_null(), "{page}");
    let (mut text, mut token, mut pages) = (String::new(), None::<String>, 0);
    loop {
        let url = match &token {
            Some(t) => format!("{logs}?page_size=4&page_token={t}"),
            None => format!("{logs}?page_size=4"),
        };
        let (status, page) = c.get(&url).await;
        assert_eq!(status, 200, "{page}");
        text.push_str(page["text"].as_str().unwrap());
        pages += 1;
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!((text.as_str(), pages), ("sum 15 of 5 numbers\n", 5));
    let (_, followed) = c.bytes(&format!("{logs}?follow=true")).await;
    assert_eq!(followed, b"sum 15 of 5 numbers\n");
    // Each task started after every task it depends on ended.
    let spans = spans(&c, &trs).await;
    let span = |t: &str| spans.iter().find(|s| s.0 == t).unwrap().clone();
    for (down, up) in [
        ("sum", "extract"),
        ("count", "extract"),
        ("report", "sum"),
        ("report", "count"),
    ] {
        assert!(
            span(down).1 >= span(up).2,
            "{down} started before {up} ended: {spans:?}"
        );
    }
    // The tasks are tasks of the one model: in the TES listing, tagged with the run.
    let (_, listed) = c
        .get(&format!(
            "/ga4gh/tes/v1/tasks?tag_key=tessera.workflow-run&tag_value={id}"
        ))
        .await;
    assert_eq!(
        listed["tasks"].as_array().map(Vec::len),
        Some(4),
        "{listed}"
    );
    // Runs are listed by workflow and state.
    let (_, list) = c
        .get("/v1/workflow-runs?workflow=etl&state=Completed")
        .await;
    assert_eq!(list["workflow_runs"][0]["id"], id.as_str());
    // The run's state changes are on the event stream, replayed from the start.
    let events = read_events(
        subscribe(&s, &c.token, &format!("?run={id}"), Some(0)).await,
        |e| e.iter().any(|(_, d)| d["type"] == "workflow-run.finished"),
    )
    .await;
    let run_states: Vec<&str> = events
        .iter()
        .filter(|(_, d)| d["task_run_id"].is_null())
        .map(|(_, d)| d["to"].as_str().unwrap())
        .collect();
    assert_eq!(
        run_states,
        ["Created", "Scheduled", "Running", "Completed"],
        "{events:?}"
    );
    let report_states: Vec<&str> = events
        .iter()
        .filter(|(_, d)| d["task_title"] == "report")
        .map(|(_, d)| d["to"].as_str().unwrap())
        .collect();
    assert_eq!(report_states.last(), Some(&"Completed"), "{events:?}");
    assert!(
        events
            .iter()
            .all(|(_, d)| d["group"] == "ada" && d["origin"] == "workflow")
    );
}

#[tokio::test]
async fn broken_definitions_and_values_are_refused_naming_each_problem() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let c = admin(&s);
    let cyclic = json!({"tasks": [task("a", &["c"], "true"), task("b", &["a"], "true"), task("c", &["b"], "true")]});
    let (status, err) = post_workflow(&c, "loop", cyclic, json!([])).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_document")),
        "{err}"
    );
    assert!(err.to_string().contains("a -> b -> c -> a"), "{err}");
    let broken = json!({"tasks": [
        task("a", &["ghost"], "echo {{missing}}"),
    ]});
    let (status, err) = post_workflow(&c, "broken", broken, json!([])).await;
    assert_eq!(status, 400, "{err}");
    let fields: Vec<&str> = err["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"definition.tasks[0].depends_on[0]"),
        "{err}"
    );
    assert!(fields.contains(&"definition.tasks[0].command[2]"), "{err}");
    let (status, err) = c
        .post(
            "/v1/workflows",
            &json!({"title": "elsewhere", "engine": "nowhere", "definition": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"nowhere\""),
        "{err}"
    );
    // A run's values are checked against the declared parameters.
    let ok = json!({"tasks": [task("a", &[], "echo {{n}}")]});
    let params = json!([{"name": "n", "type": "integer", "maximum": 9}]);
    assert_eq!(post_workflow(&c, "numbers", ok, params).await.0, 201);
    for (values, field) in [
        (json!({}), "params.n"),
        (json!({"n": 10}), "params.n"),
        (json!({"n": 1, "x": 2}), "params.x"),
    ] {
        let (status, err) = c
            .post(
                "/v1/workflow-runs",
                &json!({"workflow": "numbers", "params": values}),
            )
            .await;
        assert_eq!(status, 400, "{err}");
        assert!(
            err["details"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["field"] == field),
            "{field}: {err}"
        );
    }
    let (status, _) = c
        .post(
            "/v1/workflow-runs",
            &json!({"workflow": "numbers", "version": 7, "params": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        c.post("/v1/workflow-runs", &json!({"workflow": "nothing"}))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_stops_its_dependents_and_a_retry_runs_them_again() {
    let s = docker_server().await;
    let c = user(&s, "ada").await;
    // `gate` reads an object that is not there yet: its input fails to stage.
    let def = json!({"tasks": [
        {"name": "gate", "image": BUSYBOX, "command": ["cat", "/in/go"],
         "inputs": [{"url": "s3://ada/flags/go", "path": "/in/go"}]},
        task("after", &["gate"], "echo after"),
        task("last", &["after"], "echo last"),
        task("side", &[], "echo side"),
    ]});
    assert_eq!(post_workflow(&c, "gated", def, json!([])).await.0, 201);
    let id = start(&c, "gated", json!({})).await;
    let run = wait_run(&c, &id).await;
    assert_eq!(run["state"], "Error", "{run}");
    let mut got = states(&task_runs(&c, &id).await);
    got.sort();
    assert_eq!(
        got,
        [
            ("after".into(), 1, "UpstreamFailed".into()),
            ("gate".into(), 1, "Error".into()),
            ("last".into(), 1, "UpstreamFailed".into()),
            ("side".into(), 1, "Completed".into()),
        ]
    );
    // The object appears; a retry runs the failed task and what it held back, keeping
    // the first attempts.
    let r = s
        .http
        .put(format!("{}/v1/data/ada/flags/go", s.url))
        .bearer_auth(&c.token)
        .body("go\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, retried) = c
        .put(&format!("/v1/workflow-runs/{id}/retry"), &json!({}))
        .await;
    assert_eq!(status, 200, "{retried}");
    let run = wait_run(&c, &id).await;
    assert_eq!(run["state"], "Completed", "{run}");
    let mut got = states(&task_runs(&c, &id).await);
    got.sort();
    assert_eq!(
        got,
        [
            ("after".into(), 1, "UpstreamFailed".into()),
            ("after".into(), 2, "Completed".into()),
            ("gate".into(), 1, "Error".into()),
            ("gate".into(), 2, "Completed".into()),
            ("last".into(), 1, "UpstreamFailed".into()),
            ("last".into(), 2, "Completed".into()),
            ("side".into(), 1, "Completed".into()),
        ]
    );
    // A chosen task with everything downstream of it.
    let (status, _) = c
        .put(
            &format!("/v1/workflow-runs/{id}/retry"),
            &json!({"tasks": ["after"], "downstream": true}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(wait_run(&c, &id).await["state"], "Completed");
    let trs = task_runs(&c, &id).await;
    let attempts = |t: &str| trs.iter().filter(|r| r["task_title"] == t).count();
    assert_eq!(
        (
            attempts("gate"),
            attempts("after"),
            attempts("last"),
            attempts("side")
        ),
        (2, 3, 3, 1)
    );
    // Only an ended run is retried, and only tasks it has.
    let (status, err) = c
        .put(
            &format!("/v1/workflow-runs/{id}/retry"),
            &json!({"tasks": ["ghost"]}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_task_is_retried_after_its_backoff_then_fails_the_run() {
    let s = docker_server().await;
    let c = admin(&s);
    let def = json!({"tasks": [
        {"name": "flaky", "image": BUSYBOX, "command": ["sh", "-c", "exit 3"],
         "retries": {"count": 2, "backoff_seconds": 1, "backoff_factor": 2}},
        task("after", &["flaky"], "true"),
    ]});
    assert_eq!(post_workflow(&c, "flaky", def, json!([])).await.0, 201);
    let id = start(&c, "flaky", json!({})).await;
    let run = wait_run(&c, &id).await;
    assert_eq!(run["state"], "Error", "{run}");
    let trs = task_runs(&c, &id).await;
    let flaky: Vec<&Value> = trs.iter().filter(|t| t["task_title"] == "flaky").collect();
    assert_eq!(flaky.len(), 3, "{trs:?}");
    assert!(flaky.iter().all(|t| t["state"] == "Error"), "{trs:?}");
    // Each retry waited its backoff after the attempt before it ended (1 s, then 2 s).
    let spans = spans(&c, &trs).await;
    let times: Vec<(time::OffsetDateTime, time::OffsetDateTime)> = spans
        .iter()
        .filter(|s| s.0 == "flaky")
        .map(|s| (parse(&s.1), parse(&s.2)))
        .collect();
    for (i, wait) in [(1usize, 1_000i64), (2, 2_000)] {
        let gap = (times[i].0 - times[i - 1].1).whole_milliseconds() as i64;
        assert!(
            gap >= wait - 100,
            "retry {i} came {gap} ms after the attempt before"
        );
    }
    assert_eq!(
        states(&trs)
            .iter()
            .find(|t| t.0 == "after")
            .map(|t| t.2.clone()),
        Some("UpstreamFailed".to_string())
    );
}

fn parse(t: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{t:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_what_runs_and_skips_the_rest() {
    let s = docker_server().await;
    let c = admin(&s);
    let def = json!({"tasks": [
        task("long", &[], "sleep 600"),
        task("next", &["long"], "true"),
    ]});
    assert_eq!(post_workflow(&c, "long", def, json!([])).await.0, 201);
    let id = start(&c, "long", json!({})).await;
    c.wait_until(&format!("/v1/workflow-runs/{id}"), "Running", |r| {
        r["state"] == "Running"
    })
    .await;
    let (status, run) = c
        .put(&format!("/v1/workflow-runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{run}");
    let run = wait_run(&c, &id).await;
    assert_eq!(run["state"], "Canceled", "{run}");
    let trs = task_runs(&c, &id).await;
    let long = trs.iter().find(|t| t["task_title"] == "long").unwrap();
    let (_, t) = c
        .get(&format!(
            "/ga4gh/tes/v1/tasks/{}",
            long["task_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(t["state"], "CANCELED", "{t}");
    assert_eq!(
        states(&trs),
        [
            ("long".into(), 1, "Skipped".into()),
            ("next".into(), 1, "Skipped".into())
        ]
    );
    // A run that ended is not canceled again.
    let (status, again) = c
        .put(&format!("/v1/workflow-runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!((status, again["state"].as_str()), (200, Some("Canceled")));
}

#[tokio::test]
async fn another_groups_workflows_and_runs_do_not_exist() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    let def = json!({"tasks": [task("a", &[], "true")]});
    assert_eq!(post_workflow(&ada, "mine", def, json!([])).await.0, 201);
    let id = start(&ada, "mine", json!({})).await;
    for path in [
        "/v1/workflows/mine?group=ada".to_string(),
        "/v1/workflows/mine/1?group=ada".to_string(),
        "/v1/workflows/mine/1/tasks?group=ada".to_string(),
        format!("/v1/workflow-runs/{id}"),
        format!("/v1/workflow-runs/{id}/task-runs"),
    ] {
        let (status, body) = bob.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    for path in [
        format!("/v1/workflow-runs/{id}/cancel"),
        format!("/v1/workflow-runs/{id}/retry"),
    ] {
        assert_eq!(bob.put(&path, &json!({})).await.0, 404, "{path}");
    }
    assert_eq!(bob.delete("/v1/workflows/mine?group=ada").await.0, 404);
    let (_, list) = bob.get("/v1/workflows").await;
    assert_eq!(list["workflows"], json!([]));
    let (_, list) = bob.get("/v1/workflow-runs").await;
    assert_eq!(list["workflow_runs"], json!([]));
    // Deleting keeps the run readable.
    assert_eq!(ada.delete("/v1/workflows/mine").await.0, 204);
    assert_eq!(ada.get("/v1/workflows/mine").await.0, 404);
    assert_eq!(ada.get(&format!("/v1/workflow-runs/{id}")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_finishes_after_the_server_is_killed_and_no_task_runs_twice() {
    // Every container start, as Docker reports it.
    let events_file = tempfile::NamedTempFile::new().unwrap();
    let mut events = std::process::Command::new("docker")
        .args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(std::process::Stdio::from(events_file.reopen().unwrap()))
        .spawn()
        .expect("docker events");
    let mut s = docker_server().await;
    let token = s.token.clone();
    let c = Client {
        s: &s,
        token: token.clone(),
    };
    let def = json!({"tasks": [
        task("one", &[], "echo one"),
        task("two", &["one"], "echo two-start; sleep 4; echo two-end"),
        task("three", &["two"], "echo three"),
        task("four", &["two"], "echo four"),
    ]});
    assert_eq!(post_workflow(&c, "crash", def, json!([])).await.0, 201);
    let id = start(&c, "crash", json!({})).await;
    c.wait_until(
        &format!("/v1/workflow-runs/{id}/task-runs"),
        "two running",
        |v| {
            v["task_runs"].as_array().is_some_and(|trs| {
                trs.iter()
                    .any(|t| t["task_title"] == "two" && t["state"] == "Running")
            })
        },
    )
    .await;
    drop(c);
    s.kill9();
    s.spawn().await;
    let c = Client { s: &s, token };
    let run = wait_run(&c, &id).await;
    assert_eq!(run["state"], "Completed", "{run}\n{}", s.server_log());
    let trs = task_runs(&c, &id).await;
    assert_eq!(
        states(&trs),
        [
            ("four".into(), 1, "Completed".into()),
            ("one".into(), 1, "Completed".into()),
            ("three".into(), 1, "Completed".into()),
            ("two".into(), 1, "Completed".into()),
        ]
    );
    let two = trs.iter().find(|t| t["task_title"] == "two").unwrap();
    assert_eq!(stdout(&c, two).await, "two-start\ntwo-end\n");
    let _ = events.kill();
    let _ = events.wait();
    let log = std::fs::read_to_string(events_file.path()).unwrap();
    for tr in &trs {
        let task_id = tr["task_id"].as_str().unwrap();
        let started = log.lines().filter(|n| n.contains(task_id)).count();
        assert_eq!(
            started, 1,
            "{}: {started} container starts",
            tr["task_title"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_task_wide_layer_fans_out_and_in() {
    let s = Server::start(Options {
        max_concurrent_tasks: 16,
        ..Options::default()
    })
    .await;
    let c = admin(&s);
    let mut tasks = vec![task("split", &[], "true")];
    let wide: Vec<String> = (0..200).map(|i| format!("w{i:03}")).collect();
    for w in &wide {
        tasks.push(task(w, &["split"], "true"));
    }
    let refs: Vec<&str> = wide.iter().map(String::as_str).collect();
    tasks.push(task("join", &refs, "echo joined"));
    assert_eq!(
        post_workflow(&c, "wide", json!({"tasks": tasks}), json!([]))
            .await
            .0,
        201
    );
    let id = start(&c, "wide", json!({})).await;
    let run = wait_run(&c, &id).await;
    assert_eq!(run["state"], "Completed", "{run}");
    let trs = task_runs(&c, &id).await;
    assert_eq!(trs.len(), 202);
    assert!(trs.iter().all(|t| t["state"] == "Completed"), "{trs:?}");
    let join = trs.iter().find(|t| t["task_title"] == "join").unwrap();
    assert_eq!(stdout(&c, join).await, "joined\n");
    // join started after the last of the layer ended.
    let spans = spans(&c, &trs).await;
    let last_wide_end = spans
        .iter()
        .filter(|s| s.0.starts_with('w'))
        .map(|s| s.2.clone())
        .max()
        .unwrap();
    let join_start = spans.iter().find(|s| s.0 == "join").unwrap().1.clone();
    assert!(
        join_start >= last_wide_end,
        "{join_start} < {last_wide_end}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_data_is_measured_and_cleaned_by_policy_or_on_demand() {
    let s = docker_server().await;
    let c = user(&s, "ada").await;
    let def = json!({"tasks": [
        {"name": "write", "image": BUSYBOX, "command": ["sh", "-c", "head -c 3000 /dev/zero > /out/blob"],
         "outputs": [{"name": "blob", "path": "/out/blob"}]},
    ]});
    assert_eq!(post_workflow(&c, "data", def, json!([])).await.0, 201);
    // Kept: measured, then cleaned on demand (202), then already clean (200).
    let id = start(&c, "data", json!({})).await;
    assert_eq!(wait_run(&c, &id).await["state"], "Completed");
    let (_, size) = c.get(&format!("/v1/workflow-runs/{id}/data-size")).await;
    assert_eq!(
        (size["bytes"].as_u64(), size["objects"].as_u64()),
        (Some(3000), Some(1)),
        "{size}"
    );
    let (status, body) = c
        .post(&format!("/v1/workflow-runs/{id}/clean"), &json!({}))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("started")),
        "{body}"
    );
    c.wait_until(&format!("/v1/workflow-runs/{id}"), "clean", |r| {
        r["cleaned"] == true
    })
    .await;
    let (_, size) = c.get(&format!("/v1/workflow-runs/{id}/data-size")).await;
    assert_eq!(size["bytes"].as_u64(), Some(0), "{size}");
    let (status, body) = c
        .post(&format!("/v1/workflow-runs/{id}/clean"), &json!({}))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("clean")),
        "{body}"
    );
    // A cleaned run is not retried: the outputs its tasks would read are gone.
    let (status, err) = c
        .put(
            &format!("/v1/workflow-runs/{id}/retry"),
            &json!({"tasks": ["write"]}),
        )
        .await;
    assert_eq!(status, 409, "{err}");
    // Cleaned by its policy when it completes.
    let (status, run) = c
        .post(
            "/v1/workflow-runs",
            &json!({"workflow": "data", "cleanup": "OnSuccess"}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let id2 = run["id"].as_str().unwrap().to_string();
    c.wait_until(&format!("/v1/workflow-runs/{id2}"), "clean", |r| {
        r["state"] == "Completed" && r["cleaned"] == true
    })
    .await;
    // Not while it runs.
    let slow = json!({"tasks": [task("slow", &[], "sleep 600")]});
    assert_eq!(post_workflow(&c, "slow", slow, json!([])).await.0, 201);
    let id3 = start(&c, "slow", json!({})).await;
    let (status, _) = c
        .post(&format!("/v1/workflow-runs/{id3}/clean"), &json!({}))
        .await;
    assert_eq!(status, 409);
    // Bulk cancel by filter; then only an admin deletes finished runs by date.
    let (status, bulk) = c
        .put("/v1/workflow-runs/cancel?workflow=slow", &json!({}))
        .await;
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(bulk["workflow_runs"], json!([id3]));
    assert_eq!(wait_run(&c, &id3).await["state"], "Canceled");
    let (status, _) = c
        .delete("/v1/workflow-runs?before=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(status, 403);
    let a = admin(&s);
    let (status, gone) = a
        .delete("/v1/workflow-runs?before=2999-01-01T00:00:00Z&group=ada")
        .await;
    assert_eq!(status, 200, "{gone}");
    assert_eq!(gone["deleted"].as_array().map(Vec::len), Some(3), "{gone}");
    assert_eq!(c.get(&format!("/v1/workflow-runs/{id}")).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_runs_are_retried_in_bulk_and_synced_on_demand() {
    let s = docker_server().await;
    let c = admin(&s);
    let def = json!({"tasks": [
        {"name": "gate", "image": BUSYBOX, "command": ["cat", "/in/go"],
         "inputs": [{"url": "s3://admin/flags/bulk", "path": "/in/go"}]},
    ]});
    assert_eq!(post_workflow(&c, "gate", def, json!([])).await.0, 201);
    let ids = [
        start(&c, "gate", json!({})).await,
        start(&c, "gate", json!({})).await,
    ];
    for id in &ids {
        assert_eq!(wait_run(&c, id).await["state"], "Error");
    }
    let r = s
        .http
        .put(format!("{}/v1/data/admin/flags/bulk", s.url))
        .bearer_auth(&c.token)
        .body("go\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, bulk) = c
        .put(
            "/v1/workflow-runs/retry?workflow=gate&state=Error",
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{bulk}");
    assert_eq!(
        bulk["workflow_runs"].as_array().map(Vec::len),
        Some(2),
        "{bulk}"
    );
    let (status, synced) = c
        .post("/v1/workflow-runs/sync?workflow=gate", &json!({}))
        .await;
    assert_eq!(status, 200, "{synced}");
    for id in &ids {
        assert_eq!(wait_run(&c, id).await["state"], "Completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_canceled_outside_its_run_is_a_failed_attempt_that_is_retried() {
    let s = docker_server().await;
    let c = admin(&s);
    let def = json!({"tasks": [
        {"name": "long", "image": BUSYBOX, "command": ["sleep", "600"],
         "retries": {"count": 1, "backoff_seconds": 0}},
    ]});
    assert_eq!(post_workflow(&c, "outside", def, json!([])).await.0, 201);
    let id = start(&c, "outside", json!({})).await;
    let running = |v: &Value| {
        v["task_runs"].as_array().is_some_and(|trs| {
            trs.iter()
                .any(|t| t["attempt"] == 1 && t["state"] == "Running")
        })
    };
    let trs = c
        .wait_until(
            &format!("/v1/workflow-runs/{id}/task-runs"),
            "running",
            running,
        )
        .await;
    let task = trs["task_runs"][0]["task_id"].as_str().unwrap().to_string();
    let (status, _) = c
        .post(&format!("/ga4gh/tes/v1/tasks/{task}:cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    // The first attempt failed; its retry runs.
    let trs = c
        .wait_until(
            &format!("/v1/workflow-runs/{id}/task-runs"),
            "a second attempt",
            |v| {
                v["task_runs"].as_array().is_some_and(|trs| {
                    trs.iter()
                        .any(|t| t["attempt"] == 2 && t["state"] == "Running")
                })
            },
        )
        .await;
    assert_eq!(trs["task_runs"][0]["state"], "Error", "{trs}");
    let (status, _) = c
        .put(&format!("/v1/workflow-runs/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(wait_run(&c, &id).await["state"], "Canceled");
}
