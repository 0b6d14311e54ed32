//! The API's timed work with the time passed in (no test waits for a clock): the cron
//! scheduler (each concurrency policy over several ticks, missed ticks, the starting
//! deadline, suspend, history limits, two servers on one store firing each tick once)
//! and retention (the default, a group's own, a run's artifacts). The real API state and
//! store; no executor (children stay queued, so they count as running).

#[path = "../../store/tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::Db;
use tessera_api::{ApiConfig, AppState};
use tessera_core::State;
use tessera_store::{Lease, ListQuery, Store};
use time::OffsetDateTime;
use time::macros::datetime;

store_tests!(
    each_policy_over_ticks_with_an_injected_clock,
    missed_ticks_deadlines_suspend_and_history,
    two_servers_fire_each_tick_once,
    retention_deletes_old_finished_tasks_with_their_artifacts,
);

/// A server's API state on `store` (its own scratch directories in `dir`).
async fn server(store: Store, dir: &std::path::Path, name: &str) -> AppState {
    server_with(store, dir, name).await.0
}

/// A server's API state and its object store.
async fn server_with(
    store: Store,
    dir: &std::path::Path,
    name: &str,
) -> (AppState, Arc<tessera_objstore::EmbeddedObjectStore>) {
    let runtime = tessera_plugin_runtime::PluginRuntime::new(Default::default()).unwrap();
    let registry = tessera_registry::Registry::open(store.clone(), runtime, &[], None, vec![])
        .await
        .unwrap();
    let runner = tessera_runner::Runner::new(
        store,
        tessera_runner::RunnerConfig {
            work_dir: dir.join(format!("{name}-work")),
            max_concurrent_tasks: 1,
            log_tail_bytes: 1024,
            file_roots: vec![],
            log_flush_interval: Duration::from_millis(500),
            targets: vec![],
            route_tag_keys: vec![],
            isolation: Default::default(),
            max_run_time: Duration::from_secs(3600),
            lease: Lease {
                owner: name.into(),
                ttl: Duration::from_secs(30),
            },
        },
        None,
        Arc::new(registry.clone()),
        Arc::new(registry.clone()),
    );
    let objects = Arc::new(
        tessera_objstore::EmbeddedObjectStore::open(dir.join(format!("{name}-objects"))).unwrap(),
    );
    let state = AppState::new(
        runner,
        ApiConfig {
            auth: tessera_api::auth::AuthConfig {
                enabled: true,
                signing_key: Arc::new(tessera_auth::SigningKey::generate().unwrap()),
                access_token_lifetime: Duration::from_secs(3600),
                group_tag: "tessera.group".into(),
                oidc: None,
            },
            audit_retention: Duration::from_secs(3600),
            max_body_bytes: 1 << 20,
            policy: Default::default(),
            secrets_key: Arc::new(
                tessera_auth::sealed::SealKey::from_bytes(
                    &tessera_auth::sealed::SealKey::generate(),
                )
                .unwrap(),
            ),
            retention: Some(Duration::from_secs(7 * 86_400)),
        },
        registry,
        objects.clone(),
    )
    .unwrap();
    (state, objects)
}

/// The first tick: far in the future, so the servers' own schedulers (on the system
/// clock) never see it due; only the rounds the tests run with their own time do.
const T0: OffsetDateTime = datetime!(2040-01-01 10:00 UTC);

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

async fn setup(store: &Store, name: &str, spec: serde_json::Value) {
    // The group's default agent (made by the first cron task set up).
    let _ = store
        .put_named(
            None,
            "team",
            "default",
            &json!({"name": "default", "image": "busybox", "command": ["true"]}).to_string(),
            false,
        )
        .await;
    let mut spec = spec;
    spec["name"] = json!(name);
    store
        .put_cron("team", name, &spec.to_string(), Some(ms(T0)), false)
        .await
        .unwrap();
}

/// The cron task's children, oldest first: (name, state).
async fn children(store: &Store, name: &str) -> Vec<(String, State)> {
    let mut kids: Vec<(String, State)> = store
        .list_tasks(&ListQuery {
            tags: vec![("tessera.cron".into(), name.into())],
            limit: 100,
            ..ListQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.spec.name.unwrap_or_default(), t.state))
        .collect();
    kids.reverse();
    kids
}

async fn children_ids(store: &Store, name: &str) -> Vec<String> {
    let mut ids: Vec<String> = store
        .list_tasks(&ListQuery {
            tags: vec![("tessera.cron".into(), name.into())],
            limit: 100,
            minimal: true,
            ..ListQuery::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    ids.reverse();
    ids
}

fn at(minutes: i64, seconds: i64) -> OffsetDateTime {
    T0 + time::Duration::minutes(minutes) + time::Duration::seconds(seconds)
}

fn tick_name(cron: &str, minutes: i64) -> String {
    format!("{cron}-{}", at(minutes, 0).unix_timestamp())
}

async fn each_policy_over_ticks_with_an_injected_clock(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let app = server(db.store.clone(), dir.path(), "a").await;
    let store = &db.store;
    for policy in ["Allow", "Forbid", "Replace"] {
        setup(
            store,
            &policy.to_lowercase(),
            json!({"schedule": "*/15 * * * *", "concurrencyPolicy": policy}),
        )
        .await;
    }
    // The first tick: each makes a child, once however often the round runs.
    tessera_api::cron::round(&app, at(0, 5)).await.unwrap();
    tessera_api::cron::round(&app, at(0, 6)).await.unwrap();
    for name in ["allow", "forbid", "replace"] {
        assert_eq!(
            children(store, name).await,
            [(tick_name(name, 0), State::Queued)],
            "{name}: {:?}",
            store.cron("team", name).await.unwrap()
        );
    }
    // The second, with the first child still queued (running, as policies see it).
    tessera_api::cron::round(&app, at(15, 1)).await.unwrap();
    assert_eq!(
        children(store, "allow").await,
        [
            (tick_name("allow", 0), State::Queued),
            (tick_name("allow", 15), State::Queued)
        ]
    );
    assert_eq!(
        children(store, "forbid").await,
        [(tick_name("forbid", 0), State::Queued)]
    );
    let forbid = store.cron("team", "forbid").await.unwrap().unwrap();
    assert!(forbid.last_skip.unwrap().contains("Forbid"));
    assert_eq!(forbid.next_ms, Some(ms(at(30, 0))));
    assert_eq!(
        children(store, "replace").await,
        [
            (tick_name("replace", 0), State::Canceled),
            (tick_name("replace", 15), State::Queued)
        ]
    );
    // Once the child ends, Forbid fires again.
    let first = children_ids(store, "forbid").await;
    store
        .transition(&first[0], State::Complete, None, None)
        .await
        .unwrap();
    tessera_api::cron::round(&app, at(30, 2)).await.unwrap();
    assert_eq!(
        children(store, "forbid").await,
        [
            (tick_name("forbid", 0), State::Complete),
            (tick_name("forbid", 30), State::Queued)
        ]
    );
}

async fn missed_ticks_deadlines_suspend_and_history(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    let app = server(db.store.clone(), dir.path(), "a").await;
    let store = &db.store;
    setup(
        store,
        "late",
        json!({"schedule": "*/15 * * * *", "concurrencyPolicy": "Allow",
               "startingDeadlineSeconds": 60, "successfulHistoryLimit": 1}),
    )
    .await;
    setup(
        store,
        "paused",
        json!({"schedule": "*/15 * * * *", "suspend": true}),
    )
    .await;
    // Down for 45 minutes: the missed ticks collapse into the latest, 10:45.
    tessera_api::cron::round(&app, at(45, 30)).await.unwrap();
    assert_eq!(
        children(store, "late").await,
        [(tick_name("late", 45), State::Queued)]
    );
    assert_eq!(children(store, "paused").await, []);
    let paused = store.cron("team", "paused").await.unwrap().unwrap();
    assert_eq!(paused.last_skip.as_deref(), Some("suspended"));
    assert_eq!(paused.next_ms, Some(ms(at(60, 0))));
    // Five minutes late is past the 60 s deadline: skipped.
    tessera_api::cron::round(&app, at(65, 0)).await.unwrap();
    assert_eq!(children(store, "late").await.len(), 1);
    let late = store.cron("team", "late").await.unwrap().unwrap();
    assert!(late.last_skip.unwrap().contains("deadline"));
    // History: with one success kept, the older success goes.
    let first = children_ids(store, "late").await;
    store
        .transition(&first[0], State::Complete, None, None)
        .await
        .unwrap();
    tessera_api::cron::round(&app, at(75, 10)).await.unwrap();
    let ids = children_ids(store, "late").await;
    store
        .transition(&ids[1], State::Complete, None, None)
        .await
        .unwrap();
    tessera_api::cron::round(&app, at(90, 10)).await.unwrap();
    let names: Vec<String> = children(store, "late")
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(names, [tick_name("late", 75), tick_name("late", 90)]);
}

async fn two_servers_fire_each_tick_once(db: &Db) {
    let dir = tempfile::tempdir().unwrap();
    // Two servers, each with its own connections, on one database.
    let a = server(db.store.clone(), dir.path(), "a").await;
    let b = server(Store::connect(&db.url).await.unwrap(), dir.path(), "b").await;
    setup(
        &db.store,
        "both",
        json!({"schedule": "* * * * *", "concurrencyPolicy": "Allow"}),
    )
    .await;
    for minute in 0..5 {
        let now = at(minute, 3);
        let (ra, rb) = tokio::join!(
            tessera_api::cron::round(&a, now),
            tessera_api::cron::round(&b, now)
        );
        ra.unwrap();
        rb.unwrap();
    }
    let names: Vec<String> = children(&db.store, "both")
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    let expected: Vec<String> = (0..5).map(|m| tick_name("both", m)).collect();
    assert_eq!(names, expected, "one child per tick");
}

async fn retention_deletes_old_finished_tasks_with_their_artifacts(db: &Db) {
    use tessera_objstore::ObjectStore;
    let dir = tempfile::tempdir().unwrap();
    let (app, objects) = server_with(db.store.clone(), dir.path(), "a").await;
    let store = &db.store;
    for g in ["team", "keepers", "short"] {
        store.create_group(g).await.unwrap();
    }
    assert!(store.set_retention("keepers", Some(0)).await.unwrap());
    assert!(store.set_retention("short", Some(1)).await.unwrap());
    let task = |group: &str, origin: tessera_core::task::Origin| tessera_core::task::NewTask {
        id: tessera_core::id::new_task_id(),
        group: group.into(),
        origin,
        priority: 0,
        spec: tessera_core::tes::Task {
            executors: Some(vec![tessera_core::tes::Executor {
                image: "busybox".into(),
                command: vec!["true".into()],
                ..Default::default()
            }]),
            ..Default::default()
        },
        extra: Default::default(),
        run: None,
        creation_time: OffsetDateTime::now_utc(),
        reason: None,
        logs: vec![],
    };
    let mut run = task("team", tessera_core::task::Origin::Run);
    run.run = Some(tessera_core::task::RunLink {
        operation_id: "op".into(),
        version: 1,
        request: "{}".into(),
        rerun_of: None,
        response_url: None,
    });
    let kept = task("keepers", tessera_core::task::Origin::Tes);
    let short = task("short", tessera_core::task::Origin::Task);
    let running = task("short", tessera_core::task::Origin::Tes);
    store
        .insert_tasks(&[run.clone(), kept.clone(), short.clone(), running.clone()])
        .await
        .unwrap();
    for t in [&run, &kept, &short] {
        store
            .transition(&t.id, State::Complete, None, None)
            .await
            .unwrap()
            .unwrap();
    }
    let artifact = format!("runs/{}/out/x.txt", run.id);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut up = objects
        .put("team", &artifact, 2, &Default::default(), deadline)
        .unwrap();
    std::io::Write::write_all(&mut up, b"hi").unwrap();
    up.finish().unwrap();
    let exists = |id: &str| {
        let store = store.clone();
        let id = id.to_string();
        async move { store.get_task(&id).await.unwrap().is_some() }
    };

    let now = OffsetDateTime::now_utc();
    assert_eq!(tessera_api::retention::round(&app, now).await.unwrap(), 0);
    // Two days on: past "short"'s one day, within the default week.
    tessera_api::retention::round(&app, now + time::Duration::days(2))
        .await
        .unwrap();
    assert!(!exists(&short.id).await);
    assert!(exists(&running.id).await, "an unfinished task stays");
    assert!(exists(&run.id).await && exists(&kept.id).await);
    // Eight days on: the run goes with its artifacts and its row; "keepers" keeps.
    tessera_api::retention::round(&app, now + time::Duration::days(8))
        .await
        .unwrap();
    assert!(!exists(&run.id).await);
    assert!(store.run(&run.id).await.unwrap().is_none());
    assert!(
        objects.head("team", &artifact, deadline).is_err(),
        "the run's artifacts are gone"
    );
    assert!(exists(&kept.id).await, "retention 0 keeps");
    assert!(exists(&running.id).await);
}
