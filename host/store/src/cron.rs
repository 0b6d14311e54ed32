//! Cron tasks by group and name, and the compare-and-set that hands each tick to one
//! server (see `migrations/*/0012_cron_tasks.sql`).

use sqlx::Row;
use tessera_core::time_fmt::now_rfc3339;

use crate::{Pools, Store, StoreError, WriteConn, WritePool, builder};

/// A stored cron task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronRow {
    pub group: String,
    pub name: String,
    pub spec: String,
    pub next_ms: Option<i64>,
    pub last_schedule_ms: Option<i64>,
    pub last_skip: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLS: &str =
    "group_name, name, spec, next_ms, last_schedule_ms, last_skip, created_at, updated_at";

fn decode<R: Row>(row: &R) -> Result<CronRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(CronRow {
        group: row.try_get("group_name")?,
        name: row.try_get("name")?,
        spec: row.try_get("spec")?,
        next_ms: row.try_get("next_ms")?,
        last_schedule_ms: row.try_get("last_schedule_ms")?,
        last_skip: row.try_get("last_skip")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    /// Store a new cron task ([`StoreError::Conflict`] when the name is taken), or
    /// replace one (`replace`; `false` when there is none). Either way its next tick is
    /// `next_ms`.
    pub async fn put_cron(
        &self,
        group: &str,
        name: &str,
        spec: &str,
        next_ms: Option<i64>,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let now = now_rfc3339();
        let sql = if replace {
            "UPDATE cron_tasks SET spec = $3, next_ms = $4, updated_at = $5 \
             WHERE group_name = $1 AND name = $2"
        } else {
            "INSERT INTO cron_tasks (group_name, name, spec, next_ms, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)"
        };
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(sql)
                .bind(group)
                .bind(name)
                .bind(spec)
                .bind(next_ms)
                .bind(now.as_str())
                .execute(&mut *pool.conn().await?)
                .await
                .map_err(|e| match &e {
                    sqlx::Error::Database(d) if d.is_unique_violation() => {
                        StoreError::Conflict(format!("cron task {name:?} already exists"))
                    }
                    _ => StoreError::Database(e),
                })?;
            Ok(done.rows_affected() == 1)
        })
    }

    pub async fn cron(&self, group: &str, name: &str) -> Result<Option<CronRow>, StoreError> {
        let sql = format!("SELECT {COLS} FROM cron_tasks WHERE group_name = $1 AND name = $2");
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query(&sql)
                .bind(group)
                .bind(name)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(decode)
                .transpose()?)
        })
    }

    /// The cron tasks of `groups` (every group: `None`), by group and name.
    pub async fn list_crons(
        &self,
        groups: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<CronRow>, StoreError> {
        if groups.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        with_pool!(self, reader, |pool| {
            let mut qb = builder(pool, &format!("SELECT {COLS} FROM cron_tasks WHERE 1 = 1"));
            if let Some(groups) = groups {
                qb.push(" AND group_name IN (");
                let mut sep = qb.separated(", ");
                for g in groups {
                    sep.push_bind(g.as_str());
                }
                qb.push(")");
            }
            qb.push(" ORDER BY group_name, name LIMIT ")
                .push_bind(i64::from(limit));
            Ok(qb
                .build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode)
                .collect::<Result<_, _>>()?)
        })
    }

    pub async fn delete_cron(&self, group: &str, name: &str) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query("DELETE FROM cron_tasks WHERE group_name = $1 AND name = $2")
                .bind(group)
                .bind(name)
                .execute(&mut *pool.conn().await?)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Cron tasks whose next tick is due by `now_ms`, soonest first.
    pub async fn due_crons(&self, now_ms: i64, limit: u32) -> Result<Vec<CronRow>, StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM cron_tasks WHERE next_ms IS NOT NULL AND next_ms <= $1 \
             ORDER BY next_ms LIMIT $2"
        );
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query(&sql)
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode)
                .collect::<Result<_, _>>()?)
        })
    }

    /// Move a cron task's next tick from `expected` to `next` (compare-and-set: `false`
    /// when another server moved it first), recording the tick it fired or why it did
    /// not.
    pub async fn advance_cron(
        &self,
        group: &str,
        name: &str,
        expected: Option<i64>,
        next: Option<i64>,
        fired: Option<i64>,
        skip: Option<&str>,
    ) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "UPDATE cron_tasks SET next_ms = $3, \
                 last_schedule_ms = COALESCE($4, last_schedule_ms), last_skip = $5 \
                 WHERE group_name = $1 AND name = $2 AND next_ms IS NOT DISTINCT FROM $6",
            )
            .bind(group)
            .bind(name)
            .bind(next)
            .bind(fired)
            .bind(skip)
            .bind(expected)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Delete finished tasks by id, with their tags, events and run rows (a cron task's
    /// history beyond its limits, tasks past their retention); how many.
    pub async fn delete_finished(&self, ids: &[String]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut qb = builder(pool, "DELETE FROM tasks WHERE state IN (");
            qb.push(crate::TERMINAL.as_str()).push(") AND id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(id.as_str());
            }
            qb.push(")");
            let done = qb.build().execute(&mut *tx).await?.rows_affected();
            // Run rows whose task is gone (and none of a task still there).
            let mut qb = builder(pool, "DELETE FROM runs WHERE task_id IN (");
            let mut sep = qb.separated(", ");
            for id in ids {
                sep.push_bind(id.as_str());
            }
            qb.push(") AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = runs.task_id)");
            qb.build().execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(done)
        })
    }

    /// Set how long `group`'s finished tasks are kept (`None`: the server's default; 0:
    /// forever); whether the group exists.
    pub async fn set_retention(&self, group: &str, days: Option<u32>) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done =
                sqlx::query("UPDATE identity_groups SET retention_days = $2 WHERE name = $1")
                    .bind(group)
                    .bind(days.map(i64::from))
                    .execute(&mut *pool.conn().await?)
                    .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The groups with a retention of their own, with it (days; 0: forever).
    pub async fn retentions(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let rows: Vec<(String, i64)> = with_pool!(self, reader, |pool| {
            sqlx::query_as(
                "SELECT name, retention_days FROM identity_groups \
                 WHERE retention_days IS NOT NULL ORDER BY name",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(g, d)| (g, u32::try_from(d).unwrap_or(u32::MAX)))
            .collect())
    }
}
