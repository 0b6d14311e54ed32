//! Workflows (immutable revisions), their runs and task runs (see
//! `migrations/*/0013_workflows.sql`). The store keeps states as the names the
//! workflow crate gives them; the scheduler's changes to a run land under a
//! compare-and-set on the run's `revision`.

use std::collections::BTreeMap;

use sqlx::Row;
use tessera_core::time_fmt::now_rfc3339;

use crate::{Backend, PG_SEQ_LOCK, Pools, Store, StoreError, WriteConn, WritePool, builder};

/// One revision of a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRow {
    pub id: String,
    pub group: String,
    pub title: String,
    pub version: i64,
    pub engine: String,
    pub definition: String,
    pub digest: String,
    pub parameters: String,
    pub labels: String,
    pub dag: String,
    pub created_at: String,
    pub created_by: String,
    pub deleted: bool,
}

/// A revision to store; its version is given by the store.
#[derive(Debug, Clone)]
pub struct NewWorkflow<'a> {
    pub id: &'a str,
    pub group: &'a str,
    pub title: &'a str,
    pub engine: &'a str,
    pub definition: &'a str,
    pub digest: &'a str,
    pub parameters: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub dag: &'a str,
    pub by: &'a str,
}

/// A workflow list query; filters AND together.
#[derive(Debug, Clone, Default)]
pub struct WorkflowQuery {
    /// `None`: every group.
    pub groups: Option<Vec<String>>,
    pub title: Option<String>,
    pub engine: Option<String>,
    pub labels: Vec<(String, String)>,
    /// Every revision, not only the latest of each title.
    pub all_versions: bool,
    /// Keyset: revisions after this id.
    pub after_id: Option<String>,
    pub limit: u32,
}

/// A workflow run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRunRow {
    pub seq: i64,
    pub id: String,
    pub group: String,
    pub workflow_id: String,
    pub title: String,
    pub version: i64,
    pub engine: String,
    pub state: String,
    pub cancel_requested: bool,
    pub params: String,
    pub labels: String,
    pub cleanup: String,
    pub cleaned: bool,
    pub external_id: Option<String>,
    pub message: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub wake_ms: Option<i64>,
    pub revision: i64,
    pub created_by: String,
}

/// A run to store (Created, revision 0).
#[derive(Debug, Clone)]
pub struct NewWorkflowRun<'a> {
    pub id: &'a str,
    pub group: &'a str,
    pub workflow: &'a WorkflowRow,
    pub state: &'a str,
    pub params: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub cleanup: &'a str,
    pub created_ms: i64,
    pub by: &'a str,
}

/// A run list query; filters AND together.
#[derive(Debug, Clone, Default)]
pub struct WorkflowRunQuery {
    pub groups: Option<Vec<String>>,
    pub title: Option<String>,
    pub states: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub created_after_ms: Option<i64>,
    pub created_before_ms: Option<i64>,
    /// Keyset: runs older than this `seq` (newest first).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

/// One attempt of one task of a run, with its task's state when it has a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRunRow {
    pub id: String,
    pub run_id: String,
    pub task_title: String,
    pub attempt: i64,
    pub state: String,
    pub task_id: Option<String>,
    pub external_id: Option<String>,
    pub not_before_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub message: Option<String>,
    /// The state of `task_id`'s task (TES name); `None` when it has none (yet).
    pub task_state: Option<String>,
}

/// An attempt to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTaskRun {
    pub id: String,
    pub task_title: String,
    pub attempt: i64,
    pub state: String,
    pub task_id: Option<String>,
    pub not_before_ms: Option<i64>,
}

/// A change to one attempt; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskRunChange {
    pub id: String,
    pub state: Option<String>,
    pub task_id: Option<String>,
    pub external_id: Option<String>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub message: Option<String>,
}

/// A change to a run under the scheduler's compare-and-set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunChange {
    pub state: Option<String>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// `Some(None)` clears it.
    pub wake_ms: Option<Option<i64>>,
    pub external_id: Option<String>,
    pub message: Option<String>,
    /// A retry: the run is not canceling and has not ended any more.
    pub reopen: bool,
    pub task_runs: Vec<TaskRunChange>,
    pub new_task_runs: Vec<NewTaskRun>,
}

const WF_COLS: &str = "id, group_name, title, version, engine, definition, digest, parameters, \
                       labels, dag, created_at, created_by, deleted";

fn decode_workflow<R: Row>(row: &R) -> Result<WorkflowRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(WorkflowRow {
        id: row.try_get("id")?,
        group: row.try_get("group_name")?,
        title: row.try_get("title")?,
        version: row.try_get("version")?,
        engine: row.try_get("engine")?,
        definition: row.try_get("definition")?,
        digest: row.try_get("digest")?,
        parameters: row.try_get("parameters")?,
        labels: row.try_get("labels")?,
        dag: row.try_get("dag")?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
    })
}

const RUN_COLS: &str = "seq, id, group_name, workflow_id, title, version, engine, state, \
                        cancel_requested, params, labels, cleanup, cleaned, external_id, \
                        message, created_ms, started_ms, ended_ms, wake_ms, revision, created_by";

fn decode_run<R: Row>(row: &R) -> Result<WorkflowRunRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(WorkflowRunRow {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        group: row.try_get("group_name")?,
        workflow_id: row.try_get("workflow_id")?,
        title: row.try_get("title")?,
        version: row.try_get("version")?,
        engine: row.try_get("engine")?,
        state: row.try_get("state")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        params: row.try_get("params")?,
        labels: row.try_get("labels")?,
        cleanup: row.try_get("cleanup")?,
        cleaned: row.try_get::<i64, _>("cleaned")? != 0,
        external_id: row.try_get("external_id")?,
        message: row.try_get("message")?,
        created_ms: row.try_get("created_ms")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        wake_ms: row.try_get("wake_ms")?,
        revision: row.try_get("revision")?,
        created_by: row.try_get("created_by")?,
    })
}

fn decode_task_run<R: Row>(row: &R) -> Result<TaskRunRow, sqlx::Error>
where
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(TaskRunRow {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        task_title: row.try_get("task_title")?,
        attempt: row.try_get("attempt")?,
        state: row.try_get("state")?,
        task_id: row.try_get("task_id")?,
        external_id: row.try_get("external_id")?,
        not_before_ms: row.try_get("not_before_ms")?,
        started_ms: row.try_get("started_ms")?,
        ended_ms: row.try_get("ended_ms")?,
        message: row.try_get("message")?,
        task_state: row.try_get("task_state")?,
    })
}

/// Insert one attempt in transaction `$tx` (a macro: the body is compiled per backend).
macro_rules! insert_task_run {
    ($tx:expr, $run_id:expr, $t:expr) => {
        sqlx::query(
            "INSERT INTO workflow_task_runs (id, run_id, task_title, attempt, state, task_id, \
             not_before_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind($t.id.as_str())
        .bind($run_id)
        .bind($t.task_title.as_str())
        .bind($t.attempt)
        .bind($t.state.as_str())
        .bind($t.task_id.as_deref())
        .bind($t.not_before_ms)
        .execute(&mut *$tx)
        .await?
    };
}

/// Append one workflow event in transaction `$tx` (a macro: compiled per backend). Its
/// seq comes from task_events' sequence, so the two logs are one sequence (SQLite: the
/// AUTOINCREMENT counter in `sqlite_sequence`, under the writer lock; PostgreSQL: the
/// column's default, under the advisory lock the caller took).
macro_rules! workflow_event {
    ($tx:expr, $backend:expr, $run:expr, $task_run:expr, $title:expr, $group:expr, $at:expr, $from:expr, $to:expr) => {
        if $backend == Backend::Sqlite {
            sqlx::query(
                "INSERT INTO sqlite_sequence (name, seq) \
                 SELECT 'task_events', COALESCE((SELECT MAX(seq) FROM task_events), 0) \
                 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'task_events')",
            )
            .execute(&mut *$tx)
            .await?;
            let seq: i64 = sqlx::query_scalar(
                "UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'task_events' RETURNING seq",
            )
            .fetch_one(&mut *$tx)
            .await?;
            sqlx::query(
                "INSERT INTO workflow_events (seq, run_id, task_run_id, task_title, group_name, \
                 at, from_state, to_state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(seq)
            .bind($run)
            .bind($task_run)
            .bind($title)
            .bind($group)
            .bind($at)
            .bind($from)
            .bind($to)
            .execute(&mut *$tx)
            .await?;
        } else {
            sqlx::query(
                "INSERT INTO workflow_events (run_id, task_run_id, task_title, group_name, at, \
                 from_state, to_state) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind($run)
            .bind($task_run)
            .bind($title)
            .bind($group)
            .bind($at)
            .bind($from)
            .bind($to)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// One state change of a run (`task_run_id` `None`) or of a task run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowFeedEvent {
    pub seq: i64,
    pub run_id: String,
    pub task_run_id: Option<String>,
    pub task_title: Option<String>,
    pub group: String,
    pub at: String,
    pub from_state: Option<String>,
    pub to_state: String,
}

/// One event of the stream: a task's state change or a workflow run's.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedItem {
    Task(crate::FeedEvent),
    Workflow(WorkflowFeedEvent),
}

impl FeedItem {
    pub fn seq(&self) -> i64 {
        match self {
            FeedItem::Task(e) => e.event.seq,
            FeedItem::Workflow(e) => e.seq,
        }
    }
}

/// The states a run or task run ends in (the workflow crate's terminal names).
const TERMINAL_RUN_STATES: &str = "('Completed', 'Error', 'Canceled')";

impl Store {
    /// Store a revision of a workflow, or find the one with the same digest. Returns the
    /// revision and whether it is new. Posting a deleted revision's definition again
    /// brings it back.
    pub async fn create_workflow(
        &self,
        w: &NewWorkflow<'_>,
    ) -> Result<(WorkflowRow, bool), StoreError> {
        match self.create_workflow_once(w).await {
            // Another writer took the version first (PostgreSQL, read committed): once
            // more finds its revision, or the next version.
            Err(StoreError::Database(sqlx::Error::Database(d))) if d.is_unique_violation() => {
                self.create_workflow_once(w).await
            }
            other => other,
        }
    }

    async fn create_workflow_once(
        &self,
        w: &NewWorkflow<'_>,
    ) -> Result<(WorkflowRow, bool), StoreError> {
        let now = now_rfc3339();
        let labels = serde_json::to_string(w.labels)
            .map_err(|e| StoreError::Corrupt(format!("encoding labels: {e}")))?;
        let (id, created) = with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let found: Option<String> = sqlx::query_scalar(
                "SELECT id FROM workflows WHERE group_name = $1 AND title = $2 AND digest = $3",
            )
            .bind(w.group)
            .bind(w.title)
            .bind(w.digest)
            .fetch_optional(&mut *tx)
            .await?;
            let out = match found {
                Some(id) => {
                    sqlx::query("UPDATE workflows SET deleted = 0 WHERE id = $1")
                        .bind(id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    (id, false)
                }
                None => {
                    let version: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM workflows \
                         WHERE group_name = $1 AND title = $2",
                    )
                    .bind(w.group)
                    .bind(w.title)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO workflows (id, group_name, title, version, engine, \
                         definition, digest, parameters, labels, dag, created_at, created_by) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(w.id)
                    .bind(w.group)
                    .bind(w.title)
                    .bind(version)
                    .bind(w.engine)
                    .bind(w.definition)
                    .bind(w.digest)
                    .bind(w.parameters)
                    .bind(labels.as_str())
                    .bind(w.dag)
                    .bind(now.as_str())
                    .bind(w.by)
                    .execute(&mut *tx)
                    .await?;
                    for (k, v) in w.labels {
                        sqlx::query(
                            "INSERT INTO workflow_labels (owner, key, value) VALUES ($1, $2, $3)",
                        )
                        .bind(w.id)
                        .bind(k.as_str())
                        .bind(v.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                    (w.id.to_string(), true)
                }
            };
            tx.commit().await?;
            out
        });
        let row = self
            .workflow_by_id(&id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("workflow {id} vanished")))?;
        Ok((row, created))
    }

    pub async fn workflow_by_id(&self, id: &str) -> Result<Option<WorkflowRow>, StoreError> {
        let sql = format!("SELECT {WF_COLS} FROM workflows WHERE id = $1");
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(decode_workflow)
                .transpose()?)
        })
    }

    /// Revision `version` of a group's workflow (deleted ones too: runs refer to them),
    /// or its latest revision that is not deleted.
    pub async fn workflow(
        &self,
        group: &str,
        title: &str,
        version: Option<i64>,
    ) -> Result<Option<WorkflowRow>, StoreError> {
        let sql = match version {
            Some(_) => format!(
                "SELECT {WF_COLS} FROM workflows WHERE group_name = $1 AND title = $2 \
                 AND version = $3"
            ),
            None => format!(
                "SELECT {WF_COLS} FROM workflows WHERE group_name = $1 AND title = $2 \
                 AND deleted = 0 ORDER BY version DESC LIMIT 1"
            ),
        };
        with_pool!(self, reader, |pool| {
            let mut q = sqlx::query(&sql).bind(group).bind(title);
            if let Some(v) = version {
                q = q.bind(v);
            }
            Ok(q.fetch_optional(pool)
                .await?
                .as_ref()
                .map(decode_workflow)
                .transpose()?)
        })
    }

    /// A page of workflows (not deleted) by id.
    pub async fn list_workflows(&self, q: &WorkflowQuery) -> Result<Vec<WorkflowRow>, StoreError> {
        if q.groups.as_ref().is_some_and(Vec::is_empty) || q.limit == 0 {
            return Ok(Vec::new());
        }
        with_pool!(self, reader, |pool| {
            let mut qb = builder(pool, "SELECT ");
            qb.push(WF_COLS).push(" FROM workflows w WHERE deleted = 0");
            if !q.all_versions {
                qb.push(
                    " AND version = (SELECT MAX(version) FROM workflows l \
                     WHERE l.group_name = w.group_name AND l.title = w.title AND l.deleted = 0)",
                );
            }
            if let Some(groups) = &q.groups {
                qb.push(" AND group_name IN (");
                let mut sep = qb.separated(", ");
                for g in groups {
                    sep.push_bind(g.as_str());
                }
                qb.push(")");
            }
            if let Some(t) = &q.title {
                qb.push(" AND title = ").push_bind(t.as_str());
            }
            if let Some(e) = &q.engine {
                qb.push(" AND engine = ").push_bind(e.as_str());
            }
            for (k, v) in &q.labels {
                qb.push(" AND EXISTS (SELECT 1 FROM workflow_labels x WHERE x.owner = w.id AND x.key = ")
                    .push_bind(k.as_str())
                    .push(" AND x.value = ")
                    .push_bind(v.as_str())
                    .push(")");
            }
            if let Some(after) = &q.after_id {
                qb.push(" AND id > ").push_bind(after.as_str());
            }
            qb.push(" ORDER BY id LIMIT ").push_bind(i64::from(q.limit));
            Ok(qb
                .build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_workflow)
                .collect::<Result<_, _>>()?)
        })
    }

    /// Hide a workflow's revision `version`, or all of them; how many were hidden.
    pub async fn delete_workflow(
        &self,
        group: &str,
        title: &str,
        version: Option<i64>,
    ) -> Result<u64, StoreError> {
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "UPDATE workflows SET deleted = 1 WHERE group_name = $1 AND title = $2 \
                 AND deleted = 0 AND ($3 IS NULL OR version = $3)",
            )
            .bind(group)
            .bind(title)
            .bind(version)
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Store a run with its first task runs, in one transaction.
    pub async fn create_workflow_run(
        &self,
        r: &NewWorkflowRun<'_>,
        task_runs: &[NewTaskRun],
    ) -> Result<WorkflowRunRow, StoreError> {
        let labels = serde_json::to_string(r.labels)
            .map_err(|e| StoreError::Corrupt(format!("encoding labels: {e}")))?;
        let (backend, now) = (self.backend(), now_rfc3339());
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO workflow_runs (id, group_name, workflow_id, title, version, engine, \
                 state, params, labels, cleanup, created_ms, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(r.id)
            .bind(r.group)
            .bind(r.workflow.id.as_str())
            .bind(r.workflow.title.as_str())
            .bind(r.workflow.version)
            .bind(r.workflow.engine.as_str())
            .bind(r.state)
            .bind(r.params)
            .bind(labels.as_str())
            .bind(r.cleanup)
            .bind(r.created_ms)
            .bind(r.by)
            .execute(&mut *tx)
            .await?;
            for (k, v) in r.labels {
                sqlx::query("INSERT INTO workflow_labels (owner, key, value) VALUES ($1, $2, $3)")
                    .bind(r.id)
                    .bind(k.as_str())
                    .bind(v.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            for t in task_runs {
                insert_task_run!(tx, r.id, t);
            }
            lock_seq!(tx, backend);
            workflow_event!(
                tx,
                backend,
                r.id,
                None::<&str>,
                None::<&str>,
                r.group,
                now.as_str(),
                None::<&str>,
                r.state
            );
            tx.commit().await?;
        });
        self.workflow_run(r.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("workflow run {} vanished", r.id)))
    }

    pub async fn workflow_run(&self, id: &str) -> Result<Option<WorkflowRunRow>, StoreError> {
        let sql = format!("SELECT {RUN_COLS} FROM workflow_runs WHERE id = $1");
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(decode_run)
                .transpose()?)
        })
    }

    /// A page of runs, newest first.
    pub async fn list_workflow_runs(
        &self,
        q: &WorkflowRunQuery,
    ) -> Result<Vec<WorkflowRunRow>, StoreError> {
        if q.groups.as_ref().is_some_and(Vec::is_empty) || q.limit == 0 {
            return Ok(Vec::new());
        }
        with_pool!(self, reader, |pool| {
            let mut qb = builder(pool, "SELECT ");
            qb.push(RUN_COLS).push(" FROM workflow_runs r WHERE 1 = 1");
            if let Some(groups) = &q.groups {
                qb.push(" AND group_name IN (");
                let mut sep = qb.separated(", ");
                for g in groups {
                    sep.push_bind(g.as_str());
                }
                qb.push(")");
            }
            if let Some(t) = &q.title {
                qb.push(" AND title = ").push_bind(t.as_str());
            }
            if !q.states.is_empty() {
                qb.push(" AND state IN (");
                let mut sep = qb.separated(", ");
                for s in &q.states {
                    sep.push_bind(s.as_str());
                }
                qb.push(")");
            }
            for (k, v) in &q.labels {
                qb.push(" AND EXISTS (SELECT 1 FROM workflow_labels x WHERE x.owner = r.id AND x.key = ")
                    .push_bind(k.as_str())
                    .push(" AND x.value = ")
                    .push_bind(v.as_str())
                    .push(")");
            }
            if let Some(t) = q.created_after_ms {
                qb.push(" AND created_ms >= ").push_bind(t);
            }
            if let Some(t) = q.created_before_ms {
                qb.push(" AND created_ms < ").push_bind(t);
            }
            if let Some(s) = q.before_seq {
                qb.push(" AND seq < ").push_bind(s);
            }
            qb.push(" ORDER BY seq DESC LIMIT ")
                .push_bind(i64::from(q.limit));
            Ok(qb
                .build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_run)
                .collect::<Result<_, _>>()?)
        })
    }

    /// Every attempt of every task of a run, with its task's state, by title then attempt.
    pub async fn task_runs(&self, run_id: &str) -> Result<Vec<TaskRunRow>, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query(
                "SELECT tr.id, tr.run_id, tr.task_title, tr.attempt, tr.state, tr.task_id, \
                 tr.external_id, tr.not_before_ms, tr.started_ms, tr.ended_ms, tr.message, \
                 t.state AS task_state \
                 FROM workflow_task_runs tr LEFT JOIN tasks t ON t.id = tr.task_id \
                 WHERE tr.run_id = $1 ORDER BY tr.task_title, tr.attempt",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode_task_run)
            .collect::<Result<_, _>>()?)
        })
    }

    /// The runs the scheduler looks after: not ended, oldest first, after `after_seq`
    /// (a page at a time), with their revision.
    pub async fn active_workflow_runs(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<WorkflowRunRow>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLS} FROM workflow_runs WHERE state NOT IN {TERMINAL_RUN_STATES} \
             AND seq > $1 ORDER BY seq LIMIT $2"
        );
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query(&sql)
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(decode_run)
                .collect::<Result<_, _>>()?)
        })
    }

    /// Task runs of a workflow's runs (by group and title) that hold a task now: what
    /// its per-workflow limit counts.
    pub async fn active_workflow_task_runs(
        &self,
        group: &str,
        title: &str,
    ) -> Result<u32, StoreError> {
        with_pool!(self, reader, |pool| {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM workflow_task_runs tr \
                 JOIN workflow_runs r ON r.id = tr.run_id \
                 WHERE r.group_name = $1 AND r.title = $2 \
                 AND r.state NOT IN ('Completed', 'Error', 'Canceled') \
                 AND tr.state IN ('Scheduled', 'Running')",
            )
            .bind(group)
            .bind(title)
            .fetch_one(pool)
            .await?;
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
    }

    /// Apply a change to run `id` if it is still at `revision`; whether it was (another
    /// server applied a plan first when not). The revision moves on.
    pub async fn change_workflow_run(
        &self,
        id: &str,
        revision: i64,
        c: &RunChange,
    ) -> Result<bool, StoreError> {
        let (backend, now) = (self.backend(), now_rfc3339());
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let before: Option<(String, String)> = sqlx::query_as(
                "SELECT state, group_name FROM workflow_runs WHERE id = $1 AND revision = $2",
            )
            .bind(id)
            .bind(revision)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((run_from, group)) = before else {
                return Ok(false);
            };
            // (task run, title, from, to) of each state change, for the event log.
            let mut changed: Vec<(String, String, Option<String>, String)> = Vec::new();
            for t in &c.task_runs {
                let Some(to) = &t.state else { continue };
                let from: Option<(String, String)> = sqlx::query_as(
                    "SELECT state, task_title FROM workflow_task_runs WHERE id = $1 AND run_id = $2",
                )
                .bind(t.id.as_str())
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some((from, title)) = from
                    && &from != to
                {
                    changed.push((t.id.clone(), title, Some(from), to.clone()));
                }
            }
            let mut qb = builder(pool, "UPDATE workflow_runs SET revision = revision + 1");
            if let Some(s) = &c.state {
                qb.push(", state = ").push_bind(s.as_str());
            }
            if let Some(t) = c.started_ms {
                qb.push(", started_ms = COALESCE(started_ms, ")
                    .push_bind(t)
                    .push(")");
            }
            if let Some(t) = c.ended_ms {
                qb.push(", ended_ms = ").push_bind(t);
            }
            if let Some(w) = c.wake_ms {
                qb.push(", wake_ms = ").push_bind(w);
            }
            if let Some(e) = &c.external_id {
                qb.push(", external_id = ").push_bind(e.as_str());
            }
            if let Some(m) = &c.message {
                qb.push(", message = ").push_bind(m.as_str());
            }
            if c.reopen {
                qb.push(", cancel_requested = 0, ended_ms = NULL, cleaned = 0");
            }
            qb.push(" WHERE id = ")
                .push_bind(id)
                .push(" AND revision = ")
                .push_bind(revision);
            let done = qb.build().execute(&mut *tx).await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            for t in &c.task_runs {
                let mut qb = builder(pool, "UPDATE workflow_task_runs SET id = id");
                if let Some(s) = &t.state {
                    qb.push(", state = ").push_bind(s.as_str());
                }
                if let Some(v) = &t.task_id {
                    qb.push(", task_id = ").push_bind(v.as_str());
                }
                if let Some(v) = &t.external_id {
                    qb.push(", external_id = ").push_bind(v.as_str());
                }
                if let Some(v) = t.started_ms {
                    qb.push(", started_ms = ").push_bind(v);
                }
                if let Some(v) = t.ended_ms {
                    qb.push(", ended_ms = ").push_bind(v);
                }
                if let Some(v) = &t.message {
                    qb.push(", message = ").push_bind(v.as_str());
                }
                qb.push(" WHERE id = ")
                    .push_bind(t.id.as_str())
                    .push(" AND run_id = ")
                    .push_bind(id);
                qb.build().execute(&mut *tx).await?;
            }
            for t in &c.new_task_runs {
                insert_task_run!(tx, id, t);
                changed.push((t.id.clone(), t.task_title.clone(), None, t.state.clone()));
            }
            let run_to = c.state.as_ref().filter(|s| **s != run_from);
            if run_to.is_some() || !changed.is_empty() {
                lock_seq!(tx, backend);
            }
            for (task_run, title, from, to) in &changed {
                workflow_event!(
                    tx,
                    backend,
                    id,
                    Some(task_run.as_str()),
                    Some(title.as_str()),
                    group.as_str(),
                    now.as_str(),
                    from.as_deref(),
                    to.as_str()
                );
            }
            if let Some(to) = run_to {
                workflow_event!(
                    tx,
                    backend,
                    id,
                    None::<&str>,
                    None::<&str>,
                    group.as_str(),
                    now.as_str(),
                    Some(run_from.as_str()),
                    to.as_str()
                );
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Ask a run that has not ended to stop; whether it had not ended. The revision
    /// moves on, so a plan made before the request is not applied.
    pub async fn request_workflow_cancel(&self, id: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE workflow_runs SET cancel_requested = 1, revision = revision + 1 \
             WHERE id = $1 AND state NOT IN {TERMINAL_RUN_STATES}"
        );
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(&sql)
                .bind(id)
                .execute(&mut *pool.conn().await?)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Workflow events after `after_seq`, in order.
    pub async fn workflow_feed_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<WorkflowFeedEvent>, StoreError> {
        with_pool!(self, reader, |pool| {
            let rows = sqlx::query(
                "SELECT seq, run_id, task_run_id, task_title, group_name, at, from_state, \
                 to_state FROM workflow_events WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(WorkflowFeedEvent {
                        seq: r.try_get("seq")?,
                        run_id: r.try_get("run_id")?,
                        task_run_id: r.try_get("task_run_id")?,
                        task_title: r.try_get("task_title")?,
                        group: r.try_get("group_name")?,
                        at: r.try_get("at")?,
                        from_state: r.try_get("from_state")?,
                        to_state: r.try_get("to_state")?,
                    })
                })
                .collect()
        })
    }

    /// The newest workflow event's seq (0 when there is none).
    pub async fn last_workflow_event_seq(&self) -> Result<i64, StoreError> {
        with_pool!(self, reader, |pool| {
            let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM workflow_events")
                .fetch_one(pool)
                .await?;
            Ok(seq.unwrap_or(0))
        })
    }

    /// Task and workflow events after `after_seq`, in the one order of their shared
    /// sequence (at most `limit`).
    pub async fn feed_items_after(
        &self,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<FeedItem>, StoreError> {
        let tasks = self.feed_after(after_seq, limit).await?;
        let workflows = self.workflow_feed_after(after_seq, limit).await?;
        let mut items: Vec<FeedItem> = tasks
            .into_iter()
            .map(FeedItem::Task)
            .chain(workflows.into_iter().map(FeedItem::Workflow))
            .collect();
        items.sort_by_key(FeedItem::seq);
        // Each list holds all of its events up to its last, so the first `limit` of the
        // merge hold every event up to theirs.
        items.truncate(limit as usize);
        Ok(items)
    }

    /// The newest event's seq of either log (0 when there is none).
    pub async fn last_feed_seq(&self) -> Result<i64, StoreError> {
        Ok(self
            .last_event_seq()
            .await?
            .max(self.last_workflow_event_seq().await?))
    }

    /// Mark an ended run's data as cleaned before it is removed; whether it was ended and
    /// not clean yet (the revision moves on, so a retry read before this is refused).
    pub async fn mark_workflow_run_cleaned(&self, id: &str) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE workflow_runs SET cleaned = 1, revision = revision + 1 \
             WHERE id = $1 AND cleaned = 0 AND state IN {TERMINAL_RUN_STATES}"
        );
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(&sql)
                .bind(id)
                .execute(&mut *pool.conn().await?)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Delete ended runs created before `before_ms` (of `groups`, or all), with their
    /// task runs and labels; their ids.
    pub async fn delete_finished_workflow_runs(
        &self,
        before_ms: i64,
        groups: Option<&[String]>,
    ) -> Result<Vec<String>, StoreError> {
        if groups.is_some_and(<[String]>::is_empty) {
            return Ok(Vec::new());
        }
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let mut qb = builder(pool, "SELECT id FROM workflow_runs WHERE state IN ");
            qb.push(TERMINAL_RUN_STATES)
                .push(" AND created_ms < ")
                .push_bind(before_ms);
            if let Some(groups) = groups {
                qb.push(" AND group_name IN (");
                let mut sep = qb.separated(", ");
                for g in groups {
                    sep.push_bind(g.as_str());
                }
                qb.push(")");
            }
            let ids: Vec<String> = qb
                .build()
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>(0))
                .collect::<Result<_, _>>()?;
            let mut deleted = Vec::with_capacity(ids.len());
            let ended = format!("state IN {TERMINAL_RUN_STATES}");
            for id in ids {
                // Only while it has still ended (a retry may have reopened it since the
                // select): its task runs, then it, then its labels and events.
                let still_ended: Option<i64> = sqlx::query_scalar(&format!(
                    "SELECT seq FROM workflow_runs WHERE id = $1 AND {ended}"
                ))
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if still_ended.is_none() {
                    continue;
                }
                for sql in [
                    "DELETE FROM workflow_task_runs WHERE run_id = $1",
                    "DELETE FROM workflow_runs WHERE id = $1",
                    "DELETE FROM workflow_events WHERE run_id = $1",
                    "DELETE FROM workflow_labels WHERE owner = $1",
                ] {
                    sqlx::query(sql).bind(id.as_str()).execute(&mut *tx).await?;
                }
                deleted.push(id);
            }
            tx.commit().await?;
            Ok(deleted)
        })
    }
}
