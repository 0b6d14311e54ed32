//! What a plugin declares about itself (its manifest) and what it is given at load (its
//! configuration and secrets).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default call deadline when a manifest sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// The default memory cap (all linear memories of one instance together) when a manifest
/// sets none.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;

pub use tessera_core::plugin::{Capability, World};

/// Per-call limits. `None` means the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Limits {
    /// How long one call may run ([`DEFAULT_TIMEOUT`] when unset). Enforced with epoch
    /// interruption: see [`crate::RuntimeConfig::epoch_tick`] for the granularity.
    #[serde(default, with = "opt_millis", rename = "timeout-ms")]
    pub timeout: Option<Duration>,
    /// The most linear memory one instance may hold, in bytes
    /// ([`DEFAULT_MEMORY_BYTES`] when unset).
    #[serde(default)]
    pub memory_bytes: Option<u64>,
}

impl Limits {
    pub fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.unwrap_or(DEFAULT_MEMORY_BYTES)
    }
}

mod opt_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// What a plugin declares: who it is, which slot it fills, what it may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub world: World,
    /// Granted capabilities beyond `log` (which is always granted).
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub limits: Limits,
    /// The secrets the plugin may read through `config.secret`; any other name reads as
    /// unset even when the binding has a value for it.
    #[serde(default)]
    pub secrets: Vec<String>,
}

impl Manifest {
    /// A manifest with no capabilities beyond `log` and default limits.
    pub fn new(name: impl Into<String>, version: impl Into<String>, world: World) -> Self {
        Manifest {
            name: name.into(),
            version: version.into(),
            world,
            capabilities: Vec::new(),
            limits: Limits::default(),
            secrets: Vec::new(),
        }
    }

    /// Whether `cap` is granted (`log` always is).
    pub fn grants(&self, cap: Capability) -> bool {
        cap == Capability::Log || self.capabilities.contains(&cap)
    }
}

pub use tessera_core::secret::Secret;

/// A plugin's configuration as bound: plain values and secrets, kept apart.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    pub values: BTreeMap<String, String>,
    pub secrets: BTreeMap<String, Secret>,
}

impl PluginConfig {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn value(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }

    pub fn secret(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.secrets.insert(name.into(), Secret::new(value));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_debug_print() {
        let c = PluginConfig::new()
            .value("a", "b")
            .secret("token", "hunter2");
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("token"));
    }

    #[test]
    fn log_is_always_granted() {
        let m = Manifest::new("r", "1.0.0", World::Router);
        assert!(m.grants(Capability::Log));
        assert!(!m.grants(Capability::Config));
    }
}
