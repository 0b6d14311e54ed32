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

/// The data directory on a small disk (a 64 MiB tmpfs; the database elsewhere): a task
/// whose input does not fit ends SYSTEM_ERROR saying so, the server keeps answering, and
/// once that task's workspace is gone the next task runs.
#[tokio::test]
async fn a_full_disk_fails_the_task_that_needs_space_and_nothing_else() {
    let db = tempfile::tempdir().unwrap();
    let s = Server::start(Options {
        small_data_disk: Some(64 << 20),
        database_url: Some(format!(
            "sqlite://{}",
            db.path().join("tessera.db").display()
        )),
        ..Options::default()
    })
    .await;
    let big = s.allowed.join("big.bin");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(96 << 20).unwrap();
    let id = s
        .create(&serde_json::json!({
            "inputs": [{"url": format!("file://{}", big.display()), "path": "/data/big.bin"}],
            "executors": [{"image": BUSYBOX, "command": ["true"]}]
        }))
        .await;
    let t = s.wait_done(&id).await;
    assert_eq!(t["state"], "SYSTEM_ERROR", "{}", short(&t));
    let logs = t["logs"][0]["system_logs"].to_string();
    assert!(logs.contains("No space left on device"), "{logs}");
    // Reads go on.
    let (status, list) = s.get_json(&s.tes("/tasks?view=BASIC")).await;
    assert_eq!(status, 200);
    assert_eq!(list["tasks"][0]["id"], id.as_str());
    // Its workspace (with what did fit of the input) goes after its final state is
    // written; then a task that fits runs.
    assert!(
        s.data_dir.join("work").is_dir(),
        "the workspaces' directory"
    );
    let workspace = s.data_dir.join("work").join(&id);
    let start = std::time::Instant::now();
    while workspace.exists() {
        assert!(
            start.elapsed() < common::DEADLINE,
            "the failed task's workspace stays"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let small = s
        .create(&serde_json::json!({
            "inputs": [{"content": "fits\n", "path": "/data/small.txt"}],
            "executors": [{"image": BUSYBOX, "command": ["cat", "/data/small.txt"]}]
        }))
        .await;
    let t = s.wait_done(&small).await;
    assert_eq!(t["state"], "COMPLETE", "{}", short(&t));
    assert_eq!(t["logs"][0]["logs"][0]["stdout"], "fits\n");
}
