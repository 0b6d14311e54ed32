//! The native engine's scheduler: what to do next for one run, as a pure function of
//! the run's task runs (the latest attempt of each task, its state read from its task),
//! the limits and the time. The caller applies the actions (submits tasks, writes
//! states) under a compare-and-set on the run, so that several servers planning the
//! same run apply one plan; a task run's task id is derived from the run, the task and
//! the attempt, so a plan applied twice still starts each attempt once.

use std::collections::{BTreeMap, BTreeSet};

use crate::dag::Dag;
use crate::native::Retries;
use crate::state::{RunState, TaskRunState};

/// The latest attempt of one task, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub task: String,
    /// 1 for the first.
    pub attempt: u32,
    pub state: TaskRunState,
    /// A retry waits until then.
    pub not_before_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    /// Its task exists (a Scheduled attempt without one was never submitted, or its
    /// submission was lost).
    pub has_task: bool,
}

/// What the scheduler knows of a run.
pub struct Input<'a> {
    pub dag: &'a Dag,
    /// The latest attempt of every task of the graph.
    pub attempts: &'a [Attempt],
    /// Each task's retries (`None`: it is not retried).
    pub retries: &'a dyn Fn(&str) -> Option<Retries>,
    /// The run was asked to stop.
    pub canceling: bool,
    /// At most this many of the run's task runs hold a task at once.
    pub max_active: Option<u32>,
    /// At most this many more may start for the workflow's other limits (the
    /// per-workflow limit less what its runs hold now).
    pub room: Option<u32>,
    pub now_ms: i64,
}

/// One thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Submit the attempt's task; it is Scheduled from then on.
    Start { task: String, attempt: u32 },
    /// Make attempt `attempt` (Pending), to start no earlier than `not_before_ms`.
    Retry {
        task: String,
        attempt: u32,
        not_before_ms: i64,
    },
    /// Set a state the scheduler decides: Pending (ready, waiting for room),
    /// UpstreamFailed or Skipped.
    Mark {
        task: String,
        attempt: u32,
        state: TaskRunState,
    },
    /// Cancel the attempt's task (the run is canceling).
    Cancel { task: String, attempt: u32 },
}

/// The scheduler's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The run's state once the actions are applied.
    pub state: RunState,
    /// The earliest time something waits for (a retry's backoff), if any.
    pub wake_at_ms: Option<i64>,
}

/// How a task stands for the tasks downstream of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    Failed,
    Open,
}

/// The plan for a run.
pub fn plan(input: &Input) -> Plan {
    let latest: BTreeMap<&str, &Attempt> = input
        .attempts
        .iter()
        .map(|a| (a.task.as_str(), a))
        .collect();
    let mut actions = Vec::new();
    // States once the actions are applied.
    let mut after: BTreeMap<&str, TaskRunState> = BTreeMap::new();
    let mut wake: Option<i64> = None;
    let mut soonest = |t: i64| wake = Some(wake.map_or(t, |w: i64| w.min(t)));

    if input.canceling {
        for t in &input.dag.tasks {
            let Some(a) = latest.get(t.title.as_str()) else {
                continue;
            };
            let state = match a.state {
                TaskRunState::Created | TaskRunState::Pending => {
                    actions.push(Action::Mark {
                        task: a.task.clone(),
                        attempt: a.attempt,
                        state: TaskRunState::Skipped,
                    });
                    TaskRunState::Skipped
                }
                // Never submitted: nothing to stop.
                s if s.is_active() && !a.has_task => {
                    actions.push(Action::Mark {
                        task: a.task.clone(),
                        attempt: a.attempt,
                        state: TaskRunState::Skipped,
                    });
                    TaskRunState::Skipped
                }
                s if s.is_active() => {
                    actions.push(Action::Cancel {
                        task: a.task.clone(),
                        attempt: a.attempt,
                    });
                    s
                }
                s => s,
            };
            after.insert(&t.title, state);
        }
        let state = if after.values().all(|s| s.is_terminal()) {
            RunState::Canceled
        } else {
            RunState::Running
        };
        return Plan {
            actions,
            state,
            wake_at_ms: None,
        };
    }

    let active_now = latest.values().filter(|a| a.state.is_active()).count() as u32;
    let mut room = match (input.max_active, input.room) {
        (Some(m), Some(r)) => Some(m.saturating_sub(active_now).min(r)),
        (Some(m), None) => Some(m.saturating_sub(active_now)),
        (None, r) => r,
    };
    let mut outcome: BTreeMap<&str, Outcome> = BTreeMap::new();
    // Topological order: every upstream task's outcome is known before its dependents.
    for t in &input.dag.tasks {
        let Some(a) = latest.get(t.title.as_str()) else {
            // Not made yet: nothing to do, and nothing downstream can start.
            outcome.insert(&t.title, Outcome::Open);
            continue;
        };
        let upstream: Vec<Outcome> = t
            .upstream
            .iter()
            .map(|u| outcome.get(u.as_str()).copied().unwrap_or(Outcome::Open))
            .collect();
        let (state, out) = match a.state {
            TaskRunState::Completed => (a.state, Outcome::Done),
            TaskRunState::Skipped | TaskRunState::UpstreamFailed => (a.state, Outcome::Failed),
            TaskRunState::Error => match (input.retries)(&a.task) {
                Some(r) if a.attempt <= r.count => {
                    let next = a.attempt + 1;
                    let at = a
                        .ended_ms
                        .unwrap_or(input.now_ms)
                        .saturating_add(r.backoff_ms(next));
                    actions.push(Action::Retry {
                        task: a.task.clone(),
                        attempt: next,
                        not_before_ms: at,
                    });
                    soonest(at);
                    (TaskRunState::Pending, Outcome::Open)
                }
                _ => (a.state, Outcome::Failed),
            },
            TaskRunState::Scheduled | TaskRunState::Running => (a.state, Outcome::Open),
            TaskRunState::Created | TaskRunState::Pending => {
                if upstream.contains(&Outcome::Failed) {
                    actions.push(Action::Mark {
                        task: a.task.clone(),
                        attempt: a.attempt,
                        state: TaskRunState::UpstreamFailed,
                    });
                    (TaskRunState::UpstreamFailed, Outcome::Failed)
                } else if upstream.iter().all(|o| *o == Outcome::Done) {
                    let waiting = a.not_before_ms.filter(|t| *t > input.now_ms);
                    if let Some(t) = waiting {
                        soonest(t);
                        (a.state, Outcome::Open)
                    } else if room != Some(0) {
                        room = room.map(|r| r - 1);
                        actions.push(Action::Start {
                            task: a.task.clone(),
                            attempt: a.attempt,
                        });
                        (TaskRunState::Scheduled, Outcome::Open)
                    } else if a.state == TaskRunState::Created {
                        actions.push(Action::Mark {
                            task: a.task.clone(),
                            attempt: a.attempt,
                            state: TaskRunState::Pending,
                        });
                        (TaskRunState::Pending, Outcome::Open)
                    } else {
                        (a.state, Outcome::Open)
                    }
                } else {
                    (a.state, Outcome::Open)
                }
            }
        };
        after.insert(&t.title, state);
        outcome.insert(&t.title, out);
    }
    let all_made = input
        .dag
        .tasks
        .iter()
        .all(|t| after.contains_key(t.title.as_str()));
    let state = if all_made && after.values().all(|s| s.is_terminal()) {
        if after.values().all(|s| *s == TaskRunState::Completed) {
            RunState::Completed
        } else {
            RunState::Error
        }
    } else if after.values().any(|s| {
        // Once a task has run, the run is running until it ends (also between waves,
        // and while a retry waits).
        matches!(s, TaskRunState::Running) || s.is_terminal()
    }) {
        RunState::Running
    } else if after.values().any(|s| *s == TaskRunState::Scheduled) {
        RunState::Scheduled
    } else {
        RunState::Pending
    };
    Plan {
        actions,
        state,
        wake_at_ms: wake,
    }
}

/// The tasks a retry of a finished run makes new attempts of: without a selection, every
/// task whose latest attempt failed, was skipped or upstream-failed; with one, the
/// chosen tasks, and with `downstream` everything downstream of them too. Topological
/// order. Unknown titles are named.
pub fn retry_set(
    dag: &Dag,
    attempts: &[Attempt],
    selection: Option<&BTreeSet<String>>,
    downstream: bool,
) -> Result<Vec<String>, Vec<String>> {
    match selection {
        None => Ok(dag
            .tasks
            .iter()
            .filter(|t| {
                attempts.iter().any(|a| {
                    a.task == t.title
                        && matches!(
                            a.state,
                            TaskRunState::Error
                                | TaskRunState::Skipped
                                | TaskRunState::UpstreamFailed
                        )
                })
            })
            .map(|t| t.title.clone())
            .collect()),
        Some(chosen) => {
            let unknown: Vec<String> = chosen
                .iter()
                .filter(|c| dag.task(c).is_none())
                .cloned()
                .collect();
            if !unknown.is_empty() {
                return Err(unknown);
            }
            Ok(if downstream {
                dag.with_downstream(chosen)
            } else {
                dag.tasks
                    .iter()
                    .filter(|t| chosen.contains(&t.title))
                    .map(|t| t.title.clone())
                    .collect()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TaskRunState::*;

    fn dag(edges: &[(&str, &[&str])]) -> Dag {
        let spec: Vec<(String, Vec<String>)> = edges
            .iter()
            .map(|(t, ups)| (t.to_string(), ups.iter().map(|u| u.to_string()).collect()))
            .collect();
        Dag::new(&spec).unwrap()
    }

    fn at(task: &str, attempt: u32, state: TaskRunState) -> Attempt {
        Attempt {
            task: task.into(),
            attempt,
            state,
            not_before_ms: None,
            ended_ms: Some(1_000),
            has_task: true,
        }
    }

    fn no_retries(_: &str) -> Option<Retries> {
        None
    }

    fn run(d: &Dag, attempts: &[Attempt]) -> Plan {
        plan(&Input {
            dag: d,
            attempts,
            retries: &no_retries,
            canceling: false,
            max_active: None,
            room: None,
            now_ms: 2_000,
        })
    }

    fn starts(p: &Plan) -> Vec<&str> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { task, .. } => Some(task.as_str()),
                _ => None,
            })
            .collect()
    }

    fn diamond() -> Dag {
        dag(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])])
    }

    #[test]
    fn a_diamond_runs_in_waves_and_completes() {
        let d = diamond();
        let p = run(
            &d,
            &[
                at("a", 1, Created),
                at("b", 1, Created),
                at("c", 1, Created),
                at("d", 1, Created),
            ],
        );
        assert_eq!(starts(&p), ["a"]);
        assert_eq!(p.state, RunState::Scheduled);
        let p = run(
            &d,
            &[
                at("a", 1, Completed),
                at("b", 1, Created),
                at("c", 1, Created),
                at("d", 1, Created),
            ],
        );
        assert_eq!(starts(&p), ["b", "c"]);
        let p = run(
            &d,
            &[
                at("a", 1, Completed),
                at("b", 1, Completed),
                at("c", 1, Running),
                at("d", 1, Created),
            ],
        );
        assert!(starts(&p).is_empty());
        assert_eq!(p.state, RunState::Running);
        let p = run(
            &d,
            &[
                at("a", 1, Completed),
                at("b", 1, Completed),
                at("c", 1, Completed),
                at("d", 1, Created),
            ],
        );
        assert_eq!(starts(&p), ["d"]);
        let p = run(
            &d,
            &[
                at("a", 1, Completed),
                at("b", 1, Completed),
                at("c", 1, Completed),
                at("d", 1, Completed),
            ],
        );
        assert!(p.actions.is_empty());
        assert_eq!(p.state, RunState::Completed);
    }

    #[test]
    fn a_failure_marks_its_dependents_and_the_run_errs_when_nothing_else_can_run() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("side", &[])]);
        let p = run(
            &d,
            &[
                at("a", 1, Error),
                at("b", 1, Created),
                at("c", 1, Created),
                at("side", 1, Running),
            ],
        );
        assert_eq!(
            p.actions,
            [
                Action::Mark {
                    task: "b".into(),
                    attempt: 1,
                    state: UpstreamFailed
                },
                Action::Mark {
                    task: "c".into(),
                    attempt: 1,
                    state: UpstreamFailed
                },
            ]
        );
        // The independent branch still runs.
        assert_eq!(p.state, RunState::Running);
        let p = run(
            &d,
            &[
                at("a", 1, Error),
                at("b", 1, UpstreamFailed),
                at("c", 1, UpstreamFailed),
                at("side", 1, Completed),
            ],
        );
        assert_eq!(p.state, RunState::Error);
    }

    #[test]
    fn a_failed_attempt_is_retried_after_its_backoff() {
        let d = dag(&[("a", &[]), ("b", &["a"])]);
        let retries = |t: &str| {
            (t == "a").then_some(Retries {
                count: 2,
                backoff_seconds: 1.0,
                backoff_factor: 2.0,
                max_backoff_seconds: 60.0,
            })
        };
        let input = |attempts: &[Attempt], now| {
            plan(&Input {
                dag: &d,
                attempts,
                retries: &retries,
                canceling: false,
                max_active: None,
                room: None,
                now_ms: now,
            })
        };
        let p = input(&[at("a", 1, Error), at("b", 1, Created)], 2_000);
        assert_eq!(
            p.actions,
            [Action::Retry {
                task: "a".into(),
                attempt: 2,
                not_before_ms: 2_000
            }]
        );
        assert_eq!(p.state, RunState::Pending);
        // The second retry waits twice as long; before then nothing starts.
        let waiting = Attempt {
            not_before_ms: Some(5_000),
            ..at("a", 3, Pending)
        };
        let p = input(&[waiting.clone(), at("b", 1, Created)], 4_000);
        assert!(p.actions.is_empty());
        assert_eq!(p.wake_at_ms, Some(5_000));
        let p = input(&[waiting, at("b", 1, Created)], 5_000);
        assert_eq!(starts(&p), ["a"]);
        // Out of retries: the failure stands.
        let p = input(&[at("a", 3, Error), at("b", 1, Created)], 9_000);
        assert_eq!(
            p.actions,
            [Action::Mark {
                task: "b".into(),
                attempt: 1,
                state: UpstreamFailed
            }]
        );
        assert_eq!(p.state, RunState::Error);
    }

    #[test]
    fn limits_hold_back_ready_tasks_as_pending() {
        let wide: Vec<(String, Vec<String>)> =
            (0..10).map(|i| (format!("t{i}"), Vec::new())).collect();
        let d = Dag::new(&wide).unwrap();
        let mut attempts: Vec<Attempt> =
            (0..10).map(|i| at(&format!("t{i}"), 1, Created)).collect();
        attempts[0].state = Running;
        let p = plan(&Input {
            dag: &d,
            attempts: &attempts,
            retries: &no_retries,
            canceling: false,
            max_active: Some(3),
            room: Some(5),
            now_ms: 0,
        });
        assert_eq!(starts(&p), ["t1", "t2"]);
        let pending = p
            .actions
            .iter()
            .filter(|a| matches!(a, Action::Mark { state: Pending, .. }))
            .count();
        assert_eq!(pending, 7);
        let p = plan(&Input {
            dag: &d,
            attempts: &attempts,
            retries: &no_retries,
            canceling: false,
            max_active: None,
            room: Some(1),
            now_ms: 0,
        });
        assert_eq!(starts(&p), ["t1"]);
    }

    #[test]
    fn cancel_stops_what_runs_and_skips_what_has_not_started() {
        let d = dag(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["b", "c"]),
            ("e", &[]),
        ]);
        let never_submitted = Attempt {
            has_task: false,
            ..at("e", 1, Scheduled)
        };
        let attempts = [
            at("a", 1, Completed),
            at("b", 1, Running),
            at("c", 1, Scheduled),
            at("d", 1, Created),
            never_submitted,
        ];
        let p = plan(&Input {
            dag: &d,
            attempts: &attempts,
            retries: &no_retries,
            canceling: true,
            max_active: None,
            room: None,
            now_ms: 0,
        });
        assert_eq!(
            p.actions,
            [
                Action::Cancel {
                    task: "b".into(),
                    attempt: 1
                },
                Action::Cancel {
                    task: "c".into(),
                    attempt: 1
                },
                Action::Mark {
                    task: "d".into(),
                    attempt: 1,
                    state: Skipped
                },
                Action::Mark {
                    task: "e".into(),
                    attempt: 1,
                    state: Skipped
                },
            ]
        );
        assert_eq!(p.state, RunState::Running);
        let ended = [
            at("a", 1, Completed),
            at("b", 1, Skipped),
            at("c", 1, Skipped),
            at("d", 1, Skipped),
            at("e", 1, Skipped),
        ];
        let p = plan(&Input {
            dag: &d,
            attempts: &ended,
            retries: &no_retries,
            canceling: true,
            max_active: None,
            room: None,
            now_ms: 0,
        });
        assert_eq!((p.actions.len(), p.state), (0, RunState::Canceled));
    }

    #[test]
    fn retry_picks_the_failed_or_the_chosen_with_their_downstream() {
        let d = dag(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("x", &[])]);
        let attempts = [
            at("a", 1, Completed),
            at("b", 1, Error),
            at("c", 1, UpstreamFailed),
            at("x", 1, Completed),
        ];
        assert_eq!(retry_set(&d, &attempts, None, false).unwrap(), ["b", "c"]);
        let a: BTreeSet<String> = ["a".to_string()].into();
        assert_eq!(retry_set(&d, &attempts, Some(&a), false).unwrap(), ["a"]);
        assert_eq!(
            retry_set(&d, &attempts, Some(&a), true).unwrap(),
            ["a", "b", "c"]
        );
        let ghost: BTreeSet<String> = ["ghost".to_string()].into();
        assert_eq!(
            retry_set(&d, &attempts, Some(&ghost), true).unwrap_err(),
            ["ghost"]
        );
    }
}
