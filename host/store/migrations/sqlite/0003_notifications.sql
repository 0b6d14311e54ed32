-- Notification outbox, SQLite flavour. Keep in step with ../postgres/0003_notifications.sql.
--
-- The task_events table is the outbox: every state change is already an event row,
-- written in the same transaction as the change. Per notifier binding (its scope), a
-- cursor says up to which event everything was delivered or queued for a retry; retries
-- wait here with their backoff. A crash between a delivery and its bookkeeping delivers
-- that event again: at least once.
CREATE TABLE notifier_cursors (
    scope    TEXT    PRIMARY KEY,
    last_seq INTEGER NOT NULL
);

CREATE TABLE notifier_retries (
    scope      TEXT    NOT NULL,
    event_seq  INTEGER NOT NULL,
    attempts   INTEGER NOT NULL,
    -- When to try again, RFC 3339 UTC (sorts as text).
    next_at    TEXT    NOT NULL,
    last_error TEXT    NOT NULL,
    -- 1 once the retries are used up (kept for inspection).
    dead       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, event_seq)
);

CREATE INDEX notifier_retries_due ON notifier_retries (scope, dead, next_at);
