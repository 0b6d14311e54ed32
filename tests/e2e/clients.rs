//! Real clients against the real server: py-tes 1.1.4 and the tessera CLI.

use serde_json::Value;
use std::process::Command;
use tessera_tests::{BUSYBOX, Options, Server, tessera_bin};

fn required() -> bool {
    std::env::var("TESSERA_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

#[tokio::test]
async fn py_tes_round_trip() {
    let Ok(python) = std::env::var("TESSERA_TEST_PYTHON") else {
        assert!(
            !required(),
            "TESSERA_TEST_PYTHON is not set; scripts/test-env.sh makes the py-tes venv"
        );
        eprintln!("SKIPPED: TESSERA_TEST_PYTHON not set (run scripts/test.sh)");
        return;
    };
    let s = Server::start(Options::default()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/pytes/roundtrip.py");
    let out = tokio::task::spawn_blocking({
        let (url, token) = (s.url.clone(), s.token.clone());
        move || {
            Command::new(python)
                .arg(script)
                .arg(url)
                .arg(token)
                .arg(BUSYBOX)
                .output()
                .expect("python")
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "py-tes failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.server_log()
    );
}

fn cli(s: &Server, args: &[&str]) -> std::process::Output {
    Command::new(tessera_bin())
        .arg("task")
        .args(args)
        .env("TESSERA_SERVER", &s.url)
        .env("TESSERA_DATA_DIR", &s.data_dir)
        .env_remove("TESSERA_TOKEN")
        .output()
        .expect("tessera CLI")
}

#[tokio::test]
async fn cli_submit_wait_get_list_logs_and_cancel() {
    let s = Server::start(Options::default()).await;
    let file = s.allowed.join("task.json");
    std::fs::write(
        &file,
        serde_json::json!({"name": "cli-demo", "tags": {"via": "cli"}, "executors": [{"image": BUSYBOX, "command": ["sh", "-c", "echo hello from cli; exit 0"]}]}).to_string(),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking({
        let (f, url, dd) = (file.clone(), s.url.clone(), s.data_dir.clone());
        move || {
            Command::new(tessera_bin())
                .args(["task", "submit"])
                .arg(f)
                .arg("--wait")
                .env("TESSERA_SERVER", url)
                .env("TESSERA_DATA_DIR", dd)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("COMPLETE"),
        "progress is shown while waiting: {stderr}"
    );
    assert!(
        stdout.contains("STATE") && stdout.contains("COMPLETE"),
        "{stdout}"
    );
    let id = stderr
        .lines()
        .find_map(|l| l.strip_prefix("submitted "))
        .expect("submitted line")
        .trim()
        .to_string();

    let out = cli(&s, &["list", "--tag", "via=cli", "-o", "json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    let out = cli(&s, &["list", "--state", "complete"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("ID") && table.contains(&id) && table.contains("cli-demo"),
        "{table}"
    );

    let out = cli(&s, &["get", &id, "--view", "full", "-o", "json"]);
    let full: Value = serde_json::from_slice(&out.stdout).expect("get json");
    assert_eq!(full["logs"][0]["logs"][0]["stdout"], "hello from cli\n");

    let out = cli(&s, &["logs", &id]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from cli\n");

    // --follow prints output as it grows and returns when the task ends.
    let id2 = s
        .create(&serde_json::json!({"executors": [{"image": BUSYBOX, "command": ["sh", "-c", "echo one; read x; echo two"], "stdin": "/in"}], "inputs": [{"path": "/in", "content": "x\n"}]}))
        .await;
    let out = tokio::task::spawn_blocking({
        let (url, dd, id2) = (s.url.clone(), s.data_dir.clone(), id2.clone());
        move || {
            Command::new(tessera_bin())
                .args(["task", "logs", &id2, "--follow"])
                .env("TESSERA_SERVER", url)
                .env("TESSERA_DATA_DIR", dd)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\n");

    let id3 = s
        .create(&tessera_tests::simple_task(&["sleep", "1000"]))
        .await;
    let out = cli(&s, &["cancel", &id3]);
    assert!(out.status.success());
    assert_eq!(s.wait_done(&id3).await["state"], "CANCELED");

    let out = cli(&s, &["get", "00000000000000000000000000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let out = Command::new(tessera_bin())
        .args(["task", "list"])
        .env("TESSERA_SERVER", &s.url)
        .env("TESSERA_DATA_DIR", "/nonexistent")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication required"));
}
