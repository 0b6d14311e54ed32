-- Every task belongs to one group ('' for tasks from before groups). Lists of the
-- groups a caller may read page on (group_name, seq).
ALTER TABLE tasks ADD COLUMN group_name TEXT NOT NULL DEFAULT '';
CREATE INDEX tasks_group_seq ON tasks (group_name, seq);
