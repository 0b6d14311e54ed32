//! A task's executor output as the Task and Workflow APIs show it (`/v1/runs/{id}/logs`,
//! `/v1/workflow-runs/{id}/task-runs/{task_run_id}/logs`): the stdout or stderr of its
//! latest attempt, from a byte offset (a client that reconnects says what it has), whole
//! or followed while the task runs.
//!
//! The store keeps the tail of each executor's output (`--log-tail-bytes`) and how many
//! bytes it wrote in all; a reader that asks for bytes no longer kept is told how many it
//! missed.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use tessera_core::{ErrorCode, TaskRecord};

use crate::{AppState, Error};

/// How often a followed output is read again from the store.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Which output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// What a reader asks for: `stream=stdout|stderr`, `follow=true`, `skip=BYTES`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query {
    pub(crate) stream: Stream,
    pub(crate) follow: bool,
    pub(crate) skip: u64,
}

fn bad(msg: String) -> Error {
    Error::new(ErrorCode::InvalidParameter, msg)
}

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Result<Query, Error> {
        let mut q = Query {
            stream: Stream::Stdout,
            follow: false,
            skip: 0,
        };
        for (k, v) in crate::query::pairs(raw)? {
            match (k.as_str(), v.as_str()) {
                ("skip", n) => {
                    q.skip = n
                        .parse()
                        .map_err(|_| bad(format!("skip {n:?} is not a byte count")))?;
                }
                ("stream", "stdout") => q.stream = Stream::Stdout,
                ("stream", "stderr") => q.stream = Stream::Stderr,
                ("stream", other) => {
                    return Err(bad(format!("stream {other:?} is not stdout or stderr")));
                }
                ("follow", "true" | "1" | "") => q.follow = true,
                ("follow", "false" | "0") => q.follow = false,
                ("follow", other) => {
                    return Err(bad(format!("follow {other:?} is not true or false")));
                }
                _ => {}
            }
        }
        Ok(q)
    }
}

/// The output of the task's latest attempt so far: each executor's stdout (or stderr),
/// and how many bytes each wrote in all (the stored text is the tail of that).
pub(crate) fn output_of(task: &TaskRecord, stream: Stream) -> Vec<(String, u64)> {
    let Some(last) = task.logs.last() else {
        return Vec::new();
    };
    last.logs
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (text, key) = match stream {
                Stream::Stdout => (l.stdout.clone(), format!("executor.{i}.stdout_bytes")),
                Stream::Stderr => (l.stderr.clone(), format!("executor.{i}.stderr_bytes")),
            };
            let text = text.unwrap_or_default();
            let total = last
                .metadata
                .as_ref()
                .and_then(|m| m.get(&key))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(text.len() as u64);
            (text, total)
        })
        .collect()
}

/// `skip` bytes counted off each executor's output in order: how many of each.
fn skipped(outputs: &[(String, u64)], skip: u64) -> Vec<u64> {
    let mut left = skip;
    outputs
        .iter()
        .map(|(_, total)| {
            let n = left.min(*total);
            left -= n;
            n
        })
        .collect()
}

/// The output after `skip` bytes, as it is now: (bytes written in all, bytes after
/// `skip` that are no longer kept, the text after `skip`).
pub(crate) fn after(task: &TaskRecord, stream: Stream, skip: u64) -> (u64, u64, String) {
    let outputs = output_of(task, stream);
    let seen = skipped(&outputs, skip);
    let mut missed = 0;
    let mut text = String::new();
    for ((t, total), seen) in outputs.iter().zip(seen) {
        let (m, rest) = tessera_core::view::unseen_tail(t, *total, seen);
        missed += m;
        text.push_str(rest);
    }
    (outputs.iter().map(|(_, t)| t).sum(), missed, text)
}

/// The output as `text/plain`: what there is after `skip` now, or with `follow` what
/// each flush adds until the task ends.
pub(crate) fn text(state: &AppState, task: TaskRecord, q: &Query) -> Response {
    let headers = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    )];
    if !q.follow || task.state.is_terminal() {
        return (headers, after(&task, q.stream, q.skip).2).into_response();
    }
    let (stream, id) = (q.stream, task.id.clone());
    let sent = skipped(&output_of(&task, stream), q.skip);
    let store = state.runner().store().clone();
    let body =
        futures_util::stream::unfold((Some(task), sent, false), move |(task, mut sent, done)| {
            let store = store.clone();
            let id = id.clone();
            async move {
                if done {
                    return None;
                }
                let mut task = task;
                loop {
                    let t = match task.take() {
                        Some(t) => t,
                        None => {
                            tokio::time::sleep(FOLLOW_POLL).await;
                            match store.get_task(&id).await {
                                Ok(Some(t)) => t,
                                _ => return None,
                            }
                        }
                    };
                    let outputs = output_of(&t, stream);
                    let mut chunk = String::new();
                    for (i, (text, total)) in outputs.iter().enumerate() {
                        if sent.len() <= i {
                            sent.push(0);
                        }
                        let (missed, text) = tessera_core::view::unseen_tail(text, *total, sent[i]);
                        if missed > 0 {
                            chunk.push_str(&format!("[… {missed} bytes not kept …]\n"));
                        }
                        chunk.push_str(text);
                        sent[i] = *total;
                    }
                    let ended = t.state.is_terminal();
                    if !chunk.is_empty() || ended {
                        return Some((
                            Ok::<_, std::convert::Infallible>(Bytes::from(chunk)),
                            (None, sent, ended),
                        ));
                    }
                }
            }
        });
    (headers, axum::body::Body::from_stream(body)).into_response()
}
