//! The decisions of a task's life, as one plain function: from what is stored about a
//! task and what the executor reports about its processes to the next step. No I/O: the
//! driver (`drive.rs`) gathers the [`Facts`], asks [`next`], performs the [`Step`] and
//! records it, and asks again, whether it started the task or resumes it after a crash.
//!
//! The rules that make a restart safe:
//! - an executor's start is recorded (its log entry) before its process is created, and
//!   its result is recorded before its process is removed;
//! - a process that exists is never created again, and one that has started is never
//!   started again: it is followed (running or ended), its result recorded, then removed;
//! - a cancel wins over everything else;
//! - past the task's maximum run time nothing is created or started again: a process
//!   that runs is followed (the driver kills it at the deadline) so its output is kept,
//!   then the task ends.

use tessera_core::State;

/// What the executor reports about an executor's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// There is no such process.
    Absent,
    /// Created, never started.
    Created,
    /// Started: running, or ended and waiting for its result to be read.
    Started,
}

/// What is known about one executor of the task's current attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorFacts {
    /// Its result, once recorded.
    pub exit_code: Option<i32>,
    pub ignore_error: bool,
    pub process: Observed,
}

/// What the driver knows when it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The state stored for the task.
    pub state: State,
    /// A cancel was asked for (CANCELING stored, or the driver's cancel signal).
    pub cancel: bool,
    /// The task's maximum run time has passed.
    pub overdue: bool,
    /// One entry per executor of the task, in order.
    pub executors: Vec<ExecutorFacts>,
}

/// The next thing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Kill and remove what runs, write CANCELED.
    Cancel,
    /// INITIALIZING: make the images available, stage the inputs, write RUNNING.
    StageIn,
    /// Record executor `i`'s start, then create its process.
    Create(usize),
    /// Start executor `i`'s created process.
    Start(usize),
    /// Follow executor `i`'s started process to its end (it may have ended already) and
    /// record its result.
    Follow(usize),
    /// Remove executor `i`'s process, whose result is recorded.
    Remove(usize),
    /// Every executor that was to run has its result (`failed`: the one that failed
    /// without `ignore_error`): stage the outputs and write the final state.
    Finish { failed: Option<usize> },
    /// The task ran past its maximum run time: remove what is left, write SYSTEM_ERROR.
    TimeOut,
    /// The task is terminal already: nothing to do.
    Done,
}

/// The next step for a task, from what is stored and observed.
pub fn next(facts: &Facts) -> Step {
    if facts.state.is_terminal() {
        return Step::Done;
    }
    if facts.cancel || facts.state == State::Canceling {
        return Step::Cancel;
    }
    if matches!(facts.state, State::Queued | State::Initializing) {
        return Step::StageIn;
    }
    if facts.overdue {
        // Keep the output of the executor that runs: follow it (killed at the
        // deadline) first.
        for (i, e) in facts.executors.iter().enumerate() {
            match e.exit_code {
                Some(code) if code != 0 && !e.ignore_error => break,
                Some(_) => continue,
                None if e.process == Observed::Started => return Step::Follow(i),
                None => break,
            }
        }
        return Step::TimeOut;
    }
    // A process whose result is recorded goes before anything else happens.
    if let Some(i) = facts
        .executors
        .iter()
        .position(|e| e.exit_code.is_some() && e.process != Observed::Absent)
    {
        return Step::Remove(i);
    }
    for (i, e) in facts.executors.iter().enumerate() {
        match e.exit_code {
            Some(code) if code != 0 && !e.ignore_error => return Step::Finish { failed: Some(i) },
            Some(_) => continue,
            None => {}
        }
        return match e.process {
            // Never created, or created and lost before it started (its start may be
            // recorded: a crash between recording and creating).
            Observed::Absent => Step::Create(i),
            Observed::Created => Step::Start(i),
            Observed::Started => Step::Follow(i),
        };
    }
    Step::Finish { failed: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> ExecutorFacts {
        ExecutorFacts {
            exit_code: None,
            ignore_error: false,
            process: Observed::Absent,
        }
    }

    fn done(code: i32) -> ExecutorFacts {
        ExecutorFacts {
            exit_code: Some(code),
            ignore_error: false,
            process: Observed::Absent,
        }
    }

    fn facts(state: State, executors: Vec<ExecutorFacts>) -> Facts {
        Facts {
            state,
            cancel: false,
            overdue: false,
            executors,
        }
    }

    /// Every point a server can stop at, and what the next server does there. A process
    /// that exists is never created again, and a started one is never started again.
    #[test]
    fn every_resume_point_has_one_next_step() {
        // Its start recorded (a log entry), its process as observed.
        let started = |process| ExecutorFacts {
            process,
            ..pending()
        };
        let rows: Vec<(&str, Facts, Step)> = vec![
            (
                "claimed, nothing staged",
                facts(State::Initializing, vec![pending()]),
                Step::StageIn,
            ),
            (
                "before create",
                facts(State::Running, vec![pending(), pending()]),
                Step::Create(0),
            ),
            (
                "start recorded, process never created",
                facts(State::Running, vec![started(Observed::Absent)]),
                Step::Create(0),
            ),
            (
                "after create, before start",
                facts(State::Running, vec![started(Observed::Created)]),
                Step::Start(0),
            ),
            (
                "while running (or exited, result not stored)",
                facts(State::Running, vec![started(Observed::Started)]),
                Step::Follow(0),
            ),
            (
                "result stored, process not removed",
                facts(
                    State::Running,
                    vec![
                        ExecutorFacts {
                            process: Observed::Started,
                            ..done(0)
                        },
                        pending(),
                    ],
                ),
                Step::Remove(0),
            ),
            (
                "first done and removed, second not created",
                facts(State::Running, vec![done(0), pending()]),
                Step::Create(1),
            ),
            (
                "every result stored (outputs not or half staged)",
                facts(State::Running, vec![done(0), done(0)]),
                Step::Finish { failed: None },
            ),
            (
                "a failure stops the rest",
                facts(State::Running, vec![done(2), pending()]),
                Step::Finish { failed: Some(0) },
            ),
            (
                "unless it is ignored",
                facts(
                    State::Running,
                    vec![
                        ExecutorFacts {
                            ignore_error: true,
                            ..done(2)
                        },
                        pending(),
                    ],
                ),
                Step::Create(1),
            ),
            (
                "already ended",
                facts(State::Complete, vec![done(0)]),
                Step::Done,
            ),
        ];
        for (what, f, want) in rows {
            assert_eq!(next(&f), want, "{what}");
            // A cancel arriving at any of these points wins (but a terminal state stays).
            let canceled = Facts {
                cancel: true,
                ..f.clone()
            };
            let want = if f.state.is_terminal() {
                Step::Done
            } else {
                Step::Cancel
            };
            assert_eq!(next(&canceled), want, "{what}, then a cancel");
            let canceling = Facts {
                state: State::Canceling,
                ..f.clone()
            };
            if !f.state.is_terminal() {
                assert_eq!(next(&canceling), Step::Cancel, "{what}, CANCELING stored");
            }
        }
    }

    /// Past the maximum run time: what runs is followed to its end (so its output is
    /// kept), nothing new is created or started, and then the task times out.
    #[test]
    fn past_the_deadline_nothing_starts() {
        let started = |process| ExecutorFacts {
            process,
            ..pending()
        };
        let overdue = |state, executors| Facts {
            overdue: true,
            ..facts(state, executors)
        };
        let rows: Vec<(&str, Facts, Step)> = vec![
            (
                "running",
                overdue(State::Running, vec![started(Observed::Started), pending()]),
                Step::Follow(0),
            ),
            (
                "before create",
                overdue(State::Running, vec![done(0), pending()]),
                Step::TimeOut,
            ),
            (
                "created, not started",
                overdue(State::Running, vec![started(Observed::Created)]),
                Step::TimeOut,
            ),
            (
                "result stored, process not removed",
                overdue(
                    State::Running,
                    vec![ExecutorFacts {
                        process: Observed::Started,
                        ..done(137)
                    }],
                ),
                Step::TimeOut,
            ),
            (
                "staging has not finished: it is not interrupted",
                overdue(State::Initializing, vec![pending()]),
                Step::StageIn,
            ),
            ("ended", overdue(State::Complete, vec![done(0)]), Step::Done),
        ];
        for (what, f, want) in rows {
            assert_eq!(next(&f), want, "{what}");
            let canceled = Facts {
                cancel: true,
                ..f.clone()
            };
            if !f.state.is_terminal() {
                assert_eq!(next(&canceled), Step::Cancel, "{what}, then a cancel");
            }
        }
    }

    proptest::proptest! {
        /// Whatever is stored and observed, a step never creates a process that exists
        /// or starts one that has started, and never touches an executor after one that
        /// failed without ignore_error.
        #[test]
        fn no_executor_runs_twice(
            raw in proptest::collection::vec((0u8..3, proptest::option::of(0i32..3), proptest::bool::ANY), 1..6),
            overdue in proptest::bool::ANY,
        ) {
            let executors: Vec<ExecutorFacts> = raw
                .iter()
                .map(|(p, code, ignore)| ExecutorFacts {
                    exit_code: *code,
                    ignore_error: *ignore,
                    process: [Observed::Absent, Observed::Created, Observed::Started][*p as usize],
                })
                .collect();
            let f = Facts { overdue, ..facts(State::Running, executors.clone()) };
            if overdue {
                proptest::prop_assert!(!matches!(next(&f), Step::Create(_) | Step::Start(_)));
            }
            match next(&f) {
                Step::Create(i) => proptest::prop_assert_eq!(executors[i].process, Observed::Absent),
                Step::Start(i) => proptest::prop_assert_eq!(executors[i].process, Observed::Created),
                Step::Follow(i) => {
                    proptest::prop_assert_eq!(executors[i].process, Observed::Started);
                    proptest::prop_assert!(executors[i].exit_code.is_none());
                }
                Step::Remove(i) => proptest::prop_assert!(executors[i].exit_code.is_some()),
                _ => {}
            }
            if let Step::Create(i) | Step::Start(i) | Step::Follow(i) = next(&f) {
                for e in &executors[..i] {
                    let code = e.exit_code.unwrap_or(0);
                    proptest::prop_assert!(e.exit_code.is_some() && (code == 0 || e.ignore_error));
                }
            }
        }
    }
}
