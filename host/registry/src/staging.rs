//! The registry as the runner's filers: a URL is staged by the filer bound to its
//! scheme, in the task's workspace as the filer sees it.

use tessera_core::staging::FilerError;
use tessera_plugin_runtime::{CallError, FileKind, FilerWorkspace};

use crate::Registry;
use crate::activation::decode_settings;
use crate::bindings::ActiveFiler;

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
    ) -> Result<Vec<tessera_core::staging::StagedFile>, FilerError> {
        let filer = self.filer_for(url)?;
        let ws = FilerWorkspace::new()
            .with_task(task_id)
            .mount("/", fs_root)
            .map_err(|e| FilerError::Workspace(e.to_string()))?;
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
    ) -> Result<Vec<tessera_core::staging::StagedFile>, FilerError> {
        let filer = self.filer_for(url)?;
        let ws = FilerWorkspace::new()
            .with_task(task_id)
            .mount("/", fs_root)
            .map_err(|e| FilerError::Workspace(e.to_string()))?;
        let kind = if directory {
            FileKind::Directory
        } else {
            FileKind::File
        };
        staged(&filer, filer.plugin.stage_out(&ws, path, url, kind))
    }

    fn portable(&self, schemes: &[String]) -> Result<String, FilerError> {
        let filers = self.filers();
        let mut out = Vec::new();
        for scheme in schemes {
            let filer = filers
                .get(scheme)
                .ok_or_else(|| FilerError::NoFiler(format!("{scheme}:// URLs")))?;
            let b = &filer.binding;
            if !self
                .0
                .builtin_versions
                .iter()
                .any(|(n, v)| *n == b.plugin && *v == b.version)
            {
                return Err(FilerError::Failed {
                    filer: format!("{}@{}", b.plugin, b.version),
                    message: format!(
                        "it serves {scheme}:// but is not built into the tessera binary, \
                         so a pod cannot load it; only built-in filers stage on Kubernetes"
                    ),
                });
            }
            let settings = decode_settings(&b.settings).map_err(|e| FilerError::Failed {
                filer: format!("{}@{}", b.plugin, b.version),
                message: e.to_string(),
            })?;
            out.push(PortableFiler {
                scheme: scheme.clone(),
                plugin: b.plugin.clone(),
                version: b.version.clone(),
                settings,
            });
        }
        serde_json::to_string(&out).map_err(|e| FilerError::Workspace(e.to_string()))
    }
}

/// A filer binding as another process loads it ([`Filers::portable`]): a built-in plugin
/// and the binding's settings.
///
/// [`Filers::portable`]: tessera_core::staging::Filers::portable
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PortableFiler {
    pub scheme: String,
    pub plugin: String,
    pub version: String,
    pub settings: crate::Settings,
}

impl PortableFiler {
    /// As the binding that serves its scheme where nothing is stored.
    pub fn into_default(self) -> crate::DefaultBinding {
        crate::DefaultBinding {
            world: tessera_plugin_runtime::World::Filer,
            scope: self.scheme,
            plugin: self.plugin,
            settings: self.settings,
        }
    }
}

pub(crate) fn staged(
    filer: &ActiveFiler,
    result: Result<Vec<tessera_plugin_runtime::StagedFile>, CallError>,
) -> Result<Vec<tessera_core::staging::StagedFile>, FilerError> {
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
        .map_err(|e| FilerError::Failed {
            filer: format!("{}@{}", filer.binding.plugin, filer.binding.version),
            message: e.to_string(),
        })
}
