//! SQLite inserts on a synchronous connection of the store's own, run on the caller's
//! thread.
//!
//! sqlx gives every SQLite connection a worker thread: each command is a hop to that
//! thread and back (measured here: 35–55 µs a round trip, more than the whole one-row
//! transaction costs SQLite itself), so through sqlx the store's one-row insert could
//! not come within 1.5x of plain SQLite. The insert — the path every create takes —
//! therefore runs on a second connection to the same file, called inline, its
//! statements prepared once. It is only used while the store's writer lock is held, so
//! it and the sqlx writer connection never contend for SQLite's write lock.
//!
//! A commit in WAL mode with `synchronous=NORMAL` does not sync, but a checkpoint does:
//! this connection never checkpoints inside an insert (`wal_autocheckpoint=0`); the
//! store's checkpointer does it in the background ([`checkpoint_loop`]), so no insert
//! blocks an async thread on the disk.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::{OpenFlags, params};
use tessera_core::State;
use tessera_core::task::NewTask;

use crate::{Encoded, SQLITE_BUSY_TIMEOUT, StoreError, WriterConns};

/// Batches up to this many rows run inline; larger ones leave the async thread first
/// (`block_in_place`), so a big group commit does not hold up other tasks.
pub(crate) const INLINE_ROWS: usize = 32;

/// How often the checkpointer looks for new commits.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// After this many commits the checkpointer runs at once: under a steady stream of
/// inserts the WAL stays about as small as SQLite's own autocheckpoint keeps it (each
/// one-task commit adds about ten pages; SQLite's default is every 1,000 pages).
pub(crate) const CHECKPOINT_AFTER: u64 = 100;

/// Open the direct connection to an existing SQLite store file.
pub(crate) fn open(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    // The same settings as the sqlx connections (journal_mode=WAL is kept by the file).
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// Insert `tasks` (each with its event and tags) in one transaction; their `seq`s by id.
pub(crate) fn insert(
    conn: &mut rusqlite::Connection,
    tasks: &[NewTask],
    encoded: &[Encoded<'_>],
    now: &str,
) -> Result<HashMap<String, i64>, StoreError> {
    // BEGIN and COMMIT as cached statements too (rusqlite's `Transaction` parses them
    // each time); anything that fails in between is rolled back.
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let seqs = rows(conn, tasks, encoded, now).and_then(|seqs| {
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(seqs)
    });
    match seqs {
        Ok(seqs) => Ok(seqs),
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// The rows of [`insert`], inside its transaction.
fn rows(
    tx: &rusqlite::Connection,
    tasks: &[NewTask],
    encoded: &[Encoded<'_>],
    now: &str,
) -> Result<HashMap<String, i64>, StoreError> {
    let queued = State::Queued.as_str();
    let mut seqs = HashMap::with_capacity(tasks.len());
    let mut task_row = tx.prepare_cached(
        "INSERT INTO tasks \
         (id, state, reason, name, spec, logs, creation_time, updated_at, group_name, \
         origin, priority, extra) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) RETURNING seq",
    )?;
    let mut event_row = tx.prepare_cached(
        "INSERT INTO task_events (task_id, at, to_state, reason) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut tag_row =
        tx.prepare_cached("INSERT INTO task_tags (task_seq, key, value) VALUES (?1, ?2, ?3)")?;
    let mut run_row = tx.prepare_cached(
        "INSERT INTO runs (task_id, operation_id, version, request, rerun_of, response_url, \
         delivery) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (task, t) in tasks.iter().zip(encoded) {
        let seq: i64 = task_row
            .query_row(
                params![
                    t.id,
                    queued,
                    t.reason,
                    t.name,
                    t.spec,
                    t.logs,
                    t.creation_time,
                    now,
                    t.group,
                    t.origin,
                    t.priority,
                    t.extra
                ],
                |row| row.get(0),
            )
            .map_err(insert_error)?;
        event_row.execute(params![t.id, now, queued, t.reason])?;
        for (k, v) in task.spec.tags.iter().flatten() {
            tag_row.execute(params![seq, k, v])?;
        }
        if let Some(run) = &task.run {
            run_row.execute(params![
                t.id,
                run.operation_id,
                run.version,
                run.request,
                run.rerun_of,
                run.response_url,
                run.response_url
                    .as_ref()
                    .map(|_| crate::operations::DELIVERY_PENDING)
            ])?;
        }
        seqs.insert(t.id.to_string(), seq);
    }
    Ok(seqs)
}

/// Append audit entries in one transaction.
pub(crate) fn append_audit(
    conn: &mut rusqlite::Connection,
    entries: &[crate::AuditEntry],
) -> Result<(), StoreError> {
    conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
    let done = (|| {
        let mut row = conn.prepare_cached(
            "INSERT INTO audit_log (at_ms, actor, method, action, object, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for e in entries {
            row.execute(params![
                e.at_ms, e.actor, e.method, e.action, e.object, e.status
            ])?;
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    })();
    if done.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    done
}

/// A taken task id is a refusal of the whole batch, not a database failure.
fn insert_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, msg)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::DuplicateId(msg.clone().unwrap_or_else(|| e.to_string()))
        }
        _ => StoreError::Direct(e),
    }
}

/// Checkpoint the WAL in the background whenever the direct connection committed since
/// the last pass (looked at every [`CHECKPOINT_EVERY`], and at once when woken after
/// [`CHECKPOINT_AFTER`] commits), until the store is dropped. The pass holds the writer
/// lock, off the async threads: a checkpoint that ran beside a writer could never catch
/// up with it, and SQLite starts the WAL over only after a complete one. Readers are not
/// waited for (`PASSIVE`); a failed pass is retried on the next.
pub(crate) async fn checkpoint_loop(
    conns: Weak<tokio::sync::Mutex<WriterConns>>,
    due: Arc<tokio::sync::Notify>,
) {
    loop {
        let _ = tokio::time::timeout(CHECKPOINT_EVERY, due.notified()).await;
        let Some(conns) = conns.upgrade() else {
            return;
        };
        let mut writer = conns.lock_owned().await;
        if writer.commits == 0 {
            continue;
        }
        let pass = tokio::task::spawn_blocking(move || {
            let done = writer
                .direct
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            writer.commits = 0;
            done
        })
        .await;
        match pass {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "checkpointing the store's WAL failed; will retry")
            }
            Err(e) => tracing::warn!(error = %e, "the checkpoint thread failed; will retry"),
        }
    }
}
