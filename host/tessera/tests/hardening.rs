//! The host ready to face a network: what it keeps at rest is private, and what tasks may
//! reach through `file://` URLs never includes the server's own files.

mod common;

use common::*;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_data_directory_and_its_secrets_are_private_whatever_the_umask() {
    // With umask 0, anything not made private on purpose would be world-readable.
    let s = Server::start(Options {
        executor: "none",
        umask: Some(0),
        ..Options::default()
    })
    .await;
    assert_eq!(mode(&s.data_dir), 0o700, "the data directory");
    for secret in ["tessera.db", "api-token", "plugin-cache/cache-key"] {
        assert_eq!(mode(&s.data_dir.join(secret)), 0o600, "{secret}");
    }
    for side in ["tessera.db-wal", "tessera.db-shm"] {
        let path = s.data_dir.join(side);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{side}");
        }
    }
    assert_eq!(mode(&s.data_dir.join("plugin-cache")), 0o700);
}

#[test]
fn an_allowed_directory_overlapping_the_data_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let work = data.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // A parent of the data directory, and a directory inside it.
    for allowed in [tmp.path(), work.as_path()] {
        let err = serve_refused(&[
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--allow-dir"),
            allowed.as_os_str(),
        ]);
        assert!(err.contains("overlaps the data directory"), "{err}");
    }
    // A database elsewhere, inside an allowed directory.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let url = format!("sqlite://{}/t.db", elsewhere.display());
    let err = serve_refused(&[
        OsStr::new("--data-dir"),
        data.as_os_str(),
        OsStr::new("--database-url"),
        OsStr::new(&url),
        OsStr::new("--allow-dir"),
        elsewhere.as_os_str(),
    ]);
    assert!(err.contains("holds the database"), "{err}");
}
