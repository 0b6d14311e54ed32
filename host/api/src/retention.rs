//! Retention: finished tasks are deleted once they are older than the server's
//! retention (`--retention-days`, 7 by default; 0 keeps them) or their group's own
//! (`PUT /v1/groups/{name}/retention`), with their logs and events, and what runs left in
//! the object store (their artifacts) — the objects first, so a crash in between leaves
//! a task to delete again rather than objects nobody knows of. (Workspaces go when each
//! task ends.) Each server runs [`round`] every minute with the time it is given.

use std::time::Duration;

use tessera_core::task::Origin;
use tessera_store::GroupScope;
use time::OffsetDateTime;

use crate::{AppState, Error};

/// How often the retention pass runs.
const EVERY: Duration = Duration::from_secs(60);
/// Tasks deleted per transaction.
const BATCH: u32 = 500;

/// One pass at `now`; how many tasks went.
pub async fn round(state: &AppState, now: OffsetDateTime) -> Result<u64, Error> {
    let store = state.runner().store();
    let own = store
        .retentions()
        .await
        .map_err(|e| Error::internal("reading the groups' retention failed", e))?;
    let except: Vec<String> = own.iter().map(|(g, _)| g.clone()).collect();
    let mut passes: Vec<(GroupScope<'_>, OffsetDateTime)> = Vec::new();
    if let Some(age) = state.0.cfg.retention {
        passes.push((GroupScope::Except(&except), now - age));
    }
    for (group, days) in &own {
        if *days > 0 {
            passes.push((
                GroupScope::Only(group),
                now - Duration::from_secs(u64::from(*days) * 86_400),
            ));
        }
    }
    let mut deleted = 0;
    for (scope, cutoff) in passes {
        loop {
            let batch = store
                .finished_before(cutoff, scope, BATCH)
                .await
                .map_err(|e| Error::internal("reading old finished tasks failed", e))?;
            for (id, group, origin) in &batch {
                if *origin == Origin::Run {
                    crate::data::delete_prefix(
                        state,
                        group,
                        &crate::operations::artifacts_prefix(id),
                    )
                    .await?;
                }
            }
            let ids: Vec<String> = batch.iter().map(|(id, _, _)| id.clone()).collect();
            deleted += store
                .delete_finished(&ids)
                .await
                .map_err(|e| Error::internal("deleting old finished tasks failed", e))?;
            if batch.len() < BATCH as usize {
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::info!(deleted, "deleted finished tasks past their retention");
    }
    Ok(deleted)
}

pub(crate) fn start(state: AppState) {
    tokio::spawn(async move {
        loop {
            if let Err(e) = round(&state, OffsetDateTime::now_utc()).await {
                tracing::warn!(error = %e.0.message, "the retention pass failed; will retry");
            }
            tokio::time::sleep(EVERY).await;
        }
    });
}
