//! The Task API's store: priorities in the queue, operations and their versions, runs,
//! and the event feed, on SQLite and PostgreSQL.

mod support;

use std::collections::HashSet;

use support::{Db, new_task};
use tessera_core::State;
use tessera_core::task::Origin;
use tessera_store::{Lease, RunQuery, RunRow, StoreError};

store_tests!(
    higher_priority_is_claimed_first_then_fifo,
    operations_keep_every_version_and_names_are_unique_per_group,
    runs_are_listed_with_their_tasks_by_group_and_operation,
    the_feed_is_in_commit_order_under_concurrent_writers,
    a_cron_tick_is_taken_by_one_server,
);

fn me() -> Lease {
    Lease {
        owner: "server-a".into(),
        ttl: std::time::Duration::from_secs(3600),
    }
}

async fn higher_priority_is_claimed_first_then_fifo(db: &Db) {
    let store = &db.store;
    let mut tasks = Vec::new();
    for (name, priority) in [("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 9)] {
        let mut t = new_task(Some(name), &[]);
        t.priority = priority;
        t.group = if priority > 0 {
            "hi".into()
        } else {
            "lo".into()
        };
        tasks.push(t);
    }
    store.insert_tasks(&tasks).await.unwrap();
    let peek: Vec<String> = store
        .oldest_queued(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.spec.name.unwrap())
        .collect();
    assert_eq!(peek, ["f", "b", "d", "a", "c", "e"]);
    let in_group: Vec<String> = store
        .oldest_queued_in("lo", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.spec.name.unwrap())
        .collect();
    assert_eq!(in_group, ["a", "c", "e"]);
    let claimed: Vec<(String, i32)> = store
        .claim_queued(4, &me())
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.spec.name.unwrap(), t.priority))
        .collect();
    assert_eq!(
        claimed,
        [
            ("f".into(), 9),
            ("b".into(), 5),
            ("d".into(), 5),
            ("a".into(), 0)
        ]
    );
}

async fn operations_keep_every_version_and_names_are_unique_per_group(db: &Db) {
    let store = &db.store;
    let op = store
        .create_operation("op1", "team", "train", r#"{"v":1}"#, "ada")
        .await
        .unwrap();
    assert_eq!((op.version, op.latest), (1, 1));
    let taken = store
        .create_operation("op2", "team", "train", "{}", "ada")
        .await
        .unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken}");
    // Another group may use the name.
    store
        .create_operation("op3", "other", "train", "{}", "bob")
        .await
        .unwrap();
    let v2 = store
        .update_operation("op1", "train", r#"{"v":2}"#, "bob")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (v2.version, v2.latest, v2.spec.as_str()),
        (2, 2, r#"{"v":2}"#)
    );
    let v1 = store.operation("op1", Some(1)).await.unwrap().unwrap();
    assert_eq!((v1.spec.as_str(), v1.latest), (r#"{"v":1}"#, 2));
    let versions = store.operation_versions("op1").await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|(v, _, by)| (*v, by.as_str()))
            .collect::<Vec<_>>(),
        [(1, "ada"), (2, "bob")]
    );
    let listed = store
        .list_operations(Some(&["team".to_string()]), None, None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, 2);
    assert!(store.delete_operation("op1").await.unwrap());
    assert!(!store.delete_operation("op1").await.unwrap());
    assert!(
        store
            .update_operation("op1", "train", "{}", "ada")
            .await
            .unwrap()
            .is_none()
    );
    // Deleted: not listed, still readable for its runs, and its name is free.
    let all = store.list_operations(None, None, None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        ["op3"]
    );
    assert!(store.operation("op1", None).await.unwrap().unwrap().deleted);
    store
        .create_operation("op4", "team", "train", "{}", "ada")
        .await
        .unwrap();
}

fn run_link(op: &str) -> tessera_core::task::RunLink {
    tessera_core::task::RunLink {
        operation_id: op.into(),
        version: 1,
        request: "{}".into(),
        rerun_of: None,
        response_url: Some("https://example.org/hook".into()),
    }
}

async fn runs_are_listed_with_their_tasks_by_group_and_operation(db: &Db) {
    let store = &db.store;
    let mut ids = Vec::new();
    for (group, op) in [
        ("team", "op1"),
        ("team", "op2"),
        ("other", "op1"),
        ("team", "op1"),
    ] {
        let mut t = new_task(Some("r"), &[]);
        t.origin = Origin::Run;
        t.group = group.into();
        t.run = Some(run_link(op));
        store.insert_tasks(std::slice::from_ref(&t)).await.unwrap();
        ids.push(t.id);
    }
    // A TES task is not a run.
    store
        .insert_tasks(&[new_task(Some("tes"), &[])])
        .await
        .unwrap();

    let q = |groups: Option<Vec<String>>, op: Option<&str>| RunQuery {
        groups,
        operation_id: op.map(str::to_string),
        limit: 10,
        ..RunQuery::default()
    };
    let ids_of = |rows: Vec<(tessera_core::TaskRecord, RunRow)>| {
        rows.into_iter().map(|(t, _)| t.id).collect::<Vec<_>>()
    };
    let all = ids_of(store.list_runs(&q(None, None)).await.unwrap());
    assert_eq!(
        all,
        [
            ids[3].clone(),
            ids[2].clone(),
            ids[1].clone(),
            ids[0].clone()
        ]
    );
    let team_op1 = ids_of(
        store
            .list_runs(&q(Some(vec!["team".into()]), Some("op1")))
            .await
            .unwrap(),
    );
    assert_eq!(team_op1, [ids[3].clone(), ids[0].clone()]);
    let (task, run) = store.run(&ids[1]).await.unwrap().unwrap();
    assert_eq!(
        (task.origin, run.operation_id.as_str()),
        (Origin::Run, "op2")
    );
    assert_eq!(run.delivery.as_deref(), Some("pending"));
    assert!(store.run("no-such-run").await.unwrap().is_none());
    assert!(
        store
            .list_runs(&q(Some(vec![]), None))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Many writers at once: every event reaches a reader that walks the feed by seq, each
/// once, with its task's group — none is passed over because it committed after a
/// higher seq (PostgreSQL orders event commits by seq for this).
async fn the_feed_is_in_commit_order_under_concurrent_writers(db: &Db) {
    let store = &db.store;
    let writers = 8;
    let per_writer = 25;
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            let want = writers * per_writer * 3;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.len() < want {
                assert!(std::time::Instant::now() < deadline, "saw {}", seen.len());
                for e in store.feed_after(cursor, 50).await.unwrap() {
                    assert!(e.event.seq > cursor);
                    cursor = e.event.seq;
                    seen.push(e);
                }
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let mut handles = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..per_writer {
                let mut t = new_task(Some("feed"), &[]);
                t.group = format!("g{w}");
                let id = t.id.clone();
                store.insert_tasks(&[t]).await.unwrap();
                store
                    .transition(&id, State::Canceling, None, None)
                    .await
                    .unwrap();
                store
                    .transition(&id, State::Canceled, None, None)
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let seen = reader.await.unwrap();
    let ids: HashSet<i64> = seen.iter().map(|e| e.event.seq).collect();
    assert_eq!(ids.len(), writers * per_writer * 3, "every event once");
    for e in &seen {
        let task = store.get_task(&e.event.task_id).await.unwrap().unwrap();
        assert_eq!(e.group, task.group);
        assert_eq!(e.origin, Origin::Tes);
    }
}

async fn a_cron_tick_is_taken_by_one_server(db: &Db) {
    let store = &db.store;
    assert!(
        store
            .put_cron("team", "nightly", "{}", Some(1000), false)
            .await
            .unwrap()
    );
    let taken = store
        .put_cron("team", "nightly", "{}", Some(1000), false)
        .await
        .unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)));
    assert_eq!(store.due_crons(999, 10).await.unwrap().len(), 0);
    assert_eq!(store.due_crons(1000, 10).await.unwrap().len(), 1);
    // Eight servers race for the tick: one moves it.
    let mut handles = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .advance_cron("team", "nightly", Some(1000), Some(2000), Some(1000), None)
                .await
                .unwrap()
                .then_some(i)
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += usize::from(h.await.unwrap().is_some());
    }
    assert_eq!(winners, 1);
    let row = store.cron("team", "nightly").await.unwrap().unwrap();
    assert_eq!(
        (row.next_ms, row.last_schedule_ms),
        (Some(2000), Some(1000))
    );
    // A skipped tick keeps the last schedule and says why; a cron that never fires
    // again has no next tick.
    assert!(
        store
            .advance_cron("team", "nightly", Some(2000), None, None, Some("suspended"))
            .await
            .unwrap()
    );
    let row = store.cron("team", "nightly").await.unwrap().unwrap();
    assert_eq!((row.next_ms, row.last_schedule_ms), (None, Some(1000)));
    assert_eq!(row.last_skip.as_deref(), Some("suspended"));
    assert!(
        store
            .advance_cron("team", "nightly", None, Some(3000), None, None)
            .await
            .unwrap()
    );
    assert!(store.delete_cron("team", "nightly").await.unwrap());
    assert!(store.cron("team", "nightly").await.unwrap().is_none());
}
