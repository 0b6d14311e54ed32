//! Operations (versioned, group-owned container images with typed parameters) and runs
//! (the rows that make a task a run). See `migrations/*/0010_operations_runs.sql`.

use sqlx::Row;
use tessera_core::TaskRecord;
use tessera_core::task::Origin;
use tessera_core::time_fmt::now_rfc3339;

use crate::{Pools, Store, StoreError, WriteConn, WritePool, builder, decode_task};

/// The delivery state of a summary not yet delivered.
pub const DELIVERY_PENDING: &str = "pending";

/// One version of an operation, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRow {
    pub id: String,
    pub group: String,
    pub name: String,
    /// The version this row holds (the latest, unless asked for another).
    pub version: i64,
    pub latest: i64,
    /// The operation document (JSON).
    pub spec: String,
    /// When the operation was first created, and when this version was.
    pub created_at: String,
    pub version_created_at: String,
    pub version_created_by: String,
    pub deleted: bool,
}

/// The run part of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub task_id: String,
    pub operation_id: String,
    pub version: i64,
    /// The run request (JSON).
    pub request: String,
    pub rerun_of: Option<String>,
    pub response_url: Option<String>,
    /// `None` (no response URL), `pending`, `delivered` or `failed`.
    pub delivery: Option<String>,
    pub delivery_attempts: i64,
    pub delivery_error: Option<String>,
}

/// A page of runs, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunQuery {
    /// Only runs of tasks in these groups; `None`: every group.
    pub groups: Option<Vec<String>>,
    pub operation_id: Option<String>,
    pub state: Option<tessera_core::State>,
    /// Keyset: only tasks with `seq` below this.
    pub before_seq: Option<i64>,
    pub limit: u32,
}

macro_rules! op_cols {
    () => {
        "o.id, o.group_name, o.name, o.latest, o.created_at, o.deleted, \
         v.version, v.spec, v.created_at AS version_created_at, v.created_by"
    };
}

macro_rules! run_cols {
    () => {
        "r.task_id, r.operation_id, r.version, r.request, r.rerun_of, r.response_url, \
         r.delivery, r.delivery_attempts, r.delivery_error"
    };
}

fn decode_op<R: Row>(row: &R) -> Result<OperationRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(OperationRow {
        id: row.try_get("id")?,
        group: row.try_get("group_name")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        latest: row.try_get("latest")?,
        spec: row.try_get("spec")?,
        created_at: row.try_get("created_at")?,
        version_created_at: row.try_get("version_created_at")?,
        version_created_by: row.try_get("created_by")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
    })
}

fn decode_run<R: Row>(row: &R) -> Result<RunRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(RunRow {
        task_id: row.try_get("task_id")?,
        operation_id: row.try_get("operation_id")?,
        version: row.try_get("version")?,
        request: row.try_get("request")?,
        rerun_of: row.try_get("rerun_of")?,
        response_url: row.try_get("response_url")?,
        delivery: row.try_get("delivery")?,
        delivery_attempts: row.try_get("delivery_attempts")?,
        delivery_error: row.try_get("delivery_error")?,
    })
}

/// A unique-index violation (a name taken) as [`StoreError::Conflict`].
fn name_taken(e: sqlx::Error, name: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => {
            StoreError::Conflict(format!("the group already has an operation named {name:?}"))
        }
        _ => StoreError::Database(e),
    }
}

impl Store {
    /// Store a new operation with its first version.
    pub async fn create_operation(
        &self,
        id: &str,
        group: &str,
        name: &str,
        spec: &str,
        by: &str,
    ) -> Result<OperationRow, StoreError> {
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO operations (id, group_name, name, latest, created_at, updated_at) \
                 VALUES ($1, $2, $3, 1, $4, $4)",
            )
            .bind(id)
            .bind(group)
            .bind(name)
            .bind(now.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| name_taken(e, name))?;
            sqlx::query(
                "INSERT INTO operation_versions (operation_id, version, spec, created_at, created_by) \
                 VALUES ($1, 1, $2, $3, $4)",
            )
            .bind(id)
            .bind(spec)
            .bind(now.as_str())
            .bind(by)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(OperationRow {
            id: id.into(),
            group: group.into(),
            name: name.into(),
            version: 1,
            latest: 1,
            spec: spec.into(),
            created_at: now.clone(),
            version_created_at: now,
            version_created_by: by.into(),
            deleted: false,
        })
    }

    /// Add a version to an operation (not deleted); `None` when there is none.
    pub async fn update_operation(
        &self,
        id: &str,
        name: &str,
        spec: &str,
        by: &str,
    ) -> Result<Option<OperationRow>, StoreError> {
        let now = now_rfc3339();
        let latest: Option<i64> = with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let latest: Option<i64> = sqlx::query_scalar(
                "UPDATE operations SET latest = latest + 1, name = $2, updated_at = $3 \
                 WHERE id = $1 AND deleted = 0 RETURNING latest",
            )
            .bind(id)
            .bind(name)
            .bind(now.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| name_taken(e, name))?;
            if let Some(v) = latest {
                sqlx::query(
                    "INSERT INTO operation_versions \
                     (operation_id, version, spec, created_at, created_by) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(v)
                .bind(spec)
                .bind(now.as_str())
                .bind(by)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            latest
        });
        match latest {
            Some(v) => self.operation(id, Some(v)).await,
            None => Ok(None),
        }
    }

    /// Hide an operation (its runs stay readable, its name is free again). Whether it
    /// was there.
    pub async fn delete_operation(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "UPDATE operations SET deleted = 1, updated_at = $2 WHERE id = $1 AND deleted = 0",
            )
            .bind(id)
            .bind(now.as_str())
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// An operation at `version` (the latest when `None`), deleted ones included (runs
    /// refer to them).
    pub async fn operation(
        &self,
        id: &str,
        version: Option<i64>,
    ) -> Result<Option<OperationRow>, StoreError> {
        let sql = concat!(
            "SELECT ",
            op_cols!(),
            " FROM operations o JOIN operation_versions v ON v.operation_id = o.id \
             WHERE o.id = $1 AND v.version = COALESCE($2, o.latest)"
        );
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query(sql)
                .bind(id)
                .bind(version)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(decode_op)
                .transpose()?)
        })
    }

    /// The versions of an operation, oldest first: `(version, created_at, created_by)`.
    pub async fn operation_versions(
        &self,
        id: &str,
    ) -> Result<Vec<(i64, String, String)>, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_as(
                "SELECT version, created_at, created_by FROM operation_versions \
                 WHERE operation_id = $1 ORDER BY version",
            )
            .bind(id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// A page of the operations (latest versions, not deleted) of `groups`, by id,
    /// after `after_id`.
    pub async fn list_operations(
        &self,
        groups: Option<&[String]>,
        name: Option<&str>,
        after_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<OperationRow>, StoreError> {
        if groups.is_some_and(<[String]>::is_empty) || limit == 0 {
            return Ok(Vec::new());
        }
        with_pool!(self, reader, |pool| {
            let mut qb = builder(pool, concat!("SELECT ", op_cols!()));
            qb.push(
                " FROM operations o JOIN operation_versions v \
                 ON v.operation_id = o.id AND v.version = o.latest \
                 WHERE o.deleted = 0",
            );
            if let Some(groups) = groups {
                qb.push(" AND o.group_name IN (");
                let mut sep = qb.separated(", ");
                for g in groups {
                    sep.push_bind(g.as_str());
                }
                qb.push(")");
            }
            if let Some(name) = name {
                qb.push(" AND o.name = ").push_bind(name);
            }
            if let Some(after) = after_id {
                qb.push(" AND o.id > ").push_bind(after);
            }
            qb.push(" ORDER BY o.id LIMIT ").push_bind(i64::from(limit));
            Ok(qb
                .build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_op)
                .collect::<Result<_, _>>()?)
        })
    }

    /// A run with its task; `None` when either is missing.
    pub async fn run(&self, task_id: &str) -> Result<Option<(TaskRecord, RunRow)>, StoreError> {
        let sql = concat!(
            "SELECT ",
            full_cols!(),
            ", ",
            run_cols!(),
            " FROM tasks t JOIN runs r ON r.task_id = t.id WHERE t.id = $1"
        );
        with_pool!(self, reader, |pool| {
            match sqlx::query(sql).bind(task_id).fetch_optional(pool).await? {
                None => Ok(None),
                Some(row) => Ok(Some((decode_task(&row, false)?, decode_run(&row)?))),
            }
        })
    }

    /// A page of runs (with their tasks), newest first. See [`RunQuery`].
    pub async fn list_runs(&self, q: &RunQuery) -> Result<Vec<(TaskRecord, RunRow)>, StoreError> {
        if q.groups.as_ref().is_some_and(Vec::is_empty) || q.limit == 0 {
            return Ok(Vec::new());
        }
        with_pool!(self, reader, |pool| {
            let mut qb = builder(pool, concat!("SELECT ", full_cols!(), ", ", run_cols!()));
            qb.push(" FROM tasks t JOIN runs r ON r.task_id = t.id WHERE t.origin = ")
                .push_bind(Origin::Run.as_str());
            if let Some(groups) = &q.groups {
                qb.push(" AND t.group_name IN (");
                let mut sep = qb.separated(", ");
                for g in groups {
                    sep.push_bind(g.as_str());
                }
                qb.push(")");
            }
            if let Some(op) = &q.operation_id {
                qb.push(" AND r.operation_id = ").push_bind(op.as_str());
            }
            if let Some(state) = q.state {
                qb.push(" AND t.state = ").push_bind(state.as_str());
            }
            if let Some(before) = q.before_seq {
                qb.push(" AND t.seq < ").push_bind(before);
            }
            qb.push(" ORDER BY t.seq DESC LIMIT ")
                .push_bind(i64::from(q.limit));
            qb.build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| Ok((decode_task(row, false)?, decode_run(row)?)))
                .collect()
        })
    }
}

/// What became of one attempt to deliver a run's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at `next_ms` (milliseconds since the Unix epoch).
    Retry {
        next_ms: i64,
        error: String,
    },
    /// Given up.
    Failed {
        error: String,
    },
}

impl Store {
    /// Runs that ended and whose summary waits for a delivery due by `now_ms`.
    pub async fn due_run_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT r.task_id FROM runs r JOIN tasks t ON t.id = r.task_id \
             WHERE r.delivery = 'pending' AND COALESCE(r.delivery_due_ms, 0) <= $1 \
             AND t.state IN ({}) ORDER BY r.delivery_due_ms LIMIT $2",
            *crate::TERMINAL
        );
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_scalar(&sql)
                .bind(now_ms)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?)
        })
    }

    /// Take the next delivery attempt of a run's summary: whether this caller got it.
    /// It holds the attempt for `hold_ms` (another server retries after that, if this one
    /// never records the outcome).
    pub async fn claim_run_delivery(
        &self,
        task_id: &str,
        now_ms: i64,
        hold_ms: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "UPDATE runs SET delivery_due_ms = $2 WHERE task_id = $1 \
                 AND delivery = 'pending' AND COALESCE(delivery_due_ms, 0) <= $3",
            )
            .bind(task_id)
            .bind(now_ms + hold_ms)
            .bind(now_ms)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Record an attempt's outcome (counted).
    pub async fn record_run_delivery(
        &self,
        task_id: &str,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError> {
        let (state, due, error) = match outcome {
            DeliveryOutcome::Delivered => ("delivered", None, None),
            DeliveryOutcome::Retry { next_ms, error } => ("pending", Some(*next_ms), Some(error)),
            DeliveryOutcome::Failed { error } => ("failed", None, Some(error)),
        };
        with_pool!(self, writer, |pool| {
            sqlx::query(
                "UPDATE runs SET delivery = $2, delivery_due_ms = $3, delivery_error = $4, \
                 delivery_attempts = delivery_attempts + 1 WHERE task_id = $1",
            )
            .bind(task_id)
            .bind(state)
            .bind(due)
            .bind(error.map(String::as_str))
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(())
        })
    }
}
