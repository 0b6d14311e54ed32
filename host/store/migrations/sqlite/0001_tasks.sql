-- Tessera task store, SQLite flavour. Keep in step with ../postgres/0001_tasks.sql.

-- AUTOINCREMENT: a seq is never reused, so keyset page tokens stay valid forever.
CREATE TABLE tasks (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    state         TEXT    NOT NULL,
    reason        TEXT,
    -- Copy of spec.name for prefix filters; BINARY collation = byte order.
    name          TEXT,
    -- The submitted TES document (JSON), as validated.
    spec          TEXT    NOT NULL,
    -- JSON array of TES TaskLog, one per attempt.
    logs          TEXT    NOT NULL,
    creation_time TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);

-- State-filtered pages, the dispatcher's FIFO claim and the unfinished-task scan.
CREATE INDEX tasks_state_seq ON tasks (state, seq);
-- name_prefix filters (a byte range on name).
CREATE INDEX tasks_name_seq ON tasks (name, seq);

CREATE TABLE task_tags (
    task_seq INTEGER NOT NULL REFERENCES tasks (seq) ON DELETE CASCADE,
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (task_seq, key)
) WITHOUT ROWID;

-- Tag filters: exact key=value, and key-exists.
CREATE INDEX task_tags_key_value ON task_tags (key, value, task_seq);
CREATE INDEX task_tags_key ON task_tags (key, task_seq);

CREATE TABLE task_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id    TEXT    NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at         TEXT    NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    reason     TEXT
);

CREATE INDEX task_events_task ON task_events (task_id, seq);
