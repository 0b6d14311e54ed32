//! The component: `tessera:plugin/routing@0.2.0` over [`crate::logic`].
//!
//! Configuration (optional): `log-decisions` = true logs one `debug` line per call that
//! deferred tasks, with the first reason. It is read once per instance (routers run in
//! warm instances, rebuilt when their binding changes).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use tessera_plugin_sdk::v0_2::router::{Decision, Label, PluginError, Request, Router};
use tessera_plugin_sdk::{config, debug};

use crate::logic;

tessera_plugin_sdk::no_std_runtime!();

struct DefaultRouter;

tessera_plugin_sdk::export_router!(DefaultRouter, v0_2);

impl Router for DefaultRouter {
    fn route(request: Request) -> Result<Vec<Decision>, PluginError> {
        let Request {
            labels,
            tasks,
            targets,
        } = request;
        // Field moves between types of one layout: these collect in place (no allocation,
        // no string copied).
        let labels: Vec<logic::Label> = labels
            .into_iter()
            .map(|l| match l {
                Label::Tag((k, v)) => logic::Label::Tag(k, v),
                Label::Group(g) => logic::Label::Group(g),
            })
            .collect();
        let tasks: Vec<logic::Task> = tasks
            .into_iter()
            .map(|t| logic::Task {
                needs: t.needs,
                group: t.group,
                priority: t.priority,
                cpu_cores: t.cpu_cores,
                ram_bytes: t.ram_bytes,
                queued_at_ms: t.queued_at_ms,
            })
            .collect();
        let targets: Vec<logic::Target> = targets
            .into_iter()
            .map(|t| logic::Target {
                holds: t.holds,
                free_slots: t.free_slots,
                cpu_cores_free: t.cpu_cores_free,
                ram_bytes_free: t.ram_bytes_free,
            })
            .collect();

        let outcomes = logic::route(&labels, &tasks, &targets);

        if outcomes
            .iter()
            .any(|o| matches!(o, logic::Outcome::Defer(_)))
            && log_decisions()?
        {
            let mut deferred = outcomes
                .iter()
                .filter_map(|o| match o {
                    logic::Outcome::Defer(reason) => Some(reason),
                    logic::Outcome::Assign(_) => None,
                })
                .peekable();
            if let Some(first) = deferred.peek().copied() {
                debug!(
                    "{} of {} tasks deferred (first: {first})",
                    deferred.count(),
                    tasks.len()
                );
            }
        }

        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                // An index below `targets.len()`, which came as a list: it fits a u32.
                logic::Outcome::Assign(j) => Decision::Assign(j as u32),
                logic::Outcome::Defer(reason) => Decision::Defer(reason),
            })
            .collect())
    }
}

/// The `log-decisions` flag, read from the host once per instance.
fn log_decisions() -> Result<bool, PluginError> {
    // 0: not read yet, 1: off, 2: on.
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => Ok(false),
        2 => Ok(true),
        _ => {
            let on = config::flag("log-decisions")?;
            STATE.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            Ok(on)
        }
    }
}
