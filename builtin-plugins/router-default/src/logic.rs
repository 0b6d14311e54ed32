//! The routing decision, as plain Rust (no bindings): builds for wasm32 (`no_std` +
//! `alloc`) and natively, where the unit tests and the host's benchmark call it.
//!
//! The shapes mirror `tessera:plugin/routing`: every tag and group is named once in
//! `labels`, and tasks (`needs`) and targets (`holds`) refer to them by bit position in a
//! [`LabelSet`].
//!
//! Rules:
//! - Order: higher `priority` first, then older `queued_at_ms` first, then input order.
//!   Outcomes are returned in the input order all the same.
//! - A target is eligible for a task when it holds every label the task needs
//!   (`needs & !holds == 0`: its placement tags and its group) and has a free slot, at
//!   least the requested CPU cores and at least the requested memory free (0 when not
//!   requested).
//! - The task goes to the eligible target with the most free slots; on a tie, the first
//!   in the list. Its free slots, cores and memory go down by what the task asked for,
//!   so one call never gives a target more than it had free.
//! - A task no target can take is deferred with a reason that says what is missing,
//!   naming the labels (`no target holds tag gpu=a100`, `no target of group ops has a
//!   free slot`, `needs 8 CPU cores; at most 4 free on any target`).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cmp::Reverse;
use core::fmt::Write;

/// A set of labels: bit `i` set means `labels[i]` is in the set.
pub type LabelSet = u64;

/// Something a task can need and a target can hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    /// A placement tag: key and value.
    Tag(String, String),
    /// A group (`""` for tasks without one).
    Group(String),
}

/// What routing needs to know of a task.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Task {
    /// Labels the target must hold.
    pub needs: LabelSet,
    /// The position of the task's group label (also in `needs`). The policy does not
    /// look at it: placement follows `needs`.
    pub group: u32,
    /// Higher runs first.
    pub priority: i32,
    /// Requested CPU cores; 0 when not requested.
    pub cpu_cores: u32,
    /// Requested memory in bytes; 0 when not requested.
    pub ram_bytes: u64,
    /// When the task was queued, milliseconds since the Unix epoch: older runs first.
    pub queued_at_ms: u64,
}

/// What routing needs to know of a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Labels the target holds.
    pub holds: LabelSet,
    /// Task slots free now.
    pub free_slots: u32,
    /// CPU cores free now.
    pub cpu_cores_free: u32,
    /// Memory free now, in bytes.
    pub ram_bytes_free: u64,
}

impl Target {
    fn holds_all(&self, needs: LabelSet) -> bool {
        needs & !self.holds == 0
    }

    fn can_take(&self, task: &Task) -> bool {
        self.holds_all(task.needs)
            && self.free_slots > 0
            && self.cpu_cores_free >= task.cpu_cores
            && self.ram_bytes_free >= task.ram_bytes
    }
}

/// The decision for one task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Run it on the target at this index of the `targets` given.
    Assign(usize),
    /// Nothing fits now, for this reason.
    Defer(String),
}

/// Decide for each task where it runs. Returns one outcome per task, in the order of
/// `tasks`. `labels` is only read to word the reasons of deferred tasks.
pub fn route(labels: &[Label], tasks: &[Task], targets: &[Target]) -> Vec<Outcome> {
    // What is still free, counted down as tasks are assigned.
    let mut free: Vec<Target> = targets.to_vec();
    // `String::new()` does not allocate; every entry is overwritten below.
    let mut outcomes = vec![Outcome::Defer(String::new()); tasks.len()];

    let mut decide = |i: usize| {
        let task = &tasks[i];
        let mut best: Option<usize> = None;
        let mut best_slots = 0;
        for (j, f) in free.iter().enumerate() {
            // `>`: the first of equals stays.
            if f.free_slots > best_slots && f.can_take(task) {
                best = Some(j);
                best_slots = f.free_slots;
            }
        }
        outcomes[i] = match best {
            Some(j) => {
                let f = &mut free[j];
                f.free_slots -= 1;
                f.cpu_cores_free -= task.cpu_cores;
                f.ram_bytes_free -= task.ram_bytes;
                Outcome::Assign(j)
            }
            None => Outcome::Defer(why_not(task, labels, &free)),
        };
    };

    if tasks.len() == 1 {
        decide(0);
    } else {
        // Who goes first. The index in the key makes every key distinct, so the unstable
        // (allocation-free) sort is deterministic and keeps input order on ties.
        let mut order: Vec<u32> = (0..tasks.len() as u32).collect();
        order.sort_unstable_by_key(|&i| {
            let t = &tasks[i as usize];
            (Reverse(t.priority), t.queued_at_ms, i)
        });
        for i in order {
            decide(i as usize);
        }
    }
    outcomes
}

/// Why no target can take `task` now, given what is still free.
fn why_not(task: &Task, labels: &[Label], free: &[Target]) -> String {
    if free.is_empty() {
        return "no targets are available".into();
    }
    let needs = task.needs;

    // Labels no target holds at all.
    let held = free.iter().fold(0, |acc, t| acc | t.holds);
    let missing = needs & !held;
    if missing != 0 {
        return if missing.count_ones() == 1 {
            format!("no target holds {}", names(labels, missing))
        } else {
            format!("no target holds any of {}", names(labels, missing))
        };
    }
    if !free.iter().any(|t| t.holds_all(needs)) {
        return format!("no target holds all of {}", names(labels, needs));
    }

    // Targets that hold every label, but lack capacity.
    let which = qualifier(labels, needs);
    let mut with_slot = free
        .iter()
        .filter(|t| t.holds_all(needs) && t.free_slots > 0)
        .peekable();
    if with_slot.peek().is_none() {
        return format!("no target{which} has a free slot");
    }
    let (max_cores, max_ram) = with_slot.fold((0, 0), |(c, r), t| {
        (c.max(t.cpu_cores_free), r.max(t.ram_bytes_free))
    });
    let cores = task.cpu_cores;
    let ram = task.ram_bytes;
    match (cores > max_cores, ram > max_ram) {
        (true, true) => format!(
            "needs {} and {} of memory; at most {} and {} free on any target{which}",
            cpu_cores(cores),
            bytes_up(ram),
            cpu_cores(max_cores),
            bytes_down(max_ram)
        ),
        (true, false) => format!(
            "needs {}; at most {max_cores} free on any target{which}",
            cpu_cores(cores)
        ),
        (false, true) => format!(
            "needs {} of memory; at most {} free on any target{which}",
            bytes_up(ram),
            bytes_down(max_ram)
        ),
        // Some target has the cores and some the memory, but none both (with a slot).
        (false, false) => format!(
            "needs {} and {} of memory; no target{which} has both free",
            cpu_cores(cores),
            bytes_up(ram)
        ),
    }
}

/// `tag gpu=a100, group ops`: the labels of `set`, in order.
fn names(labels: &[Label], set: LabelSet) -> String {
    let mut s = String::new();
    for (n, i) in positions(set).enumerate() {
        if n > 0 {
            s.push_str(", ");
        }
        let _ = match labels.get(i) {
            Some(Label::Tag(k, v)) => write!(s, "tag {k}={v}"),
            Some(Label::Group(g)) => write!(s, "group {}", group_name(g)),
            None => write!(s, "label #{i}"),
        };
    }
    s
}

/// ` of group ops with tags gpu=a100, zone=eu`: the targets that hold `set`, as words to
/// put after "target" (empty for the empty set).
fn qualifier(labels: &[Label], set: LabelSet) -> String {
    let mut groups = Vec::new();
    let mut tags = Vec::new();
    for i in positions(set) {
        match labels.get(i) {
            Some(Label::Group(g)) => groups.push(String::from(group_name(g))),
            Some(Label::Tag(k, v)) => tags.push(format!("{k}={v}")),
            None => tags.push(format!("label #{i}")),
        }
    }
    let mut s = String::new();
    if !groups.is_empty() {
        let noun = if groups.len() == 1 { "group" } else { "groups" };
        let _ = write!(s, " of {noun} {}", groups.join(", "));
    }
    if !tags.is_empty() {
        let noun = if tags.len() == 1 { "tag" } else { "tags" };
        let _ = write!(s, " with {noun} {}", tags.join(", "));
    }
    s
}

fn group_name(g: &str) -> &str {
    if g.is_empty() { "\"\"" } else { g }
}

/// The bit positions set in `set`, lowest first.
fn positions(set: LabelSet) -> impl Iterator<Item = usize> {
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

fn cpu_cores(n: u32) -> String {
    if n == 1 {
        "1 CPU core".into()
    } else {
        format!("{n} CPU cores")
    }
}

/// An amount asked for: rounded up, so "needs 14.1 GiB" is never less than asked.
fn bytes_up(n: u64) -> String {
    bytes(n, true)
}

/// An amount free: rounded down, so "at most 13.9 GiB free" is never more than free.
fn bytes_down(n: u64) -> String {
    bytes(n, false)
}

/// `8 GiB`, `1.5 GiB`, `512 MiB`, `100 B`: one decimal at most; no floats.
fn bytes(n: u64, up: bool) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, unit) in UNITS {
        if n >= size {
            let scaled = u128::from(n) * 10;
            let size = u128::from(size);
            let tenths = if up {
                scaled.div_ceil(size)
            } else {
                scaled / size
            } as u64;
            return if tenths.is_multiple_of(10) {
                format!("{} {unit}", tenths / 10)
            } else {
                format!("{}.{} {unit}", tenths / 10, tenths % 10)
            };
        }
    }
    format!("{n} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const GIB: u64 = 1 << 30;

    // Labels of the tests, by bit.
    const GPU_A100: LabelSet = 1 << 0;
    const GPU_T4: LabelSet = 1 << 1;
    const ZONE_EU: LabelSet = 1 << 2;
    const DISK_SSD: LabelSet = 1 << 3;
    const GPU_H100: LabelSet = 1 << 4;
    const OPS: LabelSet = 1 << 5;
    const LAB: LabelSet = 1 << 6;
    const NO_GROUP: LabelSet = 1 << 7;
    const EVERY_GROUP: LabelSet = OPS | LAB | NO_GROUP;

    fn labels() -> Vec<Label> {
        let tag = |k: &str, v: &str| Label::Tag(k.to_string(), v.to_string());
        let group = |g: &str| Label::Group(g.to_string());
        vec![
            tag("gpu", "a100"),
            tag("gpu", "t4"),
            tag("zone", "eu"),
            tag("disk", "ssd"),
            tag("gpu", "h100"),
            group("ops"),
            group("lab"),
            group(""),
        ]
    }

    fn route(tasks: &[Task], targets: &[Target]) -> Vec<Outcome> {
        super::route(&labels(), tasks, targets)
    }

    fn task(priority: i32, queued_at_ms: u64) -> Task {
        Task {
            priority,
            queued_at_ms,
            ..Task::default()
        }
    }

    fn needs(needs: LabelSet) -> Task {
        Task {
            needs,
            ..Task::default()
        }
    }

    /// A target open to every group, with plenty of cores and memory.
    fn target(free_slots: u32) -> Target {
        Target {
            holds: EVERY_GROUP,
            free_slots,
            cpu_cores_free: 64,
            ram_bytes_free: 256 * GIB,
        }
    }

    fn holding(holds: LabelSet, free_slots: u32) -> Target {
        Target {
            holds,
            ..target(free_slots)
        }
    }

    fn defer(reason: &str) -> Outcome {
        Outcome::Defer(reason.to_string())
    }

    #[test]
    fn nothing_to_route() {
        assert!(route(&[], &[target(1)]).is_empty());
        assert!(route(&[], &[]).is_empty());
    }

    #[test]
    fn no_targets_at_all() {
        assert_eq!(
            route(&[task(0, 1)], &[]),
            [defer("no targets are available")]
        );
    }

    #[test]
    fn higher_priority_first_and_decisions_in_input_order() {
        // One slot: the newer task with the higher priority wins it.
        let tasks = [task(0, 1), task(5, 2)];
        assert_eq!(
            route(&tasks, &[target(1)]),
            [defer("no target has a free slot"), Outcome::Assign(0)]
        );
    }

    #[test]
    fn oldest_first_within_a_priority() {
        let tasks = [task(1, 300), task(1, 100), task(1, 200)];
        let out = route(&tasks, &[target(2)]);
        assert_eq!(
            out,
            [
                defer("no target has a free slot"),
                Outcome::Assign(0),
                Outcome::Assign(0)
            ]
        );
    }

    #[test]
    fn input_order_breaks_full_ties() {
        let tasks = [task(0, 7), task(0, 7), task(0, 7)];
        let out = route(&tasks, &[target(1)]);
        assert_eq!(out[0], Outcome::Assign(0));
        assert!(matches!(out[1], Outcome::Defer(_)));
        assert!(matches!(out[2], Outcome::Defer(_)));
    }

    #[test]
    fn negative_priorities_go_last() {
        let tasks = [task(-1, 1), task(0, 2)];
        let out = route(&tasks, &[target(1)]);
        assert!(matches!(out[0], Outcome::Defer(_)));
        assert_eq!(out[1], Outcome::Assign(0));
    }

    #[test]
    fn priority_beats_age() {
        let tasks = [
            task(0, 1),
            task(1, 1_000),
            task(i32::MIN, 0),
            task(i32::MAX, 5),
        ];
        let out = route(&tasks, &[target(2)]);
        assert_eq!(
            out,
            [
                defer("no target has a free slot"),
                Outcome::Assign(0),
                defer("no target has a free slot"),
                Outcome::Assign(0)
            ]
        );
    }

    #[test]
    fn most_free_slots_wins_ties_go_to_the_first() {
        let targets = [target(2), target(5), target(5)];
        assert_eq!(route(&[task(0, 1)], &targets), [Outcome::Assign(1)]);
        let targets = [target(3), target(3)];
        assert_eq!(route(&[task(0, 1)], &targets), [Outcome::Assign(0)]);
        // A full target is never chosen, even first.
        let targets = [target(0), target(1)];
        assert_eq!(route(&[task(0, 1)], &targets), [Outcome::Assign(1)]);
    }

    #[test]
    fn capacity_is_consumed_within_one_call() {
        // A has 2 slots, B 1: A (2>1), then A and B tie at 1 → A, then B, then nothing.
        let targets = [target(2), target(1)];
        let tasks = [task(0, 1), task(0, 2), task(0, 3), task(0, 4)];
        assert_eq!(
            route(&tasks, &targets),
            [
                Outcome::Assign(0),
                Outcome::Assign(0),
                Outcome::Assign(1),
                defer("no target has a free slot"),
            ]
        );
    }

    #[test]
    fn cores_and_memory_are_consumed_too() {
        let t = Target {
            free_slots: 10,
            cpu_cores_free: 8,
            ram_bytes_free: 16 * GIB,
            ..target(0)
        };
        let asks = |cores, ram| Task {
            cpu_cores: cores,
            ram_bytes: ram,
            ..Task::default()
        };
        let tasks = [
            asks(4, GIB),
            asks(4, GIB),
            asks(4, GIB),
            asks(0, 15 * GIB),
            asks(1, 14 * GIB + 1),
        ];
        assert_eq!(
            route(&tasks, &[t]),
            [
                Outcome::Assign(0),
                Outcome::Assign(0),
                defer("needs 4 CPU cores; at most 0 free on any target"),
                defer("needs 15 GiB of memory; at most 14 GiB free on any target"),
                defer(
                    "needs 1 CPU core and 14.1 GiB of memory; at most 0 CPU cores and 14 GiB free on any target"
                ),
            ]
        );
    }

    #[test]
    fn the_reason_looks_at_targets_with_a_free_slot() {
        let big_but_full = Target {
            cpu_cores_free: 64,
            ..target(0)
        };
        let small = Target {
            cpu_cores_free: 4,
            ram_bytes_free: GIB,
            ..target(3)
        };
        let roomy = Target {
            cpu_cores_free: 2,
            ram_bytes_free: 64 * GIB,
            ..target(1)
        };
        let t = Task {
            cpu_cores: 8,
            ..Task::default()
        };
        assert_eq!(
            route(&[t], &[big_but_full, small, roomy]),
            [defer("needs 8 CPU cores; at most 4 free on any target")]
        );
        // Cores on one, memory on another, both on none.
        let t = Task {
            cpu_cores: 4,
            ram_bytes: 3 * GIB / 2,
            ..Task::default()
        };
        assert_eq!(
            route(&[t], &[big_but_full, small, roomy]),
            [defer(
                "needs 4 CPU cores and 1.5 GiB of memory; no target has both free"
            )]
        );
    }

    #[test]
    fn absent_requests_count_as_zero() {
        let t = Target {
            free_slots: 1,
            cpu_cores_free: 0,
            ram_bytes_free: 0,
            holds: 0,
        };
        assert_eq!(route(&[task(0, 0)], &[t]), [Outcome::Assign(0)]);
    }

    #[test]
    fn a_target_must_hold_every_label() {
        let a100 = holding(GPU_A100 | ZONE_EU | EVERY_GROUP, 1);
        let t4 = holding(GPU_T4 | EVERY_GROUP, 9);
        let targets = [t4, a100];
        assert_eq!(route(&[needs(GPU_A100)], &targets), [Outcome::Assign(1)]);
        assert_eq!(
            route(&[needs(GPU_A100 | ZONE_EU)], &targets),
            [Outcome::Assign(1)]
        );
        // Tasks that need nothing go anywhere (here: most free slots).
        assert_eq!(route(&[needs(0)], &targets), [Outcome::Assign(0)]);
        assert_eq!(
            route(&[needs(GPU_H100)], &targets),
            [defer("no target holds tag gpu=h100")]
        );
        assert_eq!(
            route(&[needs(GPU_H100 | DISK_SSD | GPU_A100)], &targets),
            [defer("no target holds any of tag disk=ssd, tag gpu=h100")]
        );
        // Each label is held somewhere, but no one target holds both.
        assert_eq!(
            route(&[needs(GPU_T4 | ZONE_EU)], &targets),
            [defer("no target holds all of tag gpu=t4, tag zone=eu")]
        );
    }

    #[test]
    fn groups_are_labels_too() {
        let shared = target(1);
        let ops_only = holding(OPS, 5);
        let targets = [shared, ops_only];
        assert_eq!(route(&[needs(OPS)], &targets), [Outcome::Assign(1)]);
        assert_eq!(route(&[needs(LAB)], &targets), [Outcome::Assign(0)]);
        assert_eq!(route(&[needs(NO_GROUP)], &targets), [Outcome::Assign(0)]);

        assert_eq!(
            route(&[needs(LAB)], &[ops_only]),
            [defer("no target holds group lab")]
        );
        assert_eq!(
            route(&[needs(NO_GROUP)], &[ops_only]),
            [defer("no target holds group \"\"")]
        );

        let ops_gpu = holding(OPS | GPU_A100, 5);
        let lab_gpu = holding(LAB | GPU_A100, 5);
        assert_eq!(
            route(&[needs(LAB | GPU_A100)], &[ops_gpu, shared]),
            [defer("no target holds all of tag gpu=a100, group lab")]
        );
        assert_eq!(
            route(&[needs(LAB | GPU_A100)], &[ops_gpu, lab_gpu]),
            [Outcome::Assign(1)]
        );
    }

    #[test]
    fn the_reason_names_the_targets_that_hold_the_labels() {
        let full = holding(OPS, 0);
        assert_eq!(
            route(&[needs(OPS)], &[full, holding(LAB, 3)]),
            [defer("no target of group ops has a free slot")]
        );
        let full_gpu = holding(OPS | GPU_A100 | ZONE_EU, 0);
        assert_eq!(
            route(&[needs(OPS | GPU_A100 | ZONE_EU)], &[full_gpu]),
            [defer(
                "no target of group ops with tags gpu=a100, zone=eu has a free slot"
            )]
        );
        let small_gpu = Target {
            cpu_cores_free: 4,
            ram_bytes_free: GIB,
            ..holding(GPU_A100, 2)
        };
        let t = Task {
            needs: GPU_A100,
            cpu_cores: 8,
            ram_bytes: 3 * GIB / 2,
            ..Task::default()
        };
        assert_eq!(
            route(&[t], &[small_gpu, target(9)]),
            [defer(
                "needs 8 CPU cores and 1.5 GiB of memory; \
                 at most 4 CPU cores and 1 GiB free on any target with tag gpu=a100"
            )]
        );
        let t = Task { cpu_cores: 1, ..t };
        assert_eq!(
            route(&[t], &[small_gpu]),
            [defer(
                "needs 1.5 GiB of memory; at most 1 GiB free on any target with tag gpu=a100"
            )]
        );
    }

    #[test]
    fn labels_beyond_the_list_and_the_last_bit() {
        let top = 1 << 63;
        assert_eq!(
            route(&[needs(top)], &[target(1)]),
            [defer("no target holds label #63")]
        );
        assert_eq!(
            route(&[needs(top)], &[holding(top, 1)]),
            [Outcome::Assign(0)]
        );
        assert_eq!(
            route(&[needs(top | OPS)], &[holding(top | OPS, 0)]),
            [defer(
                "no target of group ops with tag label #63 has a free slot"
            )]
        );
    }

    #[test]
    fn byte_sizes_read_well() {
        assert_eq!(bytes_up(0), "0 B");
        assert_eq!(bytes_up(1023), "1023 B");
        assert_eq!(bytes_up(1024), "1 KiB");
        assert_eq!(bytes_up(512 << 20), "512 MiB");
        assert_eq!(bytes_up(3 * GIB / 2), "1.5 GiB");
        assert_eq!(bytes_up(8 * GIB), "8 GiB");
        assert_eq!(bytes_up(14 * GIB + 1), "14.1 GiB");
        assert_eq!(bytes_down(14 * GIB + 1), "14 GiB");
        assert_eq!(bytes_down(15 * GIB - 1), "14.9 GiB");
        assert_eq!(bytes_up(u64::MAX), "16777216 TiB");
    }

    /// Random-ish inputs (a fixed LCG, no dependencies): every assignment is eligible,
    /// no target ever gets more than it had free, one outcome per task, the chosen target
    /// is the one with the most free slots (first on ties), and a task is deferred only
    /// when nothing eligible was left at its turn.
    #[test]
    fn never_over_assigns_and_only_assigns_eligible_targets() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let labels = labels();
        let tag_bits = [GPU_A100, GPU_T4, ZONE_EU, DISK_SSD, GPU_H100];
        let group_bits = [OPS, LAB, NO_GROUP];
        for _round in 0..500 {
            let targets: Vec<Target> = (0..next(6))
                .map(|_| {
                    let tags = (0..next(3)).fold(0, |s, _| s | tag_bits[next(5) as usize]);
                    let groups = if next(2) == 0 {
                        EVERY_GROUP
                    } else {
                        (0..next(2) + 1).fold(0, |s, _| s | group_bits[next(3) as usize])
                    };
                    Target {
                        holds: tags | groups,
                        free_slots: next(4) as u32,
                        cpu_cores_free: next(16) as u32,
                        ram_bytes_free: next(64) * GIB,
                    }
                })
                .collect();
            let tasks: Vec<Task> = (0..next(12))
                .map(|_| Task {
                    group: 0,
                    needs: (0..next(3)).fold(0, |s, _| s | tag_bits[next(5) as usize])
                        | group_bits[next(3) as usize],
                    priority: next(3) as i32 - 1,
                    cpu_cores: if next(2) == 0 { next(8) as u32 } else { 0 },
                    ram_bytes: if next(2) == 0 { next(32) * GIB } else { 0 },
                    queued_at_ms: next(5),
                })
                .collect();

            let out = super::route(&labels, &tasks, &targets);
            assert_eq!(out.len(), tasks.len());

            // Replaying in priority order.
            let mut order: Vec<usize> = (0..tasks.len()).collect();
            order.sort_by_key(|&i| (Reverse(tasks[i].priority), tasks[i].queued_at_ms, i));
            let mut free: Vec<(u64, u64, u64)> = targets
                .iter()
                .map(|t| {
                    (
                        t.free_slots.into(),
                        t.cpu_cores_free.into(),
                        t.ram_bytes_free,
                    )
                })
                .collect();
            for i in order {
                let task = &tasks[i];
                let (c, r) = (u64::from(task.cpu_cores), task.ram_bytes);
                let fits = |k: usize, f: &(u64, u64, u64)| {
                    f.0 > 0 && f.1 >= c && f.2 >= r && task.needs & !targets[k].holds == 0
                };
                match &out[i] {
                    Outcome::Assign(j) => {
                        let j = *j;
                        assert!(fits(j, &free[j]), "not eligible");
                        // The most free slots among those that fit, first on ties.
                        let best = (0..targets.len())
                            .filter(|&k| fits(k, &free[k]))
                            .max_by_key(|&k| (free[k].0, Reverse(k)));
                        assert_eq!(best, Some(j));
                        free[j].0 -= 1;
                        free[j].1 -= c;
                        free[j].2 -= r;
                    }
                    Outcome::Defer(reason) => {
                        assert!(!reason.is_empty());
                        assert!((0..targets.len()).all(|k| !fits(k, &free[k])));
                    }
                }
            }
        }
    }
}
