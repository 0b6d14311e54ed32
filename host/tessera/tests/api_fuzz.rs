//! The APIs under a property-based fuzzer: schemathesis generates requests (valid and
//! invalid ones, and stateful sequences: create, then read, change and delete what was
//! made) against the real server, twice:
//! - from the published TES 1.1.0 document (see schemathesis/tes_overlay.py for the two
//!   places it is adjusted, and why): the server keeps to the standard;
//! - from the server's own document, `/v1/openapi.json` (every /v1 endpoint and TES as
//!   served): the handlers keep to what the document generated from them says.
//!
//! No answer may be a 5xx, and every answer must match the document.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// Requests per operation and phase: bounded, so the run takes seconds.
const MAX_EXAMPLES: &str = "60";
/// The same over the server's own document, which has 15 times as many operations.
const V1_MAX_EXAMPLES: &str = "40";
/// A fixed seed: a failure reproduces with the same command.
const SEED: &str = "20261206";

#[tokio::test]
async fn no_request_gets_a_server_error_or_an_answer_off_the_schema() {
    let Some(python) = pytes_python() else {
        return;
    };
    let schemathesis = Path::new(&python).with_file_name("st");
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = here.join("../../docs/specs/tes-openapi-1.1.0.yaml");
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let overlay = s.data_dir.with_file_name("tes-overlay.yaml");
    let made = std::process::Command::new(&python)
        .arg(here.join("tests/schemathesis/tes_overlay.py"))
        .arg(&spec)
        .arg(&overlay)
        .status()
        .expect("running tes_overlay.py");
    assert!(made.success(), "tes_overlay.py failed");

    let url = format!("{}/ga4gh/tes/v1", s.url);
    // schemathesis keeps its example database in the working directory: the test's own.
    let workdir = overlay.parent().unwrap().to_path_buf();
    let auth = format!("Authorization: Bearer {}", s.token);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&schemathesis)
            .current_dir(&workdir)
            .args(["--no-color", "run"])
            .arg(&overlay)
            .args(["--url", &url, "--header", &auth])
            .args(["--checks", "not_a_server_error,response_schema_conformance"])
            .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
            .args(["--request-timeout", "30"])
            .output()
            .expect("running schemathesis (scripts/test-env.sh installs it)")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // It really ran: every operation was generated for, and nothing was skipped.
    assert!(report.contains("Tested: 5"), "{report}");
}

/// Operations the fuzzer leaves out of the run over `/v1/openapi.json`, and why: the
/// streams (the event stream, followed logs) do not end, so no answer comes to check;
/// the two revocations end the fuzzer's own session. task_api.rs, workflows.rs and
/// identity.rs test them.
const NOT_FUZZED: [&str; 5] = [
    "stream_events",
    "run_logs",
    "task_run_logs",
    "revoke_all",
    "revoke_user_tokens",
];

/// The server's document, fetched without a token (it holds no data).
async fn served_document(s: &Server) -> serde_json::Value {
    let r = s
        .http
        .get(format!("{}/v1/openapi.json", s.url))
        .send()
        .await
        .expect("GET /v1/openapi.json");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap_or_default(),
        "application/json"
    );
    r.json().await.expect("the document is JSON")
}

/// Every operation of a document: (METHOD, path, operationId).
fn operations(doc: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            if ["get", "put", "post", "delete", "head", "patch"].contains(&method.as_str()) {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                out.push((method.to_uppercase(), path.clone(), id));
            }
        }
    }
    out
}

#[tokio::test]
async fn every_documented_operation_is_served_and_nothing_else_under_v1() {
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let doc = served_document(&s).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let ops = operations(&doc);
    assert!(ops.len() > 70, "{} operations", ops.len());
    for (method, path, id) in &ops {
        // TES documents cancel at `/tasks/{id}:cancel`, as the standard writes it.
        let url = format!("{}{}", s.url, path.replace(['{', '}'], ""));
        let r = s
            .req(method.parse().expect("a method"), &url)
            .send()
            .await
            .expect("the request");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_ne!(
            status, 405,
            "{id}: {method} {path} is documented but not routed"
        );
        assert!(
            !body.contains("no such endpoint"),
            "{id}: {method} {path} is documented but not routed: {body}"
        );
    }
    // `tessera openapi` prints the same document, without a server.
    let printed = std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("openapi")
        .output()
        .expect("tessera openapi");
    assert!(printed.status.success());
    let printed: serde_json::Value =
        serde_json::from_slice(&printed.stdout).expect("tessera openapi prints JSON");
    assert_eq!(printed, doc);
    // The router's own answer to a path nothing documents.
    let (status, body) = s.get_json(&format!("{}/v1/no-such-thing", s.url)).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    assert!(body.to_string().contains("no such endpoint"), "{body}");
}

#[tokio::test]
async fn no_v1_request_gets_a_server_error_or_an_answer_off_the_served_document() {
    let Some(python) = pytes_python() else {
        return;
    };
    let schemathesis = Path::new(&python).with_file_name("st");
    let s = Server::start(Options {
        executor: "none",
        ..Options::default()
    })
    .await;
    let doc = served_document(&s).await;
    let ops = operations(&doc);
    for id in NOT_FUZZED {
        assert!(
            ops.iter().any(|(_, _, op)| op == id),
            "{id} is not an operation of the document any more"
        );
    }
    let spec = s.data_dir.with_file_name("openapi.json");
    std::fs::write(&spec, serde_json::to_vec(&doc).unwrap()).unwrap();
    let workdir = spec.parent().unwrap().to_path_buf();
    let url = s.url.clone();
    let auth = format!("Authorization: Bearer {}", s.token);
    let out = tokio::task::spawn_blocking(move || {
        let mut st = std::process::Command::new(&schemathesis);
        st.current_dir(&workdir)
            .args(["--no-color", "run"])
            .arg(&spec)
            .args(["--url", &url, "--header", &auth])
            // What the document promises of every answer: no 5xx, the documented schema
            // and content type and headers; and of the API as a whole: no operation
            // answers without the token, what a create made can be read, what a delete
            // removed cannot.
            .args([
                "--checks",
                "not_a_server_error,response_schema_conformance,content_type_conformance,\
                 response_headers_conformance,ignored_auth,ensure_resource_availability,\
                 use_after_free",
            ])
            .args(["--max-examples", V1_MAX_EXAMPLES, "--seed", SEED])
            .args(["--request-timeout", "30", "--workers", "2"]);
        for id in NOT_FUZZED {
            st.args(["--exclude-operation-id", id]);
        }
        st.output()
            .expect("running schemathesis (scripts/test-env.sh installs it)")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // It really ran every operation but the ones left out.
    let tested = format!("Tested: {}", ops.len() - NOT_FUZZED.len());
    assert!(report.contains(&tested), "expected {tested}:\n{report}");
    assert!(report.contains("Stateful"), "{report}");
}
