//! The one internal task: what the store keeps and every API maps from.

use crate::state::State;
use crate::tes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A stored task. `spec` is the submitted TES document as validated and normalised
/// (no id, state, logs or creation_time); `logs` holds one entry per attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: String,
    /// Store-assigned, strictly increasing with creation; the keyset for paging.
    pub seq: i64,
    pub state: State,
    /// Why the task is not moving, or why it ended where it did. Never empty for a
    /// non-terminal task that is waiting on something.
    pub reason: Option<String>,
    /// The group it belongs to (see [`crate::identity`]); `""` for tasks from before
    /// groups, and until identity is served.
    #[serde(default)]
    pub group: String,
    /// Which API made it.
    #[serde(default)]
    pub origin: Origin,
    /// Higher runs first; FIFO among equals. TES tasks have 0.
    #[serde(default)]
    pub priority: i32,
    pub spec: tes::Task,
    /// What the task needs beyond TES (secret references, keep-alive).
    #[serde(default)]
    pub extra: TaskExtra,
    pub logs: Vec<tes::TaskLog>,
    /// Shown as RFC 3339 at the edges (TES `creation_time`).
    #[serde(with = "time::serde::rfc3339")]
    pub creation_time: OffsetDateTime,
}

impl TaskRecord {
    pub fn name(&self) -> Option<&str> {
        self.spec.name.as_deref()
    }

    pub fn executors(&self) -> &[tes::Executor] {
        self.spec.executors.as_deref().unwrap_or(&[])
    }

    pub fn inputs(&self) -> &[tes::Input] {
        self.spec.inputs.as_deref().unwrap_or(&[])
    }

    pub fn outputs(&self) -> &[tes::Output] {
        self.spec.outputs.as_deref().unwrap_or(&[])
    }

    pub fn volumes(&self) -> &[String] {
        self.spec.volumes.as_deref().unwrap_or(&[])
    }
}

/// A task submitted for creation, ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: String,
    /// The group it will belong to.
    pub group: String,
    pub origin: Origin,
    pub priority: i32,
    pub spec: tes::Task,
    pub extra: TaskExtra,
    /// What makes it a run (stored with it, in the same transaction).
    pub run: Option<RunLink>,
    pub creation_time: OffsetDateTime,
    /// Initial reason shown while QUEUED.
    pub reason: Option<String>,
    /// Initial log entry, e.g. warnings from validation about ignored parameters.
    pub logs: Vec<tes::TaskLog>,
}

/// A secret entry given to a task's executors as an environment variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEnv {
    pub name: String,
    pub secret: String,
    pub key: String,
}

/// A secret entry placed as a file (read-only for the task's user, `mode` 0400 or 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFile {
    pub path: String,
    pub secret: String,
    pub key: String,
    pub mode: u32,
}

/// The part of a task that is not TES: references the runner resolves when it starts
/// the task (never secret values), and how long to keep the container afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskExtra {
    /// The agent it runs as (Task API tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<SecretEnv>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<SecretFile>,
    /// Human in the loop: keep the container this long after the command ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive_secs: Option<u64>,
}

impl TaskExtra {
    pub fn is_empty(&self) -> bool {
        *self == TaskExtra::default()
    }
}

/// The run part of a new task: the operation version it runs and the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLink {
    pub operation_id: String,
    pub version: i64,
    /// The run request (JSON).
    pub request: String,
    pub rerun_of: Option<String>,
    pub response_url: Option<String>,
}

/// The API a task came in through. Every origin is the same task underneath; this only
/// says which API shows it in its own words (a run, a cron child, a TES task).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// GA4GH TES.
    #[default]
    Tes,
    /// The Task API's contextual tasks (`/v1/tasks`).
    Task,
    /// A run of an operation (`/v1/operations/{id}/runs`).
    Run,
    /// A child of a cron task.
    Cron,
    /// A task run of a workflow run.
    Workflow,
}

impl Origin {
    pub const ALL: [Origin; 5] = [
        Origin::Tes,
        Origin::Task,
        Origin::Run,
        Origin::Cron,
        Origin::Workflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Tes => "tes",
            Origin::Task => "task",
            Origin::Run => "run",
            Origin::Cron => "cron",
            Origin::Workflow => "workflow",
        }
    }
}

impl std::str::FromStr for Origin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Origin::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!("unknown origin {s:?}; expected one of tes, task, run, cron, workflow")
            })
    }
}

/// One state change, as stored for the event stream and audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TaskEvent))]
pub struct Event {
    pub seq: i64,
    pub task_id: String,
    /// RFC 3339 in JSON.
    #[serde(with = "time::serde::rfc3339")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: OffsetDateTime,
    pub from_state: Option<State>,
    pub to_state: State,
    pub reason: Option<String>,
}
