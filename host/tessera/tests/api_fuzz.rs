//! The TES API under a property-based fuzzer: schemathesis generates requests from the
//! TES 1.1.0 OpenAPI document (valid and invalid ones, and stateful sequences: create,
//! then get and cancel what was created) against the real server. No answer may be a 5xx,
//! and every answer must match the document (see schemathesis/tes_overlay.py for the
//! two places the published document is adjusted, and why).

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// Requests per operation and phase: bounded, so the run takes seconds.
const MAX_EXAMPLES: &str = "60";
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
