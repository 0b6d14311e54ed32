//! The audit log (`migrations/*/0009_audit_quotas.sql`): one row per state-changing
//! request, written in batches, read newest first by keyset, pruned by age.

use crate::{Pools, Store, StoreError, WriteConn, WritePool};

/// One audited request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub actor: String,
    pub method: String,
    /// The route as declared, e.g. `/v1/tasks/{id}/cancel`.
    pub action: String,
    /// The object acted on; empty when none.
    pub object: String,
    pub status: u16,
}

/// A stored entry with its position (page on with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
}

type Row = (i64, i64, String, String, String, String, i64);

/// Rows per INSERT (6 parameters each, far below both backends' parameter limits).
pub const AUDIT_CHUNK: usize = 512;

impl Store {
    /// Append entries in one transaction, [`AUDIT_CHUNK`] rows per statement: the
    /// writer is shared with task inserts, so a batch holds it for as few round trips
    /// as it can.
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Pools::Sqlite { writer, .. } = &self.pools {
            return writer.append_audit(entries).await;
        }
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            for chunk in entries.chunks(AUDIT_CHUNK) {
                let mut qb = crate::builder(
                    pool,
                    "INSERT INTO audit_log (at_ms, actor, method, action, object, status) ",
                );
                qb.push_values(chunk, |mut row, e| {
                    row.push_bind(e.at_ms)
                        .push_bind(e.actor.as_str())
                        .push_bind(e.method.as_str())
                        .push_bind(e.action.as_str())
                        .push_bind(e.object.as_str())
                        .push_bind(i64::from(e.status));
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Up to `limit` entries newest first, before `before_seq` when given, of `actor`
    /// when given.
    pub async fn audit_page(
        &self,
        before_seq: Option<i64>,
        actor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows: Vec<Row> = with_pool!(self, reader, |pool| {
            sqlx::query_as(
                "SELECT seq, at_ms, actor, method, action, object, status FROM audit_log \
                 WHERE ($1 IS NULL OR seq < $1) AND ($2 IS NULL OR actor = $2) \
                 ORDER BY seq DESC LIMIT $3",
            )
            .bind(before_seq)
            .bind(actor)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(seq, at_ms, actor, method, action, object, status)| {
                Ok(AuditRecord {
                    seq,
                    entry: AuditEntry {
                        at_ms,
                        actor,
                        method,
                        action,
                        object,
                        status: u16::try_from(status)
                            .map_err(|_| StoreError::Corrupt(format!("audit status {status}")))?,
                    },
                })
            })
            .collect()
    }

    /// Delete entries older than `before_ms`; how many went.
    pub async fn prune_audit(&self, before_ms: i64) -> Result<u64, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query("DELETE FROM audit_log WHERE at_ms < $1")
                .bind(before_ms)
                .execute(&mut *pool.conn().await?)
                .await?;
            Ok(done.rows_affected())
        })
    }
}
