//! Tasks on Kubernetes next to the same Jobs made directly with kubectl, on the same
//! cluster (`scripts/k8s-cluster.sh`): submit → container running, one task at a time,
//! and the total time of 100 short tasks submitted at once. Runs when
//! TESSERA_TEST_KUBECONFIG and TESSERA_TEST_K8S_TESSERA_IMAGE are set
//! (`scripts/k8s-cluster.sh up`, `scripts/k8s-image.sh`).
//!
//! The container's start is the time it prints: `cat /proc/uptime`, the kernel's clock,
//! which the client reads too (one machine, one kernel; 10 ms steps), since Kubernetes
//! reports container starts in whole seconds and busybox's `date` has no sub-seconds.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Args, Lat, start_server_with, tessera_bin};

/// Tasks one at a time, each side.
const SEQUENTIAL: usize = 8;
/// Tasks at once.
const BATCH: usize = 100;
const DEADLINE: Duration = Duration::from_secs(600);

struct Cluster {
    kubeconfig: String,
    busybox: String,
    namespace: String,
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", &self.namespace])
            .args(args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["delete", "namespace", &self.namespace, "--wait=false"])
            .output();
    }
}

/// Seconds since boot, as `/proc/uptime` says.
fn uptime(text: &str) -> Option<f64> {
    text.trim()
        .lines()
        .last()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn now() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| uptime(&t))
        .expect("/proc/uptime")
}

/// The time a container printed.
fn printed(text: &str) -> f64 {
    uptime(text).unwrap_or_else(|| panic!("no time in {text:?}"))
}

/// The Job the baseline makes: what Tessera makes for a task that stages nothing.
fn job(c: &Cluster, name: &str) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{"name": "step-0", "image": c.busybox,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["cat", "/proc/uptime"]}]}}}
    })
}

fn task(c: &Cluster) -> Value {
    json!({"executors": [{"image": c.busybox, "command": ["cat", "/proc/uptime"]}]})
}

async fn direct_one(c: &Cluster, i: usize) -> f64 {
    let name = format!("direct-{i}");
    let file = std::env::temp_dir().join(format!("{}-{name}.json", c.namespace));
    std::fs::write(&file, job(c, &name).to_string()).expect("write job");
    let t0 = now();
    c.kubectl(&["create", "-f", file.to_str().unwrap_or_default()]);
    c.kubectl(&[
        "wait",
        "--for=condition=complete",
        &format!("job/{name}"),
        "--timeout=300s",
    ]);
    let started = printed(&c.kubectl(&["logs", &format!("job/{name}")]));
    c.kubectl(&["delete", "job", &name, "--wait=false"]);
    started - t0
}

async fn wait_done(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let t: Value = http
            .get(format!("{url}/ga4gh/tes/v1/tasks/{id}?view=FULL"))
            .send()
            .await
            .expect("GET task")
            .json()
            .await
            .expect("json");
        match t["state"].as_str() {
            Some("COMPLETE") => return t,
            Some(s @ ("EXECUTOR_ERROR" | "SYSTEM_ERROR" | "CANCELED")) => {
                panic!("task {id} ended {s}: {t}")
            }
            _ => {}
        }
        assert!(start.elapsed() < DEADLINE, "task {id} did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn submit(http: &reqwest::Client, url: &str, c: &Cluster) -> String {
    let r: Value = http
        .post(format!("{url}/ga4gh/tes/v1/tasks"))
        .json(&task(c))
        .send()
        .await
        .expect("POST task")
        .json()
        .await
        .expect("json");
    r["id"].as_str().expect("task id").to_string()
}

async fn ours_one(http: &reqwest::Client, url: &str, c: &Cluster) -> f64 {
    let t0 = now();
    let id = submit(http, url, c).await;
    let done = wait_done(http, url, &id).await;
    printed(
        done["logs"][0]["logs"][0]["stdout"]
            .as_str()
            .unwrap_or_default(),
    ) - t0
}

pub async fn bench_kubernetes(args: &Args) {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (Some(kubeconfig), Some(image)) = (
        var("TESSERA_TEST_KUBECONFIG"),
        var("TESSERA_TEST_K8S_TESSERA_IMAGE"),
    ) else {
        println!(
            "\n## Kubernetes\n\nskipped: TESSERA_TEST_KUBECONFIG and TESSERA_TEST_K8S_TESSERA_IMAGE are not set"
        );
        return;
    };
    let c = Cluster {
        kubeconfig,
        busybox: var("TESSERA_TEST_K8S_IMAGE")
            .unwrap_or_else(|| "tessera.local/busybox:1.35".into()),
        namespace: format!("tessera-bench-{}", std::process::id()),
    };
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["create", "namespace", &c.namespace])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "[kubernetes]\nkubeconfig = {:?}\nnamespace = {:?}\nimage = {image:?}\n",
            c.kubeconfig, c.namespace
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let bin = tessera_bin(args);
    let server = start_server_with(
        Path::new(&bin),
        &data,
        &[
            "--no-auth",
            "--executor",
            "kubernetes",
            "--max-concurrent-tasks",
            &BATCH.to_string(),
            "--config",
            config.to_str().unwrap_or_default(),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let url = server.url.clone();

    // Warm both paths (the image in the page cache, the server's watch in sync).
    ours_one(&http, &url, &c).await;
    direct_one(&c, 1000).await;

    let (mut ours, mut direct) = (Lat(Vec::new()), Lat(Vec::new()));
    for i in 0..SEQUENTIAL {
        ours.0.push(Duration::from_secs_f64(
            ours_one(&http, &url, &c).await.max(0.0),
        ));
        direct
            .0
            .push(Duration::from_secs_f64(direct_one(&c, i).await.max(0.0)));
    }

    // 100 at once: all submitted, then all done.
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..BATCH {
        ids.push(submit(&http, &url, &c).await);
    }
    for id in &ids {
        wait_done(&http, &url, id).await;
    }
    let ours_batch = t0.elapsed().as_secs_f64();

    let list: Vec<Value> = (0..BATCH).map(|i| job(&c, &format!("batch-{i}"))).collect();
    let file = dir.path().join("batch.json");
    std::fs::write(
        &file,
        json!({"apiVersion": "v1", "kind": "List", "items": list}).to_string(),
    )
    .expect("write jobs");
    let t0 = Instant::now();
    c.kubectl(&["create", "-f", file.to_str().unwrap_or_default()]);
    c.kubectl(&[
        "wait",
        "--for=condition=complete",
        "job",
        "--all",
        "--timeout=600s",
    ]);
    let direct_batch = t0.elapsed().as_secs_f64();

    println!("\n## Kubernetes (Jobs on the local v1.20.2 cluster)\n");
    println!("| | tessera | kubectl | ratio |");
    println!("|---|---|---|---|");
    let (o50, d50) = (ours.pct(0.5), direct.pct(0.5));
    let (o90, d90) = (ours.pct(0.9), direct.pct(0.9));
    println!(
        "| submit → container running, p50 ({SEQUENTIAL} one at a time) | {o50:.0} ms | {d50:.0} ms | {:.2} |",
        o50 / d50
    );
    println!(
        "| submit → container running, p90 | {o90:.0} ms | {d90:.0} ms | {:.2} |",
        o90 / d90
    );
    println!(
        "| {BATCH} short tasks at once, total | {ours_batch:.1} s | {direct_batch:.1} s | {:.2} |",
        ours_batch / direct_batch
    );
}
