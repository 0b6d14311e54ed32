"""Plain SQLite, the baseline of the store's one-row transaction (tessera-bench --only store).

The same tables and indexes as the store's first migration, the same settings (WAL,
synchronous=NORMAL, foreign keys), one transaction per task row plus its event row, from
Python's sqlite3 module. Prints rows per second.
"""
import sqlite3, time, tempfile, os, json, uuid, sys
d = tempfile.mkdtemp()
db = sqlite3.connect(os.path.join(d, "plain.db"), isolation_level=None)
db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL"); db.execute("PRAGMA foreign_keys=ON")
db.executescript("""
CREATE TABLE tasks (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, state TEXT NOT NULL, reason TEXT, name TEXT, spec TEXT NOT NULL, logs TEXT NOT NULL, creation_time TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX tasks_state_seq ON tasks (state, seq);
CREATE INDEX tasks_name_seq ON tasks (name, seq);
CREATE TABLE task_events (seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE, at TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL, reason TEXT);
CREATE INDEX task_events_task ON task_events (task_id, seq);
""")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
spec = json.dumps({"name": "bench", "tags": {"bench": "create"}, "executors": [{"image": "tessera-test/busybox:latest", "command": ["echo", "hello"]}]})
t = time.perf_counter()
for i in range(n):
    tid = uuid.uuid4().hex
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO tasks (id, state, reason, name, spec, logs, creation_time, updated_at) VALUES (?,?,?,?,?,?,?,?) RETURNING seq", (tid, "QUEUED", "queued", f"bench-{i}", spec, "[]", "2026-12-06T00:00:00Z", "2026-12-06T00:00:00Z")).fetchall()
    db.execute("INSERT INTO task_events (task_id, at, to_state, reason) VALUES (?,?,?,?)", (tid, "2026-12-06T00:00:00Z", "QUEUED", "queued"))
    db.execute("COMMIT")
print(f"{n / (time.perf_counter() - t):.0f}")
