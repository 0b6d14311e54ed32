//! A workflow's tasks as a directed acyclic graph, as its engine reports it when it
//! validates the definition: each task with the tasks it depends on. The rules (every
//! dependency names a task, no task is declared twice, no cycles) are checked here for
//! every engine, and each broken one is named.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tessera_core::error::FieldError;

/// One task of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = WorkflowTask))]
pub struct DagTask {
    pub title: String,
    /// The tasks this one waits for.
    pub upstream: Vec<String>,
    /// The tasks that wait for this one (the graph's edges, as Kaapana shows them).
    pub downstream: Vec<String>,
}

/// The graph: tasks in a topological order (each after every task it depends on; ties
/// in the order the definition declared them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dag {
    pub tasks: Vec<DagTask>,
}

impl Dag {
    /// The graph of `tasks` (title, upstream titles) in declaration order, or every
    /// broken rule: a title declared twice, a dependency on no task, a task depending on
    /// itself, a cycle (named by its path, `a -> b -> a`).
    pub fn new(tasks: &[(String, Vec<String>)]) -> Result<Dag, Vec<FieldError>> {
        let mut errs = Vec::new();
        let mut index: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, (title, _)) in tasks.iter().enumerate() {
            if index.insert(title.as_str(), i).is_some() {
                errs.push(FieldError::at(
                    format!("tasks[{i}].name"),
                    format!("{title:?} is declared twice"),
                ));
            }
        }
        for (i, (title, ups)) in tasks.iter().enumerate() {
            for (j, up) in ups.iter().enumerate() {
                let at = format!("tasks[{i}].depends_on[{j}]");
                if up == title {
                    errs.push(FieldError::at(at, format!("{title:?} depends on itself")));
                } else if !index.contains_key(up.as_str()) {
                    errs.push(FieldError::at(
                        at,
                        format!("{title:?} depends on {up:?}, which is not a task"),
                    ));
                }
            }
        }
        if !errs.is_empty() {
            return Err(errs);
        }
        // Kahn's algorithm, always taking the earliest declared ready task.
        let n = tasks.len();
        let mut waiting: Vec<usize> = tasks
            .iter()
            .map(|(_, ups)| ups.iter().collect::<BTreeSet<_>>().len())
            .collect();
        let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, (_, ups)) in tasks.iter().enumerate() {
            for up in ups.iter().collect::<BTreeSet<_>>() {
                downstream[index[up.as_str()]].push(i);
            }
        }
        let mut ready: BTreeSet<usize> = (0..n).filter(|i| waiting[*i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &d in &downstream[i] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        if order.len() < n {
            let left: BTreeSet<usize> = (0..n).filter(|i| waiting[*i] > 0).collect();
            let cycle = find_cycle(tasks, &index, &left);
            let names: Vec<&str> = cycle.iter().map(|i| tasks[*i].0.as_str()).collect();
            return Err(vec![FieldError::at(
                format!("tasks[{}].depends_on", cycle[0]),
                format!("the dependencies form a cycle: {}", names.join(" -> ")),
            )]);
        }
        let tasks = order
            .into_iter()
            .map(|i| DagTask {
                title: tasks[i].0.clone(),
                upstream: dedup(&tasks[i].1),
                downstream: downstream[i].iter().map(|d| tasks[*d].0.clone()).collect(),
            })
            .collect();
        Ok(Dag { tasks })
    }

    pub fn task(&self, title: &str) -> Option<&DagTask> {
        self.tasks.iter().find(|t| t.title == title)
    }

    /// `titles` and every task downstream of them, in topological order.
    pub fn with_downstream(&self, titles: &BTreeSet<String>) -> Vec<String> {
        let mut chosen: BTreeSet<&str> = titles.iter().map(String::as_str).collect();
        // Topological order: a task's upstream tasks are decided before it.
        for t in &self.tasks {
            if t.upstream.iter().any(|u| chosen.contains(u.as_str())) {
                chosen.insert(&t.title);
            }
        }
        self.tasks
            .iter()
            .filter(|t| chosen.contains(t.title.as_str()))
            .map(|t| t.title.clone())
            .collect()
    }

    /// Whether `ancestor` is upstream of `task`, directly or through others.
    pub fn is_upstream(&self, ancestor: &str, task: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut stack = vec![task];
        while let Some(t) = stack.pop() {
            for up in self.task(t).map(|t| t.upstream.as_slice()).unwrap_or(&[]) {
                if up == ancestor {
                    return true;
                }
                if seen.insert(up.as_str()) {
                    stack.push(up);
                }
            }
        }
        false
    }
}

fn dedup(v: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    v.iter().filter(|s| seen.insert(*s)).cloned().collect()
}

/// A cycle among the tasks `left` (each still waits for another of them): walk upstream
/// from the first until a task repeats.
fn find_cycle(
    tasks: &[(String, Vec<String>)],
    index: &BTreeMap<&str, usize>,
    left: &BTreeSet<usize>,
) -> Vec<usize> {
    let Some(&start) = left.first() else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut at = start;
    loop {
        // Every task left waits for at least one other task left.
        let Some(next) = tasks[at]
            .1
            .iter()
            .map(|u| index[u.as_str()])
            .find(|u| left.contains(u))
        else {
            return path;
        };
        if let Some(pos) = path.iter().position(|p| *p == next) {
            // Shown in the order the work would flow (upstream first), from the task
            // declared first.
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            let first = (0..cycle.len()).min_by_key(|k| cycle[*k]).unwrap_or(0);
            cycle.rotate_left(first);
            cycle.push(cycle[0]);
            return cycle;
        }
        path.push(next);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn spec(edges: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        edges
            .iter()
            .map(|(t, ups)| (t.to_string(), ups.iter().map(|u| u.to_string()).collect()))
            .collect()
    }

    fn titles(d: &Dag) -> Vec<&str> {
        d.tasks.iter().map(|t| t.title.as_str()).collect()
    }

    #[test]
    fn a_diamond_is_ordered_with_its_edges_both_ways() {
        let d = Dag::new(&spec(&[
            ("join", &["left", "right"]),
            ("left", &["split"]),
            ("right", &["split"]),
            ("split", &[]),
        ]))
        .unwrap();
        assert_eq!(titles(&d), ["split", "left", "right", "join"]);
        assert_eq!(d.task("split").unwrap().downstream, ["left", "right"]);
        assert_eq!(d.task("join").unwrap().upstream, ["left", "right"]);
        assert!(d.is_upstream("split", "join"));
        assert!(!d.is_upstream("left", "right"));
        let from_left: BTreeSet<String> = ["left".to_string()].into();
        assert_eq!(d.with_downstream(&from_left), ["left", "join"]);
    }

    #[test]
    fn each_broken_rule_is_named() {
        let errs = Dag::new(&spec(&[("a", &["ghost"]), ("a", &[]), ("b", &["b"])])).unwrap_err();
        let text: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        assert!(
            text.iter()
                .any(|t| t.contains("tasks[1].name") && t.contains("twice")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("tasks[0].depends_on[0]") && t.contains("\"ghost\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.contains("depends on itself")),
            "{text:?}"
        );
    }

    #[test]
    fn a_cycle_is_named_by_its_path() {
        let errs = Dag::new(&spec(&[
            ("start", &[]),
            ("a", &["start", "c"]),
            ("b", &["a"]),
            ("c", &["b"]),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].message.ends_with("a -> b -> c -> a"),
            "{}",
            errs[0].message
        );
    }

    proptest! {
        /// Any graph whose edges only point back to earlier tasks is acyclic: it is
        /// accepted, and the order puts every task after all of its upstream tasks.
        #[test]
        fn an_acyclic_graph_is_ordered_upstream_first(
            n in 1usize..40,
            edges in proptest::collection::vec((0usize..40, 0usize..40), 0..120),
        ) {
            let mut tasks: Vec<(String, Vec<String>)> =
                (0..n).map(|i| (format!("t{i}"), Vec::new())).collect();
            for (a, b) in edges {
                let (a, b) = (a % n, b % n);
                if a < b {
                    tasks[b].1.push(format!("t{a}"));
                }
            }
            // Declared in any order.
            tasks.reverse();
            let d = Dag::new(&tasks).unwrap();
            prop_assert_eq!(d.tasks.len(), n);
            let pos: BTreeMap<&str, usize> =
                d.tasks.iter().enumerate().map(|(i, t)| (t.title.as_str(), i)).collect();
            for t in &d.tasks {
                for u in &t.upstream {
                    prop_assert!(pos[u.as_str()] < pos[t.title.as_str()]);
                }
            }
        }

        /// Adding one edge from a task back to one of its ancestors makes a cycle, and
        /// the cycle named is made of real edges.
        #[test]
        fn a_back_edge_is_a_cycle_made_of_real_edges(n in 2usize..30, seed in 0usize..1000) {
            // A chain t0 <- t1 <- ... plus t_i depending on t_j (j > i).
            let mut tasks: Vec<(String, Vec<String>)> = (0..n)
                .map(|i| (format!("t{i}"), if i == 0 { vec![] } else { vec![format!("t{}", i - 1)] }))
                .collect();
            let i = seed % (n - 1);
            let j = i + 1 + seed % (n - 1 - i);
            tasks[i].1.push(format!("t{j}"));
            let errs = Dag::new(&tasks).unwrap_err();
            let path = errs[0].message.rsplit(": ").next().unwrap().to_string();
            let names: Vec<&str> = path.split(" -> ").collect();
            prop_assert!(names.len() >= 3);
            prop_assert_eq!(names.first(), names.last());
            for w in names.windows(2) {
                // w[1] depends on w[0].
                let ups = &tasks.iter().find(|t| t.0 == w[1]).unwrap().1;
                prop_assert!(ups.iter().any(|u| u == w[0]), "{} does not depend on {}", w[1], w[0]);
            }
        }
    }
}
