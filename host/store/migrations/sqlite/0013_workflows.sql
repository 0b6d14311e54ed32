-- Workflows, their runs and task runs, SQLite flavour. Keep in step with
-- ../postgres/0013_workflows.sql.

-- One revision of a workflow: immutable once made (a new definition is a new version).
CREATE TABLE workflows (
    id          TEXT    PRIMARY KEY,
    group_name  TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    engine      TEXT    NOT NULL,
    -- The definition as posted (JSON), and the SHA-256 of its canonical form: posting
    -- the same definition again finds this revision.
    definition  TEXT    NOT NULL,
    digest      TEXT    NOT NULL,
    -- Declared parameters (JSON array) and labels (JSON object, also in workflow_labels).
    parameters  TEXT    NOT NULL,
    labels      TEXT    NOT NULL,
    -- The task graph as the engine reported it at validation (JSON).
    dag         TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    created_by  TEXT    NOT NULL,
    -- Soft delete: the revision is hidden, its runs stay readable.
    deleted     INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_name, title, version)
);
CREATE UNIQUE INDEX workflows_digest ON workflows (group_name, title, digest);

-- A workflow run. `revision` moves with every change the scheduler applies (a
-- compare-and-set), so several servers planning one run apply one plan.
CREATE TABLE workflow_runs (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    group_name       TEXT    NOT NULL,
    workflow_id      TEXT    NOT NULL REFERENCES workflows (id),
    title            TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    engine           TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    -- Parameter values as given and labels (JSON).
    params           TEXT    NOT NULL,
    labels           TEXT    NOT NULL,
    cleanup          TEXT    NOT NULL,
    cleaned          INTEGER NOT NULL DEFAULT 0,
    -- The external engine's id for the run.
    external_id      TEXT,
    message          TEXT,
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    ended_ms         INTEGER,
    -- When the scheduler must look at the run next (a retry's backoff); NULL: when a
    -- task of the run changes state.
    wake_ms          INTEGER,
    revision         INTEGER NOT NULL DEFAULT 0,
    created_by       TEXT    NOT NULL
);
CREATE INDEX workflow_runs_group_seq ON workflow_runs (group_name, seq);
CREATE INDEX workflow_runs_workflow ON workflow_runs (title, seq);
CREATE INDEX workflow_runs_active ON workflow_runs (state) WHERE state NOT IN ('Completed', 'Error', 'Canceled');

-- Labels of workflows and runs, for `label=key=value` filters.
CREATE TABLE workflow_labels (
    owner TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
CREATE INDEX workflow_labels_key_value ON workflow_labels (key, value, owner);

-- One attempt of one task of a run; a retry adds an attempt and keeps the earlier ones.
CREATE TABLE workflow_task_runs (
    id            TEXT    PRIMARY KEY,
    run_id        TEXT    NOT NULL REFERENCES workflow_runs (id) ON DELETE CASCADE,
    task_title    TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    -- The task of the one task model that runs it (the native engine), or the external
    -- engine's id for it.
    task_id       TEXT,
    external_id   TEXT,
    not_before_ms INTEGER,
    started_ms    INTEGER,
    ended_ms      INTEGER,
    message       TEXT,
    UNIQUE (run_id, task_title, attempt)
);
CREATE INDEX workflow_task_runs_task ON workflow_task_runs (task_id);

-- State changes of runs and task runs, for the event stream beside task_events.
-- Its seq is drawn from task_events' AUTOINCREMENT counter (sqlite_sequence) under the
-- writer lock, so the two logs share one sequence in commit order.
-- Deleted with their run.
CREATE TABLE workflow_events (
    seq         INTEGER PRIMARY KEY,
    run_id      TEXT    NOT NULL,
    -- NULL: the run's own state.
    task_run_id TEXT,
    task_title  TEXT,
    group_name  TEXT    NOT NULL,
    at          TEXT    NOT NULL,
    from_state  TEXT,
    to_state    TEXT    NOT NULL
);
CREATE INDEX workflow_events_run ON workflow_events (run_id, seq);
