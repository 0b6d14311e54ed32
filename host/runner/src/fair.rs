//! Fair dispatch between groups, as plain functions over what the store returned: a
//! group with a long queue does not hold back another group's first task, and a group's
//! quota holds its own tasks back without blocking anyone else's.

use std::collections::HashMap;

use tessera_core::TaskRecord;
use tessera_core::identity::{Quota, Usage};

/// What a task asks for, as quotas count it: (CPU cores, memory bytes).
pub fn asks(task: &TaskRecord) -> (u32, u64) {
    let r = task.spec.resources.clone().unwrap_or_default();
    (r.cpu_count(), r.ram_bytes())
}

/// What `active` tasks hold, by group.
pub fn usage(active: &[TaskRecord]) -> HashMap<String, Usage> {
    let mut by_group: HashMap<String, Usage> = HashMap::new();
    for t in active {
        let (cpu, ram) = asks(t);
        let u = by_group.entry(t.group.clone()).or_default();
        *u = u.plus(cpu, ram);
    }
    by_group
}

/// One queue per group (oldest first) into one list: a round takes one task of each
/// group, groups with fewer tasks started here first, then the group whose oldest task
/// was queued first. A group's long queue therefore costs another group at most one
/// task per round.
pub fn interleave(
    mut queues: Vec<(String, Vec<TaskRecord>)>,
    started: &HashMap<String, u32>,
) -> Vec<TaskRecord> {
    queues.retain(|(_, q)| !q.is_empty());
    queues.sort_by_key(|(g, q)| (started.get(g).copied().unwrap_or(0), q[0].seq));
    let total = queues.iter().map(|(_, q)| q.len()).sum();
    let mut out = Vec::with_capacity(total);
    let mut iters: Vec<_> = queues.into_iter().map(|(_, q)| q.into_iter()).collect();
    while out.len() < total {
        for it in &mut iters {
            if let Some(t) = it.next() {
                out.push(t);
            }
        }
    }
    out
}

/// Split `tasks` into those their groups' quotas let start (counting each kept task as
/// started) and those held back, with the reason.
pub fn apply_quotas(
    tasks: Vec<TaskRecord>,
    quotas: &HashMap<String, Quota>,
    mut usage: HashMap<String, Usage>,
) -> (Vec<TaskRecord>, Vec<(TaskRecord, String)>) {
    let mut kept = Vec::with_capacity(tasks.len());
    let mut held = Vec::new();
    for t in tasks {
        let Some(q) = quotas.get(&t.group).filter(|q| q.limits_running()) else {
            kept.push(t);
            continue;
        };
        let (cpu, ram) = asks(&t);
        let u = usage.entry(t.group.clone()).or_default();
        match q.blocks_start(&t.group, *u, cpu, ram) {
            Some(reason) => held.push((t, reason)),
            None => {
                *u = u.plus(cpu, ram);
                kept.push(t);
            }
        }
    }
    (kept, held)
}

/// An agent's concurrency limit, by (group, agent).
pub type AgentKey = (String, String);

/// Split `tasks` into those their agents' limits let start (counting each kept task as
/// started; `active` holds what runs now) and those held back, with the reason.
pub fn apply_agent_limits(
    tasks: Vec<TaskRecord>,
    limits: &HashMap<AgentKey, u32>,
    mut active: HashMap<AgentKey, u32>,
) -> (Vec<TaskRecord>, Vec<(TaskRecord, String)>) {
    let mut kept = Vec::with_capacity(tasks.len());
    let mut held = Vec::new();
    for t in tasks {
        let Some(agent) = t.extra.agent.clone() else {
            kept.push(t);
            continue;
        };
        let key = (t.group.clone(), agent);
        let Some(limit) = limits.get(&key) else {
            kept.push(t);
            continue;
        };
        let n = active.entry(key.clone()).or_default();
        if *n >= *limit {
            held.push((
                t,
                format!(
                    "waiting: agent {} runs {n} tasks, its max_concurrent_tasks",
                    key.1
                ),
            ));
        } else {
            *n += 1;
            kept.push(t);
        }
    }
    (kept, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_limit_holds_its_tasks_beyond_it() {
        let mut tasks: Vec<TaskRecord> = (1..=4).map(|i| task("g", i, 0)).collect();
        for t in &mut tasks[..3] {
            t.extra.agent = Some("coder".into());
        }
        let limits = HashMap::from([(("g".to_string(), "coder".to_string()), 2)]);
        let active = HashMap::from([(("g".to_string(), "coder".to_string()), 1)]);
        let (kept, held) = apply_agent_limits(tasks, &limits, active);
        assert_eq!(kept.iter().map(|t| t.seq).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(held.iter().map(|(t, _)| t.seq).collect::<Vec<_>>(), [2, 3]);
        assert!(held[0].1.contains("max_concurrent_tasks"));
    }
    use tessera_core::State;
    use tessera_core::tes::{Resources, Task};

    fn task(group: &str, seq: i64, cpu: i32) -> TaskRecord {
        TaskRecord {
            seq,
            id: format!("{group}{seq}"),
            group: group.into(),
            origin: Default::default(),
            priority: 0,
            extra: Default::default(),
            state: State::Queued,
            reason: None,
            spec: Task {
                resources: Some(Resources {
                    cpu_cores: Some(cpu),
                    ..Resources::default()
                }),
                ..Task::default()
            },
            logs: Vec::new(),
            creation_time: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn ids(ts: &[TaskRecord]) -> Vec<&str> {
        ts.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn a_long_queue_costs_another_group_at_most_one_task_per_round() {
        let a: Vec<_> = (1..=1000).map(|s| task("a", s, 1)).collect();
        let b = vec![task("b", 1001, 1), task("b", 1002, 1)];
        let out = interleave(vec![("a".into(), a), ("b".into(), b)], &HashMap::new());
        assert_eq!(out.len(), 1002);
        assert_eq!(ids(&out[..4]), ["a1", "b1001", "a2", "b1002"]);
        // A group with tasks started here goes after one without.
        let started = HashMap::from([("a".to_string(), 3)]);
        let out = interleave(
            vec![
                ("a".into(), vec![task("a", 1, 1)]),
                ("b".into(), vec![task("b", 9, 1)]),
                ("c".into(), vec![]),
            ],
            &started,
        );
        assert_eq!(ids(&out), ["b9", "a1"]);
    }

    #[test]
    fn quotas_hold_back_only_their_groups_tasks() {
        let quotas = HashMap::from([
            (
                "a".to_string(),
                Quota {
                    max_running: Some(2),
                    ..Quota::default()
                },
            ),
            (
                "c".to_string(),
                Quota {
                    max_cpu_cores: Some(4),
                    ..Quota::default()
                },
            ),
        ]);
        let usage = HashMap::from([("a".to_string(), Usage::default().plus(1, 0))]);
        let tasks = vec![
            task("a", 1, 1),
            task("b", 2, 64),
            task("a", 3, 1),
            task("c", 4, 3),
            task("c", 5, 2),
            task("c", 6, 1),
        ];
        let (kept, held) = apply_quotas(tasks, &quotas, usage);
        assert_eq!(ids(&kept), ["a1", "b2", "c4", "c6"]);
        let held: Vec<(&str, &str)> = held
            .iter()
            .map(|(t, r)| (t.id.as_str(), r.as_str()))
            .collect();
        assert_eq!(held[0].0, "a3");
        assert!(
            held[0].1.contains("limit of 2 running tasks"),
            "{}",
            held[0].1
        );
        assert_eq!(held[1].0, "c5");
        assert!(held[1].1.contains("4 CPU cores"), "{}", held[1].1);
    }
}
