//! A router written with `tessera-plugin-sdk` against `tessera:plugin@0.2.0`, whose
//! tasks name their group (`Task::group`, the position of the group's label): **first
//! fit with a per-group share**. Tasks are taken in request order (oldest first); each
//! goes to the first target that can take it, but at most `per-group` tasks (config,
//! default 1) of one group start per call, so one group's burst cannot take every free
//! slot at once. The rest wait with a reason that names their group.
#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;

use tessera_plugin_sdk::config;
use tessera_plugin_sdk::v0_2::router::{Decision, PluginError, Request, Router};

tessera_plugin_sdk::no_std_runtime!();

struct GroupShare;

tessera_plugin_sdk::export_router!(GroupShare, v0_2);

impl Router for GroupShare {
    fn route(mut request: Request) -> Result<Vec<Decision>, PluginError> {
        let per_group: u32 = config::parse_or("per-group", 1)?;
        let mut started: BTreeMap<u32, u32> = BTreeMap::new();
        let mut decisions = Vec::with_capacity(request.tasks.len());
        for task in &request.tasks {
            let group = request.group_of(task).unwrap_or("?");
            let count = started.entry(task.group).or_default();
            if *count >= per_group {
                decisions.push(Decision::Defer(format!(
                    "group {group:?} has started {per_group} tasks in this round"
                )));
                continue;
            }
            match request.targets.iter().position(|t| t.can_take(task)) {
                Some(i) => {
                    request.targets[i].take(task);
                    *count += 1;
                    decisions.push(Decision::Assign(i as u32));
                }
                None => decisions.push(Decision::Defer(format!(
                    "no target with {} has room",
                    request.label_names(task.needs)
                ))),
            }
        }
        Ok(decisions)
    }
}
