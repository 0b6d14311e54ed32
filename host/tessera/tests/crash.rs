//! SIGKILL the server while tasks are queued and running; after a restart every task
//! ends in a truthful state, none is lost and no executor runs twice.

mod common;

use common::{BUSYBOX, Options, Server, docker};
use serde_json::json;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

#[tokio::test]
async fn tasks_survive_sigkill_of_the_server() {
    // Every container start, as Docker reports it, to prove nothing ran twice.
    let events_file = tempfile::NamedTempFile::new().unwrap();
    let mut events = Command::new("docker")
        .args([
            "events",
            "--filter",
            "type=container",
            "--filter",
            "event=start",
            "--format",
            "{{.Actor.Attributes.name}}",
        ])
        .stdout(Stdio::from(events_file.reopen().unwrap()))
        .spawn()
        .expect("docker events");

    let mut s = Server::start(Options {
        max_concurrent_tasks: 2,
        ..Options::default()
    })
    .await;
    let quick_fail = s
        .create(&json!({"name": "ends-while-down", "executors": [{"image": BUSYBOX, "command": ["sh", "-c", "read line; echo b-$line; sleep 3; echo b-end; exit 7"], "stdin": "/in/line"}], "inputs": [{"path": "/in/line", "content": "go\n"}]}))
        .await;
    let long = s
        .create(&json!({"name": "outlives-the-crash", "executors": [
            {"image": BUSYBOX, "command": ["sh", "-c", "echo first"]},
            {"image": BUSYBOX, "command": ["sh", "-c", "echo f-start; sleep 4; echo f-end"]}
        ]}))
        .await;
    let queued: Vec<String> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(s.create(&json!({"name": format!("queued-{i}"), "executors": [{"image": BUSYBOX, "command": ["echo", format!("q{i}")]}]})).await);
        }
        v
    };
    s.wait_until(&long, "second executor running", |t| {
        t["logs"][0]["logs"][1]["stdout"] == "f-start\n"
    })
    .await;
    s.wait_until(&quick_fail, "running", |t| {
        t["logs"][0]["logs"][0]["stdout"] == "b-go\n"
    })
    .await;

    s.kill9();
    // Let the short task's container finish while the server is down.
    let names = docker(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=tessera.task-id={quick_fail}"),
        "--format",
        "{{.Names}}",
    ]);
    for name in names.lines().filter(|n| !n.is_empty()) {
        docker(&["wait", name]);
    }
    s.spawn().await;

    let t = s.wait_done(&quick_fail).await;
    assert_eq!(t["state"], "EXECUTOR_ERROR", "{}", common::short(&t));
    assert_eq!(t["logs"][0]["logs"][0]["exit_code"], 7);
    assert_eq!(t["logs"][0]["logs"][0]["stdout"], "b-go\nb-end\n");

    let t = s.wait_done(&long).await;
    assert_eq!(t["state"], "COMPLETE", "{}", common::short(&t));
    assert_eq!(t["logs"][0]["logs"][0]["stdout"], "first\n");
    assert_eq!(t["logs"][0]["logs"][1]["stdout"], "f-start\nf-end\n");

    for (i, id) in queued.iter().enumerate() {
        let t = s.wait_done(id).await;
        assert_eq!(t["state"], "COMPLETE", "{}", common::short(&t));
        assert_eq!(t["logs"][0]["logs"][0]["stdout"], format!("q{i}\n"));
        assert_eq!(t["logs"].as_array().unwrap().len(), 1);
    }

    let _ = events.kill();
    let _ = events.wait();
    let log = std::fs::read_to_string(events_file.path()).unwrap();
    let mut starts: BTreeMap<String, usize> = BTreeMap::new();
    for line in log.lines() {
        *starts.entry(line.to_string()).or_default() += 1;
    }
    let ours: Vec<(&String, &usize)> = starts
        .iter()
        .filter(|(n, _)| {
            [quick_fail.clone(), long.clone()]
                .iter()
                .chain(queued.iter())
                .any(|id| n.contains(id.as_str()))
        })
        .collect();
    assert_eq!(
        ours.len(),
        2 + 1 + 3,
        "one container per executor: {ours:?}"
    );
    assert!(
        ours.iter().all(|(_, n)| **n == 1),
        "no executor started twice: {ours:?}"
    );
}
