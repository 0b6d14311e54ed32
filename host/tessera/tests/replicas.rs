//! Several servers on one store: two real `tessera` servers on one PostgreSQL database and
//! one Docker engine, sharing a work directory. Tasks go to both; one server is
//! SIGKILLed while its containers run; the other finishes everything, adopting the dead
//! server's tasks once their leases ran out, and no executor's container is ever created
//! twice (counted from Docker's own events).

mod common;

use common::{BUSYBOX, DEADLINE, Options, Server, docker, drop_database, fresh_database};
use serde_json::{Value, json};
use sqlx::Connection;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const TASKS: usize = 200;
/// Seconds a server's hold on a task lasts without renewal: short, so the test is, and
/// longer than the sweep's 5 s, so a server that ignored leases would be caught taking
/// the dead server's tasks early.
const LEASE_SECS: &str = "10";

/// Task `i`: the first executor leaves a file in the task's volume, the second reads it
/// back, so a task resumed by another server proves it kept the workspace.
fn task(i: usize) -> Value {
    json!({
        "name": format!("replica-{i}"),
        "volumes": ["/data"],
        "executors": [
            {"image": BUSYBOX, "command": ["sh", "-c", format!("echo task-{i} > /data/mark")]},
            {"image": BUSYBOX, "command": ["cat", "/data/mark"]}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_a_store_and_one_finishes_what_the_other_left() {
    let Some((database_url, database)) = fresh_database("tessera_replicas").await else {
        return;
    };
    let mut db = sqlx::PgConnection::connect(&database_url).await.unwrap();
    let work = tempfile::tempdir().unwrap();
    let creates = ContainerCreates::watch();
    let options = Options {
        database_url: Some(database_url.clone()),
        max_concurrent_tasks: 4,
        extra_args: vec![
            "--work-dir".into(),
            work.path().display().to_string(),
            "--task-lease-secs".into(),
            LEASE_SECS.into(),
        ],
        ..Options::default()
    };
    let mut doomed = Server::start(options.clone()).await;
    let survivor = Server::start(options).await;
    let doomed_instance = std::fs::read_to_string(doomed.data_dir.join("instance-id"))
        .unwrap()
        .trim()
        .to_string();
    let survivor_instance = std::fs::read_to_string(survivor.data_dir.join("instance-id"))
        .unwrap()
        .trim()
        .to_string();
    assert_ne!(doomed_instance, survivor_instance);

    // Half the tasks through each server.
    let mut ids = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let server = if i % 2 == 0 { &doomed } else { &survivor };
        ids.push(server.create(&task(i)).await);
    }

    // Kill one server in the middle: a third of the tasks done, and containers it made
    // running.
    let start = Instant::now();
    loop {
        let complete: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE state = 'COMPLETE'")
                .fetch_one(&mut db)
                .await
                .unwrap();
        let running = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=tessera.instance={doomed_instance}"),
            "--filter",
            "status=running",
        ]);
        if complete >= (TASKS / 3) as i64 && !running.trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the first server never got a third of the way:\n{}",
            doomed.server_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill9();
    let killed = Instant::now();

    // What it held when it died, and until when (on the database's clock).
    let held: Vec<(String, i64)> = sqlx::query_as(
        "SELECT id, lease_until FROM tasks WHERE owner = $1 \
         AND state IN ('INITIALIZING', 'RUNNING', 'PAUSED', 'CANCELING')",
    )
    .bind(&doomed_instance)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert!(!held.is_empty(), "the dead server held running tasks");
    let expiry = held.iter().map(|(_, until)| *until).min().unwrap();
    // Until the first of those leases runs out, nobody takes any of them.
    loop {
        let taken: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE id = ANY($1) AND owner <> $2")
                .bind(held.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>())
                .bind(&doomed_instance)
                .fetch_one(&mut db)
                .await
                .unwrap();
        // Read after the owners: if it is still before the expiry, so was that read.
        let now: i64 = sqlx::query_scalar(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        )
        .fetch_one(&mut db)
        .await
        .unwrap();
        if now >= expiry {
            break;
        }
        assert_eq!(taken, 0, "a task was taken over before its lease ran out");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The survivor ends every task (a bound for 400 containers on a small machine).
    let bound = Duration::from_secs(600);
    let start = Instant::now();
    let mut done: HashMap<String, Value> = HashMap::new();
    while done.len() < TASKS {
        let waiting: Vec<&String> = ids.iter().filter(|id| !done.contains_key(*id)).collect();
        for id in waiting {
            let t = survivor.task(id, "FULL").await;
            if common::is_terminal(t["state"].as_str().unwrap_or("")) {
                done.insert(id.clone(), t);
            }
        }
        assert!(
            start.elapsed() < bound,
            "{} of {TASKS} tasks ended; server log:\n{}",
            done.len(),
            survivor.server_log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let all_done = killed.elapsed();

    // Every task is truthfully COMPLETE, its second executor reading what its first wrote.
    let mut adopted = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let t = &done[id];
        assert_eq!(t["state"], "COMPLETE", "task {i}: {}", common::short(t));
        let logs = t["logs"].as_array().unwrap();
        assert_eq!(
            logs.len(),
            1,
            "task {i} had one attempt: {}",
            common::short(t)
        );
        let executors = logs[0]["logs"].as_array().unwrap();
        assert_eq!(executors.len(), 2, "task {i}: {}", common::short(t));
        assert_eq!(executors[0]["exit_code"], 0, "task {i}");
        assert_eq!(executors[1]["exit_code"], 0, "task {i}");
        assert_eq!(
            executors[1]["stdout"],
            format!("task-{i}\n"),
            "task {i}: {}",
            common::short(t)
        );
        let notes = logs[0]["system_logs"].to_string();
        if notes.contains(&format!(
            "resumed by server {survivor_instance} after the lease of server {doomed_instance} ran out"
        )) {
            adopted.push(id.clone());
        }
    }
    // Exactly the tasks the dead server held were taken over; the living one was never
    // robbed (a driver that loses its task says so in its log).
    let mut expected: Vec<String> = held.iter().map(|(id, _)| id.clone()).collect();
    expected.sort();
    adopted.sort();
    assert_eq!(
        adopted, expected,
        "the survivor took over what the dead server held"
    );
    for server in [&doomed, &survivor] {
        assert!(
            !server.server_log().contains("took the task over"),
            "a task was taken from a living server"
        );
    }
    eprintln!(
        "{TASKS} tasks ({} containers) on two servers; one killed while holding {} tasks; \
         all done {:.1} s after the kill (lease {LEASE_SECS} s)",
        TASKS * 2,
        held.len(),
        all_done.as_secs_f64()
    );

    // Docker's own record: one container per task and executor index, ever.
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for attributes in creates.until_now() {
        let (Some(task), Some(index)) = (
            attributes["tessera.task-id"].as_str(),
            attributes["tessera.executor-index"].as_str(),
        ) else {
            continue;
        };
        if ids.iter().any(|id| id == task) {
            *counts
                .entry((task.to_string(), index.to_string()))
                .or_default() += 1;
        }
    }
    let creates = counts;
    assert_eq!(
        creates.len(),
        TASKS * 2,
        "every executor's container was created"
    );
    let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "created more than once: {twice:?}");

    // Nothing of these tasks is left behind in Docker.
    for instance in [&doomed_instance, &survivor_instance] {
        let left = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=tessera.instance={instance}"),
        ]);
        assert!(left.trim().is_empty(), "containers left: {left}");
    }
    drop(survivor);
    db.close().await.unwrap();
    drop_database(&database).await;
}

/// Docker's container create events, read as they happen (the engine keeps only its
/// last 256 events for `--since`, far fewer than this test makes).
struct ContainerCreates {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ContainerCreates {
    fn watch() -> ContainerCreates {
        let since = time::OffsetDateTime::now_utc().unix_timestamp() - 1;
        let mut child = std::process::Command::new("docker")
            .args(["events", "--since", &since.to_string()])
            .args(["--filter", "type=container", "--filter", "event=create"])
            .args(["--format", "{{json .Actor.Attributes}}"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("docker events");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        ContainerCreates { child, lines }
    }

    /// The attributes of every create so far: a marker container is created, and
    /// events are read until its own (the engine sends events in order).
    fn until_now(mut self) -> Vec<Value> {
        let marker = format!("tessera-test-marker-{}", std::process::id());
        docker(&["create", "--label", &format!("{marker}=1"), BUSYBOX, "true"]);
        let mut seen = Vec::new();
        let start = Instant::now();
        loop {
            let left = DEADLINE.saturating_sub(start.elapsed());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the marker's create event");
            let attributes: Value = serde_json::from_str(&line).unwrap();
            if attributes.get(&marker).is_some() {
                break;
            }
            seen.push(attributes);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let gone = docker(&["ps", "-aq", "--filter", &format!("label={marker}")]);
        for id in gone.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
        seen
    }
}
