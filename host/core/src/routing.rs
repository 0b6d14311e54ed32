//! Routing as plain functions: turning queued tasks and targets into router requests
//! (the shape of `tessera:plugin/routing` in `wit/plugin.wit`), and checking a router's
//! decisions before the host acts on them.
//!
//! The router itself is a plugin; everything around it lives here so it can be tested
//! without a plugin, a store or an executor:
//! - [`plan_requests`] names every tag and group the tasks ask for once (at most
//!   [`MAX_LABELS`] per request, splitting the batch where needed) and computes which
//!   labels each target holds;
//! - [`check_decisions`] applies decisions in priority order against the targets' free
//!   capacity and their labels, so a wrong plugin can neither overfill a target nor send a
//!   task where its group or tags do not allow.

use std::cmp::Reverse;
use std::collections::BTreeMap;

/// A set of labels: bit `i` stands for `RouteRequest::labels[i]`.
pub type LabelSet = u64;
/// Labels one request can name (the bits of a [`LabelSet`]).
pub const MAX_LABELS: usize = 64;

/// Something a task needs and a target holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Label {
    /// A placement tag: key and value.
    Tag(String, String),
    /// A group (`""` for tasks without one).
    Group(String),
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Label::Tag(k, v) => write!(f, "tag {k}={v}"),
            Label::Group(g) if g.is_empty() => f.write_str("tasks without a group"),
            Label::Group(g) => write!(f, "group {g}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTask {
    pub needs: LabelSet,
    /// The position in the request's labels of the task's group label (also in `needs`).
    pub group: u32,
    pub priority: i32,
    pub cpu_cores: u32,
    pub ram_bytes: u64,
    pub queued_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteTarget {
    pub holds: LabelSet,
    pub free_slots: u32,
    pub cpu_cores_free: u32,
    pub ram_bytes_free: u64,
}

/// One call of a router: what `route` receives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteRequest {
    pub labels: Vec<Label>,
    pub tasks: Vec<RouteTask>,
    pub targets: Vec<RouteTarget>,
}

/// A router's answer for one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run it on `targets[i]`.
    Assign(u32),
    /// Leave it queued, for this reason.
    Defer(String),
}

/// A place tasks can run, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetSpec {
    pub name: String,
    /// Tags the target carries.
    pub tags: BTreeMap<String, String>,
    /// Groups that may use it; empty: every group.
    pub groups: Vec<String>,
}

/// What a target has free now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Free {
    pub slots: u32,
    pub cpu_cores: u32,
    pub ram_bytes: u64,
}

/// A queued task, as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Candidate {
    /// Placement tags (only the task's tags whose keys are routing keys).
    pub tags: Vec<(String, String)>,
    /// `""` when the task has no group.
    pub group: String,
    pub priority: i32,
    pub cpu_cores: u32,
    pub ram_bytes: u64,
    pub queued_at_ms: u64,
}

impl Candidate {
    fn labels(&self) -> impl Iterator<Item = Label> + '_ {
        self.tags
            .iter()
            .map(|(k, v)| Label::Tag(k.clone(), v.clone()))
            .chain(std::iter::once(Label::Group(self.group.clone())))
    }
}

/// A request and the candidates (by index) its tasks stand for, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub request: RouteRequest,
    pub candidates: Vec<usize>,
}

/// The requests for routing `candidates` (in the order given, which should be oldest
/// first) over `targets`. A request names at most [`MAX_LABELS`] labels; the batch is
/// split where the next task would need more. The second list holds candidates that
/// need more labels than one request can carry, each with a reason.
pub fn plan_requests(
    candidates: &[Candidate],
    targets: &[(TargetSpec, Free)],
) -> (Vec<Planned>, Vec<(usize, String)>) {
    let mut planned = Vec::new();
    let mut refused = Vec::new();
    let mut labels: Vec<Label> = Vec::new();
    let mut tasks: Vec<RouteTask> = Vec::new();
    let mut members: Vec<usize> = Vec::new();

    for (i, c) in candidates.iter().enumerate() {
        let own: Vec<Label> = c.labels().collect();
        if own.len() > MAX_LABELS {
            refused.push((
                i,
                format!(
                    "the task has {} placement tags; a router can match at most {}",
                    own.len() - 1,
                    MAX_LABELS - 1
                ),
            ));
            continue;
        }
        let new = own.iter().filter(|l| !labels.contains(l)).count();
        if labels.len() + new > MAX_LABELS {
            planned.push(finish(
                std::mem::take(&mut labels),
                std::mem::take(&mut tasks),
                std::mem::take(&mut members),
                targets,
            ));
        }
        let mut needs: LabelSet = 0;
        let mut group = 0;
        for l in own {
            let is_group = matches!(l, Label::Group(_));
            let bit = match labels.iter().position(|x| *x == l) {
                Some(b) => b,
                None => {
                    labels.push(l);
                    labels.len() - 1
                }
            };
            needs |= 1 << bit;
            if is_group {
                // Below MAX_LABELS (64), so it fits.
                group = bit as u32;
            }
        }
        tasks.push(RouteTask {
            needs,
            group,
            priority: c.priority,
            cpu_cores: c.cpu_cores,
            ram_bytes: c.ram_bytes,
            queued_at_ms: c.queued_at_ms,
        });
        members.push(i);
    }
    if !tasks.is_empty() {
        planned.push(finish(labels, tasks, members, targets));
    }
    (planned, refused)
}

fn finish(
    labels: Vec<Label>,
    tasks: Vec<RouteTask>,
    candidates: Vec<usize>,
    targets: &[(TargetSpec, Free)],
) -> Planned {
    let targets = targets
        .iter()
        .map(|(spec, free)| RouteTarget {
            holds: holds(spec, &labels),
            free_slots: free.slots,
            cpu_cores_free: free.cpu_cores,
            ram_bytes_free: free.ram_bytes,
        })
        .collect();
    Planned {
        request: RouteRequest {
            labels,
            tasks,
            targets,
        },
        candidates,
    }
}

/// Which of `labels` a target holds.
pub fn holds(spec: &TargetSpec, labels: &[Label]) -> LabelSet {
    labels
        .iter()
        .enumerate()
        .filter(|(_, l)| match l {
            Label::Tag(k, v) => spec.tags.get(k) == Some(v),
            Label::Group(g) => spec.groups.is_empty() || spec.groups.contains(g),
        })
        .fold(0, |set, (i, _)| set | (1 << i))
}

/// The labels of a set, in words ("tag gpu=a100, group ops").
pub fn describe(labels: &[Label], set: LabelSet) -> String {
    labels
        .iter()
        .enumerate()
        .filter(|(i, _)| set & (1 << i) != 0)
        .map(|(_, l)| l.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides where queued tasks run: the active router plugin, as the runner sees it.
pub trait Router: Send + Sync {
    /// Route one request of tasks that all belong to `group` (`""`: no group), with the
    /// router bound for that group (or the default one).
    fn route(&self, group: &str, request: &RouteRequest) -> Result<Vec<Decision>, RouteError>;
}

/// Why a router call failed: the router that failed and what happened, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    /// `name@version` of the router, or empty when none is active.
    pub router: String,
    pub message: String,
}

impl std::fmt::Display for RouteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.router.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "router {} failed: {}", self.router, self.message)
        }
    }
}

/// A router answered with a wrong number of decisions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the router returned {decisions} decisions for {tasks} tasks")]
pub struct DecisionCountError {
    pub decisions: usize,
    pub tasks: usize,
}

/// What the host does with one task of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Run it on `targets[i]`.
    Run(usize),
    /// Leave it queued with this reason.
    Wait(String),
}

/// Apply a router's decisions: in priority order (then oldest, then request order), an
/// assignment stands only if the target exists, holds every label the task needs and
/// still has the slot, cores and memory free; otherwise the task waits with a reason
/// that says so. A wrong number of decisions is an error of the router.
pub fn check_decisions(
    request: &RouteRequest,
    decisions: &[Decision],
) -> Result<Vec<Outcome>, DecisionCountError> {
    if decisions.len() != request.tasks.len() {
        return Err(DecisionCountError {
            decisions: decisions.len(),
            tasks: request.tasks.len(),
        });
    }
    let mut free: Vec<RouteTarget> = request.targets.clone();
    let mut order: Vec<usize> = (0..request.tasks.len()).collect();
    order.sort_by_key(|&i| {
        let t = &request.tasks[i];
        (Reverse(t.priority), t.queued_at_ms, i)
    });
    let mut outcomes = vec![Outcome::Wait(String::new()); decisions.len()];
    for i in order {
        let task = &request.tasks[i];
        outcomes[i] = match &decisions[i] {
            Decision::Defer(reason) => Outcome::Wait(if reason.trim().is_empty() {
                "the router deferred the task without a reason".into()
            } else {
                reason.clone()
            }),
            Decision::Assign(j) => {
                let j = *j as usize;
                match free.get_mut(j) {
                    None => Outcome::Wait(format!(
                        "the router chose target #{j}, but there are {} targets",
                        request.targets.len()
                    )),
                    Some(t) if task.needs & !t.holds != 0 => Outcome::Wait(format!(
                        "the router chose target #{j}, which does not hold {}",
                        describe(&request.labels, task.needs & !t.holds)
                    )),
                    Some(t)
                        if t.free_slots == 0
                            || t.cpu_cores_free < task.cpu_cores
                            || t.ram_bytes_free < task.ram_bytes =>
                    {
                        Outcome::Wait(format!(
                            "the router chose target #{j}, which has no room for it now"
                        ))
                    }
                    Some(t) => {
                        t.free_slots -= 1;
                        t.cpu_cores_free -= task.cpu_cores;
                        t.ram_bytes_free -= task.ram_bytes;
                        Outcome::Run(j)
                    }
                }
            }
        };
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(tags: &[(&str, &str)], group: &str) -> Candidate {
        Candidate {
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            group: group.into(),
            ..Candidate::default()
        }
    }

    fn target(
        name: &str,
        tags: &[(&str, &str)],
        groups: &[&str],
        slots: u32,
    ) -> (TargetSpec, Free) {
        (
            TargetSpec {
                name: name.into(),
                tags: tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
            Free {
                slots,
                cpu_cores: 8,
                ram_bytes: 1 << 34,
            },
        )
    }

    #[test]
    fn labels_are_named_once_and_targets_hold_what_they_carry() {
        let cands = [
            cand(&[("gpu", "a100")], "ml"),
            cand(&[("gpu", "a100")], ""),
            cand(&[], "ops"),
        ];
        let targets = [
            target("gpu", &[("gpu", "a100")], &["ml"], 1),
            target("any", &[], &[], 4),
        ];
        let (planned, refused) = plan_requests(&cands, &targets);
        assert!(refused.is_empty());
        assert_eq!(planned.len(), 1);
        let r = &planned[0].request;
        assert_eq!(
            r.labels,
            [
                Label::Tag("gpu".into(), "a100".into()),
                Label::Group("ml".into()),
                Label::Group("".into()),
                Label::Group("ops".into()),
            ]
        );
        assert_eq!(r.tasks[0].needs, 0b0011);
        assert_eq!(r.tasks[1].needs, 0b0101);
        assert_eq!(r.tasks[2].needs, 0b1000);
        // Each task names its group label by position.
        let groups: Vec<u32> = r.tasks.iter().map(|t| t.group).collect();
        assert_eq!(groups, [1, 2, 3]);
        // The gpu target holds its tag and only its group; the open target every group.
        assert_eq!(r.targets[0].holds, 0b0011);
        assert_eq!(r.targets[1].holds, 0b1110);
        assert_eq!(planned[0].candidates, [0, 1, 2]);
    }

    #[test]
    fn batches_split_at_the_label_limit_and_oversized_tasks_are_refused() {
        let many: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let a = Candidate {
            tags: many[..30].to_vec(),
            ..Candidate::default()
        };
        let b = Candidate {
            tags: many[10..40].to_vec(),
            ..Candidate::default()
        };
        let huge = Candidate {
            tags: (0..64).map(|i| (format!("h{i}"), "v".into())).collect(),
            ..Candidate::default()
        };
        let (planned, refused) = plan_requests(&[a.clone(), huge, b], &[target("t", &[], &[], 1)]);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, 1);
        // a: 30 tags + group = 31 labels; b adds 10 new tags = 41 <= 64: one request.
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].candidates, [0, 2]);
        let (planned, _) = plan_requests(
            &[
                a,
                Candidate {
                    tags: (0..40).map(|i| (format!("z{i}"), "v".into())).collect(),
                    ..Candidate::default()
                },
            ],
            &[],
        );
        assert_eq!(planned.len(), 2);
        assert!(planned.iter().all(|p| p.request.labels.len() <= MAX_LABELS));
    }

    fn req(tasks: Vec<RouteTask>, targets: Vec<RouteTarget>) -> RouteRequest {
        RouteRequest {
            labels: vec![Label::Group("ops".into())],
            tasks,
            targets,
        }
    }

    #[test]
    fn decisions_never_overfill_a_target_or_break_its_labels() {
        let t = |p| RouteTask {
            priority: p,
            needs: 1,
            ..RouteTask::default()
        };
        let room = RouteTarget {
            holds: 1,
            free_slots: 1,
            cpu_cores_free: 1,
            ram_bytes_free: 1,
        };
        let closed = RouteTarget { holds: 0, ..room };
        let r = req(vec![t(0), t(5), t(1)], vec![room, closed]);
        let out = check_decisions(
            &r,
            &[
                Decision::Assign(0),
                Decision::Assign(0),
                Decision::Assign(1),
            ],
        )
        .unwrap();
        // Priority 5 (the second task) gets the one slot; the first finds it taken.
        assert_eq!(out[1], Outcome::Run(0));
        assert!(matches!(&out[0], Outcome::Wait(w) if w.contains("no room")));
        assert!(matches!(&out[2], Outcome::Wait(w) if w.contains("does not hold group ops")));
        let out = check_decisions(
            &r,
            &[
                Decision::Assign(7),
                Decision::Defer(" ".into()),
                Decision::Defer("busy".into()),
            ],
        )
        .unwrap();
        assert!(matches!(&out[0], Outcome::Wait(w) if w.contains("2 targets")));
        assert!(matches!(&out[1], Outcome::Wait(w) if w.contains("without a reason")));
        assert_eq!(out[2], Outcome::Wait("busy".into()));
        assert!(check_decisions(&r, &[Decision::Assign(0)]).is_err());
    }
}
