//! A TES executor as an executor-neutral process spec: the one place where a task's
//! resources become a process's limits (through `tessera_core::units`, as routing does).

use tessera_core::TaskRecord;
use tessera_core::tes::backend_parameter;
use tessera_executor::{Isolation, Mount, Network, ProcessSpec, process_name};

use crate::task_dir::{TaskDir, plan_mounts};

/// The process that runs executor `index` of `task`'s attempt `attempt`, with the task's
/// directory mounted where its executors see it, isolated as its target says.
/// `secret_env` holds the values of the task's secret env references (added last).
pub fn process_spec(
    task: &TaskRecord,
    attempt: usize,
    index: usize,
    dir: &TaskDir,
    isolation: &Isolation,
    secret_env: &[(String, String)],
) -> ProcessSpec {
    let exec = &task.executors()[index];
    let res = task.spec.resources.clone().unwrap_or_default();
    // Validation allows only these two values.
    let network = res
        .backend_parameter(backend_parameter::NETWORK)
        .and_then(|v| match v.to_ascii_lowercase().as_str() {
            "none" => Some(Network::None),
            "bridge" => Some(Network::Bridge),
            _ => None,
        });
    ProcessSpec {
        name: process_name(&task.id, attempt, index),
        task_id: task.id.clone(),
        index,
        image: exec.image.clone(),
        command: exec.command.clone(),
        workdir: exec.workdir.clone(),
        env: exec
            .env
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(secret_env.iter().cloned())
            .collect(),
        mounts: plan_mounts(task)
            .into_iter()
            .map(|m| Mount {
                host: dir.host_path(&m.container),
                container: m.container,
                read_only: m.read_only,
            })
            .collect(),
        cpu_cores: res.cpu_count(),
        memory_bytes: res.ram_bytes(),
        network: if isolation.no_network {
            Some(Network::None)
        } else {
            network
        },
        stdin: exec.stdin.is_some(),
        user: isolation.user,
        read_only_root: isolation.read_only_root,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tessera_core::State;
    use tessera_core::routing::{Decision, Free, RouteError, RouteRequest, Router, TargetSpec};
    use tessera_core::tes::{Executor, Resources, Task};

    fn task(id: &str, ram_gb: f64, cpu: i32) -> TaskRecord {
        TaskRecord {
            id: id.into(),
            seq: 1,
            state: State::Queued,
            reason: None,
            group: String::new(),
            origin: Default::default(),
            priority: 0,
            extra: Default::default(),
            spec: Task {
                executors: Some(vec![Executor {
                    image: "img".into(),
                    command: vec!["true".into()],
                    ..Executor::default()
                }]),
                resources: Some(Resources {
                    ram_gb: Some(ram_gb),
                    cpu_cores: Some(cpu),
                    ..Resources::default()
                }),
                ..Task::default()
            },
            logs: vec![],
            creation_time: time::macros::datetime!(2026-01-01 00:00:00 UTC),
        }
    }

    /// Assigns every task to target 0; the host's checks decide what fits.
    struct FirstTarget;

    impl Router for FirstTarget {
        fn route(&self, _: &str, r: &RouteRequest) -> Result<Vec<Decision>, RouteError> {
            Ok(r.tasks.iter().map(|_| Decision::Assign(0)).collect())
        }
    }

    proptest::proptest! {
        /// What a target admits (routing with the target's memory budget) equals what its
        /// processes are limited to: the same bytes for every task, and never more than
        /// the budget in all.
        #[test]
        fn what_a_target_admits_is_what_its_processes_get(
            rams in proptest::collection::vec(0.01f64..8.0, 1..12),
            budget_gb in 0.5f64..16.0,
        ) {
            let budget = tessera_core::units::gb_to_bytes(budget_gb);
            let tasks: Vec<TaskRecord> = rams
                .iter()
                .enumerate()
                .map(|(i, r)| task(&format!("t{i}"), *r, 1))
                .collect();
            let targets = vec![(
                TargetSpec { name: "local".into(), ..TargetSpec::default() },
                Free { slots: 100, cpu_cores: 1000, ram_bytes: budget },
            )];
            let router: Arc<dyn Router> = Arc::new(FirstTarget);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let round = rt.block_on(crate::route_round(&router, &targets, &[], &tasks));
            let dir = TaskDir::new(std::path::Path::new("/work"), "t");
            let mut admitted = 0u64;
            for (t, _) in &round.runs {
                let spec = process_spec(t, 0, 0, &dir, &Isolation::default(), &[]);
                let candidate = crate::candidate(t, &[]);
                proptest::prop_assert_eq!(spec.memory_bytes, candidate.ram_bytes);
                proptest::prop_assert_eq!(spec.cpu_cores, candidate.cpu_cores);
                admitted += spec.memory_bytes;
            }
            proptest::prop_assert!(admitted <= budget, "{admitted} > {budget}");
            // And what waits would not have fitted.
            for (t, _) in &round.waits {
                let need = crate::candidate(t, &[]).ram_bytes;
                proptest::prop_assert!(admitted + need > budget);
            }
        }
    }

    #[test]
    fn resources_and_network_become_limits() {
        let mut t = task("t", 1.5, 2);
        t.spec.resources.as_mut().unwrap().backend_parameters =
            Some([("Network".to_string(), "NONE".to_string())].into());
        let dir = TaskDir::new(std::path::Path::new("/w"), "t");
        let spec = process_spec(&t, 1, 0, &dir, &Isolation::default(), &[]);
        assert_eq!(spec.name, "tessera-t-1-0");
        assert_eq!(spec.memory_bytes, 1_610_612_736);
        assert_eq!(spec.cpu_cores, 2);
        assert_eq!(spec.network, Some(Network::None));
        assert_eq!(spec.user, None);
        assert!(!spec.read_only_root);
    }

    #[test]
    fn a_target_without_network_overrides_the_task() {
        let mut t = task("t", 1.0, 1);
        t.spec.resources.as_mut().unwrap().backend_parameters =
            Some([("network".to_string(), "bridge".to_string())].into());
        let isolation = Isolation {
            user: Some("1000:1000".parse().unwrap()),
            no_network: true,
            read_only_root: true,
        };
        let dir = TaskDir::new(std::path::Path::new("/w"), "t");
        let spec = process_spec(&t, 0, 0, &dir, &isolation, &[]);
        assert_eq!(spec.network, Some(Network::None));
        assert_eq!(spec.user, isolation.user);
        assert!(spec.read_only_root);
    }
}
