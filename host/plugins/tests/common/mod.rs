//! Shared by the integration tests: test components, sample requests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use tessera_plugins::{
    Capability, Label, LabelSet, Manifest, PluginConfig, PluginRuntime, RouteRequest, RouteTarget,
    RouteTask, RouterPlugin, RuntimeConfig, World,
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

/// plugins/dist/router-default.wasm, built by `bash plugins/build.sh`. When it is missing
/// the test is skipped with a note, unless TESSERA_REQUIRE_GUEST_PLUGINS=1 (the project's
/// test command builds the plugins first and sets it).
pub fn router_default() -> Option<Vec<u8>> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../plugins/dist/router-default.wasm");
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(e) if std::env::var("TESSERA_REQUIRE_GUEST_PLUGINS").as_deref() == Ok("1") => {
            panic!("{}: {e} (run `bash plugins/build.sh`)", path.display())
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: {} is missing; run `bash plugins/build.sh` first",
                path.display()
            );
            None
        }
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
    rt.load_router(manifest(name), &component(name), PluginConfig::new())
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
    rt.load_router(m, &component(name), PluginConfig::new())
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
