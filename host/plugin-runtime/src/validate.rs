//! Checking that a component targets the world its manifest claims, before anything is
//! linked: its exports must include the world's interface and its imports must be a
//! subset of what the world offers *and* the manifest grants.
//!
//! Function signatures are checked afterwards, when the component is linked against the
//! world's bindings (a mismatch there is reported as a [`LoadError::World`] too).

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::error::LoadError;
use crate::manifest::{Capability, Manifest, World};
use tessera_core::plugin::Contract;

/// The imports and exports of a component, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interfaces {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Lists what `component` imports and exports (top-level names, e.g.
/// `tessera:plugin/log@0.1.0`).
pub fn interfaces(engine: &Engine, component: &Component) -> Interfaces {
    let ty = component.component_type();
    Interfaces {
        imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
        exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
    }
}

/// The contract versions this host serves, for messages (`0.1.0, 0.2.0`).
fn served() -> String {
    Contract::ALL
        .iter()
        .map(|c| c.version())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version of a `tessera:plugin/…@V` name when it is not one this host serves.
fn unsupported_version(name: &str) -> Option<&str> {
    let version = name.strip_prefix("tessera:plugin/")?.split_once('@')?.1;
    (!Contract::ALL.iter().any(|c| c.version() == version)).then_some(version)
}

/// The contract a component of `world` was built against, from what it exports (the
/// newest one it exports when there are several).
pub(crate) fn contract_of(world: World, exports: &[String]) -> Option<Contract> {
    world
        .exports()
        .iter()
        .find(|(name, _)| exports.iter().any(|e| e == name))
        .map(|(_, c)| *c)
}

/// What an import needs to be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Nothing: an interface of shared types only, implied by the world itself.
    Nothing,
    Capability(Capability),
    /// WASI plumbing that comes with any of these capabilities (streams, pollables…).
    AnyOf(&'static [Capability]),
}

/// The WASI minor version line this host's WIT vendors (0.2.x).
fn is_wasi_02(name: &str, iface: &str) -> bool {
    name.strip_prefix(iface)
        .and_then(|rest| rest.strip_prefix("@0.2."))
        .is_some_and(|patch| !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit()))
}

fn is_wasi_io(name: &str) -> bool {
    ["wasi:io/streams", "wasi:io/error", "wasi:io/poll"]
        .iter()
        .any(|iface| is_wasi_02(name, iface))
}

fn need_of(name: &str) -> Option<Need> {
    use Capability::*;
    const STREAMS: &[Capability] = &[Http, ObjectStore, Workspace];
    Some(match name {
        "tessera:plugin/types@0.1.0" => Need::Nothing,
        "tessera:plugin/log@0.1.0" => Need::Capability(Log),
        "tessera:plugin/config@0.1.0" => Need::Capability(Config),
        "tessera:plugin/object-store@0.1.0" => Need::Capability(ObjectStore),
        "tessera:plugin/workspace@0.1.0" => Need::Capability(Workspace),
        n if is_wasi_02(n, "wasi:http/outgoing-handler") || is_wasi_02(n, "wasi:http/types") => {
            Need::Capability(Http)
        }
        n if is_wasi_io(n) => Need::AnyOf(STREAMS),
        n if is_wasi_02(n, "wasi:clocks/monotonic-clock") => Need::AnyOf(&[Http]),
        _ => return None,
    })
}

/// Checks `component` against `manifest`'s world and grants. All problems are reported
/// at once, separated by `; `.
pub fn check_world(
    engine: &Engine,
    component: &Component,
    manifest: &Manifest,
) -> Result<(), LoadError> {
    let world = manifest.world;
    let ty = component.component_type();
    let mut problems = Vec::new();

    for (name, ext) in ty.imports(engine) {
        let item = &ext.ty;
        if !matches!(item, ComponentItem::ComponentInstance(_)) {
            problems.push(format!(
                "imports `{name}` ({}), which the {world} world does not grant: it offers \
                 only interfaces",
                item_kind(item)
            ));
            continue;
        }
        match need_of(name) {
            Some(Need::Nothing) => {}
            Some(Need::Capability(cap)) => check_cap(&mut problems, name, world, manifest, &[cap]),
            // `filing` itself uses the stream types (`use wasi:io/streams…`), so every
            // filer imports wasi:io; without a capability that makes streams it cannot
            // get hold of one, so the plumbing is linked for every filer.
            Some(Need::AnyOf(_)) if world == World::Filer && is_wasi_io(name) => {}
            Some(Need::AnyOf(caps)) => check_cap(&mut problems, name, world, manifest, caps),
            None => problems.push(match unsupported_version(name) {
                Some(v) => format!(
                    "imports {name}, of tessera:plugin@{v}; this host serves \
                     tessera:plugin {}",
                    served()
                ),
                None => format!("imports {name} which the {world} world does not grant"),
            }),
        }
    }

    let exported = world.exports().iter().any(|(export, _)| {
        ty.get_export(engine, export)
            .is_some_and(|ext| matches!(ext.ty, ComponentItem::ComponentInstance(_)))
    });
    if !exported {
        let (newest, _) = world.exports()[0];
        let others: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let unversioned = newest.split('@').next().unwrap_or(newest);
        let other_version = others
            .iter()
            .find(|n| n.split('@').next() == Some(unversioned))
            .and_then(|n| Some((n, unsupported_version(n)?)));
        problems.push(if let Some((name, v)) = other_version {
            // Built against another version of the contract: say so, rather than that
            // the export is missing.
            format!(
                "exports {name}, of tessera:plugin@{v}; this host serves tessera:plugin {} \
                 (build against one of them)",
                served()
            )
        } else if others.is_empty() {
            format!("does not export {newest} (it exports nothing); a {world} plugin must")
        } else {
            format!(
                "does not export {newest} (it exports {}); a {world} plugin must",
                others.join(", ")
            )
        });
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(LoadError::World(problems.join("; ")))
    }
}

fn check_cap(
    problems: &mut Vec<String>,
    name: &str,
    world: World,
    manifest: &Manifest,
    caps: &[Capability],
) {
    if caps.iter().any(|c| manifest.grants(*c)) {
        return;
    }
    if !caps.iter().any(|c| world.capabilities().contains(c)) {
        problems.push(format!(
            "imports {name} which the {world} world does not grant"
        ));
        return;
    }
    let names: Vec<String> = caps
        .iter()
        .filter(|c| world.capabilities().contains(c))
        .map(|c| format!("`{c}`"))
        .collect();
    problems.push(format!(
        "imports {name}, which needs the {} capability, and the manifest does not grant it",
        names.join(" or ")
    ));
}

fn item_kind(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "a function",
        ComponentItem::CoreFunc(_) => "a core function",
        ComponentItem::Module(_) => "a core module",
        ComponentItem::Component(_) => "a component",
        ComponentItem::ComponentInstance(_) => "an instance",
        ComponentItem::Type(_) => "a type",
        ComponentItem::Resource(_) => "a resource",
    }
}

/// Checks that a manifest can be honoured at all by this world and a host that allows at
/// most `max_memory` bytes and a call timeout of `max_timeout` for this world.
pub(crate) fn check_manifest(
    manifest: &Manifest,
    max_memory: u64,
    max_timeout: std::time::Duration,
) -> Result<(), LoadError> {
    let world = manifest.world;
    if manifest.name.trim().is_empty() {
        return Err(LoadError::Manifest("the plugin has no name".into()));
    }
    for cap in &manifest.capabilities {
        if !world.capabilities().contains(cap) {
            return Err(LoadError::Manifest(format!(
                "the {world} world cannot be granted `{cap}` (it can have: {})",
                world
                    .capabilities()
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mem = manifest.limits.memory_bytes();
    if mem == 0 || mem > max_memory {
        return Err(LoadError::Manifest(format!(
            "memory limit {mem} bytes is outside what this host allows (1..={max_memory})"
        )));
    }
    let timeout = manifest.limits.timeout();
    if timeout.is_zero() {
        return Err(LoadError::Manifest("the call timeout is zero".into()));
    }
    let flag = match world {
        World::Router => "--max-router-timeout-ms",
        _ => "--max-plugin-timeout-ms",
    };
    if timeout > max_timeout {
        return Err(LoadError::Manifest(format!(
            "timeout-ms {} is more than this host allows for {world} plugins ({} ms; the \
             operator sets it with {flag})",
            timeout.as_millis(),
            max_timeout.as_millis()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_versions() {
        assert!(is_wasi_02("wasi:io/streams@0.2.12", "wasi:io/streams"));
        assert!(is_wasi_02("wasi:io/streams@0.2.0", "wasi:io/streams"));
        assert!(!is_wasi_02("wasi:io/streams@0.3.0", "wasi:io/streams"));
        assert!(!is_wasi_02("wasi:io/streams@0.2.", "wasi:io/streams"));
        assert!(!is_wasi_02("wasi:io/streamsx@0.2.1", "wasi:io/streams"));
        assert_eq!(need_of("wasi:cli/environment@0.2.6"), None);
        assert!(is_wasi_io("wasi:io/poll@0.2.12") && is_wasi_io("wasi:io/error@0.2.0"));
        assert!(!is_wasi_io("wasi:clocks/monotonic-clock@0.2.12"));
    }

    #[test]
    fn what_outgoing_http_needs() {
        use Capability::*;
        for name in ["wasi:http/outgoing-handler@0.2.12", "wasi:http/types@0.2.3"] {
            assert_eq!(need_of(name), Some(Need::Capability(Http)), "{name}");
        }
        for name in [
            "wasi:io/streams@0.2.12",
            "wasi:io/poll@0.2.12",
            "wasi:io/error@0.2.0",
        ] {
            assert!(
                matches!(need_of(name), Some(Need::AnyOf(caps)) if caps.contains(&Http)),
                "{name}"
            );
        }
        assert_eq!(
            need_of("wasi:clocks/monotonic-clock@0.2.12"),
            Some(Need::AnyOf(&[Http]))
        );
        // Not linked for any world.
        for name in [
            "wasi:clocks/wall-clock@0.2.12",
            "wasi:random/random@0.2.12",
            "wasi:sockets/tcp@0.2.12",
            "wasi:filesystem/types@0.2.12",
            "wasi:http/incoming-handler@0.2.12",
        ] {
            assert_eq!(need_of(name), None, "{name}");
        }
    }
}
