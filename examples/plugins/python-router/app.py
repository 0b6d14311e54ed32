"""A Tessera router in Python: the "pack" policy.

Tasks are taken highest priority first, then oldest first (then in request order). Each
goes to the eligible target with the FEWEST free slots, so busy targets fill up before
idle ones are touched (bin packing). A target is eligible when it holds every label the
task needs (`needs & ~holds == 0`), has a free slot, and has at least the CPU cores and
memory the task asks for. Every assignment takes its slot, cores and memory off that
target for the rest of the call. A task no target can take is deferred with a reason.

Configuration (optional): `misbehave` = `loop` | `alloc` | `trap` makes every call spin
forever, allocate without bound, or raise an uncaught exception: the host's tests use it
to show that a misbehaving plugin is contained.

componentize-py generates the `wit_world` package from `wit/plugin.wit` at build time;
`build.sh` also writes it to `bindings/` for editors and type checkers.
"""

from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.exports import routing
from wit_world.imports import config, log
from wit_world.imports.types import PluginError_InvalidInput

MAX_LABELS = 64
MASK = (1 << 64) - 1


class Routing(wit_world.exports.Routing):
    def route(self, request: routing.Request) -> List[routing.Decision]:
        mode = config.get("misbehave")
        if mode:
            log.log(log.Level.DEBUG, f"pack (python): misbehaving as asked: {mode}")
            misbehave(mode)
        if len(request.labels) > MAX_LABELS:
            log.log(log.Level.DEBUG, f"pack (python): {len(request.labels)} labels")
            raise Err(
                PluginError_InvalidInput(
                    f"{len(request.labels)} labels; a request has at most {MAX_LABELS}"
                )
            )

        decisions = pack(request)
        assigned = sum(isinstance(d, routing.Decision_Assign) for d in decisions)
        log.log(
            log.Level.DEBUG,
            f"pack (python): {len(request.tasks)} tasks, {len(request.targets)} targets: "
            f"{assigned} assigned, {len(decisions) - assigned} deferred",
        )
        return decisions


def misbehave(mode: str) -> None:
    if mode == "loop":
        n = 0
        while True:
            n += 1
    elif mode == "alloc":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    elif mode == "trap":
        raise RuntimeError("misbehave = trap: an uncaught exception, as asked")
    # Any other value: behave.


def pack(request: routing.Request) -> List[routing.Decision]:
    tasks = request.tasks
    targets = request.targets
    # What each target has free, updated as tasks are assigned.
    slots = [t.free_slots for t in targets]
    cores = [t.cpu_cores_free for t in targets]
    ram = [t.ram_bytes_free for t in targets]

    order = sorted(range(len(tasks)), key=lambda i: (-tasks[i].priority, tasks[i].queued_at_ms, i))
    decisions: List[routing.Decision] = [routing.Decision_Defer("")] * len(tasks)
    for i in order:
        task = tasks[i]
        best = -1
        for j, target in enumerate(targets):
            if (
                task.needs & ~target.holds & MASK == 0
                and slots[j] > 0
                and cores[j] >= task.cpu_cores
                and ram[j] >= task.ram_bytes
                and (best < 0 or slots[j] < slots[best])
            ):
                best = j
        if best >= 0:
            slots[best] -= 1
            cores[best] -= task.cpu_cores
            ram[best] -= task.ram_bytes
            decisions[i] = routing.Decision_Assign(best)
        else:
            decisions[i] = routing.Decision_Defer(why_not(request, task, slots, cores, ram))
    return decisions


def why_not(request: routing.Request, task: routing.Task, slots, cores, ram) -> str:
    targets = request.targets
    if not targets:
        return "no targets are available"
    held_anywhere = 0
    for t in targets:
        held_anywhere |= t.holds
    missing = task.needs & ~held_anywhere & MASK
    if missing:
        return "no target holds " + label_names(request.labels, missing)
    holders = [j for j, t in enumerate(targets) if task.needs & ~t.holds & MASK == 0]
    if not holders:
        return "no single target holds all of " + label_names(request.labels, task.needs)
    full = sum(1 for j in holders if slots[j] == 0)
    few_cores = sum(1 for j in holders if slots[j] > 0 and cores[j] < task.cpu_cores)
    little_ram = len(holders) - full - few_cores
    parts = []
    if full:
        parts.append(f"{full} without a free slot")
    if few_cores:
        parts.append(f"{few_cores} with fewer than {task.cpu_cores} cores free")
    if little_ram:
        parts.append(f"{little_ram} with less than {task.ram_bytes} bytes of memory free")
    what = "target holds" if len(holders) == 1 else "targets hold"
    return f"{len(holders)} {what} the labels needed, but: " + ", ".join(parts)


def label_names(labels: List[routing.Label], bits: int) -> str:
    names = []
    i = 0
    while bits:
        if bits & 1:
            names.append(label_name(labels, i))
        bits >>= 1
        i += 1
    return ", ".join(names)


def label_name(labels: List[routing.Label], i: int) -> str:
    if i >= len(labels):
        return f"label #{i} (not in the request)"
    label = labels[i]
    if isinstance(label, routing.Label_Tag):
        key, value = label.value
        return f"tag {key}={value}"
    return f"group {label.value}" if label.value else "group (none)"
