//! Router call costs: the same routing logic natively, through a fresh instance per call,
//! and through a warm instance; and compile time against a cached load.
//!
//! ```sh
//! bash builtin-plugins/build.sh            # builtin-plugins/dist/router-default.wasm
//! cargo run --release -p tessera-plugin-runtime --example router_bench [-- ITERATIONS]
//! ```
//!
//! `ROUTER_BENCH_COMPONENT=path.wasm|.wat` measures another router component.
//!
//! Two workloads, the default router's rules: one task against 16 candidate targets (one
//! routing decision, what a dispatch of one queued task costs) and 8 tasks against the same
//! 16 targets (a batch). Tasks need placement tags and a group; targets hold tags, some
//! are reserved for a group, and capacity runs out within the batch. Without
//! builtin-plugins/dist/router-default.wasm the plugin figures are for the tiny first-fit test
//! component instead (said so in the output).

extern crate alloc;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tessera_plugin_runtime::Grants;
use tessera_plugin_runtime::{
    Capability, Decision, Label, LabelSet, Manifest, PluginConfig, PluginRuntime, RouteRequest,
    RouteTarget, RouteTask, RouterPlugin, RuntimeConfig, World,
};

/// The default router's decision logic, the very source the component is built from.
#[allow(dead_code, missing_docs)]
#[path = "../../../builtin-plugins/router-default/src/logic.rs"]
mod logic;

const TARGETS: usize = 16;

/// Builds a request the way a host does: every tag and group the tasks ask for is named
/// once, and tasks and targets refer to them by bit.
#[derive(Default)]
struct Labels(Vec<Label>);

impl Labels {
    fn bit(&mut self, label: Label) -> LabelSet {
        let i = match self.0.iter().position(|l| *l == label) {
            Some(i) => i,
            None => {
                self.0.push(label);
                self.0.len() - 1
            }
        };
        1 << i
    }

    /// The bits of `labels` that are named (a target's tags the tasks do not ask for are
    /// left out, as a host leaves them out).
    fn known(&self, labels: &[Label]) -> LabelSet {
        labels
            .iter()
            .filter_map(|l| self.0.iter().position(|k| k == l))
            .fold(0, |s, i| s | 1 << i)
    }
}

fn tag(k: &str, v: &str) -> Label {
    Label::Tag((k.to_string(), v.to_string()))
}

fn group(g: &str) -> Label {
    Label::Group(g.to_string())
}

fn workload(tasks: usize) -> RouteRequest {
    let zones = ["eu-1", "eu-2", "us-1", "us-2"];
    let mut labels = Labels::default();
    let tasks: Vec<RouteTask> = (0..tasks)
        .map(|i| {
            let mut needs = labels.bit(tag("zone", zones[i % 4]));
            if i % 2 == 0 {
                needs |= labels.bit(tag("disk", "ssd"));
            }
            let own_group = labels.bit(group(if i % 3 == 0 { "ops" } else { "lab" }));
            needs |= own_group;
            RouteTask {
                needs,
                group: own_group.trailing_zeros(),
                priority: (i % 3) as i32,
                cpu_cores: 2,
                ram_bytes: 4 << 30,
                queued_at_ms: 1_700_000_000_000 + i as u64,
            }
        })
        .collect();
    let groups = labels.known(&[group("ops"), group("lab")]);
    let targets = (0..TARGETS)
        .map(|j| {
            let tags = labels.known(&[
                tag("zone", zones[j % 4]),
                tag("disk", if j % 3 == 0 { "ssd" } else { "hdd" }),
                tag("arch", "x86_64"),
            ]);
            // Every fifth target is reserved for group ops; the rest are open to all.
            let groups = if j % 5 == 0 {
                labels.known(&[group("ops")])
            } else {
                groups
            };
            RouteTarget {
                holds: tags | groups,
                free_slots: (j % 4) as u32 + 1,
                cpu_cores_free: 16,
                ram_bytes_free: 64 << 30,
            }
        })
        .collect();
    RouteRequest {
        labels: labels.0,
        tasks,
        targets,
    }
}

/// The component's conversion, done once outside the timed loop.
fn native_inputs(r: &RouteRequest) -> (Vec<logic::Label>, Vec<logic::Task>, Vec<logic::Target>) {
    let labels = r
        .labels
        .iter()
        .map(|l| match l {
            Label::Tag((k, v)) => logic::Label::Tag(k.clone(), v.clone()),
            Label::Group(g) => logic::Label::Group(g.clone()),
        })
        .collect();
    let tasks = r
        .tasks
        .iter()
        .map(|t| logic::Task {
            group: t.group,
            needs: t.needs,
            priority: t.priority,
            cpu_cores: t.cpu_cores,
            ram_bytes: t.ram_bytes,
            queued_at_ms: t.queued_at_ms,
        })
        .collect();
    let targets = r
        .targets
        .iter()
        .map(|t| logic::Target {
            holds: t.holds,
            free_slots: t.free_slots,
            cpu_cores_free: t.cpu_cores_free,
            ram_bytes_free: t.ram_bytes_free,
        })
        .collect();
    (labels, tasks, targets)
}

/// The native call: the logic plus turning its outcomes into decisions, as the component
/// does.
fn native_route(
    labels: &[logic::Label],
    tasks: &[logic::Task],
    targets: &[logic::Target],
) -> Vec<Decision> {
    logic::route(labels, tasks, targets)
        .into_iter()
        .map(|o| match o {
            logic::Outcome::Assign(j) => Decision::Assign(j as u32),
            logic::Outcome::Defer(r) => Decision::Defer(r),
        })
        .collect()
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn measure(n: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..(n / 10).max(100) {
        f();
    }
    let mut v = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    let total = all.elapsed();
    v.sort_unstable();
    Stats {
        p50: v[n / 2],
        p99: v[n * 99 / 100],
        mean: total / n as u32,
    }
}

fn us(d: Duration) -> String {
    format!("{:8.2} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:8.2} ms", d.as_secs_f64() * 1e3)
}

fn load_first_fit(rt: &PluginRuntime, root: &std::path::Path) -> RouterPlugin {
    rt.load::<RouterPlugin>(
        Manifest::new("first-fit", "bench", World::Router),
        &wat::parse_str(
            std::fs::read_to_string(root.join("tests/components/first-fit.wat"))
                .expect("tests/components/first-fit.wat"),
        )
        .expect("wat"),
        Grants::config(PluginConfig::new()),
    )
    .expect("load first-fit")
}

fn row(what: &str, s: &Stats, note: &str) {
    println!(
        "  {what:<24} {} {} {}{note}",
        us(s.p50),
        us(s.p99),
        us(s.mean)
    );
}

/// One workload: native, fresh and warm through the plugin, and the host's share.
fn bench(
    n: usize,
    name: &str,
    plugin: &RouterPlugin,
    floor: &RouterPlugin,
    request: &RouteRequest,
) -> Stats {
    let (labels, tasks, targets) = native_inputs(request);

    // Same answers natively and through the plugin (when it is the default router).
    let native_answer = native_route(&labels, &tasks, &targets);
    let plugin_answer = plugin.route(request).expect("route");
    if name == "router-default" {
        assert_eq!(native_answer, plugin_answer, "native and plugin disagree");
    }
    let assigned = plugin_answer
        .iter()
        .filter(|d| matches!(d, Decision::Assign(_)))
        .count();

    let native = measure(n * 10, || {
        black_box(native_route(
            black_box(&labels),
            black_box(&tasks),
            black_box(&targets),
        ));
    });
    let fresh = measure(n, || {
        black_box(plugin.route(black_box(request)).expect("route"));
    });
    let mut warm_router = plugin.warm();
    let warm = measure(n, || {
        black_box(warm_router.route(black_box(request)).expect("route"));
    });

    // The host's share: the same calls into the first-fit test component, whose
    // allocator is a bump pointer and whose logic is a loop (what is left is lowering
    // the arguments and lifting the answer, instantiation, and the call itself).
    let floor_fresh = measure(n, || {
        black_box(floor.route(black_box(request)).expect("route"));
    });
    let mut floor_router = floor.warm();
    let floor_warm = measure(n, || {
        black_box(floor_router.route(black_box(request)).expect("route"));
    });
    let strings: usize = request
        .labels
        .iter()
        .map(|l| match l {
            Label::Tag(_) => 2,
            Label::Group(_) => 1,
        })
        .sum();

    println!(
        "{} task(s) x {} targets, {} labels ({assigned} assigned; {strings} strings + 3 lists lowered):",
        request.tasks.len(),
        request.targets.len(),
        request.labels.len(),
    );
    println!("                               p50          p99         mean");
    row("native Rust (same logic)", &native, "");
    row("plugin, fresh instance", &fresh, "");
    row("plugin, warm instance", &warm, "");
    row(
        "host share, fresh",
        &floor_fresh,
        "   (first-fit test component)",
    );
    row("host share, warm", &floor_warm, "");
    println!(
        "  warm throughput          {:8.0} calls/s, {:.0} decisions/s (one thread)",
        1.0 / warm.mean.as_secs_f64(),
        request.tasks.len() as f64 / warm.mean.as_secs_f64()
    );
    warm
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dist = root.join("../../builtin-plugins/dist/router-default.wasm");
    let other = std::env::var_os("ROUTER_BENCH_COMPONENT").map(PathBuf::from);
    let (name, bytes) = match other
        .as_ref()
        .map(std::fs::read)
        .unwrap_or_else(|| std::fs::read(&dist))
    {
        Ok(b) if other.is_some() => (
            "other",
            wat::parse_bytes(&b).expect("wasm or wat").into_owned(),
        ),
        Ok(b) => ("router-default", b),
        Err(_) => {
            let text = std::fs::read_to_string(root.join("tests/components/first-fit.wat"))
                .expect("tests/components/first-fit.wat");
            eprintln!(
                "note: {} is missing (bash builtin-plugins/build.sh); measuring the first-fit test component",
                dist.display()
            );
            (
                "first-fit (test component)",
                wat::parse_str(text).expect("wat"),
            )
        }
    };
    let mut manifest = Manifest::new(name, "bench", World::Router);
    manifest.capabilities.push(Capability::Config);

    // Compile (cache miss), then a restart that loads the cached artifact.
    let cache = tempfile::tempdir().expect("tempdir");
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let rt = PluginRuntime::new(config.clone()).expect("runtime");
    let t = Instant::now();
    let compiled = rt
        .load::<RouterPlugin>(
            manifest.clone(),
            &bytes,
            Grants::config(PluginConfig::new()),
        )
        .expect("load");
    let load_compiled = t.elapsed();
    let compile_time = compiled.info().load_time;
    drop((compiled, rt));
    let rt = PluginRuntime::new(config).expect("runtime");
    let t = Instant::now();
    let plugin = rt
        .load::<RouterPlugin>(manifest, &bytes, Grants::config(PluginConfig::new()))
        .expect("load");
    let load_cached = t.elapsed();
    let cached_time = plugin.info().load_time;
    assert_eq!(
        rt.cache_stats().hits,
        1,
        "the second load must hit the cache"
    );
    let floor = load_first_fit(&rt, &root);

    println!(
        "router bench: {name} ({} bytes), {n} calls per figure (native: {})",
        bytes.len(),
        n * 10
    );
    bench(n, name, &plugin, &floor, &workload(1));
    bench(n, name, &plugin, &floor, &workload(8));
    println!(
        "compile (cache miss)        {}   (whole load: {})",
        ms(compile_time),
        ms(load_compiled)
    );
    println!(
        "cached load (restart)       {}   (whole load: {})",
        ms(cached_time),
        ms(load_cached)
    );
    let m = plugin.metrics().snapshot();
    println!(
        "plugin metrics: {} calls, {} errors, {} instantiations, p50 {:?}, p99 {:?}",
        m.calls,
        m.errors,
        m.instantiations,
        m.p50.unwrap_or_default(),
        m.p99.unwrap_or_default()
    );
}
