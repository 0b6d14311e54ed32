//! One harness for both backends.
//!
//! * SQLite: a fresh database file in a temporary directory for every test.
//! * PostgreSQL: when `TESSERA_TEST_POSTGRES_URL` is set, every test gets a schema of its
//!   own (`CREATE SCHEMA tessera_test_…`), and its store connects with
//!   `options=-c search_path=<schema>` added to the URL, so its tables, its migrations
//!   table and every query live in that schema and tests running in parallel never see
//!   each other's rows. The schema is dropped when the test passes (a failed test leaves
//!   it for inspection). Without the URL the PostgreSQL tests skip, unless
//!   `TESSERA_REQUIRE_POSTGRES=1`, which makes them fail.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Connection, PgConnection, SqliteConnection};
use tessera_core::task::NewTask;
use tessera_core::tes::{Executor, Task, TaskLog};
use tessera_store::{Backend, Store};

pub const POSTGRES_URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";
pub const REQUIRE_POSTGRES_VAR: &str = "TESSERA_REQUIRE_POSTGRES";

pub struct Db {
    pub store: Store,
    /// The URL the store was opened with (reopen it, or corrupt rows behind its back).
    pub url: String,
    /// PostgreSQL: the server URL without the schema, and the schema.
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Run SQL on a connection of its own, beside the store.
    pub async fn raw_execute(&self, sql: &str) {
        match self.backend() {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// Drop the test's PostgreSQL schema (called when a test passed).
    pub async fn finish(self) {
        let Db { store, pg, .. } = self;
        drop(store);
        if let Some((base, schema)) = pg {
            let mut conn = PgConnection::connect(&base).await.unwrap();
            sqlx::raw_sql(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.unwrap();
        }
    }
}

pub async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    // A directory that does not exist yet: the store creates it and the file.
    let url = format!("sqlite://{}/data/tessera.db", dir.path().display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    Db {
        store,
        url,
        pg: None,
        _dir: Some(dir),
    }
}

/// `None` (skip) when no PostgreSQL is configured and none is required.
pub async fn postgres() -> Option<Db> {
    let base = match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            if std::env::var(REQUIRE_POSTGRES_VAR).as_deref() == Ok("1") {
                panic!("{REQUIRE_POSTGRES_VAR}=1 but {POSTGRES_URL_VAR} is not set");
            }
            eprintln!("skipped: set {POSTGRES_URL_VAR} to run the PostgreSQL store tests");
            return None;
        }
    };
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let schema = format!(
        "tessera_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        nanos % 1_000_000_000
    );
    let mut conn = PgConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let url = with_search_path(&base, &schema);
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    Some(Db {
        store,
        url,
        pg: Some((base, schema)),
        _dir: None,
    })
}

/// The URL with `options=-c search_path=<schema>` added (URL-encoded).
pub fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Generate `#[tokio::test]`s that run each named `async fn(&Db)` once per backend:
/// `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = $crate::support::sqlite().await;
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = $crate::support::postgres().await else {
                        return;
                    };
                    super::$name(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

/// A small valid task.
pub fn new_task(name: Option<&str>, tags: &[(&str, &str)]) -> NewTask {
    NewTask {
        id: tessera_core::id::new_task_id(),
        group: String::new(),
        origin: Default::default(),
        priority: 0,
        extra: Default::default(),
        run: None,
        spec: Task {
            name: name.map(str::to_string),
            executors: Some(vec![Executor {
                image: "busybox".into(),
                command: vec!["echo".into(), "hello".into()],
                ..Executor::default()
            }]),
            tags: (!tags.is_empty()).then(|| {
                tags.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>()
            }),
            ..Task::default()
        },
        creation_time: time::OffsetDateTime::now_utc(),
        reason: Some("waiting for a free slot".into()),
        logs: Vec::<TaskLog>::new(),
    }
}

pub fn names(n: usize) -> Vec<NewTask> {
    (0..n)
        .map(|i| new_task(Some(&format!("task-{i}")), &[]))
        .collect()
}
