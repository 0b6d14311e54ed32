//! Task containers are hardened by default, checked from inside real containers: the
//! capabilities they keep, no new privileges, a process limit, a user and a read-only
//! image per target, no network per target, a maximum run time, Docker's own log files
//! bounded, a network from which link-local addresses and the host are unreachable, and
//! hostile tasks (a device node, a dropped capability, a fork bomb, gigabytes of output)
//! that end with reasons while the server keeps answering.

mod common;

use common::{BUSYBOX, Options, Server, docker};
use serde_json::{Value, json};
use std::process::Command;

fn exec_log(t: &Value, i: usize) -> &Value {
    &t["logs"][0]["logs"][i]
}

fn stdout(t: &Value, i: usize) -> String {
    exec_log(t, i)["stdout"].as_str().unwrap_or("").to_string()
}

fn stderr(t: &Value, i: usize) -> String {
    exec_log(t, i)["stderr"].as_str().unwrap_or("").to_string()
}

/// A server with two targets, chosen by the task tag `pool`: "plain" (the defaults)
/// and "locked" (its own user, a read-only image, no network).
async fn two_pool_server(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap().keep();
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        r#"
[[targets]]
name = "plain"
slots = 2
tags = { pool = "plain" }

[[targets]]
name = "locked"
slots = 2
tags = { pool = "locked" }
user = "1000:1000"
read_only_root = true
network = "none"
"#,
    )
    .unwrap();
    let mut extra_args = vec![
        "--config".to_string(),
        config.display().to_string(),
        "--route-tag-key".to_string(),
        "pool".to_string(),
    ];
    extra_args.extend(extra.iter().map(|s| s.to_string()));
    Server::start(Options {
        extra_args,
        ..Options::default()
    })
    .await
}

/// The capability bits of [`tessera_docker`]'s batch set: CHOWN 0, DAC_OVERRIDE 1,
/// FOWNER 3, FSETID 4, KILL 5, SETGID 6, SETUID 7.
const BATCH_CAPS: &str = "00000000000000fb";

#[tokio::test]
async fn containers_keep_only_the_batch_capabilities_and_targets_lock_them_down() {
    let s = two_pool_server(&["--pids-limit", "100"]).await;
    let probe = "grep -E '^(CapEff|CapBnd|NoNewPrivs):' /proc/self/status; \
        cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; \
        echo uid=$(id -u); \
        (touch /image-file 2>/dev/null && echo image=writable) || echo image=read-only; \
        (touch /tmp/scratch && echo tmp=writable) || echo tmp=read-only; \
        echo nets=$(ls /sys/class/net | tr '\\n' ' '); \
        echo result > /out/result.txt";
    let task = |pool: &str| {
        json!({
            "tags": {"pool": pool},
            "executors": [{"image": BUSYBOX, "command": ["sh", "-c", probe]}],
            "outputs": [{"path": "/out/result.txt", "url": format!("file://{}/{pool}.txt", s.allowed.display())}]
        })
    };
    let plain = s.create(&task("plain")).await;
    let locked = s.create(&task("locked")).await;

    let t = s.wait_done(&plain).await;
    assert_eq!(t["state"], "COMPLETE", "{t}");
    let out = stdout(&t, 0);
    assert!(out.contains(&format!("CapEff:\t{BATCH_CAPS}")), "{out}");
    assert!(out.contains(&format!("CapBnd:\t{BATCH_CAPS}")), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.lines().any(|l| l == "100"), "pids.max: {out}");
    assert!(out.contains("uid=0"), "the image's user: {out}");
    assert!(out.contains("image=writable"), "{out}");
    assert!(out.lines().any(|l| l == "nets=eth0 lo"), "{out}");

    let t = s.wait_done(&locked).await;
    assert_eq!(t["state"], "COMPLETE", "{t}");
    let out = stdout(&t, 0);
    assert!(out.contains("uid=1000"), "{out}");
    assert!(
        out.contains("CapEff:\t0000000000000000"),
        "a non-root user keeps nothing: {out}"
    );
    assert!(out.contains("image=read-only"), "{out}");
    assert!(out.contains("tmp=writable"), "{out}");
    assert!(
        out.lines().any(|l| l == "nets=lo"),
        "no network on this target: {out}"
    );
    // The user could write its output, and it was staged out.
    let staged = std::fs::read_to_string(s.allowed.join("locked.txt")).unwrap();
    assert_eq!(staged, "result\n");
    assert_eq!(t["logs"][0]["metadata"]["target"], "locked");
}

#[tokio::test]
async fn a_task_past_its_maximum_run_time_ends_system_error_and_its_container_goes() {
    let s = Server::start(Options {
        extra_args: vec!["--max-run-time-cap-secs".into(), "3600".into()],
        ..Options::default()
    })
    .await;
    let id = s
        .create(&json!({
            // Long enough for the container to start and print on a loaded machine (the
            // run time counts from the task's start, container creation included).
            "resources": {"backend_parameters": {"max_run_time": "5"}},
            "executors": [
                {"image": BUSYBOX, "command": ["sh", "-c", "echo started; sleep 600"]},
                {"image": BUSYBOX, "command": ["echo", "never"]}
            ]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "SYSTEM_ERROR", "{t}");
    let reason = t["logs"][0]["system_logs"].to_string();
    assert!(
        reason.contains("maximum run time of 5 s"),
        "a readable reason: {reason}"
    );
    assert_eq!(stdout(&t, 0), "started\n");
    assert_eq!(t["logs"][0]["logs"].as_array().map(Vec::len), Some(1));
    // A timed-out task's last container goes right after its final state is written
    // (the time-out step removes what is left); a bound, not a wait.
    let start = std::time::Instant::now();
    loop {
        let left = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label=tessera.task-id={id}"),
        ]);
        if left.trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "its container is never removed: {left}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Above the cap is refused up front, naming the field.
    let (status, err) = s
        .post_json(
            &s.tes("/tasks"),
            &json!({
                "resources": {"backend_parameters": {"max_run_time": "3601"}},
                "executors": [{"image": BUSYBOX, "command": ["true"]}]
            }),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(
        err.to_string()
            .contains("resources.backend_parameters.max_run_time"),
        "{err}"
    );
}

#[tokio::test]
async fn docker_keeps_at_most_two_small_log_files_while_the_whole_output_is_counted() {
    let s = Server::start(Options {
        extra_args: vec!["--docker-log-bytes".into(), "1048576".into()],
        ..Options::default()
    })
    .await;
    // Five megabytes of output, then it waits to be looked at.
    let id = s
        .create(&json!({
            "executors": [{"image": BUSYBOX, "command": ["sh", "-c", "yes 0123456789abcdef | head -c 5000000; echo; echo done-writing; sleep 600"]}]
        }))
        .await;
    s.wait_until(&id, "the output is written", |t| {
        stdout(t, 0).ends_with("done-writing\n")
    })
    .await;
    let name = format!("tessera-{id}-0-0");
    let log_path = docker(&["inspect", "--format", "{{.LogPath}}", &name]);
    let log_path = log_path.trim();
    assert!(!log_path.is_empty(), "Docker's log file of {name}");
    let on_disk: u64 = [log_path.to_string(), format!("{log_path}.1")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    assert!(
        on_disk <= 2 * 1_048_576 + 64 * 1024,
        "Docker keeps {on_disk} bytes of log for {name}"
    );
    let config = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .HostConfig.LogConfig.Config \"max-file\"}} {{.HostConfig.CapDrop}} {{.HostConfig.PidsLimit}}",
        &name,
    ]);
    assert_eq!(config.trim(), "json-file 1048576 2 [ALL] 4096");
    s.cancel(&id).await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "CANCELED");
    // What Tessera read is all of it, though Docker kept only the tail.
    let total: u64 = t["logs"][0]["metadata"]["executor.0.stdout_bytes"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert_eq!(total, 5_000_000 + 1 + "done-writing\n".len() as u64);
}

/// A network namespace of the test's own, reachable from the host through a veth pair,
/// with an HTTP server on a link-local address (where a cloud's metadata service would
/// be) and on an ordinary one. Removed on drop.
struct FakeMetadataService {
    ns: String,
    host_if: String,
    servers: Vec<std::process::Child>,
}

const LINK_LOCAL_HOST_SIDE: &str = "169.254.77.1";
const LINK_LOCAL: &str = "169.254.77.2";
const ORDINARY: &str = "198.18.77.1";

fn run(cmd: &[&str]) {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl FakeMetadataService {
    fn start() -> FakeMetadataService {
        // Fixed names: what a killed run left is found and replaced.
        let ns = "tessera-test-meta".to_string();
        let (host_if, ns_if) = ("tsrtest-h".to_string(), "tsrtest-n".to_string());
        // What an earlier run that was killed left.
        let _ = Command::new("ip").args(["link", "del", &host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        run(&["ip", "netns", "add", &ns]);
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        run(&["ip", "link", "set", &ns_if, "netns", &ns]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{LINK_LOCAL_HOST_SIDE}/30"),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut cmd = vec!["ip", "netns", "exec", &ns];
            cmd.extend_from_slice(args);
            run(&cmd);
        };
        in_ns(&["ip", "link", "set", "lo", "up"]);
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{LINK_LOCAL}/30"),
            "dev",
            &ns_if,
        ]);
        in_ns(&[
            "ip",
            "addr",
            "add",
            &format!("{ORDINARY}/32"),
            "dev",
            &ns_if,
        ]);
        in_ns(&["ip", "link", "set", &ns_if, "up"]);
        in_ns(&["ip", "route", "add", "default", "via", LINK_LOCAL_HOST_SIDE]);
        // The ordinary address is reached through the veth; the link-local one is on
        // its subnet.
        run(&[
            "ip",
            "route",
            "replace",
            &format!("{ORDINARY}/32"),
            "via",
            LINK_LOCAL,
        ]);
        let www = tempfile::tempdir().unwrap().keep();
        std::fs::write(www.join("index.html"), "secret\n").unwrap();
        // The metadata service's HTTP port, and its DNS port (here also an HTTP server,
        // so that one probe tells reached from blocked).
        let servers = ["80", "53"]
            .map(|port| {
                Command::new("ip")
                    .args([
                        "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", port, "-h",
                    ])
                    .arg(&www)
                    .spawn()
                    .unwrap()
            })
            .into();
        // Serving once the host can fetch from it (host to namespace is not filtered).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for port in [80, 53] {
            while std::net::TcpStream::connect((ORDINARY, port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "httpd never listened");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        FakeMetadataService {
            ns,
            host_if,
            servers,
        }
    }
}

impl Drop for FakeMetadataService {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
        // The veth pair goes with either end, and the route through it with the pair.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A plain HTTP server on all of the host's addresses (a service on the Tessera host).
async fn host_service() -> u16 {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await;
            let _ = conn
                .write_all(b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhost\n")
                .await;
        }
    });
    port
}

/// What `probe` says from a container on Docker's default bridge: the control that
/// shows the addresses are reachable when nothing blocks them.
fn from_default_bridge(probe: &str) -> String {
    docker(&[
        "run",
        "--rm",
        "--network",
        "bridge",
        BUSYBOX,
        "sh",
        "-c",
        probe,
    ])
}

#[tokio::test]
async fn the_task_network_blocks_link_local_addresses_and_the_host() {
    let _meta = FakeMetadataService::start();
    let port = host_service().await;
    // busybox's nc: the last line of the answer is the body; nothing when blocked.
    let probe = format!(
        "gw=$(ip route | awk '/default/ {{print $3}}'); \
         for target in '{ORDINARY} 80' '{LINK_LOCAL} 80' '{LINK_LOCAL} 53' \"$gw {port}\"; do \
           body=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 3 $target 2>/dev/null | tail -n 1); \
           if [ -n \"$body\" ]; then echo \"reached $target: $body\"; else echo \"blocked $target\"; fi; \
         done"
    );
    // Off the runtime's thread: the host service answers on it meanwhile.
    let control = tokio::task::spawn_blocking({
        let probe = probe.clone();
        move || from_default_bridge(&probe)
    })
    .await
    .unwrap();
    assert!(
        control.contains(&format!("reached {LINK_LOCAL} 80: secret")),
        "{control}"
    );
    assert!(
        control.contains(&format!(" {port}: host")),
        "the host is reachable from Docker's bridge: {control}"
    );

    let s = Server::start(Options::default()).await;
    let id = s
        .create(&json!({"executors": [{"image": BUSYBOX, "command": ["sh", "-c", probe]}]}))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "COMPLETE", "{t}");
    let out = stdout(&t, 0);
    assert!(
        out.contains(&format!("reached {ORDINARY} 80: secret")),
        "other addresses stay reachable: {out}"
    );
    assert!(out.contains(&format!("blocked {LINK_LOCAL} 80")), "{out}");
    assert!(
        out.contains(&format!("reached {LINK_LOCAL} 53: secret")),
        "DNS to a link-local resolver stays open: {out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("blocked ") && l.ends_with(&format!(" {port}"))),
        "the host's own services: {out}"
    );
    let network = docker(&[
        "inspect",
        "--format",
        "{{index .Options \"com.docker.network.bridge.name\"}} {{index .Options \"com.docker.network.bridge.enable_icc\"}}",
        "tessera",
    ]);
    assert_eq!(network.trim(), "tessera0 false");
}

/// The most memory the process has held (its peak resident set), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap()
}

/// Hostile tasks at once: one makes a device node, one uses a capability Docker grants
/// by default (chroot), one is a fork bomb, one writes gigabytes to stdout. Each ends
/// with a clear reason, the server answers every request throughout, and it never holds
/// the output in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tasks_end_with_reasons_while_the_server_stays_responsive() {
    const OUTPUT: u64 = 2 << 30;
    let s = Server::start(Options {
        max_concurrent_tasks: 4,
        extra_args: vec!["--pids-limit".into(), "64".into()],
        ..Options::default()
    })
    .await;
    let one = |command: &str, extra: Value| {
        let mut task = json!({"executors": [{"image": BUSYBOX, "command": ["sh", "-c", command]}]});
        if let (Some(t), Some(e)) = (task.as_object_mut(), extra.as_object()) {
            t.extend(e.clone());
        }
        task
    };
    let mknod = s.create(&one("mknod /tmp/disk b 8 0", json!({}))).await;
    let chroot = s.create(&one("chroot / true", json!({}))).await;
    // One core and ten seconds: the bomb (in a subshell, so the container's first
    // process never needs to fork again and cannot fail) meets the process limit, then
    // its deadline.
    let bomb = s
        .create(&one(
            "(bomb() { bomb | bomb & }; bomb) & while :; do :; done",
            json!({"resources": {"cpu_cores": 1, "backend_parameters": {"max_run_time": "10"}}}),
        ))
        .await;
    let flood = s
        .create(&one(
            // Lines of 16 KiB: Docker logs each line as a message of its own.
            &format!("yes $(head -c 16383 /dev/zero | tr '\\0' x) | head -c {OUTPUT}"),
            json!({}),
        ))
        .await;

    // Ask the server something every 100 ms until all four have ended.
    let ids = [&mknod, &chroot, &bomb, &flood];
    let asker = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let mut slowest = std::time::Duration::ZERO;
    let mut asked = 0;
    let start = std::time::Instant::now();
    loop {
        let mut done = 0;
        for id in ids {
            let began = std::time::Instant::now();
            let r = asker
                .get(s.tes(&format!("/tasks/{id}?view=MINIMAL")))
                .bearer_auth(&s.token)
                .send()
                .await
                .expect("the server answers within 5 s while hostile tasks run");
            slowest = slowest.max(began.elapsed());
            asked += 1;
            let t: Value = r.json().await.unwrap();
            if common::is_terminal(t["state"].as_str().unwrap_or("")) {
                done += 1;
            }
        }
        let health = asker
            .get(format!("{}/healthz", s.url))
            .send()
            .await
            .unwrap();
        assert!(health.status().is_success());
        if done == ids.len() {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(300),
            "the hostile tasks never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    eprintln!(
        "{asked} requests while hostile tasks ran for {:.1} s: the slowest took {} ms",
        start.elapsed().as_secs_f64(),
        slowest.as_millis()
    );

    let t = s.task(&mknod, "FULL").await;
    assert_eq!(t["state"], "EXECUTOR_ERROR", "{t}");
    assert!(stderr(&t, 0).contains("not permitted"), "{t}");
    let reason = s.status(&mknod).await["reason"].to_string();
    assert!(reason.contains("exited with code 1"), "{reason}");

    let t = s.task(&chroot, "FULL").await;
    assert_eq!(t["state"], "EXECUTOR_ERROR", "{t}");
    assert!(stderr(&t, 0).contains("not permitted"), "{t}");

    let t = s.task(&bomb, "FULL").await;
    assert_eq!(t["state"], "SYSTEM_ERROR", "{t}");
    let notes = t["logs"][0]["system_logs"].to_string();
    assert!(notes.contains("maximum run time of 10 s"), "{notes}");
    assert!(
        stderr(&t, 0).contains("fork"),
        "the bomb met the process limit: {t}"
    );

    let t = s.task(&flood, "FULL").await;
    assert_eq!(t["state"], "COMPLETE", "{t}");
    let counted = t["logs"][0]["metadata"]["executor.0.stdout_bytes"]
        .as_str()
        .and_then(|b| b.parse::<u64>().ok());
    assert_eq!(counted, Some(OUTPUT), "every byte counted");
    let kept = stdout(&t, 0).len();
    assert!(kept <= 64 * 1024, "the task keeps the tail: {kept} bytes");
    let peak = peak_rss(s.pid().unwrap());
    eprintln!("the server's peak resident memory: {} MiB", peak >> 20);
    assert!(
        peak < OUTPUT / 4,
        "the server held {peak} bytes at its peak while {OUTPUT} bytes streamed through"
    );
}
