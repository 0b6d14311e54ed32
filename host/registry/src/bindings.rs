//! What serves where: the binding tables (replaced whole on every change, so a call works
//! on one consistent snapshot), stored bindings and the defaults made from the server's
//! configuration, reloading them at start, and the calls of each binding.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use tessera_core::staging::FilerError;
use tessera_plugin_runtime::{
    EngineAdapterPlugin, FilerPlugin, MetricsSnapshot, NotifierPlugin, RouterPlugin, World,
};
use tessera_store::BindingRow;

use crate::activation::{Loaded, decode_settings};
use crate::install::parse_manifest;
use crate::notify::EventFilter;
use crate::{Registry, RegistryError, Settings};

/// A binding that serves a scope when none is stored for it: made from the server's
/// configuration at every start and never stored, so changing the configuration changes
/// it. Activating a version on the scope stores a binding that takes its place.
#[derive(Debug, Clone)]
pub struct DefaultBinding {
    pub world: World,
    pub scope: String,
    /// A built-in plugin (its version is the built-in's).
    pub plugin: String,
    pub settings: Settings,
}

/// A default binding as the row it would be if it were stored.
pub(crate) fn default_row(d: &DefaultBinding, version: &str) -> BindingRow {
    BindingRow {
        world: d.world,
        scope: d.scope.clone(),
        plugin: d.plugin.clone(),
        version: version.to_string(),
        previous: None,
        previous_settings: None,
        settings: serde_json::to_string(&d.settings).unwrap_or_else(|_| "{}".into()),
        updated_at: String::new(),
    }
}

/// A router bound to a scope, loaded with the binding's settings.
pub(crate) struct ActiveRouter {
    pub(crate) binding: BindingRow,
    pub(crate) plugin: RouterPlugin,
    /// Distinguishes this activation from every other (warm instances are per activation).
    pub(crate) generation: u64,
}

/// A bound scope: loaded, or why it could not be.
pub(crate) type Slot = Result<Arc<ActiveRouter>, (BindingRow, String)>;

/// A notifier bound to a scope.
pub(crate) struct ActiveNotifier {
    pub(crate) binding: BindingRow,
    pub(crate) plugin: NotifierPlugin,
    pub(crate) filter: Option<EventFilter>,
}

/// A filer bound to a URL scheme.
pub(crate) struct ActiveFiler {
    pub(crate) binding: BindingRow,
    pub(crate) plugin: FilerPlugin,
}

/// An engine adapter bound to an engine name.
pub(crate) struct ActiveEngineAdapter {
    pub(crate) binding: BindingRow,
    pub(crate) plugin: EngineAdapterPlugin,
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

/// The current copy of a binding table: calls work on one consistent snapshot while
/// changes replace the table whole.
pub(crate) fn snapshot<M: Default>(table: &RwLock<Arc<M>>) -> Arc<M> {
    table.read().map(|t| t.clone()).unwrap_or_default()
}

/// Replaces a binding table with a copy in which `key` is bound to `value` (calls in
/// flight keep the copy they took).
pub(crate) fn rebind<M: Clone + Extend<(String, V)>, V>(
    table: &RwLock<Arc<M>>,
    key: String,
    value: V,
) {
    if let Ok(mut t) = table.write() {
        let mut next = (**t).clone();
        next.extend([(key, value)]);
        *t = Arc::new(next);
    }
}

impl Registry {
    /// The default binding of `world`'s `scope`, with its version, if there is one.
    pub(crate) fn default_for(
        &self,
        world: World,
        scope: &str,
    ) -> Option<&(DefaultBinding, String)> {
        self.0
            .defaults
            .iter()
            .find(|(d, _)| d.world == world && d.scope == scope)
    }

    /// The default bindings whose scope has no stored binding (these serve), as rows.
    pub(crate) fn unstored_defaults(
        &self,
        stored: &[BindingRow],
    ) -> Vec<(&DefaultBinding, BindingRow)> {
        self.0
            .defaults
            .iter()
            .filter(|(d, _)| {
                !stored
                    .iter()
                    .any(|b| b.world == d.world && b.scope == d.scope)
            })
            .map(|(d, version)| (d, default_row(d, version)))
            .collect()
    }

    pub(crate) fn engine_adapters(&self) -> Arc<BTreeMap<String, Arc<ActiveEngineAdapter>>> {
        snapshot(&self.0.engine_adapters)
    }

    /// The adapter bound to workflow engine `engine` (e.g. "airflow"), if any. Its calls
    /// block: make them from a blocking context.
    pub fn engine_adapter(&self, engine: &str) -> Option<EngineAdapterPlugin> {
        self.engine_adapters().get(engine).map(|a| a.plugin.clone())
    }

    pub(crate) fn filers(&self) -> Arc<BTreeMap<String, Arc<ActiveFiler>>> {
        snapshot(&self.0.filers)
    }

    pub(crate) fn filer_for(&self, url: &str) -> Result<Arc<ActiveFiler>, FilerError> {
        let scheme = tessera_core::staging::scheme_of(url)
            .ok_or_else(|| FilerError::NoFiler(format!("{url:?} (it has no URL scheme)")))?;
        self.filers()
            .get(&scheme)
            .cloned()
            .ok_or_else(|| FilerError::NoFiler(format!("{scheme}:// URLs")))
    }

    pub(crate) fn notifiers(&self) -> Arc<BTreeMap<String, Arc<ActiveNotifier>>> {
        snapshot(&self.0.notifiers)
    }

    /// Load every binding from the store (at start).
    pub(crate) async fn reload(&self) -> Result<(), RegistryError> {
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
            if b.world == World::Notifier
                || b.world == World::Filer
                || b.world == World::EngineAdapter
            {
                self.reload_binding(&b).await;
                continue;
            }
            if b.world != World::Router {
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
    pub(crate) async fn reload_binding(&self, b: &BindingRow) {
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

    pub(crate) fn routers(&self) -> Arc<HashMap<String, Slot>> {
        snapshot(&self.0.routers)
    }

    /// The calls of every binding that serves now (for `/metrics`): which world, scope
    /// and version, and its counters and latency since it was loaded.
    pub fn binding_metrics(&self) -> Vec<BindingMetrics> {
        let entry = |world: World, b: &BindingRow, m: &tessera_plugin_runtime::PluginMetrics| {
            BindingMetrics {
                world: world.name(),
                scope: b.scope.clone(),
                plugin: b.plugin.clone(),
                version: b.version.clone(),
                metrics: m.snapshot(),
            }
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
            self.engine_adapters()
                .values()
                .map(|a| entry(World::EngineAdapter, &a.binding, a.plugin.metrics())),
        );
        all
    }
}
