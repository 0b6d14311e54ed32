//! The runner against the in-memory executor, without Docker: every point a server can
//! stop at is set up in the store and the executor as a crash would leave it, a new
//! runner resumes from there, and no executor runs twice. Then the executor misbehaves on
//! command: create fails, start hangs, the process dies, logs break, the executor goes
//! away and comes back.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::State;
use tessera_core::routing::{Decision, RouteError, RouteRequest, Router};
use tessera_core::staging::{FilerError, Filers, StagedFile};
use tessera_core::task::{NewTask, TaskRecord};
use tessera_core::tes::{Executor as TesExecutor, ExecutorLog, Task, TaskLog};
use tessera_executor::fake::{FakeExecutor, Script};
use tessera_executor::{ProcessSpec, ProcessState, process_name};
use tessera_runner::{Runner, RunnerConfig};
use tessera_store::{Lease, Store};

/// Every task goes to the first target.
struct FirstTarget;

impl Router for FirstTarget {
    fn route(&self, _: &str, r: &RouteRequest) -> Result<Vec<Decision>, RouteError> {
        Ok(r.tasks.iter().map(|_| Decision::Assign(0)).collect())
    }
}

/// No filer: these tasks stage inline content only.
struct NoFilers;

impl Filers for NoFilers {
    fn schemes(&self) -> Vec<String> {
        Vec::new()
    }
    fn stage_in(
        &self,
        _: &str,
        _: &Path,
        url: &str,
        _: &str,
        _: bool,
    ) -> Result<Vec<StagedFile>, FilerError> {
        Err(FilerError::NoFiler(url.into()))
    }
    fn stage_out(
        &self,
        _: &str,
        _: &Path,
        _: &str,
        url: &str,
        _: bool,
    ) -> Result<Vec<StagedFile>, FilerError> {
        Err(FilerError::NoFiler(url.into()))
    }
}

/// The instance of the runner under test (`Setup::runner`).
const SERVER: &str = "server-a";

fn lease(owner: &str, secs: u64) -> Lease {
    Lease {
        owner: owner.into(),
        ttl: Duration::from_secs(secs),
    }
}

struct Setup {
    store: Store,
    fake: Arc<FakeExecutor>,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        Setup {
            store,
            fake: Arc::new(FakeExecutor::new()),
            dir,
        }
    }

    /// A runner on this store and executor, dispatching and sweeping.
    fn runner(&self) -> Runner {
        self.runner_as(SERVER)
    }

    /// Another server on the same store and executor (one engine), with its own lease.
    fn runner_as(&self, owner: &str) -> Runner {
        let runner = Runner::new(
            self.store.clone(),
            RunnerConfig {
                work_dir: self.dir.path().join("work"),
                max_concurrent_tasks: 4,
                log_tail_bytes: 1 << 16,
                file_roots: Vec::new(),
                log_flush_interval: Duration::from_millis(20),
                targets: Vec::new(),
                route_tag_keys: Vec::new(),
                isolation: tessera_executor::Isolation::default(),
                max_run_time: Duration::from_secs(3600),
                lease: lease(owner, 3600),
            },
            Some(self.fake.clone()),
            Arc::new(FirstTarget),
            Arc::new(NoFilers),
        );
        runner.start();
        runner
    }

    /// A task with `n` executors, stored QUEUED.
    async fn queued(&self, n: usize) -> TaskRecord {
        self.queued_with(n, None).await
    }

    /// A task with `n` executors asking for `resources`, stored QUEUED.
    async fn queued_with(
        &self,
        n: usize,
        resources: Option<tessera_core::tes::Resources>,
    ) -> TaskRecord {
        let task = NewTask {
            id: tessera_core::id::new_task_id(),
            group: String::new(),
            origin: Default::default(),
            priority: 0,
            extra: Default::default(),
            run: None,
            spec: Task {
                executors: Some(
                    (0..n)
                        .map(|i| TesExecutor {
                            image: "img".into(),
                            command: vec![format!("step-{i}")],
                            ..TesExecutor::default()
                        })
                        .collect(),
                ),
                resources,
                ..Task::default()
            },
            creation_time: time::OffsetDateTime::now_utc(),
            reason: None,
            logs: Vec::new(),
        };
        self.store.insert_tasks(&[task]).await.unwrap().remove(0)
    }

    /// A task as a crashed server left it (this server, before a restart): RUNNING, with
    /// these executor log entries.
    async fn running(&self, n: usize, entries: Vec<ExecutorLog>) -> TaskRecord {
        self.running_held(n, entries, &lease(SERVER, 3600)).await
    }

    /// A task RUNNING under `held`'s lease, with these executor log entries.
    async fn running_held(&self, n: usize, entries: Vec<ExecutorLog>, held: &Lease) -> TaskRecord {
        let t = self.queued(n).await;
        self.store.claim_ids(&[&t.id], None, held).await.unwrap();
        let logs = vec![TaskLog {
            logs: entries,
            start_time: Some(tessera_core::time_fmt::now_rfc3339()),
            ..TaskLog::default()
        }];
        self.store
            .transition(
                &t.id,
                State::Running,
                Some("running executors"),
                Some(&logs),
            )
            .await
            .unwrap();
        self.store.get_task(&t.id).await.unwrap().unwrap()
    }

    /// A process of executor `i` of `task`, as the crash left it.
    fn process(&self, task: &TaskRecord, i: usize, state: ProcessState, stdout: &str) {
        self.fake.seed(
            ProcessSpec {
                name: process_name(&task.id, 0, i),
                task_id: task.id.clone(),
                index: i,
                image: "img".into(),
                ..ProcessSpec::default()
            },
            state,
            stdout,
        );
    }

    /// Wait (bounded) until executor 0 of `t` has been started by the executor.
    async fn first_start(&self, t: &TaskRecord) {
        let started = Instant::now();
        while self.fake.starts(&name(t, 0)) == 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "never started");
            tokio::task::yield_now().await;
        }
    }

    /// Poll the store until the task is terminal (bounded; a bound, not a wait).
    async fn done(&self, id: &str) -> TaskRecord {
        let start = Instant::now();
        loop {
            let t = self.store.get_task(id).await.unwrap().unwrap();
            if t.state.is_terminal() {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "task never ended: {:?} {:?}",
                t.state,
                t.reason
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// No process was started more than once, and none is left.
    fn ran_once_each(&self) {
        for (name, n) in self.fake.all_starts() {
            assert!(n <= 1, "{name} started {n} times");
        }
        assert!(
            self.fake.names().is_empty(),
            "left: {:?}",
            self.fake.names()
        );
    }
}

fn started_entry() -> ExecutorLog {
    ExecutorLog {
        start_time: Some(tessera_core::time_fmt::now_rfc3339()),
        ..ExecutorLog::default()
    }
}

fn finished_entry(code: i32) -> ExecutorLog {
    let now = tessera_core::time_fmt::now_rfc3339();
    ExecutorLog {
        start_time: Some(now.clone()),
        end_time: Some(now),
        exit_code: code,
        stdout: Some("before the crash\n".into()),
        ..ExecutorLog::default()
    }
}

fn name(t: &TaskRecord, i: usize) -> String {
    process_name(&t.id, 0, i)
}

#[tokio::test]
async fn a_fresh_task_runs_each_executor_once_in_order() {
    let s = Setup::new().await;
    s.fake.script(0, Script::exits(0).stdout("one\n"));
    s.fake.script(1, Script::exits(0).stdout("two\n"));
    let t = s.queued(2).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::Complete, "{:?}", done.reason);
    let logs = &done.logs[0].logs;
    assert_eq!(logs[0].stdout.as_deref(), Some("one\n"));
    assert_eq!(logs[1].stdout.as_deref(), Some("two\n"));
    for i in 0..2 {
        assert_eq!(
            (s.fake.creates(&name(&t, i)), s.fake.starts(&name(&t, i))),
            (1, 1)
        );
    }
    assert_eq!(s.fake.removed(), [name(&t, 0), name(&t, 1)]);
    s.ran_once_each();
}

/// Each row: what the crash left (log entries of executor 0 and 1, processes), and how
/// often each executor's process is created and started by the runner that resumes.
#[tokio::test]
async fn every_resume_point_finishes_without_running_an_executor_twice() {
    struct Row {
        what: &'static str,
        entries: Vec<ExecutorLog>,
        processes: Vec<(usize, ProcessState, &'static str)>,
        /// (creates, starts) of executors 0 and 1 by the new runner.
        runs: [(usize, usize); 2],
        stdout0: &'static str,
    }
    let exited = |code| ProcessState::Exited {
        code,
        oom_killed: false,
    };
    let rows = vec![
        Row {
            what: "before create",
            entries: vec![],
            processes: vec![],
            runs: [(1, 1), (1, 1)],
            stdout0: "fresh\n",
        },
        Row {
            what: "start recorded, process never created",
            entries: vec![started_entry()],
            processes: vec![],
            runs: [(1, 1), (1, 1)],
            stdout0: "fresh\n",
        },
        Row {
            what: "after create, before start",
            entries: vec![started_entry()],
            processes: vec![(0, ProcessState::Created, "")],
            runs: [(0, 1), (1, 1)],
            stdout0: "fresh\n",
        },
        Row {
            what: "exited, result not stored",
            entries: vec![started_entry()],
            processes: vec![(0, exited(0), "ran before the crash\n")],
            runs: [(0, 0), (1, 1)],
            stdout0: "ran before the crash\n",
        },
        Row {
            what: "result stored, process not removed",
            entries: vec![finished_entry(0)],
            processes: vec![(0, exited(0), "before the crash\n")],
            runs: [(0, 0), (1, 1)],
            stdout0: "before the crash\n",
        },
        Row {
            what: "all results stored (outputs half staged)",
            entries: vec![finished_entry(0), finished_entry(0)],
            processes: vec![],
            runs: [(0, 0), (0, 0)],
            stdout0: "before the crash\n",
        },
    ];
    for row in rows {
        let s = Setup::new().await;
        s.fake.script(0, Script::exits(0).stdout("fresh\n"));
        let t = s.running(2, row.entries).await;
        for (i, state, out) in &row.processes {
            s.process(&t, *i, *state, out);
        }
        let _runner = s.runner();
        let done = s.done(&t.id).await;
        assert_eq!(
            done.state,
            State::Complete,
            "{}: {:?}",
            row.what,
            done.reason
        );
        assert_eq!(
            done.logs[0].logs[0].stdout.as_deref(),
            Some(row.stdout0),
            "{}",
            row.what
        );
        for (i, want) in row.runs.iter().enumerate() {
            let got = (s.fake.creates(&name(&t, i)), s.fake.starts(&name(&t, i)));
            assert_eq!(got, *want, "{}: executor {i}", row.what);
        }
        s.ran_once_each();
    }
}

#[tokio::test]
async fn a_running_process_is_followed_not_started_again() {
    let s = Setup::new().await;
    s.fake.script(0, Script::runs());
    let t = s.running(1, vec![started_entry()]).await;
    s.process(&t, 0, ProcessState::Running, "half way\n");
    let _runner = s.runner();
    // It ends while (or before) the new runner follows it.
    s.fake.exit(&name(&t, 0), 0);
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::Complete, "{:?}", done.reason);
    assert_eq!(done.logs[0].logs[0].stdout.as_deref(), Some("half way\n"));
    assert_eq!(s.fake.starts(&name(&t, 0)), 0);
    assert_eq!(s.fake.creates(&name(&t, 0)), 0);
    s.ran_once_each();
}

/// A task that asks for one second: its running executor is killed at the deadline with
/// its output kept, the next one never starts, and the task says why it ended.
#[tokio::test]
async fn a_task_past_its_maximum_run_time_is_stopped_with_a_reason() {
    let s = Setup::new().await;
    s.fake.script(0, Script::runs().stdout("working\n"));
    s.fake.script(1, Script::exits(0));
    let resources = tessera_core::tes::Resources {
        backend_parameters: Some([("max_run_time".to_string(), "1".to_string())].into()),
        ..Default::default()
    };
    let t = s.queued_with(2, Some(resources)).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::SystemError);
    let reason = done.reason.clone().unwrap_or_default();
    assert!(reason.contains("maximum run time of 1 s"), "{reason}");
    let log = &done.logs[0];
    assert!(
        log.system_logs
            .iter()
            .flatten()
            .any(|l| l.contains("maximum run time")),
        "{:?}",
        log.system_logs
    );
    assert_eq!(log.logs.len(), 1, "the second executor never began");
    assert_eq!(log.logs[0].stdout.as_deref(), Some("working\n"));
    assert!(log.logs[0].end_time.is_some());
    assert_eq!(s.fake.creates(&name(&t, 1)), 0);
    s.ran_once_each();
}

/// A server that comes back after a task's deadline passed does not let it run on: the
/// process is killed at once (not started again) and the task ends SYSTEM_ERROR.
#[tokio::test]
async fn a_resumed_task_past_its_deadline_is_stopped() {
    let s = Setup::new().await;
    s.fake.script(0, Script::runs());
    let two_hours_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(2);
    let entry = ExecutorLog {
        start_time: Some(tessera_core::time_fmt::format_rfc3339(two_hours_ago)),
        ..ExecutorLog::default()
    };
    let t = s.running(1, vec![entry]).await;
    s.process(&t, 0, ProcessState::Running, "old output\n");
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::SystemError);
    assert!(
        done.reason
            .as_deref()
            .unwrap_or("")
            .contains("maximum run time of 3600 s"),
        "{:?}",
        done.reason
    );
    assert_eq!(done.logs[0].logs[0].stdout.as_deref(), Some("old output\n"));
    assert_eq!(s.fake.starts(&name(&t, 0)), 0);
    s.ran_once_each();
}

#[tokio::test]
async fn a_cancel_at_every_resume_point_ends_canceled_and_runs_nothing() {
    let exited = ProcessState::Exited {
        code: 0,
        oom_killed: false,
    };
    /// What the crash left: a description, log entries, and processes by executor.
    type Point = (&'static str, Vec<ExecutorLog>, Vec<(usize, ProcessState)>);
    let points: Vec<Point> = vec![
        ("before create", vec![], vec![]),
        (
            "after create",
            vec![started_entry()],
            vec![(0, ProcessState::Created)],
        ),
        (
            "while running",
            vec![started_entry()],
            vec![(0, ProcessState::Running)],
        ),
        (
            "exited, not stored",
            vec![started_entry()],
            vec![(0, exited)],
        ),
        (
            "stored, not removed",
            vec![finished_entry(0)],
            vec![(0, exited)],
        ),
        (
            "all stored",
            vec![finished_entry(0), finished_entry(0)],
            vec![],
        ),
    ];
    for (what, entries, processes) in points {
        let s = Setup::new().await;
        let t = s.running(2, entries).await;
        for (i, state) in processes {
            s.process(&t, i, state, "");
        }
        // The cancel landed while no server drove the task.
        s.store
            .transition(&t.id, State::Canceling, Some("canceled by user"), None)
            .await
            .unwrap();
        let _runner = s.runner();
        let done = s.done(&t.id).await;
        assert_eq!(done.state, State::Canceled, "{what}");
        assert!(s.fake.all_starts().is_empty(), "{what}: something started");
        assert!(
            s.fake.names().is_empty(),
            "{what}: left {:?}",
            s.fake.names()
        );
    }
}

#[tokio::test]
async fn a_cancel_reaches_a_start_that_hangs_and_a_running_process() {
    let s = Setup::new().await;
    s.fake.faults(|f| f.start_hangs = true);
    let t = s.queued(1).await;
    let runner = s.runner();
    wait_for(&s, &t.id, |t| {
        t.logs.first().is_some_and(|l| !l.logs.is_empty())
    })
    .await;
    runner.cancel(&t.id).await.unwrap();
    assert_eq!(s.done(&t.id).await.state, State::Canceled);
    assert!(s.fake.names().is_empty());

    let s = Setup::new().await;
    s.fake.script(0, Script::runs());
    let t = s.queued(1).await;
    let runner = s.runner();
    wait_for(&s, &t.id, |t| t.state == State::Running).await;
    s.first_start(&t).await;
    runner.cancel(&t.id).await.unwrap();
    assert_eq!(s.done(&t.id).await.state, State::Canceled);
    assert!(s.fake.names().is_empty(), "killed and removed");
}

#[tokio::test]
async fn executor_failures_end_the_task_with_a_reason() {
    // Create fails: SYSTEM_ERROR saying so.
    let s = Setup::new().await;
    s.fake.faults(|f| f.failing_creates = 1);
    let t = s.queued(1).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::SystemError);
    assert!(done.reason.unwrap_or_default().contains("create failed"));

    // The executor says the process exists, then that it does not: a few pauses and
    // tries, then SYSTEM_ERROR saying so (never a loop).
    let s = Setup::new().await;
    s.fake.faults(|f| f.phantom_conflicts = 2);
    let t = s.queued(1).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(
        done.state,
        State::Complete,
        "two contradictions are survived"
    );
    let s = Setup::new().await;
    s.fake.faults(|f| f.phantom_conflicts = usize::MAX);
    let t = s.queued(1).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::SystemError);
    assert!(
        done.reason
            .unwrap_or_default()
            .contains("exists, then that it does not"),
    );

    // The process dies: EXECUTOR_ERROR with its code; the next executor never runs.
    let s = Setup::new().await;
    s.fake.script(0, Script::exits(137));
    let t = s.queued(2).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::ExecutorError);
    assert_eq!(done.logs[0].logs[0].exit_code, 137);
    assert_eq!(s.fake.creates(&name(&t, 1)), 0);

    // No such program: 127, like a shell.
    let s = Setup::new().await;
    s.fake.faults(|f| f.command_not_found = vec![0]);
    let t = s.queued(1).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::ExecutorError);
    assert_eq!(done.logs[0].logs[0].exit_code, 127);
    assert!(s.fake.names().is_empty());

    // The logs break: the result is still collected.
    let s = Setup::new().await;
    s.fake.script(0, Script::exits(0).stdout("partial\n"));
    s.fake.faults(|f| f.logs_fail = true);
    let t = s.queued(1).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::Complete);
    assert_eq!(done.logs[0].logs[0].stdout.as_deref(), Some("partial\n"));

    // A missing image: SYSTEM_ERROR naming it, nothing created.
    let s = Setup::new().await;
    s.fake.faults(|f| f.missing_images = vec!["img".into()]);
    let t = s.queued(1).await;
    let _runner = s.runner();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::SystemError);
    assert!(
        done.reason
            .unwrap_or_default()
            .contains("image img is not available")
    );
    assert_eq!(s.fake.creates(&name(&t, 0)), 0);
}

#[tokio::test]
async fn a_task_waits_for_a_lost_executor_and_resumes_when_it_is_back() {
    let s = Setup::new().await;
    s.fake.script(0, Script::runs());
    let t = s.queued(1).await;
    let _runner = s.runner();
    s.first_start(&t).await;
    // The executor goes away while the process runs: the task keeps its state, and says
    // why.
    s.fake.faults(|f| f.unreachable = true);
    let waiting = wait_for(&s, &t.id, |t| {
        t.reason
            .as_deref()
            .is_some_and(|r| r.contains("waiting for the fake executor to come back"))
    })
    .await;
    assert_eq!(waiting.state, State::Running);
    // Back: the process is followed again (not started again) to its end.
    s.fake.faults(|f| f.unreachable = false);
    s.fake.exit(&name(&t, 0), 0);
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::Complete, "{:?}", done.reason);
    assert_eq!(s.fake.starts(&name(&t, 0)), 1);
    s.ran_once_each();
}

#[tokio::test]
async fn a_cancel_while_the_executor_is_away_removes_its_processes_when_it_is_back() {
    let s = Setup::new().await;
    s.fake.script(0, Script::runs());
    let t = s.queued(1).await;
    let runner = s.runner();
    s.first_start(&t).await;
    let started = Instant::now();
    s.fake.faults(|f| f.unreachable = true);
    runner.cancel(&t.id).await.unwrap();
    assert_eq!(s.done(&t.id).await.state, State::Canceled);
    // The process could not be removed: it is, once the executor answers again.
    assert_eq!(s.fake.names(), [name(&t, 0)]);
    while runner.executor_status().is_ready() {
        assert!(started.elapsed() < Duration::from_secs(30), "never noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    s.fake.faults(|f| f.unreachable = false);
    while !s.fake.names().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(30), "never removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A result the store does not take: the process stays (so it is never run twice) and
/// the task is resumed from it once the store answers.
#[tokio::test]
async fn a_result_the_store_refuses_keeps_the_process_until_it_is_stored() {
    let s = Setup::new().await;
    // The store refuses any write of an executor's end (a real SQLite error).
    let db =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", s.dir.path().join("t.db").display()))
            .await
            .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_results BEFORE UPDATE OF logs ON tasks \
         WHEN NEW.logs LIKE '%end_time%' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END",
    )
    .execute(&db)
    .await
    .unwrap();
    s.fake.script(0, Script::exits(0).stdout("once\n"));
    let t = s.queued(1).await;
    let runner = s.runner();
    let started = Instant::now();
    // The process ends; its result cannot be stored, so the driver gives up on it.
    while s
        .fake
        .state(&name(&t, 0))
        .is_none_or(|st| !matches!(st, ProcessState::Exited { .. }))
        || runner.running_count() > 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never gave up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stuck = s.store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(stuck.state, State::Running);
    assert!(
        s.fake.removed().is_empty(),
        "a process goes only after its result"
    );
    // The store answers again: the sweep resumes the task from the process.
    sqlx::query("DROP TRIGGER refuse_results")
        .execute(&db)
        .await
        .unwrap();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::Complete, "{:?}", done.reason);
    assert_eq!(done.logs[0].logs[0].stdout.as_deref(), Some("once\n"));
    assert_eq!(s.fake.starts(&name(&t, 0)), 1);
    s.ran_once_each();
}

/// Several servers on one store: a task whose holder's lease lives is left to it, one
/// whose lease ran out is adopted and resumed from what the executor has (nothing runs
/// twice), with a note in its system logs.
#[tokio::test]
async fn another_servers_task_is_adopted_only_once_its_lease_ran_out() {
    let s = Setup::new().await;
    let live = s
        .running_held(1, vec![started_entry()], &lease("server-b", 3600))
        .await;
    s.process(&live, 0, ProcessState::Running, "b runs me\n");
    let expired = s
        .running_held(1, vec![started_entry()], &lease("server-b", 0))
        .await;
    s.process(
        &expired,
        0,
        ProcessState::Exited {
            code: 0,
            oom_killed: false,
        },
        "b ran me\n",
    );
    let _runner = s.runner();
    let done = s.done(&expired.id).await;
    assert_eq!(done.state, State::Complete, "{:?}", done.reason);
    assert_eq!(done.logs[0].logs[0].stdout.as_deref(), Some("b ran me\n"));
    let notes = done.logs[0].system_logs.clone().unwrap_or_default();
    assert!(
        notes
            .iter()
            .any(|l| l.contains("after the lease of server server-b ran out")),
        "{notes:?}"
    );
    // The same sweep passed the live one (older, so first in its page) and left it.
    let left = s.store.get_task(&live.id).await.unwrap().unwrap();
    assert_eq!(left.state, State::Running);
    assert_eq!(
        s.store.holder(&live.id).await.unwrap().as_deref(),
        Some("server-b")
    );
    assert_eq!(s.fake.state(&name(&live, 0)), Some(ProcessState::Running));

    // server-b is gone for good: once its lease ran out, its task is ours to finish.
    expire_leases(&s, "server-b").await;
    s.fake.exit(&name(&live, 0), 0);
    let done = s.done(&live.id).await;
    assert_eq!(done.state, State::Complete, "{:?}", done.reason);
    assert_eq!(done.logs[0].logs[0].stdout.as_deref(), Some("b runs me\n"));
    assert_eq!(s.fake.starts(&name(&live, 0)), 0);
    assert_eq!(s.fake.starts(&name(&expired, 0)), 0);
    s.ran_once_each();
}

/// A cancel made on a server that does not run the task reaches the one that does.
#[tokio::test]
async fn a_cancel_made_on_another_server_reaches_the_holder() {
    let s = Setup::new().await;
    s.fake.script(0, Script::runs());
    let t = s.queued(1).await;
    let _holder = s.runner();
    wait_for(&s, &t.id, |t| t.state == State::Running).await;
    s.first_start(&t).await;
    let other = s.runner_as("server-b");
    other.cancel(&t.id).await.unwrap();
    let done = s.done(&t.id).await;
    assert_eq!(done.state, State::Canceled);
    assert!(s.fake.names().is_empty(), "killed and removed");
    assert_eq!(
        s.store.holder(&t.id).await.unwrap().as_deref(),
        Some(SERVER),
        "the holder ended it"
    );
}

/// A driver whose task was taken over (its lease ran out while it could not renew)
/// stops at its next write and leaves the task and its process to the new holder.
#[tokio::test]
async fn a_driver_whose_task_was_taken_over_leaves_it_alone() {
    let s = Setup::new().await;
    s.fake.script(0, Script::runs());
    let t = s.queued(1).await;
    let runner = s.runner();
    wait_for(&s, &t.id, |t| t.state == State::Running).await;
    s.first_start(&t).await;
    let started = Instant::now();
    // Another server adopted it while this one's lease had run out.
    expire_leases(&s, SERVER).await;
    assert_eq!(
        s.store
            .adopt(&t.id, &lease("server-b", 3600))
            .await
            .unwrap(),
        tessera_store::Adoption::Adopted {
            from: Some(SERVER.into())
        }
    );
    s.fake.exit(&name(&t, 0), 0);
    while runner.running_count() > 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never stopped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let left = s.store.get_task(&t.id).await.unwrap().unwrap();
    assert_eq!(
        left.state,
        State::Running,
        "no result written by the old holder"
    );
    assert!(
        left.logs[0].logs[0].end_time.is_none(),
        "no result written by the old holder"
    );
    assert_eq!(
        s.fake.names(),
        [name(&t, 0)],
        "the process is the new holder's to collect"
    );
}

/// Make `owner`'s leases run out now (what time does to a server that stopped renewing).
async fn expire_leases(s: &Setup, owner: &str) {
    let db =
        sqlx::SqlitePool::connect(&format!("sqlite://{}", s.dir.path().join("t.db").display()))
            .await
            .unwrap();
    sqlx::query("UPDATE tasks SET lease_until = 0 WHERE owner = ?")
        .bind(owner)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

/// Poll until `pred` holds for the stored task (bounded).
async fn wait_for(s: &Setup, id: &str, pred: impl Fn(&TaskRecord) -> bool) -> TaskRecord {
    let start = Instant::now();
    loop {
        let t = s.store.get_task(id).await.unwrap().unwrap();
        if pred(&t) {
            return t;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never: {t:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
