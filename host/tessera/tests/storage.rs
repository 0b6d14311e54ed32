//! TES out of the box: a server started with no storage configuration runs py-tes tasks
//! whose inputs and outputs are `s3://` URLs (served by the embedded object store) and
//! `http://` URLs, with objects put and read back through `tessera data`; the same task
//! against a real S3 server (Garage); keys that would leave their bucket refused; the
//! timings and peak memory every executor reports.

mod common;

use common::{BUSYBOX, FileServer, Options, Server, cli_ok, pytes_python, pytes_run};
use serde_json::{Value, json};
use std::path::Path;

/// Pseudorandom bytes (incompressible enough, and different per seed).
fn bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

/// A task reading a file, a directory and an http:// input, writing a file, a
/// directory and wildcard matches; a second executor so that executor timings follow
/// each other.
fn storage_task(input: &str, output: &str, http_url: &str) -> Value {
    json!({
        "name": "storage",
        "inputs": [
            {"url": format!("{input}/data.bin"), "path": "/in/data.bin"},
            {"url": format!("{input}/ref"), "path": "/in/ref", "type": "DIRECTORY"},
            {"url": http_url, "path": "/in/page.txt", "streamable": true}
        ],
        "outputs": [
            {"url": format!("{output}/result.bin"), "path": "/out/result.bin"},
            {"url": format!("{output}/tree"), "path": "/out/tree", "type": "DIRECTORY"},
            {"url": format!("{output}/logs"), "path": "/out/logs/*.log", "path_prefix": "/out/logs"}
        ],
        "executors": [
            {"image": BUSYBOX, "command": ["sh", "-c",
                "cat /in/data.bin /in/page.txt > /out/result.bin && mkdir -p /out/tree && cp -r /in/ref/. /out/tree/ && mkdir -p /out/logs && echo one > /out/logs/1.log && echo two > /out/logs/2.log && echo skipped > /out/logs/3.txt"]},
            {"image": BUSYBOX, "command": ["sh", "-c", "sleep 0.2; wc -c /out/result.bin"]}
        ]
    })
}

/// Local files for the inputs: `data.bin` and a directory `ref` with a nested file.
fn input_files(dir: &Path) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let data = bytes(300_000, 1);
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    let tree = vec![
        ("a.txt".to_string(), b"alpha\n".to_vec()),
        ("sub/b.bin".to_string(), bytes(70_000, 2)),
    ];
    for (rel, content) in &tree {
        let p = dir.join("ref").join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    (data, tree)
}

/// Every executor and the task: end ≥ start, `run_ms` = end − start, and a peak memory
/// figure for every executor.
fn check_timings(task: &Value) {
    let log = &task["logs"][0];
    let t = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap_or_else(|| panic!("a timestamp, got {v}")),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert!(t(&log["end_time"]) >= t(&log["start_time"]), "{log}");
    let execs = log["logs"].as_array().unwrap();
    assert_eq!(execs.len(), 2);
    let mut previous_end = None;
    for (i, e) in execs.iter().enumerate() {
        let (start, end) = (t(&e["start_time"]), t(&e["end_time"]));
        assert!(end >= start, "executor {i}: {e}");
        if let Some(prev) = previous_end {
            assert!(
                start >= prev,
                "executor {i} started before the one before it ended"
            );
        }
        previous_end = Some(end);
        let run_ms: i128 = log["metadata"][format!("executor.{i}.run_ms")]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            run_ms,
            (end - start).whole_milliseconds(),
            "executor {i}: {e}"
        );
        let peak: u64 = log["metadata"][format!("executor.{i}.peak_memory_bytes")]
            .as_str()
            .unwrap_or_else(|| panic!("executor {i} has no peak memory: {}", log["metadata"]))
            .parse()
            .unwrap();
        assert!(peak > 0);
    }
    // The second executor slept 0.2 s: its run time says so.
    let run_ms: u64 = log["metadata"]["executor.1.run_ms"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(run_ms >= 200, "{run_ms}");
}

/// Put the inputs with the CLI, run the task with py-tes, read every output back with the
/// CLI and compare byte for byte.
async fn round_trip(s: &Server, python: &str, files: &FileServer, input: &str, output: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (data, tree) = input_files(dir.path());
    let page = bytes(50_000, 3);
    files.insert("/web/page.txt", &page);

    let data_path = dir.path().join("data.bin").display().to_string();
    cli_ok(
        s,
        &["data", "put", &data_path, &format!("{input}/data.bin")],
    )
    .await;
    let ref_path = dir.path().join("ref").display().to_string();
    cli_ok(
        s,
        &["data", "put", "-r", &ref_path, &format!("{input}/ref")],
    )
    .await;

    let task = storage_task(input, output, &files.url("/web/page.txt"));
    let done = pytes_run(python, s, &task).await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        common::short(&done),
        s.server_log()
    );
    check_timings(&done);
    assert_eq!(done["inputs"][2]["streamable"], true, "streamable is kept");

    let got = cli_ok(s, &["data", "get", &format!("{output}/result.bin")]).await;
    let mut want = data.clone();
    want.extend_from_slice(&page);
    assert!(got == want, "result.bin differs ({} bytes)", got.len());

    let back = dir.path().join("back");
    let back_s = back.display().to_string();
    cli_ok(
        s,
        &["data", "get", "-r", &format!("{output}/tree"), &back_s],
    )
    .await;
    for (rel, content) in &tree {
        assert!(
            std::fs::read(back.join(rel)).unwrap() == *content,
            "{rel} differs"
        );
    }
    let one = dir.path().join("1.log");
    cli_ok(
        s,
        &[
            "data",
            "get",
            &format!("{output}/logs/1.log"),
            &one.display().to_string(),
        ],
    )
    .await;
    assert_eq!(std::fs::read(&one).unwrap(), b"one\n");
    let listed: Value = serde_json::from_slice(
        &cli_ok(s, &["data", "ls", &format!("{output}/logs/"), "-o", "json"]).await,
    )
    .unwrap();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            format!("{output}/logs/1.log"),
            format!("{output}/logs/2.log")
        ]
    );
    // The task log lists every file staged out, with its size.
    let outputs: Vec<(String, String)> = done["logs"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["url"].as_str().unwrap().to_string(),
                // py-tes reads size_bytes (a string in TES) as a number.
                o["size_bytes"]
                    .as_u64()
                    .map(|n| n.to_string())
                    .or_else(|| o["size_bytes"].as_str().map(str::to_string))
                    .unwrap(),
            )
        })
        .collect();
    assert!(
        outputs.contains(&(format!("{output}/result.bin"), want.len().to_string())),
        "{outputs:?}"
    );
    assert_eq!(outputs.len(), 1 + tree.len() + 2, "{outputs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tes_tasks_stage_s3_and_http_with_no_storage_configuration() {
    let Some(python) = pytes_python() else {
        return;
    };
    let files = FileServer::start().await;
    // Nothing about storage is configured: only the loopback web server the test runs is
    // allowed (loopback is refused otherwise).
    let s = Server::start(Options {
        extra_args: vec![
            "--http-allow-host".into(),
            format!("127.0.0.1:{}", files.port),
        ],
        ..Options::default()
    })
    .await;
    let (_, info) = s.get_json(&s.tes("/service-info")).await;
    for scheme in ["s3://", "http://", "https://"] {
        assert!(info["storage"].to_string().contains(scheme), "{info}");
    }
    round_trip(&s, &python, &files, "s3://in", "s3://out").await;
    // The objects are files of the data directory, each with its content hash.
    let stored = std::fs::read(s.data_dir.join("objects/in/data.bin")).unwrap();
    assert_eq!(stored.len(), 300_000);
    let listed: Value =
        serde_json::from_slice(&cli_ok(&s, &["data", "ls", "s3://in", "-o", "json"]).await)
            .unwrap();
    assert_eq!(listed[0]["key"], "data.bin");
    assert_eq!(listed[0]["size"], 300_000);
    assert_eq!(listed[0]["sha256"].as_str().map(str::len), Some(64));
    let buckets = String::from_utf8(cli_ok(&s, &["data", "ls"]).await).unwrap();
    assert_eq!(buckets, "s3://in\ns3://out\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_task_against_a_real_s3_server() {
    let Some(python) = pytes_python() else {
        return;
    };
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("TESSERA_TEST_S3_ENDPOINT") else {
        assert!(
            var("TESSERA_REQUIRE_ALL").is_none(),
            "TESSERA_TEST_S3_ENDPOINT is not set (scripts/garage.sh sets it)"
        );
        eprintln!("skipping: no S3 store (TESSERA_TEST_S3_ENDPOINT)");
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
    let files = FileServer::start().await;
    let s = Server::start(Options {
        extra_args: vec![
            "--config".into(),
            config.display().to_string(),
            "--http-allow-host".into(),
            format!("127.0.0.1:{}", files.port),
        ],
        ..Options::default()
    })
    .await;
    let bucket = var("TESSERA_TEST_S3_BUCKET").unwrap();
    let run = format!("storage-{}", std::process::id());
    round_trip(
        &s,
        &python,
        &files,
        &format!("s3://{bucket}/{run}/in"),
        &format!("s3://{bucket}/{run}/out"),
    )
    .await;
    // Nothing went to the embedded store.
    assert!(!s.data_dir.join("objects").join(&bucket).exists());
    for o in serde_json::from_slice::<Value>(
        &cli_ok(
            &s,
            &["data", "ls", &format!("s3://{bucket}/{run}/"), "-o", "json"],
        )
        .await,
    )
    .unwrap()
    .as_array()
    .unwrap()
    {
        cli_ok(&s, &["data", "rm", o["url"].as_str().unwrap()]).await;
    }
}

#[tokio::test]
async fn keys_that_leave_their_bucket_and_unserved_schemes_are_refused() {
    let s = Server::start(Options::default()).await;
    for (url, words) in [
        ("s3://in/../secret", "\"..\" segment"),
        ("s3://in/a/../../secret", "\"..\" segment"),
        ("s3://in//etc/passwd", "absolute"),
        ("s3://IN/x", "not a bucket name"),
    ] {
        let (status, body) = s
            .post_json(
                &s.tes("/tasks"),
                &json!({"inputs": [{"url": url, "path": "/in/x"}],
                        "executors": [{"image": BUSYBOX, "command": ["true"]}]}),
            )
            .await;
        assert_eq!(status, 400, "{url}: {body}");
        assert_eq!(body["details"][0]["field"], "inputs[0].url", "{body}");
        let message = body["details"][0]["message"].as_str().unwrap();
        assert!(message.contains(words), "{url}: {message}");
    }
    // The data API and the CLI refuse them too, before anything is stored.
    for path in ["in/..%2Fsecret", "in/%2Fabs", "in/a/..%2F..%2Fsecret"] {
        let r = s
            .req(reqwest::Method::PUT, &format!("{}/v1/data/{path}", s.url))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["code"], "invalid_parameter", "{body}");
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("f");
    std::fs::write(&f, "x").unwrap();
    let out = common::cli_command(
        &s,
        &["data", "put", &f.display().to_string(), "s3://in/../x"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".."));
    assert!(!s.data_dir.join("objects/x").exists());
    assert!(!s.data_dir.join("x").exists());

    // A scheme no filer serves: the 400 says what is served and how to serve more.
    let (status, body) = s
        .post_json(
            &s.tes("/tasks"),
            &json!({"inputs": [{"url": "gs://bucket/x", "path": "/in/x"}],
                    "executors": [{"image": BUSYBOX, "command": ["true"]}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["details"][0]["message"].as_str().unwrap();
    for words in [
        "\"gs\"",
        "s3://",
        "http://",
        "https://",
        "inline content",
        "tessera plugin activate",
    ] {
        assert!(message.contains(words), "{words}: {message}");
    }

    // A missing object is a 404, with the JSON error.
    let (status, body) = s.get_json(&format!("{}/v1/data/in/nothing", s.url)).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn without_default_filers_only_inline_and_bound_schemes_are_served() {
    let s = Server::start(Options {
        extra_args: vec!["--no-default-filers".into()],
        ..Options::default()
    })
    .await;
    let (status, body) = s
        .post_json(
            &s.tes("/tasks"),
            &json!({"inputs": [{"url": "s3://in/x", "path": "/in/x"}],
                    "executors": [{"image": BUSYBOX, "command": ["true"]}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("\\\"s3\\\" is not supported"),
        "{body}"
    );
}

#[tokio::test]
async fn default_filer_bindings_are_listed_and_give_way_to_an_activation() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let bindings = |list: &Value, name: &str| -> Vec<(String, bool, Vec<String>)> {
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["name"] == name)
            .flat_map(|p| p["bindings"].as_array().unwrap().clone())
            .map(|b| {
                (
                    b["scope"].as_str().unwrap().to_string(),
                    b["default"].as_bool().unwrap_or(false),
                    b["allow_hosts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|h| h.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect()
    };
    let (_, list) = s.get_json(&format!("{}/v1/plugins", s.url)).await;
    let mut http = bindings(&list, "filer-http");
    http.sort();
    assert_eq!(
        http,
        [
            ("http".to_string(), true, vec!["*".to_string()]),
            ("https".to_string(), true, vec!["*".to_string()])
        ]
    );
    assert_eq!(bindings(&list, "filer-s3")[0].0, "s3");
    let table = String::from_utf8(cli_ok(&s, &["plugin", "list"]).await).unwrap();
    assert!(table.contains("http (default),https (default)"), "{table}");
    // What `*` grants is shown: the default bindings reach any public host and every
    // bucket.
    let row = |name: &str| -> String {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("filer-http ").contains("any host"), "{table}");
    assert!(row("filer-s3 ").contains("any bucket"), "{table}");
    assert!(!row("router-default ").contains("any"), "{table}");

    // Granting `*` through the API needs saying so.
    let activate = format!("{}/v1/plugins/filer-http/versions/0.1.0/activate", s.url);
    let (status, b) = s
        .post_json(&activate, &json!({"scope": "https", "allow_hosts": ["*"]}))
        .await;
    assert_eq!(status, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap_or_default()
            .contains("grant-any"),
        "{b}"
    );
    let (status, b) = s
        .post_json(
            &activate,
            &json!({"scope": "https", "allow_hosts": ["*"], "grant_any": true}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-http/rollback", s.url),
            &json!({"scope": "https"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");

    // Activating on a scheme stores a binding that replaces the default one (keeping its
    // settings when none are given).
    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-http/versions/0.1.0/activate", s.url),
            &json!({"scope": "https"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let http_bindings = || async {
        let (_, list) = s.get_json(&format!("{}/v1/plugins", s.url)).await;
        let mut http = bindings(&list, "filer-http");
        http.sort();
        http
    };
    let default_https = ("https".to_string(), true, vec!["*".to_string()]);
    let default_http = ("http".to_string(), true, vec!["*".to_string()]);
    assert_eq!(
        http_bindings().await,
        [
            default_http.clone(),
            ("https".to_string(), false, vec!["*".to_string()])
        ]
    );

    // Rolling back the first activation puts the default binding back.
    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-http/rollback", s.url),
            &json!({"scope": "https"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["default"], true, "{b}");
    assert_eq!(
        http_bindings().await,
        [default_http.clone(), default_https.clone()]
    );

    // Another plugin activated on the scheme gets none of the default's grants.
    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-s3/versions/0.2.0/activate", s.url),
            &json!({"scope": "https"}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    assert!(b.get("allow_hosts").is_none(), "{b}");
    assert!(b.get("buckets").is_none(), "{b}");
    assert_eq!(http_bindings().await, std::slice::from_ref(&default_http));
    let (status, _) = s
        .post_json(
            &format!("{}/v1/plugins/filer-s3/rollback", s.url),
            &json!({"scope": "https"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(http_bindings().await, [default_http, default_https]);
}

#[tokio::test]
async fn http_inputs_from_internal_addresses_need_the_operator_to_name_the_host() {
    let files = FileServer::start().await;
    files.insert("/x", b"internal\n");
    // Loopback is not named: the default binding reaches public addresses only.
    let s = Server::start(Options::default()).await;
    let id = s
        .create(&json!({
            "inputs": [{"url": files.url("/x"), "path": "/in/x"}],
            "executors": [{"image": BUSYBOX, "command": ["cat", "/in/x"]}]
        }))
        .await;
    assert_eq!(s.wait_done(&id).await["state"], "SYSTEM_ERROR");
    let reason = s.status(&id).await["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("filer filer-http@0.1.0 failed"), "{reason}");
    assert!(
        reason.contains("internal addresses only when the operator names them"),
        "{reason}"
    );
}
