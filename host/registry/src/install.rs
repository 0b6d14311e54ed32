//! Installing plugin versions: manifests checked, components compiled and validated
//! against their world, stored with their bytes; and listing what is installed.

use tessera_core::time_fmt::now_rfc3339;
use tessera_plugin_runtime::{CompiledComponent, Grants, Manifest, RouterPlugin, World};
use tessera_store::{Installed, PluginVersionRow};

use crate::activation::default_scope;
use crate::view::{BindingView, CallStats, PluginView, VersionView};
use crate::{Builtin, Registry, RegistryError};

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
pub(crate) fn check_name(what: &str, s: &str) -> Result<(), RegistryError> {
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

pub(crate) fn version_row(
    manifest: &Manifest,
    compiled: &CompiledComponent,
    origin: &str,
) -> Result<PluginVersionRow, RegistryError> {
    Ok(PluginVersionRow {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        world: manifest.world,
        manifest: serde_json::to_string(manifest)
            .map_err(|e| RegistryError::Invalid(format!("manifest: {e}")))?,
        sha256: compiled.info.sha256.clone(),
        size_bytes: i64::try_from(compiled.info.size).unwrap_or(i64::MAX),
        origin: origin.to_string(),
        installed_at: now_rfc3339(),
    })
}

impl Registry {
    pub(crate) async fn install_builtin(&self, b: &Builtin) -> Result<(), RegistryError> {
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
        let world = manifest.world;
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
            tracing::info!(plugin = %manifest.name, version = %manifest.version, world = %world, "bound the built-in plugin");
        }
        Ok(())
    }

    /// Compile and validate `bytes` as the plugin `manifest` describes, off the async
    /// threads. Routers are also linked and started once, so a router that cannot start
    /// is refused here rather than at activation.
    pub(crate) async fn compile_checked(
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
                runtime.link::<RouterPlugin>(manifest, compiled.clone(), Grants::default())?;
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
        if self.0.builtin_names.contains(&manifest.name) {
            // A new "version" of a built-in would clash with the one the binary installs
            // at the next start.
            return Err(RegistryError::Conflict(format!(
                "{:?} is the name of a built-in plugin; upload yours under another name",
                manifest.name
            )));
        }
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
                    world: row.world,
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
                    .filter(|_| b.world == World::Router)
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
}
