//! The notification outbox: per notifier binding (scope), a cursor over `task_events` and
//! the deliveries waiting for a retry. See `migrations/*/0003_notifications.sql`.

use sqlx::Row;
use tessera_core::Event;
use tessera_core::time_fmt::format_sortable;
use time::OffsetDateTime;

use crate::lease::db_now_ms;
use crate::{Lease, Pools, Store, StoreError, WriteConn, WritePool, decode_event};

/// A delivery waiting for a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub event_seq: i64,
    pub attempts: i64,
    pub last_error: String,
}

/// A failed first attempt, to be retried at `next_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub event_seq: i64,
    pub next_at: OffsetDateTime,
    pub error: String,
}

/// An event of the stream, with what decides who may see it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEvent {
    pub event: Event,
    pub group: String,
    pub origin: tessera_core::task::Origin,
}

impl Store {
    /// Events after `after_seq`, oldest first, at most `limit`, with their task's group
    /// and origin (the event stream). Events of deleted tasks are gone with them.
    pub async fn feed_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<FeedEvent>, StoreError> {
        with_pool!(self, reader, |pool| {
            let rows = sqlx::query(
                "SELECT e.seq, e.task_id, e.at, e.from_state, e.to_state, e.reason, \
                 t.group_name, t.origin FROM task_events e JOIN tasks t ON t.id = e.task_id \
                 WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    let event = decode_event(row)?;
                    let origin: String = row.try_get("origin")?;
                    Ok(FeedEvent {
                        origin: origin.parse().map_err(|e: String| {
                            StoreError::Corrupt(format!("task {}: {e}", event.task_id))
                        })?,
                        group: row.try_get("group_name")?,
                        event,
                    })
                })
                .collect()
        })
    }

    /// The newest event's seq (0 when there is none).
    pub async fn last_event_seq(&self) -> Result<i64, StoreError> {
        with_pool!(self, reader, |pool| {
            let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM task_events")
                .fetch_one(pool)
                .await?;
            Ok(seq.unwrap_or(0))
        })
    }

    /// Events after `after_seq`, oldest first, at most `limit`.
    pub async fn events_after(&self, after_seq: i64, limit: u32) -> Result<Vec<Event>, StoreError> {
        with_pool!(self, reader, |pool| {
            sqlx::query(
                "SELECT seq, task_id, at, from_state, to_state, reason FROM task_events \
                 WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode_event)
            .collect()
        })
    }

    /// One event by its seq.
    pub async fn event(&self, seq: i64) -> Result<Option<Event>, StoreError> {
        with_pool!(self, reader, |pool| {
            sqlx::query(
                "SELECT seq, task_id, at, from_state, to_state, reason FROM task_events \
                 WHERE seq = $1",
            )
            .bind(seq)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(decode_event)
            .transpose()
        })
    }

    /// Hold a notifier binding's outbox for `lease.owner` (take it if nobody holds it or
    /// the holder's lease ran out, renew it if ours) and return its cursor; `None` while
    /// another server holds it. One server at a time delivers a binding's events. The
    /// cursor is set to `start` the first time (a new binding is notified of what
    /// happens from then on, not of the past).
    pub async fn hold_notifier(
        &self,
        scope: &str,
        start: i64,
        lease: &Lease,
    ) -> Result<Option<i64>, StoreError> {
        let now_ms = db_now_ms(self.backend());
        let take = format!(
            "UPDATE notifier_cursors SET owner = $1, lease_until = {now_ms} + $2 \
             WHERE scope = $3 AND (owner = $1 OR owner IS NULL OR lease_until IS NULL \
             OR lease_until <= {now_ms}) RETURNING last_seq"
        );
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO notifier_cursors (scope, last_seq) VALUES ($1, $2) \
                 ON CONFLICT (scope) DO NOTHING",
            )
            .bind(scope)
            .bind(start)
            .execute(&mut *tx)
            .await?;
            let cursor: Option<i64> = sqlx::query_scalar(&take)
                .bind(lease.owner.as_str())
                .bind(lease.ttl_ms())
                .bind(scope)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(cursor)
        })
    }

    /// Move a binding's cursor to `last_seq`, queueing the failed deliveries among the
    /// events passed over for a retry, in one transaction.
    /// Only while `owner` holds the binding ([`StoreError::NotHeld`] otherwise, and
    /// nothing changes).
    pub async fn advance_notifier(
        &self,
        scope: &str,
        last_seq: i64,
        failed: &[Failed],
        owner: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let moved = sqlx::query(
                "UPDATE notifier_cursors SET last_seq = $1 WHERE scope = $2 AND owner = $3",
            )
            .bind(last_seq)
            .bind(scope)
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if moved == 0 {
                return Err(StoreError::NotHeld(format!("notifier {scope}")));
            }
            for f in failed {
                sqlx::query(
                    "INSERT INTO notifier_retries (scope, event_seq, attempts, next_at, last_error) \
                     VALUES ($1, $2, 1, $3, $4) ON CONFLICT (scope, event_seq) DO NOTHING",
                )
                .bind(scope)
                .bind(f.event_seq)
                .bind(format_sortable(f.next_at))
                .bind(f.error.as_str())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Retries of a binding that are due at `now`, oldest event first.
    pub async fn due_retries(
        &self,
        scope: &str,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Retry>, StoreError> {
        with_pool!(self, reader, |pool| {
            let rows = sqlx::query(
                "SELECT event_seq, attempts, last_error FROM notifier_retries \
                 WHERE scope = $1 AND dead = 0 AND next_at <= $2 ORDER BY event_seq LIMIT $3",
            )
            .bind(scope)
            // Stored as fixed-width UTC text, which sorts as the times do.
            .bind(format_sortable(now))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(Retry {
                        event_seq: r.try_get("event_seq")?,
                        attempts: r.try_get("attempts")?,
                        last_error: r.try_get("last_error")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(StoreError::from)
        })
    }

    /// A retry went through: forget it (only while `owner` holds the binding).
    pub async fn retry_delivered(
        &self,
        scope: &str,
        event_seq: i64,
        owner: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, writer, |pool| {
            sqlx::query(
                "DELETE FROM notifier_retries WHERE scope = $1 AND event_seq = $2 \
                 AND EXISTS (SELECT 1 FROM notifier_cursors c WHERE c.scope = $1 AND c.owner = $3)",
            )
            .bind(scope)
            .bind(event_seq)
            .bind(owner)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(())
        })
    }

    /// A retry failed again: count it and wait until `next_at`, or give up (`dead`);
    /// only while `owner` holds the binding.
    pub async fn retry_failed(
        &self,
        scope: &str,
        event_seq: i64,
        next_at: OffsetDateTime,
        error: &str,
        dead: bool,
        owner: &str,
    ) -> Result<(), StoreError> {
        with_pool!(self, writer, |pool| {
            sqlx::query(
                "UPDATE notifier_retries SET attempts = attempts + 1, next_at = $1, \
                 last_error = $2, dead = $3 WHERE scope = $4 AND event_seq = $5 \
                 AND EXISTS (SELECT 1 FROM notifier_cursors c WHERE c.scope = $4 AND c.owner = $6)",
            )
            .bind(format_sortable(next_at))
            .bind(error)
            .bind(i64::from(dead))
            .bind(scope)
            .bind(event_seq)
            .bind(owner)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(())
        })
    }

    /// How many deliveries of a binding wait for a retry, and how many were given up.
    pub async fn retry_counts(&self, scope: &str) -> Result<(i64, i64), StoreError> {
        with_pool!(self, reader, |pool| {
            let row = sqlx::query(
                "SELECT CAST(COALESCE(SUM(1 - dead), 0) AS BIGINT) AS waiting, \
                 CAST(COALESCE(SUM(dead), 0) AS BIGINT) AS dead \
                 FROM notifier_retries WHERE scope = $1",
            )
            .bind(scope)
            .fetch_one(pool)
            .await?;
            Ok((row.try_get("waiting")?, row.try_get("dead")?))
        })
    }
}
