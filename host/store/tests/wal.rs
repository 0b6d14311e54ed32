//! SQLite only: inserts run on the store's direct connection, which never checkpoints by
//! itself; the store's background checkpointer keeps the write-ahead log from growing
//! with every insert.

mod support;

use tessera_store::Store;

/// A stream of one-task inserts (each commit adds about ten pages, 40 KB, to the WAL):
/// without checkpoints the WAL would hold them all; with them it is reused from the
/// start after each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_while_inserts_stream_in() {
    const INSERTS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tessera.db");
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let wal = dir.path().join("tessera.db-wal");
    let mut largest = 0;
    for (i, task) in support::names(INSERTS).into_iter().enumerate() {
        store.insert_tasks(&[task]).await.unwrap();
        if i % 100 == 0 {
            // Let the checkpointer have a turn, as a server's other work would.
            tokio::task::yield_now().await;
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
    }
    let written: u64 = (INSERTS as u64) * 4 * 4096;
    assert!(
        largest < written / 4,
        "the WAL grew to {largest} bytes over {INSERTS} inserts (at least {written} written)"
    );
}
