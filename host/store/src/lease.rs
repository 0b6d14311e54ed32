//! Several servers on one store: who holds a task, and for how long.
//!
//! A task past QUEUED is held by one server instance (`owner`) until `lease_until`
//! (milliseconds since the Unix epoch on the database's own clock, so servers whose
//! clocks disagree still agree on expiry). A server takes a lease when it claims a task
//! ([`Store::claim_ids`]), renews all of its leases in one statement while it lives
//! ([`Store::renew_leases`]), and takes over another server's task only once that lease
//! has run out ([`Store::adopt`], a conditional update: of two servers trying at once,
//! one wins). Every write a driver makes names its owner ([`Store::set_logs`],
//! [`Store::transition_held`]); a server whose lease was taken from it gets
//! [`StoreError::NotHeld`] and stops without touching the task again. See
//! `migrations/*/0006_leases.sql`.

use std::time::Duration;

use sqlx::Row;
use tessera_core::State;

use crate::{Backend, Pools, Store, StoreError, WritePool, parse_state, quoted};

/// Who holds what a server claims, and how long a claim or renewal keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The server instance (stable across its restarts).
    pub owner: String,
    /// How long a claim or renewal holds; another server may adopt after that.
    pub ttl: Duration,
}

impl Lease {
    pub(crate) fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The states a held task can be in (a QUEUED task is nobody's).
pub(crate) const HELD_STATES: [State; 4] = [
    State::Initializing,
    State::Running,
    State::Paused,
    State::Canceling,
];

/// The database's clock, in milliseconds since the Unix epoch: every lease is set and
/// compared on the one clock all servers share.
pub(crate) fn db_now_ms(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

/// Whether the row's lease has run out (or it never had one), as a 0/1 column.
pub(crate) fn lease_free_sql(backend: Backend) -> String {
    format!(
        "CAST(CASE WHEN owner IS NULL OR lease_until IS NULL OR lease_until <= {} \
         THEN 1 ELSE 0 END AS BIGINT)",
        db_now_ms(backend)
    )
}

/// What [`Store::adopt`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The task is ours now; `from` held it before (`None`: nobody, or a store from
    /// before leases).
    Adopted { from: Option<String> },
    /// Another server holds a live lease, or the task is not in a held state.
    Refused,
}

impl Store {
    /// Renew the lease of every task `lease.owner` holds; returns their ids. Called
    /// well within the lease's time to live, so a live server never loses a task.
    pub async fn renew_leases(&self, lease: &Lease) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "UPDATE tasks SET lease_until = {} + $1 WHERE owner = $2 AND state IN ({}) \
             RETURNING id",
            db_now_ms(self.backend()),
            quoted(HELD_STATES)
        );
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let ids = sqlx::query_scalar::<_, String>(&sql)
                .bind(lease.ttl_ms())
                .bind(lease.owner.as_str())
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// The tasks `owner` holds that a cancel has reached (CANCELING): how a cancel
    /// made on any server reaches the one running the task.
    pub async fn canceling_held(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        with_pool!(self, reader, |pool| {
            Ok(sqlx::query_scalar::<_, String>(
                "SELECT id FROM tasks WHERE state = $1 AND owner = $2 ORDER BY seq",
            )
            .bind(State::Canceling.as_str())
            .bind(owner)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Take task `id` for `lease.owner` if it is in a held state and its lease is ours
    /// already or has run out (atomically: of several servers trying at once, one gets
    /// it).
    pub async fn adopt(&self, id: &str, lease: &Lease) -> Result<Adoption, StoreError> {
        let backend = self.backend();
        let select = format!(
            "SELECT state, owner, {} AS free FROM tasks WHERE id = $1{}",
            lease_free_sql(backend),
            match backend {
                Backend::Sqlite => "",
                Backend::Postgres => " FOR UPDATE",
            }
        );
        let update = format!(
            "UPDATE tasks SET owner = $1, lease_until = {} + $2 WHERE id = $3",
            db_now_ms(backend)
        );
        with_pool!(self, writer, |pool| {
            let mut tx = pool.begin_write().await?;
            let Some(row) = sqlx::query(&select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                return Ok(Adoption::Refused);
            };
            let state = parse_state(id, &row.try_get::<String, _>("state")?)?;
            let from: Option<String> = row.try_get("owner")?;
            let free = row.try_get::<i64, _>("free")? == 1;
            let ours = from.as_deref() == Some(lease.owner.as_str());
            if !HELD_STATES.contains(&state) || !(free || ours) {
                return Ok(Adoption::Refused);
            }
            sqlx::query(&update)
                .bind(lease.owner.as_str())
                .bind(lease.ttl_ms())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Adoption::Adopted { from })
        })
    }

    /// Who holds task `id` now, if anyone (`None` also for a task that does not exist).
    pub async fn holder(&self, id: &str) -> Result<Option<String>, StoreError> {
        with_pool!(self, reader, |pool| {
            let owner: Option<Option<String>> =
                sqlx::query_scalar("SELECT owner FROM tasks WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
            Ok(owner.flatten())
        })
    }
}
