-- Operations and runs (the Task API), PostgreSQL flavour. Keep in step with
-- ../sqlite/0010_operations_runs.sql.

-- Which API made a task, and its place in the queue: higher priority first, FIFO among
-- equals. TES tasks are 'tes' with priority 0.
ALTER TABLE tasks ADD COLUMN origin TEXT NOT NULL DEFAULT 'tes';
ALTER TABLE tasks ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
-- The dispatcher's claims and the fair queue's per-group head, in priority order.
DROP INDEX tasks_state_group_seq;
CREATE INDEX tasks_state_group_priority_seq ON tasks (state, group_name, priority DESC, seq);
CREATE INDEX tasks_state_priority_seq ON tasks (state, priority DESC, seq);
-- Pages of one API's tasks (e.g. runs), newest first.
CREATE INDEX tasks_origin_seq ON tasks (origin, seq);

-- A named container image with typed parameters, owned by a group. Editing adds a
-- version; deleting hides it (its runs stay readable).
CREATE TABLE operations (
    id          TEXT    PRIMARY KEY,
    group_name  TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    latest      BIGINT NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    deleted     BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX operations_group_name ON operations (group_name, name) WHERE deleted = 0;
CREATE INDEX operations_group ON operations (group_name, id);

CREATE TABLE operation_versions (
    operation_id TEXT    NOT NULL REFERENCES operations (id),
    version      BIGINT NOT NULL,
    -- The operation document (JSON) as validated.
    spec         TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    PRIMARY KEY (operation_id, version)
);

-- What makes a task a run: the operation version it ran and the request. Written with
-- its task, in the same transaction; deleted with it.
CREATE TABLE runs (
    task_id      TEXT    PRIMARY KEY,
    operation_id TEXT    NOT NULL,
    version      BIGINT NOT NULL,
    -- The run request (JSON): parameter values, env overrides, inputs, priority.
    request      TEXT    NOT NULL,
    rerun_of     TEXT,
    response_url TEXT,
    -- The summary's delivery to response_url: NULL (none asked), pending, delivered,
    -- failed; attempts so far, the last error, when the next attempt is due.
    delivery          TEXT,
    delivery_attempts BIGINT NOT NULL DEFAULT 0,
    delivery_error    TEXT,
    delivery_due_ms   BIGINT
);
CREATE INDEX runs_operation ON runs (operation_id, task_id);
CREATE INDEX runs_delivery ON runs (delivery, delivery_due_ms);
