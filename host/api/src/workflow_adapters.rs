//! Runs on engine adapters: every engine but the native one.
//!
//! Tessera keeps the run and its task runs; the engine runs them. A sync asks the
//! adapter for the run's status and writes what changed under the run's compare-and-set,
//! as the native scheduler writes its plan, so listings, events, retries and clean-up
//! are the same for every engine. A sync happens in the background (each scheduler round
//! starts one per active run, never two at once for a run), on GET of an active run, and
//! on `POST /v1/workflow-runs/sync`.
//!
//! A task run is one try of a task at the engine (attempt = the engine's try number).
//! The first sync submits the run; a submission lost in a crash is made again, with the
//! run's id among its labels (`tessera.workflow-run`) so the adapter can find the run it
//! made. Adapter calls block (a fresh WebAssembly instance, HTTP to the engine), so they
//! run on the blocking pool.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Bytes;
use axum::response::Response;
use serde_json::{Map, Value};
use tessera_core::ErrorCode;
use tessera_plugin_runtime::{
    CallError, EngineAdapterPlugin, LogChunk, Pair, PluginError, RunState as EngineState, RunStatus,
};
use tessera_store::{NewTaskRun, RunChange, TaskRunChange, TaskRunRow, WorkflowRunRow};
use tessera_workflow::native::RUN_TAG;
use tessera_workflow::{CleanupPolicy, Dag, RunState, TaskRunState};
use time::OffsetDateTime;

use crate::{AppState, Error};

/// How often a followed log of an adapter's task run asks for more.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// The runs whose background sync is under way in this process.
#[derive(Default)]
pub(crate) struct InFlight(std::sync::Mutex<BTreeSet<String>>);

impl InFlight {
    fn begin(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string())
    }

    fn end(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// Ends a run's in-flight mark however its sync ends.
struct Ending(AppState, String);

impl Drop for Ending {
    fn drop(&mut self) {
        self.0.adapter_syncs().end(&self.1);
    }
}

/// Starts a background sync of run `id` with `adapter` unless one is under way.
pub(crate) fn spawn_sync(state: &AppState, id: &str, adapter: &EngineAdapterPlugin) {
    if !state.adapter_syncs().begin(id) {
        return;
    }
    let ending = Ending(state.clone(), id.to_string());
    let adapter = adapter.clone();
    tokio::spawn(async move {
        let Ending(state, id) = &ending;
        if let Err(e) = sync_by_id(state, id, &adapter, crate::workflow_runs::now_ms()).await {
            tracing::warn!(run = %id, error = %e.0.message, "syncing a workflow run with its engine failed");
        }
    });
}

async fn sync_by_id(
    state: &AppState,
    id: &str,
    adapter: &EngineAdapterPlugin,
    now_ms: i64,
) -> Result<(), Error> {
    let run = state
        .runner()
        .store()
        .workflow_run(id)
        .await
        .map_err(store_error("reading the workflow run failed"))?;
    match run {
        Some(run) => sync(state, &run, adapter, now_ms).await,
        None => Ok(()),
    }
}

fn store_error(context: &'static str) -> impl FnOnce(tessera_store::StoreError) -> Error {
    move |e| Error::internal(context, e)
}

fn corrupt(e: impl std::fmt::Display) -> Error {
    Error::internal("a stored workflow run does not decode", e)
}

/// One call into the adapter, on the blocking pool.
async fn call<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, CallError> + Send + 'static,
) -> Result<R, CallError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(CallError::Trap(format!("the host's call failed: {e}"))))
}

/// Whether the engine refused for good (the run cannot be made as asked), rather than
/// failing in a way that may pass.
fn refused(e: &CallError) -> bool {
    matches!(
        e,
        CallError::Plugin(
            PluginError::InvalidInput(_) | PluginError::NotFound(_) | PluginError::Denied(_)
        )
    )
}

/// Says on a run whose engine no adapter serves now that it waits for one.
pub(crate) async fn no_adapter(state: &AppState, run: &WorkflowRunRow) -> Result<(), Error> {
    note(
        state,
        run,
        format!(
            "no engine adapter is bound to {:?}; the run waits for one (see `tessera plugin`)",
            run.engine
        ),
    )
    .await
}

/// Brings an active run on an adapter up to date: submits it the first time, then reads
/// its status and writes what changed; passes a cancel request on.
pub(crate) async fn sync(
    state: &AppState,
    run: &WorkflowRunRow,
    adapter: &EngineAdapterPlugin,
    now_ms: i64,
) -> Result<(), Error> {
    let current: RunState = run.state.parse().map_err(corrupt)?;
    if current.is_terminal() {
        return Ok(());
    }
    let store = state.runner().store();
    let rows = store
        .task_runs(&run.id)
        .await
        .map_err(store_error("reading the task runs failed"))?;
    let Some(external) = run.external_id.clone() else {
        if run.cancel_requested {
            // It never reached the engine.
            let mut change = RunChange {
                state: Some(RunState::Canceled.as_str().to_string()),
                ended_ms: Some(now_ms),
                ..RunChange::default()
            };
            end_the_rest(&mut change, &rows, TaskRunState::Skipped, now_ms);
            return write(state, run, current, change).await;
        }
        return submit(state, run, adapter, current, &rows, now_ms).await;
    };
    if run.cancel_requested {
        let (a, ext) = (adapter.clone(), external.clone());
        if let Err(e) = call(move || a.cancel(&ext)).await {
            tracing::warn!(run = %run.id, engine = %run.engine, error = %e, "canceling at the engine failed; the next sync asks again");
        }
    }
    let (a, ext) = (adapter.clone(), external.clone());
    let status = match call(move || a.status(&ext)).await {
        Ok(s) => s,
        Err(e) => {
            return note(
                state,
                run,
                format!("engine {:?} did not give the run's status: {e}", run.engine),
            )
            .await;
        }
    };
    let wf = store
        .workflow_by_id(&run.workflow_id)
        .await
        .map_err(store_error("reading the workflow failed"))?
        .ok_or_else(|| Error::internal("a workflow run's workflow is missing", &run.workflow_id))?;
    let dag = crate::workflows::dag_of(&wf)?;
    let change = sync_change(run, &rows, &dag, &status, now_ms)?;
    write(state, run, current, change).await
}

/// Submits the run to its engine; refused for good, the run ends Error.
async fn submit(
    state: &AppState,
    run: &WorkflowRunRow,
    adapter: &EngineAdapterPlugin,
    current: RunState,
    rows: &[TaskRunRow],
    now_ms: i64,
) -> Result<(), Error> {
    let adapter = adapter.clone();
    let wf = state
        .runner()
        .store()
        .workflow_by_id(&run.workflow_id)
        .await
        .map_err(store_error("reading the workflow failed"))?
        .ok_or_else(|| Error::internal("a workflow run's workflow is missing", &run.workflow_id))?;
    let parameters = crate::workflows::parameters_of(&wf)?;
    let given: Map<String, Value> = serde_json::from_str(&run.params).map_err(corrupt)?;
    let values = tessera_core::params::resolve(&parameters, &given, "workflow").map_err(|e| {
        corrupt(
            e.first()
                .map(|f| f.message.clone())
                .unwrap_or_else(|| "its values no longer resolve".into()),
        )
    })?;
    let parameters: Vec<Pair> = values
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    let mut labels: Vec<Pair> = serde_json::from_str::<BTreeMap<String, String>>(&run.labels)
        .map_err(corrupt)?
        .into_iter()
        .collect();
    labels.push((RUN_TAG.to_string(), run.id.clone()));
    let definition = wf.definition.clone();
    match call(move || adapter.submit(&definition, &parameters, &labels)).await {
        Ok(external) => {
            tracing::info!(run = %run.id, engine = %run.engine, %external, "workflow run submitted to its engine");
            let change = RunChange {
                state: Some(RunState::Scheduled.as_str().to_string()),
                started_ms: Some(now_ms),
                message: Some(format!("engine run {external}")),
                external_id: Some(external),
                ..RunChange::default()
            };
            write(state, run, current, change).await
        }
        Err(e) if refused(&e) => {
            let mut change = RunChange {
                state: Some(RunState::Error.as_str().to_string()),
                ended_ms: Some(now_ms),
                message: Some(format!("engine {:?} refused the run: {e}", run.engine)),
                ..RunChange::default()
            };
            end_the_rest(&mut change, rows, TaskRunState::Skipped, now_ms);
            write(state, run, current, change).await
        }
        Err(e) => {
            note(
                state,
                run,
                format!(
                    "engine {:?} did not take the run yet (tried again): {e}",
                    run.engine
                ),
            )
            .await
        }
    }
}

/// Says on the run why it does not move (only when that is news).
async fn note(state: &AppState, run: &WorkflowRunRow, message: String) -> Result<(), Error> {
    tracing::info!(run = %run.id, engine = %run.engine, %message, "workflow run waits on its engine");
    if run.message.as_deref() == Some(message.as_str()) {
        return Ok(());
    }
    let change = RunChange {
        message: Some(message),
        ..RunChange::default()
    };
    let current = run.state.parse().map_err(corrupt)?;
    write(state, run, current, change).await
}

/// Writes `change` under the run's revision (another writer first: the next sync looks
/// again) and starts the clean-up its new state asks for.
async fn write(
    state: &AppState,
    run: &WorkflowRunRow,
    current: RunState,
    change: RunChange,
) -> Result<(), Error> {
    if change == RunChange::default() {
        return Ok(());
    }
    let written = state
        .runner()
        .store()
        .change_workflow_run(&run.id, run.revision, &change)
        .await
        .map_err(store_error("syncing the workflow run failed"))?;
    let to = change
        .state
        .as_deref()
        .and_then(|s| s.parse::<RunState>().ok());
    if written && let Some(to) = to.filter(|to| *to != current) {
        tracing::info!(run = %run.id, engine = %run.engine, from = current.as_str(), to = to.as_str(), "workflow run state");
        let policy: CleanupPolicy =
            serde_json::from_value(Value::String(run.cleanup.clone())).unwrap_or_default();
        if policy.cleans(to) {
            crate::workflow_runs::spawn_clean(state, &run.group, &run.id);
        }
    }
    Ok(())
}

/// Every task run not ended yet ends `to`.
fn end_the_rest(change: &mut RunChange, rows: &[TaskRunRow], to: TaskRunState, now_ms: i64) {
    for r in rows {
        let ended = r
            .state
            .parse::<TaskRunState>()
            .is_ok_and(TaskRunState::is_terminal);
        let changed = change.task_runs.iter().any(|c| c.id == r.id);
        if !ended && !changed {
            change.task_runs.push(TaskRunChange {
                id: r.id.clone(),
                state: Some(to.as_str().to_string()),
                ended_ms: Some(now_ms),
                ..TaskRunChange::default()
            });
        }
    }
}

/// A run's state from its engine's; `None` when the engine does not know.
fn run_state_of(engine: EngineState, canceling: bool) -> Option<RunState> {
    Some(match engine {
        EngineState::Queued => RunState::Scheduled,
        EngineState::Running => RunState::Running,
        EngineState::Succeeded | EngineState::Skipped => RunState::Completed,
        // A run asked to stop ends Canceled however the engine words its end.
        EngineState::Failed | EngineState::UpstreamFailed | EngineState::Canceled if canceling => {
            RunState::Canceled
        }
        EngineState::Failed | EngineState::UpstreamFailed => RunState::Error,
        EngineState::Canceled => RunState::Canceled,
        EngineState::Unknown => return None,
    })
}

/// A task run's state from its engine's; `None` when the engine does not know.
fn task_run_state_of(engine: EngineState) -> Option<TaskRunState> {
    Some(match engine {
        EngineState::Queued => TaskRunState::Scheduled,
        EngineState::Running => TaskRunState::Running,
        EngineState::Succeeded => TaskRunState::Completed,
        EngineState::Failed => TaskRunState::Error,
        // As with the native engine: a canceled task ran no further than it got.
        EngineState::Canceled | EngineState::Skipped => TaskRunState::Skipped,
        EngineState::UpstreamFailed => TaskRunState::UpstreamFailed,
        EngineState::Unknown => return None,
    })
}

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// What the engine's `status` changes in the stored run and its task runs (pure: the
/// sync's decision, tested without an engine). A try the store lacks is added; a task
/// waiting at the engine whose upstream tasks have not all completed is Created; an
/// earlier try the engine moved past ends Error; when the run ends, task runs the engine
/// never finished end Skipped.
pub(crate) fn sync_change(
    run: &WorkflowRunRow,
    rows: &[TaskRunRow],
    dag: &Dag,
    status: &RunStatus,
    now_ms: i64,
) -> Result<RunChange, Error> {
    let mut change = RunChange::default();
    let created =
        tessera_core::time_fmt::from_ms(run.created_ms).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let completed: BTreeSet<&str> = status
        .tasks
        .iter()
        .filter(|t| t.state == EngineState::Succeeded)
        .map(|t| t.task_id.as_str())
        .collect();
    for t in &status.tasks {
        let Some(mut to) = task_run_state_of(t.state) else {
            continue;
        };
        let waits = dag
            .task(&t.task_id)
            .is_some_and(|d| d.upstream.iter().any(|u| !completed.contains(u.as_str())));
        if to == TaskRunState::Scheduled && waits {
            to = TaskRunState::Created;
        }
        let attempt = t.try_number.max(1);
        // Earlier tries still open: the engine moved past them.
        for r in rows
            .iter()
            .filter(|r| r.task_title == t.task_id && r.attempt < i64::from(attempt))
        {
            let state: TaskRunState = r.state.parse().map_err(corrupt)?;
            if !state.is_terminal() {
                change.task_runs.push(TaskRunChange {
                    id: r.id.clone(),
                    state: Some(TaskRunState::Error.as_str().to_string()),
                    ended_ms: Some(now_ms),
                    message: Some(format!("the engine went on to try {attempt}")),
                    ..TaskRunChange::default()
                });
            }
        }
        let Some(r) = rows
            .iter()
            .find(|r| r.task_title == t.task_id && r.attempt == i64::from(attempt))
        else {
            change.new_task_runs.push(NewTaskRun {
                id: tessera_workflow::task_run_id(&run.id, created, &t.task_id, attempt),
                task_title: t.task_id.clone(),
                attempt: i64::from(attempt),
                state: to.as_str().to_string(),
                task_id: None,
                not_before_ms: None,
            });
            continue;
        };
        let unchanged = TaskRunChange {
            id: r.id.clone(),
            ..TaskRunChange::default()
        };
        let mut c = unchanged.clone();
        if r.state != to.as_str() {
            c.state = Some(to.as_str().to_string());
        }
        if r.started_ms.is_none() {
            c.started_ms = t.start_ms.map(ms);
        }
        if r.ended_ms.is_none() && to.is_terminal() {
            c.ended_ms = Some(t.end_ms.map_or(now_ms, ms));
        }
        if t.message.is_some() && r.message != t.message {
            c.message = t.message.clone();
        }
        if c != unchanged {
            change.task_runs.push(c);
        }
    }
    let current: RunState = run.state.parse().map_err(corrupt)?;
    let to = run_state_of(status.state, run.cancel_requested).unwrap_or(current);
    if to != current {
        change.state = Some(to.as_str().to_string());
        if run.started_ms.is_none() && !matches!(to, RunState::Created | RunState::Pending) {
            change.started_ms = Some(now_ms);
        }
        if to.is_terminal() {
            change.ended_ms = Some(now_ms);
            // What the engine never finished (or never reported) did not run.
            let reported: BTreeSet<(&str, i64)> = status
                .tasks
                .iter()
                .map(|t| (t.task_id.as_str(), i64::from(t.try_number.max(1))))
                .collect();
            let open: Vec<TaskRunRow> = rows
                .iter()
                .filter(|r| !reported.contains(&(r.task_title.as_str(), r.attempt)))
                .cloned()
                .collect();
            end_the_rest(&mut change, &open, TaskRunState::Skipped, now_ms);
        }
    }
    if status.message.is_some() && status.message != run.message {
        change.message = status.message.clone();
    }
    Ok(change)
}

/// Asks the engine to run `tasks` of ended run `run` again (with `downstream`, what
/// depends on them too) and reopens the run; the next syncs pick up the new tries.
pub(crate) async fn retry(
    state: &AppState,
    run: &WorkflowRunRow,
    adapter: &EngineAdapterPlugin,
    tasks: Vec<String>,
    downstream: bool,
) -> Result<(), Error> {
    let adapter = adapter.clone();
    let Some(external) = run.external_id.clone() else {
        return Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "workflow run {} never reached its engine: there is nothing to retry there",
                run.id
            ),
        ));
    };
    call(move || adapter.retry(&external, &tasks, downstream))
        .await
        .map_err(|e| match e {
            CallError::Unsupported(m) => Error::new(ErrorCode::InvalidParameter, m),
            e if refused(&e) => Error::new(
                ErrorCode::Conflict,
                format!("engine {:?} refused the retry: {e}", run.engine),
            ),
            e => Error::new(
                ErrorCode::Unavailable,
                format!("engine {:?} did not retry the run: {e}", run.engine),
            ),
        })?;
    let change = RunChange {
        state: Some(RunState::Running.as_str().to_string()),
        reopen: true,
        wake_ms: Some(None),
        ..RunChange::default()
    };
    let store = state.runner().store();
    // The engine has retried: reopen whatever the revision is now.
    for _ in 0..3 {
        let Some(now) = store
            .workflow_run(&run.id)
            .await
            .map_err(store_error("reading the workflow run failed"))?
        else {
            return Ok(());
        };
        if store
            .change_workflow_run(&run.id, now.revision, &change)
            .await
            .map_err(store_error("retrying the workflow run failed"))?
        {
            return Ok(());
        }
    }
    Err(Error::new(
        ErrorCode::Conflict,
        format!(
            "workflow run {} changed meanwhile; its engine retried, ask again to see it",
            run.id
        ),
    ))
}

/// Up to `max_bytes` of task run `row`'s log at its engine, from byte `offset`.
async fn chunk(
    run: &WorkflowRunRow,
    adapter: &EngineAdapterPlugin,
    row: &TaskRunRow,
    offset: u64,
    max_bytes: u32,
) -> Result<LogChunk, Error> {
    let Some(external) = run.external_id.clone() else {
        return Ok(LogChunk {
            text: String::new(),
            next_offset: offset,
        });
    };
    let adapter = adapter.clone();
    let (task, attempt) = (
        row.task_title.clone(),
        u32::try_from(row.attempt).unwrap_or(1),
    );
    call(move || adapter.logs(&external, &task, attempt, offset, max_bytes))
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::Unavailable,
                format!("engine {:?} did not give the log: {e}", run.engine),
            )
        })
}

/// A page of task run `row`'s log at its engine, from byte `offset`.
pub(crate) async fn page(
    run: &WorkflowRunRow,
    adapter: &EngineAdapterPlugin,
    row: TaskRunRow,
    offset: u64,
    page: u32,
) -> Result<Response, Error> {
    use axum::response::IntoResponse;
    let piece = chunk(run, adapter, &row, offset, page).await?;
    let done = row
        .state
        .parse::<TaskRunState>()
        .map_err(corrupt)?
        .is_terminal();
    // The engine keeps the log whole: there is more while it gave a full page or the
    // task run goes on.
    let more = !done || piece.text.len() as u64 >= u64::from(page);
    Ok(axum::Json(crate::workflow_runs::TaskRunLogs {
        task_run_id: row.id,
        offset,
        missed_bytes: 0,
        next_page_token: more.then(|| {
            tessera_core::page::encode(i64::try_from(piece.next_offset).unwrap_or(i64::MAX))
        }),
        text: piece.text,
    })
    .into_response())
}

/// A task run's log at its engine as text, from `offset`, followed until the task run
/// has ended and the engine has nothing more.
pub(crate) fn follow(
    state: &AppState,
    adapter: EngineAdapterPlugin,
    run: WorkflowRunRow,
    row: TaskRunRow,
    offset: u64,
    page: u32,
) -> Response {
    use axum::response::IntoResponse;
    let headers = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    )];
    let state = state.clone();
    let body = futures_util::stream::unfold((offset, false, true), move |(offset, done, first)| {
        let (state, adapter, run, row) = (state.clone(), adapter.clone(), run.clone(), row.clone());
        async move {
            if done {
                return None;
            }
            if !first {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            let store = state.runner().store();
            let ended = match store.task_runs(&run.id).await {
                Ok(rows) => rows
                    .iter()
                    .find(|r| r.id == row.id)
                    .and_then(|r| r.state.parse::<TaskRunState>().ok())
                    .is_none_or(TaskRunState::is_terminal),
                Err(_) => true,
            };
            let run = store.workflow_run(&run.id).await.ok().flatten()?;
            let chunk = chunk(&run, &adapter, &row, offset, page).await.ok()?;
            let last = ended && chunk.text.is_empty();
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(chunk.text)),
                (chunk.next_offset, last, false),
            ))
        }
    });
    (headers, axum::body::Body::from_stream(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_plugin_runtime::TaskRun;

    fn run(state: &str, canceling: bool) -> WorkflowRunRow {
        WorkflowRunRow {
            seq: 1,
            id: "r1".into(),
            group: "g".into(),
            workflow_id: "w".into(),
            title: "chain".into(),
            version: 1,
            engine: "airflow".into(),
            state: state.into(),
            cancel_requested: canceling,
            params: "{}".into(),
            labels: "{}".into(),
            cleanup: "Never".into(),
            cleaned: false,
            external_id: Some("ext-1".into()),
            message: None,
            created_ms: 1_700_000_000_000,
            started_ms: Some(1_700_000_000_000),
            ended_ms: None,
            wake_ms: None,
            revision: 3,
            created_by: "u".into(),
        }
    }

    fn row(title: &str, attempt: i64, state: TaskRunState) -> TaskRunRow {
        TaskRunRow {
            id: format!("{title}-{attempt}"),
            run_id: "r1".into(),
            task_title: title.into(),
            attempt,
            state: state.as_str().into(),
            task_id: None,
            external_id: None,
            not_before_ms: None,
            started_ms: None,
            ended_ms: None,
            message: None,
            task_state: None,
        }
    }

    fn task(id: &str, try_number: u32, state: EngineState) -> TaskRun {
        TaskRun {
            task_id: id.into(),
            try_number,
            state,
            start_ms: None,
            end_ms: None,
            message: None,
        }
    }

    fn chain() -> Dag {
        Dag::new(&[
            ("a".into(), vec![]),
            ("b".into(), vec!["a".into()]),
            ("c".into(), vec!["b".into()]),
        ])
        .unwrap()
    }

    fn states(change: &RunChange) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = change
            .task_runs
            .iter()
            .filter_map(|c| Some((c.id.clone(), c.state.clone()?)))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_waiting_task_is_created_until_its_upstream_completes() {
        use TaskRunState::*;
        let rows = [
            row("a", 1, Created),
            row("b", 1, Created),
            row("c", 1, Created),
        ];
        let status = RunStatus {
            state: EngineState::Running,
            tasks: vec![
                task("a", 1, EngineState::Succeeded),
                task("b", 1, EngineState::Queued),
                task("c", 1, EngineState::Queued),
            ],
            message: None,
        };
        let change = sync_change(&run("Scheduled", false), &rows, &chain(), &status, 5).unwrap();
        assert_eq!(change.state.as_deref(), Some("Running"));
        assert_eq!(
            states(&change),
            [
                ("a-1".to_string(), "Completed".to_string()),
                ("b-1".to_string(), "Scheduled".to_string()),
            ]
        );
        // Nothing new: nothing to write.
        let rows = [
            row("a", 1, Completed),
            row("b", 1, Scheduled),
            row("c", 1, Created),
        ];
        let mut done = rows.clone();
        for r in &mut done {
            r.ended_ms = Some(1);
        }
        let change = sync_change(&run("Running", false), &done, &chain(), &status, 5).unwrap();
        assert_eq!(change, RunChange::default());
    }

    #[test]
    fn a_new_try_is_added_and_the_try_before_it_ends() {
        use TaskRunState::*;
        let rows = [
            row("a", 1, Completed),
            row("b", 1, Running),
            row("c", 1, Created),
        ];
        let status = RunStatus {
            state: EngineState::Running,
            tasks: vec![
                task("a", 1, EngineState::Succeeded),
                task("b", 2, EngineState::Running),
                task("c", 1, EngineState::Queued),
            ],
            message: None,
        };
        let change = sync_change(&run("Running", false), &rows, &chain(), &status, 5).unwrap();
        assert_eq!(states(&change), [("b-1".to_string(), "Error".to_string())]);
        assert_eq!(change.new_task_runs.len(), 1);
        let new = &change.new_task_runs[0];
        assert_eq!(
            (new.task_title.as_str(), new.attempt, new.state.as_str()),
            ("b", 2, "Running")
        );
    }

    #[test]
    fn a_failed_run_ends_error_and_what_never_ran_is_skipped_and_a_canceled_one_canceled() {
        use TaskRunState::*;
        let rows = [
            row("a", 1, Running),
            row("b", 1, Created),
            row("c", 1, Created),
        ];
        let status = RunStatus {
            state: EngineState::Failed,
            tasks: vec![
                task("a", 1, EngineState::Failed),
                task("b", 1, EngineState::UpstreamFailed),
            ],
            message: Some("a failed".into()),
        };
        let change = sync_change(&run("Running", false), &rows, &chain(), &status, 5).unwrap();
        assert_eq!(change.state.as_deref(), Some("Error"));
        assert_eq!(change.ended_ms, Some(5));
        assert_eq!(change.message.as_deref(), Some("a failed"));
        assert_eq!(
            states(&change),
            [
                ("a-1".to_string(), "Error".to_string()),
                ("b-1".to_string(), "UpstreamFailed".to_string()),
                ("c-1".to_string(), "Skipped".to_string()),
            ]
        );
        // Asked to stop, the same answer ends the run Canceled.
        let change = sync_change(&run("Running", true), &rows, &chain(), &status, 5).unwrap();
        assert_eq!(change.state.as_deref(), Some("Canceled"));
        // An engine that does not know leaves the run as it is.
        let unknown = RunStatus {
            state: EngineState::Unknown,
            tasks: vec![],
            message: None,
        };
        let change = sync_change(&run("Running", false), &rows, &chain(), &unknown, 5).unwrap();
        assert_eq!(change, RunChange::default());
    }
}
