//! Real clients against the real server: py-tes 1.1.4 and the tessera CLI.

mod common;

use common::{BUSYBOX, Options, Server, tessera_bin};
use serde_json::Value;
use std::process::Command;

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
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pytes/roundtrip.py");
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

    let id3 = s.create(&common::simple_task(&["sleep", "1000"])).await;
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

#[tokio::test]
async fn every_cli_command_ends_quietly_when_its_reader_goes_away() {
    use std::os::unix::process::ExitStatusExt;
    let s = Server::start(Options::default()).await;
    let id = s.create(&common::simple_task(&["echo", "hello"])).await;
    s.wait_done(&id).await;
    let dir = tempfile::tempdir().unwrap();
    let task = dir.path().join("task.json");
    std::fs::write(&task, common::simple_task(&["true"]).to_string()).unwrap();
    let object = dir.path().join("object");
    std::fs::write(&object, "some bytes\n").unwrap();
    let wasm = dir.path().join("first-fit.wasm");
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugin-runtime/tests/components/first-fit.wat"
    );
    std::fs::write(&wasm, wat::parse_file(path).unwrap()).unwrap();
    let manifest = |version: &str| {
        let m = dir.path().join(format!("manifest-{version}.toml"));
        std::fs::write(
            &m,
            format!("name = \"first-fit\"\nversion = \"{version}\"\nworld = \"router\"\n"),
        )
        .unwrap();
        m.display().to_string()
    };
    let (m1, m2) = (manifest("1.0.0"), manifest("1.0.1"));
    let (task, object, wasm) = (
        task.display().to_string(),
        object.display().to_string(),
        wasm.display().to_string(),
    );

    // A finished task: cancel says so instead of "cancel requested".
    let out = cli(&s, &["cancel", &id]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{id} had already ended (COMPLETE); nothing to cancel\n")
    );

    let commands: Vec<Vec<&str>> = vec![
        vec!["task", "submit", &task],
        vec!["task", "submit", &task, "--wait"],
        vec!["task", "get", &id],
        vec!["task", "get", &id, "--view", "full", "-o", "json"],
        vec!["task", "list"],
        vec!["task", "logs", &id],
        vec!["task", "cancel", &id],
        vec!["plugin", "list"],
        vec!["plugin", "show", "router-default"],
        vec!["plugin", "install", &wasm, "--manifest", &m1],
        vec!["plugin", "install", &wasm, "--manifest", &m2],
        vec!["plugin", "activate", "first-fit", "1.0.0"],
        vec!["plugin", "activate", "first-fit", "1.0.1"],
        vec!["plugin", "rollback", "first-fit"],
        vec!["plugin", "rm", "first-fit", "1.0.1"],
        vec!["data", "put", &object, "s3://pipes/object"],
        vec!["data", "ls"],
        vec!["data", "ls", "s3://pipes"],
        vec!["data", "get", "s3://pipes/object"],
        vec!["data", "rm", "s3://pipes/object"],
    ];
    for args in commands {
        // The reader is gone before the command starts, so its first write fails (each
        // command still does its work first: the next ones depend on it).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = common::cli_command(&s, &args);
        cmd.stdout(writer);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            out.status.signal(),
            Some(13),
            "{args:?} should end by SIGPIPE, ended {}: {stderr}",
            out.status
        );
    }
}
