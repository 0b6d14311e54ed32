//! Tasks running as real Docker containers, driven over the TES API.

mod common;

use common::{BUSYBOX, Options, Server, docker, simple_task};
use serde_json::{Value, json};
use std::fs;

async fn server() -> Server {
    Server::start(Options::default()).await
}

fn exec_log(t: &Value, i: usize) -> &Value {
    &t["logs"][0]["logs"][i]
}

fn meta(t: &Value, key: &str) -> Option<String> {
    t["logs"][0]["metadata"][key].as_str().map(str::to_string)
}

#[tokio::test]
async fn executors_run_in_order_sharing_inputs_volumes_and_env() {
    let s = server().await;
    let content = "line\n".repeat(30_000); // 150 KB of inline content
    let id = s
        .create(&json!({
            "name": "pipeline",
            "inputs": [{"path": "/data/in.txt", "content": content}],
            "volumes": ["/vol"],
            "executors": [
                {"image": BUSYBOX, "command": ["sh", "-c", "wc -l < /data/in.txt > /vol/count; echo to-stderr >&2"]},
                {"image": BUSYBOX, "command": ["sh", "-c", "echo \"$GREETING $(cat count) $(pwd)\""], "workdir": "/vol", "env": {"GREETING": "lines:"}},
                {"image": BUSYBOX, "command": ["echo", "$HOME", "*"]}
            ]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "COMPLETE", "{}", common::short(&t));
    assert_eq!(exec_log(&t, 0)["stderr"], "to-stderr\n");
    assert_eq!(exec_log(&t, 1)["stdout"], "lines: 30000 /vol\n");
    assert_eq!(
        exec_log(&t, 2)["stdout"],
        "$HOME *\n",
        "no shell is added around the command"
    );
    for i in 0..3 {
        assert_eq!(exec_log(&t, i)["exit_code"], 0);
        assert!(
            exec_log(&t, i)["start_time"].is_string() && exec_log(&t, i)["end_time"].is_string()
        );
        // One clock for start and end: the end is never before the start, and the run
        // time is exactly their difference, even for commands that exit at once.
        let at = |k: &str| {
            time::OffsetDateTime::parse(
                exec_log(&t, i)[k].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        assert!(at("end_time") >= at("start_time"), "{}", exec_log(&t, i));
        let run_ms: i128 = meta(&t, &format!("executor.{i}.run_ms"))
            .unwrap_or_else(|| panic!("no run_ms: {}", common::short(&t)))
            .parse()
            .unwrap();
        assert_eq!(
            run_ms,
            (at("end_time") - at("start_time")).whole_milliseconds()
        );
        // The kernel's maximum, read when the container ends: there for short runs too.
        let peak: u64 = meta(&t, &format!("executor.{i}.peak_memory_bytes"))
            .unwrap_or_else(|| {
                panic!(
                    "no peak memory for executor {i}: {}",
                    t["logs"][0]["metadata"]
                )
            })
            .parse()
            .unwrap();
        assert!(peak > 0);
    }
    assert!(
        exec_log(&t, 0)["end_time"].as_str() <= exec_log(&t, 1)["start_time"].as_str(),
        "executors run one after another"
    );
    assert_eq!(meta(&t, "stage_in_bytes").as_deref(), Some("150000"));
    for key in ["queue_ms", "stage_in_ms", "stage_out_ms"] {
        assert!(meta(&t, key).is_some(), "metadata {key} missing: {t}");
    }
    assert!(t["logs"][0]["start_time"].is_string() && t["logs"][0]["end_time"].is_string());
    assert!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=tessera.task-id={id}")
        ])
        .trim()
        .is_empty(),
        "containers are removed"
    );
    assert!(
        !s.data_dir.join("work").join(&id).exists(),
        "the workspace is removed"
    );
    // BASIC hides stdout/stderr and system logs.
    let basic = s.task(&id, "BASIC").await;
    assert!(basic["logs"][0]["logs"][0].get("stdout").is_none());
    assert_eq!(basic["logs"][0]["logs"][0]["exit_code"], 0);
}

#[tokio::test]
async fn a_failing_executor_stops_the_task_unless_it_ignores_errors() {
    let s = server().await;
    let id = s
        .create(&json!({"executors": [
            {"image": BUSYBOX, "command": ["sh", "-c", "exit 3"], "ignore_error": true},
            {"image": BUSYBOX, "command": ["sh", "-c", "echo second; exit 5"]},
            {"image": BUSYBOX, "command": ["echo", "never"]}
        ]}))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "EXECUTOR_ERROR");
    let logs = t["logs"][0]["logs"].as_array().unwrap();
    assert_eq!(logs.len(), 2, "an executor that never ran has no log");
    assert_eq!(logs[0]["exit_code"], 3);
    assert_eq!(logs[1]["exit_code"], 5);
    assert_eq!(logs[1]["stdout"], "second\n");
    assert_eq!(
        s.status(&id).await["reason"],
        "executor 1 exited with code 5"
    );
}

#[tokio::test]
async fn a_missing_program_is_exit_code_127() {
    let s = server().await;
    let id = s.create(&simple_task(&["/no/such/program", "x"])).await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "EXECUTOR_ERROR", "{}", common::short(&t));
    assert_eq!(exec_log(&t, 0)["exit_code"], 127);
    assert!(
        exec_log(&t, 0)["stderr"]
            .as_str()
            .unwrap()
            .contains("no such file"),
        "{}",
        common::short(&t)
    );
}

#[tokio::test]
async fn a_missing_image_is_a_system_error_with_the_registry_reason() {
    let s = server().await;
    let id = s.create(&json!({"executors": [{"image": "tessera-test/does-not-exist:1", "command": ["true"]}]})).await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "SYSTEM_ERROR", "{}", common::short(&t));
    let reason = s.status(&id).await["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("tessera-test/does-not-exist:1"), "{reason}");
    assert!(
        t["logs"][0]["system_logs"]
            .to_string()
            .contains("not available"),
        "{}",
        common::short(&t)
    );
    assert!(
        t["logs"][0]["logs"].as_array().unwrap().is_empty(),
        "no executor ran"
    );
}

#[tokio::test]
async fn file_inputs_and_outputs_stage_through_allowed_directories() {
    let s = server().await;
    let src = s.allowed.join("src");
    fs::create_dir_all(src.join("tree/sub")).unwrap();
    fs::write(src.join("one.txt"), "one").unwrap();
    fs::write(src.join("tree/a.txt"), "aa").unwrap();
    fs::write(src.join("tree/sub/b.txt"), "bbb").unwrap();
    let out = s.allowed.join("out");
    let url = |p: &str| format!("file://{}/{p}", s.allowed.display());
    let id = s
        .create(&json!({
            "inputs": [
                {"path": "/in/one.txt", "url": url("src/one.txt")},
                {"path": "/in/tree", "url": url("src/tree"), "type": "DIRECTORY"}
            ],
            "outputs": [
                {"path": "/out/copy.txt", "url": url("out/copy.txt")},
                {"path": "/out/dir", "url": url("out/dir"), "type": "DIRECTORY"},
                {"path": "/out/glob/*.log", "path_prefix": "/out/glob/", "url": url("out/logs/")},
                {"path": "/stdout.txt", "url": url("out/stdout.txt")}
            ],
            "executors": [{
                "image": BUSYBOX,
                "command": ["sh", "-c", "cat /in/one.txt /in/tree/sub/b.txt > /out/copy.txt; mkdir -p /out/dir/x /out/glob; echo 1 > /out/dir/x/f; echo 12 > /out/glob/a.log; echo 123 > /out/glob/b.log; echo skip > /out/glob/c.txt; echo printed"],
                "stdout": "/stdout.txt"
            }]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(
        t["state"],
        "COMPLETE",
        "{}\n{}",
        common::short(&t),
        s.server_log()
    );
    assert_eq!(fs::read_to_string(out.join("copy.txt")).unwrap(), "onebbb");
    assert_eq!(fs::read_to_string(out.join("dir/x/f")).unwrap(), "1\n");
    assert_eq!(fs::read_to_string(out.join("logs/a.log")).unwrap(), "12\n");
    assert_eq!(fs::read_to_string(out.join("logs/b.log")).unwrap(), "123\n");
    assert!(!out.join("logs/c.txt").exists());
    assert_eq!(
        fs::read_to_string(out.join("stdout.txt")).unwrap(),
        "printed\n"
    );
    let outputs: Vec<(String, String, String)> = t["logs"][0]["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["path"].as_str().unwrap().into(),
                o["url"].as_str().unwrap().into(),
                o["size_bytes"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        outputs,
        [
            ("/out/copy.txt".into(), url("out/copy.txt"), "6".into()),
            ("/out/dir/x/f".into(), url("out/dir/x/f"), "2".into()),
            ("/out/glob/a.log".into(), url("out/logs/a.log"), "3".into()),
            ("/out/glob/b.log".into(), url("out/logs/b.log"), "4".into()),
            ("/stdout.txt".into(), url("out/stdout.txt"), "8".into()),
        ]
    );
    assert_eq!(meta(&t, "stage_in_bytes").as_deref(), Some("8"));
    assert_eq!(meta(&t, "stage_out_files").as_deref(), Some("5"));
}

#[tokio::test]
async fn stdin_and_stdout_paths_are_files_inside_the_container() {
    let s = server().await;
    let id = s
        .create(&json!({
            "inputs": [{"path": "/data/words", "content": "b\na\nc\n"}],
            "executors": [
                {"image": BUSYBOX, "command": ["sort"], "stdin": "/data/words", "stdout": "/data/sorted"},
                {"image": BUSYBOX, "command": ["cat", "/data/sorted"]}
            ]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "COMPLETE", "{}", common::short(&t));
    assert_eq!(exec_log(&t, 1)["stdout"], "a\nb\nc\n");
}

#[tokio::test]
async fn a_missing_output_is_a_system_error_but_an_executor_error_wins() {
    let s = server().await;
    let url = format!("file://{}/never", s.allowed.display());
    let id = s.create(&json!({"outputs": [{"path": "/out/none", "url": url}], "executors": [{"image": BUSYBOX, "command": ["true"]}]})).await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "SYSTEM_ERROR", "{}", common::short(&t));
    assert!(
        t["logs"][0]["system_logs"]
            .to_string()
            .contains("/out/none"),
        "{}",
        common::short(&t)
    );
    let id = s.create(&json!({"outputs": [{"path": "/out/none", "url": url}], "executors": [{"image": BUSYBOX, "command": ["false"]}]})).await;
    assert_eq!(s.wait_done(&id).await["state"], "EXECUTOR_ERROR");
}

#[tokio::test]
async fn resources_become_docker_limits_and_unenforceable_ones_are_reported() {
    let s = server().await;
    let id = s
        .create(&json!({
            "resources": {"cpu_cores": 1, "ram_gb": 0.25, "disk_gb": 1.0, "zones": ["z1"], "backend_parameters": {"network": "none"}},
            "executors": [{"image": BUSYBOX, "command": ["sh", "-c", "echo started; sleep 30"]}]
        }))
        .await;
    let t = s
        .wait_until(&id, "stdout shows the executor started", |t| {
            exec_log(t, 0)["stdout"] == "started\n"
        })
        .await;
    assert_eq!(t["state"], "RUNNING");
    let name = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=tessera.task-id={id}"),
    ]);
    let inspect = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.NetworkMode}} {{.HostConfig.Privileged}} {{.HostConfig.SecurityOpt}}",
        name.trim(),
    ]);
    assert_eq!(
        inspect.trim(),
        "1000000000 268435456 none false [no-new-privileges]"
    );
    let sys = t["logs"][0]["system_logs"].to_string();
    assert!(sys.contains("disk_gb") && sys.contains("zones"), "{sys}");
    s.cancel(&id).await;
    assert_eq!(s.wait_done(&id).await["state"], "CANCELED");

    let (status, err) = s.post_json(&s.tes("/tasks"), &json!({"resources": {"cpu_cores": 512}, "executors": [{"image": BUSYBOX, "command": ["true"]}]})).await;
    assert_eq!(status, 400, "more cores than the Docker host has: {err}");
}

#[tokio::test]
async fn cancel_kills_the_container_and_passes_through_canceling() {
    let s = server().await;
    let id = s
        .create(&simple_task(&["sh", "-c", "echo up; sleep 1000"]))
        .await;
    s.wait_until(&id, "running with output", |t| {
        exec_log(t, 0)["stdout"] == "up\n"
    })
    .await;
    let (status, body) = s.cancel(&id).await;
    assert_eq!((status, body), (200, json!({})));
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "CANCELED");
    let states: Vec<String> = s.status(&id).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        states,
        ["QUEUED", "INITIALIZING", "RUNNING", "CANCELING", "CANCELED"]
    );
    assert!(
        docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=tessera.task-id={id}")
        ])
        .trim()
        .is_empty(),
        "the container is gone"
    );
    assert!(
        !s.data_dir.join("work").join(&id).exists(),
        "the workspace is gone"
    );
}

#[tokio::test]
async fn output_grows_live_while_the_task_runs() {
    let s = server().await;
    let id = s
        .create(&simple_task(&["sh", "-c", "echo first; sleep 1000"]))
        .await;
    let t = s
        .wait_until(&id, "first line visible while running", |t| {
            exec_log(t, 0)["stdout"] == "first\n"
        })
        .await;
    assert_eq!(t["state"], "RUNNING");
    assert!(exec_log(&t, 0)["end_time"].is_null());
    s.cancel(&id).await;
    s.wait_done(&id).await;
}

#[tokio::test]
async fn tasks_beyond_the_limit_stay_queued_with_a_reason() {
    let s = Server::start(Options {
        max_concurrent_tasks: 1,
        ..Options::default()
    })
    .await;
    let first = s
        .create(&simple_task(&["sh", "-c", "echo go; sleep 1000"]))
        .await;
    s.wait_until(&first, "running", |t| exec_log(t, 0)["stdout"] == "go\n")
        .await;
    let second = s.create(&simple_task(&["echo", "second"])).await;
    let st = s.status(&second).await;
    assert_eq!(st["state"], "QUEUED");
    assert!(
        st["reason"].as_str().unwrap().contains("free task slot"),
        "{st}"
    );
    s.cancel(&first).await;
    let t = s.wait_done(&second).await;
    assert_eq!(t["state"], "COMPLETE");
    assert_eq!(exec_log(&t, 0)["stdout"], "second\n");
}

#[tokio::test]
async fn without_docker_the_server_serves_and_tasks_wait_with_the_reason() {
    let s = Server::start(Options {
        docker_socket: Some("/nonexistent/docker.sock".into()),
        ..Options::default()
    })
    .await;
    let id = s.create(&simple_task(&["true"])).await;
    let st = s
        .wait_until(&id, "queued", |t| t["state"] == "QUEUED")
        .await;
    assert_eq!(st["state"], "QUEUED");
    let start = std::time::Instant::now();
    loop {
        let st = s.status(&id).await;
        if st["reason"]
            .as_str()
            .unwrap_or("")
            .contains("Docker engine")
        {
            break;
        }
        assert!(start.elapsed() < common::DEADLINE, "no Docker reason: {st}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
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
    assert_eq!(ready["executor"]["status"], "unreachable", "{ready}");
    assert_eq!(s.status(&id).await["state"], "QUEUED");
}

#[tokio::test]
async fn outputs_never_follow_links_or_block_on_special_files() {
    let s = server().await;
    let url = |p: &str| format!("file://{}/{p}", s.allowed.display());
    // A FIFO would block a naive copy forever; a symlink loop would never end a walk.
    let id = s
        .create(&json!({
            "outputs": [{"path": "/out/fifo", "url": url("fifo")}],
            "executors": [{"image": BUSYBOX, "command": ["mkfifo", "/out/fifo"]}]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "SYSTEM_ERROR", "{}", common::short(&t));
    assert!(
        t["logs"][0]["system_logs"]
            .to_string()
            .contains("special file"),
        "{}",
        common::short(&t)
    );
    let id = s
        .create(&json!({
            "outputs": [{"path": "/out/d", "url": url("loop"), "type": "DIRECTORY"}],
            "executors": [{"image": BUSYBOX, "command": ["sh", "-c", "mkdir -p /out/d && ln -s . /out/d/loop && ln -s /etc/passwd /out/d/passwd"]}]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "SYSTEM_ERROR", "{}", common::short(&t));
    assert!(
        t["logs"][0]["system_logs"]
            .to_string()
            .contains("symbolic link"),
        "{}",
        common::short(&t)
    );
}

#[tokio::test]
async fn a_stdout_path_turned_into_a_symlink_cannot_write_host_files() {
    let s = server().await;
    let canary = s.allowed.join("canary");
    fs::write(&canary, "untouched").unwrap();
    // The executor replaces its own stdout file with a link to a host path while it
    // runs; the host must write the capture into the workspace, not through the link.
    let id = s
        .create(&json!({
            "executors": [{
                "image": BUSYBOX,
                "command": ["sh", "-c", format!("ln -sf {} /logs/stdout; echo attack", canary.display())],
                "stdout": "/logs/stdout"
            }, {
                "image": BUSYBOX,
                "command": ["cat", "/logs/stdout"]
            }]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "COMPLETE", "{}", common::short(&t));
    assert_eq!(fs::read_to_string(&canary).unwrap(), "untouched");
    assert_eq!(
        exec_log(&t, 1)["stdout"],
        "attack\n",
        "the next executor sees the captured stdout"
    );
}

#[tokio::test]
async fn wildcards_stage_whatever_path_prefix_looks_like_and_host_network_is_refused() {
    let s = server().await;
    let id = s
        .create(&json!({
            "outputs": [{"path": "/data/*.txt", "path_prefix": "/data", "url": format!("file://{}/w/", s.allowed.display())}],
            "executors": [{"image": BUSYBOX, "command": ["sh", "-c", "echo x > /data/a.txt"]}]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "COMPLETE", "{}", common::short(&t));
    assert_eq!(
        fs::read_to_string(s.allowed.join("w/a.txt")).unwrap(),
        "x\n"
    );

    let (status, err) = s
        .post_json(&s.tes("/tasks"), &json!({"resources": {"backend_parameters": {"network": "host"}}, "executors": [{"image": BUSYBOX, "command": ["true"]}]}))
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("bridge, none"),
        "{err}"
    );
}
