//! The plugin registry: what is installed and what serves where.
//!
//! Installed versions (manifest and component bytes) and bindings live in the store, so
//! they survive restarts. The registry keeps the bound versions loaded in the plugin
//! runtime. Activating a version loads it first (compile or cache hit, validate, link)
//! and only then records the binding and swaps it in: calls already running finish on
//! the version they started with, new calls get the new one, and a version that does not
//! load never becomes active.
//!
//! The registry is also the runner's [`Router`]: a call goes to the router bound for the
//! task's group, or the default one (scope `""`), on a warm instance kept per group.

mod notify;
mod view;

pub use notify::EventFilter;
pub use view::{BindingView, CallStats, PluginView, VersionView};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tessera_core::routing::{self, Decision, RouteError, RouteRequest, Router};
use tessera_core::time_fmt::now_rfc3339;
use tessera_objstore::ObjectStore;
use tessera_plugins::{
    CallError, CompiledComponent, EnginePlugin, FileKind, FilerPlugin, FilerWorkspace, LoadError,
    Manifest, MetricsSnapshot, NotifierPlugin, PluginConfig, PluginRuntime, RouterPlugin,
    WarmRouter, World,
};
use tessera_store::{BindingRow, Deleted, Installed, PluginVersionRow, Store, StoreError};

/// A plugin shipped inside the binary, installed (and bound, on a fresh install) at start.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The manifest, TOML.
    pub manifest: &'static str,
    pub component: &'static [u8],
}

/// A binding that serves a scope when none is stored for it: made from the server's
/// configuration at every start and never stored, so changing the configuration changes
/// it. Activating a version on the scope stores a binding that takes its place.
#[derive(Debug, Clone)]
pub struct DefaultBinding {
    pub world: World,
    pub scope: String,
    /// A built-in plugin (its version is the built-in's).
    pub plugin: &'static str,
    pub settings: Settings,
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

impl Settings {
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

/// Parse a manifest from TOML or JSON (whichever the text is).
pub fn parse_manifest(text: &str) -> Result<Manifest, RegistryError> {
    let manifest: Manifest = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
            .map_err(|e| RegistryError::Invalid(format!("manifest (JSON): {e}")))?
    } else {
        toml::from_str(text).map_err(|e| RegistryError::Invalid(format!("manifest (TOML): {e}")))?
    };
    check_name("name", &manifest.name)?;
    check_name("version", &manifest.version)?;
    Ok(manifest)
}

/// Names and versions appear in URLs and logs: keep them to a safe alphabet.
fn check_name(what: &str, s: &str) -> Result<(), RegistryError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "manifest {what} {s:?} must be 1-64 characters of letters, digits, '-', '_', '.', '+'"
        )))
    }
}

/// A router bound to a scope, loaded with the binding's settings.
struct ActiveRouter {
    binding: BindingRow,
    plugin: RouterPlugin,
    /// Distinguishes this activation from every other (warm instances are per activation).
    generation: u64,
}

/// A bound scope: loaded, or why it could not be.
type Slot = Result<Arc<ActiveRouter>, (BindingRow, String)>;

/// A notifier bound to a scope.
pub(crate) struct ActiveNotifier {
    pub(crate) binding: BindingRow,
    pub(crate) plugin: NotifierPlugin,
    pub(crate) filter: Option<EventFilter>,
}

/// A filer bound to a URL scheme.
struct ActiveFiler {
    binding: BindingRow,
    plugin: FilerPlugin,
}

/// An engine adapter bound to an engine name.
struct ActiveEngine {
    binding: BindingRow,
    plugin: EnginePlugin,
}

/// The calls of one binding that serves now.
#[derive(Debug, Clone)]
pub struct BindingMetrics {
    pub world: &'static str,
    pub scope: String,
    pub plugin: String,
    pub version: String,
    pub metrics: MetricsSnapshot,
}

/// A version made ready to serve.
enum Loaded {
    Router(RouterPlugin),
    Notifier(NotifierPlugin),
    Filer(FilerPlugin),
    Engine(EnginePlugin),
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
    engines: RwLock<Arc<BTreeMap<String, Arc<ActiveEngine>>>>,
    /// The host's object store, for filers granted `object-store`.
    object_store: Option<Arc<dyn ObjectStore>>,
    /// Bindings that serve where none is stored, with the built-in version they bind.
    defaults: Vec<(DefaultBinding, String)>,
    generation: AtomicU64,
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
            engines: RwLock::new(Arc::new(BTreeMap::new())),
            object_store,
            defaults: resolved,
            generation: AtomicU64::new(1),
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

    async fn install_builtin(&self, b: &Builtin) -> Result<(), RegistryError> {
        let manifest = parse_manifest(b.manifest)?;
        let (compiled, _) = self
            .compile_checked(&manifest, b.component.to_vec())
            .await?;
        let row = version_row(&manifest, &compiled, "builtin")?;
        self.0
            .store
            .install_plugin_version(&row, b.component)
            .await?;
        // Only a router is needed to run tasks: it is bound on a fresh install; the other
        // worlds wait for the operator to configure and bind them.
        if manifest.world != World::Router {
            return Ok(());
        }
        let scope = default_scope(&manifest)?;
        let world = manifest.world.name();
        let bindings = self.0.store.plugin_bindings().await?;
        let current = bindings
            .iter()
            .find(|x| x.world == world && x.scope == scope);
        // Bind on a fresh install, and follow a newer built-in where the operator kept
        // the built-in bound.
        let follow = match current {
            None => true,
            Some(cur) if cur.plugin == manifest.name && cur.version != manifest.version => self
                .0
                .store
                .plugin_version(&cur.plugin, &cur.version)
                .await?
                .is_some_and(|v| v.origin == "builtin"),
            Some(_) => false,
        };
        if follow {
            self.0
                .store
                .bind_plugin(world, &scope, &manifest.name, &manifest.version, None)
                .await?;
            tracing::info!(plugin = %manifest.name, version = %manifest.version, world, "bound the built-in plugin");
        }
        Ok(())
    }

    /// Compile and validate `bytes` as the plugin `manifest` describes, off the async
    /// threads. Routers are also linked and started once, so a router that cannot start
    /// is refused here rather than at activation.
    async fn compile_checked(
        &self,
        manifest: &Manifest,
        bytes: Vec<u8>,
    ) -> Result<(CompiledComponent, Vec<u8>), RegistryError> {
        let runtime = self.0.runtime.clone();
        let manifest = manifest.clone();
        tokio::task::spawn_blocking(move || {
            let compiled = runtime.compile(&bytes)?;
            runtime.validate(&manifest, &compiled)?;
            if manifest.world == World::Router {
                runtime.link_router(manifest, compiled.clone(), PluginConfig::new())?;
            }
            Ok((compiled, bytes))
        })
        .await
        .map_err(|e| RegistryError::Invalid(format!("checking the component failed: {e}")))?
    }

    /// Install a version from its manifest and component bytes. Refused (400) when the
    /// component does not load as the world the manifest claims; installing the same
    /// bytes again is a no-op; other bytes under an installed version are refused (409).
    pub async fn install(
        &self,
        manifest_text: &str,
        bytes: Vec<u8>,
    ) -> Result<VersionView, RegistryError> {
        let manifest = parse_manifest(manifest_text)?;
        let (compiled, bytes) = self.compile_checked(&manifest, bytes).await?;
        let row = version_row(&manifest, &compiled, "uploaded")?;
        let installed = self.0.store.install_plugin_version(&row, &bytes).await?;
        tracing::info!(plugin = %row.name, version = %row.version, world = %row.world, bytes = row.size_bytes, compile_ms = compiled.info.load_time.as_millis() as u64, new = installed == Installed::New, "plugin installed");
        Ok(VersionView::new(
            &row,
            &manifest,
            Some(&compiled),
            Vec::new(),
        ))
    }

    /// Every installed plugin with its versions and bindings.
    pub async fn list(&self) -> Result<Vec<PluginView>, RegistryError> {
        let versions = self.0.store.plugin_versions().await?;
        let bindings = self.0.store.plugin_bindings().await?;
        // One snapshot of every binding's calls, taken once for all versions.
        let serving = self.binding_metrics();
        let mut out: Vec<PluginView> = Vec::new();
        for row in versions {
            let manifest = parse_manifest(&row.manifest)?;
            let stats = serving
                .iter()
                .filter(|b| b.plugin == row.name && b.version == row.version)
                .map(|b| CallStats::new(&b.scope, &b.metrics))
                .collect();
            let view = VersionView::new(&row, &manifest, None, stats);
            match out.iter_mut().find(|p| p.name == row.name) {
                Some(p) => p.versions.push(view),
                None => out.push(PluginView {
                    name: row.name.clone(),
                    world: row.world.clone(),
                    versions: vec![view],
                    bindings: Vec::new(),
                }),
            }
        }
        let routers = self.routers();
        for (d, row) in self.unstored_defaults(&bindings) {
            if let Some(p) = out.iter_mut().find(|p| p.name == d.plugin) {
                let mut view = BindingView::new(&row, None);
                view.default = true;
                p.bindings.push(view);
            }
        }
        for b in bindings {
            if let Some(p) = out.iter_mut().find(|p| p.name == b.plugin) {
                let error = routers
                    .get(&b.scope)
                    .filter(|_| b.world == World::Router.name())
                    .and_then(|s| s.as_ref().err().map(|(_, e)| e.clone()));
                p.bindings.push(BindingView::new(&b, error));
            }
        }
        Ok(out)
    }

    /// One plugin, with what its component imports and exports per version.
    pub async fn show(&self, name: &str) -> Result<PluginView, RegistryError> {
        let mut plugin = self
            .list()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| {
                RegistryError::NotFound(format!("no plugin named {name:?} is installed"))
            })?;
        for v in &mut plugin.versions {
            let bytes = self
                .0
                .store
                .plugin_component(name, &v.version)
                .await?
                .unwrap_or_default();
            let runtime = self.0.runtime.clone();
            // A cache hit: the component was compiled when it was installed.
            let compiled = tokio::task::spawn_blocking(move || runtime.compile(&bytes))
                .await
                .ok()
                .and_then(Result::ok);
            if let Some(c) = compiled {
                v.imports = c.info.interfaces.imports.clone();
                v.exports = c.info.interfaces.exports.clone();
            }
        }
        Ok(plugin)
    }

    /// Make `name@version` serve `scope` (default: the world's default scope). The
    /// version is loaded with the settings (or the binding's current ones) before the
    /// binding changes; new calls use it at once, calls in flight finish on the old one.
    pub async fn activate(
        &self,
        name: &str,
        version: &str,
        scope: Option<&str>,
        settings: Option<Settings>,
    ) -> Result<BindingView, RegistryError> {
        let _change = self.0.changes.lock().await;
        let row = self
            .0
            .store
            .plugin_version(name, version)
            .await?
            .ok_or_else(|| RegistryError::NotFound(format!("{name}@{version} is not installed")))?;
        let manifest = parse_manifest(&row.manifest)?;
        let scope = match scope {
            Some(s) => s.to_string(),
            None => default_scope(&manifest)?,
        };
        let world = manifest.world.name();
        let current = self
            .0
            .store
            .plugin_bindings()
            .await?
            .into_iter()
            .find(|b| b.world == world && b.scope == scope);
        let effective = match &settings {
            Some(s) => s.clone(),
            None => match &current {
                Some(b) => decode_settings(&b.settings)?,
                None => self
                    .default_for(world, &scope)
                    .map(|(d, _)| d.settings.clone())
                    .unwrap_or_default(),
            },
        };
        // Stored with the binding, so that it keeps serving as activated.
        let settings = Some(effective.clone());
        let loaded = self.load(&manifest, &effective).await?;
        let settings_json = settings
            .as_ref()
            .map(|s| serde_json::to_string(s).unwrap_or_else(|_| "{}".into()));
        let binding = self
            .0
            .store
            .bind_plugin(world, &scope, name, version, settings_json.as_deref())
            .await?;
        self.swap_in(binding.clone(), loaded, &effective);
        tracing::info!(plugin = name, version, world, scope = %scope, "plugin activated");
        Ok(BindingView::new(&binding, None))
    }

    /// Put back what served `scope` before the last activation of plugin `name`.
    pub async fn rollback(
        &self,
        name: &str,
        scope: Option<&str>,
    ) -> Result<BindingView, RegistryError> {
        let _change = self.0.changes.lock().await;
        let bindings = self.0.store.plugin_bindings().await?;
        let mine: Vec<&BindingRow> = bindings
            .iter()
            .filter(|b| b.plugin == name && scope.is_none_or(|s| s == b.scope))
            .collect();
        let binding = match mine.as_slice() {
            [] => {
                return Err(RegistryError::NotFound(format!(
                    "plugin {name:?} is not bound{}",
                    scope
                        .map(|s| format!(" to scope {s:?}"))
                        .unwrap_or_default()
                )));
            }
            [one] => *one,
            _ => {
                return Err(RegistryError::Invalid(format!(
                    "plugin {name:?} is bound to several scopes; say which one to roll back"
                )));
            }
        };
        let Some((prev_plugin, prev_version)) = binding.previous.clone() else {
            return Err(RegistryError::Conflict(format!(
                "{}@{} has nothing to roll back to in scope {:?}",
                binding.plugin, binding.version, binding.scope
            )));
        };
        let prev = self
            .0
            .store
            .plugin_version(&prev_plugin, &prev_version)
            .await?
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "{prev_plugin}@{prev_version} is no longer installed"
                ))
            })?;
        let manifest = parse_manifest(&prev.manifest)?;
        let settings = decode_settings(&binding.settings)?;
        let loaded = self.load(&manifest, &settings).await?;
        let rolled = self
            .0
            .store
            .rollback_binding(&binding.world, &binding.scope)
            .await?
            .ok_or_else(|| RegistryError::Conflict("the binding changed meanwhile".into()))?;
        self.swap_in(rolled.clone(), loaded, &settings);
        tracing::info!(plugin = %rolled.plugin, version = %rolled.version, scope = %rolled.scope, "plugin rolled back");
        Ok(BindingView::new(&rolled, None))
    }

    /// Delete a version that serves nowhere.
    pub async fn delete(&self, name: &str, version: &str) -> Result<(), RegistryError> {
        let _change = self.0.changes.lock().await;
        match self.0.store.delete_plugin_version(name, version).await? {
            Deleted::Deleted => {
                tracing::info!(plugin = name, version, "plugin version deleted");
                Ok(())
            }
            Deleted::NotFound => Err(RegistryError::NotFound(format!(
                "{name}@{version} is not installed"
            ))),
            Deleted::InUse(users) => Err(RegistryError::Conflict(format!(
                "{name}@{version} is active in {}; activate another version there first",
                users
                    .iter()
                    .map(|(w, s)| if s.is_empty() {
                        w.clone()
                    } else {
                        format!("{w} scope {s:?}")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Load a version for serving: compile (or a cache hit) and link with the binding's
    /// settings.
    async fn load(
        &self,
        manifest: &Manifest,
        settings: &Settings,
    ) -> Result<Loaded, RegistryError> {
        let bytes = self
            .0
            .store
            .plugin_component(&manifest.name, &manifest.version)
            .await?
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "{}@{} is not installed",
                    manifest.name, manifest.version
                ))
            })?;
        let runtime = self.0.runtime.clone();
        let manifest = manifest.clone();
        let config = settings.plugin_config();
        let hosts = settings.allow_hosts.clone();
        let buckets = settings.buckets.clone();
        let object_store = self.0.object_store.clone();
        tokio::task::spawn_blocking(move || {
            let compiled = runtime.compile(&bytes)?;
            Ok(match manifest.world {
                World::Router => Loaded::Router(runtime.link_router(manifest, compiled, config)?),
                World::Notifier => {
                    Loaded::Notifier(runtime.link_notifier(manifest, compiled, config, hosts)?)
                }
                World::Filer => Loaded::Filer(runtime.link_filer(
                    manifest,
                    compiled,
                    config,
                    hosts,
                    object_store,
                    buckets,
                )?),
                World::EngineAdapter => {
                    Loaded::Engine(runtime.link_engine(manifest, compiled, config, hosts)?)
                }
            })
        })
        .await
        .map_err(|e| RegistryError::Invalid(format!("loading the plugin failed: {e}")))?
    }

    fn swap_in(&self, binding: BindingRow, loaded: Loaded, settings: &Settings) {
        match loaded {
            Loaded::Router(plugin) => {
                let generation = self.0.generation.fetch_add(1, Ordering::Relaxed);
                let active = Arc::new(ActiveRouter {
                    binding,
                    plugin,
                    generation,
                });
                rebind(&self.0.routers, active.binding.scope.clone(), Ok(active));
            }
            Loaded::Notifier(plugin) => {
                let active = Arc::new(ActiveNotifier {
                    binding,
                    plugin,
                    filter: settings.filter.clone(),
                });
                rebind(&self.0.notifiers, active.binding.scope.clone(), active);
            }
            Loaded::Filer(plugin) => {
                let scheme = binding.scope.to_ascii_lowercase();
                let active = Arc::new(ActiveFiler { binding, plugin });
                rebind(&self.0.filers, scheme, active);
            }
            Loaded::Engine(plugin) => {
                let active = Arc::new(ActiveEngine { binding, plugin });
                rebind(&self.0.engines, active.binding.scope.clone(), active);
            }
        }
    }

    /// The default binding of `world`'s `scope`, with its version, if there is one.
    fn default_for(&self, world: &str, scope: &str) -> Option<&(DefaultBinding, String)> {
        self.0
            .defaults
            .iter()
            .find(|(d, _)| d.world.name() == world && d.scope == scope)
    }

    /// The default bindings whose scope has no stored binding (these serve), as rows.
    fn unstored_defaults(&self, stored: &[BindingRow]) -> Vec<(&DefaultBinding, BindingRow)> {
        self.0
            .defaults
            .iter()
            .filter(|(d, _)| {
                !stored
                    .iter()
                    .any(|b| b.world == d.world.name() && b.scope == d.scope)
            })
            .map(|(d, version)| {
                let row = BindingRow {
                    world: d.world.name().to_string(),
                    scope: d.scope.clone(),
                    plugin: d.plugin.to_string(),
                    version: version.clone(),
                    previous: None,
                    settings: serde_json::to_string(&d.settings).unwrap_or_else(|_| "{}".into()),
                    updated_at: String::new(),
                };
                (d, row)
            })
            .collect()
    }

    fn engines(&self) -> Arc<BTreeMap<String, Arc<ActiveEngine>>> {
        snapshot(&self.0.engines)
    }

    /// The adapter bound to workflow engine `name` (e.g. "airflow"), if any. Its calls
    /// block: make them from a blocking context.
    pub fn engine(&self, name: &str) -> Option<EnginePlugin> {
        self.engines().get(name).map(|a| a.plugin.clone())
    }

    fn filers(&self) -> Arc<BTreeMap<String, Arc<ActiveFiler>>> {
        snapshot(&self.0.filers)
    }

    fn filer_for(&self, url: &str) -> Result<Arc<ActiveFiler>, String> {
        let scheme = tessera_core::staging::scheme_of(url)
            .ok_or_else(|| format!("{url:?} has no URL scheme"))?;
        self.filers()
            .get(&scheme)
            .cloned()
            .ok_or_else(|| format!("no filer plugin serves {scheme}:// URLs"))
    }

    pub(crate) fn notifiers(&self) -> Arc<BTreeMap<String, Arc<ActiveNotifier>>> {
        snapshot(&self.0.notifiers)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.0.store
    }

    /// Load every binding from the store (at start).
    async fn reload(&self) -> Result<(), RegistryError> {
        let mut next: HashMap<String, Slot> = HashMap::new();
        let stored = self.0.store.plugin_bindings().await?;
        for (d, row) in self.unstored_defaults(&stored) {
            // Only worlds whose bindings load one by one (not routers) have defaults.
            if d.world != World::Router {
                tracing::info!(plugin = %row.plugin, version = %row.version, world = %row.world, scope = %row.scope, "loading a default binding");
                self.reload_binding(&row).await;
            }
        }
        for b in stored {
            if b.world == World::Notifier.name()
                || b.world == World::Filer.name()
                || b.world == World::EngineAdapter.name()
            {
                self.reload_binding(&b).await;
                continue;
            }
            if b.world != World::Router.name() {
                continue;
            }
            let loaded = async {
                let row = self
                    .0
                    .store
                    .plugin_version(&b.plugin, &b.version)
                    .await?
                    .ok_or_else(|| {
                        RegistryError::NotFound("the version is not installed".into())
                    })?;
                let manifest = parse_manifest(&row.manifest)?;
                self.load(&manifest, &decode_settings(&b.settings)?).await
            }
            .await;
            let slot = match loaded {
                Ok(Loaded::Router(plugin)) => Ok(Arc::new(ActiveRouter {
                    binding: b.clone(),
                    plugin,
                    generation: self.0.generation.fetch_add(1, Ordering::Relaxed),
                })),
                Ok(_) => Err((b.clone(), "not a router".to_string())),
                Err(e) => {
                    tracing::error!(plugin = %b.plugin, version = %b.version, scope = %b.scope, error = %e, "a bound router does not load; its tasks stay queued");
                    Err((
                        b.clone(),
                        format!("{}@{} does not load: {e}", b.plugin, b.version),
                    ))
                }
            };
            next.insert(b.scope.clone(), slot);
        }
        if let Ok(mut routers) = self.0.routers.write() {
            *routers = Arc::new(next);
        }
        Ok(())
    }

    /// Load a notifier, filer or engine-adapter binding at start (a failure is logged; the binding
    /// stays in the store and serves once it loads).
    async fn reload_binding(&self, b: &BindingRow) {
        let loaded = async {
            let row = self
                .0
                .store
                .plugin_version(&b.plugin, &b.version)
                .await?
                .ok_or_else(|| RegistryError::NotFound("the version is not installed".into()))?;
            let manifest = parse_manifest(&row.manifest)?;
            let settings = decode_settings(&b.settings)?;
            let loaded = self.load(&manifest, &settings).await?;
            Ok::<_, RegistryError>((loaded, settings))
        }
        .await;
        match loaded {
            Ok((loaded, settings)) => self.swap_in(b.clone(), loaded, &settings),
            Err(e) => {
                tracing::error!(plugin = %b.plugin, version = %b.version, scope = %b.scope, error = %e, "a bound plugin does not load")
            }
        }
    }

    fn routers(&self) -> Arc<HashMap<String, Slot>> {
        snapshot(&self.0.routers)
    }

    /// The calls of every binding that serves now (for `/metrics`): which world, scope
    /// and version, and its counters and latency since it was loaded.
    pub fn binding_metrics(&self) -> Vec<BindingMetrics> {
        let entry =
            |world: World, b: &BindingRow, m: &tessera_plugins::PluginMetrics| BindingMetrics {
                world: world.name(),
                scope: b.scope.clone(),
                plugin: b.plugin.clone(),
                version: b.version.clone(),
                metrics: m.snapshot(),
            };
        let mut all: Vec<BindingMetrics> = self
            .routers()
            .values()
            .filter_map(|s| s.as_ref().ok())
            .map(|a| entry(World::Router, &a.binding, a.plugin.metrics()))
            .collect();
        all.extend(
            self.notifiers()
                .values()
                .map(|a| entry(World::Notifier, &a.binding, a.plugin.metrics())),
        );
        all.extend(
            self.filers()
                .values()
                .map(|a| entry(World::Filer, &a.binding, a.plugin.metrics())),
        );
        all.extend(
            self.engines()
                .values()
                .map(|a| entry(World::EngineAdapter, &a.binding, a.plugin.metrics())),
        );
        all
    }
}

impl tessera_core::staging::Filers for Registry {
    fn schemes(&self) -> Vec<String> {
        self.filers().keys().cloned().collect()
    }

    fn stage_in(
        &self,
        task_id: &str,
        fs_root: &std::path::Path,
        url: &str,
        path: &str,
        directory: bool,
    ) -> Result<Vec<tessera_core::staging::StagedFile>, String> {
        let filer = self.filer_for(url)?;
        let ws = FilerWorkspace::new()
            .with_task(task_id)
            .mount("/", fs_root)
            .map_err(|e| e.to_string())?;
        let kind = if directory {
            FileKind::Directory
        } else {
            FileKind::File
        };
        staged(&filer, filer.plugin.stage_in(&ws, url, path, kind))
    }

    fn stage_out(
        &self,
        task_id: &str,
        fs_root: &std::path::Path,
        path: &str,
        url: &str,
        directory: bool,
    ) -> Result<Vec<tessera_core::staging::StagedFile>, String> {
        let filer = self.filer_for(url)?;
        let ws = FilerWorkspace::new()
            .with_task(task_id)
            .mount("/", fs_root)
            .map_err(|e| e.to_string())?;
        let kind = if directory {
            FileKind::Directory
        } else {
            FileKind::File
        };
        staged(&filer, filer.plugin.stage_out(&ws, path, url, kind))
    }
}

fn staged(
    filer: &ActiveFiler,
    result: Result<Vec<tessera_plugins::StagedFile>, CallError>,
) -> Result<Vec<tessera_core::staging::StagedFile>, String> {
    result
        .map(|files| {
            files
                .into_iter()
                .map(|f| tessera_core::staging::StagedFile {
                    url: f.url,
                    path: f.path,
                    size: f.size,
                })
                .collect()
        })
        .map_err(|e| {
            format!(
                "filer {}@{} failed: {}",
                filer.binding.plugin, filer.binding.version, e
            )
        })
}

impl Router for Registry {
    fn route(&self, group: &str, request: &RouteRequest) -> Result<Vec<Decision>, RouteError> {
        let routers = self.routers();
        let slot = routers.get(group).or_else(|| routers.get("")).ok_or_else(|| RouteError {
            router: String::new(),
            message: "no router plugin is active; activate one with `tessera plugin activate NAME VERSION`".into(),
        })?;
        let active = match slot {
            Ok(a) => a,
            Err((b, why)) => {
                return Err(RouteError {
                    router: format!("{}@{}", b.plugin, b.version),
                    message: why.clone(),
                });
            }
        };
        let label = format!("{}@{}", active.binding.plugin, active.binding.version);
        // Take this group's warm instance if it belongs to this activation (a call in
        // flight elsewhere keeps its own; the one left behind is rebuilt).
        let taken = self
            .0
            .warm
            .lock()
            .ok()
            .and_then(|mut w| w.remove(group))
            .filter(|(g, _)| *g == active.generation);
        let mut warm = match taken {
            Some((_, w)) => w,
            None => active.plugin.warm(),
        };
        let answer = warm.route(&to_plugin(request));
        if let Ok(mut w) = self.0.warm.lock() {
            // Keep it unless a newer activation came meanwhile.
            let now = self.routers();
            let current = now
                .get(group)
                .or_else(|| now.get(""))
                .and_then(|s| s.as_ref().ok().map(|a| a.generation));
            if current == Some(active.generation) {
                w.insert(group.to_string(), (active.generation, warm));
            }
        }
        match answer {
            Ok(decisions) => Ok(decisions.into_iter().map(from_plugin).collect()),
            Err(e) => Err(RouteError {
                router: label,
                message: call_error_text(&e),
            }),
        }
    }
}

/// The current copy of a binding table: calls work on one consistent snapshot while
/// changes replace the table whole.
fn snapshot<M: Default>(table: &RwLock<Arc<M>>) -> Arc<M> {
    table.read().map(|t| t.clone()).unwrap_or_default()
}

/// Replaces a binding table with a copy in which `key` is bound to `value` (calls in
/// flight keep the copy they took).
fn rebind<M: Clone + Extend<(String, V)>, V>(table: &RwLock<Arc<M>>, key: String, value: V) {
    if let Ok(mut t) = table.write() {
        let mut next = (**t).clone();
        next.extend([(key, value)]);
        *t = Arc::new(next);
    }
}

fn call_error_text(e: &CallError) -> String {
    e.to_string()
}

fn to_plugin(r: &RouteRequest) -> tessera_plugins::RouteRequest {
    tessera_plugins::RouteRequest {
        labels: r
            .labels
            .iter()
            .map(|l| match l {
                routing::Label::Tag(k, v) => tessera_plugins::Label::Tag((k.clone(), v.clone())),
                routing::Label::Group(g) => tessera_plugins::Label::Group(g.clone()),
            })
            .collect(),
        tasks: r
            .tasks
            .iter()
            .map(|t| tessera_plugins::RouteTask {
                needs: t.needs,
                priority: t.priority,
                cpu_cores: t.cpu_cores,
                ram_bytes: t.ram_bytes,
                queued_at_ms: t.queued_at_ms,
            })
            .collect(),
        targets: r
            .targets
            .iter()
            .map(|t| tessera_plugins::RouteTarget {
                holds: t.holds,
                free_slots: t.free_slots,
                cpu_cores_free: t.cpu_cores_free,
                ram_bytes_free: t.ram_bytes_free,
            })
            .collect(),
    }
}

fn from_plugin(d: tessera_plugins::Decision) -> Decision {
    match d {
        tessera_plugins::Decision::Assign(i) => Decision::Assign(i),
        tessera_plugins::Decision::Defer(why) => Decision::Defer(why),
    }
}

/// The scope a binding gets when none is given: every group for routers, the plugin's
/// name for notifiers. Filers and engine adapters must say which scheme or engine.
fn default_scope(manifest: &Manifest) -> Result<String, RegistryError> {
    match manifest.world {
        World::Router => Ok(String::new()),
        World::Notifier => Ok(manifest.name.clone()),
        World::Filer => Err(RegistryError::Invalid(
            "say which URL scheme this filer serves (scope, e.g. \"s3\")".into(),
        )),
        World::EngineAdapter => Err(RegistryError::Invalid(
            "say which engine this adapter serves (scope, e.g. \"airflow\")".into(),
        )),
    }
}

fn decode_settings(json: &str) -> Result<Settings, RegistryError> {
    serde_json::from_str(json)
        .map_err(|e| RegistryError::Invalid(format!("stored binding settings do not decode: {e}")))
}

fn version_row(
    manifest: &Manifest,
    compiled: &CompiledComponent,
    origin: &str,
) -> Result<PluginVersionRow, RegistryError> {
    Ok(PluginVersionRow {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        world: manifest.world.name().to_string(),
        manifest: serde_json::to_string(manifest)
            .map_err(|e| RegistryError::Invalid(format!("manifest: {e}")))?,
        sha256: compiled.info.sha256.clone(),
        size_bytes: i64::try_from(compiled.info.size).unwrap_or(i64::MAX),
        origin: origin.to_string(),
        installed_at: now_rfc3339(),
    })
}
