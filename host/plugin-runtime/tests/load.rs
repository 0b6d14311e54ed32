//! Loading: what is accepted, and the precise reasons for what is refused.

mod common;

use common::*;
use tessera_plugin_runtime::{Capability, LoadError, Origin, PluginConfig, World};
use tessera_plugin_runtime::{Grants, RouterPlugin};

fn refuse(bytes: &[u8], m: tessera_plugin_runtime::Manifest) -> String {
    match runtime().load::<RouterPlugin>(m, bytes, Grants::config(PluginConfig::new())) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let msg = refuse(b"hello, I am not wasm at all", manifest("junk"));
    assert!(msg.starts_with("not a WebAssembly component: "), "{msg}");
    assert!(msg.contains("magic"), "{msg}");
    assert!(refuse(b"", manifest("empty")).starts_with("not a WebAssembly component"));
}

#[test]
fn truncated_component_is_not_a_component() {
    let bytes = component("first-fit");
    let msg = refuse(&bytes[..bytes.len() / 2], manifest("cut"));
    assert!(msg.starts_with("not a WebAssembly component: "), "{msg}");
}

#[test]
fn a_core_module_is_not_a_component() {
    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let msg = refuse(&core, manifest("core"));
    assert!(
        msg.starts_with("not a WebAssembly component: this is a core WebAssembly module"),
        "{msg}"
    );
}

#[test]
fn a_component_without_the_routing_export_is_refused() {
    let empty = wat::parse_str("(component)").unwrap();
    let msg = refuse(&empty, manifest("empty"));
    assert!(
        msg.contains("does not export tessera:plugin/routing@0.2.0"),
        "{msg}"
    );
}

#[test]
fn a_component_of_another_contract_version_is_told_so() {
    // Exports routing@0.3.0 and imports log@0.3.0: built against a contract this host
    // does not serve.
    let bytes = wat::parse_str(
        r#"(component
             (import "tessera:plugin/log@0.3.0" (instance))
             (instance $r)
             (export "tessera:plugin/routing@0.3.0" (instance $r)))"#,
    )
    .unwrap();
    let msg = refuse(&bytes, manifest("future"));
    assert!(
        msg.contains(
            "exports tessera:plugin/routing@0.3.0, of tessera:plugin@0.3.0; this host serves \
             tessera:plugin 0.1.0, 0.2.0 (build against one of them)"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("imports tessera:plugin/log@0.3.0, of tessera:plugin@0.3.0"),
        "{msg}"
    );
}

#[test]
fn an_import_the_world_does_not_grant_is_named() {
    let bytes = component_with(
        "first-fit",
        r#"(import "wasi:cli/environment@0.2.6" (instance (export "get-arguments" (func (result (list string))))))"#,
    );
    let msg = refuse(&bytes, manifest("env"));
    assert_eq!(
        msg,
        "imports wasi:cli/environment@0.2.6 which the router world does not grant"
    );
}

#[test]
fn a_capability_of_another_world_is_refused() {
    let bytes = component_with(
        "first-fit",
        r#"(import "wasi:http/outgoing-handler@0.2.12" (instance))"#,
    );
    let msg = refuse(&bytes, manifest("http"));
    assert!(
        msg.contains(
            "imports wasi:http/outgoing-handler@0.2.12 which the router world does not grant"
        ),
        "{msg}"
    );
}

#[test]
fn config_needs_the_config_grant() {
    let bytes = component("configured");
    let msg = refuse(&bytes, manifest("configured"));
    assert!(
        msg.contains("imports tessera:plugin/config@0.1.0, which needs the `config` capability"),
        "{msg}"
    );
    // With the grant it loads, and it lists what it imports and exports.
    let rt = runtime();
    let p = rt
        .load::<RouterPlugin>(
            with_config(manifest("configured")),
            &bytes,
            Grants::config(PluginConfig::new()),
        )
        .unwrap();
    let i = &p.info().interfaces;
    assert!(
        i.imports.contains(&"tessera:plugin/log@0.1.0".to_string()),
        "{i:?}"
    );
    assert!(
        i.imports
            .contains(&"tessera:plugin/config@0.1.0".to_string()),
        "{i:?}"
    );
    assert_eq!(i.exports, vec!["tessera:plugin/routing@0.1.0".to_string()]);
    assert_eq!(p.info().size, bytes.len());
    assert_eq!(p.info().sha256.len(), 64);
}

#[test]
fn every_problem_is_reported_at_once() {
    let empty =
        wat::parse_str(r#"(component (import "wasi:filesystem/preopens@0.2.3" (instance)))"#)
            .unwrap();
    let msg = refuse(&empty, manifest("both"));
    assert!(
        msg.contains(
            "imports wasi:filesystem/preopens@0.2.3 which the router world does not grant"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("does not export tessera:plugin/routing@0.2.0"),
        "{msg}"
    );
}

#[test]
fn a_wrong_signature_is_refused() {
    // Exports the right name with the wrong function type.
    let bytes = wat::parse_str(
        r#"(component
            (core module $m (func (export "f")))
            (core instance $i (instantiate $m))
            (func $route (canon lift (core func $i "f")))
            (instance $routing (export "route" (func $route)))
            (export "tessera:plugin/routing@0.1.0" (instance $routing)))"#,
    )
    .unwrap();
    let msg = refuse(&bytes, manifest("wrong"));
    assert!(msg.contains("does not match the router world"), "{msg}");
}

#[test]
fn manifests_are_checked() {
    let bytes = component("first-fit");
    let mut m = manifest("big");
    m.limits.memory_bytes = Some(1 << 40);
    assert!(matches!(
        runtime().load::<RouterPlugin>(m, &bytes, Grants::config(PluginConfig::new())),
        Err(LoadError::Manifest(_))
    ));
    let mut m = manifest("http");
    m.capabilities.push(Capability::Http);
    let msg = refuse(&bytes, m);
    assert!(
        msg.contains("the router world cannot be granted `http`"),
        "{msg}"
    );
    let m = tessera_plugin_runtime::Manifest::new("n", "1", World::Notifier);
    assert!(matches!(
        runtime().load::<RouterPlugin>(m, &bytes, Grants::config(PluginConfig::new())),
        Err(LoadError::Manifest(_))
    ));
}

#[test]
fn router_default_loads_with_its_grant() {
    let Some(bytes) = router_default() else {
        return;
    };
    let rt = runtime();
    // It reads its configuration, so it needs `config`.
    let msg = rt
        .load::<RouterPlugin>(
            manifest("router-default"),
            &bytes,
            Grants::config(PluginConfig::new()),
        )
        .err()
        .expect("loads without the config grant")
        .to_string();
    assert!(msg.contains("tessera:plugin/config@0.1.0"), "{msg}");
    let p = rt
        .load::<RouterPlugin>(
            with_config(manifest("router-default")),
            &bytes,
            Grants::config(PluginConfig::new()),
        )
        .unwrap();
    assert_eq!(p.info().origin, Origin::Compiled);
}

#[test]
fn an_import_with_the_wrong_type_is_refused() {
    // `log` with a signature that is not the world's.
    let bytes = component_with(
        "first-fit",
        r#"(import "tessera:plugin/log@0.1.0" (instance (export "log" (func (param "x" u32)))))"#,
    );
    let msg = refuse(&bytes, manifest("badlog"));
    assert!(
        msg.starts_with("does not match the router world: "),
        "{msg}"
    );
    assert!(msg.contains("tessera:plugin/log@0.1.0"), "{msg}");
}

#[test]
fn a_component_that_cannot_start_is_refused_at_load() {
    // first-fit with a start function that traps, spliced in after its last function.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/components/first-fit.wat");
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.replacen(
        "    (data ",
        "    (func $boom unreachable)\n    (start $boom)\n    (data ",
        1,
    );
    let msg = refuse(&wat::parse_str(text).unwrap(), manifest("boom"));
    assert!(
        msg.starts_with("the component fails to start: the plugin trapped: "),
        "{msg}"
    );
}
