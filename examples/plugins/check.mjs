// Sanity check of the example routers outside Tessera: transpiles each component to JS
// with jco (from js-router/node_modules: run js-router/build.sh, or `npm ci` there,
// first), gives it the two imports a router may have (`log`, `config`) and nothing else,
// calls `route` and compares the decisions with what the "pack" policy must answer.
//
//   node check.mjs                      check dist/python-router.wasm and dist/js-router.wasm
//   node check.mjs FILE.wasm...         check these
//   node check.mjs --misbehave [FILE…]  also run misbehave = trap, loop and alloc, each in a
//                                       worker thread that is ended after a few seconds
//                                       (alloc may use a few GiB of memory before it stops)
//
// componentize-py's output uses extended constant expressions, which Node before 22 runs
// only with --experimental-wasm-extended-const: the script restarts itself with that flag
// when this Node needs it.
//
// Exits non-zero when a component fails to load or answers wrongly. Node is not the
// host: it has no fuel, epoch or memory limit, so `loop` and `alloc` are only shown to
// start misbehaving, and the real containment test is the host's.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

// A module whose one global is initialised with `i32.add`: valid only with extended-const.
const EXTENDED_CONST = new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x06, 0x09, 0x01, 0x7f, 0x00, 0x41, 0x01, 0x41, 0x02, 0x6a, 0x0b,
]);
if (isMainThread && !WebAssembly.validate(EXTENDED_CONST)) {
    const flag = '--experimental-wasm-extended-const';
    if (process.execArgv.includes(flag)) {
        console.error('check.mjs: this Node cannot run WebAssembly extended constant expressions');
        process.exit(2);
    }
    const r = spawnSync(process.execPath, [flag, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
}

const here = dirname(fileURLToPath(import.meta.url));
const jco = join(here, 'js-router', 'node_modules', '.bin', 'jco');
const MISBEHAVE_SECONDS = 5;

// Labels 0..2; tasks and targets refer to them by bit.
const ZONE_A = 1n << 0n; // tag zone=a
const LAB = 1n << 1n; // group lab
const GPU = 1n << 2n; // tag gpu=yes
const GiB = 1n << 30n;
const labels = [
    { tag: 'tag', val: ['zone', 'a'] },
    { tag: 'group', val: 'lab' },
    { tag: 'tag', val: ['gpu', 'yes'] },
];
const target = (holds, freeSlots, cpuCoresFree, ramBytesFree) => ({
    holds,
    freeSlots,
    cpuCoresFree,
    ramBytesFree,
});
const task = (needs, priority, cpuCores, ramBytes, queuedAtMs) => ({
    needs,
    priority,
    cpuCores,
    ramBytes,
    queuedAtMs,
});

const cases = [
    {
        what: '2 tasks, 3 targets: priority first, fewest free slots first, capacity taken',
        request: {
            labels,
            tasks: [
                task(ZONE_A | LAB, 0, 1, GiB, 1000n), // older, lower priority
                task(ZONE_A | LAB, 5, 2, 2n * GiB, 2000n), // newer, higher priority: first
            ],
            targets: [
                target(ZONE_A | LAB, 3, 8, 16n * GiB),
                target(ZONE_A | LAB, 1, 8, 16n * GiB), // the fullest: the first task packed here
                target(LAB, 1, 8, 16n * GiB), // lacks zone=a
            ],
        },
        // The priority-5 task takes target 1's only slot; the other goes to target 0.
        want: [
            { tag: 'assign', val: 0 },
            { tag: 'assign', val: 1 },
        ],
    },
    {
        what: 'deferrals: a label no target holds, and not enough memory',
        request: {
            labels,
            tasks: [task(GPU | LAB, 0, 0, 0n, 1n), task(ZONE_A, 0, 1, 64n * GiB, 2n)],
            targets: [target(ZONE_A | LAB, 2, 4, 8n * GiB), target(LAB, 2, 4, 8n * GiB)],
        },
        want: [
            { tag: 'defer', val: 'no target holds tag gpu=yes' },
            {
                tag: 'defer',
                val: `1 target holds the labels needed, but: 1 with less than ${64n * GiB} bytes of memory free`,
            },
        ],
    },
];

// `tasks` tasks and `targets` targets over 64 labels, from a fixed pseudo-random sequence.
function bigRequest(tasks, targets) {
    let seed = 42;
    const rnd = (n) => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
    };
    const labels = Array.from({ length: 64 }, (_, i) =>
        i < 48 ? { tag: 'tag', val: [`key${i % 8}`, `value${i}`] } : { tag: 'group', val: `group${i}` },
    );
    const bits = (k) => {
        let b = 0n;
        for (let i = 0; i < k; i++) b |= 1n << BigInt(rnd(64));
        return b;
    };
    return {
        labels,
        tasks: Array.from({ length: tasks }, (_, i) =>
            task(bits(2), rnd(5), 1 + rnd(4), BigInt(1 + rnd(8)) * GiB, BigInt(1000 + i)),
        ),
        targets: Array.from({ length: targets }, () => target(bits(40), 1 + rnd(16), 4 + rnd(60), BigInt(8 + rnd(248)) * GiB)),
    };
}

// Transpile `file` into a temporary directory; returns the module's URL.
function transpile(file, outDir) {
    const name = basename(file, '.wasm');
    execFileSync(jco, ['transpile', file, '-o', outDir, '--instantiation', 'async', '--name', name, '--quiet'], {
        stdio: ['ignore', 'ignore', 'inherit'],
    });
    return { url: pathToFileURL(join(outDir, `${name}.js`)).href, dir: outDir };
}

// Instantiate the transpiled component with log and config only. Returns its exports,
// the log lines, and a function summing the size of its linear memories.
async function instantiate({ url, dir }, config) {
    const mod = await import(url);
    const lines = [];
    const memories = [];
    const imports = {
        'tessera:plugin/log': { log: (level, message) => lines.push(`${level}: ${message}`) },
        'tessera:plugin/config': {
            get: (key) => config[key],
            secret: () => undefined,
        },
    };
    const getCoreModule = (name) => WebAssembly.compile(readFileSync(join(dir, name)));
    const instantiateCore = async (module, imports) => {
        const instance = await WebAssembly.instantiate(module, imports);
        for (const v of Object.values(instance.exports)) {
            if (v instanceof WebAssembly.Memory) memories.push(v);
        }
        return { exports: instance.exports };
    };
    const exports = await mod.instantiate(getCoreModule, imports, instantiateCore);
    const memoryBytes = () => memories.reduce((n, m) => n + m.buffer.byteLength, 0);
    return { exports, lines, memoryBytes };
}

const show = (decisions) =>
    decisions.map((d) => (d.tag === 'assign' ? `assign(${d.val})` : `defer(${JSON.stringify(d.val)})`)).join(', ');
const MiB = (n) => `${(n / (1 << 20)).toFixed(1)} MiB`;

async function check(file, misbehave) {
    const size = statSync(file).size;
    console.log(`\n${file} (${size} bytes)`);
    const outDir = mkdtempSync(join(tmpdir(), 'tessera-check-'));
    let ok = true;
    try {
        const t0 = performance.now();
        const js = transpile(file, outDir);
        const t1 = performance.now();
        const { exports, lines, memoryBytes } = await instantiate(js, {});
        const t2 = performance.now();
        console.log(
            `  transpiled in ${(t1 - t0).toFixed(0)} ms, instantiated in ${(t2 - t1).toFixed(0)} ms; ` +
                `linear memory after instantiation: ${MiB(memoryBytes())}`,
        );
        for (const c of cases) {
            const s = performance.now();
            const got = exports.routing.route(c.request);
            const ms = performance.now() - s;
            const same = JSON.stringify(got) === JSON.stringify(c.want);
            ok &&= same;
            console.log(`  ${same ? 'ok  ' : 'FAIL'} ${c.what} (${ms.toFixed(2)} ms)`);
            console.log(`       got:  ${show(got)}`);
            if (!same) console.log(`       want: ${show(c.want)}`);
        }
        // Warm calls: what the hot path costs once the instance exists.
        const n = 200;
        const s = performance.now();
        for (let i = 0; i < n; i++) exports.routing.route(cases[0].request);
        console.log(`  warm route call: ${((performance.now() - s) / n).toFixed(3)} ms on average over ${n}`);
        console.log(`  linear memory after ${n + cases.length} calls: ${MiB(memoryBytes())}`);
        const perCall = lines.length / (n + cases.length);
        console.log(`  log lines: ${lines.length} (${perCall} per call), e.g. "${lines[0]}"`);
        if (perCall !== 1) ok = false;

        // A large request, near what the host sends at most: 64 labels, 1000 tasks, 100
        // targets. Shows the cost of a big call and how far linear memory grows.
        const big = bigRequest(1000, 100);
        const bs = performance.now();
        const bigGot = exports.routing.route(big);
        const bigMs = performance.now() - bs;
        const bigAssigned = bigGot.filter((d) => d.tag === 'assign').length;
        const bigOk = bigGot.length === big.tasks.length;
        ok &&= bigOk;
        console.log(
            `  ${bigOk ? 'ok  ' : 'FAIL'} large request (64 labels, 1000 tasks, 100 targets): ` +
                `${bigAssigned} assigned, ${bigGot.length - bigAssigned} deferred in ${bigMs.toFixed(1)} ms; ` +
                `linear memory now ${MiB(memoryBytes())}`,
        );

        // A component error (not a trap): more than 64 labels is invalid input.
        try {
            exports.routing.route({ labels: Array(65).fill(labels[0]), tasks: [], targets: [] });
            console.log('  FAIL 65 labels: no error');
            ok = false;
        } catch (e) {
            const payload = e.payload ?? e;
            const good = payload?.tag === 'invalid-input';
            ok &&= good;
            console.log(`  ${good ? 'ok  ' : 'FAIL'} 65 labels: err ${JSON.stringify(payload)}`);
        }

        if (misbehave) {
            for (const mode of ['trap', 'loop', 'alloc']) {
                console.log(`  misbehave = ${mode}: ${await misbehaveIn(js, mode)}`);
            }
        }
    } catch (e) {
        console.log(`  FAIL: ${e?.stack ?? e}`);
        ok = false;
    } finally {
        rmSync(outDir, { recursive: true, force: true });
    }
    return ok;
}

// Run one misbehaving call in a worker; end the worker after MISBEHAVE_SECONDS.
function misbehaveIn(js, mode) {
    return new Promise((done) => {
        const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { js, mode } });
        const started = performance.now();
        let peakRss = 0;
        const poll = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 50);
        const finish = (what) => {
            clearInterval(poll);
            clearTimeout(timer);
            done(`${what} after ${((performance.now() - started) / 1000).toFixed(1)} s (peak process RSS ${MiB(peakRss)})`);
        };
        const timer = setTimeout(() => {
            worker.terminate();
            finish(`still running, worker ended`);
        }, MISBEHAVE_SECONDS * 1000);
        worker.on('message', (m) => finish(m));
        worker.on('error', (e) => finish(`worker died: ${e?.message ?? e}`));
    });
}

if (!isMainThread) {
    const { js, mode } = workerData;
    const { exports, memoryBytes } = await instantiate(js, { misbehave: mode });
    try {
        const got = exports.routing.route(cases[0].request);
        parentPort.postMessage(`returned normally (${show(got)})`);
    } catch (e) {
        const kind = e instanceof WebAssembly.RuntimeError ? 'trapped' : 'threw';
        const what = e?.payload !== undefined ? `err ${JSON.stringify(e.payload)}` : String(e?.message ?? e).split('\n')[0];
        parentPort.postMessage(`${kind}: ${what}; linear memory ${MiB(memoryBytes())}`);
    }
} else {
    const args = process.argv.slice(2);
    const misbehave = args.includes('--misbehave');
    let files = args.filter((a) => a !== '--misbehave').map((f) => resolve(f));
    if (files.length === 0) files = ['python-router', 'js-router'].map((n) => join(here, 'dist', `${n}.wasm`));
    let failed = 0;
    for (const f of files) if (!(await check(f, misbehave))) failed++;
    console.log(`\n${files.length - failed} passed, ${failed} failed`);
    process.exit(failed ? 1 : 0);
}
