//! TES v1.1.0 conformance over HTTP, against a server whose executor is off (tasks stay
//! QUEUED), so these tests need no Docker.

mod common;

use common::{Options, Server, simple_task};
use serde_json::{Value, json};

async fn api_server() -> Server {
    Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[tokio::test]
async fn service_info_describes_storage_and_backend_parameters() {
    let s = api_server().await;
    let (status, info) = s.get_json(&s.tes("/service-info")).await;
    assert_eq!(status, 200);
    assert_eq!(info["type"]["artifact"], "tes");
    assert_eq!(info["type"]["version"], "1.1.0");
    let storage: Vec<&str> = info["storage"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The allowed directory, and the schemes the default filers serve.
    assert_eq!(
        storage,
        [
            format!("file://{}", s.allowed.display()),
            "http://".into(),
            "https://".into(),
            "s3://".into()
        ]
    );
    assert_eq!(
        info["tesResources_backend_parameters"],
        json!(["network", "max_run_time"])
    );
}

#[tokio::test]
async fn views_show_exactly_what_the_spec_says() {
    let s = api_server().await;
    let mut task = simple_task(&["echo", "hi"]);
    task["inputs"] = json!([{"path": "/in/a", "content": "hello"}]);
    task["tags"] = json!({"project": "x"});
    let id = s.create(&task).await;

    let (status, minimal) = s.get_json(&s.tes(&format!("/tasks/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(
        keys(&minimal),
        ["id", "state"],
        "MINIMAL is the default and has only id and state"
    );
    assert_eq!(minimal["state"], "QUEUED");

    let basic = s.task(&id, "BASIC").await;
    assert_eq!(basic["name"], "e2e");
    assert_eq!(basic["tags"]["project"], "x");
    assert!(
        basic["inputs"][0].get("content").is_none(),
        "BASIC omits input content"
    );
    assert!(basic["creation_time"].is_string());

    let full = s.task(&id, "FULL").await;
    assert_eq!(full["inputs"][0]["content"], "hello");

    let (status, err) = s
        .get_json(&s.tes(&format!("/tasks/{id}?view=EVERYTHING")))
        .await;
    assert_eq!(status, 400);
    assert_eq!(err["code"], "invalid_parameter");
}

#[tokio::test]
async fn list_pages_newest_first_with_keyset_tokens_and_filters() {
    let s = api_server().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut t = simple_task(&["true"]);
        t["name"] = json!(if i % 2 == 0 {
            format!("even-{i}")
        } else {
            format!("odd-{i}")
        });
        t["tags"] = if i < 3 {
            json!({"batch": "a", "k": ""})
        } else {
            json!({"batch": "b"})
        };
        ids.push(s.create(&t).await);
    }

    let (status, empty_filter) = s.get_json(&s.tes("/tasks?name_prefix=nomatch")).await;
    assert_eq!(status, 200);
    assert_eq!(
        empty_filter,
        json!({"tasks": []}),
        "tasks is present and empty, no token"
    );

    // Page through 3 at a time while creating new tasks between pages: no duplicates,
    // no gaps, newest first, token exactly when more exist.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let url = match &token {
            Some(t) => s.tes(&format!("/tasks?page_size=3&page_token={t}")),
            None => s.tes("/tasks?page_size=3"),
        };
        let (status, page) = s.get_json(&url).await;
        assert_eq!(status, 200, "{page}");
        for t in page["tasks"].as_array().unwrap() {
            assert_eq!(keys(t), ["id", "state"]);
            seen.push(t["id"].as_str().unwrap().to_string());
        }
        s.create(&simple_task(&["true"])).await;
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let names = |v: &Value| -> Vec<String> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let (_, odd) = s
        .get_json(&s.tes("/tasks?name_prefix=odd-&view=BASIC"))
        .await;
    assert_eq!(names(&odd), ["odd-5", "odd-3", "odd-1"]);
    let (_, pct) = s.get_json(&s.tes("/tasks?name_prefix=%25")).await;
    assert_eq!(pct["tasks"], json!([]), "% is not a wildcard");

    let (_, a) = s
        .get_json(&s.tes("/tasks?tag_key=batch&tag_value=a&view=BASIC"))
        .await;
    assert_eq!(names(&a), ["even-2", "odd-1", "even-0"]);
    let (_, k_exists) = s.get_json(&s.tes("/tasks?tag_key=k&view=BASIC")).await;
    assert_eq!(
        names(&k_exists).len(),
        3,
        "an empty tag_value means the key must exist"
    );
    let (_, and) = s
        .get_json(&s.tes("/tasks?tag_key=batch&tag_value=b&name_prefix=even&view=BASIC"))
        .await;
    assert_eq!(names(&and), ["even-6", "even-4"]);
    let (_, queued) = s
        .get_json(&s.tes("/tasks?state=QUEUED&page_size=2047"))
        .await;
    assert_eq!(
        queued["tasks"].as_array().unwrap().len(),
        7 + seen.len().div_ceil(3)
    );
    let (_, none) = s.get_json(&s.tes("/tasks?state=COMPLETE")).await;
    assert_eq!(none["tasks"], json!([]));

    let (status, err) = s.get_json(&s.tes("/tasks?page_token=garbage")).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_page_token"))
    );
    let (status, err) = s.get_json(&s.tes("/tasks?state=DONE")).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (400, Some("invalid_parameter"))
    );
    let (status, big) = s.get_json(&s.tes("/tasks?page_size=100000")).await;
    assert_eq!(
        status, 200,
        "page_size at or above 2048 is clamped to 2047: {big}"
    );
}

#[tokio::test]
async fn invalid_tasks_get_400_with_the_field_and_nothing_is_stored() {
    let s = api_server().await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"name": "x"}), "executors"),
        (json!({"executors": []}), "executors"),
        (
            json!({"executors": [{"command": ["true"]}]}),
            "executors[0].image",
        ),
        (
            json!({"executors": [{"image": "busybox"}]}),
            "executors[0].command",
        ),
        (
            json!({"executors": [{"image": "b", "command": ["true"]}], "inputs": [{"path": "/a"}]}),
            "inputs[0].url",
        ),
        (
            json!({"executors": [{"image": "b", "command": ["true"]}], "inputs": [{"path": "../a", "content": "x"}]}),
            "inputs[0].path",
        ),
        (
            json!({"executors": [{"image": "b", "command": ["true"]}], "inputs": [{"path": "/a/../../etc", "content": "x"}]}),
            "inputs[0].path",
        ),
        (
            json!({"executors": [{"image": "b", "command": ["true"]}], "inputs": [{"path": "/a", "url": "file:///etc/passwd"}]}),
            "inputs[0].url",
        ),
        (
            json!({"executors": [{"image": "b", "command": ["true"]}], "outputs": [{"path": "/o", "url": "file:///tmp/x"}]}),
            "outputs[0].url",
        ),
        (
            json!({"executors": [{"image": "b", "command": ["true"], "workdir": "relative"}]}),
            "executors[0].workdir",
        ),
        (
            json!({"executors": [{"image": "b", "command": ["true"]}], "resources": {"backend_parameters": {"VmSize": "big"}, "backend_parameters_strict": true}}),
            "resources.backend_parameters.VmSize",
        ),
    ];
    for (task, field) in cases {
        let (status, err) = s.post_json(&s.tes("/tasks"), &task).await;
        assert_eq!(status, 400, "{task} should be refused: {err}");
        assert_eq!(err["code"], "invalid_task", "{err}");
        assert!(
            err["message"].as_str().unwrap().contains(field),
            "{err} should name {field}"
        );
        assert!(
            err["details"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["field"] == field),
            "{err} should list {field}"
        );
    }
    // Wrong types and broken JSON are 400 malformed_body with where it broke.
    for (body, hint) in [
        (
            r#"{"executors": [{"image": "b", "command": "true"}]}"#,
            "executors[0].command",
        ),
        (
            r#"{"executors": [{"image": "b", "command": ["true"]}], "resources": {"cpu_cores": "four"}}"#,
            "resources.cpu_cores",
        ),
        (r#"{"executors": ["#, ""),
        ("", ""),
        ("[1,2]", ""),
    ] {
        let (status, err) = s.post_raw(&s.tes("/tasks"), body.to_string()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["code"], "malformed_body");
        assert!(err["message"].as_str().unwrap().contains(hint), "{err}");
    }
    let (_, list) = s.get_json(&s.tes("/tasks")).await;
    assert_eq!(list["tasks"], json!([]), "no bad document was stored");
}

#[tokio::test]
async fn unsupported_backend_parameters_are_dropped_with_a_warning_when_not_strict() {
    let s = api_server().await;
    let mut t = simple_task(&["true"]);
    t["resources"] = json!({"backend_parameters": {"VmSize": "big", "NETWORK": "none"}});
    let id = s.create(&t).await;
    let full = s.task(&id, "FULL").await;
    assert_eq!(
        full["resources"]["backend_parameters"],
        json!({"NETWORK": "none"})
    );
    let sys = full["logs"][0]["system_logs"].to_string();
    assert!(sys.contains("VmSize"), "{full}");
}

#[tokio::test]
async fn huge_bodies_get_413_and_the_server_keeps_serving() {
    let s = Server::start(Options {
        executor: "none",
        extra_args: vec!["--max-body-bytes".into(), "300000".into()],
        ..Options::default()
    })
    .await;
    let mut t = simple_task(&["true"]);
    t["inputs"] = json!([{"path": "/in", "content": "x".repeat(200 * 1024)}]);
    let id = s.create(&t).await;
    assert_eq!(
        s.task(&id, "FULL").await["inputs"][0]["content"]
            .as_str()
            .unwrap()
            .len(),
        200 * 1024
    );
    t["inputs"] = json!([{"path": "/in", "content": "x".repeat(400 * 1024)}]);
    let (status, err) = s.post_json(&s.tes("/tasks"), &t).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["code"], "body_too_large");
    let (status, _) = s.get_json(&s.tes("/service-info")).await;
    assert_eq!(status, 200);

    // Every endpoint of the served document that takes a JSON body says so the same way.
    let (_, doc) = s.get_json(&format!("{}/v1/openapi.json", s.url)).await;
    let huge = serde_json::to_vec(&json!({"name": "x".repeat(400 * 1024)})).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if op["requestBody"]["content"]
                .get("application/json")
                .is_none()
            {
                continue;
            }
            let url = format!("{}{}", s.url, path.replace(['{', '}'], ""));
            let r = s
                .req(method.to_uppercase().parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body(huge.clone())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            assert_eq!(
                (status, body["code"].as_str()),
                (413, Some("body_too_large")),
                "{method} {path}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} endpoints take a JSON body");
}

#[tokio::test]
async fn unknown_ids_are_404_and_cancel_is_idempotent() {
    let s = api_server().await;
    for id in ["00000000000000000000000000", "nope", "..%2F..%2Fetc"] {
        let (status, err) = s.get_json(&s.tes(&format!("/tasks/{id}"))).await;
        assert_eq!(status, 404, "{id}: {err}");
        assert_eq!(err["code"], "not_found");
        let (status, _) = s.cancel(id).await;
        assert_eq!(status, 404);
    }
    let id = s.create(&simple_task(&["sleep", "100"])).await;
    let (status, body) = s.cancel(&id).await;
    assert_eq!((status, body), (200, json!({})));
    let status = s.status(&id).await;
    assert_eq!(status["state"], "CANCELED");
    let moves: Vec<(Value, Value)> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["from_state"].clone(), e["to_state"].clone()))
        .collect();
    assert_eq!(
        moves,
        [
            (Value::Null, json!("QUEUED")),
            (json!("QUEUED"), json!("CANCELING")),
            (json!("CANCELING"), json!("CANCELED"))
        ],
        "a cancel passes through CANCELING"
    );
    let (status, body) = s.cancel(&id).await;
    assert_eq!(
        (status, body),
        (200, json!({})),
        "canceling a terminal task is a no-op"
    );
    assert_eq!(s.status(&id).await["events"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn authentication_is_required_except_for_health_and_metrics() {
    let s = api_server().await;
    assert!(!s.token.is_empty(), "a token is generated on first start");
    let r = s.http.get(s.tes("/tasks")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    let r = s
        .http
        .get(s.tes("/tasks"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = s.http.get(format!("{}{path}", s.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let metrics = s.metrics_text().await;
    for name in [
        "tessera_tasks{",
        "tessera_queue_depth",
        "tessera_api_request_seconds_bucket",
        "tessera_executor_errors_total",
    ] {
        assert!(metrics.contains(name), "metrics lack {name}");
    }
    let ready: Value = s
        .http
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store"]["status"], "ok");
    assert_eq!(ready["executor"]["status"], "disabled");
}

#[tokio::test]
async fn big_full_pages_end_early_and_page_on_without_gaps() {
    let s = Server::start(Options {
        executor: "none",
        extra_args: vec!["--max-body-bytes".into(), "12000000".into()],
        ..Options::default()
    })
    .await;
    // 5 tasks of ~10 MB inline content: a FULL page holds at most ~32 MB of documents.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let mut t = simple_task(&["true"]);
        t["inputs"] = json!([{"path": "/in", "content": "x".repeat(10_000_000)}]);
        ids.push(s.create(&t).await);
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &token {
            Some(t) => s.tes(&format!("/tasks?view=FULL&page_size=2047&page_token={t}")),
            None => s.tes("/tasks?view=FULL&page_size=2047"),
        };
        let (status, page) = s.get_json(&url).await;
        assert_eq!(status, 200);
        pages += 1;
        let tasks = page["tasks"].as_array().unwrap();
        assert!(!tasks.is_empty(), "no empty pages");
        seen.extend(tasks.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert!(pages >= 2, "a 50 MB listing is split across pages");
}
