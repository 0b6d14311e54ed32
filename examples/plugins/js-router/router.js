// A Tessera router in JavaScript: the "pack" policy.
//
// Tasks are taken highest priority first, then oldest first (then in request order). Each
// goes to the eligible target with the FEWEST free slots, so busy targets fill up before
// idle ones are touched (bin packing). A target is eligible when it holds every label the
// task needs (`needs & ~holds == 0`), has a free slot, and has at least the CPU cores and
// memory the task asks for. Every assignment takes its slot, cores and memory off that
// target for the rest of the call. A task no target can take is deferred with a reason.
//
// Configuration (optional): `misbehave` = `loop` | `alloc` | `trap` makes every call spin
// forever, allocate without bound, or trap: the host's tests use it to show that a
// misbehaving plugin is contained.
//
// Types as jco maps them: u64 (label sets, ram-bytes, queued-at-ms) are BigInt, u32 and
// s32 are numbers, variants are `{ tag, val }`, and a `result` return is the plain value
// (a thrown `ComponentError`-like value becomes the `err` case).

import { log } from 'tessera:plugin/log@0.1.0';
import { get } from 'tessera:plugin/config@0.1.0';

const MAX_LABELS = 64;
const MASK = (1n << 64n) - 1n;

function route(request) {
    const mode = get('misbehave');
    if (mode) {
        log('debug', `pack (js): misbehaving as asked: ${mode}`);
        misbehave(mode);
    }
    if (request.labels.length > MAX_LABELS) {
        log('debug', `pack (js): ${request.labels.length} labels`);
        // jco turns a thrown value with a `payload` into the `err` case of the result.
        throw {
            payload: {
                tag: 'invalid-input',
                val: `${request.labels.length} labels; a request has at most ${MAX_LABELS}`,
            },
        };
    }

    const decisions = pack(request);
    const assigned = decisions.filter((d) => d.tag === 'assign').length;
    log(
        'debug',
        `pack (js): ${request.tasks.length} tasks, ${request.targets.length} targets: ` +
            `${assigned} assigned, ${decisions.length - assigned} deferred`,
    );
    return decisions;
}

function misbehave(mode) {
    if (mode === 'loop') {
        let n = 0;
        for (;;) n++;
    } else if (mode === 'alloc') {
        const hoard = [];
        for (;;) {
            const buf = new Uint8Array(1 << 20);
            buf.fill(1);
            hoard.push(buf);
        }
    } else if (mode === 'trap') {
        trap();
    }
    // Any other value: behave.
}

// An uncaught error that cannot become the `err` case: the export traps.
function trap() {
    throw new Error('misbehave = trap: an uncaught error, as asked');
}

function holdsAll(needs, holds) {
    return (needs & ~holds & MASK) === 0n;
}

function pack(request) {
    const { tasks, targets } = request;
    // What each target has free, updated as tasks are assigned.
    const slots = targets.map((t) => t.freeSlots);
    const cores = targets.map((t) => t.cpuCoresFree);
    const ram = targets.map((t) => t.ramBytesFree);

    const order = tasks.map((_, i) => i);
    order.sort((a, b) => {
        const ta = tasks[a];
        const tb = tasks[b];
        if (ta.priority !== tb.priority) return tb.priority - ta.priority;
        if (ta.queuedAtMs !== tb.queuedAtMs) return ta.queuedAtMs < tb.queuedAtMs ? -1 : 1;
        return a - b;
    });

    const decisions = new Array(tasks.length);
    for (const i of order) {
        const task = tasks[i];
        let best = -1;
        for (let j = 0; j < targets.length; j++) {
            if (
                holdsAll(task.needs, targets[j].holds) &&
                slots[j] > 0 &&
                cores[j] >= task.cpuCores &&
                ram[j] >= task.ramBytes &&
                (best < 0 || slots[j] < slots[best])
            ) {
                best = j;
            }
        }
        if (best >= 0) {
            slots[best] -= 1;
            cores[best] -= task.cpuCores;
            ram[best] -= task.ramBytes;
            decisions[i] = { tag: 'assign', val: best };
        } else {
            decisions[i] = { tag: 'defer', val: whyNot(request, task, slots, cores, ram) };
        }
    }
    return decisions;
}

function whyNot(request, task, slots, cores, ram) {
    const { targets } = request;
    if (targets.length === 0) return 'no targets are available';
    let heldAnywhere = 0n;
    for (const t of targets) heldAnywhere |= t.holds;
    const missing = task.needs & ~heldAnywhere & MASK;
    if (missing !== 0n) return 'no target holds ' + labelNames(request.labels, missing);
    const holders = [];
    targets.forEach((t, j) => {
        if (holdsAll(task.needs, t.holds)) holders.push(j);
    });
    if (holders.length === 0) {
        return 'no single target holds all of ' + labelNames(request.labels, task.needs);
    }
    const full = holders.filter((j) => slots[j] === 0).length;
    const fewCores = holders.filter((j) => slots[j] > 0 && cores[j] < task.cpuCores).length;
    const littleRam = holders.length - full - fewCores;
    const parts = [];
    if (full) parts.push(`${full} without a free slot`);
    if (fewCores) parts.push(`${fewCores} with fewer than ${task.cpuCores} cores free`);
    if (littleRam) parts.push(`${littleRam} with less than ${task.ramBytes} bytes of memory free`);
    const what = holders.length === 1 ? 'target holds' : 'targets hold';
    return `${holders.length} ${what} the labels needed, but: ` + parts.join(', ');
}

function labelNames(labels, bits) {
    const names = [];
    for (let i = 0; bits !== 0n; i++, bits >>= 1n) {
        if (bits & 1n) names.push(labelName(labels, i));
    }
    return names.join(', ');
}

function labelName(labels, i) {
    if (i >= labels.length) return `label #${i} (not in the request)`;
    const label = labels[i];
    if (label.tag === 'tag') {
        const [key, value] = label.val;
        return `tag ${key}=${value}`;
    }
    return label.val ? `group ${label.val}` : 'group (none)';
}

export const routing = { route };
