-- Cron tasks, SQLite flavour. Keep in step with ../postgres/0012_cron_tasks.sql.

CREATE TABLE cron_tasks (
    group_name       TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    -- The cron task document (JSON).
    spec             TEXT    NOT NULL,
    -- When the next tick is due (ms since the Unix epoch); NULL: never. Servers move it
    -- with a compare-and-set, so each tick is handled once.
    next_ms          INTEGER,
    last_schedule_ms INTEGER,
    -- Why the last due tick made no child (suspended, Forbid, a missed deadline, …).
    last_skip        TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    PRIMARY KEY (group_name, name)
);
CREATE INDEX cron_tasks_next ON cron_tasks (next_ms);

-- How long a group's finished tasks are kept, in days, over the server's default; 0:
-- forever; NULL: the default.
ALTER TABLE identity_groups ADD COLUMN retention_days INTEGER;
