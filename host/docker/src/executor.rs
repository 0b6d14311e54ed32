//! [`DockerExecutor`]: the Docker engine as a `tessera_executor::Executor`.
//!
//! What is Docker's stays here: the socket, the labels that mark a container as this
//! server's (task id, executor index, instance), the default network, CPU quotas in
//! nano-CPUs, and how peak memory is measured.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tessera_executor::{
    BoxFuture, Capacity, Enforces, ExecError, Executor, LogStream, Mount, Network, Owned,
    ProcessSpec, ProcessState,
};

use crate::network::{TASK_BRIDGE, TASK_NETWORK};
use crate::{Bind, ContainerSpec, ContainerStatus, DockerClient, DockerError};

/// The label every container carries, with the task id as its value.
pub const TASK_LABEL: &str = "tessera.task-id";
/// The label naming the server instance that owns a container, so that several servers
/// can share one Docker engine without touching each other's containers.
pub const INSTANCE_LABEL: &str = "tessera.instance";
/// The label with the executor's index in its task.
const INDEX_LABEL: &str = "tessera.executor-index";

/// A sampler of one running container's memory (Docker's stats, about once a second):
/// the figure when the kernel's own maximum cannot be read.
struct Sampler {
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// How the Docker executor runs containers (the Docker-only settings).
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// The engine's socket; `None`: `DOCKER_HOST` or `/var/run/docker.sock`.
    pub socket: Option<String>,
    /// The network of processes that have one: [`TASK_NETWORK`] (made and firewalled
    /// by Tessera), or the name of an existing network, used as it is.
    pub network: String,
    /// A task's network when it does not ask (`None`: with a network).
    pub default_network: Option<Network>,
    /// Processes and threads one container may have at once.
    pub pids_limit: Option<i64>,
    /// Docker keeps at most two log files of this size per container.
    pub log_file_bytes: Option<u64>,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            socket: None,
            network: TASK_NETWORK.to_owned(),
            default_network: None,
            pids_limit: Some(4096),
            log_file_bytes: Some(32 << 20),
        }
    }
}

/// The Docker engine as an executor of this server's processes.
pub struct DockerExecutor {
    client: DockerClient,
    instance: String,
    options: DockerOptions,
    /// The task network exists (made once the engine answers).
    network_ready: tokio::sync::OnceCell<()>,
    samplers: Mutex<HashMap<String, Sampler>>,
    /// The live output of containers this process started, until it is followed:
    /// complete, where Docker's own (rotated) log files keep only the tail.
    live: Mutex<HashMap<String, crate::client::Output>>,
}

impl DockerExecutor {
    /// An executor on the engine for server `instance`. Makes no request to the engine;
    /// with the task network, puts its firewall rules in place on this host first (an
    /// error when that cannot be done: tasks would reach what the rules keep them from).
    pub fn connect(instance: &str, options: DockerOptions) -> Result<DockerExecutor, DockerError> {
        let client = DockerClient::connect(options.socket.as_deref())?;
        if options.network == TASK_NETWORK {
            crate::network::guard(TASK_BRIDGE).map_err(|e| {
                DockerError::Other(format!(
                    "the task network's firewall: {e}; run tessera as root on the Docker host, or name an existing Docker network with --docker-network (its tasks can then reach link-local addresses and the host)"
                ))
            })?;
        }
        client.account_cgroups_under(&format!("tessera/{instance}"));
        Ok(DockerExecutor {
            client,
            instance: instance.to_string(),
            options,
            network_ready: tokio::sync::OnceCell::new(),
            samplers: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        })
    }

    pub fn client(&self) -> &DockerClient {
        &self.client
    }

    /// The container a process spec becomes.
    pub fn container_spec(&self, spec: &ProcessSpec) -> ContainerSpec {
        let mut labels = BTreeMap::new();
        labels.insert(TASK_LABEL.to_string(), spec.task_id.clone());
        labels.insert(INDEX_LABEL.to_string(), spec.index.to_string());
        labels.insert(INSTANCE_LABEL.to_string(), self.instance.clone());
        ContainerSpec {
            name: spec.name.clone(),
            image: spec.image.clone(),
            command: spec.command.clone(),
            workdir: spec.workdir.clone(),
            env: spec.env.clone(),
            labels,
            binds: spec
                .mounts
                .iter()
                .map(|m: &Mount| Bind::new(m.host.clone(), m.container.clone(), m.read_only))
                .collect(),
            nano_cpus: (spec.cpu_cores > 0).then(|| i64::from(spec.cpu_cores) * 1_000_000_000),
            memory_bytes: (spec.memory_bytes > 0)
                .then(|| i64::try_from(spec.memory_bytes).unwrap_or(i64::MAX)),
            network: Some(
                match spec.network.or(self.options.default_network) {
                    Some(Network::None) => "none",
                    Some(Network::Bridge) | None => &self.options.network,
                }
                .to_owned(),
            ),
            open_stdin: spec.stdin,
            cgroup_parent: None,
            user: spec.user.map(|u| u.to_string()),
            read_only_root: spec.read_only_root,
            pids_limit: self.options.pids_limit,
            log_file_bytes: self.options.log_file_bytes,
        }
    }

    /// Follow the container's memory from now on (unless that is already done).
    fn sample(&self, name: &str) {
        let mut samplers = self.samplers.lock().unwrap_or_else(|e| e.into_inner());
        if samplers.contains_key(name) {
            return;
        }
        let peak = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (client, name, peak) = (self.client.clone(), name.to_string(), peak.clone());
            async move { client.track_peak_memory(&name, peak).await }
        });
        samplers.insert(name.to_string(), Sampler { peak, task });
    }

    fn take_live(&self, name: &str) -> Option<crate::client::Output> {
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)
    }

    fn stop_sampling(&self, name: &str) -> Option<u64> {
        let sampler = self
            .samplers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name)?;
        sampler.task.abort();
        Some(sampler.peak.load(Ordering::Relaxed)).filter(|p| *p > 0)
    }
}

fn exec_error(e: DockerError) -> ExecError {
    match e {
        DockerError::Unreachable(why) => {
            ExecError::Unreachable(format!("the Docker engine is unreachable: {why}"))
        }
        DockerError::ImagePull { image, reason } => ExecError::ImageUnavailable { image, reason },
        DockerError::CommandNotFound(m) => ExecError::CommandNotFound(m),
        DockerError::NotFound => ExecError::NotFound,
        DockerError::Conflict => ExecError::Conflict,
        DockerError::Other(m) => ExecError::Other(m),
    }
}

/// Docker's view of a container as a process state.
fn process_state(s: &ContainerStatus) -> ProcessState {
    if s.running || matches!(s.state.as_str(), "paused" | "restarting") {
        ProcessState::Running
    } else if s.state == "created" && s.started_at.is_none() {
        ProcessState::Created
    } else {
        ProcessState::Exited {
            code: s.exit_code.unwrap_or(-1),
            oom_killed: s.oom_killed,
        }
    }
}

impl Executor for DockerExecutor {
    fn kind(&self) -> &'static str {
        "docker"
    }

    /// Docker cannot limit a container's disk use on common storage drivers, and has no
    /// notion of preemption or zones.
    fn enforces(&self) -> Enforces {
        Enforces::default()
    }

    fn capacity(&self) -> BoxFuture<'_, Result<Capacity, ExecError>> {
        Box::pin(async move {
            let info = self.client.info().await.map_err(exec_error)?;
            Ok(Capacity {
                version: info.version,
                cpus: info.cpus,
                memory_bytes: info.memory_bytes,
            })
        })
    }

    fn prepare_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move { self.client.ensure_image(image).await.map_err(exec_error) })
    }

    fn create<'a>(&'a self, spec: &'a ProcessSpec) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let container = self.container_spec(spec);
            if container.network.as_deref() == Some(TASK_NETWORK) {
                self.network_ready
                    .get_or_try_init(|| {
                        self.client.ensure_bridge_network(TASK_NETWORK, TASK_BRIDGE)
                    })
                    .await
                    .map_err(exec_error)?;
            }
            self.client.create(&container).await.map_err(exec_error)
        })
    }

    fn start<'a>(
        &'a self,
        name: &'a str,
        stdin: Option<PathBuf>,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.sample(name);
            let output = self
                .client
                .start_attached(name, stdin)
                .await
                .map_err(exec_error)?;
            self.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_owned(), output);
            Ok(())
        })
    }

    fn status<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProcessState>, ExecError>> {
        Box::pin(async move {
            Ok(self
                .client
                .status(name)
                .await
                .map_err(exec_error)?
                .as_ref()
                .map(process_state))
        })
    }

    /// Followed, a container this process started streams its attached output (all of
    /// it); otherwise (after a restart) Docker's logs are read, which keep at most the
    /// last two log files.
    fn logs(&self, name: &str, follow: bool) -> LogStream {
        use futures_util::StreamExt;
        let output = match follow.then(|| self.take_live(name)).flatten() {
            Some(live) => live,
            None => self.client.logs(name, follow),
        };
        Box::pin(output.map(|r| r.map_err(exec_error)))
    }

    fn wait<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, ExecError>> {
        Box::pin(async move {
            // A container followed again after a restart is sampled from here.
            self.sample(name);
            self.client.wait(name).await.map_err(exec_error)
        })
    }

    fn peak_memory<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(async move {
            let sampled = self.stop_sampling(name);
            // The kernel's maximum where the engine's cgroups are visible; otherwise what
            // the stats sampled while it ran.
            self.client.exit_peak_memory(name).or(sampled)
        })
    }

    fn exec<'a>(
        &'a self,
        name: &'a str,
        command: &'a [String],
        max_output: usize,
    ) -> BoxFuture<'a, Result<tessera_executor::ExecOutput, ExecError>> {
        Box::pin(async move {
            let (stdout, stderr, exit_code) = self
                .client
                .exec(name, command, max_output)
                .await
                .map_err(exec_error)?;
            Ok(tessera_executor::ExecOutput {
                stdout,
                stderr,
                exit_code,
            })
        })
    }

    fn kill<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.take_live(name);
            self.client.kill(name).await.map_err(exec_error)
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.stop_sampling(name);
            self.take_live(name);
            self.client.remove(name).await.map_err(exec_error)
        })
    }

    fn list<'a>(
        &'a self,
        task_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Owned>, ExecError>> {
        Box::pin(async move {
            let found = match task_id {
                Some(task) => self.client.list_by_label(TASK_LABEL, Some(task)).await,
                None => {
                    self.client
                        .list_by_label(INSTANCE_LABEL, Some(&self.instance))
                        .await
                }
            };
            Ok(found
                .map_err(exec_error)?
                .into_iter()
                .filter_map(|c| {
                    let task = c.labels.get(TASK_LABEL)?.clone();
                    task_id.is_none_or(|t| t == task).then_some(Owned {
                        name: c.name,
                        task_id: task,
                    })
                })
                .collect())
        })
    }

    /// The parent cgroups of containers that are gone (see
    /// [`crate::DockerClient::account_cgroups_under`]).
    fn tidy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // The parents first, then the containers: a parent made in between belongs
            // to a container that the list shows.
            let parents = self.client.cgroup_parents();
            if parents.is_empty() {
                return;
            }
            let Ok(containers) = self
                .client
                .list_by_label(INSTANCE_LABEL, Some(&self.instance))
                .await
            else {
                return;
            };
            let existing: std::collections::HashSet<&str> =
                containers.iter().map(|c| c.name.as_str()).collect();
            for name in parents.iter().filter(|n| !existing.contains(n.as_str())) {
                self.client.remove_cgroup_parent(name);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_spec_becomes_a_labelled_limited_container() {
        // An existing network by name: no firewall rules are touched here.
        let x = DockerExecutor::connect(
            "inst-1",
            DockerOptions {
                socket: Some("/nonexistent.sock".into()),
                network: "tasks-net".into(),
                default_network: Some(Network::None),
                ..DockerOptions::default()
            },
        )
        .unwrap();
        let spec = ProcessSpec {
            name: "tessera-t-0-1".into(),
            task_id: "t".into(),
            index: 1,
            image: "img".into(),
            command: vec!["true".into()],
            cpu_cores: 2,
            memory_bytes: 1 << 30,
            mounts: vec![Mount {
                host: "/h".into(),
                container: "/c".into(),
                read_only: false,
            }],
            ..ProcessSpec::default()
        };
        let c = x.container_spec(&spec);
        assert_eq!(c.labels[TASK_LABEL], "t");
        assert_eq!(c.labels[INSTANCE_LABEL], "inst-1");
        assert_eq!(c.labels[INDEX_LABEL], "1");
        assert_eq!(c.nano_cpus, Some(2_000_000_000));
        assert_eq!(c.memory_bytes, Some(1 << 30));
        assert_eq!(c.network.as_deref(), Some("none"), "the default network");
        assert_eq!(c.binds[0].container, "/c");
        let c = x.container_spec(&ProcessSpec {
            network: Some(Network::Bridge),
            ..spec.clone()
        });
        assert_eq!(
            c.network.as_deref(),
            Some("tasks-net"),
            "the task's own network"
        );
        assert_eq!(c.pids_limit, Some(4096));
        assert_eq!(c.log_file_bytes, Some(32 << 20));
        assert_eq!(c.user, None);
        let c = x.container_spec(&ProcessSpec {
            user: Some("1000:2000".parse().unwrap()),
            read_only_root: true,
            ..spec
        });
        assert_eq!(c.user.as_deref(), Some("1000:2000"));
        assert!(c.read_only_root);
    }

    #[test]
    fn docker_states_map_to_process_states() {
        let st = |state: &str, running: bool, started: bool, code: Option<i64>| ContainerStatus {
            state: state.into(),
            running,
            exit_code: code,
            started_at: started.then(|| "2026-01-01T00:00:00Z".into()),
            finished_at: None,
            oom_killed: false,
            error: None,
        };
        assert_eq!(
            process_state(&st("created", false, false, None)),
            ProcessState::Created
        );
        assert_eq!(
            process_state(&st("running", true, true, None)),
            ProcessState::Running
        );
        assert_eq!(
            process_state(&st("exited", false, true, Some(3))),
            ProcessState::Exited {
                code: 3,
                oom_killed: false
            }
        );
    }
}
