//! Helpers for the `routing` interface's labels and label sets.
//!
//! A routing request names every tag and group once, in `request.labels`; tasks
//! (`needs`) and targets (`holds`) refer to them by bit position in a
//! [`LabelSet`](crate::router::LabelSet) (`u64`). A target can take a task when it holds
//! every label the task needs ([`holds_all`]) and has the free capacity
//! ([`Target::can_take`]).

use alloc::string::String;
use core::fmt::{self, Write};

use crate::router::LabelSet;

/// Whether a target holding `holds` has every label of `needs`: `needs & !holds == 0`.
pub const fn holds_all(holds: LabelSet, needs: LabelSet) -> bool {
    needs & !holds == 0
}

/// The bit positions set in `set`, lowest first.
pub fn positions(set: LabelSet) -> impl Iterator<Item = usize> {
    let mut rest = set;
    core::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        Some(i)
    })
}

/// The labels of `labels` that are in `set`, in order. Bits with no label are skipped.
pub fn labels_in<L>(labels: &[L], set: LabelSet) -> impl Iterator<Item = &L> {
    positions(set).filter_map(|i| labels.get(i))
}

/// The labels of `set` for a person, in order, separated by `", "`: `tag gpu=a100, group
/// ops` (see [`Label`]'s `Display`). A bit with no label in `labels` is `label #i`; the
/// empty set is the empty string. For defer reasons:
///
/// ```ignore
/// Decision::Defer(format!("no target holds {}", label_names(&request.labels, missing)))
/// ```
pub fn label_names<L: fmt::Display>(labels: &[L], set: LabelSet) -> String {
    let mut s = String::new();
    for (n, i) in positions(set).enumerate() {
        if n > 0 {
            s.push_str(", ");
        }
        let _ = match labels.get(i) {
            Some(label) => write!(s, "{label}"),
            None => write!(s, "label #{i}"),
        };
    }
    s
}

/// The label, request and target helpers of one version's `routing` types (the module
/// `$m` has `Label`, `Request`, `Target` and `Task`).
macro_rules! label_helpers {
    ($m:path) => {
        const _: () = {
            use alloc::string::String;
            use core::fmt;
            use $crate::labels::{holds_all, label_names};
            use $m::{Label, LabelSet, Request, Target, Task};

            impl Label {
                /// A placement tag.
                pub fn tag(key: impl Into<String>, value: impl Into<String>) -> Self {
                    Label::Tag((key.into(), value.into()))
                }

                /// A group (`""` for tasks without one).
                pub fn group(name: impl Into<String>) -> Self {
                    Label::Group(name.into())
                }
            }

            /// `tag KEY=VALUE` or `group NAME` (`group ""` for the empty group).
            impl fmt::Display for Label {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    match self {
                        Label::Tag((k, v)) => write!(f, "tag {k}={v}"),
                        Label::Group(g) if g.is_empty() => f.write_str("group \"\""),
                        Label::Group(g) => write!(f, "group {g}"),
                    }
                }
            }

            impl Request {
                /// [`label_names`] over this request's labels.
                pub fn label_names(&self, set: LabelSet) -> String {
                    label_names(&self.labels, set)
                }
            }

            impl Target {
                /// Whether this target holds every label of `needs`.
                pub const fn holds_all(&self, needs: LabelSet) -> bool {
                    holds_all(self.holds, needs)
                }

                /// Whether this target can take `task` now: it holds every label the task
                /// needs and has a free slot, the cores and the memory the task asks for.
                pub const fn can_take(&self, task: &Task) -> bool {
                    self.holds_all(task.needs)
                        && self.free_slots > 0
                        && self.cpu_cores_free >= task.cpu_cores
                        && self.ram_bytes_free >= task.ram_bytes
                }

                /// Counts `task` against this target's free capacity (one slot, its cores
                /// and memory), so one call never gives a target more than it has.
                /// Saturates at zero.
                pub fn take(&mut self, task: &Task) {
                    self.free_slots = self.free_slots.saturating_sub(1);
                    self.cpu_cores_free = self.cpu_cores_free.saturating_sub(task.cpu_cores);
                    self.ram_bytes_free = self.ram_bytes_free.saturating_sub(task.ram_bytes);
                }
            }
        };
    };
}
label_helpers!(crate::router);
label_helpers!(crate::v0_2::router);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{Label, Target, Task};
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn positions_and_names() {
        assert_eq!(positions(0).count(), 0);
        assert_eq!(
            positions(0b1010_0001 | 1 << 63).collect::<Vec<_>>(),
            [0, 5, 7, 63]
        );
        let labels = vec![
            Label::tag("gpu", "a100"),
            Label::group("ops"),
            Label::group(""),
        ];
        assert_eq!(label_names(&labels, 0), "");
        assert_eq!(label_names(&labels, 0b001), "tag gpu=a100");
        assert_eq!(label_names(&labels, 0b011), "tag gpu=a100, group ops");
        assert_eq!(label_names(&labels, 0b100), "group \"\"");
        assert_eq!(label_names(&labels, 0b1010), "group ops, label #3");
        assert_eq!(labels_in(&labels, 0b1110).count(), 2);
    }

    #[test]
    fn eligibility() {
        let task = Task {
            needs: 0b11,
            priority: 0,
            cpu_cores: 2,
            ram_bytes: 1 << 30,
            queued_at_ms: 0,
        };
        let mut target = Target {
            holds: 0b111,
            free_slots: 1,
            cpu_cores_free: 2,
            ram_bytes_free: 1 << 30,
        };
        assert!(holds_all(0b111, 0b11) && !holds_all(0b101, 0b11));
        assert!(holds_all(0, 0));
        assert!(target.can_take(&task));
        assert!(
            !Target {
                holds: 0b01,
                ..target
            }
            .can_take(&task)
        );
        target.take(&task);
        assert_eq!(
            (
                target.free_slots,
                target.cpu_cores_free,
                target.ram_bytes_free
            ),
            (0, 0, 0)
        );
        assert!(!target.can_take(&task));
    }
}
