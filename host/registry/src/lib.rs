//! The plugin registry: what is installed and what serves where.
//!
//! Installed versions (manifest and component bytes) and bindings live in the store, so
//! they survive restarts. The registry keeps the bound versions loaded in the plugin
//! runtime. Activating a version loads it first (compile or cache hit, validate, link)
//! and only then records the binding and swaps it in: calls already running finish on
//! the version they started with, new calls get the new one, and a version that does not
//! load never becomes active.
//!
//! The registry is also the runner's router (`routing.rs`: a call goes to the router
//! bound for the task's group, or the default one, scope `""`, on a warm instance kept
//! per group) and its filers (`staging.rs`).
//!
//! One module per job: `install` (validation and installing versions, listing),
//! `activation` (activating, rolling back, deleting; loading a version for serving),
//! `bindings` (what serves where: the binding tables, stored and default bindings,
//! reloading them at start), `notify` (the notification outbox).

mod activation;
mod bindings;
mod install;
mod notify;
mod routing;
mod staging;
mod view;

pub use bindings::{BindingMetrics, DefaultBinding};
pub use install::parse_manifest;
pub use notify::{EventFilter, MAX_ATTEMPTS, backoff, event_for};
pub use staging::PortableFiler;
pub use view::{BindingView, CallStats, PluginView, VersionView};

use bindings::{ActiveEngineAdapter, ActiveFiler, ActiveNotifier, Slot};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tessera_objstore::ObjectStore;
use tessera_plugin_runtime::{LoadError, PluginConfig, PluginRuntime, WarmRouter};
use tessera_store::{Store, StoreError};

/// A plugin shipped inside the binary, installed (and bound, on a fresh install) at start.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The manifest, TOML.
    pub manifest: &'static str,
    pub component: &'static [u8],
}

/// Why a registry operation failed. Each variant maps to one HTTP status and code.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is malformed (a bad manifest, a missing scope, …): 400.
    #[error("{0}")]
    Invalid(String),
    /// The component does not load as the plugin its manifest claims: 400.
    #[error("{0}")]
    Load(#[from] LoadError),
    /// No such plugin, version or binding: 404.
    #[error("{0}")]
    NotFound(String),
    /// The change contradicts what is installed (a version reinstalled with other bytes,
    /// a version in use): 409.
    #[error("{0}")]
    Conflict(String),
    /// The store failed: 500.
    #[error("the store failed: {0}")]
    Store(StoreError),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => RegistryError::Conflict(m),
            StoreError::NotFound(m) => RegistryError::NotFound(m),
            other => RegistryError::Store(other),
        }
    }
}

/// A binding's settings as stored: configuration values and secrets for the plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Never returned by the API, never logged.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Hosts (`host` or `host:port`, `*` for any public address) the plugin may send HTTP requests to,
    /// within what its manifest's `http` grant allows. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_hosts: Vec<String>,
    /// Notifiers: which events to deliver (all when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EventFilter>,
    /// Filers: the buckets the plugin may use through the host's object store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<String>,
}

/// What an activation may grant beyond named hosts and buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Grant {
    /// Named hosts and buckets only: `*` is refused.
    #[default]
    Named,
    /// `*` hosts (any public address) or `*` buckets (every bucket) too, asked for
    /// explicitly.
    Any,
}

impl Settings {
    /// What `*` in these settings grants, in words (`None` when nothing is a wildcard).
    pub fn wildcards(&self) -> Option<String> {
        let mut any = Vec::new();
        if self.allow_hosts.iter().any(|h| h == "*") {
            any.push("any public host (allow_hosts `*`)");
        }
        if self.buckets.iter().any(|b| b == "*") {
            any.push("every bucket (buckets `*`)");
        }
        (!any.is_empty()).then(|| any.join(" and "))
    }

    fn plugin_config(&self) -> PluginConfig {
        let mut c = PluginConfig::new();
        for (k, v) in &self.config {
            c = c.value(k, v);
        }
        for (k, v) in &self.secrets {
            c = c.secret(k, v);
        }
        c
    }
}

/// The registry. Cheap to clone.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    store: Store,
    runtime: PluginRuntime,
    /// Router bindings by scope. Replaced whole on every change, so a call works on one
    /// consistent snapshot.
    routers: RwLock<Arc<HashMap<String, Slot>>>,
    /// Warm router instances by group, with the generation they belong to.
    warm: Mutex<HashMap<String, (u64, WarmRouter)>>,
    /// Notifier bindings by scope, replaced whole like the routers.
    notifiers: RwLock<Arc<BTreeMap<String, Arc<ActiveNotifier>>>>,
    /// Filer bindings by URL scheme.
    filers: RwLock<Arc<BTreeMap<String, Arc<ActiveFiler>>>>,
    /// Engine-adapter bindings by engine name.
    engine_adapters: RwLock<Arc<BTreeMap<String, Arc<ActiveEngineAdapter>>>>,
    /// The host's object store, for filers granted `object-store`.
    object_store: Option<Arc<dyn ObjectStore>>,
    /// Bindings that serve where none is stored, with the built-in version they bind.
    defaults: Vec<(DefaultBinding, String)>,
    generation: AtomicU64,
    /// The built-ins' names: an upload may not take one.
    builtin_names: Vec<String>,
    /// The built-ins' names and versions (what a pod's `tessera stage` has too).
    builtin_versions: Vec<(String, String)>,
    /// Serialises activations, rollbacks and deletions (the store's order is the
    /// in-memory order).
    changes: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Open the registry: install the built-in plugins that are missing (binding routers
    /// where nothing else is bound), then load every stored binding, and `defaults` where
    /// nothing is stored.
    pub async fn open(
        store: Store,
        runtime: PluginRuntime,
        builtins: &[Builtin],
        object_store: Option<Arc<dyn ObjectStore>>,
        defaults: Vec<DefaultBinding>,
    ) -> Result<Registry, RegistryError> {
        let mut resolved = Vec::new();
        for d in defaults {
            let manifest = builtins
                .iter()
                .map(|b| parse_manifest(b.manifest))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .find(|m| m.name == d.plugin && m.world == d.world)
                .ok_or_else(|| {
                    RegistryError::Invalid(format!(
                        "the default binding of {} scope {:?} names {}, which is not a built-in {} plugin",
                        d.world.name(),
                        d.scope,
                        d.plugin,
                        d.world.name()
                    ))
                })?;
            resolved.push((d, manifest.version));
        }
        let registry = Registry(Arc::new(Inner {
            store,
            runtime,
            routers: RwLock::new(Arc::new(HashMap::new())),
            warm: Mutex::new(HashMap::new()),
            notifiers: RwLock::new(Arc::new(BTreeMap::new())),
            filers: RwLock::new(Arc::new(BTreeMap::new())),
            engine_adapters: RwLock::new(Arc::new(BTreeMap::new())),
            object_store,
            defaults: resolved,
            generation: AtomicU64::new(1),
            builtin_names: builtins
                .iter()
                .map(|b| parse_manifest(b.manifest).map(|m| m.name))
                .collect::<Result<_, _>>()?,
            builtin_versions: builtins
                .iter()
                .map(|b| parse_manifest(b.manifest).map(|m| (m.name, m.version)))
                .collect::<Result<_, _>>()?,
            changes: tokio::sync::Mutex::new(()),
        }));
        for b in builtins {
            registry.install_builtin(b).await?;
        }
        registry.reload().await?;
        Ok(registry)
    }

    pub fn runtime(&self) -> &PluginRuntime {
        &self.0.runtime
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }
}
