-- The audit log and per-group quotas, PostgreSQL flavour. Keep in step with
-- ../sqlite/0009_audit_quotas.sql.

-- Every state-changing request: who, what, on which object, with which result.
CREATE TABLE audit_log (
    seq     BIGSERIAL PRIMARY KEY,
    -- Milliseconds since the Unix epoch (pruned by it).
    at_ms   BIGINT  NOT NULL,
    actor   TEXT    NOT NULL,
    method  TEXT    NOT NULL,
    -- The route as declared (e.g. /v1/tasks/{id}/cancel): what was done.
    action  TEXT    NOT NULL,
    -- The object acted on (a task id, a user, a plugin@version), '' when none.
    object  TEXT    NOT NULL,
    status  BIGINT  NOT NULL
);
-- Pruning by age. Reading by actor walks back from the newest (admins only; one index
-- per row is what every audited create pays).
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- NULL: no limit.
ALTER TABLE identity_groups ADD COLUMN max_queued BIGINT;
ALTER TABLE identity_groups ADD COLUMN max_running BIGINT;
ALTER TABLE identity_groups ADD COLUMN max_cpu_cores BIGINT;
ALTER TABLE identity_groups ADD COLUMN max_ram_gb DOUBLE PRECISION;

-- Fair dispatch: which groups have queued tasks (a skip scan), each group's oldest.
CREATE INDEX tasks_state_group_seq ON tasks (state, group_name, seq);
