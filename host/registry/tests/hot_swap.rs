//! The registry against a real store and the real plugin runtime: persistence of
//! installs and bindings, and activation under load (no call fails while versions swap).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use tessera_core::routing::{Decision, Label, RouteRequest, RouteTarget, RouteTask, Router};
use tessera_plugin_runtime::{PluginRuntime, RuntimeConfig};
use tessera_registry::{Grant, Registry, RegistryError};
use tessera_store::Store;

fn component(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../plugin-runtime/tests/components/{name}.wat",
        env!("CARGO_MANIFEST_DIR")
    );
    wat::parse_file(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn manifest(name: &str, version: &str) -> String {
    format!("name = \"{name}\"\nversion = \"{version}\"\nworld = \"router\"\n")
}

async fn open(dir: &std::path::Path) -> Registry {
    let store = Store::connect(&format!("sqlite://{}/t.db", dir.display()))
        .await
        .unwrap();
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(dir.join("cache")),
        ..RuntimeConfig::default()
    })
    .unwrap();
    Registry::open(store, runtime, &[], None, Vec::new())
        .await
        .unwrap()
}

/// One task, 16 candidate targets.
fn request() -> RouteRequest {
    RouteRequest {
        labels: vec![Label::Group(String::new())],
        tasks: vec![RouteTask {
            needs: 1,
            ..RouteTask::default()
        }],
        targets: (0..16)
            .map(|_| RouteTarget {
                holds: 1,
                free_slots: 2,
                cpu_cores_free: 8,
                ram_bytes_free: 1 << 34,
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_and_bindings_survive_reopening_and_bad_uploads_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path()).await;
    // Nothing bound: routing says what to do.
    let err = reg.route("", &request()).unwrap_err();
    assert!(err.message.contains("no router plugin is active"), "{err}");

    let bad = reg.install(&manifest("x", "1"), b"garbage!".to_vec()).await;
    assert!(matches!(bad, Err(RegistryError::Load(_))), "{bad:?}");
    let wrong_world = reg
        .install(
            "name = \"x\"\nversion = \"1\"\nworld = \"notifier\"\n",
            component("first-fit"),
        )
        .await;
    assert!(
        matches!(wrong_world, Err(RegistryError::Load(_))),
        "{wrong_world:?}"
    );
    let typo = reg
        .install(
            &format!("{}timeout_ms = 5\n", manifest("x", "1")),
            component("first-fit"),
        )
        .await;
    assert!(matches!(typo, Err(RegistryError::Invalid(_))), "{typo:?}");
    assert!(reg.list().await.unwrap().is_empty());

    reg.install(&manifest("first-fit", "1.0.0"), component("first-fit"))
        .await
        .unwrap();
    let conflict = reg
        .install(&manifest("first-fit", "1.0.0"), component("refuse"))
        .await;
    assert!(
        matches!(conflict, Err(RegistryError::Conflict(_))),
        "{conflict:?}"
    );
    reg.activate("first-fit", "1.0.0", None, None, Grant::Named)
        .await
        .unwrap();
    assert_eq!(reg.route("ops", &request()).unwrap(), [Decision::Assign(0)]);
    drop(reg);

    let again = open(dir.path()).await;
    assert_eq!(again.route("", &request()).unwrap(), [Decision::Assign(0)]);
    let plugins = again.list().await.unwrap();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].bindings.len(), 1);
    assert_eq!(plugins[0].bindings[0].version, "1.0.0");
    // The restart compiled nothing: the artifact came from the cache.
    assert_eq!(again.runtime().cache_stats().compiled, 0);
    assert!(again.runtime().cache_stats().hits >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_versions_under_load_fails_no_call() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path()).await;
    // Two versions that answer differently: first-fit assigns, refuse reports an error
    // of its own, which is an answer (a plugin error), not a failure of the swap.
    reg.install(&manifest("router", "1.0.0"), component("first-fit"))
        .await
        .unwrap();
    reg.install(&manifest("router", "1.0.1"), component("first-fit"))
        .await
        .unwrap();
    reg.activate("router", "1.0.0", None, None, Grant::Named)
        .await
        .unwrap();

    const CALLERS: usize = 2;
    const SWAPS: usize = 200;
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut callers = Vec::new();
    let started = Instant::now();
    for c in 0..CALLERS {
        let (reg, stop, calls) = (reg.clone(), stop.clone(), calls.clone());
        callers.push(std::thread::spawn(move || {
            let req = request();
            let group = format!("group-{c}");
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match reg.route(&group, &req) {
                    Ok(d) if d == [Decision::Assign(0)] => {}
                    other => failures.push(format!("{other:?}")),
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    let mut swap_times = Vec::with_capacity(SWAPS);
    for i in 0..SWAPS {
        let version = if i % 2 == 0 { "1.0.1" } else { "1.0.0" };
        let t = Instant::now();
        reg.activate("router", version, None, None, Grant::Named)
            .await
            .unwrap();
        swap_times.push(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in callers {
        failures.extend(c.join().unwrap());
    }
    let elapsed = started.elapsed();
    let n = calls.load(Ordering::Relaxed);
    swap_times.sort();
    println!(
        "{n} routing calls from {CALLERS} threads in {elapsed:.2?} ({:.0}/s) across {SWAPS} activations; activation p50 {:?}, max {:?}",
        n as f64 / elapsed.as_secs_f64(),
        swap_times[SWAPS / 2],
        swap_times[SWAPS - 1]
    );
    assert!(
        failures.is_empty(),
        "{} failed calls, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(
        n > SWAPS as u64,
        "the callers ran during the swaps ({n} calls)"
    );
    // The last activation is the one that serves, and a rollback returns to the other.
    let shown = reg.show("router").await.unwrap();
    assert_eq!(shown.bindings[0].version, "1.0.0");
    let back = reg.rollback("router", None).await.unwrap();
    assert_eq!(back.version, "1.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_adapters_are_bound_by_engine_name_and_called_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let reg = open(dir.path()).await;
    let manifest = "name = \"echo-engine\"\nversion = \"1.0.0\"\nworld = \"engine-adapter\"\n";
    reg.install(manifest, component("engine-echo"))
        .await
        .unwrap();
    // An adapter serves one engine, so activation must say which.
    let unscoped = reg
        .activate("echo-engine", "1.0.0", None, None, Grant::Named)
        .await;
    assert!(
        matches!(unscoped, Err(RegistryError::Invalid(_))),
        "{unscoped:?}"
    );
    assert!(reg.engine_adapter("echo").is_none());
    reg.activate("echo-engine", "1.0.0", Some("echo"), None, Grant::Named)
        .await
        .unwrap();

    let engine = reg.engine_adapter("echo").expect("bound");
    assert!(reg.engine_adapter("airflow").is_none());
    let run = tokio::task::spawn_blocking(move || {
        engine.validate("dag")?;
        let run = engine.submit("dag", &[("run-id".into(), "run-7".into())], &[])?;
        engine.status(&run)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(run.tasks.len(), 2);
    assert_eq!(run.tasks[0].task_id, "extract");

    // Its calls show up where an operator looks, under the engine's name.
    let shown = reg.show("echo-engine").await.unwrap();
    assert_eq!(shown.bindings[0].scope, "echo");
    let stats = &shown.versions[0].calls;
    assert_eq!((stats[0].scope.as_str(), stats[0].calls), ("echo", 3));

    // The binding is in the store: a reopened registry serves the engine again.
    drop(reg);
    let reg = open(dir.path()).await;
    let engine = reg.engine_adapter("echo").expect("bound after reopening");
    let logs = tokio::task::spawn_blocking(move || engine.logs("run-7", "load", 1, 7, 1 << 20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((logs.text.as_str(), logs.next_offset), ("line 2\n", 14));
}
