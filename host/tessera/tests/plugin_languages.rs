//! The example routers in other languages (`examples/plugins`: Python built with
//! componentize-py, JavaScript built with componentize-js), installed with the CLI into a
//! real server with real Docker: each serves in the router slot and routes tasks; told to
//! misbehave through its binding's config (spin forever, allocate without bound, trap),
//! it fails only its own calls: the host stays up, the tasks stay QUEUED with the
//! plugin's failure as their reason, the failures are counted by kind, and the tasks run
//! once the plugin is told to behave again.
//!
//! `scripts/test.sh` builds the components (`examples/plugins/*/build.sh`) and points
//! `TESSERA_EXAMPLE_PLUGINS` at them (default `examples/plugins/dist`). A missing one
//! skips its test, or fails it when `TESSERA_REQUIRE_ALL=1`.

mod common;

use common::{DEADLINE, Options, Server, short, simple_task, tessera_bin};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test]
async fn the_python_example_router_routes_and_its_misbehaviour_is_contained() {
    exercise(Language {
        plugin: "python-router",
        log_tag: "pack (python)",
    })
    .await;
}

#[tokio::test]
async fn the_javascript_example_router_routes_and_its_misbehaviour_is_contained() {
    exercise(Language {
        plugin: "js-router",
        log_tag: "pack (js)",
    })
    .await;
}

struct Language {
    /// The example's directory under `examples/plugins`, its manifest's name and its
    /// component's file name in `dist/`.
    plugin: &'static str,
    /// What the example's `debug` log line starts with.
    log_tag: &'static str,
}

/// What a misbehaviour must look like: the reason a waiting task shows and the kind the
/// plugin's metrics count it under.
struct Misbehaviour {
    mode: &'static str,
    reason: &'static str,
    kind: &'static str,
}

const MISBEHAVIOURS: [Misbehaviour; 3] = [
    Misbehaviour {
        mode: "loop",
        reason: "did not answer within its deadline",
        kind: "timeout",
    },
    // Both runtimes grow their linear memory until the manifest's cap refuses, which the
    // host reports as running out of memory (not as the trap that follows it).
    Misbehaviour {
        mode: "alloc",
        reason: "ran out of memory",
        kind: "out-of-memory",
    },
    Misbehaviour {
        mode: "trap",
        reason: "the plugin trapped",
        kind: "trap",
    },
];

/// The built component and the manifest of an example, or `None` (after saying why) when
/// the component was not built and the run does not require it.
fn example(plugin: &str) -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins");
    let dist = std::env::var_os("TESSERA_EXAMPLE_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("dist"));
    let wasm = dist.join(format!("{plugin}.wasm"));
    let manifest = root.join(plugin).join("manifest.toml");
    assert!(manifest.is_file(), "{} is missing", manifest.display());
    if wasm.is_file() {
        return Some((wasm, manifest));
    }
    let why = format!(
        "{} is missing: build it with `bash examples/plugins/{plugin}/build.sh` \
         (scripts/test.sh does)",
        wasm.display()
    );
    if std::env::var("TESSERA_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{why}; TESSERA_REQUIRE_ALL=1 requires it");
    }
    eprintln!("skipping: {why}");
    None
}

/// `tessera plugin … --output json` against this server: the JSON it prints.
fn cli_json(s: &Server, args: &[&str]) -> Value {
    let out = Command::new(tessera_bin())
        .arg("plugin")
        .args(args)
        .args(["--server", &s.url, "--token", &s.token, "--output", "json"])
        .output()
        .expect("running tessera plugin");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "tessera plugin {args:?} failed ({}):\n{stdout}{stderr}\nserver log:\n{}",
        out.status,
        s.server_log()
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Bind `plugin@version` everywhere with `config`; returns how long activation took.
async fn activate(s: &Server, plugin: &str, version: &str, config: Value) -> Duration {
    let started = Instant::now();
    let (status, body) = s
        .post_json(
            &format!("{}/v1/plugins/{plugin}/versions/{version}/activate", s.url),
            &json!({ "config": config }),
        )
        .await;
    assert_eq!(status, 200, "activate {plugin}@{version}: {body}");
    assert_eq!(body["config"], config, "{body}");
    started.elapsed()
}

/// The call statistics of `plugin@version` where it is bound everywhere (scope "").
async fn calls(s: &Server, plugin: &str, version: &str) -> Value {
    let (status, shown) = s.get_json(&format!("{}/v1/plugins/{plugin}", s.url)).await;
    assert_eq!(status, 200, "{shown}");
    let v = shown["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["version"] == version))
        .unwrap_or_else(|| panic!("no version {version}: {}", short(&shown)));
    v["calls"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["scope"] == ""))
        .cloned()
        .unwrap_or_else(|| panic!("{plugin}@{version} serves nowhere: {}", short(&shown)))
}

/// Poll a task's reason until `pred` holds, or fail at the deadline; returns the reason.
async fn wait_reason(s: &Server, id: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let status = s.status(id).await;
        let reason = status["reason"].as_str().unwrap_or("");
        if pred(reason) {
            return reason.to_string();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "task {id} never showed {what}; last seen: {}\nserver log:\n{}",
            short(&status),
            s.server_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn exercise(lang: Language) {
    let Some((wasm, manifest)) = example(lang.plugin) else {
        return;
    };
    let s = Server::start(Options::default()).await;

    // Install and activate with the CLI; the host compiles the component here (once per
    // data directory: later loads come from its cache).
    let started = Instant::now();
    let out = cli_json(
        &s,
        &[
            "install",
            wasm.to_str().unwrap(),
            "--manifest",
            manifest.to_str().unwrap(),
            "--activate",
        ],
    );
    let install_time = started.elapsed();
    let installed = &out["installed"];
    assert_eq!(installed["name"], lang.plugin, "{}", short(&out));
    let version = installed["version"].as_str().expect("version").to_string();
    assert_eq!(out["binding"]["plugin"], lang.plugin, "{}", short(&out));
    assert_eq!(out["binding"]["scope"], "", "{}", short(&out));
    eprintln!(
        "{}: {} bytes installed and activated in {:.1} s (the host compiled it in {:.0} ms)",
        lang.plugin,
        installed["size_bytes"],
        install_time.as_secs_f64(),
        installed["compile_ms"].as_f64().unwrap_or(f64::NAN)
    );

    // The component imports only what the router world grants: no WASI.
    let (_, shown) = s
        .get_json(&format!("{}/v1/plugins/{}", s.url, lang.plugin))
        .await;
    let imports = shown["versions"][0]["imports"].as_array().expect("imports");
    assert!(
        !imports.is_empty()
            && imports
                .iter()
                .all(|i| i.as_str().unwrap().starts_with("tessera:plugin/")),
        "{imports:?}"
    );

    // It routes: tasks run, its calls are counted, its own log line is in the host's log.
    let ids = [
        s.create(&simple_task(&["true"])).await,
        s.create(&simple_task(&["true"])).await,
        s.create(&simple_task(&["true"])).await,
    ];
    for id in &ids {
        let done = s.wait_done(id).await;
        assert_eq!(done["state"], "COMPLETE", "{}", short(&done));
    }
    let stats = calls(&s, lang.plugin, &version).await;
    assert!(stats["calls"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");
    assert!(
        s.server_log().contains(lang.log_tag),
        "no `{}` line in the server log:\n{}",
        lang.log_tag,
        s.server_log()
    );

    // Misbehaviour: each fails only the plugin's calls.
    let label = format!("router {}@{version} failed", lang.plugin);
    let mut waiting = Vec::new();
    for m in &MISBEHAVIOURS {
        let took = activate(&s, lang.plugin, &version, json!({ "misbehave": m.mode })).await;
        let started = Instant::now();
        let id = s.create(&simple_task(&["true"])).await;
        let reason = wait_reason(&s, &id, m.reason, |r| {
            r.contains(&label) && r.contains(m.reason)
        })
        .await;
        waiting.push(id);
        for id in &waiting {
            let t = s.task(id, "MINIMAL").await;
            assert_eq!(t["state"], "QUEUED", "{}", short(&t));
        }
        let (status, body) = s.get_json(&format!("{}/healthz", s.url)).await;
        assert_eq!(status, 200, "the host survives: {body}");
        let stats = calls(&s, lang.plugin, &version).await;
        assert!(
            stats["errors_by_kind"][m.kind].as_u64().unwrap_or(0) >= 1,
            "{} is not counted as {}: {stats}",
            m.mode,
            m.kind
        );
        eprintln!(
            "{}: misbehave = {} (activated in {:.0} ms; calls fail after {:.0} ms, p50): \
             after {:.1} s the task waits with: {}",
            lang.plugin,
            m.mode,
            took.as_secs_f64() * 1e3,
            stats["p50_us"].as_f64().unwrap_or(f64::NAN) / 1e3,
            started.elapsed().as_secs_f64(),
            reason.chars().take(160).collect::<String>()
        );
    }

    // Told to behave, it routes the tasks that waited.
    activate(&s, lang.plugin, &version, json!({})).await;
    for id in &waiting {
        let done = s.wait_done(id).await;
        assert_eq!(done["state"], "COMPLETE", "{}", short(&done));
    }
    let stats = calls(&s, lang.plugin, &version).await;
    assert!(stats["calls"].as_u64().unwrap() > 0, "{stats}");
}
