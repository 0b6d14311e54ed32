-- Agents, configs and secrets (the Task API), SQLite flavour. Keep in step with
-- ../postgres/0011_agents_configs.sql.

-- What a task needs beyond TES (JSON: secret references, keep-alive); NULL: nothing.
ALTER TABLE tasks ADD COLUMN extra TEXT;

-- Configs (kind 'config': entries as JSON text) and secrets (kind 'secret': each entry
-- sealed under the server's secrets key), by group and name.
CREATE TABLE group_entries (
    group_name TEXT NOT NULL,
    kind       TEXT NOT NULL,
    name       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (group_name, kind, name)
);

CREATE TABLE agents (
    group_name TEXT NOT NULL,
    name       TEXT NOT NULL,
    -- The agent document (JSON).
    spec       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (group_name, name)
);
