"""A py-tes 1.1.4 round trip against a running Tessera: create, get, wait, list, cancel.

py-tes rejects any response field the TES spec does not define, so this also checks
that every view Tessera returns is exactly spec-shaped.
Usage: python roundtrip.py URL TOKEN IMAGE
"""
import sys
import time

import tes

url, token, image = sys.argv[1], sys.argv[2], sys.argv[3]
client = tes.HTTPClient(url, token=token, timeout=30)

info = client.get_service_info()
artifact = info.type["artifact"] if isinstance(info.type, dict) else info.type.artifact
assert artifact == "tes", info

task = tes.Task(
    name="py-tes-roundtrip",
    tags={"client": "py-tes"},
    inputs=[tes.Input(path="/data/in.txt", content="from python\n")],
    executors=[
        tes.Executor(image=image, command=["cat", "/data/in.txt"]),
        tes.Executor(image=image, command=["sh", "-c", "echo err >&2; exit 0"]),
    ],
)
task_id = client.create_task(task)
assert task_id, "no id"

minimal = client.get_task(task_id)  # MINIMAL by default
assert minimal.id == task_id and minimal.state is not None

done = client.wait(task_id, timeout=120)
assert done.state == "COMPLETE", done.state
full = client.get_task(task_id, view="FULL")
assert full.logs[0].logs[0].stdout == "from python\n", full.logs[0].logs[0].stdout
assert full.logs[0].logs[1].stderr == "err\n", full.logs[0].logs[1].stderr
assert full.logs[0].logs[0].exit_code == 0
assert full.inputs[0].content == "from python\n"
basic = client.get_task(task_id, view="BASIC")
assert basic.logs[0].logs[0].stdout is None

listed = client.list_tasks(view="BASIC", page_size=10)
assert any(t.id == task_id and t.name == "py-tes-roundtrip" for t in listed.tasks), listed

long_id = client.create_task(
    tes.Task(executors=[tes.Executor(image=image, command=["sleep", "1000"])])
)
deadline = time.time() + 120
while client.get_task(long_id).state not in ("RUNNING",):
    assert time.time() < deadline, "never started"
    time.sleep(0.1)
client.cancel_task(long_id)
# py-tes's wait() returns on CANCELING (not in its list of active states); poll on.
deadline = time.time() + 120
while (state := client.get_task(long_id).state) == "CANCELING":
    assert time.time() < deadline, "stuck in CANCELING"
    time.sleep(0.05)
assert state == "CANCELED", state
client.cancel_task(long_id)  # no-op on a terminal task

print("py-tes round trip ok")
