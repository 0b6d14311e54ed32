//! The smallest engine adapter written with `tessera-plugin-sdk`: every function of the
//! `engine-adapter` world, for a pretend engine. Copy it to start a real one, whose
//! functions would call the engine's HTTP API (`tessera_plugin_sdk::http`, with the
//! `http` grant and the engine's host in the binding's allowed hosts).
//!
//! The pretend engine keeps no state, so a run lives in its id: a definition is a chain
//! of task names, `extract>transform>load`, and submitting it returns
//! `<prefix><definition>` (config `prefix`, default `run:`). The status of a run is its
//! first task succeeded, the second running, the rest queued, each task downstream of
//! the one before.
#![no_std]

extern crate alloc;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use tessera_plugin_sdk::config;
use tessera_plugin_sdk::engine_adapter::{
    EngineAdapter, Pair, PluginError, RunState, RunStatus, TaskRun,
};

tessera_plugin_sdk::no_std_runtime!();

struct PretendEngine;

tessera_plugin_sdk::export_engine_adapter!(PretendEngine);

/// The task names of a definition, or what is wrong with it.
fn tasks(definition: &str) -> Result<Vec<&str>, PluginError> {
    let names: Vec<&str> = definition.split('>').map(str::trim).collect();
    match names.iter().position(|n| n.is_empty()) {
        Some(i) => Err(PluginError::InvalidInput(format!(
            "task {} of `{definition}` has no name (write `a>b>c`)",
            i + 1
        ))),
        None => Ok(names),
    }
}

/// The definition a run id carries.
fn definition_of(external_id: &str) -> Result<&str, PluginError> {
    let prefix = config::get_or("prefix", "run:");
    external_id
        .strip_prefix(prefix.as_str())
        .ok_or_else(|| PluginError::NotFound(format!("no run {external_id}")))
}

impl EngineAdapter for PretendEngine {
    fn validate(definition: String) -> Result<(), PluginError> {
        tasks(&definition).map(drop)
    }

    fn submit(
        definition: String,
        _parameters: Vec<Pair>,
        _labels: Vec<Pair>,
    ) -> Result<String, PluginError> {
        let n = tasks(&definition)?.len();
        tessera_plugin_sdk::info!("submitted a run of {n} tasks");
        Ok(format!("{}{definition}", config::get_or("prefix", "run:")))
    }

    fn status(external_id: String) -> Result<RunStatus, PluginError> {
        let names = tasks(definition_of(&external_id)?)?;
        let runs = names
            .iter()
            .enumerate()
            .map(|(i, name)| TaskRun {
                task_id: name.to_string(),
                external_id: format!("{external_id}/{name}"),
                state: match i {
                    0 => RunState::Succeeded,
                    1 => RunState::Running,
                    _ => RunState::Queued,
                },
                downstream: names
                    .get(i + 1)
                    .map(|n| n.to_string())
                    .into_iter()
                    .collect(),
                start_ms: (i < 2).then_some(1000 * i as u64),
                end_ms: (i == 0).then_some(1000),
            })
            .collect();
        Ok(RunStatus {
            state: if names.len() == 1 {
                RunState::Succeeded
            } else {
                RunState::Running
            },
            tasks: runs,
            message: None,
        })
    }

    fn cancel(external_id: String) -> Result<(), PluginError> {
        definition_of(&external_id).map(drop)
    }

    fn retry(external_id: String, task_ids: Vec<String>) -> Result<(), PluginError> {
        let names = tasks(definition_of(&external_id)?)?;
        match task_ids.iter().find(|t| !names.contains(&t.as_str())) {
            Some(t) => Err(PluginError::NotFound(format!(
                "no task {t} in {external_id}"
            ))),
            None => Ok(()),
        }
    }

    fn logs(external_id: String, task_id: String, offset: u64) -> Result<String, PluginError> {
        definition_of(&external_id)?;
        let log = format!("{task_id}: started\n{task_id}: done\n");
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
        Ok(log.get(from..).unwrap_or_default().to_string())
    }
}
