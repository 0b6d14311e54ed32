//! The tokens `tessera login` keeps: `$XDG_CONFIG_HOME/tessera/credentials.json` (or
//! `~/.config/tessera/…`), one entry per server URL, the file readable by its owner only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A token kept for one server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credential {
    pub token: String,
    /// Who it is (as the server said at login).
    pub username: String,
    /// RFC 3339, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

type File = BTreeMap<String, Credential>;

/// The credentials file's path; `None` without a home or a config directory.
pub fn path() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(config.join("tessera").join("credentials.json"))
}

fn read() -> File {
    path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn write(file: &File) -> Result<PathBuf, String> {
    let path = path().ok_or("neither XDG_CONFIG_HOME nor HOME is set")?;
    if let Some(dir) = path.parent() {
        // Private like a data directory: 0700, an existing one tightened.
        crate::data_dir::prepare(dir)?;
    }
    let text = serde_json::to_vec_pretty(file).map_err(|e| e.to_string())?;
    // Written beside and renamed, so a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    crate::data_dir::write_private(&tmp, &text)?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(path)
}

/// The token kept for `server`.
pub fn load(server: &str) -> Option<Credential> {
    read().remove(server)
}

/// Keep `cred` for `server`; where it was written.
pub fn save(server: &str, cred: Credential) -> Result<PathBuf, String> {
    let mut file = read();
    file.insert(server.to_string(), cred);
    write(&file)
}

/// Forget the token for `server`; whether there was one.
pub fn remove(server: &str) -> Result<bool, String> {
    let mut file = read();
    let had = file.remove(server).is_some();
    if had {
        write(&file)?;
    }
    Ok(had)
}
