//! The one error type of the store.

/// Everything that can go wrong in the store. Never carries a database password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not one the store understands.
    #[error("invalid store URL: {0}")]
    InvalidUrl(String),
    /// Preparing the place of an SQLite file (its directory) failed.
    #[error("preparing the SQLite database at {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Creating or upgrading the schema failed.
    #[error("migrating the store schema failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A task with one of the given ids is already stored (the whole batch was refused).
    #[error("a task id is already taken: {0}")]
    DuplicateId(String),
    /// The change contradicts what is stored (e.g. a plugin version reinstalled with
    /// other bytes).
    #[error("{0}")]
    Conflict(String),
    /// Something the change refers to does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A task could not be encoded for storage.
    #[error("encoding task {task_id} failed: {source}")]
    Encode {
        task_id: String,
        #[source]
        source: serde_json::Error,
    },
    /// Another server holds the task now (its lease ran out here and was taken): the
    /// caller must leave the task alone.
    #[error("task {0} is held by another server")]
    NotHeld(String),
    /// A stored row does not decode (bad JSON, unknown state name).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The same, on the store's direct SQLite connection (inserts).
    #[error("database error: {0}")]
    Direct(#[from] rusqlite::Error),
}
