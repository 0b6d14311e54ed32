-- Tessera task store, PostgreSQL flavour. Keep in step with ../sqlite/0001_tasks.sql.

CREATE TABLE tasks (
    seq           BIGSERIAL PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    state         TEXT NOT NULL,
    reason        TEXT,
    -- Copy of spec.name for prefix filters. COLLATE "C" makes comparisons byte order,
    -- as in SQLite, so a prefix is an index range whatever the database's locale.
    name          TEXT COLLATE "C",
    -- The submitted TES document (JSON), as validated.
    spec          TEXT NOT NULL,
    -- JSON array of TES TaskLog, one per attempt.
    logs          TEXT NOT NULL,
    creation_time TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- State-filtered pages, the dispatcher's FIFO claim and the unfinished-task scan.
CREATE INDEX tasks_state_seq ON tasks (state, seq);
-- name_prefix filters (a byte range on name).
CREATE INDEX tasks_name_seq ON tasks (name, seq);

CREATE TABLE task_tags (
    task_seq BIGINT NOT NULL REFERENCES tasks (seq) ON DELETE CASCADE,
    key      TEXT   NOT NULL,
    value    TEXT   NOT NULL,
    PRIMARY KEY (task_seq, key)
);

-- Tag filters: exact key=value, and key-exists.
CREATE INDEX task_tags_key_value ON task_tags (key, value, task_seq);
CREATE INDEX task_tags_key ON task_tags (key, task_seq);

CREATE TABLE task_events (
    seq        BIGSERIAL PRIMARY KEY,
    task_id    TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    reason     TEXT
);

CREATE INDEX task_events_task ON task_events (task_id, seq);
