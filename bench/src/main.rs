//! `tessera-bench`: measures Tessera against baselines taken in the same run and prints
//! figures and ratios. Not a test: nothing here passes or fails on timing.
//!
//!   cargo run --release -p tessera-bench -- [--only store|create|auth|read|docker|dispatch|taskapi|workflows|kubernetes] [--tessera PATH]
//!
//! The dispatch part loads builtin-plugins/dist/router-default.wasm (`bash builtin-plugins/build.sh`).

mod airflow;
mod kubernetes;
mod task_api;
mod workflows;

use clap::Parser;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_core::id::new_task_id;
use tessera_core::task::NewTask;
use tessera_core::tes::Task;
use tessera_store::{ListQuery, Store};

#[derive(Parser)]
struct Args {
    /// Run one part only: store, create, auth, read, docker, dispatch, taskapi, workflows or
    /// kubernetes
    #[arg(long)]
    only: Option<String>,
    /// The tessera binary [default: next to this benchmark]
    #[arg(long)]
    tessera: Option<PathBuf>,
    /// Store URL for the create benchmark [default: a fresh SQLite file]
    #[arg(long)]
    database_url: Option<String>,
    /// Tasks stored for the read benchmark
    #[arg(long, default_value_t = 100_000)]
    stored: usize,
    /// Tasks for the Docker end-to-end benchmark
    #[arg(long, default_value_t = 200)]
    docker_tasks: usize,
    /// Concurrency for the Docker end-to-end benchmark (both sides)
    #[arg(long, default_value_t = 4)]
    docker_concurrency: usize,
    /// Image for the Docker benchmark (must exist locally)
    #[arg(long, default_value = "tessera-test/busybox:latest")]
    image: String,
}

fn tessera_bin(args: &Args) -> PathBuf {
    args.tessera.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("tessera")))
            .unwrap_or_else(|| PathBuf::from("tessera"))
    })
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_server(bin: &Path, data_dir: &Path, extra: &[&str]) -> Server {
    start_server_with(bin, data_dir, &[&["--no-auth"], extra].concat()).await
}

/// A server with exactly `extra` besides its address and data directory.
async fn start_server_with(bin: &Path, data_dir: &Path, extra: &[&str]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let child = Command::new(bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data_dir)
        .args(extra)
        .env("TESSERA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "starting {}: {e} (build it: cargo build --release -p tessera)",
                bin.display()
            )
        });
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    while !http
        .get(format!("{url}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Server { child, url }
}

fn task_doc(i: usize) -> Value {
    json!({
        "name": format!("bench-{i}"),
        "tags": {"bench": "create"},
        "executors": [{"image": "tessera-test/busybox:latest", "command": ["echo", "hello"]}]
    })
}

fn new_task(i: usize) -> NewTask {
    let spec: Task = serde_json::from_value(task_doc(i)).unwrap_or_default();
    NewTask {
        id: new_task_id(),
        group: String::new(),
        origin: Default::default(),
        priority: 0,
        extra: Default::default(),
        run: None,
        spec,
        creation_time: time::OffsetDateTime::now_utc(),
        reason: Some("queued".into()),
        logs: Vec::new(),
    }
}

struct Lat(Vec<Duration>);

impl Lat {
    fn pct(&mut self, p: f64) -> f64 {
        self.0.sort();
        if self.0.is_empty() {
            return 0.0;
        }
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i].as_secs_f64() * 1000.0
    }
}

/// Run `total` operations from `conc` concurrent workers; returns (ops/s, latencies).
async fn drive<F, Fut>(total: usize, conc: usize, op: F) -> (f64, Lat)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..conc {
        let (op, next) = (op.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(total);
    for h in handles {
        all.extend(h.await.unwrap_or_default());
    }
    (total as f64 / start.elapsed().as_secs_f64(), Lat(all))
}

/// The store's one-row transaction (a task row and its event row, as one TES create
/// stores them) against plain SQLite doing the same from Python (bench/plain_sqlite.py),
/// interleaved three times on the same disk.
async fn bench_store() {
    const ROWS: usize = 5_000;
    println!("\n## 0. The store's one-row transaction against plain SQLite\n");
    println!("| round | store rows/s | plain SQLite rows/s | store/plain |");
    println!("| ---: | ---: | ---: | ---: |");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("plain_sqlite.py");
    for round in 1..=3 {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::connect(&format!("sqlite://{}/raw.db", dir.path().display()))
            .await
            .expect("store");
        let (rate, _) = drive(ROWS, 1, move |i| {
            let store = store.clone();
            async move {
                store.insert_tasks(&[new_task(i)]).await.expect("insert");
            }
        })
        .await;
        let plain = Command::new("python3")
            .arg(&script)
            .arg(ROWS.to_string())
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok());
        match plain {
            Some(p) => println!("| {round} | {rate:.0} | {p:.0} | {:.2} |", rate / p),
            None => println!("| {round} | {rate:.0} | (python3 failed) | - |"),
        }
    }
}

async fn bench_create(args: &Args) {
    println!("\n## 1. TES create throughput (executor disabled, tasks stay QUEUED)\n");
    println!(
        "| clients | raw store inserts/s (1 row per tx) | API creates/s | API/raw | API p50 ms | API p99 ms |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: |");
    let bin = tessera_bin(args);
    let http_floor = reqwest::Client::new();
    let mut floor_line = String::new();
    let mut one_client_rate = 0.0;
    for (conc, total) in [(1usize, 3_000usize), (16, 20_000), (128, 20_000)] {
        // Raw: the same rows through the same store code, one transaction per row,
        // from the same number of concurrent writers, into a fresh store.
        let raw_dir = tempfile::tempdir().expect("tmp");
        let raw_url = args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/raw.db", raw_dir.path().display()));
        let store = Store::connect(&raw_url).await.expect("store");
        let (raw_rate, _) = drive(total, conc, move |i| {
            let store = store.clone();
            async move {
                store.insert_tasks(&[new_task(i)]).await.expect("insert");
            }
        })
        .await;

        let dir = tempfile::tempdir().expect("tmp");
        let mut extra = vec!["--executor", "none"];
        let db;
        if let Some(u) = &args.database_url {
            db = u.clone();
            extra.extend(["--database-url", db.as_str()]);
        }
        let server = start_server(&bin, dir.path(), &extra).await;
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("client");
        let url = format!("{}/ga4gh/tes/v1/tasks", server.url);
        let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..total)
                .map(|i| serde_json::to_vec(&task_doc(i)).unwrap_or_default())
                .collect(),
        );
        let (rate, mut lat) = drive(total, conc, move |i| {
            let (http, url, bodies) = (http.clone(), url.clone(), bodies.clone());
            async move {
                let r = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .expect("POST");
                assert!(r.status().is_success(), "create failed: {}", r.status());
            }
        })
        .await;
        if conc == 1 {
            one_client_rate = rate;
        }
        println!(
            "| {conc} | {raw_rate:.0} | {rate:.0} | {:.2} | {:.2} | {:.2} |",
            rate / raw_rate,
            lat.pct(0.50),
            lat.pct(0.99)
        );
        if conc == 1 {
            // The floor under one client's create rate: an HTTP round trip that does
            // nothing, from the same client to the same server.
            let (http, url) = (http_floor.clone(), format!("{}/healthz", server.url));
            let (floor, mut flat) = drive(total, 1, move |_| {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let r = http.get(&url).send().await.expect("GET");
                    assert!(r.status().is_success());
                }
            })
            .await;
            floor_line = format!(
                "One client's `GET /healthz` in the same run (the HTTP floor): {floor:.0}/s, p50 {:.2} ms; creates run at {:.2} of it.",
                flat.pct(0.50),
                one_client_rate / floor
            );
        }
    }
    println!("\n{floor_line}");
}

async fn bench_read(args: &Args) {
    println!(
        "\n## 2. GET and list latency with {} stored tasks (SQLite)\n",
        args.stored
    );
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let store = Store::connect(&format!("sqlite://{}/tessera.db", data.display()))
        .await
        .expect("store");
    let mut ids = Vec::with_capacity(args.stored);
    let t = Instant::now();
    for chunk in (0..args.stored).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<NewTask> = chunk.iter().map(|i| new_task(*i)).collect();
        ids.extend(batch.iter().map(|t| t.id.clone()));
        store.insert_tasks(&batch).await.expect("insert");
    }
    println!("(loaded in {:.1} s)\n", t.elapsed().as_secs_f64());
    drop(store);
    let server = start_server(&tessera_bin(args), &data, &["--executor", "none"]).await;
    let http = reqwest::Client::new();
    let tes = format!("{}/ga4gh/tes/v1", server.url);

    let mut get = Lat(Vec::new());
    for k in 0..2000 {
        let id = &ids[(k * 7919) % ids.len()];
        let t = Instant::now();
        let r = http
            .get(format!("{tes}/tasks/{id}?view=BASIC"))
            .send()
            .await
            .expect("GET");
        let _ = r.bytes().await;
        get.0.push(t.elapsed());
    }
    println!("| request | n | p50 ms | p99 ms | max ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let max = get
        .0
        .iter()
        .max()
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0;
    println!(
        "| GET /tasks/{{id}}?view=BASIC | {} | {:.2} | {:.2} | {max:.2} |",
        get.0.len(),
        get.pct(0.5),
        get.pct(0.99)
    );
    for view in ["MINIMAL", "BASIC"] {
        // Walk every page from newest to oldest: every depth is measured.
        let mut lat = Lat(Vec::new());
        let mut token: Option<String> = None;
        loop {
            let mut u = format!("{tes}/tasks?page_size=256&view={view}");
            if let Some(t) = &token {
                u.push_str(&format!("&page_token={t}"));
            }
            let t = Instant::now();
            let page: Value = http
                .get(&u)
                .send()
                .await
                .expect("list")
                .json()
                .await
                .expect("json");
            lat.0.push(t.elapsed());
            token = page["next_page_token"].as_str().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let max = lat
            .0
            .iter()
            .max()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0;
        println!(
            "| list 256/page, view={view}, all {} pages | {} | {:.2} | {:.2} | {max:.2} |",
            lat.0.len(),
            lat.0.len(),
            lat.pct(0.5),
            lat.pct(0.99)
        );
    }
    // Direct store query for the same page, as the floor.
    let store = Store::connect(&format!("sqlite://{}/tessera.db", data.display()))
        .await
        .expect("store");
    let mut lat = Lat(Vec::new());
    for _ in 0..200 {
        let t = Instant::now();
        let _ = store
            .list_tasks(&ListQuery {
                limit: 257,
                minimal: false,
                ..ListQuery::default()
            })
            .await;
        lat.0.push(t.elapsed());
    }
    println!(
        "| store.list_tasks 257 rows (no HTTP) | {} | {:.2} | {:.2} | - |",
        lat.0.len(),
        lat.pct(0.5),
        lat.pct(0.99)
    );
}

async fn bench_docker(args: &Args) {
    let (n, conc) = (args.docker_tasks, args.docker_concurrency);
    println!("\n## 3. End to end: {n} `true` tasks through Docker, {conc} at a time\n");
    // Warm up the engine (first container start after an idle period is slower).
    let _ = Command::new("docker")
        .args(["run", "--rm", &args.image, "true"])
        .status();

    let image = args.image.clone();
    let start = Instant::now();
    let (_, _) = drive(n, conc, move |_| {
        let image = image.clone();
        async move {
            let status = tokio::process::Command::new("docker")
                .args(["run", "--rm", "--network", "none", &image, "true"])
                .status()
                .await;
            assert!(status.is_ok_and(|s| s.success()), "docker run failed");
        }
    })
    .await;
    let plain = start.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().expect("tmp");
    let server = start_server(
        &tessera_bin(args),
        dir.path(),
        &[
            "--max-concurrent-tasks",
            &conc.to_string(),
            "--default-network",
            "none",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let tes = format!("{}/ga4gh/tes/v1", server.url);
    let start = Instant::now();
    for i in 0..n {
        let body = json!({"name": format!("e2e-{i}"), "executors": [{"image": args.image, "command": ["true"]}]});
        let r = http
            .post(format!("{tes}/tasks"))
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert!(r.status().is_success());
    }
    loop {
        let page: Value = http
            .get(format!("{tes}/tasks?state=COMPLETE&page_size=2047"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        if page["tasks"].as_array().map(|a| a.len()).unwrap_or(0) >= n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "tasks did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ours = start.elapsed().as_secs_f64();
    println!("| runner | wall s | tasks/s | vs plain |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| plain `docker run --rm` ×{conc} | {plain:.1} | {:.2} | 1.00 |",
        n as f64 / plain
    );
    println!(
        "| tessera (TES API → COMPLETE) | {ours:.1} | {:.2} | {:.2} |",
        n as f64 / ours,
        ours / plain
    );
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "# tessera-bench: {cpus} CPUs, {}",
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next().map(str::to_string))
            .unwrap_or_default()
    );
    let only = args.only.as_deref();
    if only.is_none() || only == Some("store") {
        bench_store().await;
    }
    if only.is_none() || only == Some("create") {
        bench_create(&args).await;
    }
    if only.is_none() || only == Some("auth") {
        bench_auth(&args).await;
    }
    if only.is_none() || only == Some("read") {
        bench_read(&args).await;
    }
    if only.is_none() || only == Some("docker") {
        bench_docker(&args).await;
    }
    if only.is_none() || only == Some("dispatch") {
        bench_dispatch().await;
    }
    if only.is_none() || only == Some("taskapi") {
        task_api::bench_task_api(&args).await;
    }
    if only.is_none() || only == Some("workflows") {
        workflows::bench_workflows(&args).await;
    }
    if only.is_none() || only == Some("kubernetes") {
        kubernetes::bench_kubernetes(&args).await;
    }
}

/// Routing decisions through the dispatch path (read the oldest queued tasks from the
/// store, plan router requests, call the router plugin, check its decisions, claim the
/// placed tasks in one transaction) with 16 candidate targets; everything a dispatch round
/// does except starting containers. Then the time to activate an already compiled
/// version of a router.
async fn bench_dispatch() {
    use tessera_core::routing::{Free, TargetSpec};
    const TASKS: usize = 20_000;
    const TARGETS: usize = 16;
    const ROUND: u32 = 512;
    let wasm_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../builtin-plugins/dist/router-default.wasm");
    let Ok(wasm) = std::fs::read(&wasm_path) else {
        println!(
            "\n## dispatch: skipped ({} is missing: run `bash builtin-plugins/build.sh`)",
            wasm_path.display()
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let store = Store::connect(&format!("sqlite://{}/d.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("store: {e}"));
    let runtime =
        tessera_plugin_runtime::PluginRuntime::new(tessera_plugin_runtime::RuntimeConfig {
            cache_dir: Some(dir.path().join("cache")),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let manifest = include_str!("../../builtin-plugins/router-default/manifest.toml");
    let registry = tessera_registry::Registry::open(
        store.clone(),
        runtime,
        &[tessera_registry::Builtin {
            manifest,
            component: Box::leak(wasm.clone().into_boxed_slice()),
        }],
        None,
        Vec::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("registry: {e}"));

    // Tasks with a placement tag (zone) and a CPU request; targets in four zones.
    let zones = ["eu-1", "eu-2", "us-1", "us-2"];
    for chunk in (0..TASKS).collect::<Vec<_>>().chunks(500) {
        let tasks: Vec<NewTask> = chunk
            .iter()
            .map(|&i| {
                let mut t = new_task(i);
                t.spec.tags = Some([("zone".to_string(), zones[i % 4].to_string())].into());
                t
            })
            .collect();
        store
            .insert_tasks(&tasks)
            .await
            .unwrap_or_else(|e| panic!("insert: {e}"));
    }
    let targets: Vec<(TargetSpec, Free)> = (0..TARGETS)
        .map(|j| {
            (
                TargetSpec {
                    name: format!("node-{j:02}"),
                    tags: [("zone".to_string(), zones[j % 4].to_string())].into(),
                    groups: Vec::new(),
                },
                Free {
                    slots: 64,
                    cpu_cores: 64,
                    ram_bytes: 1 << 40,
                },
            )
        })
        .collect();
    let router: Arc<dyn tessera_core::routing::Router> = Arc::new(registry.clone());
    let keys = vec!["zone".to_string()];
    let lease = tessera_store::Lease {
        owner: "bench".into(),
        ttl: Duration::from_secs(60),
    };
    let (mut decided, mut placed) = (0usize, 0usize);
    let mut routing = Duration::ZERO;
    let start = Instant::now();
    loop {
        let queued = store
            .oldest_queued(ROUND)
            .await
            .unwrap_or_else(|e| panic!("peek: {e}"));
        if queued.is_empty() {
            break;
        }
        let t = Instant::now();
        let round = tessera_runner::route_round(&router, &targets, &keys, &queued).await;
        routing += t.elapsed();
        decided += round.runs.len() + round.waits.len();
        let ids: Vec<&str> = round.runs.iter().map(|(t, _)| t.id.as_str()).collect();
        placed += store
            .claim_ids(&ids, None, &lease)
            .await
            .unwrap_or_else(|e| panic!("claim: {e}"))
            .len();
        if round.runs.is_empty() {
            break;
        }
    }
    let wall = start.elapsed();
    println!(
        "\n## dispatch: {TASKS} queued tasks, {TARGETS} targets, {ROUND} tasks per round (SQLite)"
    );
    println!("| path | decisions | seconds | decisions/s |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| full round (peek + route + claim) | {decided} | {:.3} | {:.0} |",
        wall.as_secs_f64(),
        decided as f64 / wall.as_secs_f64()
    );
    println!(
        "| routing alone (plan + plugin + check) | {decided} | {:.3} | {:.0} |",
        routing.as_secs_f64(),
        decided as f64 / routing.as_secs_f64()
    );
    println!("placed {placed} of {TASKS}");

    // Activation of an already compiled version: the same component as 0.1.1.
    let m2 = manifest.replace("version = \"0.1.0\"", "version = \"0.1.1\"");
    registry
        .install(&m2, wasm)
        .await
        .unwrap_or_else(|e| panic!("install: {e}"));
    let mut times = Vec::new();
    for i in 0..50 {
        let v = if i % 2 == 0 { "0.1.1" } else { "0.1.0" };
        let t = Instant::now();
        registry
            .activate(
                "router-default",
                v,
                None,
                None,
                tessera_registry::Grant::Named,
            )
            .await
            .unwrap_or_else(|e| panic!("activate: {e}"));
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "activation of a compiled version: p50 {:.2} ms, max {:.2} ms (50 activations)",
        times[25].as_secs_f64() * 1e3,
        times[49].as_secs_f64() * 1e3
    );
}

/// An OpenID issuer on loopback for the auth benchmark: discovery and a JWKS with one
/// Ed25519 key; tokens are signed here with it.
struct BenchIssuer {
    url: String,
    key: jsonwebtoken::EncodingKey,
}

async fn bench_issuer() -> BenchIssuer {
    use base64::Engine;
    use ring::signature::KeyPair;
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let discovery = json!({"issuer": url, "jwks_uri": format!("{url}/jwks")}).to_string();
    let jwks =
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "bench", "alg": "EdDSA"}]})
            .to_string();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            let (discovery, jwks) = (discovery.clone(), jwks.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = conn.read(&mut buf).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]);
                let body = if head.starts_with("GET /.well-known/openid-configuration") {
                    discovery
                } else {
                    jwks
                };
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    BenchIssuer {
        url,
        key: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
    }
}

impl BenchIssuer {
    fn token(&self, user: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some("bench".into());
        let claims = json!({
            "iss": self.url, "aud": "urn:tessera:bench", "sub": user, "iat": now,
            "exp": now + 3600, "preferred_username": user,
            "realm_access": {"roles": ["tessera-admin"]},
        });
        jsonwebtoken::encode(&header, &claims, &self.key).expect("sign")
    }
}

/// What authentication costs: each kind of token verified in process (cold: the
/// signature checked), then per request through the server (warm: the verified token
/// cached) against the same server with authentication off, then creates with a token.
async fn bench_auth(args: &Args) {
    println!("\n## 1b. Authentication: token verification and creates with auth on\n");
    // In process: verifying a token from scratch.
    let key = tessera_auth::SigningKey::generate().expect("key");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let host_token =
        tessera_auth::AccessToken::new("ada", 0, false, now, Duration::from_secs(3600))
            .sign(&key)
            .expect("sign");
    const N: u32 = 5_000;
    let t = Instant::now();
    for _ in 0..N {
        tessera_auth::AccessToken::verify(&host_token, &key, now).expect("verify");
    }
    let host_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    let (pat, _) = tessera_auth::pat::generate();
    let t = Instant::now();
    for _ in 0..N {
        std::hint::black_box(tessera_auth::pat::digest(&pat));
    }
    let pat_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    let issuer = bench_issuer().await;
    let oidc_token = issuer.token("oidc-bench");
    let jwks = tessera_auth::oidc::parse_jwks(
        &reqwest::get(format!("{}/jwks", issuer.url))
            .await
            .expect("jwks")
            .json()
            .await
            .expect("jwks"),
    );
    let settings = tessera_auth::oidc::OidcSettings::keycloak(&issuer.url, "urn:tessera:bench");
    let t = Instant::now();
    for _ in 0..N {
        tessera_auth::oidc::verify(&oidc_token, &jwks, &settings, now).expect("verify");
    }
    let oidc_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    println!("Cold, in process (the work a cache miss adds):\n");
    println!("| token | µs per verification |");
    println!("| --- | ---: |");
    println!("| host access token (Ed25519 JWT) | {host_us:.1} |");
    println!("| personal access token (SHA-256, then a store lookup) | {pat_us:.2} |");
    println!("| OpenID token (EdDSA JWT, keys cached) | {oidc_us:.1} |");

    // Through the server: the same cheap endpoint with each kind of token.
    let bin = tessera_bin(args);
    let off_dir = tempfile::tempdir().expect("tmp");
    let off = start_server(&bin, off_dir.path(), &["--executor", "none"]).await;
    let on_dir = tempfile::tempdir().expect("tmp");
    let on = start_server_with(
        &bin,
        on_dir.path(),
        &[
            "--executor",
            "none",
            "--oidc-issuer",
            &issuer.url,
            "--oidc-audience",
            "urn:tessera:bench",
        ],
    )
    .await;
    let admin_pat = std::fs::read_to_string(on_dir.path().join("api-token"))
        .expect("api-token")
        .trim()
        .to_string();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let created = http
        .post(format!("{}/v1/admin/users", on.url))
        .bearer_auth(&admin_pat)
        .json(&json!({"name": "bench", "password": "bench-password", "instance_admin": true}))
        .send()
        .await
        .expect("create user");
    assert!(created.status().is_success(), "creating the bench user");
    let t = Instant::now();
    let login: Value = http
        .post(format!("{}/v1/auth/token", on.url))
        .json(&json!({"username": "bench", "password": "bench-password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("login");
    let login_ms = t.elapsed().as_secs_f64() * 1e3;
    let jwt = login["access_token"]
        .as_str()
        .expect("access token")
        .to_string();
    let tokens: [(&str, &Server, Option<String>); 4] = [
        ("authentication off", &off, None),
        ("personal access token", &on, Some(admin_pat.clone())),
        ("host access token (JWT)", &on, Some(jwt.clone())),
        ("OpenID token (JWT)", &on, Some(oidc_token.clone())),
    ];
    println!(
        "\nWarm, per request (`GET /v1/auth/whoami`, 1 client, 10,000 requests; a password login took {login_ms:.0} ms):\n"
    );
    println!("| token | requests/s | p50 ms | p99 ms | µs over auth off (p50) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut off_p50 = 0.0;
    for (name, server, token) in tokens {
        let (http, url) = (http.clone(), format!("{}/v1/auth/whoami", server.url));
        // Warm the caches.
        let mut warm = http.get(&url);
        if let Some(t) = &token {
            warm = warm.bearer_auth(t);
        }
        assert!(
            warm.send().await.expect("GET").status().is_success(),
            "{name}"
        );
        let (rate, mut lat) = drive(10_000, 1, move |_| {
            let mut req = http.get(&url);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            async move {
                let r = req.send().await.expect("GET");
                assert!(r.status().is_success());
            }
        })
        .await;
        let p50 = lat.pct(0.50);
        if off_p50 == 0.0 {
            off_p50 = p50;
        }
        println!(
            "| {name} | {rate:.0} | {p50:.3} | {:.3} | {:.0} |",
            lat.pct(0.99),
            (p50 - off_p50) * 1e3
        );
    }

    // Creates with each token against the same server with auth off, interleaved.
    println!("\nTES creates (executor disabled), auth off against auth on, same run:\n");
    println!("| clients | token | creates/s | auth off creates/s | on/off |");
    println!("| ---: | --- | ---: | ---: | ---: |");
    for (conc, total) in [(1usize, 3_000usize), (16, 20_000)] {
        for (name, token) in [
            ("personal access token", &admin_pat),
            ("host access token", &jwt),
        ] {
            let mut rates = Vec::new();
            for (server, token) in [(&off, None), (&on, Some(token.clone()))] {
                let (http, url) = (http.clone(), format!("{}/ga4gh/tes/v1/tasks", server.url));
                let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
                    (0..total)
                        .map(|i| serde_json::to_vec(&task_doc(i)).unwrap_or_default())
                        .collect(),
                );
                let (rate, _) = drive(total, conc, move |i| {
                    let mut req = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(bodies[i].clone());
                    if let Some(t) = &token {
                        req = req.bearer_auth(t);
                    }
                    async move {
                        let r = req.send().await.expect("POST");
                        assert!(r.status().is_success(), "create failed: {}", r.status());
                    }
                })
                .await;
                rates.push(rate);
            }
            println!(
                "| {conc} | {name} | {:.0} | {:.0} | {:.2} |",
                rates[1],
                rates[0],
                rates[1] / rates[0]
            );
        }
    }
}
