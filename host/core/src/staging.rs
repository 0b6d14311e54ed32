//! The seam between the runner's staging and the filer plugins: URLs whose scheme has a
//! filer bound are staged by that plugin, into and out of the task's workspace.

use std::path::Path;

/// One file a filer staged, for the task's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    pub url: String,
    /// Container path.
    pub path: String,
    pub size: u64,
}

/// Why a filer could not stage a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilerError {
    /// The URL has no scheme, or no filer is bound to it.
    #[error("no filer plugin serves {0}")]
    NoFiler(String),
    /// The workspace given to the filer is not usable.
    #[error("the task's workspace: {0}")]
    Workspace(String),
    /// The bound filer failed (`filer` is `name@version`).
    #[error("filer {filer} failed: {message}")]
    Failed { filer: String, message: String },
}

/// The bound filers, as the runner sees them.
pub trait Filers: Send + Sync {
    /// Lower-case URL schemes that have a filer bound now.
    fn schemes(&self) -> Vec<String>;

    /// Stage `url` into the task's workspace at container path `path`. `fs_root` is the
    /// host directory behind the container's `/`. Blocking: call off the async threads.
    fn stage_in(
        &self,
        task_id: &str,
        fs_root: &Path,
        url: &str,
        path: &str,
        directory: bool,
    ) -> Result<Vec<StagedFile>, FilerError>;

    /// Stage container path `path` of the task's workspace out to `url`. Blocking.
    fn stage_out(
        &self,
        task_id: &str,
        fs_root: &Path,
        path: &str,
        url: &str,
        directory: bool,
    ) -> Result<Vec<StagedFile>, FilerError>;

    /// The filers of `schemes` as a document another process (a Kubernetes pod's
    /// `tessera stage`) loads the same plugins from, with their settings (secrets
    /// included: keep it secret). Refused for a filer that process cannot load.
    fn portable(&self, schemes: &[String]) -> Result<String, FilerError> {
        let _ = schemes;
        Err(FilerError::NoFiler(
            "these filers cannot be handed to another process".into(),
        ))
    }
}

/// The scheme of a URL, lower case (`None` without `://`).
pub fn scheme_of(url: &str) -> Option<String> {
    url.split_once("://").map(|(s, _)| s.to_ascii_lowercase())
}
