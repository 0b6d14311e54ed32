//! Agents, configs and secrets by group and name (see
//! `migrations/*/0011_agents_configs.sql`). Secret values arrive sealed: the store never
//! sees them in the clear.

use tessera_core::time_fmt::now_rfc3339;

use crate::quota::ACTIVE;
use crate::{Pools, Store, StoreError, WriteConn, builder, quoted};

/// What a group keeps by name: configs and secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Config,
    Secret,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::Config => "config",
            EntryKind::Secret => "secret",
        }
    }
}

/// A named thing of a group: a config's or secret's entries (JSON), or an agent's
/// document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRow {
    pub group: String,
    pub name: String,
    pub data: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Where a named thing is kept: (table, data column, kind condition).
fn place(kind: Option<EntryKind>) -> (&'static str, &'static str, String) {
    match kind {
        Some(k) => (
            "group_entries",
            "data",
            format!(" AND kind = '{}'", k.as_str()),
        ),
        None => ("agents", "spec", String::new()),
    }
}

fn conflict(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("{what} already exists"))
        }
        _ => StoreError::Database(e),
    }
}

impl Store {
    /// Store a config or secret (`kind`), or an agent (`None`): create it (`replace`
    /// false: [`StoreError::Conflict`] if it exists) or replace it (`replace` true:
    /// `false` when there is none).
    pub async fn put_named(
        &self,
        kind: Option<EntryKind>,
        group: &str,
        name: &str,
        data: &str,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let now = now_rfc3339();
        let (table, col, cond) = place(kind);
        let sql = if replace {
            format!(
                "UPDATE {table} SET {col} = $3, updated_at = $4 WHERE group_name = $1 AND name = $2{cond}"
            )
        } else {
            match kind {
                Some(k) => format!(
                    "INSERT INTO group_entries (group_name, name, data, created_at, updated_at, kind) \
                     VALUES ($1, $2, $3, $4, $4, '{}')",
                    k.as_str()
                ),
                None => "INSERT INTO agents (group_name, name, spec, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $4)"
                    .to_string(),
            }
        };
        let what = match kind {
            Some(EntryKind::Config) => format!("config {name:?}"),
            Some(EntryKind::Secret) => format!("secret {name:?}"),
            None => format!("agent {name:?}"),
        };
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(&sql)
                .bind(group)
                .bind(name)
                .bind(data)
                .bind(now.as_str())
                .execute(&mut *pool.conn().await?)
                .await
                .map_err(|e| conflict(e, &what))?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// One config, secret or agent.
    pub async fn named(
        &self,
        kind: Option<EntryKind>,
        group: &str,
        name: &str,
    ) -> Result<Option<NamedRow>, StoreError> {
        let (table, col, cond) = place(kind);
        let sql = format!(
            "SELECT group_name, name, {col} AS data, created_at, updated_at FROM {table} \
             WHERE group_name = $1 AND name = $2{cond}"
        );
        with_pool!(self, reader, |pool| {
            let row: Option<(String, String, String, String, String)> = sqlx::query_as(&sql)
                .bind(group)
                .bind(name)
                .fetch_optional(pool)
                .await?;
            Ok(
                row.map(|(group, name, data, created_at, updated_at)| NamedRow {
                    group,
                    name,
                    data,
                    created_at,
                    updated_at,
                }),
            )
        })
    }

    /// The configs, secrets or agents of `groups` (all groups: `None`), by group and name,
    /// at most `limit`.
    pub async fn list_named(
        &self,
        kind: Option<EntryKind>,
        groups: Option<&[String]>,
        limit: u32,
    ) -> Result<Vec<NamedRow>, StoreError> {
        if groups.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        let (table, col, cond) = place(kind);
        with_pool!(self, reader, |pool| {
            let mut qb = builder(
                pool,
                &format!(
                    "SELECT group_name, name, {col} AS data, created_at, updated_at FROM {table} \
                     WHERE 1 = 1{cond}"
                ),
            );
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
            let rows: Vec<(String, String, String, String, String)> =
                qb.build_query_as().fetch_all(pool).await?;
            Ok(rows
                .into_iter()
                .map(|(group, name, data, created_at, updated_at)| NamedRow {
                    group,
                    name,
                    data,
                    created_at,
                    updated_at,
                })
                .collect())
        })
    }

    /// Delete a config, secret or agent; whether it was there.
    pub async fn delete_named(
        &self,
        kind: Option<EntryKind>,
        group: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        let (table, _, cond) = place(kind);
        let sql = format!("DELETE FROM {table} WHERE group_name = $1 AND name = $2{cond}");
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(&sql)
                .bind(group)
                .bind(name)
                .execute(&mut *pool.conn().await?)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// How many of `group`'s tasks tagged with `tag` = `value` hold a place (started,
    /// not ended): an agent's running tasks.
    pub async fn active_tagged(
        &self,
        group: &str,
        tag: &str,
        value: &str,
    ) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) FROM task_tags g JOIN tasks t ON t.seq = g.task_seq \
             WHERE g.key = $1 AND g.value = $2 AND t.group_name = $3 AND t.state IN ({})",
            quoted(ACTIVE.iter().copied())
        );
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_scalar::<_, i64>(&sql)
                .bind(tag)
                .bind(value)
                .bind(group)
                .fetch_one(pool)
                .await?)
        })
    }
}
