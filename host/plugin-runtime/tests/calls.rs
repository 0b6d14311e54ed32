//! Calls: answers, and every way a call can fail without taking anything else down.

mod common;

use std::time::Duration;

use common::*;
use tessera_plugin_runtime::{
    CallError, Decision, ErrorKind, PluginConfig, PluginError, PluginRuntime, RouteRequest,
    RouteTarget, RouteTask, RuntimeConfig,
};
use tessera_plugin_runtime::{Grants, RouterPlugin};

#[test]
fn fresh_and_warm_calls_answer() {
    let rt = runtime();
    let p = load(&rt, "first-fit");
    let r = request(8, 16);
    let want = vec![Decision::Assign(0); 8];
    assert_eq!(p.route(&r).unwrap(), want);
    let mut warm = p.warm();
    assert!(!warm.is_warm());
    for _ in 0..100 {
        assert_eq!(warm.route(&r).unwrap(), want);
    }
    assert!(warm.is_warm());
    // No targets: every task deferred with the plugin's reason.
    assert_eq!(
        p.route(&request(2, 0)).unwrap(),
        vec![Decision::Defer("no targets".into()); 2]
    );
    // No tasks: no decisions.
    assert_eq!(p.route(&request(0, 16)).unwrap(), vec![]);
    let m = p.metrics().snapshot();
    assert_eq!(m.calls, 103);
    assert_eq!(m.errors, 0);
    // 3 fresh calls + 1 warm instance.
    assert_eq!(m.instantiations, 4);
    assert!(m.p50.is_some() && m.p99 >= m.p50);
}

#[test]
fn an_endless_loop_times_out() {
    let rt = runtime();
    let p = load_limited(&rt, "spin", Duration::from_millis(20), 64 << 20);
    // The outcome is what a caller depends on; how long it took is the benchmark's
    // business (the epoch ticker's granularity under load is not a test's).
    assert_eq!(p.route(&request(1, 1)), Err(CallError::Timeout));
    // Same on a warm instance, twice (the instance is rebuilt in between).
    let mut warm = p.warm();
    assert_eq!(warm.route(&request(1, 1)), Err(CallError::Timeout));
    assert!(!warm.is_warm());
    assert_eq!(warm.route(&request(1, 1)), Err(CallError::Timeout));
    assert_eq!(p.metrics().snapshot().errors_of(ErrorKind::Timeout), 3);
}

#[test]
fn the_deadline_holds_after_the_runtime_handle_is_dropped() {
    let rt = runtime();
    let p = load_limited(&rt, "spin", Duration::from_millis(10), 64 << 20);
    drop(rt);
    assert_eq!(p.route(&request(1, 1)), Err(CallError::Timeout));
}

/// (Deadlines here are the router cap, 1 s: far longer than running out of memory takes.)
#[test]
fn a_huge_allocation_is_out_of_memory() {
    let rt = runtime();
    let p = load_limited(&rt, "hog", Duration::from_secs(1), 32 << 20);
    assert_eq!(p.route(&request(1, 1)), Err(CallError::OutOfMemory));
    let mut warm = p.warm();
    assert_eq!(warm.route(&request(1, 1)), Err(CallError::OutOfMemory));
    assert_eq!(p.metrics().snapshot().errors_of(ErrorKind::OutOfMemory), 2);
}

#[test]
fn arguments_beyond_the_memory_cap_are_out_of_memory() {
    // The host's own copy of the arguments into the guest counts against the cap.
    let rt = runtime();
    let p = load_limited(&rt, "first-fit", Duration::from_secs(1), 1 << 20);
    let mut big = request(1, 1);
    big.labels.push(tag("huge", &"x".repeat(2 << 20)));
    assert_eq!(p.route(&big), Err(CallError::OutOfMemory));
    assert_eq!(p.route(&request(1, 1)).unwrap().len(), 1);
}

#[test]
fn a_trap_fails_one_call_and_the_warm_instance_is_rebuilt() {
    let rt = runtime();
    let p = load(&rt, "first-fit");
    let mut boom = request(2, 3);
    boom.tasks[0].priority = 666; // first-fit traps on this
    let fine = request(2, 3);

    match p.route(&boom) {
        Err(CallError::Trap(msg)) => {
            // The trap and the function it happened in, not the whole backtrace.
            assert!(msg.contains("unreachable"), "{msg}");
            assert!(msg.contains(" in "), "{msg}");
            assert!(!msg.contains("backtrace") && msg.len() < 200, "{msg}");
        }
        other => panic!("{other:?}"),
    }

    let mut warm = p.warm();
    assert_eq!(warm.route(&fine).unwrap().len(), 2);
    assert!(matches!(warm.route(&boom), Err(CallError::Trap(_))));
    assert!(!warm.is_warm(), "a trapped instance is not reused");
    assert_eq!(warm.route(&fine).unwrap().len(), 2);
    assert!(warm.is_warm());

    let m = p.metrics().snapshot();
    assert_eq!(m.errors_of(ErrorKind::Trap), 2);
    assert_eq!(m.calls, 4);
}

#[test]
fn a_wrong_number_of_decisions_is_an_invalid_result() {
    let rt = runtime();
    let p = load(&rt, "short");
    match p.route(&request(3, 2)) {
        Err(CallError::InvalidResult(msg)) => {
            assert_eq!(
                msg,
                "0 decisions for 3 tasks (there must be exactly one per task)"
            )
        }
        other => panic!("{other:?}"),
    }
    // The instance is fine after an invalid answer: a warm one stays warm.
    let mut warm = p.warm();
    assert!(matches!(
        warm.route(&request(1, 1)),
        Err(CallError::InvalidResult(_))
    ));
    assert!(warm.is_warm());
}

#[test]
fn an_unknown_target_is_an_invalid_result() {
    let rt = runtime();
    let p = load(&rt, "stranger");
    // It assigns every task to the index one past the last target.
    for (n, want) in [
        (
            2,
            "decision 0 assigns target 2, but the request has 2 targets",
        ),
        (
            1,
            "decision 0 assigns target 1, but the request has 1 target",
        ),
        (
            0,
            "decision 0 assigns target 0, but the request has 0 targets",
        ),
    ] {
        assert_eq!(
            p.route(&request(2, n)),
            Err(CallError::InvalidResult(want.into()))
        );
    }
    // No tasks, no decisions: nothing to refuse.
    assert_eq!(p.route(&request(0, 3)).unwrap(), vec![]);
}

#[test]
fn a_plugin_error_is_passed_on() {
    let rt = runtime();
    let p = load(&rt, "refuse");
    let e = p.route(&request(1, 1)).unwrap_err();
    assert_eq!(
        e,
        CallError::Plugin(PluginError::Unavailable("backend down".into()))
    );
    assert_eq!(
        e.to_string(),
        "the plugin reported an error: unavailable: backend down"
    );
}

#[test]
fn an_exhausted_pool_fails_instantiation_only() {
    let rt = PluginRuntime::new(RuntimeConfig {
        max_instances: 2,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let p = load(&rt, "first-fit");
    let r = request(1, 1);
    let mut a = p.warm();
    let mut b = p.warm();
    a.route(&r).unwrap();
    b.route(&r).unwrap();
    match p.route(&r) {
        Err(CallError::Instantiate(msg)) => assert!(msg.contains("maximum concurrent"), "{msg}"),
        other => panic!("{other:?}"),
    }
    drop(b);
    p.route(&r).unwrap();
}

#[test]
fn calls_run_concurrently() {
    let rt = runtime();
    let p = load(&rt, "first-fit");
    std::thread::scope(|s| {
        for _ in 0..4 {
            let p = p.clone();
            s.spawn(move || {
                let mut warm = p.warm();
                let r = request(8, 16);
                for i in 0..200 {
                    let d = if i % 2 == 0 {
                        p.route(&r)
                    } else {
                        warm.route(&r)
                    };
                    assert_eq!(d.unwrap().len(), 8);
                }
            });
        }
    });
    assert_eq!(p.metrics().snapshot().calls, 800);
}

#[test]
fn log_and_config_reach_the_plugin() {
    let rt = runtime();
    let bytes = component("configured");
    let config = PluginConfig::new()
        .value("target", "3")
        .secret("token", "s3cr3t");

    // The secret is not listed in the manifest: the plugin cannot read it.
    let p = rt
        .load::<RouterPlugin>(
            with_config(manifest("configured")),
            &bytes,
            Grants::config(config.clone()),
        )
        .unwrap();
    let (d, logs) = logged(|| p.route(&request(2, 4)));
    assert_eq!(d.unwrap(), vec![Decision::Assign(3); 2]);
    assert!(
        logs.contains("routing with the configured target"),
        "{logs}"
    );
    assert!(logs.contains("plugin=configured"), "{logs}");
    assert!(logs.contains("version=1.0.0"), "{logs}");
    assert!(logs.contains("INFO"), "{logs}");

    // Listed: the plugin reads it (and answers with it, which only a test plugin does).
    let mut m = with_config(manifest("configured"));
    m.secrets.push("token".into());
    let p = rt
        .load::<RouterPlugin>(m, &bytes, Grants::config(config))
        .unwrap();
    let (d, logs) = logged(|| p.route(&request(1, 4)));
    assert_eq!(d.unwrap(), vec![Decision::Defer("s3cr3t".into())]);
    assert!(
        !logs.contains("s3cr3t"),
        "the host never logs a secret: {logs}"
    );

    // No configuration at all.
    let p = rt
        .load::<RouterPlugin>(
            with_config(manifest("configured")),
            &bytes,
            Grants::config(PluginConfig::new()),
        )
        .unwrap();
    assert_eq!(
        p.route(&request(1, 4)).unwrap(),
        vec![Decision::Defer("no target configured".into())]
    );
}

#[test]
fn the_request_reaches_the_plugin_as_laid_out() {
    // first-holder reads needs, holds and free slots at their canonical-ABI offsets, and
    // answers a task no target holds with the last label's name.
    let rt = runtime();
    let p = load(&rt, "first-holder");
    const ZONE: u64 = 1 << 0;
    const GROUP: u64 = 1 << 1;
    const GPU: u64 = 1 << 2;
    const TOP: u64 = 1 << 63;
    // Every other field set, so a wrong offset reads something else than the test meant.
    let t = |needs| RouteTask {
        needs,
        group: 0,
        priority: -1,
        cpu_cores: 7,
        ram_bytes: u64::MAX,
        queued_at_ms: 9,
    };
    let g = |holds, free_slots| RouteTarget {
        holds,
        free_slots,
        cpu_cores_free: 3,
        ram_bytes_free: u64::MAX,
    };
    let r = RouteRequest {
        labels: vec![tag("zone", "a"), group("lab"), tag("gpu", "a100")],
        tasks: vec![t(ZONE | GROUP), t(GPU), t(0), t(TOP), t(TOP | GPU)],
        targets: vec![
            g(ZONE, 4),
            g(ZONE | GROUP | TOP, 0),
            g(ZONE | GROUP, 1),
            g(TOP | ZONE, 2),
        ],
    };
    let want = vec![
        Decision::Assign(2),
        Decision::Defer("a100".into()),
        Decision::Assign(0),
        Decision::Assign(3),
        Decision::Defer("a100".into()),
    ];
    assert_eq!(p.route(&r).unwrap(), want);
    let mut warm = p.warm();
    for _ in 0..3 {
        assert_eq!(warm.route(&r).unwrap(), want);
    }
    // A group as the last label: its name.
    let mut r = r;
    r.labels.push(group("ops"));
    assert_eq!(p.route(&r).unwrap()[1], Decision::Defer("ops".into()));
    // No labels: the empty reason.
    r.labels.clear();
    assert_eq!(p.route(&r).unwrap()[1], Decision::Defer(String::new()));
}

#[test]
fn router_default_routes() {
    let Some(bytes) = router_default() else {
        return;
    };
    let rt = runtime();
    let p = rt
        .load::<RouterPlugin>(
            with_config(manifest("router-default")),
            &bytes,
            Grants::config(PluginConfig::new()),
        )
        .unwrap();
    const SSD: u64 = 1 << 3;
    const RISCV: u64 = 1 << 4;
    let mut r = request(3, 3);
    r.labels.push(tag("disk", "ssd"));
    r.labels.push(tag("arch", "riscv"));
    r.targets[1].holds |= SSD; // only target 1 holds it
    r.targets[2].free_slots = 0;
    r.tasks[0].needs |= SSD;
    r.tasks[2].needs |= RISCV; // no target holds it
    r.tasks[1].priority = 1; // goes first: to target 0 or 1 (most free slots, first)
    let mut warm = p.warm();
    for d in [p.route(&r).unwrap(), warm.route(&r).unwrap()] {
        assert_eq!(
            d,
            [
                Decision::Assign(1),
                Decision::Assign(0),
                Decision::Defer("no target holds tag arch=riscv".into()),
            ]
        );
    }
    // Capacity and groups, with the reasons naming the labels.
    let mut r = request(2, 2);
    r.targets[0].holds &= !LAB; // reserved for other groups
    r.targets[1].free_slots = 1;
    r.tasks[1].cpu_cores = 16;
    r.tasks[1].queued_at_ms += 1;
    assert_eq!(
        warm.route(&r).unwrap(),
        [
            Decision::Assign(1),
            Decision::Defer("no target of group lab with tag zone=a has a free slot".into()),
        ]
    );
    r.targets[1].free_slots = 2;
    assert_eq!(
        warm.route(&r).unwrap(),
        [
            Decision::Assign(1),
            Decision::Defer(
                "needs 16 CPU cores; at most 7 free on any target of group lab with tag zone=a"
                    .into()
            ),
        ]
    );
}

/// router-default against a reference of its rules on random requests (labels up to bit
/// 63, capacity that runs out): the same assignments, fresh and warm, and a reason for
/// every deferred task.
#[test]
fn router_default_follows_its_rules() {
    let Some(bytes) = router_default() else {
        return;
    };
    let rt = runtime();
    let p = rt
        .load::<RouterPlugin>(
            with_config(manifest("router-default")),
            &bytes,
            Grants::config(PluginConfig::new()),
        )
        .unwrap();
    let mut warm = p.warm();

    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for round in 0..200 {
        let nlabels = 1 + next(64) as usize;
        let bit = |b: u64| 1u64 << (b % nlabels as u64);
        let labels = (0..nlabels)
            .map(|i| {
                if i % 3 == 0 {
                    group(&format!("g{i}"))
                } else {
                    tag(&format!("k{i}"), "v")
                }
            })
            .collect();
        let tasks: Vec<RouteTask> = (0..next(12))
            .map(|_| RouteTask {
                needs: (0..next(3)).fold(0, |s, _| s | bit(next(64))),
                group: 0,
                priority: next(3) as i32 - 1,
                cpu_cores: next(6) as u32,
                ram_bytes: next(8) << 30,
                queued_at_ms: next(4),
            })
            .collect();
        let targets: Vec<RouteTarget> = (0..next(10))
            .map(|_| RouteTarget {
                holds: (0..next(12)).fold(0, |s, _| s | bit(next(64))),
                free_slots: next(4) as u32,
                cpu_cores_free: next(12) as u32,
                ram_bytes_free: next(16) << 30,
            })
            .collect();
        let r = RouteRequest {
            labels,
            tasks,
            targets,
        };

        // The rules: priority, then queued-at, then input order; the eligible target with
        // the most free slots, first on ties; capacity counted down.
        let mut want = vec![None; r.tasks.len()];
        let mut order: Vec<usize> = (0..r.tasks.len()).collect();
        order.sort_by_key(|&i| (-i64::from(r.tasks[i].priority), r.tasks[i].queued_at_ms, i));
        let mut free = r.targets.clone();
        for i in order {
            let t = &r.tasks[i];
            let mut best: Option<usize> = None;
            for (j, f) in free.iter().enumerate() {
                let fits = t.needs & !f.holds == 0
                    && f.free_slots > 0
                    && f.cpu_cores_free >= t.cpu_cores
                    && f.ram_bytes_free >= t.ram_bytes;
                if fits && best.is_none_or(|b| f.free_slots > free[b].free_slots) {
                    best = Some(j);
                }
            }
            if let Some(j) = best {
                free[j].free_slots -= 1;
                free[j].cpu_cores_free -= t.cpu_cores;
                free[j].ram_bytes_free -= t.ram_bytes;
                want[i] = Some(j as u32);
            }
        }

        for got in [p.route(&r).unwrap(), warm.route(&r).unwrap()] {
            assert_eq!(got.len(), want.len());
            for (i, (d, w)) in got.iter().zip(&want).enumerate() {
                match (d, w) {
                    (Decision::Assign(j), Some(k)) => {
                        assert_eq!(j, k, "round {round}, task {i}")
                    }
                    (Decision::Defer(reason), None) => {
                        assert!(!reason.is_empty(), "round {round}, task {i}")
                    }
                    _ => panic!("round {round}, task {i}: {d:?}, expected {w:?}"),
                }
            }
        }
    }
}

/// A router of tessera:plugin@0.2.0 (examples/plugins/rust-router) sees each task's
/// group; a 0.1.0 router (first-fit) gets the same request without it and answers as
/// before.
#[test]
fn a_0_2_router_sees_each_tasks_group_and_a_0_1_router_still_routes() {
    use tessera_plugin_runtime::{Contract, Label, Manifest};
    let rt = runtime();
    let group_of = |needs, group| RouteTask {
        needs,
        group,
        priority: 0,
        cpu_cores: 1,
        ram_bytes: 1 << 30,
        queued_at_ms: 1,
    };
    let request = RouteRequest {
        labels: vec![Label::Group("lab".into()), Label::Group("ops".into())],
        tasks: vec![group_of(0b01, 0), group_of(0b01, 0), group_of(0b10, 1)],
        targets: vec![RouteTarget {
            holds: 0b11,
            free_slots: 8,
            cpu_cores_free: 8,
            ram_bytes_free: 8 << 30,
        }],
    };

    let v0_1 = load(&rt, "first-fit");
    assert_eq!(v0_1.contract(), Contract::V0_1);
    assert_eq!(v0_1.route(&request).unwrap(), vec![Decision::Assign(0); 3]);

    let Some(bytes) = example_plugin("rust-router") else {
        return;
    };
    let manifest: Manifest = toml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/plugins/rust-router/manifest.toml"
        ))
        .unwrap(),
    )
    .unwrap();
    let p = rt
        .load::<RouterPlugin>(manifest, &bytes, Grants::config(PluginConfig::new()))
        .unwrap();
    assert_eq!(p.contract(), Contract::V0_2);
    assert_eq!(
        p.route(&request).unwrap(),
        vec![
            Decision::Assign(0),
            Decision::Defer("group \"lab\" has started 1 tasks in this round".into()),
            Decision::Assign(0),
        ]
    );
    let mut warm = p.warm();
    for _ in 0..3 {
        assert_eq!(
            warm.route(&request).unwrap()[1],
            p.route(&request).unwrap()[1]
        );
    }
}
