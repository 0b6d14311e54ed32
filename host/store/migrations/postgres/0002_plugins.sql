-- Plugins, PostgreSQL flavour. Keep in step with ../sqlite/0002_plugins.sql.

-- Every installed version of every plugin, with its component bytes.
CREATE TABLE plugin_versions (
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    world        TEXT    NOT NULL,
    -- The manifest as the host parsed it (JSON).
    manifest     TEXT    NOT NULL,
    -- Hex SHA-256 of the component.
    sha256       TEXT    NOT NULL,
    size_bytes   BIGINT  NOT NULL,
    component    BYTEA   NOT NULL,
    -- 'builtin' (shipped in the binary) or 'uploaded'.
    origin       TEXT    NOT NULL,
    installed_at TEXT    NOT NULL,
    PRIMARY KEY (name, version)
);

-- Which version serves where. `scope` is the world's key: the group for routers ('' for
-- every group), the URL scheme for filers, the engine for engine adapters, the binding
-- name for notifiers.
CREATE TABLE plugin_bindings (
    world            TEXT NOT NULL,
    scope            TEXT NOT NULL,
    plugin           TEXT NOT NULL,
    version          TEXT NOT NULL,
    -- What was bound before the last activation (for rollback).
    previous_plugin  TEXT,
    previous_version TEXT,
    -- Binding settings (config values, secrets, event filter) as JSON.
    settings         TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    PRIMARY KEY (world, scope),
    FOREIGN KEY (plugin, version) REFERENCES plugin_versions (name, version)
);
