-- Several servers on one store, PostgreSQL flavour. Keep in step with ../sqlite/0006_leases.sql.
--
-- A task past QUEUED is held by one server instance (owner) until lease_until, in
-- milliseconds since the Unix epoch on the database's clock. The holder renews the lease
-- while it lives; another server adopts the task only once the lease has run out, and
-- every write of the holder's driver checks that it still holds the task. A notifier
-- binding's outbox cursor is held the same way, so one server at a time delivers it.
ALTER TABLE tasks ADD COLUMN owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_until BIGINT;
ALTER TABLE notifier_cursors ADD COLUMN owner TEXT;
ALTER TABLE notifier_cursors ADD COLUMN lease_until BIGINT;
