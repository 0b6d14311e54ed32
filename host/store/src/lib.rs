//! Tessera's task store: tasks, their tags and their state events, in SQLite (the
//! default: one file, no server) or PostgreSQL.
//!
//! One [`Store`] type serves both. Inside, it holds the backend's own sqlx pools:
//!
//! * **SQLite**: one writer lock, under which every write goes (so concurrent writers
//!   queue there instead of failing with `SQLITE_BUSY`): inserts on a synchronous
//!   connection of the store's own, run inline (see `direct`), every other write on one
//!   sqlx connection; and a pool of read-only connections. In WAL mode readers never
//!   block the writer nor it them.
//! * **PostgreSQL**: one pool; conditional updates take row locks (`FOR UPDATE`), the
//!   dispatcher's claim skips rows other claimers hold (`SKIP LOCKED`).
//!
//! Every state change is a conditional `UPDATE … WHERE id = ? AND state IN (…)` built from
//! [`State::allowed_sources`], written in the same transaction as its event row, so the
//! first writer of a terminal state wins and a terminal task is never left.
//!
//! Lists are newest first with keyset paging on the store sequence number (`seq`), so a
//! page costs the same at any depth.

mod direct;
mod error;
mod migrate;

pub use error::StoreError;

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Pool, Postgres, QueryBuilder, Row, Sqlite,
    Transaction, TransactionManager as _, Type,
};
use tessera_core::task::{NewTask, TaskExtra};
use tessera_core::tes::{Task, TaskLog};
use tessera_core::time_fmt::{format_rfc3339, now_rfc3339, parse_rfc3339};
use tessera_core::{Event, State, TaskRecord};
use time::OffsetDateTime;

/// The reason a task gets when the dispatcher claims it (QUEUED → INITIALIZING).
pub const CLAIM_REASON: &str = "claimed for execution";

/// How long an SQLite connection waits for a lock held by another process before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read-only SQLite connections (reads run beside the single writer).
const SQLITE_READERS: u32 = 8;
/// PostgreSQL connections per store.
const PG_CONNECTIONS: u32 = 10;
/// Rows per multi-row INSERT (8 parameters per task row stays far below both backends'
/// parameter limits).
const INSERT_CHUNK: usize = 500;
/// PostgreSQL advisory lock held by each transaction that appends tasks or events, from
/// just before its first append to its commit: rows then commit in `seq` order, as with
/// SQLite's single writer, so a reader that walks by `seq` (a keyset page, the event
/// stream, a notifier's cursor) never passes a row that commits late with a lower `seq`.
const PG_SEQ_LOCK: i64 = 0x7465_7373_6572_6101;

/// Take [`PG_SEQ_LOCK`] for the rest of the transaction `$tx` (on PostgreSQL; SQLite's
/// single writer already orders its commits). A macro: the body is compiled for each
/// backend's transaction type.
macro_rules! lock_seq {
    ($tx:expr, $backend:expr) => {
        if $backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_SEQ_LOCK)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// Columns of a full task row, in the order [`decode_task`] reads them.
macro_rules! full_cols {
    () => {
        "seq, id, state, reason, name, group_name, origin, priority, spec, extra, logs, creation_time"
    };
}
/// Columns of a minimal task row (no spec and logs JSON to load and parse).
macro_rules! minimal_cols {
    () => {
        "seq, id, state, reason, name, group_name, origin, priority, creation_time"
    };
}

/// Run `$body` with `$pool` bound to the backend's pool for the role: `writer` (SQLite:
/// the single writer connection) or `reader`. The body is compiled once per backend, so
/// the same code drives both concrete sqlx drivers.
macro_rules! with_pool {
    ($store:expr, $role:ident, |$pool:ident| $body:expr) => {
        match &$store.pools {
            Pools::Sqlite { $role: $pool, .. } => $body,
            Pools::SqliteMemory($pool) => $body,
            Pools::Postgres($pool) => $body,
        }
    };
}

/// The groups a retention pass covers.
#[derive(Debug, Clone, Copy)]
pub enum GroupScope<'a> {
    Only(&'a str),
    /// Every group but these (those with a retention of their own).
    Except(&'a [String]),
}

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A task list query (GA4GH TES `ListTasks`). All filters AND together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only tasks whose name starts with this (case-sensitive, no wildcards). Empty or
    /// `None`: no filter.
    pub name_prefix: Option<String>,
    pub state: Option<State>,
    /// `(key, value)` pairs that must all match; an empty value means "the key exists,
    /// with any value".
    pub tags: Vec<(String, String)>,
    /// Keyset cursor: only tasks with `seq < before_seq` (the `seq` of the last task of
    /// the previous page).
    pub before_seq: Option<i64>,
    /// Only tasks of these groups; `None`: every group (an empty list matches nothing).
    pub groups: Option<Vec<String>>,
    /// Only tasks that came in through these APIs; `None`: any.
    pub origins: Option<Vec<tessera_core::task::Origin>>,
    /// Page size; 0 gives an empty page.
    pub limit: u32,
    /// Skip loading spec and logs: records come back with `spec` default except its
    /// `name`, and no logs.
    pub minimal: bool,
    /// Stop reading rows once those read hold more than this many bytes of stored task
    /// documents (spec and logs; the row that crosses it is included, so a page is never
    /// empty while rows remain). 0: no budget.
    pub max_bytes: usize,
}

/// Where a task stands, without its document ([`Store::tasks_in_states`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStub {
    pub seq: i64,
    pub id: String,
    pub state: State,
    /// The server instance holding it (see [`Lease`]).
    pub owner: Option<String>,
    /// Its lease has run out (or it never had one): another server may adopt it.
    pub lease_free: bool,
}

/// The task store. Cheap to clone: clones share the pools.
#[derive(Debug, Clone)]
pub struct Store {
    pools: Pools,
    /// Counts this process's writes that add task events (inserts, claims,
    /// transitions): who waits for tasks to move (the workflow scheduler) wakes on it
    /// instead of polling. Other processes' writes are not seen here.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug, Clone)]
enum Pools {
    Sqlite {
        writer: SqliteWriter,
        reader: Pool<Sqlite>,
    },
    /// `sqlite::memory:`: each connection is its own database, so one pooled connection
    /// both reads and writes.
    SqliteMemory(Pool<Sqlite>),
    Postgres(Pool<Postgres>),
}

/// The SQLite write side, held by the store itself rather than in a sqlx pool (a pool
/// pings a connection each time it is given back, a round trip to the connection's
/// worker thread per write): one lock, and under it the two connections that write — the
/// sqlx connection for every write but inserts, and the direct connection for inserts
/// ([`direct`]). Holding the lock to use either means they never contend for SQLite's
/// write lock.
#[derive(Clone)]
struct SqliteWriter {
    /// The checkpointer holds it weakly: it stops with the store.
    conns: Arc<tokio::sync::Mutex<WriterConns>>,
    /// Wakes the checkpointer ([`direct::checkpoint_loop`]).
    checkpoint_due: Arc<tokio::sync::Notify>,
}

struct WriterConns {
    sqlx: SqliteConnection,
    direct: rusqlite::Connection,
    /// A transaction on the sqlx connection was dropped open: its rollback is queued on
    /// that connection's worker, and must run before the direct connection writes.
    rollback_queued: bool,
    /// Commits on the direct connection since the last checkpoint.
    commits: u64,
}

impl std::fmt::Debug for SqliteWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteWriter")
    }
}

type WriterGuard = tokio::sync::OwnedMutexGuard<WriterConns>;

/// A write transaction on the [`SqliteWriter`]: the connection stays locked until it
/// commits or is dropped (then sqlx rolls it back before the connection's next command,
/// as a dropped `sqlx::Transaction` does).
struct SqliteWriteTx {
    conns: WriterGuard,
    open: bool,
}

impl std::ops::Deref for SqliteWriteTx {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conns.sqlx
    }
}

impl std::ops::DerefMut for SqliteWriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conns.sqlx
    }
}

impl SqliteWriteTx {
    async fn commit(mut self) -> Result<(), sqlx::Error> {
        <Sqlite as Database>::TransactionManager::commit(&mut self.conns.sqlx).await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for SqliteWriteTx {
    fn drop(&mut self) {
        if self.open {
            <Sqlite as Database>::TransactionManager::start_rollback(&mut self.conns.sqlx);
            self.conns.rollback_queued = true;
        }
    }
}

impl SqliteWriter {
    /// The sqlx writer connection, for a statement of its own.
    async fn conn(
        &self,
    ) -> Result<tokio::sync::OwnedMappedMutexGuard<WriterConns, SqliteConnection>, sqlx::Error>
    {
        let conns = self.conns.clone().lock_owned().await;
        Ok(tokio::sync::OwnedMutexGuard::map(conns, |c| &mut c.sqlx))
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front: a read-then-write transaction can
    /// never fail to upgrade its lock, even if another process shares the file.
    async fn begin_write(&self) -> Result<SqliteWriteTx, sqlx::Error> {
        let mut conns = self.conns.clone().lock_owned().await;
        <Sqlite as Database>::TransactionManager::begin(
            &mut conns.sqlx,
            Some("BEGIN IMMEDIATE".into()),
        )
        .await?;
        Ok(SqliteWriteTx { conns, open: true })
    }

    /// Insert tasks through the direct connection: inline for a few rows, off the async
    /// thread for a big batch.
    async fn insert(
        &self,
        tasks: &[NewTask],
        encoded: &[Encoded<'_>],
        now: &str,
    ) -> Result<HashMap<String, i64>, StoreError> {
        self.with_direct(tasks.len() > direct::INLINE_ROWS, |conn| {
            direct::insert(conn, tasks, encoded, now)
        })
        .await
    }

    /// Append audit entries through the direct connection, off the async thread.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.with_direct(true, |conn| direct::append_audit(conn, entries))
            .await
    }

    /// Run `write` (one transaction) on the direct connection under the writer lock,
    /// off the async thread when `big`, and count the commit for the checkpointer.
    async fn with_direct<T>(
        &self,
        big: bool,
        write: impl FnOnce(&mut rusqlite::Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conns = self.conns.clone().lock_owned().await;
        if conns.rollback_queued {
            // A round trip on the sqlx connection runs after the queued rollback.
            conns.sqlx.ping().await?;
            conns.rollback_queued = false;
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let done = if big && multi_thread {
            tokio::task::block_in_place(|| write(&mut conns.direct))
        } else {
            write(&mut conns.direct)
        }?;
        conns.commits += 1;
        if conns.commits % direct::CHECKPOINT_AFTER == 0 {
            self.checkpoint_due.notify_one();
        }
        Ok(done)
    }
}

/// A pooled connection, for a statement of its own on the write side.
trait WriteConn {
    type Db: Database;
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<Self::Db>, sqlx::Error>;
}

impl<DB: Database> WriteConn for Pool<DB> {
    type Db = DB;
    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
        self.acquire().await
    }
}

/// Which database a pool or writer talks to (for [`builder`]).
trait HasDb {
    type Db: Database;
}

impl<DB: Database> HasDb for Pool<DB> {
    type Db = DB;
}

impl HasDb for SqliteWriter {
    type Db = Sqlite;
}

/// Starting a write transaction, the backend's way.
trait WritePool {
    type Db: Database;
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl WritePool for Pool<Sqlite> {
    type Db = Sqlite;
    /// `BEGIN IMMEDIATE` takes the write lock up front: a read-then-write transaction can
    /// never fail to upgrade its lock, even if another process shares the file.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl WritePool for Pool<Postgres> {
    type Db = Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.begin().await
    }
}

/// A query builder for the pool's database (fixes the builder's type parameter).
fn builder<'a, P: HasDb>(_pool: &P, sql: &str) -> QueryBuilder<'a, P::Db> {
    QueryBuilder::new(sql)
}

/// `'A', 'B', …` for an `IN (…)` list. State names are constants of ours, never input.
fn quoted(states: impl IntoIterator<Item = State>) -> String {
    states
        .into_iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

static TERMINAL: LazyLock<String> =
    LazyLock::new(|| quoted(State::ALL.into_iter().filter(|s| s.is_terminal())));

static NON_TERMINAL: LazyLock<String> =
    LazyLock::new(|| quoted(State::ALL.into_iter().filter(|s| !s.is_terminal())));

/// A task encoded for its rows.
struct Encoded<'a> {
    id: &'a str,
    group: &'a str,
    origin: &'static str,
    priority: i64,
    /// `None` when the task has nothing beyond TES.
    extra: Option<String>,
    reason: Option<&'a str>,
    name: Option<&'a str>,
    spec: String,
    logs: String,
    creation_time: String,
}

impl<'a> Encoded<'a> {
    fn new(task: &'a NewTask) -> Result<Encoded<'a>, StoreError> {
        Ok(Encoded {
            id: &task.id,
            group: &task.group,
            origin: task.origin.as_str(),
            priority: i64::from(task.priority),
            extra: if task.extra.is_empty() {
                None
            } else {
                Some(
                    serde_json::to_string(&task.extra).map_err(|source| StoreError::Encode {
                        task_id: task.id.clone(),
                        source,
                    })?,
                )
            },
            reason: task.reason.as_deref(),
            name: task.spec.name.as_deref(),
            spec: serde_json::to_string(&task.spec).map_err(|source| StoreError::Encode {
                task_id: task.id.clone(),
                source,
            })?,
            logs: encode_logs(&task.id, &task.logs)?,
            creation_time: format_rfc3339(task.creation_time),
        })
    }
}

fn encode_logs(task_id: &str, logs: &[TaskLog]) -> Result<String, StoreError> {
    serde_json::to_string(logs).map_err(|source| StoreError::Encode {
        task_id: task_id.to_string(),
        source,
    })
}

/// A stored RFC 3339 time; anything else is a corrupt row.
fn parse_time(task_id: &str, s: &str) -> Result<OffsetDateTime, StoreError> {
    parse_rfc3339(s).ok_or_else(|| StoreError::Corrupt(format!("task {task_id}: time {s:?}")))
}

fn parse_origin(task_id: &str, s: &str) -> Result<tessera_core::task::Origin, StoreError> {
    tessera_core::task::Origin::from_str(s)
        .map_err(|e| StoreError::Corrupt(format!("task {task_id}: {e}")))
}

fn parse_state(task_id: &str, s: &str) -> Result<State, StoreError> {
    State::from_str(s).map_err(|e| StoreError::Corrupt(format!("task {task_id}: {e}")))
}

/// The smallest string greater than every string that starts with `prefix` (in code
/// point order, which is UTF-8 byte order), or `None` if there is none. A string `s`
/// starts with `prefix` exactly when `prefix <= s < upper`, which is an index range.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            0xD7FF => Some('\u{E000}'),
            n => char::from_u32(n + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Decode a row of [`full_cols!`] (or [`minimal_cols!`] when `minimal`).
fn decode_task<R>(row: &R, minimal: bool) -> Result<TaskRecord, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let name: Option<String> = row.try_get("name")?;
    let (spec, logs) = if minimal {
        let spec = Task {
            name,
            ..Task::default()
        };
        (spec, Vec::new())
    } else {
        let spec: String = row.try_get("spec")?;
        let logs: String = row.try_get("logs")?;
        let spec = serde_json::from_str::<Task>(&spec)
            .map_err(|e| StoreError::Corrupt(format!("task {id}: spec: {e}")))?;
        let logs = serde_json::from_str::<Vec<TaskLog>>(&logs)
            .map_err(|e| StoreError::Corrupt(format!("task {id}: logs: {e}")))?;
        (spec, logs)
    };
    let extra = match (minimal, row.try_get::<Option<String>, _>("extra")) {
        (true, _) | (false, Ok(None)) => TaskExtra::default(),
        (false, Ok(Some(e))) => serde_json::from_str(&e)
            .map_err(|e| StoreError::Corrupt(format!("task {id}: extra: {e}")))?,
        (false, Err(e)) => return Err(e.into()),
    };
    Ok(TaskRecord {
        seq: row.try_get("seq")?,
        state: parse_state(&id, &state)?,
        reason: row.try_get("reason")?,
        group: row.try_get("group_name")?,
        origin: parse_origin(&id, &row.try_get::<String, _>("origin")?)?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?)
            .map_err(|_| StoreError::Corrupt(format!("task {id}: priority out of range")))?,
        spec,
        extra,
        logs,
        creation_time: parse_time(&id, &row.try_get::<String, _>("creation_time")?)?,
        id,
    })
}

fn decode_event<R>(row: &R) -> Result<Event, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let task_id: String = row.try_get("task_id")?;
    let from_state: Option<String> = row.try_get("from_state")?;
    let to_state: String = row.try_get("to_state")?;
    Ok(Event {
        seq: row.try_get("seq")?,
        at: parse_time(&task_id, &row.try_get::<String, _>("at")?)?,
        from_state: from_state.map(|s| parse_state(&task_id, &s)).transpose()?,
        to_state: parse_state(&task_id, &to_state)?,
        reason: row.try_get("reason")?,
        task_id,
    })
}

fn map_insert_error(e: sqlx::Error) -> StoreError {
    match e.as_database_error() {
        Some(db) if db.is_unique_violation() => StoreError::DuplicateId(db.message().to_string()),
        _ => StoreError::Database(e),
    }
}

/// Where a store URL points.
enum Target {
    Sqlite {
        options: SqliteConnectOptions,
        memory: bool,
    },
    Postgres(PgConnectOptions),
}

fn parse_url(url: &str) -> Result<Target, StoreError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(StoreError::InvalidUrl(
            "empty; expected sqlite://PATH, a file path or postgres://…".into(),
        ));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The error text of the parser never repeats the password.
        return PgConnectOptions::from_str(url)
            .map(Target::Postgres)
            .map_err(|e| StoreError::InvalidUrl(format!("PostgreSQL URL: {e}")));
    }
    let memory = url.contains(":memory:") || url.contains("mode=memory");
    if url.starts_with("sqlite:") {
        return SqliteConnectOptions::from_str(url)
            .map(|options| Target::Sqlite { options, memory })
            .map_err(|e| StoreError::InvalidUrl(format!("{url}: {e}")));
    }
    if let Some((scheme, _)) = url.split_once("://") {
        return Err(StoreError::InvalidUrl(format!(
            "unsupported scheme {scheme:?}; expected sqlite://PATH, a file path or postgres://…"
        )));
    }
    Ok(Target::Sqlite {
        options: SqliteConnectOptions::new().filename(url),
        memory: url == ":memory:",
    })
}

/// The database holds plugin secrets: its file is made readable by its owner only
/// (0600) before SQLite opens it, whatever the umask, and SQLite gives its WAL and
/// shared-memory files the same mode. Files from before are tightened.
fn private_database_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let private = std::fs::Permissions::from_mode(0o600);
    std::fs::set_permissions(path, private.clone())?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        match std::fs::set_permissions(&side, private.clone()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The file of a SQLite store URL (`None` for PostgreSQL and in-memory databases), for
/// checks such as "no allowed directory holds the database".
pub fn sqlite_file(url: &str) -> Result<Option<std::path::PathBuf>, StoreError> {
    Ok(match parse_url(url)? {
        Target::Sqlite {
            options,
            memory: false,
        } => Some(options.get_filename().to_path_buf()),
        _ => None,
    })
}

impl Store {
    /// Open the store at `url`: `sqlite://PATH`, `sqlite:PATH`, a bare file path (the file
    /// and its directory are created if missing), `sqlite::memory:` (tests), or
    /// `postgres://…` (a `?options=-c%20search_path%3DSCHEMA` parameter selects a schema).
    /// Brings the schema up to date; safe to call again and from several processes.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        match parse_url(url)? {
            Target::Postgres(options) => Self::connect_postgres(options).await,
            Target::Sqlite { options, memory } => Self::connect_sqlite(options, memory).await,
        }
    }

    async fn connect_sqlite(
        options: SqliteConnectOptions,
        memory: bool,
    ) -> Result<Store, StoreError> {
        let migrator = migrate::migrator(Backend::Sqlite).await?;
        let options = options
            .create_if_missing(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal);
        if memory {
            // Each connection to `:memory:` is its own database: the one connection must
            // both read and write.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?;
            migrator.run(&pool).await?;
            return Ok(Store {
                changes: Arc::new(tokio::sync::watch::Sender::new(0)),
                pools: Pools::SqliteMemory(pool),
            });
        }
        let path = options.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| StoreError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
        }
        private_database_files(&path).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
        // One connection that lives as long as the store: every write is serialised here.
        let mut writer =
            SqliteConnection::connect_with(&options.clone().journal_mode(SqliteJournalMode::Wal))
                .await?;
        migrator.run(&mut writer).await?;
        let writer = SqliteWriter {
            conns: Arc::new(tokio::sync::Mutex::new(WriterConns {
                sqlx: writer,
                direct: direct::open(&path)?,
                rollback_queued: false,
                commits: 0,
            })),
            checkpoint_due: Arc::new(tokio::sync::Notify::new()),
        };
        tokio::spawn(direct::checkpoint_loop(
            Arc::downgrade(&writer.conns),
            writer.checkpoint_due.clone(),
        ));
        let reader = SqlitePoolOptions::new()
            .max_connections(SQLITE_READERS)
            .connect_with(options.create_if_missing(false).pragma("query_only", "ON"))
            .await?;
        Ok(Store {
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            pools: Pools::Sqlite { writer, reader },
        })
    }

    async fn connect_postgres(options: PgConnectOptions) -> Result<Store, StoreError> {
        let migrator = migrate::migrator(Backend::Postgres).await?;
        // Migrate on a connection of its own and close it, so the migrator's advisory
        // lock is released even if a migration fails half-way.
        let mut conn = PgConnection::connect_with(&options).await?;
        let migrated = migrator.run(&mut conn).await;
        let _ = conn.close().await;
        migrated?;
        let pool = PgPoolOptions::new()
            .max_connections(PG_CONNECTIONS)
            .connect_with(options)
            .await?;
        Ok(Store {
            changes: Arc::new(tokio::sync::watch::Sender::new(0)),
            pools: Pools::Postgres(pool),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } | Pools::SqliteMemory(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Whether the database answers.
    /// Tell who waits for task changes that there was one (when `any`).
    fn changed(&self, any: bool) {
        if any {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A receiver that sees each change this process makes to tasks' states (a counter
    /// that moves): wait on it, then read the store.
    pub fn watch_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, reader, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Store new tasks, all in one transaction (group commit): each QUEUED, with its tags
    /// and a first event (from none to QUEUED, with the task's reason). Returns the
    /// records, in the order given, with their `seq`. If any id is taken, nothing is
    /// stored and the answer is [`StoreError::DuplicateId`].
    pub async fn insert_tasks(&self, tasks: &[NewTask]) -> Result<Vec<TaskRecord>, StoreError> {
        let out = self.insert_tasks_inner(tasks).await?;
        self.changed(!out.is_empty());
        Ok(out)
    }

    async fn insert_tasks_inner(&self, tasks: &[NewTask]) -> Result<Vec<TaskRecord>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = tasks
            .iter()
            .map(Encoded::new)
            .collect::<Result<Vec<_>, _>>()?;
        let now = now_rfc3339();
        let queued = State::Queued.as_str();
        let backend = self.backend();
        let seqs: HashMap<String, i64> = if let Pools::Sqlite { writer, .. } = &self.pools {
            writer.insert(tasks, &encoded, &now).await?
        } else {
            with_pool!(self, writer, |pool| {
                let mut tx = pool.begin_write().await?;
                lock_seq!(tx, backend);
                let mut seqs = HashMap::with_capacity(encoded.len());
                for chunk in encoded.chunks(INSERT_CHUNK) {
                    let mut qb = builder(
                        pool,
                        "INSERT INTO tasks \
                     (id, state, reason, name, group_name, origin, priority, spec, extra, \
                     logs, creation_time, updated_at) ",
                    );
                    qb.push_values(chunk, |mut b, t| {
                        b.push_bind(t.id)
                            .push_bind(queued)
                            .push_bind(t.reason)
                            .push_bind(t.name)
                            .push_bind(t.group)
                            .push_bind(t.origin)
                            .push_bind(t.priority)
                            .push_bind(t.spec.as_str())
                            .push_bind(t.extra.as_deref())
                            .push_bind(t.logs.as_str())
                            .push_bind(t.creation_time.as_str())
                            .push_bind(now.as_str());
                    });
                    qb.push(" RETURNING seq, id");
                    let rows = qb
                        .build()
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(map_insert_error)?;
                    for row in rows {
                        seqs.insert(
                            row.try_get::<String, _>("id")?,
                            row.try_get::<i64, _>("seq")?,
                        );
                    }

                    let mut qb = builder(
                        pool,
                        "INSERT INTO task_events (task_id, at, to_state, reason) ",
                    );
                    qb.push_values(chunk, |mut b, t| {
                        b.push_bind(t.id)
                            .push_bind(now.as_str())
                            .push_bind(queued)
                            .push_bind(t.reason);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                let mut tags = Vec::new();
                for task in tasks {
                    if let (Some(map), Some(seq)) = (&task.spec.tags, seqs.get(&task.id)) {
                        tags.extend(map.iter().map(|(k, v)| (*seq, k.as_str(), v.as_str())));
                    }
                }
                for chunk in tags.chunks(INSERT_CHUNK) {
                    let mut qb = builder(pool, "INSERT INTO task_tags (task_seq, key, value) ");
                    qb.push_values(chunk, |mut b, (seq, k, v)| {
                        b.push_bind(*seq).push_bind(*k).push_bind(*v);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                let runs: Vec<(&str, &tessera_core::task::RunLink)> = tasks
                    .iter()
                    .filter_map(|t| t.run.as_ref().map(|r| (t.id.as_str(), r)))
                    .collect();
                for chunk in runs.chunks(INSERT_CHUNK) {
                    let mut qb = builder(
                        pool,
                        "INSERT INTO runs (task_id, operation_id, version, request, rerun_of, \
                         response_url, delivery) ",
                    );
                    qb.push_values(chunk, |mut b, (id, r)| {
                        b.push_bind(*id)
                            .push_bind(r.operation_id.as_str())
                            .push_bind(r.version)
                            .push_bind(r.request.as_str())
                            .push_bind(r.rerun_of.as_deref())
                            .push_bind(r.response_url.as_deref())
                            .push_bind(
                                r.response_url
                                    .as_ref()
                                    .map(|_| operations::DELIVERY_PENDING),
                            );
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                seqs
            })
        };
        tasks
            .iter()
            .map(|t| {
                let seq = seqs.get(&t.id).copied().ok_or_else(|| {
                    StoreError::Corrupt(format!("task {}: the insert returned no seq", t.id))
                })?;
                Ok(TaskRecord {
                    id: t.id.clone(),
                    seq,
                    state: State::Queued,
                    reason: t.reason.clone(),
                    group: t.group.clone(),
                    origin: t.origin,
                    priority: t.priority,
                    extra: t.extra.clone(),
                    spec: t.spec.clone(),
                    logs: t.logs.clone(),
                    creation_time: t.creation_time,
                })
            })
            .collect()
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        with_pool!(self, reader, |pool| {
            sqlx::query(concat!(
                "SELECT ",
                full_cols!(),
                " FROM tasks WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(pool)
            .await?
            .map(|row| decode_task(&row, false))
            .transpose()
        })
    }

    /// The group a task belongs to; `None` when there is no such task.
    pub async fn task_group(&self, id: &str) -> Result<Option<String>, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(
                sqlx::query_scalar("SELECT group_name FROM tasks WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?,
            )
        })
    }

    /// A page of tasks, newest first. See [`ListQuery`].
    pub async fn list_tasks(&self, q: &ListQuery) -> Result<Vec<TaskRecord>, StoreError> {
        if q.limit == 0 {
            return Ok(Vec::new());
        }
        with_pool!(self, reader, |pool| {
            let mut qb = builder(pool, "SELECT ");
            qb.push(if q.minimal {
                minimal_cols!()
            } else {
                full_cols!()
            });
            qb.push(" FROM tasks t WHERE 1 = 1");
            if let Some(before) = q.before_seq {
                qb.push(" AND t.seq < ").push_bind(before);
            }
            if let Some(state) = q.state {
                qb.push(" AND t.state = ").push_bind(state.as_str());
            }
            match q.groups.as_deref() {
                None => {}
                Some([]) => {
                    qb.push(" AND 1 = 0");
                }
                Some(groups) => {
                    qb.push(" AND t.group_name IN (");
                    let mut sep = qb.separated(", ");
                    for g in groups {
                        sep.push_bind(g.as_str());
                    }
                    qb.push(")");
                }
            }
            if let Some(origins) = &q.origins {
                qb.push(" AND t.origin IN (");
                let mut sep = qb.separated(", ");
                for o in origins {
                    sep.push_bind(o.as_str());
                }
                qb.push(")");
            }
            if let Some(prefix) = q.name_prefix.as_deref().filter(|p| !p.is_empty()) {
                // A byte range, not LIKE: case-sensitive, no wildcards, and indexable.
                qb.push(" AND t.name >= ").push_bind(prefix);
                if let Some(upper) = prefix_upper_bound(prefix) {
                    qb.push(" AND t.name < ").push_bind(upper);
                }
            }
            for (key, value) in &q.tags {
                qb.push(" AND EXISTS (SELECT 1 FROM task_tags g WHERE g.task_seq = t.seq");
                if let Some(before) = q.before_seq {
                    // Redundant, but lets a merge join start at the cursor.
                    qb.push(" AND g.task_seq < ").push_bind(before);
                }
                qb.push(" AND g.key = ").push_bind(key.as_str());
                if !value.is_empty() {
                    qb.push(" AND g.value = ").push_bind(value.as_str());
                }
                qb.push(")");
            }
            qb.push(" ORDER BY t.seq DESC LIMIT ")
                .push_bind(i64::from(q.limit));
            if q.max_bytes == 0 || q.minimal {
                // No budget: all rows in one answer from the worker (row by row costs a
                // wake-up per row).
                return qb
                    .build()
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .map(|row| decode_task(row, q.minimal))
                    .collect();
            }
            // Row by row, so that a byte budget stops the read, not only the answer.
            let mut rows = qb.build().fetch(pool);
            let mut out = Vec::new();
            let mut bytes = 0usize;
            while let Some(row) = futures_util::TryStreamExt::try_next(&mut rows).await? {
                let spec: &str = row.try_get("spec")?;
                let logs: &str = row.try_get("logs")?;
                bytes += spec.len() + logs.len();
                out.push(decode_task(&row, q.minimal)?);
                if bytes > q.max_bytes {
                    break;
                }
            }
            Ok(out)
        })
    }

    /// Move a task to `to` if its current state allows it
    /// ([`State::allowed_sources`]); in the same transaction write the event, set the
    /// reason, and replace the logs when given. Returns the previous state, or `None` if
    /// the task does not exist or may not move (then nothing changed).
    pub async fn transition(
        &self,
        id: &str,
        to: State,
        reason: Option<&str>,
        logs: Option<&[TaskLog]>,
    ) -> Result<Option<State>, StoreError> {
        self.transition_held(id, to, reason, logs, None).await
    }

    /// [`Store::transition`] by the server that holds the task: with `owner`, the change
    /// is made only while `owner` holds it, and [`StoreError::NotHeld`] says another
    /// server took it over.
    pub async fn transition_held(
        &self,
        id: &str,
        to: State,
        reason: Option<&str>,
        logs: Option<&[TaskLog]>,
        owner: Option<&str>,
    ) -> Result<Option<State>, StoreError> {
        let out = self
            .transition_held_inner(id, to, reason, logs, owner)
            .await?;
        self.changed(out.is_some());
        Ok(out)
    }

    async fn transition_held_inner(
        &self,
        id: &str,
        to: State,
        reason: Option<&str>,
        logs: Option<&[TaskLog]>,
        owner: Option<&str>,
    ) -> Result<Option<State>, StoreError> {
        let allowed = State::allowed_sources(to);
        if allowed.is_empty() {
            return Ok(None);
        }
        let logs = logs.map(|l| encode_logs(id, l)).transpose()?;
        let update = format!(
            "UPDATE tasks SET state = $1, reason = $2, updated_at = $3{} \
             WHERE id = $4 AND state IN ({})",
            if logs.is_some() { ", logs = $5" } else { "" },
            quoted(allowed.iter().copied()),
        );
        let backend = self.backend();
        let select = match backend {
            Backend::Sqlite => "SELECT state, owner FROM tasks WHERE id = $1",
            Backend::Postgres => "SELECT state, owner FROM tasks WHERE id = $1 FOR UPDATE",
        };
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let Some(row) = sqlx::query(select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(None);
            };
            let from = parse_state(id, &row.try_get::<String, _>("state")?)?;
            if let Some(owner) = owner
                && row.try_get::<Option<String>, _>("owner")?.as_deref() != Some(owner)
                && !from.is_terminal()
            {
                return Err(StoreError::NotHeld(id.to_string()));
            }
            if !allowed.contains(&from) {
                return Ok(None);
            }
            let mut query = sqlx::query(&update)
                .bind(to.as_str())
                .bind(reason)
                .bind(now.as_str())
                .bind(id);
            if let Some(logs) = &logs {
                query = query.bind(logs.as_str());
            }
            if query.execute(&mut *tx).await?.rows_affected() == 0 {
                return Ok(None);
            }
            lock_seq!(tx, backend);
            sqlx::query(
                "INSERT INTO task_events (task_id, at, from_state, to_state, reason) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(now.as_str())
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(from))
        })
    }

    /// Replace the logs of a task `owner` holds, unless it is terminal (its final logs
    /// are written with its final state). Returns whether they were written;
    /// [`StoreError::NotHeld`] when another server holds the task now.
    pub async fn set_logs(
        &self,
        id: &str,
        logs: &[TaskLog],
        owner: &str,
    ) -> Result<bool, StoreError> {
        let logs = encode_logs(id, logs)?;
        // One statement: the row is written when we hold it, and otherwise says why not.
        let sql = format!(
            "UPDATE tasks SET logs = CASE WHEN owner = $3 THEN $1 ELSE logs END, \
             updated_at = CASE WHEN owner = $3 THEN $2 ELSE updated_at END \
             WHERE id = $4 AND state NOT IN ({}) RETURNING owner",
            *TERMINAL
        );
        let now = now_rfc3339();
        let holder: Option<Option<String>> = with_pool!(self, writer, |pool| {
            sqlx::query_scalar(&sql)
                .bind(logs.as_str())
                .bind(now.as_str())
                .bind(owner)
                .bind(id)
                .fetch_optional(&mut *pool.conn().await?)
                .await?
        });
        match holder {
            None => Ok(false),
            Some(h) if h.as_deref() == Some(owner) => Ok(true),
            Some(_) => Err(StoreError::NotHeld(id.to_string())),
        }
    }

    /// Set a task's reason unless it is terminal. No event is written.
    pub async fn set_reason(&self, id: &str, reason: Option<&str>) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE tasks SET reason = $1, updated_at = $2 WHERE id = $3 AND state NOT IN ({})",
            *TERMINAL
        );
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            sqlx::query(&sql)
                .bind(reason)
                .bind(now.as_str())
                .bind(id)
                .execute(&mut *pool.conn().await?)
                .await?;
        });
        Ok(())
    }

    /// Set the reason of every task in `state` (e.g. why QUEUED tasks are waiting). No
    /// events; terminal states are refused (their tasks never change). Returns how many
    /// tasks changed.
    pub async fn set_reason_where_state(
        &self,
        state: State,
        reason: &str,
    ) -> Result<u64, StoreError> {
        if state.is_terminal() {
            return Ok(0);
        }
        let now = now_rfc3339();
        with_pool!(self, writer, |pool| {
            let done = sqlx::query(
                "UPDATE tasks SET reason = $1, updated_at = $2 \
                 WHERE state = $3 AND (reason IS NULL OR reason <> $1)",
            )
            .bind(reason)
            .bind(now.as_str())
            .bind(state.as_str())
            .execute(&mut *pool.conn().await?)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Claim up to `limit` QUEUED tasks, oldest first, for execution: each moves to
    /// INITIALIZING (with an event and [`CLAIM_REASON`]) and is returned. Concurrent
    /// claimers never get the same task. A queued task whose stored data no longer
    /// decodes is ended SYSTEM_ERROR instead (it could never run, and must not block the
    /// queue).
    pub async fn claim_queued(
        &self,
        limit: u32,
        lease: &Lease,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let out = self.claim_queued_inner(limit, lease).await?;
        self.changed(!out.is_empty());
        Ok(out)
    }

    async fn claim_queued_inner(
        &self,
        limit: u32,
        lease: &Lease,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let backend = self.backend();
        let now_ms = lease::db_now_ms(backend);
        let claim = match backend {
            // The single writer makes select-then-update atomic.
            Backend::Sqlite => format!(
                "UPDATE tasks SET state = $1, reason = $2, updated_at = $3, owner = $6, \
                 lease_until = {now_ms} + $7 \
                 WHERE seq IN (SELECT seq FROM tasks WHERE state = $4 \
                 ORDER BY priority DESC, seq LIMIT $5) \
                 AND state = $4 RETURNING {}",
                full_cols!()
            ),
            // The picked rows are locked once, in a materialised CTE (a LIMIT … SKIP LOCKED
            // subquery inside `IN` may be re-run by the planner and pick more rows); rows
            // another claimer holds are skipped rather than waited for.
            Backend::Postgres => format!(
                "WITH picked AS MATERIALIZED (SELECT seq AS picked_seq FROM tasks \
                 WHERE state = $4 ORDER BY priority DESC, seq LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 UPDATE tasks SET state = $1, reason = $2, updated_at = $3, owner = $6, \
                 lease_until = {now_ms} + $7 FROM picked \
                 WHERE seq = picked_seq AND state = $4 RETURNING {}",
                full_cols!()
            ),
        };
        let now = now_rfc3339();
        let (queued, initializing) = (State::Queued.as_str(), State::Initializing.as_str());
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let rows = sqlx::query(&claim)
                .bind(initializing)
                .bind(CLAIM_REASON)
                .bind(now.as_str())
                .bind(queued)
                .bind(i64::from(limit))
                .bind(lease.owner.as_str())
                .bind(lease.ttl_ms())
                .fetch_all(&mut *tx)
                .await?;
            let mut claimed = Vec::with_capacity(rows.len());
            let mut broken = Vec::new();
            for row in &rows {
                match decode_task(row, false) {
                    Ok(task) => claimed.push(task),
                    Err(e) => broken.push((row.try_get::<String, _>("id")?, e.to_string())),
                }
            }
            claimed.sort_by_key(|t| (std::cmp::Reverse(t.priority), t.seq));
            // After the claim's row locks (a transition takes its row, then this lock).
            lock_seq!(tx, backend);
            if !claimed.is_empty() {
                let mut qb = builder(
                    pool,
                    "INSERT INTO task_events (task_id, at, from_state, to_state, reason) ",
                );
                qb.push_values(&claimed, |mut b, t| {
                    b.push_bind(t.id.as_str())
                        .push_bind(now.as_str())
                        .push_bind(queued)
                        .push_bind(initializing)
                        .push_bind(CLAIM_REASON);
                });
                qb.build().execute(&mut *tx).await?;
            }
            for (id, why) in &broken {
                tracing::error!(task_id = %id, error = %why, "queued task is unreadable; ending it SYSTEM_ERROR");
                let reason = format!("the stored task could not be read: {why}");
                let failed = State::SystemError.as_str();
                sqlx::query("UPDATE tasks SET state = $1, reason = $2 WHERE id = $3")
                    .bind(failed)
                    .bind(reason.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO task_events (task_id, at, from_state, to_state, reason) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.as_str())
                .bind(now.as_str())
                .bind(queued)
                .bind(failed)
                .bind(reason.as_str())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(claimed)
        })
    }

    /// Up to `limit` QUEUED tasks, oldest first, for routing (the placed ones are then
    /// claimed with [`Store::claim_ids`]).
    pub async fn oldest_queued(&self, limit: u32) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = concat!(
            "SELECT ",
            full_cols!(),
            " FROM tasks WHERE state = $1 ORDER BY priority DESC, seq LIMIT $2"
        );
        with_pool!(self, reader, |pool| {
            sqlx::query(sql)
                .bind(State::Queued.as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| decode_task(row, false))
                .collect()
        })
    }

    /// Claim the given tasks for execution, in one transaction: each that is still
    /// QUEUED moves to INITIALIZING with an event and `reason` ([`CLAIM_REASON`] by
    /// default). Returns the ids claimed, in the order given; the others (canceled
    /// meanwhile, claimed by another server) are left alone.
    pub async fn claim_ids(
        &self,
        ids: &[&str],
        reason: Option<&str>,
        lease: &Lease,
    ) -> Result<Vec<String>, StoreError> {
        let out = self.claim_ids_inner(ids, reason, lease).await?;
        self.changed(!out.is_empty());
        Ok(out)
    }

    async fn claim_ids_inner(
        &self,
        ids: &[&str],
        reason: Option<&str>,
        lease: &Lease,
    ) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let reason = reason.unwrap_or(CLAIM_REASON);
        let now = now_rfc3339();
        let (queued, initializing) = (State::Queued.as_str(), State::Initializing.as_str());
        let mut claimed = Vec::with_capacity(ids.len());
        let backend = self.backend();
        let now_ms = lease::db_now_ms(backend);
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            for chunk in ids.chunks(INSERT_CHUNK) {
                let mut qb = builder(pool, "UPDATE tasks SET state = ");
                qb.push_bind(initializing)
                    .push(", reason = ")
                    .push_bind(reason)
                    .push(", updated_at = ")
                    .push_bind(now.as_str())
                    .push(", owner = ")
                    .push_bind(lease.owner.as_str())
                    .push(format!(", lease_until = {now_ms} + "))
                    .push_bind(lease.ttl_ms())
                    .push(" WHERE state = ")
                    .push_bind(queued)
                    .push(" AND id IN (");
                let mut sep = qb.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                qb.push(") RETURNING id");
                let rows = qb.build().fetch_all(&mut *tx).await?;
                let got: std::collections::HashSet<String> = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>("id"))
                    .collect::<Result<_, _>>()?;
                claimed.extend(
                    chunk
                        .iter()
                        .filter(|id| got.contains(**id))
                        .map(|id| id.to_string()),
                );
            }
            // Events after every row lock is taken (a transition takes its row, then this
            // lock: the other order could deadlock).
            lock_seq!(tx, backend);
            for chunk in claimed.chunks(INSERT_CHUNK) {
                let mut qb = builder(
                    pool,
                    "INSERT INTO task_events (task_id, at, from_state, to_state, reason) ",
                );
                qb.push_values(chunk, |mut b, id| {
                    b.push_bind(id.as_str())
                        .push_bind(now.as_str())
                        .push_bind(queued)
                        .push_bind(initializing)
                        .push_bind(reason);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(claimed)
    }

    /// A page of the tasks in `states`, oldest first, after `after_seq` (the `seq` of
    /// the last of the previous page): only what decides what to do with each, so a
    /// start-up with many unfinished tasks reads them a page at a time.
    pub async fn tasks_in_states(
        &self,
        states: &[State],
        after_seq: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TaskStub>, StoreError> {
        if states.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let select = format!(
            "SELECT seq, id, state, owner, {} AS free FROM tasks WHERE state IN (",
            lease::lease_free_sql(self.backend())
        );
        type Row5 = (i64, String, String, Option<String>, i64);
        let rows: Vec<Row5> = with_pool!(self, reader, |pool| {
            let mut qb = builder(pool, &select);
            let mut sep = qb.separated(", ");
            for s in states {
                sep.push_bind(s.as_str());
            }
            qb.push(") AND seq > ")
                .push_bind(after_seq.unwrap_or(i64::MIN))
                .push(" ORDER BY seq LIMIT ")
                .push_bind(i64::from(limit));
            qb.build()
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get("seq")?,
                        row.try_get("id")?,
                        row.try_get("state")?,
                        row.try_get("owner")?,
                        row.try_get("free")?,
                    ))
                })
                .collect::<Result<_, sqlx::Error>>()?
        });
        rows.into_iter()
            .map(|(seq, id, state, owner, free)| {
                let state = State::from_str(&state)
                    .map_err(|e| StoreError::Corrupt(format!("task {id}'s state: {e}")))?;
                Ok(TaskStub {
                    seq,
                    id,
                    state,
                    owner,
                    lease_free: free == 1,
                })
            })
            .collect()
    }

    /// Up to `limit` finished tasks of `scope` that last changed before `cutoff`, oldest
    /// first: (id, group, origin). The retention pass deletes them (what they left in the
    /// object store first) with [`Store::delete_finished`].
    pub async fn finished_before(
        &self,
        cutoff: OffsetDateTime,
        scope: GroupScope<'_>,
        limit: u32,
    ) -> Result<Vec<(String, String, tessera_core::task::Origin)>, StoreError> {
        // Stored times have as many fraction digits as they need, so text order is time
        // order only to the second: compare with the cutoff's second and a dot, which
        // sorts after every time in earlier seconds and before every time in its own
        // (`…:05.` < `…:05.1Z` and `…:05Z`). Rows from the cutoff's own second wait for
        // the next pass.
        let whole = format_rfc3339(cutoff.replace_nanosecond(0).unwrap_or(cutoff));
        let cutoff = format!("{}.", whole.get(..19).unwrap_or(&whole));
        with_pool!(self, reader, |pool| {
            // The same state list as the partial index tasks_finished_updated (migration 5).
            let mut qb = builder(
                pool,
                &format!(
                    "SELECT id, group_name, origin FROM tasks WHERE state IN ({}) AND updated_at < ",
                    *TERMINAL
                ),
            );
            qb.push_bind(cutoff.as_str());
            match scope {
                GroupScope::Only(g) => {
                    qb.push(" AND group_name = ").push_bind(g);
                }
                GroupScope::Except(groups) if !groups.is_empty() => {
                    qb.push(" AND group_name NOT IN (");
                    let mut sep = qb.separated(", ");
                    for g in groups {
                        sep.push_bind(g.as_str());
                    }
                    qb.push(")");
                }
                GroupScope::Except(_) => {}
            }
            qb.push(" ORDER BY updated_at LIMIT ")
                .push_bind(i64::from(limit));
            let rows: Vec<(String, String, String)> = qb.build_query_as().fetch_all(pool).await?;
            rows.into_iter()
                .map(|(id, group, origin)| {
                    let origin = parse_origin(&id, &origin)?;
                    Ok((id, group, origin))
                })
                .collect()
        })
    }

    /// The ids of every task not in a terminal state, oldest first (cheap: nothing else
    /// is read).
    pub async fn unfinished_task_ids(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT id FROM tasks WHERE state IN ({}) ORDER BY seq",
            *NON_TERMINAL
        );
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_scalar::<_, String>(&sql)
                .fetch_all(pool)
                .await?)
        })
    }

    /// A task's state changes, in the order they happened.
    pub async fn events(&self, task_id: &str) -> Result<Vec<Event>, StoreError> {
        with_pool!(self, reader, |pool| {
            sqlx::query(
                "SELECT seq, task_id, at, from_state, to_state, reason \
                 FROM task_events WHERE task_id = $1 ORDER BY seq",
            )
            .bind(task_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(decode_event)
            .collect()
        })
    }

    /// Unfinished tasks by state (terminal states count 0): the range of the state
    /// index that unfinished tasks occupy, not the whole table, so it stays cheap however
    /// many tasks have ended.
    pub async fn count_unfinished_by_state(&self) -> Result<Vec<(State, i64)>, StoreError> {
        let sql = format!(
            "SELECT state, COUNT(*) AS n FROM tasks WHERE state IN ({}) GROUP BY state",
            *NON_TERMINAL
        );
        self.count_states(&sql).await
    }

    /// How many tasks are in each state: every state of [`State::ALL`], in that order,
    /// zeros included.
    pub async fn count_by_state(&self) -> Result<Vec<(State, i64)>, StoreError> {
        self.count_states("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
            .await
    }

    async fn count_states(&self, sql: &str) -> Result<Vec<(State, i64)>, StoreError> {
        let counted: Vec<(String, i64)> = with_pool!(self, reader, |pool| {
            sqlx::query(sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| Ok((row.try_get("state")?, row.try_get("n")?)))
                .collect::<Result<_, sqlx::Error>>()?
        });
        let mut counts: Vec<(State, i64)> = State::ALL.iter().map(|s| (*s, 0)).collect();
        for (name, n) in counted {
            let state = State::from_str(&name)
                .map_err(|e| StoreError::Corrupt(format!("a task's state: {e}")))?;
            if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == state) {
                slot.1 += n;
            }
        }
        Ok(counts)
    }
}

mod agents;
mod audit;
mod cron;
mod identity;
mod lease;
mod notify;
mod operations;
mod plugins;
mod quota;
mod workflows;
pub use agents::{EntryKind, NamedRow};
pub use audit::{AuditEntry, AuditRecord};
pub use cron::CronRow;
pub use identity::{GroupRow, TokenRow, UserRow};
pub use lease::{Adoption, Lease};
pub use notify::{Failed, FeedEvent, Retry};
pub use operations::{DELIVERY_PENDING, DeliveryOutcome, OperationRow, RunQuery, RunRow};
pub use plugins::{BindingRow, Deleted, Installed, PluginVersionRow};
pub use workflows::{
    FeedItem, NewTaskRun, NewWorkflow, NewWorkflowRun, RunChange, TaskRunChange, TaskRunRow,
    WorkflowFeedEvent, WorkflowQuery, WorkflowRow, WorkflowRunQuery, WorkflowRunRow,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper_bound("abc").as_deref(), Some("abd"));
        assert_eq!(prefix_upper_bound("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }

    #[test]
    fn urls() {
        assert!(matches!(
            parse_url("postgres://u:p@h/db"),
            Ok(Target::Postgres(_))
        ));
        assert!(matches!(
            parse_url("sqlite:///tmp/x.db"),
            Ok(Target::Sqlite { memory: false, .. })
        ));
        assert!(matches!(
            parse_url("/tmp/x.db"),
            Ok(Target::Sqlite { memory: false, .. })
        ));
        assert!(matches!(
            parse_url("sqlite::memory:"),
            Ok(Target::Sqlite { memory: true, .. })
        ));
        assert!(matches!(
            parse_url("mysql://h/db"),
            Err(StoreError::InvalidUrl(_))
        ));
        assert!(matches!(parse_url(" "), Err(StoreError::InvalidUrl(_))));
    }
}
