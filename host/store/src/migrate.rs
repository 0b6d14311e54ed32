//! Schema migrations, embedded in the binary: one SQL flavour per backend, applied with
//! sqlx's migrator (which records them in `_sqlx_migrations`, checks their checksums and,
//! on PostgreSQL, holds an advisory lock so that servers starting together do not race).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::Backend;

/// `(version, description, sql)`, oldest first. Never edit a released entry: add one.
type Embedded = &'static [(i64, &'static str, &'static str)];

const SQLITE: Embedded = &[
    (
        1,
        "tasks",
        include_str!("../migrations/sqlite/0001_tasks.sql"),
    ),
    (
        2,
        "plugins",
        include_str!("../migrations/sqlite/0002_plugins.sql"),
    ),
    (
        3,
        "notifications",
        include_str!("../migrations/sqlite/0003_notifications.sql"),
    ),
    (
        4,
        "binding previous settings",
        include_str!("../migrations/sqlite/0004_binding_previous_settings.sql"),
    ),
    (
        5,
        "finished index",
        include_str!("../migrations/sqlite/0005_finished_index.sql"),
    ),
    (
        6,
        "leases",
        include_str!("../migrations/sqlite/0006_leases.sql"),
    ),
    (
        7,
        "identity",
        include_str!("../migrations/sqlite/0007_identity.sql"),
    ),
    (
        8,
        "task groups",
        include_str!("../migrations/sqlite/0008_task_groups.sql"),
    ),
    (
        9,
        "audit and quotas",
        include_str!("../migrations/sqlite/0009_audit_quotas.sql"),
    ),
    (
        10,
        "operations and runs",
        include_str!("../migrations/sqlite/0010_operations_runs.sql"),
    ),
    (
        11,
        "agents, configs and secrets",
        include_str!("../migrations/sqlite/0011_agents_configs.sql"),
    ),
    (
        12,
        "cron tasks and retention per group",
        include_str!("../migrations/sqlite/0012_cron_tasks.sql"),
    ),
    (
        13,
        "workflows, runs and task runs",
        include_str!("../migrations/sqlite/0013_workflows.sql"),
    ),
];

const POSTGRES: Embedded = &[
    (
        1,
        "tasks",
        include_str!("../migrations/postgres/0001_tasks.sql"),
    ),
    (
        2,
        "plugins",
        include_str!("../migrations/postgres/0002_plugins.sql"),
    ),
    (
        3,
        "notifications",
        include_str!("../migrations/postgres/0003_notifications.sql"),
    ),
    (
        4,
        "binding previous settings",
        include_str!("../migrations/postgres/0004_binding_previous_settings.sql"),
    ),
    (
        5,
        "finished index",
        include_str!("../migrations/postgres/0005_finished_index.sql"),
    ),
    (
        6,
        "leases",
        include_str!("../migrations/postgres/0006_leases.sql"),
    ),
    (
        7,
        "identity",
        include_str!("../migrations/postgres/0007_identity.sql"),
    ),
    (
        8,
        "task groups",
        include_str!("../migrations/postgres/0008_task_groups.sql"),
    ),
    (
        9,
        "audit and quotas",
        include_str!("../migrations/postgres/0009_audit_quotas.sql"),
    ),
    (
        10,
        "operations and runs",
        include_str!("../migrations/postgres/0010_operations_runs.sql"),
    ),
    (
        11,
        "agents, configs and secrets",
        include_str!("../migrations/postgres/0011_agents_configs.sql"),
    ),
    (
        12,
        "cron tasks and retention per group",
        include_str!("../migrations/postgres/0012_cron_tasks.sql"),
    ),
    (
        13,
        "workflows, runs and task runs",
        include_str!("../migrations/postgres/0013_workflows.sql"),
    ),
];

#[derive(Debug)]
struct Source(Embedded);

impl MigrationSource<'static> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        let migrations = self
            .0
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

pub(crate) async fn migrator(backend: Backend) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source(match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    }))
    .await
}
