//! What a plugin is to the rest of the host: the world (slot) it fills and the
//! capabilities a manifest can grant. The plugin runtime loads and links them; the store
//! and the registry keep them typed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The slot a plugin fills: one world of `wit/plugin.wit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum World {
    Router,
    Notifier,
    Filer,
    EngineAdapter,
}

/// A version of the plugin contract (`wit/plugin.wit` is 0.1.0, `wit/0.2/plugin.wit`
/// 0.2.0). The host serves every one of them; a component's exports say which it was
/// built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Contract {
    #[serde(rename = "0.1.0")]
    V0_1,
    #[serde(rename = "0.2.0")]
    V0_2,
}

impl Contract {
    pub const ALL: [Contract; 2] = [Contract::V0_1, Contract::V0_2];

    /// The package version, `0.1.0` or `0.2.0`.
    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
        }
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tessera:plugin@{}", self.version())
    }
}

/// The notifier scope that delivers run summaries to their response URLs (not task
/// events): no group can have this name, so it is the instance's.
pub const RUN_SUMMARY_SCOPE: &str = ":run-summaries";

impl World {
    /// The group a binding of this world in `scope` belongs to. Routers and notifiers
    /// bound to a scope other than `""` belong to the group the scope names; every other
    /// binding (the default router, filers by URL scheme, engine adapters) belongs to
    /// the instance.
    pub fn binding_group(self, scope: &str) -> Option<&str> {
        match self {
            World::Router | World::Notifier if !scope.is_empty() => Some(scope),
            _ => None,
        }
    }

    pub const ALL: [World; 4] = [
        World::Router,
        World::Notifier,
        World::Filer,
        World::EngineAdapter,
    ];

    /// The world named `name` (as [`World::name`] gives it).
    pub fn from_name(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The world's name in `wit/plugin.wit`.
    pub fn name(self) -> &'static str {
        match self {
            World::Router => "router",
            World::Notifier => "notifier",
            World::Filer => "filer",
            World::EngineAdapter => "engine-adapter",
        }
    }

    /// The interfaces a component of this world may export (one of them), newest
    /// contract first, each with the contract version it belongs to. The notifier's
    /// `notify` did not change in 0.2.0, so both versions export the 0.1.0 interface.
    pub fn exports(self) -> &'static [(&'static str, Contract)] {
        use Contract::*;
        match self {
            World::Router => &[
                ("tessera:plugin/routing@0.2.0", V0_2),
                ("tessera:plugin/routing@0.1.0", V0_1),
            ],
            World::Notifier => &[("tessera:plugin/notify@0.1.0", V0_1)],
            World::Filer => &[
                ("tessera:plugin/filing@0.2.0", V0_2),
                ("tessera:plugin/filing@0.1.0", V0_1),
            ],
            World::EngineAdapter => &[
                ("tessera:plugin/engine@0.2.0", V0_2),
                ("tessera:plugin/engine@0.1.0", V0_1),
            ],
        }
    }

    /// The capabilities this world can be granted at all.
    pub fn capabilities(self) -> &'static [Capability] {
        use Capability::*;
        match self {
            World::Router => &[Log, Config],
            World::Notifier | World::EngineAdapter => &[Log, Config, Http],
            World::Filer => &[Log, Config, Http, ObjectStore, Workspace],
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A host capability a manifest can grant: one or more imported interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `tessera:plugin/log` (always granted).
    Log,
    /// `tessera:plugin/config`: this plugin's configuration and listed secrets.
    Config,
    /// `wasi:http/outgoing-handler` to listed hosts.
    Http,
    /// `tessera:plugin/object-store` to listed buckets.
    ObjectStore,
    /// `tessera:plugin/workspace` of the current task.
    Workspace,
}

impl Capability {
    /// The name used in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Config => "config",
            Capability::Http => "http",
            Capability::ObjectStore => "object-store",
            Capability::Workspace => "workspace",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no world's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a plugin world")]
pub struct UnknownWorld(pub String);

impl FromStr for World {
    type Err = UnknownWorld;

    fn from_str(s: &str) -> Result<World, UnknownWorld> {
        [
            World::Router,
            World::Notifier,
            World::Filer,
            World::EngineAdapter,
        ]
        .into_iter()
        .find(|w| w.name() == s)
        .ok_or_else(|| UnknownWorld(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_read_back_from_their_names() {
        for w in [
            World::Router,
            World::Notifier,
            World::Filer,
            World::EngineAdapter,
        ] {
            assert_eq!(w.name().parse::<World>(), Ok(w));
        }
        assert!("routers".parse::<World>().is_err());
    }
}
