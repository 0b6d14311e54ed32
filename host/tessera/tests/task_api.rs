//! The Task API end to end on the real binary and real Docker: operations with typed
//! parameters, runs (validation, artifacts byte for byte, logs, rerun with overrides,
//! versions), the event stream with resume, and group isolation on every endpoint.

mod common;

use common::{BUSYBOX, Client, Options, Server, admin, read_events, subscribe, user};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

/// Poll a run until it ends.
async fn wait_run(c: &Client<'_>, id: &str) -> Value {
    c.wait_until(&format!("/v1/runs/{id}"), "an end", |run| {
        common::is_terminal(run["state"].as_str().unwrap_or(""))
    })
    .await
}

fn operation(name: &str) -> Value {
    json!({
        "name": name,
        "description": "writes a greeting and a count",
        "image": BUSYBOX,
        "command": ["sh", "-c",
            "mkdir -p /out/sub && printf '%s\\n' \"$GREETING\" > /out/hello.txt && seq 1 {{count}} > /out/sub/n.txt && echo done-{{count}} && echo warn-{{count}} >&2"],
        "parameters": [
            {"name": "count", "type": "integer", "minimum": 1, "maximum": 100, "description": "how many"},
            {"name": "greeting", "type": "string", "default": "hello", "enum": ["hello", "bonjour"]},
            {"name": "loud", "type": "boolean", "required": false},
        ],
        "env": {"GREETING": "{{greeting}}"},
        "output_dir": "/out",
        "timeout_seconds": 600,
    })
}

fn seq_text(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_runs_with_typed_parameters_and_its_artifacts_download_byte_for_byte() {
    let s = Server::start(Options::default()).await;
    let c = user(&s, "ada").await;

    // A broken operation is refused, each rule named.
    let mut bad = operation("Bad Name");
    bad["command"] = json!(["echo", "{{nope}}"]);
    let (status, body) = c.post("/v1/operations", &bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_document");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "command[1]"], "{body}");

    let (status, op) = c.post("/v1/operations", &operation("count")).await;
    assert_eq!(status, 201, "{op}");
    let op_id = op["id"].as_str().unwrap().to_string();
    assert_eq!(op["group"], "ada");
    assert_eq!(op["version"], 1);
    assert_eq!(op["parameters_schema"]["required"], json!(["count"]));
    assert_eq!(
        op["parameters_schema"]["properties"]["count"]["maximum"],
        100.0
    );
    // The name is the group's: a second operation of that name conflicts.
    let (status, body) = c.post("/v1/operations", &operation("count")).await;
    assert_eq!(status, 409, "{body}");

    // Bad values: 400 naming each bad one, and nothing is queued.
    let (status, body) = c
        .post(
            &format!("/v1/operations/{op_id}/runs"),
            &json!({"params": {"count": "five", "greeting": "hola", "colour": "red"}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let mut fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        ["params.colour", "params.count", "params.greeting"],
        "{body}"
    );
    let (status, body) = c
        .post(
            &format!("/v1/operations/{op_id}/runs"),
            &json!({"params": {"count": 1000}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "params.count");
    let (status, body) = c
        .post(&format!("/v1/operations/{op_id}/runs"), &json!({}))
        .await;
    assert_eq!(status, 400, "a missing required parameter: {body}");
    let (_, runs) = c.get("/v1/runs").await;
    assert_eq!(runs["runs"], json!([]), "refused runs were queued: {runs}");

    // A good run succeeds; its artifacts are the files it wrote, byte for byte.
    let (status, run) = c
        .post(
            &format!("/v1/operations/{op_id}/runs"),
            &json!({"params": {"count": 5, "greeting": "bonjour"}, "labels": {"team": "x"}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["version"], 1);
    let done = wait_run(&c, &run_id).await;
    assert_eq!(done["state"], "COMPLETE", "{done}\n{}", s.server_log());
    assert_eq!(done["exit_code"], 0);
    let (status, arts) = c.get(&format!("/v1/runs/{run_id}/artifacts")).await;
    assert_eq!(status, 200, "{arts}");
    let mut paths: Vec<&str> = arts["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, ["hello.txt", "sub/n.txt"], "{arts}");
    let (status, hello) = c
        .bytes(&format!("/v1/runs/{run_id}/artifacts/hello.txt"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(hello, b"bonjour\n");
    let (_, n) = c
        .bytes(&format!("/v1/runs/{run_id}/artifacts/sub/n.txt"))
        .await;
    assert_eq!(String::from_utf8(n).unwrap(), seq_text(5));
    let (status, logs) = c.bytes(&format!("/v1/runs/{run_id}/logs")).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&logs), "done-5\n");
    let (_, errs) = c
        .bytes(&format!("/v1/runs/{run_id}/logs?stream=stderr"))
        .await;
    assert_eq!(String::from_utf8_lossy(&errs), "warn-5\n");

    // The run is a task: the TES API lists it, tagged with its operation.
    let (_, tes) = c
        .get("/ga4gh/tes/v1/tasks?tag_key=tessera.operation&tag_value=count")
        .await;
    assert_eq!(tes["tasks"][0]["id"], run_id.as_str(), "{tes}");

    // A new version; the old run keeps the version it ran.
    let mut v2 = operation("count");
    v2["command"] = json!([
        "sh",
        "-c",
        "mkdir -p /out && seq {{count}} -1 1 > /out/down.txt"
    ]);
    let (status, op2) = c
        .call(Method::PUT, &format!("/v1/operations/{op_id}"), Some(&v2))
        .await;
    assert_eq!(status, 200, "{op2}");
    assert_eq!(op2["version"], 2);
    let (_, old) = c.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(old["version"], 1);

    // Rerun with overrides: the original's version and values, the overrides on top.
    let (status, re) = c
        .post(
            &format!("/v1/runs/{run_id}/rerun"),
            &json!({"params": {"count": 3}}),
        )
        .await;
    assert_eq!(status, 201, "{re}");
    assert_eq!(re["rerun_of"], run_id.as_str());
    assert_eq!(re["version"], 1);
    assert_eq!(re["params"], json!({"count": 3, "greeting": "bonjour"}));
    let re_id = re["id"].as_str().unwrap().to_string();
    assert_eq!(wait_run(&c, &re_id).await["state"], "COMPLETE");
    let (_, n) = c
        .bytes(&format!("/v1/runs/{re_id}/artifacts/sub/n.txt"))
        .await;
    assert_eq!(String::from_utf8(n).unwrap(), seq_text(3));
    // A run of the latest version runs the new command.
    let (_, latest) = c
        .post(
            &format!("/v1/operations/{op_id}/runs"),
            &json!({"params": {"count": 2}}),
        )
        .await;
    assert_eq!(latest["version"], 2);
    let latest_id = latest["id"].as_str().unwrap().to_string();
    assert_eq!(wait_run(&c, &latest_id).await["state"], "COMPLETE");
    let (_, down) = c
        .bytes(&format!("/v1/runs/{latest_id}/artifacts/down.txt"))
        .await;
    assert_eq!(down, b"2\n1\n");

    let (_, listed) = c.get(&format!("/v1/runs?operation_id={op_id}")).await;
    let ids: Vec<&str> = listed["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [latest_id.as_str(), re_id.as_str(), run_id.as_str()]);
    let (_, page) = c
        .get(&format!("/v1/runs?operation_id={op_id}&page_size=2"))
        .await;
    let token = page["next_page_token"].as_str().unwrap();
    let (_, rest) = c
        .get(&format!(
            "/v1/runs?operation_id={op_id}&page_size=2&page_token={token}"
        ))
        .await;
    assert_eq!(rest["runs"][0]["id"], run_id.as_str());

    // Deleting hides the operation; its runs stay readable.
    let (status, _) = c
        .call(Method::DELETE, &format!("/v1/operations/{op_id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = c.get(&format!("/v1/operations/{op_id}")).await;
    assert_eq!(status, 404);
    let (status, _) = c.get(&format!("/v1/runs/{run_id}")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_queue_by_priority_then_fifo_and_follow_their_logs_while_running() {
    // One task at a time, so the queue order is the start order.
    let s = Server::start(Options {
        max_concurrent_tasks: 1,
        ..Options::default()
    })
    .await;
    let c = admin(&s);
    let op = json!({
        "name": "step",
        "image": BUSYBOX,
        "command": ["sh", "-c", "{{script}}"],
        "parameters": [{"name": "script", "type": "string"}],
    });
    let (status, op) = c.post("/v1/operations", &op).await;
    assert_eq!(status, 201, "{op}");
    let runs_url = format!("/v1/operations/{}/runs", op["id"].as_str().unwrap());
    // The first takes the only slot while the others queue behind it.
    let (_, first) = c
        .post(
            &runs_url,
            &json!({"params": {"script": "for i in 1 2 3 4 5 6 7 8 9 10; do echo line-$i; sleep 0.3; done"}}),
        )
        .await;
    let first_id = first["id"].as_str().unwrap().to_string();
    let mut queued = Vec::new();
    for (name, priority) in [("low-a", 0), ("high", 10), ("low-b", 0), ("mid", 5)] {
        let (status, r) = c
            .post(
                &runs_url,
                &json!({"params": {"script": format!("echo {name}")}, "priority": priority}),
            )
            .await;
        assert_eq!(status, 201, "{r}");
        queued.push((name, r["id"].as_str().unwrap().to_string()));
    }

    // Follow the first run's log while it runs: every line, in order, then the end.
    let r = s
        .http
        .get(format!("{}/v1/runs/{first_id}/logs?follow=true", s.url))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut chunks = 0;
    while let Some(chunk) = body.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        chunks += 1;
    }
    let expected: String = (1..=10).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(text, expected);
    assert!(chunks > 1, "the log came in one piece, not while running");

    // The order they were claimed in: the seq of each one's INITIALIZING event.
    let mut started = Vec::new();
    for (name, id) in &queued {
        let run = wait_run(&c, id).await;
        assert_eq!(run["state"], "COMPLETE", "{run}");
        let (_, status) = c.get(&format!("/v1/tasks/{id}")).await;
        let claimed = status["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["to_state"] == "INITIALIZING")
            .and_then(|e| e["seq"].as_i64())
            .expect("a claim event");
        started.push((claimed, *name));
    }
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, n)| *n).collect();
    assert_eq!(order, ["high", "mid", "low-a", "low-b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_after_a_disconnect_without_losing_an_event() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    let ada_sub = subscribe(&s, &ada.token, "", None).await;
    let bob_sub = subscribe(&s, &bob.token, "", None).await;

    // Ada makes 20 tasks (created, then canceled: three events each); bob makes one.
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, body) = ada
            .post(
                "/ga4gh/tes/v1/tasks",
                &json!({"name": format!("t{i}"), "executors": [{"image": BUSYBOX, "command": ["true"]}]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (_, bobs) = bob
        .post(
            "/ga4gh/tes/v1/tasks",
            &json!({"executors": [{"image": BUSYBOX, "command": ["true"]}]}),
        )
        .await;
    let bob_task = bobs["id"].as_str().unwrap().to_string();

    // Read the first ten events, then drop the connection.
    let first = read_events(ada_sub, |e| e.len() >= 10).await;
    let last_seen = first.last().unwrap().0;
    for id in &ids {
        let (status, _) = ada
            .post(&format!("/ga4gh/tes/v1/tasks/{id}:cancel"), &json!({}))
            .await;
        assert_eq!(status, 200);
    }
    // Resume: everything after the last seen, then the live cancels.
    let resumed = read_events(subscribe(&s, &ada.token, "", Some(last_seen)).await, |e| {
        e.len() >= 60 - 10
    })
    .await;
    let mut all: Vec<(i64, Value)> = first.into_iter().chain(resumed).collect();
    let seqs: Vec<i64> = all.iter().map(|(id, _)| *id).collect();
    let mut sorted = seqs.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seqs, sorted, "events out of order or repeated");
    all.retain(|(_, d)| d["group"] == "ada");
    assert_eq!(all.len(), 60, "ada sees 60 events of her own");
    for id in &ids {
        let kinds: Vec<&str> = all
            .iter()
            .filter(|(_, d)| d["task_id"] == id.as_str())
            .map(|(_, d)| d["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["task.created", "task.state", "task.finished"],
            "task {id}"
        );
    }
    assert!(
        !all.iter().any(|(_, d)| d["task_id"] == bob_task.as_str()),
        "ada saw bob's task"
    );
    // Bob sees his own event and none of ada's.
    let bobs_events = read_events(bob_sub, |e| !e.is_empty()).await;
    assert_eq!(bobs_events[0].1["task_id"], bob_task.as_str());

    // Filters: one task's events only, replayed from the start of the log.
    let one = read_events(
        subscribe(&s, &ada.token, &format!("?task={}", ids[3]), Some(0)).await,
        |e| e.len() >= 3,
    )
    .await;
    assert!(one.iter().all(|(_, d)| d["task_id"] == ids[3].as_str()));
    let finished = read_events(
        subscribe(&s, &ada.token, "?type=task.finished", Some(0)).await,
        |e| e.len() >= 20,
    )
    .await;
    assert!(finished.iter().all(|(_, d)| d["to"] == "CANCELED"));
    let (status, body) = ada.get("/v1/events?type=bogus").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_parameter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_runs_of_another_group_do_not_exist() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    let (status, op) = ada.post("/v1/operations", &operation("count")).await;
    assert_eq!(status, 201, "{op}");
    let op_id = op["id"].as_str().unwrap();
    let (status, run) = ada
        .post(
            &format!("/v1/operations/{op_id}/runs"),
            &json!({"params": {"count": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["id"].as_str().unwrap();

    for (method, path, body) in [
        (Method::GET, format!("/v1/operations/{op_id}"), None),
        (
            Method::PUT,
            format!("/v1/operations/{op_id}"),
            Some(operation("count")),
        ),
        (Method::DELETE, format!("/v1/operations/{op_id}"), None),
        (
            Method::POST,
            format!("/v1/operations/{op_id}/runs"),
            Some(json!({"params": {"count": 1}})),
        ),
        (Method::GET, format!("/v1/runs/{run_id}"), None),
        (Method::POST, format!("/v1/runs/{run_id}/cancel"), None),
        (Method::POST, format!("/v1/runs/{run_id}/rerun"), None),
        (Method::GET, format!("/v1/runs/{run_id}/logs"), None),
        (Method::GET, format!("/v1/runs/{run_id}/artifacts"), None),
        (
            Method::GET,
            format!("/v1/runs/{run_id}/artifacts/hello.txt"),
            None,
        ),
    ] {
        let (status, answer) = bob.call(method.clone(), &path, body.as_ref()).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["code"], "not_found", "{method} {path}");
    }
    // Creating in another group's name is 404 as well.
    let (status, _) = bob
        .post("/v1/operations?group=ada", &operation("other"))
        .await;
    assert_eq!(status, 404);
    let (_, ops) = bob.get("/v1/operations").await;
    assert_eq!(ops["operations"], json!([]));
    let (_, ops) = bob.get("/v1/operations?group=ada").await;
    assert_eq!(ops["operations"], json!([]));
    let (_, runs) = bob.get("/v1/runs").await;
    assert_eq!(runs["runs"], json!([]));
    // A Read member sees but may not run or edit.
    let (status, _) = admin(&s)
        .call(
            Method::PUT,
            "/v1/groups/ada/members/bob",
            Some(&json!({"role": "read"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = bob.get(&format!("/v1/operations/{op_id}")).await;
    assert_eq!(status, 200);
    let (status, body) = bob
        .post(
            &format!("/v1/operations/{op_id}/runs"),
            &json!({"params": {"count": 1}}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = bob
        .post(&format!("/v1/runs/{run_id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 403);
}

/// One request a webhook receiver got.
#[derive(Clone, Debug)]
struct Hit {
    signature: Option<String>,
    body: String,
    status: u16,
}

/// A receiver on 127.0.0.1 that answers 503 to the first `fail_first` requests, then 200.
#[derive(Clone)]
struct Receiver {
    port: u16,
    hits: std::sync::Arc<std::sync::Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start(fail_first: usize) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            hits: Default::default(),
        };
        let hits = r.hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let Some((head, body)) = common::read_http_request(&mut conn).await else {
                    continue;
                };
                let signature = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("x-tessera-signature")
                        .then(|| v.trim().to_string())
                });
                let status = {
                    let mut hits = hits.lock().unwrap();
                    let status = if hits.len() < fail_first { 503 } else { 200 };
                    hits.push(Hit {
                        signature,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        status,
                    });
                    status
                };
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = tokio::io::AsyncWriteExt::write_all(&mut conn, reply.as_bytes()).await;
            }
        });
        r
    }

    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

fn hmac_hex(key: &str, body: &str) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Poll a run until `pred` holds.
async fn wait_run_until(
    c: &Client<'_>,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    c.wait_until(&format!("/v1/runs/{id}"), what, pred).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_summary_reaches_its_response_url_once_signed_across_a_restart() {
    let receiver = Receiver::start(2).await;
    let mut s = Server::start(Options {
        extra_args: vec![
            "--response-url-allow-host".into(),
            format!("127.0.0.1:{}", receiver.port),
        ],
        ..Options::default()
    })
    .await;
    let key = std::fs::read_to_string(s.data_dir.join("webhook-key"))
        .unwrap()
        .trim()
        .to_string();
    let run_id = {
        let c = admin(&s);
        let (status, op) = c.post("/v1/operations", &operation("count")).await;
        assert_eq!(status, 201, "{op}");
        let (status, run) = c
            .post(
                &format!("/v1/operations/{}/runs", op["id"].as_str().unwrap()),
                &json!({
                    "params": {"count": 2},
                    "responseURL": format!("http://127.0.0.1:{}/hook?token=abc", receiver.port),
                }),
            )
            .await;
        assert_eq!(status, 201, "{run}");
        assert_eq!(run["delivery"]["state"], "pending");
        let id = run["id"].as_str().unwrap().to_string();
        // The first attempt fails and is recorded; then the server restarts.
        wait_run_until(&c, &id, "a failed first delivery", |r| {
            r["delivery"]["attempts"] == 1
        })
        .await;
        id
    };
    s.signal_terminate();
    s.wait_exit();
    s.spawn().await;
    let c = admin(&s);
    let run = wait_run_until(&c, &run_id, "a delivered summary", |r| {
        r["delivery"]["state"] == "delivered"
    })
    .await;
    assert_eq!(run["delivery"]["attempts"], 3, "{run}");

    let hits = receiver.hits();
    assert_eq!(
        hits.iter().map(|h| h.status).collect::<Vec<_>>(),
        [503, 503, 200],
        "{hits:?}"
    );
    let ok = &hits[2];
    assert_eq!(
        ok.signature.as_deref(),
        Some(hmac_hex(&key, &ok.body).as_str()),
        "signed with the server's webhook key"
    );
    let summary: Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(summary["task_id"], run_id.as_str());
    assert_eq!(summary["to_state"], "COMPLETE");
    let tags = &summary["tags"];
    assert_eq!(tags["tessera.run.exit-code"], "0");
    assert_eq!(tags["tessera.operation"], "count");
    assert!(tags["tessera.run.start-time"].is_string());
    assert!(tags["tessera.run.end-time"].is_string());
    let artifacts: Value =
        serde_json::from_str(tags["tessera.run.artifacts"].as_str().unwrap()).unwrap();
    let mut paths: Vec<(&str, u64)> = artifacts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["path"].as_str().unwrap(), a["size"].as_u64().unwrap()))
        .collect();
    paths.sort();
    assert_eq!(paths, [("hello.txt", 6), ("sub/n.txt", 4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_url_on_an_internal_address_is_not_reached_unless_allowed() {
    let receiver = Receiver::start(0).await;
    let s = Server::start(Options::default()).await;
    let c = admin(&s);
    let (_, op) = c.post("/v1/operations", &operation("count")).await;
    let (status, run) = c
        .post(
            &format!("/v1/operations/{}/runs", op["id"].as_str().unwrap()),
            &json!({
                "params": {"count": 1},
                "response_url": format!("http://127.0.0.1:{}/hook", receiver.port),
            }),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap();
    let run = wait_run_until(&c, id, "a refused delivery", |r| {
        r["delivery"]["attempts"].as_i64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(run["delivery"]["state"], "pending", "{run}");
    let error = run["delivery"]["error"].as_str().unwrap();
    assert!(error.contains("127.0.0.1"), "{error}");
    assert!(receiver.hits().is_empty(), "a loopback address was reached");
    // A bad URL is refused at submit.
    let (status, body) = c
        .post(
            &format!("/v1/operations/{}/runs", op["id"].as_str().unwrap()),
            &json!({"params": {"count": 1}, "response_url": "ftp://x/y"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "response_url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_runs_follows_and_downloads() {
    let s = Server::start(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // The example the docs show is the operation of `operation("count")`.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/task-api/count.json"
    );
    let shown: Value = serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
    assert_eq!(shown, operation("count"), "examples/task-api/count.json");
    let out = common::cli_ok(&s, &["op", "create", example, "-o", "json"]).await;
    let op: Value = serde_json::from_slice(&out).unwrap();
    let op_id = op["id"].as_str().unwrap();

    // Submit and follow: the output streams to stdout, exit 0 when COMPLETE.
    let mut cmd = common::cli_command(
        &s,
        &[
            "run",
            "submit",
            op_id,
            "-p",
            "count=3",
            "-p",
            "greeting=bonjour",
            "--wait",
        ],
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done-3\n");
    let run_id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("submitted run "))
        .expect("the run's id")
        .trim()
        .to_string();

    // A bad value is refused by name, with a failing exit.
    let mut cmd = common::cli_command(&s, &["run", "submit", op_id, "-p", "count=500"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("params.count"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Download the artifacts; watch the finished run (its history, exit 0).
    let dl = dir.path().join("dl");
    common::cli_ok(
        &s,
        &[
            "run",
            "artifacts",
            &run_id,
            "--download",
            dl.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(std::fs::read(dl.join("hello.txt")).unwrap(), b"bonjour\n");
    assert_eq!(
        std::fs::read_to_string(dl.join("sub/n.txt")).unwrap(),
        seq_text(3)
    );
    let mut cmd = common::cli_command(&s, &["task", "watch", &run_id]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success());
    let history = String::from_utf8_lossy(&out.stderr);
    for state in ["QUEUED", "INITIALIZING", "RUNNING", "COMPLETE"] {
        assert!(history.contains(state), "{history}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_watch_follows_a_running_task_through_the_event_stream() {
    let s = Server::start(Options::default()).await;
    let c = admin(&s);
    // Running for a while, so the watcher most likely attaches before the end (its
    // history covers the other case): each change is printed once, as a line.
    let (status, body) = c
        .post(
            "/ga4gh/tes/v1/tasks",
            &json!({"executors": [{"image": BUSYBOX, "command": ["sh", "-c", "sleep 2; exit 3"]}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    let mut cmd = common::cli_command(&s, &["task", "watch", &id]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(!out.status.success(), "EXECUTOR_ERROR is a failing exit");
    let history = String::from_utf8_lossy(&out.stderr);
    assert!(history.contains("EXECUTOR_ERROR"), "{history}");
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines.len() >= 4, "one line per state change: {history}");
}

/// Poll `GET /v1/tasks/{id}` until `pred` holds.
async fn wait_task_until(
    c: &Client<'_>,
    id: &str,
    what: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let (_, t) = c.get(&format!("/v1/tasks/{id}")).await;
        if pred(&t) {
            return t;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "task {id} never reached {what}: {}\n{}",
            common::short(&t),
            c.s.server_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contextual_task_sees_its_contexts_and_secrets_and_is_kept_for_exec() {
    let s = Server::start(Options::default()).await;
    let ada = user(&s, "ada").await;
    let (status, cfg) = ada
        .post(
            "/v1/configs",
            &json!({"name": "cfg", "data": {"a.conf": "A=1\n", "b.conf": "B=2\n"}}),
        )
        .await;
    assert_eq!(status, 201, "{cfg}");
    let (status, secret) = ada
        .post(
            "/v1/secrets",
            &json!({"name": "api", "data": {"token": "s3cr3t-token", "cert": "CERT-BODY"}}),
        )
        .await;
    assert_eq!(status, 201, "{secret}");
    assert_eq!(secret["keys"], json!(["cert", "token"]));
    assert!(!secret.to_string().contains("s3cr3t"), "{secret}");
    let (_, shown) = ada.get("/v1/secrets/api").await;
    assert!(!shown.to_string().contains("s3cr3t"), "{shown}");
    // Sealed at rest: the database holds no value in the clear.
    for file in ["tessera.db", "tessera.db-wal"] {
        if let Ok(bytes) = std::fs::read(s.data_dir.join(file)) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("s3cr3t-token"), "{file} holds the secret");
            assert!(!text.contains("CERT-BODY"), "{file} holds the secret");
        }
    }
    let script = "for f in $(find /workspace /etc/app /creds -type f | sort); do \
                  printf '%s %s %s\\n' \"$f\" \"$(stat -c %a \"$f\")\" \"$(tr '\\n' '|' < \"$f\")\"; \
                  done; echo \"env=$API_TOKEN\"";
    let (status, agent) = ada
        .post(
            "/v1/agents",
            &json!({
                "name": "default",
                "image": BUSYBOX,
                "command": ["sh", "-c", script],
                "contexts": [{"text": "agent\n", "filePath": "task.md"}],
                "credentials": [
                    {"secret": "api", "key": "token", "env": "API_TOKEN"},
                    {"secret": "api", "key": "cert", "file_path": "/creds/cert"},
                    {"secret": "api", "key": "token", "filePath": "/creds/token", "mode": "0600"},
                ],
                "humanInTheLoop": {"keepAliveSeconds": 600},
            }),
        )
        .await;
    assert_eq!(status, 201, "{agent}");

    // A credential naming a missing secret key is refused by name.
    let (status, body) = ada
        .post(
            "/v1/agents",
            &json!({"name": "broken", "image": BUSYBOX, "command": ["true"],
                    "credentials": [{"secret": "api", "key": "nope", "env": "X"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = ada.post("/v1/tasks", &json!({"agentRef": "broken"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "agent.credentials[0]");
    let (status, body) = ada
        .post(
            "/v1/tasks",
            &json!({"contexts": [{"config": "nope", "dirPath": "x"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"][0]["field"], "contexts[0].config");

    let (status, task) = ada
        .post(
            "/v1/tasks",
            &json!({
                "name": "look",
                "contexts": [
                    {"text": "task\n", "filePath": "task.md"},
                    {"config": "cfg", "key": "a.conf", "file_path": "/etc/app/a.conf"},
                    {"config": "cfg", "dirPath": "conf"},
                ],
            }),
        )
        .await;
    assert_eq!(status, 201, "{task}");
    assert_eq!(task["agent_ref"], "default");
    assert_eq!(task["origin"], "task");
    let id = task["id"].as_str().unwrap().to_string();
    let kept = wait_task_until(&ada, &id, "being kept", |t| {
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("kept until"))
    })
    .await;
    assert_eq!(kept["phase"], "Running");
    let stdout = kept["task"]["logs"][0]["logs"][0]["stdout"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    let modes_of = |path: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{path} ")))
            .map(|l| l.to_string())
    };
    assert_eq!(
        modes_of("/creds/cert").as_deref(),
        Some("/creds/cert 400 CERT-BODY"),
        "{stdout}"
    );
    assert_eq!(
        modes_of("/creds/token").as_deref(),
        Some("/creds/token 600 s3cr3t-token"),
        "{stdout}"
    );
    let files: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| !l.starts_with("env="))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let path = parts.next().unwrap();
            parts.next();
            (path, parts.next().unwrap_or(""))
        })
        .collect();
    assert_eq!(
        files,
        [
            ("/creds/cert", "CERT-BODY"),
            ("/creds/token", "s3cr3t-token"),
            ("/etc/app/a.conf", "A=1|"),
            ("/workspace/conf/a.conf", "A=1|"),
            ("/workspace/conf/b.conf", "B=2|"),
            ("/workspace/task.md", "agent|task|"),
        ],
        "exactly these files: {stdout}"
    );
    assert!(stdout.contains("env=s3cr3t-token"), "{stdout}");
    // The secret is nowhere in the stored task document.
    let (_, full) = ada
        .get(&format!("/ga4gh/tes/v1/tasks/{id}?view=FULL"))
        .await;
    let mut doc = full.clone();
    doc["logs"] = Value::Null;
    assert!(!doc.to_string().contains("s3cr3t"), "{doc}");

    // tessera task exec runs in the kept container: the workspace is there.
    let mut cmd = common::cli_command(
        &s,
        &["task", "exec", &id, "--", "cat", "/workspace/task.md"],
    );
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "agent\ntask\n");
    let mut cmd = common::cli_command(&s, &["task", "exec", &id, "--", "sh", "-c", "exit 3"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    // The line-by-line shell.
    let mut cmd = common::cli_command(&s, &["task", "exec", &id]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        std::io::Write::write_all(
            child.stdin.as_mut().unwrap(),
            b"echo one\nls /workspace/conf\nexit\n",
        )
        .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "one\na.conf\nb.conf\n"
    );

    // Canceling ends the keep-alive: CANCELED, and the container is gone.
    let (status, _) = ada
        .post(&format!("/v1/tasks/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let done = wait_task_until(&ada, &id, "CANCELED", |t| t["state"] == "CANCELED").await;
    assert_eq!(done["phase"], "Failed");
    let left = common::docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("name={id}"),
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(left.trim(), "", "containers left: {left}");
    let (status, body) = ada
        .post(
            &format!("/v1/tasks/{id}/exec"),
            &json!({"command": ["true"]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Listed by the Task API (and by TES: the same task).
    let (_, list) = ada.get("/v1/tasks").await;
    assert_eq!(list["tasks"][0]["id"], id.as_str(), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_secrets_agents_and_tasks_of_another_group_do_not_exist() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    for (path, body) in [
        ("/v1/configs", json!({"name": "cfg", "data": {"k": "v"}})),
        ("/v1/secrets", json!({"name": "sec", "data": {"k": "v"}})),
        (
            "/v1/agents",
            json!({"name": "default", "image": BUSYBOX, "command": ["true"]}),
        ),
    ] {
        let (status, b) = ada.post(path, &body).await;
        assert_eq!(status, 201, "{path}: {b}");
        // Bob cannot create in ada's group, nor see it.
        let (status, _) = bob.post(&format!("{path}?group=ada"), &body).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, task) = ada.post("/v1/tasks", &json!({})).await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, "/v1/configs/cfg?group=ada".to_string()),
        (Method::PUT, "/v1/configs/cfg?group=ada".to_string()),
        (Method::DELETE, "/v1/configs/cfg?group=ada".to_string()),
        (Method::GET, "/v1/secrets/sec?group=ada".to_string()),
        (Method::PUT, "/v1/secrets/sec?group=ada".to_string()),
        (Method::DELETE, "/v1/secrets/sec?group=ada".to_string()),
        (Method::GET, "/v1/agents/default?group=ada".to_string()),
        (Method::PUT, "/v1/agents/default?group=ada".to_string()),
        (Method::DELETE, "/v1/agents/default?group=ada".to_string()),
        (Method::GET, format!("/v1/tasks/{id}")),
        (Method::POST, format!("/v1/tasks/{id}/cancel")),
        (Method::POST, format!("/v1/tasks/{id}/exec")),
    ] {
        let body = json!({"data": {"k": "x"}, "command": ["true"]});
        let (status, answer) = bob.call(method.clone(), &path, Some(&body)).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    for path in ["/v1/configs", "/v1/secrets", "/v1/agents", "/v1/tasks"] {
        let (status, list) = bob.get(path).await;
        assert_eq!(status, 200);
        let key = path.trim_start_matches("/v1/");
        assert_eq!(list[key], json!([]), "{path}: {list}");
        let (_, list) = bob.get(&format!("{path}?group=ada")).await;
        assert_eq!(list[key], json!([]), "{path}?group=ada: {list}");
    }
    // A Read member sees them, but may not change them or run tasks.
    admin(&s)
        .call(
            Method::PUT,
            "/v1/groups/ada/members/bob",
            Some(&json!({"role": "read"})),
        )
        .await;
    let (status, _) = bob.get("/v1/configs/cfg?group=ada").await;
    assert_eq!(status, 200);
    let (status, _) = bob
        .call(
            Method::PUT,
            "/v1/configs/cfg?group=ada",
            Some(&json!({"data": {"k": "x"}})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = bob.post("/v1/tasks?group=ada", &json!({})).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_tasks_make_named_labelled_children_and_belong_to_their_group() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let ada = user(&s, "ada").await;
    let bob = user(&s, "bob").await;
    // The examples the docs show: the agent (with the secret it names) and the cron task.
    let example = |name: &str| -> Value {
        let path = format!(
            "{}/../../examples/task-api/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let (status, _) = ada
        .post(
            "/v1/secrets",
            &json!({"name": "api", "data": {"token": "t"}}),
        )
        .await;
    assert_eq!(status, 201);
    let (status, body) = ada.post("/v1/agents", &example("agent.json")).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = ada
        .post(
            "/v1/cron-tasks",
            &json!({"name": "bad", "schedule": "61 * * * *", "timeZone": "Nowhere/City"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["schedule", "time_zone"]);
    let (status, cron) = ada.post("/v1/cron-tasks", &example("cron.json")).await;
    assert_eq!(status, 201, "{cron}");
    assert_eq!(cron["concurrency_policy"], "Forbid");
    let next = cron["status"]["next_schedule_time"].as_str().unwrap();
    assert!(
        next.ends_with("02:00:00Z"),
        "03:00 in Berlin is 02:00 UTC in winter: {next}"
    );

    let before = OffsetDateTime::now_utc().unix_timestamp();
    let (status, child) = ada.post("/v1/cron-tasks/nightly/trigger", &json!({})).await;
    assert_eq!(status, 201, "{child}");
    let name = child["name"].as_str().unwrap();
    let ts: i64 = name.strip_prefix("nightly-").unwrap().parse().unwrap();
    assert!(ts >= before && ts <= OffsetDateTime::now_utc().unix_timestamp());
    assert_eq!(child["labels"]["tessera.cron"], "nightly");
    assert_eq!(child["origin"], "cron");
    // Forbid: no second child while the first has not ended.
    let (status, body) = ada.post("/v1/cron-tasks/nightly/trigger", &json!({})).await;
    assert_eq!(status, 409, "{body}");
    let (_, shown) = ada.get("/v1/cron-tasks/nightly").await;
    assert_eq!(shown["status"]["active"], json!([child["id"]]));
    let (_, tasks) = ada.get("/v1/tasks?origin=cron").await;
    assert_eq!(tasks["tasks"][0]["id"], child["id"]);

    for (method, path) in [
        (Method::GET, "/v1/cron-tasks/nightly?group=ada"),
        (Method::PUT, "/v1/cron-tasks/nightly?group=ada"),
        (Method::DELETE, "/v1/cron-tasks/nightly?group=ada"),
        (Method::POST, "/v1/cron-tasks/nightly/trigger?group=ada"),
    ] {
        let body = json!({"name": "nightly", "schedule": "* * * * *"});
        let (status, answer) = bob.call(method.clone(), path, Some(&body)).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
    }
    let (status, _) = bob
        .post(
            "/v1/cron-tasks?group=ada",
            &json!({"name": "x", "schedule": "* * * * *"}),
        )
        .await;
    assert_eq!(status, 404);
    let (_, list) = bob.get("/v1/cron-tasks").await;
    assert_eq!(list["cron_tasks"], json!([]));
    // Suspending keeps it listed, without a next time.
    let (status, suspended) = ada
        .call(
            Method::PUT,
            "/v1/cron-tasks/nightly",
            Some(&json!({"name": "nightly", "schedule": "0 3 * * *", "suspend": true})),
        )
        .await;
    assert_eq!(status, 200, "{suspended}");
    assert_eq!(suspended["status"]["next_schedule_time"], Value::Null);
    let (status, _) = ada
        .call(Method::DELETE, "/v1/cron-tasks/nightly", None)
        .await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_runs_at_most_its_max_concurrent_tasks() {
    let s = Server::start(Options::default()).await;
    let c = admin(&s);
    let (status, body) = c
        .post(
            "/v1/agents",
            &json!({"name": "one", "image": BUSYBOX, "command": ["sh", "-c", "sleep 1"],
                    "max_concurrent_tasks": 1}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, t) = c.post("/v1/tasks", &json!({"agent_ref": "one"})).await;
        assert_eq!(status, 201, "{t}");
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    // While one runs, another waits and says why.
    wait_task_until(&c, &ids[2], "waiting on the agent's limit", |t| {
        t["reason"]
            .as_str()
            .is_some_and(|r| r.contains("max_concurrent_tasks"))
    })
    .await;
    // Each starts only after the one before ended (store event order).
    let mut spans = Vec::new();
    for id in &ids {
        let t = wait_task_until(&c, id, "COMPLETE", |t| t["state"] == "COMPLETE").await;
        let seq_of = |to: &str| {
            t["events"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["to_state"] == to)
                .and_then(|e| e["seq"].as_i64())
                .unwrap()
        };
        spans.push((seq_of("INITIALIZING"), seq_of("COMPLETE")));
    }
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 > pair[0].1, "two ran at once: {spans:?}");
    }
}

/// Upload, versions, ranges and listing of one dataset in `bucket` under `prefix`.
async fn datasets_keep_versions_and_serve_ranges(s: &Server, bucket: &str, prefix: &str) {
    let c = admin(s);
    let key = format!("{prefix}/d.txt");
    let url = format!("{}/v1/data/{bucket}/{key}", s.url);
    for (rev, body) in [("1", "hello world"), ("2", "HELLO WORLD!!")] {
        let r = s
            .http
            .put(&url)
            .bearer_auth(&s.token)
            .header("content-type", "text/plain; charset=utf-8")
            .header("x-tessera-meta-rev", rev)
            .header("x-tessera-meta-source", "lab-a")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    // Content type and metadata come back with the object, and each version keeps its
    // own.
    let described = |u: String| {
        let req = s.http.head(u).bearer_auth(&s.token);
        async move {
            let r = req.send().await.unwrap();
            let h = |k: &str| r.headers().get(k).map(|v| v.to_str().unwrap().to_string());
            (
                h("content-type"),
                h("x-tessera-meta-rev"),
                h("x-tessera-meta-source"),
            )
        }
    };
    assert_eq!(
        described(url.clone()).await,
        (
            Some("text/plain; charset=utf-8".into()),
            Some("2".into()),
            Some("lab-a".into())
        )
    );
    let r = s
        .http
        .put(format!("{url}.bad"))
        .bearer_auth(&s.token)
        .header("x-tessera-meta-Bad_Name", "x")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "a metadata name with '_' is refused");
    let (status, now) = c.bytes(&format!("/v1/data/{bucket}/{key}")).await;
    assert_eq!((status, now.as_slice()), (200, b"HELLO WORLD!!".as_slice()));
    let (status, versions) = c.get(&format!("/v1/data/{bucket}/{key}?versions")).await;
    assert_eq!(status, 200, "{versions}");
    let list = versions["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{versions}");
    assert_eq!(
        (list[0]["current"].as_bool(), list[0]["size"].as_u64()),
        (Some(true), Some(13))
    );
    assert_eq!(
        (list[1]["current"].as_bool(), list[1]["size"].as_u64()),
        (Some(false), Some(11))
    );
    let old = list[1]["version"].as_str().unwrap();
    let (status, before) = c
        .bytes(&format!("/v1/data/{bucket}/{key}?version={old}"))
        .await;
    assert_eq!(
        (status, before.as_slice()),
        (200, b"hello world".as_slice())
    );
    let (_, rev, _) = described(format!("{url}?version={old}")).await;
    assert_eq!(
        rev.as_deref(),
        Some("1"),
        "the earlier version keeps its metadata"
    );
    // The listing shows the object once; its versions are not objects of their own.
    let (_, listed) = c.get(&format!("/v1/data/{bucket}?prefix={prefix}/")).await;
    let keys: Vec<&str> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, [key.as_str()], "{listed}");
    // Ranges, of the current version and an earlier one.
    let range = |spec: &'static str, version: Option<String>| {
        let mut u = url.clone();
        if let Some(v) = version {
            u = format!("{u}?version={v}");
        }
        let req = s.http.get(u).bearer_auth(&s.token).header("range", spec);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let cr = r
                .headers()
                .get("content-range")
                .map(|v| v.to_str().unwrap().to_string());
            (status, cr, r.bytes().await.unwrap().to_vec())
        }
    };
    assert_eq!(
        range("bytes=0-4", None).await,
        (206, Some("bytes 0-4/13".into()), b"HELLO".to_vec())
    );
    assert_eq!(
        range("bytes=-3", None).await,
        (206, Some("bytes 10-12/13".into()), b"D!!".to_vec())
    );
    assert_eq!(
        range("bytes=6-", Some(old.to_string())).await,
        (206, Some("bytes 6-10/11".into()), b"world".to_vec())
    );
    let (status, cr, _) = range("bytes=100-", None).await;
    assert_eq!((status, cr.as_deref()), (416, Some("bytes */13")));
    // The versions area is not written through the API.
    let r = s
        .http
        .put(format!("{}/v1/data/{bucket}/.versions/{key}/x", s.url))
        .bearer_auth(&s.token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_in_the_embedded_store_are_versioned_ranged_and_run_inputs() {
    let s = Server::start(Options::default()).await;
    datasets_keep_versions_and_serve_ranges(&s, "lab", "sets").await;
    // A run reads a dataset by bucket and key: the current version.
    let c = admin(&s);
    let (status, op) = c
        .post(
            "/v1/operations",
            &json!({"name": "copy", "image": BUSYBOX, "output_dir": "/out",
                    "command": ["sh", "-c", "mkdir -p /out && cp /inputs/sets/d.txt /out/copy.txt"]}),
        )
        .await;
    assert_eq!(status, 201, "{op}");
    let (status, run) = c
        .post(
            &format!("/v1/operations/{}/runs", op["id"].as_str().unwrap()),
            &json!({"inputs": [{"bucket": "lab", "key": "sets/d.txt"}]}),
        )
        .await;
    assert_eq!(status, 201, "{run}");
    let id = run["id"].as_str().unwrap();
    assert_eq!(wait_run(&c, id).await["state"], "COMPLETE");
    let (_, copy) = c.bytes(&format!("/v1/runs/{id}/artifacts/copy.txt")).await;
    assert_eq!(copy, b"HELLO WORLD!!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_on_a_real_s3_server_are_versioned_and_ranged() {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("TESSERA_TEST_S3_ENDPOINT") else {
        assert!(
            var("TESSERA_REQUIRE_ALL").is_none(),
            "TESSERA_TEST_S3_ENDPOINT is not set (scripts/garage.sh sets it)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "[s3]\nendpoint = {endpoint:?}\nregion = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
            var("TESSERA_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
            var("TESSERA_TEST_S3_ACCESS_KEY").unwrap(),
            var("TESSERA_TEST_S3_SECRET_KEY").unwrap(),
        ),
    )
    .unwrap();
    let s = Server::start(Options {
        executor: "none",
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Options::default()
    })
    .await;
    let bucket = var("TESSERA_TEST_S3_BUCKET").unwrap();
    let prefix = format!("datasets-{}-{}", std::process::id(), tessera_id_suffix());
    datasets_keep_versions_and_serve_ranges(&s, &bucket, &prefix).await;
}

/// A suffix that differs between runs (keys in the shared S3 bucket).
fn tessera_id_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
