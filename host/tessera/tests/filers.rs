//! Staging through filer plugins end to end: the built-in filer-http bound to the `http`
//! scheme, a real HTTP server, a real Docker task reading its input and writing outputs.

mod common;

use common::{BUSYBOX, FileServer, Options, Server};
use serde_json::{Value, json};

#[tokio::test]
async fn http_inputs_and_outputs_stage_through_the_filer_plugin() {
    let files = FileServer::start().await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    files
        .files
        .lock()
        .unwrap()
        .insert("/data/in.bin".into(), data.clone());
    // Without the default bindings, so that activating one is what enables http://.
    let s = Server::start(Options {
        extra_args: vec!["--no-default-filers".into()],
        ..Options::default()
    })
    .await;

    let task = json!({
        "name": "filer",
        "inputs": [{"url": files.url("/data/in.bin"), "path": "/in/in.bin"}],
        "outputs": [
            {"url": files.url("/results/copy.bin"), "path": "/out/copy.bin"},
            {"url": files.url("/results/many"), "path": "/out/many/*.txt", "path_prefix": "/out/many"}
        ],
        "executors": [{"image": BUSYBOX, "command": ["sh", "-c",
            "cp /in/in.bin /out/copy.bin && mkdir -p /out/many && echo a > /out/many/a.txt && echo b > /out/many/b.txt"]}]
    });
    // Before a filer serves http://, such URLs are refused, saying what is served and how
    // to enable more, and service-info says so.
    let (status, body) = s.post_json(&s.tes("/tasks"), &task).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"http\" is not supported"), "{body}");
    assert!(message.contains("inline content"), "{body}");
    assert!(message.contains("tessera plugin activate"), "{body}");
    let (_, info) = s.get_json(&s.tes("/service-info")).await;
    assert!(!info["storage"].to_string().contains("http://"), "{info}");

    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-http/versions/0.1.0/activate", s.url),
            &json!({"scope": "http", "allow_hosts": [format!("127.0.0.1:{}", files.port)]}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let (_, info) = s.get_json(&s.tes("/service-info")).await;
    assert!(info["storage"].to_string().contains("http://"), "{info}");

    let id = s.create(&task).await;
    let done = s.wait_done(&id).await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        common::short(&done),
        s.server_log()
    );
    let stored = files.files.lock().unwrap().clone();
    assert_eq!(stored.get("/results/copy.bin"), Some(&data));
    assert_eq!(
        stored.get("/results/many/a.txt").map(Vec::as_slice),
        Some(&b"a\n"[..])
    );
    assert_eq!(
        stored.get("/results/many/b.txt").map(Vec::as_slice),
        Some(&b"b\n"[..])
    );
    let outputs = &done["logs"][0]["outputs"];
    let sizes: Vec<(String, String)> = outputs
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["url"].as_str().unwrap().to_string(),
                o["size_bytes"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        sizes.contains(&(files.url("/results/copy.bin"), "300000".into())),
        "{sizes:?}"
    );
    assert_eq!(sizes.len(), 3, "{sizes:?}");
}

#[tokio::test]
async fn a_failing_filer_ends_the_task_system_error_with_its_reason() {
    let files = FileServer::start().await;
    let s = Server::start(Options::default()).await;
    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-http/versions/0.1.0/activate", s.url),
            &json!({"scope": "http", "allow_hosts": [format!("127.0.0.1:{}", files.port)]}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    // The input does not exist on the server (404), and a second task's URL is a host
    // the binding does not allow.
    for url in [files.url("/missing"), "http://127.0.0.2:9/x".to_string()] {
        let id = s
            .create(&json!({
                "inputs": [{"url": url, "path": "/in/x"}],
                "executors": [{"image": BUSYBOX, "command": ["true"]}]
            }))
            .await;
        let done: Value = s.wait_done(&id).await;
        assert_eq!(done["state"], "SYSTEM_ERROR", "{}", common::short(&done));
        let status = s.status(&id).await;
        let reason = status["reason"].as_str().unwrap_or_default().to_string();
        assert!(reason.contains("filer filer-http@0.1.0 failed"), "{reason}");
        // No executor ran.
        assert!(
            done["logs"][0]["logs"]
                .as_array()
                .is_none_or(|l| l.is_empty()),
            "{done}"
        );
    }
}

/// The S3 store the test command starts (Garage), from TESSERA_TEST_S3_*; `None` skips
/// unless TESSERA_REQUIRE_ALL=1.
fn s3_env() -> Option<(tessera_s3::S3Config, String)> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(endpoint) = var("TESSERA_TEST_S3_ENDPOINT") else {
        assert!(
            var("TESSERA_REQUIRE_ALL").is_none(),
            "TESSERA_TEST_S3_ENDPOINT is not set (scripts/garage.sh sets it)"
        );
        eprintln!("skipping: no S3 store (TESSERA_TEST_S3_ENDPOINT)");
        return None;
    };
    Some((
        tessera_s3::S3Config {
            endpoint: Some(endpoint),
            region: var("TESSERA_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
            access_key_id: var("TESSERA_TEST_S3_ACCESS_KEY").expect("TESSERA_TEST_S3_ACCESS_KEY"),
            secret_access_key: tessera_s3::Secret::new(
                var("TESSERA_TEST_S3_SECRET_KEY").expect("TESSERA_TEST_S3_SECRET_KEY"),
            ),
            path_style: true,
        },
        var("TESSERA_TEST_S3_BUCKET").expect("TESSERA_TEST_S3_BUCKET"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_inputs_and_outputs_stage_through_filer_s3_and_the_host_store() {
    let Some((cfg, bucket)) = s3_env() else {
        return;
    };
    let client = tessera_s3::S3Client::new(cfg.clone()).unwrap();
    let prefix = format!("e2e-{}", std::process::id());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let body = futures_stream(data.clone());
    client
        .put(
            &bucket,
            &format!("{prefix}/in.bin"),
            data.len() as u64,
            body,
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "[s3]\nendpoint = {:?}\nregion = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
            cfg.endpoint.as_deref().unwrap(),
            cfg.region,
            cfg.access_key_id,
            std::env::var("TESSERA_TEST_S3_SECRET_KEY").unwrap()
        ),
    )
    .unwrap();
    let s = Server::start(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Options::default()
    })
    .await;
    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-s3/versions/0.2.0/activate", s.url),
            &json!({"scope": "s3", "buckets": [bucket]}),
        )
        .await;
    assert_eq!(status, 200, "{b}");

    let id = s
        .create(&json!({
            "inputs": [{"url": format!("s3://{bucket}/{prefix}/in.bin"), "path": "/in/in.bin"}],
            "outputs": [{"url": format!("s3://{bucket}/{prefix}/out/copy.bin"), "path": "/out/copy.bin"}],
            "executors": [{"image": BUSYBOX, "command": ["cp", "/in/in.bin", "/out/copy.bin"]}]
        }))
        .await;
    let done = s.wait_done(&id).await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        common::short(&done),
        s.server_log()
    );
    let mut got = client
        .get(&bucket, &format!("{prefix}/out/copy.bin"))
        .await
        .unwrap();
    let mut back = Vec::new();
    while let Some(chunk) = got.next_chunk().await.unwrap() {
        back.extend_from_slice(&chunk);
    }
    assert_eq!(back, data);

    // A bucket the binding does not grant: the task fails with the filer's reason.
    let id = s
        .create(&json!({
            "inputs": [{"url": "s3://not-granted/x", "path": "/in/x"}],
            "executors": [{"image": BUSYBOX, "command": ["true"]}]
        }))
        .await;
    assert_eq!(s.wait_done(&id).await["state"], "SYSTEM_ERROR");
    let reason = s.status(&id).await["reason"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("filer filer-s3@0.2.0 failed"), "{reason}");
    let _ = client.delete(&bucket, &format!("{prefix}/in.bin")).await;
    let _ = client
        .delete(&bucket, &format!("{prefix}/out/copy.bin"))
        .await;
}

/// A body stream of one chunk for the async put.
fn futures_stream(
    data: Vec<u8>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Unpin + 'static {
    futures_util::stream::iter([Ok(bytes::Bytes::from(data))])
}
