-- The settings of what was bound before the last activation, so that a rollback puts
-- them back with it (a plugin never serves with another plugin's settings or grants).
-- NULL in rows from before this column: see BindingRow::rollback_settings. Keep in step
-- with ../sqlite/0004_binding_previous_settings.sql.
ALTER TABLE plugin_bindings ADD COLUMN previous_settings TEXT;
