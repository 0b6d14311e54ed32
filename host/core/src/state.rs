//! The TES task state and the rules every writer of it obeys.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TesState))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
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
}

impl State {
    pub const ALL: [State; 11] = [
        State::Unknown,
        State::Queued,
        State::Initializing,
        State::Running,
        State::Paused,
        State::Complete,
        State::ExecutorError,
        State::SystemError,
        State::Canceled,
        State::Preempted,
        State::Canceling,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "UNKNOWN",
            State::Queued => "QUEUED",
            State::Initializing => "INITIALIZING",
            State::Running => "RUNNING",
            State::Paused => "PAUSED",
            State::Complete => "COMPLETE",
            State::ExecutorError => "EXECUTOR_ERROR",
            State::SystemError => "SYSTEM_ERROR",
            State::Canceled => "CANCELED",
            State::Preempted => "PREEMPTED",
            State::Canceling => "CANCELING",
        }
    }

    /// Terminal states are written once and never left.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            State::Complete
                | State::ExecutorError
                | State::SystemError
                | State::Canceled
                | State::Preempted
        )
    }

    /// The states a task may be in for a move to `to` to be allowed. The store turns
    /// this into the condition of its `UPDATE … WHERE state IN (…)`, so that the first
    /// writer of a terminal state wins and a CANCELING task can only end CANCELED.
    pub fn allowed_sources(to: State) -> &'static [State] {
        use State::*;
        match to {
            Unknown | Queued => &[Initializing, Running, Paused],
            Initializing => &[Queued],
            Running => &[Initializing, Paused],
            Paused => &[Running],
            Canceling => &[Queued, Initializing, Running, Paused],
            Canceled => &[Queued, Initializing, Running, Paused, Canceling],
            Complete | ExecutorError | SystemError | Preempted => {
                &[Queued, Initializing, Running, Paused]
            }
        }
    }

    /// The phase the Task API shows (KubeTask's names): Queued (waiting, with a
    /// reason), Pending (being set up), Running, Completed, Failed.
    pub fn phase(self) -> &'static str {
        match self {
            State::Queued | State::Unknown => "Queued",
            State::Initializing => "Pending",
            State::Running | State::Paused | State::Canceling => "Running",
            State::Complete => "Completed",
            State::ExecutorError | State::SystemError | State::Canceled | State::Preempted => {
                "Failed"
            }
        }
    }

    pub fn can_move(from: State, to: State) -> bool {
        State::allowed_sources(to).contains(&from)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no TES state's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown state {0:?}; expected one of UNKNOWN, QUEUED, INITIALIZING, RUNNING, PAUSED, COMPLETE, EXECUTOR_ERROR, SYSTEM_ERROR, CANCELED, PREEMPTED, CANCELING"
)]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_never_left() {
        for from in State::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in State::ALL {
                assert!(!State::can_move(from, to), "{from} -> {to} must be refused");
            }
        }
    }

    #[test]
    fn canceling_only_ends_canceled() {
        for to in State::ALL {
            assert_eq!(
                State::can_move(State::Canceling, to),
                to == State::Canceled,
                "{to}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>().unwrap(), s);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
        assert!("bogus".parse::<State>().is_err());
    }
}
