//! What the API shows of plugins: JSON-ready views that never carry a secret's value.

use serde::Serialize;
use tessera_plugin_runtime::{CompiledComponent, Manifest, MetricsSnapshot};
use tessera_store::{BindingRow, PluginVersionRow};

use crate::Settings;

/// A plugin: its versions and where it is bound.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Plugin))]
pub struct PluginView {
    pub name: String,
    pub world: tessera_plugin_runtime::World,
    pub versions: Vec<VersionView>,
    pub bindings: Vec<BindingView>,
}

/// One installed version.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = PluginVersion))]
pub struct VersionView {
    pub name: String,
    pub version: String,
    pub world: tessera_plugin_runtime::World,
    /// The plugin's manifest as installed.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub manifest: Manifest,
    pub sha256: String,
    pub size_bytes: i64,
    /// `builtin` or `uploaded`.
    pub origin: String,
    pub installed_at: String,
    /// Compile time at install (or the cache load time), when just installed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compile_ms: Option<f64>,
    /// What the component imports and exports (shown for a single plugin).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<String>,
    /// Calls per binding that serves this version now.
    pub calls: Vec<CallStats>,
}

impl VersionView {
    pub(crate) fn new(
        row: &PluginVersionRow,
        manifest: &Manifest,
        compiled: Option<&CompiledComponent>,
        calls: Vec<CallStats>,
    ) -> Self {
        VersionView {
            name: row.name.clone(),
            version: row.version.clone(),
            world: row.world,
            manifest: manifest.clone(),
            sha256: row.sha256.clone(),
            size_bytes: row.size_bytes,
            origin: row.origin.clone(),
            installed_at: row.installed_at.clone(),
            compile_ms: compiled.map(|c| c.info.load_time.as_secs_f64() * 1e3),
            imports: compiled
                .map(|c| c.info.interfaces.imports.clone())
                .unwrap_or_default(),
            exports: compiled
                .map(|c| c.info.interfaces.exports.clone())
                .unwrap_or_default(),
            calls,
        }
    }
}

/// Calls, errors and latency of one binding.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CallStats {
    pub scope: String,
    pub calls: u64,
    pub errors: u64,
    /// Errors by kind (trap, timeout, out_of_memory, …), zeros left out.
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

impl CallStats {
    pub(crate) fn new(scope: &str, m: &MetricsSnapshot) -> Self {
        CallStats {
            scope: scope.to_string(),
            calls: m.calls,
            errors: m.errors,
            errors_by_kind: m
                .errors_by_kind
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k.name().to_string(), *n))
                .collect(),
            p50_us: m.p50.map(|d| d.as_secs_f64() * 1e6),
            p99_us: m.p99.map(|d| d.as_secs_f64() * 1e6),
        }
    }
}

/// A binding: which version serves a scope of a world, with its settings (secret names
/// only).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = PluginBinding))]
pub struct BindingView {
    pub world: tessera_plugin_runtime::World,
    pub scope: String,
    pub plugin: String,
    pub version: String,
    /// `name@version` a rollback returns to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<String>,
    pub config: std::collections::BTreeMap<String, String>,
    /// The names of the secrets set; their values are never shown.
    pub secrets: Vec<String>,
    /// Hosts the plugin may reach over HTTP.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// Notifiers: which events are delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<crate::EventFilter>,
    /// Filers: the buckets granted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<String>,
    pub updated_at: String,
    /// A default binding (from the server's configuration, not stored): activating a
    /// version on its scope replaces it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
    /// Why the bound version does not serve, when it does not load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl BindingView {
    pub(crate) fn new(b: &BindingRow, error: Option<String>) -> Self {
        let settings: Settings = serde_json::from_str(&b.settings).unwrap_or_default();
        BindingView {
            world: b.world,
            scope: b.scope.clone(),
            plugin: b.plugin.clone(),
            version: b.version.clone(),
            rollback_to: b.previous.as_ref().map(|(p, v)| format!("{p}@{v}")),
            config: settings.config,
            secrets: settings.secrets.into_keys().collect(),
            allow_hosts: settings.allow_hosts,
            filter: settings.filter,
            buckets: settings.buckets,
            updated_at: b.updated_at.clone(),
            default: false,
            error,
        }
    }
}
