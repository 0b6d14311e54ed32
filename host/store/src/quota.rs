//! Per-group quotas and the queries fair dispatch needs: which groups have queued tasks,
//! each group's oldest, and what limited groups hold now.

use tessera_core::identity::Quota;
use tessera_core::{State, TaskRecord};

use crate::{Pools, Store, StoreError, WriteConn, decode_task};

/// States of a task that holds its share of a group's limits (started, not yet ended).
pub const ACTIVE: [State; 4] = [
    State::Initializing,
    State::Running,
    State::Paused,
    State::Canceling,
];

type QuotaRow = (String, Option<i64>, Option<i64>, Option<i64>, Option<f64>);

fn decode_quota((group, queued, running, cpu, ram): QuotaRow) -> (String, Quota) {
    let small = |v: Option<i64>| v.and_then(|n| u32::try_from(n).ok());
    (
        group,
        Quota {
            max_queued: small(queued),
            max_running: small(running),
            max_cpu_cores: small(cpu),
            max_ram_gb: ram,
        },
    )
}

impl Store {
    /// Set `group`'s quota (replacing the one it had); whether the group exists.
    pub async fn set_quota(&self, group: &str, quota: &Quota) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "UPDATE identity_groups SET max_queued = $2, max_running = $3, \
                 max_cpu_cores = $4, max_ram_gb = $5 WHERE name = $1",
            )
            .bind(group)
            .bind(quota.max_queued.map(i64::from))
            .bind(quota.max_running.map(i64::from))
            .bind(quota.max_cpu_cores.map(i64::from))
            .bind(quota.max_ram_gb)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The groups that have a quota, with it.
    pub async fn quotas(&self) -> Result<Vec<(String, Quota)>, StoreError> {
        let rows: Vec<QuotaRow> = with_pool!(self, reader, |pool| {
            sqlx::query_as(
                "SELECT name, max_queued, max_running, max_cpu_cores, max_ram_gb \
                 FROM identity_groups WHERE max_queued IS NOT NULL OR max_running IS NOT NULL \
                 OR max_cpu_cores IS NOT NULL OR max_ram_gb IS NOT NULL ORDER BY name",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(decode_quota).collect())
    }

    /// How many of `group`'s tasks wait in the queue.
    pub async fn count_queued(&self, group: &str) -> Result<i64, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT COUNT(*) FROM tasks WHERE state = $1 AND group_name = $2",
            )
            .bind(State::Queued.as_str())
            .bind(group)
            .fetch_one(pool)
            .await?)
        })
    }

    /// Up to `limit` groups that have queued tasks, by name. One index probe per group
    /// (a skip scan), however many tasks wait.
    pub async fn queued_groups(&self, limit: u32) -> Result<Vec<String>, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_scalar(
                "WITH RECURSIVE g(name) AS ( \
                   SELECT MIN(group_name) FROM tasks WHERE state = $1 \
                   UNION ALL \
                   SELECT (SELECT MIN(group_name) FROM tasks \
                           WHERE state = $1 AND group_name > g.name) \
                   FROM g WHERE g.name IS NOT NULL) \
                 SELECT name FROM g WHERE name IS NOT NULL LIMIT $2",
            )
            .bind(State::Queued.as_str())
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?)
        })
    }

    /// Up to `limit` of `group`'s QUEUED tasks, oldest first.
    pub async fn oldest_queued_in(
        &self,
        group: &str,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            full_cols!(),
            " FROM tasks WHERE state = $1 AND group_name = $2 \
             ORDER BY priority DESC, seq LIMIT $3"
        );
        with_pool!(self, reader, |pool| {
            sqlx::query(sql)
                .bind(State::Queued.as_str())
                .bind(group)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| decode_task(row, false))
                .collect()
        })
    }

    /// The started, unended tasks of `groups` (on any server), for their quotas.
    pub async fn active_in(&self, groups: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        with_pool!(self, reader, |pool| {
            let mut qb = crate::builder(pool, "SELECT ");
            qb.push(full_cols!());
            qb.push(" FROM tasks WHERE state IN (");
            qb.push(crate::quoted(ACTIVE));
            qb.push(") AND group_name IN (");
            let mut names = qb.separated(", ");
            for g in groups {
                names.push_bind(g.as_str());
            }
            qb.push(")");
            qb.build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| decode_task(row, false))
                .collect()
        })
    }
}
