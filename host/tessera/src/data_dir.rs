//! The data directory: the store (plugin secrets), the API token, the compile-cache key,
//! the embedded object store and the tasks' workspaces. It and the files in it that hold
//! secrets are private to the server's user whatever the umask, and no directory that
//! tasks may read or write through `file://` URLs may overlap it.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Make the data directory (mode 0700; an existing one is tightened to it) and return
/// its canonical path.
pub fn prepare(dir: &Path) -> Result<PathBuf, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating data directory {}: {e}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mode = std::fs::metadata(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::info!(data_dir = %dir.display(), mode = format!("{:o}", mode & 0o777), "making the data directory private (0700)");
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (it belongs to another user: name a directory inside it, which the server makes as its own)"
        } else {
            ""
        };
        format!("making {} private: {e}{hint}", dir.display())
    })?;
    Ok(dir)
}

/// Write `contents` to a new file readable by its owner only (0600, whatever the umask).
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    keep_private(path)?;
    f.write_all(contents)
        .map_err(|e| format!("writing {}: {e}", path.display()))
}

/// Tighten an existing file to 0600.
pub fn keep_private(path: &Path) -> Result<(), String> {
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Ok(()) => Ok(()),
        // A key on a read-only mount (or not ours) that its group may only read (a
        // Kubernetes Secret given to the pod's fsGroup) is as private as it can be there.
        Err(e)
            if mode & 0o037 == 0
                && matches!(
                    e.kind(),
                    std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
                ) =>
        {
            tracing::info!(path = %path.display(), mode = format!("{mode:o}"), error = %e, "kept a group-readable key as it is");
            Ok(())
        }
        Err(e) => Err(format!("making {} private: {e}", path.display())),
    }
}

/// Refuse allowed directories that overlap the data directory or the task workspaces, or
/// hold the database: a task could otherwise stage the store, the API token or other
/// tasks' files out with a `file://` input, or overwrite them with an output.
pub fn check_allowed_dirs(
    data_dir: &Path,
    work_dir: &Path,
    database: Option<&Path>,
    allowed: &[PathBuf],
) -> Result<(), String> {
    let guarded = [
        (
            data_dir,
            "the data directory",
            "the server's database and API token",
        ),
        (work_dir, "the task workspaces in", "other tasks' files"),
    ];
    for root in allowed {
        for (dir, what, holds) in guarded {
            if root.starts_with(dir) || dir.starts_with(root) {
                return Err(format!(
                    "the allowed directory {} overlaps {what} {}: tasks could read or \
                     overwrite {holds} through file:// URLs; allow a directory outside it",
                    root.display(),
                    dir.display()
                ));
            }
        }
        if let Some(db) = database.filter(|db| db.starts_with(root)) {
            return Err(format!(
                "the allowed directory {} holds the database {}: tasks could read or overwrite \
                 it through file:// URLs; allow a directory that does not",
                root.display(),
                db.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_readable_by_others_is_made_private() {
        let dir = std::env::temp_dir().join(format!("tessera-keep-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        keep_private(&key).unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(keep_private(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn allowed_directories_stay_clear_of_the_data_and_the_database() {
        let data = Path::new("/srv/tessera");
        let ok = [
            PathBuf::from("/srv/inputs"),
            PathBuf::from("/srv/tessera-x"),
        ];
        let work = Path::new("/srv/tessera/work");
        assert!(check_allowed_dirs(data, work, None, &ok).is_ok());
        for bad in ["/srv", "/", "/srv/tessera", "/srv/tessera/work"] {
            let err = check_allowed_dirs(data, work, None, &[PathBuf::from(bad)]).unwrap_err();
            assert!(err.contains("overlaps the data directory"), "{bad}: {err}");
        }
        // Workspaces shared by several servers, outside the data directory.
        let shared = Path::new("/shared/work");
        for bad in ["/shared", "/shared/work/t1"] {
            let err = check_allowed_dirs(data, shared, None, &[PathBuf::from(bad)]).unwrap_err();
            assert!(err.contains("overlaps the task workspaces"), "{bad}: {err}");
        }
        assert!(check_allowed_dirs(data, shared, None, &[PathBuf::from("/shared/in")]).is_ok());
        let db = Path::new("/var/db/tessera.db");
        let err = check_allowed_dirs(data, work, Some(db), &[PathBuf::from("/var")]).unwrap_err();
        assert!(err.contains("holds the database"), "{err}");
        assert!(check_allowed_dirs(data, work, Some(db), &[PathBuf::from("/var/x")]).is_ok());
    }
}
