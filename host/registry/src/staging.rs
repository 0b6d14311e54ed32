//! The registry as the runner's filers: a URL is staged by the filer bound to its
//! scheme, in the task's workspace as the filer sees it.

use tessera_core::staging::FilerError;
use tessera_plugin_runtime::{CallError, FileKind, FilerWorkspace};

use crate::Registry;
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
