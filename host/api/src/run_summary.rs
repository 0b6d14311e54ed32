//! Run summaries to response URLs: when a run that gave a `response_url` ends, its
//! summary (state, exit code, timings, artifacts) goes out through the notifier bound to
//! [`RUN_SUMMARY_SCOPE`] (by default the built-in webhook notifier, which signs it),
//! retried with backoff, and recorded on the run as delivered or failed.
//!
//! The store holds the delivery state, so a restart continues where it stopped; each
//! attempt is claimed in the store first, so with several servers one makes it. A
//! server that dies in the middle of an attempt leaves it to be retried after
//! [`HOLD`] — the only case in which a receiver may see a summary twice.
//!
//! With plugin interface 0.1 the summary travels in the event's tags (`tessera.run.*`,
//! see docs/task-api.md).

use std::time::Duration;

use tessera_core::plugin::RUN_SUMMARY_SCOPE;
use tessera_plugin_runtime::NotifyEvent;
use tessera_store::{DeliveryOutcome, RunRow};

use crate::AppState;

/// How often finished runs are looked for.
const POLL: Duration = Duration::from_millis(250);
/// How long a claimed attempt is this server's.
const HOLD: Duration = Duration::from_secs(60);
/// Runs handled per round.
const BATCH: u32 = 32;

pub(crate) fn start(state: AppState) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = round(&state).await {
                tracing::warn!(error = %e, "delivering run summaries failed; will retry");
            }
            tokio::time::sleep(POLL).await;
        }
    });
}

use tessera_core::time_fmt::now_ms;

async fn round(state: &AppState) -> Result<(), tessera_store::StoreError> {
    let store = state.runner().store();
    let now = now_ms();
    for id in store.due_run_deliveries(now, BATCH).await? {
        let hold = i64::try_from(HOLD.as_millis()).unwrap_or(i64::MAX);
        if !store.claim_run_delivery(&id, now, hold).await? {
            continue; // another server has it
        }
        let Some((task, run)) = store.run(&id).await? else {
            continue;
        };
        let outcome = attempt(state, &task, &run).await;
        match &outcome {
            DeliveryOutcome::Delivered => {
                tracing::info!(run = %id, attempts = run.delivery_attempts + 1, "run summary delivered")
            }
            DeliveryOutcome::Retry { error, .. } => {
                tracing::info!(run = %id, attempts = run.delivery_attempts + 1, error = %error, "run summary not delivered; will retry")
            }
            DeliveryOutcome::Failed { error } => {
                tracing::warn!(run = %id, attempts = run.delivery_attempts + 1, error = %error, "giving up a run summary")
            }
        }
        store.record_run_delivery(&id, &outcome).await?;
    }
    Ok(())
}

async fn attempt(
    state: &AppState,
    task: &tessera_core::TaskRecord,
    run: &RunRow,
) -> DeliveryOutcome {
    let attempts = run.delivery_attempts + 1;
    let result = match summary_event(state, task, run).await {
        Ok(event) => match state.registry().deliver_at(RUN_SUMMARY_SCOPE, event).await {
            Some(Ok(())) => return DeliveryOutcome::Delivered,
            Some(Err(e)) => e.to_string(),
            None => format!("no notifier is bound to {RUN_SUMMARY_SCOPE}"),
        },
        Err(e) => e,
    };
    if attempts >= tessera_registry::MAX_ATTEMPTS {
        DeliveryOutcome::Failed { error: result }
    } else {
        let wait = i64::try_from(tessera_registry::backoff(attempts).as_millis()).unwrap_or(0);
        DeliveryOutcome::Retry {
            next_ms: now_ms() + wait,
            error: result,
        }
    }
}

/// The tag that carries the summary's artifacts (a JSON array).
pub const ARTIFACTS_TAG: &str = "tessera.run.artifacts";

/// The run's end as a notifier event: its task, the terminal state, and the summary in
/// `tessera.run.*` tags.
async fn summary_event(
    state: &AppState,
    task: &tessera_core::TaskRecord,
    run: &RunRow,
) -> Result<NotifyEvent, String> {
    let artifacts = crate::operations::artifacts(state, &task.group, &task.id)
        .await
        .map_err(|e| format!("listing the artifacts failed: {}", e.0.message))?;
    let last = task.logs.last();
    let end = last
        .and_then(|l| l.end_time.as_deref())
        .and_then(tessera_core::time_fmt::parse_rfc3339)
        .unwrap_or(task.creation_time);
    let event = tessera_core::Event {
        seq: 0,
        task_id: task.id.clone(),
        at: end,
        from_state: None,
        to_state: task.state,
        reason: task.reason.clone(),
    };
    let mut n = tessera_registry::event_for(&event, task);
    let mut tag = |k: &str, v: String| n.task.tags.push((k.to_string(), v));
    tag("tessera.run.state", task.state.as_str().to_string());
    tag("tessera.run.operation-id", run.operation_id.clone());
    if let Some(code) = last.and_then(|l| l.logs.last()).map(|e| e.exit_code) {
        tag("tessera.run.exit-code", code.to_string());
    }
    if let Some(t) = last.and_then(|l| l.start_time.clone()) {
        tag("tessera.run.start-time", t);
    }
    if let Some(t) = last.and_then(|l| l.end_time.clone()) {
        tag("tessera.run.end-time", t);
    }
    tag(
        ARTIFACTS_TAG,
        serde_json::to_string(&artifacts).map_err(|e| e.to_string())?,
    );
    n.notification_url = run.response_url.clone();
    Ok(n)
}
