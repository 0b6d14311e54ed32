//! Shared by the integration tests: test components, sample requests.
#![allow(dead_code)]

pub mod files;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use tessera_plugin_runtime::Grants;
use tessera_plugin_runtime::{
    Capability, Label, LabelSet, Manifest, NotifyEvent, PluginConfig, PluginRuntime, RouteRequest,
    RouteTarget, RouteTask, RouterPlugin, RuntimeConfig, TaskInfo, World,
};

/// A test component from tests/components/NAME.wat, as binary.
pub fn component(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/components")
        .join(format!("{name}.wat"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    wat::parse_str(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A test component's text with extra top-level items spliced in before its end (the
/// closing parenthesis), so indices of the existing items do not move.
pub fn component_with(name: &str, extra: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/components")
        .join(format!("{name}.wat"));
    let text = std::fs::read_to_string(&path).unwrap();
    let end = text.rfind(')').unwrap();
    wat::parse_str(format!("{}{extra}\n{}", &text[..end], &text[end..])).unwrap()
}

/// builtin-plugins/dist/router-default.wasm, built by `bash builtin-plugins/build.sh`. When it is missing
/// the test is skipped with a note, unless TESSERA_REQUIRE_GUEST_PLUGINS=1 (the project's
/// test command builds the plugins first and sets it).
pub fn router_default() -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../builtin-plugins/dist/router-default.wasm");
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("TESSERA_REQUIRE_GUEST_PLUGINS").as_deref() == Ok("1") => {
            panic!(
                "{}: {e} (run `bash builtin-plugins/build.sh`)",
                path.display()
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: {} is missing; run `bash builtin-plugins/build.sh` first",
                path.display()
            );
            None
        }
    }
}

/// A built plugin, builtin-plugins/dist/NAME.wasm (see [`router_default`] for when it is missing).
pub fn built_plugin(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../builtin-plugins/dist")
        .join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("TESSERA_REQUIRE_GUEST_PLUGINS").as_deref() == Ok("1") => {
            panic!(
                "{}: {e} (run `bash builtin-plugins/build.sh`)",
                path.display()
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: {} is missing; run `bash builtin-plugins/build.sh` first",
                path.display()
            );
            None
        }
    }
}

/// An example plugin, examples/plugins/dist/NAME.wasm (or under
/// TESSERA_EXAMPLE_PLUGINS), built by examples/plugins/NAME/build.sh; missing, as for
/// [`router_default`].
pub fn example_plugin(name: &str) -> Option<Vec<u8>> {
    let dist = std::env::var_os("TESSERA_EXAMPLE_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/plugins/dist")
        });
    let path = dist.join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("TESSERA_REQUIRE_GUEST_PLUGINS").as_deref() == Ok("1") => {
            panic!(
                "{}: {e} (run `bash examples/plugins/{name}/build.sh`)",
                path.display()
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: {} is missing; run `bash examples/plugins/{name}/build.sh`",
                path.display()
            );
            None
        }
    }
}

/// A notifier manifest granting `caps` (beyond log), with `timeout`.
pub fn notifier_manifest(name: &str, caps: &[Capability], timeout: Duration) -> Manifest {
    let mut m = Manifest::new(name, "1.0.0", World::Notifier);
    m.capabilities = caps.to_vec();
    m.limits.timeout = Some(timeout);
    m
}

/// Task `t-1` (`nightly`, tags `team=lab`, `note=a "quoted" \ value`) going from QUEUED
/// to RUNNING.
pub fn event() -> NotifyEvent {
    NotifyEvent {
        task: TaskInfo {
            id: "t-1".into(),
            name: Some("nightly".into()),
            tags: vec![
                ("team".into(), "lab".into()),
                ("note".into(), "a \"quoted\" \\ value".into()),
            ],
            group: Some("lab".into()),
            priority: 3,
            cpu_cores: Some(2),
            ram_bytes: Some(1 << 30),
            created_at_ms: 1_700_000_000_000,
        },
        from_state: Some("QUEUED".into()),
        to_state: "RUNNING".into(),
        at: "2026-05-01T12:00:00Z".into(),
        reason: None,
        notification_url: None,
    }
}

pub fn runtime() -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        max_instances: 64,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

pub fn manifest(name: &str) -> Manifest {
    Manifest::new(name, "1.0.0", World::Router)
}

pub fn with_config(mut m: Manifest) -> Manifest {
    m.capabilities.push(Capability::Config);
    m
}

pub fn load(rt: &PluginRuntime, name: &str) -> RouterPlugin {
    rt.load::<RouterPlugin>(
        manifest(name),
        &component(name),
        Grants::config(PluginConfig::new()),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn load_limited(
    rt: &PluginRuntime,
    name: &str,
    timeout: Duration,
    memory: u64,
) -> RouterPlugin {
    let mut m = manifest(name);
    m.limits.timeout = Some(timeout);
    m.limits.memory_bytes = Some(memory);
    rt.load::<RouterPlugin>(m, &component(name), Grants::config(PluginConfig::new()))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The labels of [`request`]: bit 0 `zone=a`, bit 1 `gpu=none`, bit 2 group `lab`.
pub const ZONE_A: LabelSet = 1 << 0;
pub const GPU_NONE: LabelSet = 1 << 1;
pub const LAB: LabelSet = 1 << 2;

pub fn tag(k: &str, v: &str) -> Label {
    Label::Tag((k.to_string(), v.to_string()))
}

pub fn group(g: &str) -> Label {
    Label::Group(g.to_string())
}

/// A task of group `lab` that needs `zone=a`, 1 core and 1 GiB.
pub fn task() -> RouteTask {
    RouteTask {
        needs: ZONE_A | LAB,
        group: 2,
        priority: 0,
        cpu_cores: 1,
        ram_bytes: 1 << 30,
        queued_at_ms: 1_700_000_000_000,
    }
}

/// A target that holds every label of [`request`], with 4 free slots.
pub fn target() -> RouteTarget {
    RouteTarget {
        holds: ZONE_A | GPU_NONE | LAB,
        free_slots: 4,
        cpu_cores_free: 8,
        ram_bytes_free: 32 << 30,
    }
}

/// `tasks` tasks and `targets` targets, every target able to take every task.
pub fn request(tasks: usize, targets: usize) -> RouteRequest {
    RouteRequest {
        labels: vec![tag("zone", "a"), tag("gpu", "none"), group("lab")],
        tasks: vec![task(); tasks],
        targets: vec![target(); targets],
    }
}

/// Captures what is logged at debug and above on this thread while `f` runs (wasmtime's
/// wasi-http bindings trace every argument, paths and headers included, at trace).
///
/// One global subscriber writes each event to the buffer of the thread that emitted it.
/// A subscriber per call (`with_default`) would race with the other test threads over
/// tracing's global callsite interest and sometimes miss events.
pub fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static CAPTURE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }
    struct ThisThread;
    impl std::io::Write for ThisThread {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            CAPTURE.with(|c| {
                if let Some(buf) = c.borrow_mut().as_mut() {
                    buf.extend_from_slice(b);
                }
            });
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let sub = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(|| ThisThread)
            .finish();
        tracing::subscriber::set_global_default(sub).expect("the only global subscriber");
    });
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let r = f();
    let text = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (r, String::from_utf8_lossy(&text).into_owned())
}
