-- Retention deletes finished tasks by age: an index over the finished ones only, so each
-- pass reads what it deletes and not every task that ever ended. The state list is the
-- terminal states of tessera_core::State (keep in step).
CREATE INDEX tasks_finished_updated ON tasks (updated_at)
    WHERE state IN ('COMPLETE', 'EXECUTOR_ERROR', 'SYSTEM_ERROR', 'CANCELED', 'PREEMPTED');
