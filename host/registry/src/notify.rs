//! Delivering task events to the bound notifiers, at least once.
//!
//! The store's `task_events` table is the outbox (every state change is an event row,
//! written with the change). Per notifier binding a cursor walks the events; an event
//! the notifier fails to take is queued for a retry with exponential backoff, so one
//! failing delivery never holds up the ones after it. A crash between a delivery and the
//! cursor's move delivers that event again after the restart.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tessera_core::time_fmt::{format_rfc3339, unix_ms};
use tessera_core::{Event, State, TaskRecord};
use tessera_plugin_runtime::{CallError, NotifyEvent, TaskInfo};
use tessera_store::Failed;

use crate::{ActiveNotifier, Registry};

/// Events fetched per binding per round.
const BATCH: u32 = 100;
/// After this many failed attempts a delivery is given up (kept in the store, counted).
pub const MAX_ATTEMPTS: i64 = 12;
/// The TES tag whose value is the task's own notification URL.
pub const NOTIFICATION_URL_TAG: &str = "notification_url";

/// Which events a notifier binding delivers. Every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EventFilter {
    /// States entered (TES names, e.g. "COMPLETE", in any case); empty: any.
    #[serde(default, deserialize_with = "states_any_case")]
    pub states: Vec<State>,
    /// Tags the task must have (an empty value: the key with any value).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Groups the task must belong to; empty: any (tasks without a group are in `""`).
    #[serde(default)]
    pub groups: Vec<String>,
}

/// TES state names in any case (`complete` as `COMPLETE`); an unknown name is an error.
fn states_any_case<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<State>, D::Error> {
    let names: Vec<String> = Deserialize::deserialize(d)?;
    names
        .iter()
        .map(|n| n.parse::<State>().map_err(serde::de::Error::custom))
        .collect()
}

impl EventFilter {
    pub fn matches(&self, event: &Event, task: &TaskRecord) -> bool {
        let states = self.states.is_empty() || self.states.contains(&event.to_state);
        let tags = task.spec.tags.as_ref();
        let tags_ok = self.tags.iter().all(|(k, v)| {
            tags.and_then(|t| t.get(k))
                .is_some_and(|have| v.is_empty() || have == v)
        });
        let groups = self.groups.is_empty() || self.groups.contains(&task.group);
        states && tags_ok && groups
    }
}

/// The wait before attempt `attempts + 1`: 1 s, doubling, at most 5 minutes.
pub fn backoff(attempts: i64) -> Duration {
    let exp = u32::try_from(attempts.clamp(1, 20) - 1).unwrap_or(0);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

fn at_after(d: Duration) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + d
}

pub fn event_for(event: &Event, task: &TaskRecord) -> NotifyEvent {
    let spec = &task.spec;
    let tags: Vec<(String, String)> = spec
        .tags
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let resources = spec.resources.as_ref();
    NotifyEvent {
        task: TaskInfo {
            id: task.id.clone(),
            name: spec.name.clone(),
            tags,
            group: (!task.group.is_empty()).then(|| task.group.clone()),
            priority: task.priority,
            cpu_cores: resources.map(|r| r.cpu_count()).filter(|c| *c > 0),
            ram_bytes: resources.map(|r| r.ram_bytes()).filter(|b| *b > 0),
            created_at_ms: unix_ms(task.creation_time),
        },
        from_state: event.from_state.map(|s| s.as_str().to_string()),
        to_state: event.to_state.as_str().to_string(),
        at: format_rfc3339(event.at),
        reason: event.reason.clone(),
        notification_url: spec
            .tags
            .as_ref()
            .and_then(|t| t.get(NOTIFICATION_URL_TAG))
            .cloned(),
    }
}

impl Registry {
    /// Deliver events to the bound notifiers until the process ends. Each binding's
    /// outbox is held with `lease`: with several servers on one store, one at a time
    /// delivers a binding, and another takes over once its holder's lease runs out.
    pub async fn run_notifiers(self, lease: tessera_store::Lease) {
        loop {
            let mut busy = false;
            for (scope, notifier) in self.notifiers().iter() {
                if scope == tessera_core::plugin::RUN_SUMMARY_SCOPE {
                    continue; // not an outbox of task events
                }
                match self.deliver_round(scope, notifier, &lease).await {
                    Ok(more) => busy |= more,
                    Err(e) => {
                        tracing::warn!(scope = %scope, plugin = %notifier.binding.plugin, error = %e, "notification round failed; will retry")
                    }
                }
            }
            if !busy {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// One round for one binding: new events, then due retries. Returns whether a full
    /// batch was seen (more may be waiting).
    pub(crate) async fn deliver_round(
        &self,
        scope: &str,
        notifier: &std::sync::Arc<ActiveNotifier>,
        lease: &tessera_store::Lease,
    ) -> Result<bool, tessera_store::StoreError> {
        let store = self.store();
        let owner = lease.owner.as_str();
        let start = store.last_event_seq().await?;
        let Some(cursor) = store.hold_notifier(scope, start, lease).await? else {
            return Ok(false); // another server delivers this binding now
        };
        let events = store.events_after(cursor, BATCH).await?;
        let mut tasks: HashMap<String, Option<TaskRecord>> = HashMap::new();
        let mut failed = Vec::new();
        for event in &events {
            let Some(task) = self.task_of(&mut tasks, &event.task_id).await? else {
                continue;
            };
            if notifier
                .filter
                .as_ref()
                .is_some_and(|f| !f.matches(event, &task))
            {
                continue;
            }
            if let Err(error) = self.deliver(notifier, event, &task).await {
                tracing::info!(task_id = %event.task_id, scope, plugin = %notifier.binding.plugin, error = %error, "delivery failed; will retry");
                failed.push(Failed {
                    event_seq: event.seq,
                    next_at: at_after(backoff(1)),
                    error: error.to_string(),
                });
            }
        }
        if let Some(last) = events.last() {
            store
                .advance_notifier(scope, last.seq, &failed, owner)
                .await?;
        }

        for retry in store
            .due_retries(scope, time::OffsetDateTime::now_utc(), BATCH)
            .await?
        {
            let found = match store.event(retry.event_seq).await? {
                Some(e) => self.task_of(&mut tasks, &e.task_id).await?.map(|t| (e, t)),
                None => None,
            };
            let Some((event, task)) = found else {
                store.retry_delivered(scope, retry.event_seq, owner).await?; // the task is gone
                continue;
            };
            match self.deliver(notifier, &event, &task).await {
                Ok(()) => store.retry_delivered(scope, retry.event_seq, owner).await?,
                Err(error) => {
                    let attempts = retry.attempts + 1;
                    let dead = attempts >= MAX_ATTEMPTS;
                    if dead {
                        tracing::warn!(task_id = %event.task_id, scope, attempts, error = %error, "giving up a notification");
                    }
                    store
                        .retry_failed(
                            scope,
                            retry.event_seq,
                            at_after(backoff(attempts)),
                            &error.to_string(),
                            dead,
                            owner,
                        )
                        .await?;
                }
            }
        }
        Ok(events.len() as u32 == BATCH)
    }

    /// Deliver `event` through the notifier bound to `scope`, on a fresh instance off the
    /// async threads; `None` when nothing is bound there.
    pub async fn deliver_at(
        &self,
        scope: &str,
        event: NotifyEvent,
    ) -> Option<Result<(), CallError>> {
        let plugin = self.notifiers().get(scope)?.plugin.clone();
        Some(
            tokio::task::spawn_blocking(move || plugin.deliver(&event))
                .await
                .unwrap_or_else(|e| {
                    Err(CallError::Trap(format!("the delivery thread failed: {e}")))
                }),
        )
    }

    async fn task_of(
        &self,
        cache: &mut HashMap<String, Option<TaskRecord>>,
        id: &str,
    ) -> Result<Option<TaskRecord>, tessera_store::StoreError> {
        if let Some(t) = cache.get(id) {
            return Ok(t.clone());
        }
        let t = self.store().get_task(id).await?;
        cache.insert(id.to_string(), t.clone());
        Ok(t)
    }

    /// One delivery on a fresh instance, off the async threads.
    async fn deliver(
        &self,
        notifier: &std::sync::Arc<ActiveNotifier>,
        event: &Event,
        task: &TaskRecord,
    ) -> Result<(), CallError> {
        let plugin = notifier.plugin.clone();
        let event = event_for(event, task);
        tokio::task::spawn_blocking(move || plugin.deliver(&event))
            .await
            .unwrap_or_else(|e| Err(CallError::Trap(format!("the delivery thread failed: {e}"))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(30), Duration::from_secs(300));
        assert_eq!(backoff(-3), Duration::from_secs(1));
    }
}
