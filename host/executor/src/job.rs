//! The second shape of the executor boundary: an executor that takes a whole task and
//! runs it where it runs (Kubernetes: one Job per task), staging, executors in order and
//! output staging included. The runner hands it a [`JobRequest`], follows its
//! [`JobStatus`] and, once it has ended, collects each executor's result and output
//! ([`JobOutcome`]). Implementations: `tessera-kube`.

use std::collections::BTreeMap;

use crate::{BoxFuture, Capacity, ExecError};

/// One TES executor of a job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCommand {
    pub image: String,
    pub command: Vec<String>,
    pub workdir: Option<String>,
    pub env: Vec<(String, String)>,
    /// Container paths (in the task's workspace) of its standard streams.
    pub stdin: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub ignore_error: bool,
}

/// A workspace path visible to the task's executors (from the task's volumes, inputs
/// and outputs), as the runner planned it for Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMount {
    pub container: String,
    pub is_dir: bool,
    pub read_only: bool,
}

/// A file a secret reference of the task puts in its workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub path: String,
    pub mode: u32,
    pub content: String,
}

/// Where the pod runs, from the task's agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodPlacement {
    pub service_account: Option<String>,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    pub labels: BTreeMap<String, String>,
}

/// A Kubernetes toleration, as an agent names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toleration {
    pub key: Option<String>,
    pub operator: Option<String>,
    pub value: Option<String>,
    pub effect: Option<String>,
}

/// A whole task for a job executor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRequest {
    pub task_id: String,
    /// Which attempt of the task (0-based; a task runs again after a requeue).
    pub attempt: usize,
    pub steps: Vec<JobCommand>,
    pub mounts: Vec<JobMount>,
    /// What `tessera stage in`/`out` read (the task as stored); the pod gets it when it
    /// has staging containers.
    pub staging: Option<String>,
    /// What the filers are granted to reach their data (object store credentials):
    /// kept in a Secret, never in the staging document.
    pub staging_secret: Option<String>,
    /// The task writes or reads files: it gets a workspace volume.
    pub needs_workspace: bool,
    /// The task has outputs to stage after its executors.
    pub stage_out: bool,
    pub secret_env: Vec<(String, String)>,
    pub secret_files: Vec<SecretFile>,
    pub cpu_cores: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// The task's maximum run time, in seconds.
    pub deadline_secs: u64,
    pub placement: PodPlacement,
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobPhase {
    /// Not running yet: scheduling, pulling images, binding its volume. `reason` is what
    /// the cluster says holds it (e.g. `ImagePullBackOff: …`).
    Pending { reason: Option<String> },
    /// Its inputs are being staged.
    StagingIn,
    /// Executor `index` runs.
    Running { index: usize },
    /// Its outputs are being staged.
    StagingOut,
    /// Every container ended; [`JobExecutor::collect`] has the results.
    Ended,
    /// The cluster stopped it (deadline, eviction, a container that could not start).
    Failed { reason: String, deadline: bool },
}

/// What the job executor knows about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub phase: JobPhase,
    /// When its first executor started (RFC 3339), once it has.
    pub started: Option<String>,
}

/// One executor's result, as the job executor collected it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutcome {
    /// `None`: it never ran (an earlier one failed, or the job was stopped).
    pub exit_code: Option<i64>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Killed for memory.
    pub oom_killed: bool,
}

/// A job's results.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobOutcome {
    pub steps: Vec<StepOutcome>,
    /// What `tessera stage out` reported (JSON), when it ran.
    pub staged_out: Option<String>,
    /// Why staging failed, when it did (the staging container's own words).
    pub staging_error: Option<String>,
    /// Readable lines for the task's system logs (pod reasons, evictions).
    pub system: Vec<String>,
}

/// An executor that runs whole tasks. Shared across tasks.
pub trait JobExecutor: Send + Sync {
    /// A short name for logs and task metadata, e.g. `kubernetes`.
    fn kind(&self) -> &'static str;

    fn capacity(&self) -> BoxFuture<'_, Result<Capacity, ExecError>>;

    /// Create the job; [`ExecError::Conflict`] when the task's job exists already.
    fn submit<'a>(&'a self, job: &'a JobRequest) -> BoxFuture<'a, Result<(), ExecError>>;

    /// The job's status; `None` when there is no job for the task.
    fn status<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobStatus>, ExecError>>;

    /// Returns once something about the task's job may have changed since `seen` (a
    /// counter this returns; start with 0), or after `at_most`.
    fn changed<'a>(
        &'a self,
        task_id: &'a str,
        seen: u64,
        at_most: std::time::Duration,
    ) -> BoxFuture<'a, u64>;

    /// Each executor's result and output, and staging's report, as far as they got.
    fn collect<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<JobOutcome, ExecError>>;

    /// Stop and remove the job and everything it owns (fine when it is gone).
    fn delete<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecError>>;

    /// The task ids of every job this server made.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>>;
}
