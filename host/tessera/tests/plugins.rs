//! Plugins over the REST API and the CLI, on a real server with real Docker: the built-in
//! router, validation of uploads, a misbehaving router that the host survives, rollback,
//! deletion rules, and bindings that survive a restart.

mod common;

use common::{Options, Server, simple_task, tessera_bin};
use serde_json::{Value, json};
use std::process::Command;

fn component(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../plugin-runtime/tests/components/{name}.wat",
        env!("CARGO_MANIFEST_DIR")
    );
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn manifest(name: &str, version: &str, extra: &str) -> String {
    format!("name = \"{name}\"\nversion = \"{version}\"\nworld = \"router\"\n{extra}")
}

async fn plugins(s: &Server) -> Value {
    let (status, body) = s.get_json(&format!("{}/v1/plugins", s.url)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The plugin called `name` in a `GET /v1/plugins` answer.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["plugins"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

async fn activate(s: &Server, name: &str, version: &str) -> Value {
    let (status, body) = s
        .post_json(
            &format!("{}/v1/plugins/{name}/versions/{version}/activate", s.url),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "activate {name}@{version}: {body}");
    body
}

/// The value of one series on `/metrics` (`name{labels}` exactly), if it is there.
async fn metric(s: &Server, series: &str) -> Option<f64> {
    let text = s.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The `tessera plugin …` CLI against this server.
fn cli(s: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new(tessera_bin())
        .arg("plugin")
        .args(args)
        .args(["--server", &s.url, "--token", &s.token])
        .output()
        .expect("running tessera plugin");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn the_builtin_router_is_installed_bound_and_routes_tasks() {
    let s = Server::start(Options::default()).await;
    let list = plugins(&s).await;
    let p = named(&list, "router-default");
    assert_eq!(p["world"], "router");
    assert_eq!(p["versions"][0]["origin"], "builtin");
    assert_eq!(p["bindings"][0]["scope"], "");

    let id = s.create(&simple_task(&["true"])).await;
    assert_eq!(s.wait_done(&id).await["state"], "COMPLETE");

    let (status, shown) = s
        .get_json(&format!("{}/v1/plugins/router-default", s.url))
        .await;
    assert_eq!(status, 200);
    let v = &shown["versions"][0];
    assert!(
        v["exports"]
            .to_string()
            .contains("tessera:plugin/routing@0.2.0"),
        "{v}"
    );
    assert!(
        v["imports"]
            .to_string()
            .contains("tessera:plugin/log@0.1.0"),
        "{v}"
    );
    assert!(v["calls"][0]["calls"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["calls"][0]["p50_us"].as_f64().is_some(), "{v}");
    // The same calls on /metrics, for Prometheus.
    let binding = r#"world="router",scope="",plugin="router-default",version="0.2.0""#;
    let calls = metric(&s, &format!("tessera_plugin_calls_total{{{binding}}}")).await;
    assert!(calls.is_some_and(|n| n >= 1.0), "{calls:?}");
    let errors = format!("tessera_plugin_errors_total{{{binding},kind=\"trap\"}}");
    assert_eq!(metric(&s, &errors).await, Some(0.0));

    let (ok, out) = cli(&s, &["list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("router-default") && out.contains("builtin"),
        "{out}"
    );
}

#[tokio::test]
async fn uploads_are_checked_against_their_world_before_they_are_stored() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            &manifest("x", "1", ""),
            b"definitely not wasm".to_vec(),
            "not a WebAssembly component",
        ),
        (
            "name = \"x\"\nversion = \"1\"\nworld = \"notifier\"\n",
            component("first-fit"),
            "notify",
        ),
        (
            &manifest("x", "1", "timeout_ms = 5\n"),
            component("first-fit"),
            "timeout_ms",
        ),
        (&manifest("../x", "1", ""), component("first-fit"), "name"),
    ];
    for (m, bytes, says) in cases {
        let (status, body) = s.upload_plugin(m, bytes).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_plugin", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(says),
            "{says}: {body}"
        );
    }
    // Only the built-ins are installed: nothing refused was stored.
    let names: Vec<String> = plugins(&s).await["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "engine-airflow",
            "filer-http",
            "filer-s3",
            "notifier-webhook",
            "router-default"
        ]
    );

    // Without a token: 401. With: stored; the same version with other bytes: 409.
    let r = s
        .http
        .post(format!("{}/v1/plugins", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, body) = s
        .upload_plugin(&manifest("first-fit", "1.0.0", ""), component("first-fit"))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["world"], "router");
    let (status, body) = s
        .upload_plugin(&manifest("first-fit", "1.0.0", ""), component("refuse"))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "conflict");
    // Unknown names and versions are 404.
    let (status, _) = s.get_json(&format!("{}/v1/plugins/nope", s.url)).await;
    assert_eq!(status, 404);
    let (status, body) = s
        .post_json(
            &format!("{}/v1/plugins/first-fit/versions/9.9/activate", s.url),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_misbehaving_router_keeps_tasks_queued_and_rollback_recovers() {
    let s = Server::start(Options::default()).await;
    // A router that never answers, with a short deadline.
    let (status, body) = s
        .upload_plugin(
            &manifest("spinner", "0.1.0", "[limits]\ntimeout-ms = 20\n"),
            component("spin"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    activate(&s, "spinner", "0.1.0").await;

    let id = s.create(&simple_task(&["true"])).await;
    let mut reason = String::new();
    for _ in 0..200 {
        reason = s.status(&id).await["reason"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if reason.contains("deadline") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        reason.contains("spinner@0.1.0") && reason.contains("deadline"),
        "{reason}"
    );
    assert_eq!(s.task(&id, "MINIMAL").await["state"], "QUEUED");
    let (status, _) = s.get_json(&format!("{}/healthz", s.url)).await;
    assert_eq!(status, 200, "the host survives");
    let shown = s.get_json(&format!("{}/v1/plugins/spinner", s.url)).await.1;
    assert!(
        shown["versions"][0]["calls"][0]["errors_by_kind"]["timeout"]
            .as_u64()
            .unwrap()
            >= 1,
        "{shown}"
    );
    let timeouts = r#"tessera_plugin_errors_total{world="router",scope="",plugin="spinner",version="0.1.0",kind="timeout"}"#;
    let n = metric(&s, timeouts).await;
    assert!(n.is_some_and(|n| n >= 1.0), "{n:?}");

    // The version in use cannot be deleted; rolling back serves the built-in again and
    // the waiting task runs.
    let (status, body) = s
        .req(
            reqwest::Method::DELETE,
            &format!("{}/v1/plugins/spinner/versions/0.1.0", s.url),
        )
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 409, "{body:?}");
    let (ok, out) = cli(&s, &["rollback", "spinner"]);
    assert!(ok && out.contains("router-default@0.2.0"), "{out}");
    assert_eq!(s.wait_done(&id).await["state"], "COMPLETE");
    let (ok, out) = cli(&s, &["rm", "spinner", "0.1.0"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&s, &["rm", "router-default", "0.2.0"]);
    assert!(!ok && out.contains("active"), "{out}");
}

#[tokio::test]
async fn a_router_that_exhausts_its_memory_fails_only_its_call() {
    let s = Server::start(Options::default()).await;
    let (status, body) = s
        .upload_plugin(
            &manifest("hog", "0.1.0", "[limits]\nmemory-bytes = 33554432\n"),
            component("hog"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    activate(&s, "hog", "0.1.0").await;
    let id = s.create(&simple_task(&["true"])).await;
    let mut reason = String::new();
    for _ in 0..200 {
        reason = s.status(&id).await["reason"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if reason.contains("hog@0.1.0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        reason.contains("memory") || reason.contains("trapped"),
        "{reason}"
    );
    activate(&s, "router-default", "0.2.0").await;
    assert_eq!(s.wait_done(&id).await["state"], "COMPLETE");
}

#[tokio::test]
async fn installed_plugins_and_bindings_survive_a_restart() {
    let mut s = Server::start(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("first-fit.wasm");
    std::fs::write(&wasm, component("first-fit")).unwrap();
    std::fs::write(
        dir.path().join("manifest.toml"),
        manifest("first-fit", "1.0.0", ""),
    )
    .unwrap();
    let (ok, out) = cli(&s, &["install", wasm.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    assert!(out.contains("installed first-fit@1.0.0"), "{out}");

    s.kill9();
    s.spawn().await;
    let list = plugins(&s).await;
    let ff = named(&list, "first-fit");
    assert_eq!(ff["bindings"][0]["version"], "1.0.0", "{list}");
    let id = s.create(&simple_task(&["true"])).await;
    assert_eq!(s.wait_done(&id).await["state"], "COMPLETE");
    let (ok, out) = cli(&s, &["show", "first-fit"]);
    assert!(ok && out.contains("calls: "), "{out}");
}

#[tokio::test]
async fn an_engine_adapter_is_installed_and_bound_to_its_engine_name() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let m = "name = \"echo-engine\"\nversion = \"1.0.0\"\nworld = \"engine-adapter\"\n";
    // A router's component is not an engine adapter.
    let (status, body) = s.upload_plugin(m, component("first-fit")).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("does not export tessera:plugin/engine@0.2.0"),
        "{body}"
    );
    let (status, body) = s.upload_plugin(m, component("engine-echo")).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["world"], "engine-adapter");
    assert!(
        body["exports"]
            .as_array()
            .unwrap()
            .contains(&json!("tessera:plugin/engine@0.1.0")),
        "{body}"
    );

    // An adapter serves one engine: activation must name it.
    let url = format!("{}/v1/plugins/echo-engine/versions/1.0.0/activate", s.url);
    let (status, body) = s.post_json(&url, &json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("engine"),
        "{body}"
    );
    let (status, body) = s.post_json(&url, &json!({"scope": "echo"})).await;
    assert_eq!(status, 200, "{body}");

    let (ok, out) = cli(&s, &["show", "echo-engine"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("engine-adapter") && out.contains("echo"),
        "{out}"
    );
}
