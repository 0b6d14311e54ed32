//! Engine adapters: loading against the engine-adapter world (exports type-checked at
//! load), every function's arguments and answers across the boundary, plugin errors,
//! and the deadline. The components here are built against tessera:plugin@0.1.0: the
//! host serves them through the 0.2.0 calls, carrying their answers over.

mod common;

use std::time::Duration;

use common::*;
use tessera_plugin_runtime::Grants;
use tessera_plugin_runtime::{
    CallError, Capability, Contract, EngineAdapterPlugin, ErrorKind, LoadError, LogChunk, Manifest,
    Pair, PluginConfig, PluginError, PluginRuntime, RunState, RunStatus, TaskRun, World,
};

fn engine_manifest(timeout: Duration) -> Manifest {
    let mut m = Manifest::new("echo-engine", "1.0.0", World::EngineAdapter);
    m.limits.timeout = Some(timeout);
    m
}

fn load(rt: &PluginRuntime, m: Manifest, name: &str) -> Result<EngineAdapterPlugin, LoadError> {
    rt.load::<EngineAdapterPlugin>(
        m,
        &component(name),
        Grants {
            config: PluginConfig::new(),
            allowed_hosts: Vec::new(),
            ..Grants::default()
        },
    )
}

fn pair(k: &str, v: &str) -> Pair {
    (k.into(), v.into())
}

#[test]
fn every_function_reaches_the_adapter_and_answers_come_back() {
    let rt = runtime();
    let p = load(&rt, engine_manifest(Duration::from_secs(1)), "engine-echo").unwrap();
    assert_eq!(p.manifest().world, World::EngineAdapter);
    assert_eq!(
        p.info().interfaces.exports,
        vec!["tessera:plugin/engine@0.1.0".to_string()]
    );
    assert_eq!(p.contract(), Contract::V0_1);

    // A 0.1.0 adapter validates but cannot report the task graph.
    let (r, logs) = logged(|| p.validate("dag: hello"));
    assert_eq!(r, Ok(None));
    assert!(logs.contains("dag: hello"), "{logs}");
    assert!(logs.contains("plugin=echo-engine"), "{logs}");
    assert_eq!(
        p.validate(""),
        Err(CallError::Plugin(PluginError::InvalidInput(
            "empty definition".into()
        )))
    );

    let run = p
        .submit(
            "dag",
            &[pair("run-id", "run-42"), pair("x", "1")],
            &[pair("team", "a")],
        )
        .unwrap();
    assert_eq!(run, "run-42");
    assert_eq!(
        p.submit("dag", &[], &[]),
        Err(CallError::Plugin(PluginError::InvalidInput(
            "no parameters".into()
        )))
    );

    let status = p.status(&run).unwrap();
    assert_eq!(
        status,
        RunStatus {
            state: RunState::Running,
            tasks: vec![
                TaskRun {
                    task_id: "extract".into(),
                    try_number: 1,
                    state: RunState::Succeeded,
                    start_ms: Some(1000),
                    end_ms: Some(2000),
                    message: None,
                },
                TaskRun {
                    task_id: "load".into(),
                    try_number: 1,
                    state: RunState::Running,
                    start_ms: Some(2500),
                    end_ms: None,
                    message: None,
                },
            ],
            message: None,
        }
    );
    assert_eq!(
        p.status(""),
        Err(CallError::Plugin(PluginError::NotFound(
            "no such run".into()
        )))
    );

    assert_eq!(p.retry(&run, &["load".to_string()], false), Ok(()));
    assert_eq!(
        p.retry(&run, &[], false),
        Err(CallError::Plugin(PluginError::InvalidInput(
            "nothing to retry".into()
        )))
    );
    // 0.1.0 has no downstream retry: refused without calling the plugin.
    assert!(matches!(
        p.retry(&run, &["load".to_string()], true),
        Err(CallError::Unsupported(m)) if m.contains("tessera:plugin@0.2.0")
    ));

    let chunk = |text: &str, next_offset| LogChunk {
        text: text.into(),
        next_offset,
    };
    assert_eq!(
        p.logs(&run, "load", 1, 0, 4096),
        Ok(chunk("line 1\nline 2\n", 14))
    );
    assert_eq!(p.logs(&run, "load", 1, 7, 4096), Ok(chunk("line 2\n", 14)));
    assert_eq!(
        p.logs(&run, "load", 1, u64::MAX, 4096),
        Ok(chunk("", u64::MAX))
    );

    // Each call had its own instance; plugin errors are counted as such.
    let m = p.metrics().snapshot();
    assert_eq!((m.calls, m.instantiations), (11, 11));
    assert_eq!(m.errors_of(ErrorKind::Plugin), 4);
}

#[test]
fn a_call_past_its_deadline_fails_alone() {
    let rt = runtime();
    let p = load(
        &rt,
        engine_manifest(Duration::from_millis(50)),
        "engine-echo",
    )
    .unwrap();
    assert_eq!(p.cancel("run-1"), Err(CallError::Timeout));
    // The next call gets a fresh instance and works.
    assert_eq!(p.validate("dag"), Ok(None));
    assert_eq!(p.metrics().snapshot().errors_of(ErrorKind::Timeout), 1);
}

#[test]
fn components_of_other_worlds_and_grants_beyond_the_world_are_refused() {
    let rt = runtime();
    // A notifier is not an engine adapter: the world's export is missing.
    let e = load(&rt, engine_manifest(Duration::from_secs(1)), "notify-echo")
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("does not export tessera:plugin/engine@0.2.0"),
        "{e}"
    );

    // The manifest may grant only what the world imports.
    let mut m = engine_manifest(Duration::from_secs(1));
    m.capabilities = vec![Capability::Workspace];
    let e = load(&rt, m, "engine-echo")
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("workspace"), "{e}");

    // A manifest of another world does not load here.
    let mut m = engine_manifest(Duration::from_secs(1));
    m.world = World::Notifier;
    assert!(matches!(
        load(&rt, m, "engine-echo"),
        Err(LoadError::Manifest(_))
    ));
}

/// examples/plugins/rust-engine, written with the SDK's `engine_adapter` module: the
/// bindings the SDK generates meet the host's.
#[test]
fn the_sdk_example_engine_adapter_runs_in_the_host() {
    let Some(bytes) = example_plugin("rust-engine") else {
        return;
    };
    let manifest: Manifest = toml::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/plugins/rust-engine/manifest.toml"
        ))
        .unwrap(),
    )
    .unwrap();
    let rt = runtime();
    let p = rt
        .load::<EngineAdapterPlugin>(
            manifest,
            &bytes,
            Grants {
                config: PluginConfig::new().value("prefix", "pretend:"),
                allowed_hosts: Vec::new(),
                ..Grants::default()
            },
        )
        .unwrap();

    assert_eq!(p.contract(), Contract::V0_1);
    assert_eq!(p.validate("extract>transform>load"), Ok(None));
    match p.validate("extract>>load") {
        Err(CallError::Plugin(PluginError::InvalidInput(m))) => {
            assert!(m.contains("task 2"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let (run, logs) = logged(|| p.submit("extract>transform>load", &[], &[]));
    let run = run.unwrap();
    assert_eq!(run, "pretend:extract>transform>load");
    assert!(logs.contains("submitted a run of 3 tasks"), "{logs}");

    let status = p.status(&run).unwrap();
    assert_eq!(status.state, RunState::Running);
    let summary: Vec<(&str, RunState, u32)> = status
        .tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.state, t.try_number))
        .collect();
    assert_eq!(
        summary,
        [
            ("extract", RunState::Succeeded, 1),
            ("transform", RunState::Running, 1),
            ("load", RunState::Queued, 1),
        ]
    );
    assert_eq!(status.tasks[0].end_ms, Some(1000));

    assert!(matches!(
        p.status("elsewhere:x"),
        Err(CallError::Plugin(PluginError::NotFound(_)))
    ));
    assert_eq!(p.cancel(&run), Ok(()));
    assert_eq!(p.retry(&run, &["load".to_string()], false), Ok(()));
    assert!(matches!(
        p.retry(&run, &["nope".to_string()], false),
        Err(CallError::Plugin(PluginError::NotFound(_)))
    ));
    let logs = |offset| p.logs(&run, "load", 1, offset, 4096).map(|c| c.text);
    assert_eq!(logs(0).as_deref(), Ok("load: started\nload: done\n"));
    assert_eq!(logs(14).as_deref(), Ok("load: done\n"));
}
