//! The states of a workflow run and of a task run, as Kaapana's Workflow API names them,
//! and how the one task model's state reads as a task-run state.

use serde::{Deserialize, Serialize};
use tessera_core::State as TaskState;

/// Where a workflow run stands: Created → Pending → Scheduled → Running → Completed |
/// Error | Canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WorkflowRunState))]
pub enum RunState {
    /// Accepted; nothing looked at yet.
    Created,
    /// Waiting: no task run submitted yet (or all of them waiting to be retried).
    Pending,
    /// Task runs are submitted, none running yet.
    Scheduled,
    Running,
    Completed,
    Error,
    Canceled,
}

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Completed | RunState::Error | RunState::Canceled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Created => "Created",
            RunState::Pending => "Pending",
            RunState::Scheduled => "Scheduled",
            RunState::Running => "Running",
            RunState::Completed => "Completed",
            RunState::Error => "Error",
            RunState::Canceled => "Canceled",
        }
    }
}

impl std::str::FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_RUN_STATES
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a workflow run state: {}",
                    ALL_RUN_STATES.map(RunState::as_str).join(", ")
                )
            })
    }
}

const ALL_RUN_STATES: [RunState; 7] = [
    RunState::Created,
    RunState::Pending,
    RunState::Scheduled,
    RunState::Running,
    RunState::Completed,
    RunState::Error,
    RunState::Canceled,
];

/// Where one attempt of one task of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TaskRunState {
    /// Made; its upstream tasks have not all completed.
    Created,
    /// Ready to start (a retry: waiting for its backoff to pass).
    Pending,
    /// Submitted; waiting for capacity.
    Scheduled,
    Running,
    Completed,
    Error,
    /// Never ran: its run was canceled first.
    Skipped,
    /// Never ran: a task it depends on failed.
    UpstreamFailed,
}

impl TaskRunState {
    /// It will not change again (a retry makes a new attempt).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskRunState::Completed
                | TaskRunState::Error
                | TaskRunState::Skipped
                | TaskRunState::UpstreamFailed
        )
    }

    /// Submitted and not ended: it holds a task.
    pub fn is_active(self) -> bool {
        matches!(self, TaskRunState::Scheduled | TaskRunState::Running)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TaskRunState::Created => "Created",
            TaskRunState::Pending => "Pending",
            TaskRunState::Scheduled => "Scheduled",
            TaskRunState::Running => "Running",
            TaskRunState::Completed => "Completed",
            TaskRunState::Error => "Error",
            TaskRunState::Skipped => "Skipped",
            TaskRunState::UpstreamFailed => "UpstreamFailed",
        }
    }

    /// A submitted attempt's state, read from its task's.
    pub fn of_task(state: TaskState) -> TaskRunState {
        match state {
            TaskState::Queued | TaskState::Unknown => TaskRunState::Scheduled,
            TaskState::Initializing
            | TaskState::Running
            | TaskState::Paused
            | TaskState::Canceling => TaskRunState::Running,
            TaskState::Complete => TaskRunState::Completed,
            TaskState::ExecutorError | TaskState::SystemError | TaskState::Preempted => {
                TaskRunState::Error
            }
            // A task canceled from outside the run (or by the run's cancel) ran no
            // further than it got: the run's own cancel marks what never started.
            TaskState::Canceled => TaskRunState::Skipped,
        }
    }
}

impl std::str::FromStr for TaskRunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ALL_TASK_RUN_STATES
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a task-run state: {}",
                    ALL_TASK_RUN_STATES.map(TaskRunState::as_str).join(", ")
                )
            })
    }
}

const ALL_TASK_RUN_STATES: [TaskRunState; 8] = [
    TaskRunState::Created,
    TaskRunState::Pending,
    TaskRunState::Scheduled,
    TaskRunState::Running,
    TaskRunState::Completed,
    TaskRunState::Error,
    TaskRunState::Skipped,
    TaskRunState::UpstreamFailed,
];

/// What happens to a finished run's data (its task workspaces and outputs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CleanupPolicy {
    /// Keep it until someone cleans the run.
    #[default]
    Never,
    /// Clean it when the run completes (keep a failed run's data to look at).
    OnSuccess,
    /// Clean it when the run ends, however it ends.
    Always,
}

impl CleanupPolicy {
    /// Whether a run that ended in `state` is cleaned at once.
    pub fn cleans(self, state: RunState) -> bool {
        match self {
            CleanupPolicy::Never => false,
            CleanupPolicy::OnSuccess => state == RunState::Completed,
            CleanupPolicy::Always => state.is_terminal(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_any_case() {
        for s in ALL_RUN_STATES {
            assert_eq!(s.as_str().to_lowercase().parse::<RunState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in ALL_TASK_RUN_STATES {
            assert_eq!(s.as_str().to_uppercase().parse::<TaskRunState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!("Done".parse::<RunState>().is_err());
    }

    #[test]
    fn every_task_state_reads_as_a_task_run_state() {
        use TaskState::*;
        for (t, r) in [
            (Queued, TaskRunState::Scheduled),
            (Initializing, TaskRunState::Running),
            (Running, TaskRunState::Running),
            (Complete, TaskRunState::Completed),
            (ExecutorError, TaskRunState::Error),
            (SystemError, TaskRunState::Error),
            (Canceled, TaskRunState::Skipped),
        ] {
            assert_eq!(TaskRunState::of_task(t), r, "{t:?}");
        }
        // Terminal tasks read as terminal task runs, and only they.
        for t in [
            Unknown,
            Queued,
            Initializing,
            Running,
            Paused,
            Complete,
            ExecutorError,
            SystemError,
            Canceled,
            Preempted,
            Canceling,
        ] {
            assert_eq!(
                TaskRunState::of_task(t).is_terminal(),
                t.is_terminal(),
                "{t:?}"
            );
        }
    }

    #[test]
    fn the_cleanup_policy_decides_by_how_the_run_ended() {
        assert!(!CleanupPolicy::Never.cleans(RunState::Completed));
        assert!(CleanupPolicy::OnSuccess.cleans(RunState::Completed));
        assert!(!CleanupPolicy::OnSuccess.cleans(RunState::Error));
        assert!(CleanupPolicy::Always.cleans(RunState::Canceled));
        assert!(!CleanupPolicy::Always.cleans(RunState::Running));
    }
}
