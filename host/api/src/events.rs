//! `GET /v1/events`: every task state change the caller may see, as Server-Sent Events.
//!
//! The store's event log is the source: one hub per server reads it (only while someone
//! listens) and fans each event out to the subscribers, each of which filters by what
//! its caller sees and what it asked for (`task=`, `run=`, `origin=`, `type=`, each
//! repeatable). An event's SSE id is its store sequence number; a client that
//! reconnects with `Last-Event-ID` (or `?after=SEQ`) is first replayed what it missed
//! from the store, then continues live, so a disconnect loses nothing. A subscriber
//! that falls behind the hub reads from the store until it catches up.
//!
//! Event types: `task.created` (the first event of a task), `task.state` (a change),
//! `task.finished` (a terminal state); for workflow runs `workflow-run.created`,
//! `workflow-run.state`, `workflow-run.finished`, and `task-run.state` for their task
//! runs. Task and workflow events share one sequence in the store, so one id resumes
//! both.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use tessera_core::ErrorCode;
use tessera_core::task::Origin;
use tessera_store::{FeedItem, Store, WorkflowFeedEvent};
use tokio::sync::broadcast;

use crate::auth::Caller;
use crate::{AppState, Error};

/// How often the hub reads the log while someone listens.
const POLL: Duration = Duration::from_millis(100);
/// Events read per store query.
const BATCH: u32 = 1000;
/// Events the hub buffers per subscriber before the slowest must catch up from the store.
const CAPACITY: usize = 8192;

/// The type of an event, from its states.
pub fn event_type(e: &tessera_core::Event) -> &'static str {
    if e.from_state.is_none() {
        "task.created"
    } else if e.to_state.is_terminal() {
        "task.finished"
    } else {
        "task.state"
    }
}

/// The type of a workflow event, from its states.
pub fn workflow_event_type(e: &WorkflowFeedEvent) -> &'static str {
    match (&e.task_run_id, &e.from_state) {
        (Some(_), _) => "task-run.state",
        (None, None) => "workflow-run.created",
        (None, Some(_)) => match e.to_state.parse::<tessera_workflow::RunState>() {
            Ok(s) if s.is_terminal() => "workflow-run.finished",
            _ => "workflow-run.state",
        },
    }
}

/// Every event type a subscriber may ask for.
const EVENT_TYPES: [&str; 7] = [
    "task.created",
    "task.state",
    "task.finished",
    "workflow-run.created",
    "workflow-run.state",
    "workflow-run.finished",
    "task-run.state",
];

/// One server's reader of the event log.
#[derive(Clone)]
pub struct Hub(Arc<HubInner>);

struct HubInner {
    store: Store,
    tx: broadcast::Sender<Arc<FeedItem>>,
    /// Whether the reader loop runs.
    running: Mutex<bool>,
}

impl Hub {
    pub fn new(store: Store) -> Hub {
        let (tx, _) = broadcast::channel(CAPACITY);
        Hub(Arc::new(HubInner {
            store,
            tx,
            running: Mutex::new(false),
        }))
    }

    /// A receiver of every event from now on; the reader starts if it was idle.
    fn subscribe(&self) -> broadcast::Receiver<Arc<FeedItem>> {
        let rx = self.0.tx.subscribe();
        let start = match self.0.running.lock() {
            Ok(mut running) => !std::mem::replace(&mut *running, true),
            Err(_) => false,
        };
        if start {
            tokio::spawn(self.clone().read());
        }
        rx
    }

    /// Read the log and send what is new, until nobody listens.
    async fn read(self) {
        let mut cursor = match self.0.store.last_feed_seq().await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::warn!(error = %e, "event stream: reading the log failed");
                0
            }
        };
        loop {
            if self.0.tx.receiver_count() == 0 {
                // Decide under the lock, so a subscriber arriving now restarts us.
                if let Ok(mut running) = self.0.running.lock()
                    && self.0.tx.receiver_count() == 0
                {
                    *running = false;
                    return;
                }
            }
            match self.0.store.feed_items_after(cursor, BATCH).await {
                Ok(events) => {
                    let full = events.len() == BATCH as usize;
                    for e in events {
                        cursor = e.seq();
                        let _ = self.0.tx.send(Arc::new(e));
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event stream: reading the log failed"),
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// What one subscriber asked for and may see.
struct Filter {
    caller: Caller,
    tasks: HashSet<String>,
    origins: HashSet<Origin>,
    types: HashSet<String>,
}

impl Filter {
    fn wants(&self, item: &FeedItem) -> bool {
        match item {
            FeedItem::Task(e) => {
                self.caller.sees(&e.group)
                    && (self.tasks.is_empty() || self.tasks.contains(&e.event.task_id))
                    && (self.origins.is_empty() || self.origins.contains(&e.origin))
                    && (self.types.is_empty() || self.types.contains(event_type(&e.event)))
            }
            FeedItem::Workflow(e) => {
                self.caller.sees(&e.group)
                    && (self.tasks.is_empty()
                        || self.tasks.contains(&e.run_id)
                        || e.task_run_id
                            .as_ref()
                            .is_some_and(|t| self.tasks.contains(t)))
                    && (self.origins.is_empty() || self.origins.contains(&Origin::Workflow))
                    && (self.types.is_empty() || self.types.contains(workflow_event_type(e)))
            }
        }
    }
}

/// The `data` of one event on the stream (its SSE `id` is `seq`, its SSE `event` is
/// `type`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EventData<'a> {
    seq: i64,
    /// task.created, task.state, task.finished, workflow-run.created,
    /// workflow-run.state, workflow-run.finished or task-run.state.
    #[serde(rename = "type")]
    kind: &'a str,
    /// The task (for a task run: the task of the attempt, once it has one).
    task_id: Option<&'a str>,
    origin: Origin,
    group: &'a str,
    /// The states in the words of the API that made the event (TES states for tasks,
    /// Kaapana's for workflow runs and task runs).
    from: Option<&'a str>,
    to: &'a str,
    reason: Option<&'a str>,
    at: String,
    /// A workflow event's run.
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    /// A task-run event's task run and task.
    #[serde(skip_serializing_if = "Option::is_none")]
    task_run_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_title: Option<&'a str>,
}

fn sse_event(item: &FeedItem) -> SseEvent {
    let (seq, kind, data) = match item {
        FeedItem::Task(e) => {
            let ev = &e.event;
            let kind = event_type(ev);
            let data = EventData {
                seq: ev.seq,
                kind,
                task_id: Some(&ev.task_id),
                origin: e.origin,
                group: &e.group,
                from: ev.from_state.map(|s| s.as_str()),
                to: ev.to_state.as_str(),
                reason: ev.reason.as_deref(),
                at: tessera_core::time_fmt::format_rfc3339(ev.at),
                run_id: None,
                task_run_id: None,
                task_title: None,
            };
            (ev.seq, kind, serde_json::to_string(&data))
        }
        FeedItem::Workflow(e) => {
            let kind = workflow_event_type(e);
            let data = EventData {
                seq: e.seq,
                kind,
                task_id: e.task_run_id.as_deref(),
                origin: Origin::Workflow,
                group: &e.group,
                from: e.from_state.as_deref(),
                to: &e.to_state,
                reason: None,
                at: e.at.clone(),
                run_id: Some(&e.run_id),
                task_run_id: e.task_run_id.as_deref(),
                task_title: e.task_title.as_deref(),
            };
            (e.seq, kind, serde_json::to_string(&data))
        }
    };
    SseEvent::default()
        .id(seq.to_string())
        .event(kind)
        .data(data.unwrap_or_default())
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameter, msg)
}

/// `GET /v1/events` query.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct EventQuery {
    /// Only this task's events (repeatable).
    task: Option<Vec<String>>,
    /// Only this run's events (repeatable): a Task API run, or a workflow run with its
    /// task runs.
    run: Option<Vec<String>>,
    /// Only tasks of this origin (repeatable).
    #[param(inline)]
    origin: Option<Vec<Origin>>,
    /// An event type (repeatable): task.created, task.state, task.finished,
    /// workflow-run.created, workflow-run.state, workflow-run.finished, task-run.state.
    #[param(rename = "type")]
    kind: Option<Vec<String>>,
    /// Replay from the stored log after this event id (as `Last-Event-ID` does).
    after: Option<i64>,
}

/// Server-Sent Events of the tasks and workflow runs the caller sees: each event's `data` is an
/// `EventData` object.
#[utoipa::path(
    get,
    operation_id = "stream_events",
    path = "/v1/events",
    tag = "events",
    params(EventQuery, ("last-event-id" = Option<i64>, Header, description = "Resume after this event.")),
    responses((status = 200, content_type = "text/event-stream", body = EventData))
)]
pub async fn stream(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Error> {
    let mut filter = Filter {
        caller,
        tasks: HashSet::new(),
        origins: HashSet::new(),
        types: HashSet::new(),
    };
    let mut after: Option<i64> = None;
    for (k, v) in crate::query::pairs(raw.as_deref())? {
        match k.as_str() {
            "task" | "run" if !v.is_empty() => {
                filter.tasks.insert(v);
            }
            "origin" if !v.is_empty() => {
                filter.origins.insert(v.parse::<Origin>().map_err(bad)?);
            }
            "type" if !v.is_empty() => {
                if !EVENT_TYPES.contains(&v.as_str()) {
                    return Err(bad(format!(
                        "type {v:?} is not one of {}",
                        EVENT_TYPES.join(", ")
                    )));
                }
                filter.types.insert(v);
            }
            "after" if !v.is_empty() => {
                after = Some(
                    v.parse()
                        .map_err(|_| bad(format!("after {v:?} is not an event id"))),
                )
                .transpose()?;
            }
            _ => {}
        }
    }
    if let Some(last) = headers.get("last-event-id") {
        let last = last
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or_else(|| bad("Last-Event-ID is not an event id this server sent"))?;
        after = Some(last);
    }
    let hub = state.events().clone();
    // Subscribe before reading where the log ends: nothing falls between the two.
    let rx = hub.subscribe();
    let store = state.runner().store().clone();
    let (cursor, replay) = match after {
        Some(seq) => (seq, true),
        None => (
            store
                .last_feed_seq()
                .await
                .map_err(|e| Error::internal("reading the event log failed", e))?,
            false,
        ),
    };
    let stream = events(store, rx, filter, cursor, replay);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The subscriber's events after `cursor`: a replay from the store first (when
/// `replay`, and whenever it falls behind the hub), then live ones, each once, in order.
fn events(
    store: Store,
    rx: broadcast::Receiver<Arc<FeedItem>>,
    filter: Filter,
    cursor: i64,
    replay: bool,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    struct S {
        store: Store,
        rx: broadcast::Receiver<Arc<FeedItem>>,
        filter: Filter,
        /// The last seq handed on or passed over.
        cursor: i64,
        /// Read the store after `cursor` before the live events.
        replay: bool,
        /// A live event came: everything before it is in the queue or was handed on.
        joined: bool,
        queue: std::collections::VecDeque<Arc<FeedItem>>,
    }
    let s = S {
        store,
        rx,
        filter,
        replay,
        cursor,
        joined: false,
        queue: Default::default(),
    };
    futures_util::stream::unfold(s, |mut s| async move {
        loop {
            if let Some(e) = s.queue.pop_front() {
                if e.seq() <= s.cursor {
                    continue;
                }
                s.cursor = e.seq();
                if s.filter.wants(&e) {
                    return Some((Ok(sse_event(&e)), s));
                }
                continue;
            }
            if s.replay {
                match s.store.feed_items_after(s.cursor, BATCH).await {
                    Ok(batch) => {
                        s.replay = batch.len() == BATCH as usize;
                        s.queue.extend(batch.into_iter().map(Arc::new));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event stream: replay failed; ending the stream");
                        return None;
                    }
                }
                continue;
            }
            match s.rx.recv().await {
                Ok(e) => {
                    // The first live event: events between where this subscriber is and
                    // it may have gone out before it subscribed (or before the hub's
                    // reader started): read them from the store first. After it the hub
                    // sends every event in order.
                    if !s.joined {
                        s.joined = true;
                        let mut from = s.cursor;
                        while from < e.seq() {
                            match s.store.feed_items_after(from, BATCH).await {
                                Ok(batch) => {
                                    let full = batch.len() == BATCH as usize;
                                    let before: Vec<FeedItem> =
                                        batch.into_iter().filter(|i| i.seq() < e.seq()).collect();
                                    match before.last() {
                                        Some(last) if full => from = last.seq(),
                                        _ => from = e.seq(),
                                    }
                                    s.queue.extend(before.into_iter().map(Arc::new));
                                }
                                Err(err) => {
                                    tracing::warn!(error = %err, "event stream: catching up failed; ending the stream");
                                    return None;
                                }
                            }
                        }
                    }
                    s.queue.push_back(e)
                }
                // Fell behind the hub: read what was missed from the store.
                Err(broadcast::error::RecvError::Lagged(_)) => s.replay = true,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}
