//! The Workflow API's store: revisions found by digest, runs with their task runs, the
//! scheduler's compare-and-set, cancel requests and clean-up, on SQLite and PostgreSQL.

mod support;

use std::collections::BTreeMap;

use support::{Db, new_task};
use tessera_store::{
    NewTaskRun, NewWorkflow, NewWorkflowRun, RunChange, TaskRunChange, WorkflowQuery, WorkflowRow,
    WorkflowRunQuery,
};

store_tests!(
    the_same_definition_is_the_same_revision_and_another_is_the_next_version,
    workflows_are_listed_latest_first_by_filters_and_deleted_softly,
    a_run_is_stored_with_its_task_runs_and_listed_by_filters,
    the_scheduler_changes_a_run_only_at_the_revision_it_read,
    a_cancel_request_beats_a_plan_made_before_it,
    finished_runs_older_than_a_date_are_deleted_with_their_task_runs,
    state_changes_are_logged_in_order_for_the_event_stream,
);

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn workflow(
    db: &Db,
    group: &str,
    title: &str,
    digest: &str,
    l: &[(&str, &str)],
) -> (WorkflowRow, bool) {
    let id = tessera_core::id::new_task_id();
    let labels = labels(l);
    db.store
        .create_workflow(&NewWorkflow {
            id: &id,
            group,
            title,
            engine: "tessera",
            definition: &format!("{{\"digest\": \"{digest}\"}}"),
            digest,
            parameters: "[]",
            labels: &labels,
            dag: "{\"tasks\": []}",
            by: "ada",
        })
        .await
        .unwrap()
}

async fn the_same_definition_is_the_same_revision_and_another_is_the_next_version(db: &Db) {
    let (v1, new) = workflow(db, "lab", "etl", "d1", &[]).await;
    assert!(new);
    assert_eq!(v1.version, 1);
    let (again, new) = workflow(db, "lab", "etl", "d1", &[]).await;
    assert!(!new);
    assert_eq!(again.id, v1.id);
    let (v2, new) = workflow(db, "lab", "etl", "d2", &[]).await;
    assert_eq!((v2.version, new), (2, true));
    // Titles are per group.
    let (other, _) = workflow(db, "ops", "etl", "d1", &[]).await;
    assert_eq!(other.version, 1);
    let s = &db.store;
    assert_eq!(
        s.workflow("lab", "etl", None)
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        s.workflow("lab", "etl", Some(1)).await.unwrap().unwrap().id,
        v1.id
    );
    assert!(s.workflow("lab", "etl", Some(3)).await.unwrap().is_none());
    assert!(s.workflow("nobody", "etl", None).await.unwrap().is_none());
}

async fn workflows_are_listed_latest_first_by_filters_and_deleted_softly(db: &Db) {
    workflow(db, "lab", "a", "a1", &[("team", "x")]).await;
    workflow(db, "lab", "a", "a2", &[("team", "y")]).await;
    workflow(db, "lab", "b", "b1", &[("team", "x")]).await;
    workflow(db, "ops", "c", "c1", &[]).await;
    let s = &db.store;
    // Lists are in id order, which is creation order only to the millisecond: compared
    // as sets here, paging below.
    let list = |q: WorkflowQuery| async move {
        let mut names = s
            .list_workflows(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|w| format!("{}/{}@{}", w.group, w.title, w.version))
            .collect::<Vec<_>>();
        names.sort();
        names
    };
    let lab = Some(vec!["lab".to_string()]);
    assert_eq!(
        list(WorkflowQuery {
            groups: lab.clone(),
            limit: 10,
            ..Default::default()
        })
        .await,
        ["lab/a@2", "lab/b@1"]
    );
    assert_eq!(
        list(WorkflowQuery {
            groups: lab.clone(),
            all_versions: true,
            limit: 10,
            ..Default::default()
        })
        .await,
        ["lab/a@1", "lab/a@2", "lab/b@1"]
    );
    assert_eq!(
        list(WorkflowQuery {
            groups: lab.clone(),
            labels: vec![("team".into(), "x".into())],
            limit: 10,
            ..Default::default()
        })
        .await,
        ["lab/b@1"]
    );
    assert_eq!(
        list(WorkflowQuery {
            title: Some("c".into()),
            limit: 10,
            ..Default::default()
        })
        .await,
        ["ops/c@1"]
    );
    assert!(
        list(WorkflowQuery {
            groups: Some(vec![]),
            limit: 10,
            ..Default::default()
        })
        .await
        .is_empty()
    );
    // Paging: a page of one, then the rest after it.
    let page = |limit: u32, after_id: Option<String>| {
        let q = WorkflowQuery {
            groups: lab.clone(),
            after_id,
            limit,
            ..Default::default()
        };
        async move {
            s.list_workflows(&q)
                .await
                .unwrap()
                .into_iter()
                .map(|w| w.id)
                .collect::<Vec<_>>()
        }
    };
    let all = page(10, None).await;
    let first = page(1, None).await;
    assert_eq!(first, all[..1]);
    assert_eq!(page(10, Some(first[0].clone())).await, all[1..]);
    // Deleting the latest revision leaves the one before as the latest.
    assert_eq!(s.delete_workflow("lab", "a", Some(2)).await.unwrap(), 1);
    assert_eq!(
        s.workflow("lab", "a", None).await.unwrap().unwrap().version,
        1
    );
    assert!(
        s.workflow("lab", "a", Some(2))
            .await
            .unwrap()
            .unwrap()
            .deleted
    );
    assert_eq!(s.delete_workflow("lab", "a", None).await.unwrap(), 1);
    assert!(s.workflow("lab", "a", None).await.unwrap().is_none());
    assert_eq!(
        list(WorkflowQuery {
            groups: lab,
            limit: 10,
            ..Default::default()
        })
        .await,
        ["lab/b@1"]
    );
    // The same definition again brings its revision back.
    let (back, new) = workflow(db, "lab", "a", "a1", &[]).await;
    assert_eq!((back.version, new, back.deleted), (1, false, false));
}

fn task_run(title: &str, attempt: i64, state: &str) -> NewTaskRun {
    NewTaskRun {
        id: format!("{title}-{attempt}-{}", tessera_core::id::new_task_id()),
        task_title: title.into(),
        attempt,
        state: state.into(),
        task_id: None,
        not_before_ms: None,
    }
}

async fn run(db: &Db, w: &WorkflowRow, created_ms: i64, l: &[(&str, &str)]) -> String {
    let id = tessera_core::id::new_task_id();
    let labels = labels(l);
    db.store
        .create_workflow_run(
            &NewWorkflowRun {
                id: &id,
                group: &w.group,
                workflow: w,
                state: "Created",
                params: "{}",
                labels: &labels,
                cleanup: "Never",
                created_ms,
                by: "ada",
            },
            &[task_run("a", 1, "Created"), task_run("b", 1, "Created")],
        )
        .await
        .unwrap();
    id
}

async fn a_run_is_stored_with_its_task_runs_and_listed_by_filters(db: &Db) {
    let (w, _) = workflow(db, "lab", "etl", "d1", &[]).await;
    let (other, _) = workflow(db, "ops", "sync", "s1", &[]).await;
    let r1 = run(db, &w, 1_000, &[("env", "prod")]).await;
    let r2 = run(db, &w, 2_000, &[]).await;
    let r3 = run(db, &other, 3_000, &[("env", "prod")]).await;
    let s = &db.store;
    let got = s.workflow_run(&r1).await.unwrap().unwrap();
    assert_eq!(
        (got.title.as_str(), got.version, got.state.as_str()),
        ("etl", 1, "Created")
    );
    assert_eq!(got.revision, 0);
    let trs = s.task_runs(&r1).await.unwrap();
    assert_eq!(
        trs.iter()
            .map(|t| (t.task_title.as_str(), t.attempt))
            .collect::<Vec<_>>(),
        [("a", 1), ("b", 1)]
    );
    assert!(trs.iter().all(|t| t.task_state.is_none()));
    let ids = |q: WorkflowRunQuery| async move {
        s.list_workflow_runs(&q)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(WorkflowRunQuery {
            limit: 10,
            ..Default::default()
        })
        .await,
        [r3.clone(), r2.clone(), r1.clone()]
    );
    assert_eq!(
        ids(WorkflowRunQuery {
            groups: Some(vec!["lab".into()]),
            limit: 10,
            ..Default::default()
        })
        .await,
        [r2.clone(), r1.clone()]
    );
    assert_eq!(
        ids(WorkflowRunQuery {
            labels: vec![("env".into(), "prod".into())],
            limit: 10,
            ..Default::default()
        })
        .await,
        [r3.clone(), r1.clone()]
    );
    assert_eq!(
        ids(WorkflowRunQuery {
            created_after_ms: Some(1_500),
            created_before_ms: Some(2_500),
            limit: 10,
            ..Default::default()
        })
        .await,
        std::slice::from_ref(&r2)
    );
    assert_eq!(
        ids(WorkflowRunQuery {
            title: Some("sync".into()),
            states: vec!["Created".into()],
            limit: 10,
            ..Default::default()
        })
        .await,
        std::slice::from_ref(&r3)
    );
    let page = s
        .list_workflow_runs(&WorkflowRunQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(WorkflowRunQuery {
            before_seq: Some(page[0].seq),
            limit: 10,
            ..Default::default()
        })
        .await,
        [r2, r1]
    );
    assert_eq!(s.active_workflow_runs(0, 10).await.unwrap().len(), 3);
}

async fn the_scheduler_changes_a_run_only_at_the_revision_it_read(db: &Db) {
    let (w, _) = workflow(db, "lab", "etl", "d1", &[]).await;
    let id = run(db, &w, 1_000, &[]).await;
    let s = &db.store;
    let trs = s.task_runs(&id).await.unwrap();
    // A task run submitted: its task exists, and the join shows the task's state.
    let task = new_task(Some("etl.a"), &[]);
    s.insert_tasks(std::slice::from_ref(&task)).await.unwrap();
    let change = RunChange {
        state: Some("Scheduled".into()),
        started_ms: Some(1_100),
        task_runs: vec![TaskRunChange {
            id: trs[0].id.clone(),
            state: Some("Scheduled".into()),
            task_id: Some(task.id.clone()),
            ..Default::default()
        }],
        new_task_runs: vec![task_run("a", 2, "Pending")],
        ..Default::default()
    };
    assert!(s.change_workflow_run(&id, 0, &change).await.unwrap());
    // The same plan applied by a second server that read revision 0 changes nothing.
    assert!(!s.change_workflow_run(&id, 0, &change).await.unwrap());
    let got = s.workflow_run(&id).await.unwrap().unwrap();
    assert_eq!(
        (got.state.as_str(), got.revision, got.started_ms),
        ("Scheduled", 1, Some(1_100))
    );
    let trs = s.task_runs(&id).await.unwrap();
    assert_eq!(trs.len(), 3);
    assert_eq!(trs[0].task_state.as_deref(), Some("QUEUED"));
    assert_eq!(trs[0].state, "Scheduled");
    assert_eq!(
        (
            trs[1].task_title.as_str(),
            trs[1].attempt,
            trs[1].state.as_str()
        ),
        ("a", 2, "Pending")
    );
    assert_eq!(s.active_workflow_task_runs("lab", "etl").await.unwrap(), 1);
    // started_ms keeps the first start; wake_ms can be set and cleared.
    let later = RunChange {
        started_ms: Some(9_999),
        wake_ms: Some(Some(5_000)),
        ..Default::default()
    };
    assert!(s.change_workflow_run(&id, 1, &later).await.unwrap());
    let got = s.workflow_run(&id).await.unwrap().unwrap();
    assert_eq!((got.started_ms, got.wake_ms), (Some(1_100), Some(5_000)));
    let clear = RunChange {
        wake_ms: Some(None),
        ..Default::default()
    };
    assert!(s.change_workflow_run(&id, 2, &clear).await.unwrap());
    assert_eq!(s.workflow_run(&id).await.unwrap().unwrap().wake_ms, None);
}

async fn a_cancel_request_beats_a_plan_made_before_it(db: &Db) {
    let (w, _) = workflow(db, "lab", "etl", "d1", &[]).await;
    let id = run(db, &w, 1_000, &[]).await;
    let s = &db.store;
    assert!(s.request_workflow_cancel(&id).await.unwrap());
    let got = s.workflow_run(&id).await.unwrap().unwrap();
    assert!(got.cancel_requested);
    // A plan made at revision 0 (before the request) is refused.
    let plan = RunChange {
        state: Some("Running".into()),
        ..Default::default()
    };
    assert!(!s.change_workflow_run(&id, 0, &plan).await.unwrap());
    let end = RunChange {
        state: Some("Canceled".into()),
        ended_ms: Some(2_000),
        ..Default::default()
    };
    assert!(
        s.change_workflow_run(&id, got.revision, &end)
            .await
            .unwrap()
    );
    // An ended run is not canceled again, and is not active.
    assert!(!s.request_workflow_cancel(&id).await.unwrap());
    assert!(s.active_workflow_runs(0, 10).await.unwrap().is_empty());
    // A retry reopens it.
    let got = s.workflow_run(&id).await.unwrap().unwrap();
    let reopen = RunChange {
        state: Some("Pending".into()),
        reopen: true,
        ..Default::default()
    };
    assert!(
        s.change_workflow_run(&id, got.revision, &reopen)
            .await
            .unwrap()
    );
    let got = s.workflow_run(&id).await.unwrap().unwrap();
    assert!(!got.cancel_requested);
    assert_eq!((got.state.as_str(), got.ended_ms), ("Pending", None));
}

async fn finished_runs_older_than_a_date_are_deleted_with_their_task_runs(db: &Db) {
    let (w, _) = workflow(db, "lab", "etl", "d1", &[]).await;
    let old = run(db, &w, 1_000, &[("k", "v")]).await;
    let running = run(db, &w, 1_000, &[]).await;
    let new = run(db, &w, 9_000, &[]).await;
    let s = &db.store;
    for id in [&old, &new] {
        let end = RunChange {
            state: Some("Completed".into()),
            ended_ms: Some(9_500),
            ..Default::default()
        };
        assert!(s.change_workflow_run(id, 0, &end).await.unwrap());
    }
    assert!(
        s.delete_finished_workflow_runs(5_000, Some(&["ops".to_string()]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.delete_finished_workflow_runs(5_000, None).await.unwrap(),
        std::slice::from_ref(&old)
    );
    assert!(s.workflow_run(&old).await.unwrap().is_none());
    assert!(s.task_runs(&old).await.unwrap().is_empty());
    assert!(s.workflow_run(&running).await.unwrap().is_some());
    assert!(s.workflow_run(&new).await.unwrap().is_some());
}

async fn state_changes_are_logged_in_order_for_the_event_stream(db: &Db) {
    let s = &db.store;
    let start = s.last_workflow_event_seq().await.unwrap();
    let (w, _) = workflow(db, "lab", "etl", "d1", &[]).await;
    let id = run(db, &w, 1_000, &[]).await;
    let trs = s.task_runs(&id).await.unwrap();
    let a = trs.iter().find(|t| t.task_title == "a").unwrap();
    let change = RunChange {
        state: Some("Scheduled".into()),
        task_runs: vec![
            TaskRunChange {
                id: a.id.clone(),
                state: Some("Scheduled".into()),
                ..Default::default()
            },
            // Not a change of state: no event.
            TaskRunChange {
                id: trs.iter().find(|t| t.task_title == "b").unwrap().id.clone(),
                state: Some("Created".into()),
                ..Default::default()
            },
        ],
        new_task_runs: vec![task_run("a", 2, "Pending")],
        ..Default::default()
    };
    assert!(s.change_workflow_run(&id, 0, &change).await.unwrap());
    // A refused change logs nothing.
    assert!(!s.change_workflow_run(&id, 0, &change).await.unwrap());
    let events = s.workflow_feed_after(start, 100).await.unwrap();
    let seen: Vec<(Option<&str>, Option<&str>, &str)> = events
        .iter()
        .map(|e| {
            (
                e.task_title.as_deref(),
                e.from_state.as_deref(),
                e.to_state.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (None, None, "Created"),
            (Some("a"), Some("Created"), "Scheduled"),
            (Some("a"), None, "Pending"),
            (None, Some("Created"), "Scheduled"),
        ]
    );
    assert!(events.iter().all(|e| e.run_id == id && e.group == "lab"));
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(s.last_workflow_event_seq().await.unwrap(), events[3].seq);
    // One sequence with the task events: a task made now comes after, in one feed.
    let task = new_task(Some("later"), &[]);
    s.insert_tasks(std::slice::from_ref(&task)).await.unwrap();
    let items = s.feed_items_after(start, 100).await.unwrap();
    let seqs: Vec<i64> = items.iter().map(|i| i.seq()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(items.len(), 5);
    assert!(matches!(&items[4], tessera_store::FeedItem::Task(e) if e.event.task_id == task.id));
    assert_eq!(s.last_feed_seq().await.unwrap(), seqs[4]);
    // A page of two, then the rest.
    let page = s.feed_items_after(start, 2).await.unwrap();
    assert_eq!(page.iter().map(|i| i.seq()).collect::<Vec<_>>(), seqs[..2]);
    let end = RunChange {
        state: Some("Completed".into()),
        ..Default::default()
    };
    assert!(s.change_workflow_run(&id, 1, &end).await.unwrap());
    s.delete_finished_workflow_runs(i64::MAX, None)
        .await
        .unwrap();
    assert!(s.workflow_feed_after(start, 100).await.unwrap().is_empty());
}
