//! Activating, rolling back and deleting versions, and loading a version for serving:
//! a version is loaded (compiled or from the cache, validated, linked) before the binding
//! changes, then swapped in at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tessera_plugin_runtime::{
    EngineAdapterPlugin, FilerPlugin, Grants, Manifest, NotifierPlugin, RouterPlugin, World,
};
use tessera_store::{BindingRow, Deleted};

use crate::bindings::{
    ActiveEngineAdapter, ActiveFiler, ActiveNotifier, ActiveRouter, default_row, rebind,
};
use crate::install::parse_manifest;
use crate::view::BindingView;
use crate::{Grant, Registry, RegistryError, Settings};

/// A version made ready to serve.
pub(crate) enum Loaded {
    Router(RouterPlugin),
    Notifier(NotifierPlugin),
    Filer(FilerPlugin),
    EngineAdapter(EngineAdapterPlugin),
}

/// The scope a binding gets when none is given: every group for routers, the plugin's
/// name for notifiers. Filers and engine adapters must say which scheme or engine.
pub(crate) fn default_scope(manifest: &Manifest) -> Result<String, RegistryError> {
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

pub(crate) fn decode_settings(json: &str) -> Result<Settings, RegistryError> {
    serde_json::from_str(json)
        .map_err(|e| RegistryError::Invalid(format!("stored binding settings do not decode: {e}")))
}

impl Registry {
    /// Make `name@version` serve `scope` (default: the world's default scope). The
    /// version is loaded with the settings before the binding changes; new calls use it
    /// at once, calls in flight finish on the old one. Without settings, a new version
    /// of the plugin that serves the scope keeps that binding's settings; another plugin
    /// starts with none (grants are never handed from one plugin to another). Settings
    /// given with `*` hosts or buckets need [`Grant::Any`].
    pub async fn activate(
        &self,
        name: &str,
        version: &str,
        scope: Option<&str>,
        settings: Option<Settings>,
        grant: Grant,
    ) -> Result<BindingView, RegistryError> {
        if grant == Grant::Named
            && let Some(what) = settings.as_ref().and_then(Settings::wildcards)
        {
            return Err(RegistryError::Invalid(format!(
                "these settings let the plugin reach {what}; grant that explicitly \
                 (`tessera plugin activate … --grant-any`, API: \"grant_any\": true) or name \
                 the hosts and buckets"
            )));
        }
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
        let world = manifest.world;
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
                Some(b) if b.plugin == name => decode_settings(&b.settings)?,
                Some(_) => Settings::default(),
                None => self
                    .default_for(world, &scope)
                    .filter(|(d, _)| d.plugin == name)
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
        tracing::info!(plugin = name, version, world = %world, scope = %scope, "plugin activated");
        Ok(BindingView::new(&binding, None))
    }

    /// Put back what served `scope` before the last activation of plugin `name`: the
    /// version before it, or, where the first activation replaced a default binding,
    /// that default (the stored binding goes).
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
            return self.restore_default(binding).await;
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
        let settings = decode_settings(&binding.rollback_settings())?;
        let loaded = self.load(&manifest, &settings).await?;
        let rolled = self
            .0
            .store
            .rollback_binding(binding.world, &binding.scope)
            .await?
            .ok_or_else(|| RegistryError::Conflict("the binding changed meanwhile".into()))?;
        self.swap_in(rolled.clone(), loaded, &settings);
        tracing::info!(plugin = %rolled.plugin, version = %rolled.version, scope = %rolled.scope, "plugin rolled back");
        Ok(BindingView::new(&rolled, None))
    }

    /// Remove the stored `binding`, which has no previous version, so that the default
    /// binding of its scope serves again.
    async fn restore_default(&self, binding: &BindingRow) -> Result<BindingView, RegistryError> {
        let Some((default, version)) = self.default_for(binding.world, &binding.scope) else {
            return Err(RegistryError::Conflict(format!(
                "{}@{} has nothing to roll back to in scope {:?}",
                binding.plugin, binding.version, binding.scope
            )));
        };
        let row = default_row(default, version);
        let prev = self
            .0
            .store
            .plugin_version(&row.plugin, &row.version)
            .await?
            .ok_or_else(|| {
                RegistryError::NotFound(format!("{}@{} is not installed", row.plugin, row.version))
            })?;
        let manifest = parse_manifest(&prev.manifest)?;
        let settings = default.settings.clone();
        let loaded = self.load(&manifest, &settings).await?;
        if !self
            .0
            .store
            .unbind_plugin(binding.world, &binding.scope)
            .await?
        {
            return Err(RegistryError::Conflict(
                "the binding changed meanwhile".into(),
            ));
        }
        self.swap_in(row.clone(), loaded, &settings);
        tracing::info!(plugin = %row.plugin, version = %row.version, scope = %row.scope, "plugin rolled back to the default binding");
        let mut view = BindingView::new(&row, None);
        view.default = true;
        Ok(view)
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
                        w.to_string()
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
    pub(crate) async fn load(
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
            let grants = Grants {
                config,
                allowed_hosts: hosts,
                object_store,
                buckets,
            };
            Ok(match manifest.world {
                World::Router => Loaded::Router(runtime.link(manifest, compiled, grants)?),
                World::Notifier => Loaded::Notifier(runtime.link(manifest, compiled, grants)?),
                World::Filer => Loaded::Filer(runtime.link(manifest, compiled, grants)?),
                World::EngineAdapter => {
                    Loaded::EngineAdapter(runtime.link(manifest, compiled, grants)?)
                }
            })
        })
        .await
        .map_err(|e| RegistryError::Invalid(format!("loading the plugin failed: {e}")))?
    }

    pub(crate) fn swap_in(&self, binding: BindingRow, loaded: Loaded, settings: &Settings) {
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
            Loaded::EngineAdapter(plugin) => {
                let active = Arc::new(ActiveEngineAdapter { binding, plugin });
                rebind(
                    &self.0.engine_adapters,
                    active.binding.scope.clone(),
                    active,
                );
            }
        }
    }
}
