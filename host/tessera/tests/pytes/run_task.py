"""Submit one task with py-tes 1.1.4, wait for it to end, print its FULL view as JSON.

The task document is built into py-tes's own model classes (tes.utils.unmarshal), so
what reaches the server is what py-tes sends, and the answers are read back through
py-tes (which rejects any field the TES spec does not define).
Usage: python run_task.py URL TOKEN TASK_JSON
"""
import sys
import time

import tes
from tes.utils import unmarshal

url, token, document = sys.argv[1], sys.argv[2], sys.argv[3]
client = tes.HTTPClient(url, token=token, timeout=30)
task_id = client.create_task(unmarshal(document, tes.Task))
deadline = time.time() + 300
terminal = ("COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED")
while client.get_task(task_id).state not in terminal:
    assert time.time() < deadline, "the task did not end in time"
    time.sleep(0.1)
print(client.get_task(task_id, view="FULL").as_json())
