//! The task runner: takes tasks in (with group commit), dispatches them to free slots,
//! drives each one through staging, its executors in order and output staging, handles
//! cancel, and on start reconciles every unfinished task with what the executor really
//! has.
//!
//! The runner knows executors only through `tessera_executor::Executor`. What to do next
//! with a task is decided by one plain function ([`step::next`]) over what is stored and
//! what the executor reports; the driver performs the steps. A task's progress is
//! recorded before each step that could be lost (an executor's start before its process
//! is created, its result before its process is removed), so the same driver both starts
//! a task and resumes one after a crash, and no executor runs twice.

mod drive;
pub mod drive_job;
pub mod fair;
pub mod metrics;
pub mod spec;
pub mod staging;
pub mod step;
pub mod tail;
pub mod task_dir;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tessera_core::State;
use tessera_core::identity::Quota;
use tessera_core::routing::{self, Candidate, Free, Outcome, RouteError, Router, TargetSpec};
use tessera_core::task::{NewTask, TaskRecord};
use tessera_executor::job::JobExecutor;
use tessera_executor::{Executor, Isolation};
use tessera_store::{Adoption, Lease, Store, StoreError};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;

/// How often tasks without a driver are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Task workspaces live in `work_dir/<task id>`.
    pub work_dir: PathBuf,
    pub max_concurrent_tasks: usize,
    /// How much of each executor's stdout/stderr the task log keeps (the tail).
    pub log_tail_bytes: usize,
    /// Canonical host directories `file://` URLs may use.
    pub file_roots: Vec<PathBuf>,
    /// How often live stdout/stderr of running executors is written to the store.
    pub log_flush_interval: Duration,
    /// Where tasks can run: slot pools on the executor, each with tags and groups. At
    /// least one; the router chooses among them.
    pub targets: Vec<TargetConfig>,
    /// TES tag keys that are placement constraints: a task's tags with these keys must be
    /// carried by its target. Other tags are metadata only.
    pub route_tag_keys: Vec<String>,
    /// How the default target (when `targets` is empty) isolates its processes.
    pub isolation: Isolation,
    /// A task's maximum run time when it does not ask for one (backend parameter
    /// `max_run_time`), counted from the start of its first executor.
    pub max_run_time: Duration,
    /// This server's hold on the tasks it claims: its instance and the lease's time to
    /// live. Renewed every third of it; another server on the same store adopts a task
    /// only once its lease has run out.
    pub lease: Lease,
}

/// How often a cancel made on another server is looked for among our tasks.
const CANCEL_POLL_EVERY: Duration = Duration::from_millis(500);

/// A place tasks can run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetConfig {
    pub spec: TargetSpec,
    /// Tasks that may run on it at once.
    pub slots: u32,
    /// CPU cores its tasks may ask for together; `None`: no budget.
    pub cpu_cores: Option<u32>,
    /// Memory its tasks may ask for together, in bytes; `None`: no budget.
    pub ram_bytes: Option<u64>,
    /// How its processes are isolated (user, network, root file system).
    pub isolation: Isolation,
    /// `Some(i)`: the target is job executor `i` of [`Runner::set_job_executors`]
    /// (Kubernetes): each task runs there whole. `None`: the runner's process executor.
    pub job_executor: Option<usize>,
    /// On a job executor, how long a task's pod may wait with a reason (a missing image,
    /// unschedulable) before the task fails SYSTEM_ERROR.
    pub pending_timeout: Duration,
}

/// Tasks the sweep reads from the store at a time.
const SWEEP_PAGE: u32 = 256;

/// The metadata key of a task log that names the target the task runs on.
pub const TARGET_METADATA: &str = "target";

/// What the executor looks like right now, for readiness and queue reasons.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorStatus {
    /// No executor: tasks are accepted and stay QUEUED (benchmarks, API-only nodes).
    Disabled,
    Unknown,
    Ready {
        version: String,
        cpus: u32,
        memory_bytes: u64,
    },
    Unreachable(String),
}

impl ExecutorStatus {
    pub fn is_ready(&self) -> bool {
        matches!(self, ExecutorStatus::Ready { .. })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    NotFound,
    /// Already terminal: cancel is a no-op.
    AlreadyFinished(State),
    Canceling,
}

/// One dispatch round's decisions: where queued tasks go and why the others wait.
pub struct Round<'a> {
    /// Tasks placed, with the index of their target.
    pub runs: Vec<(&'a TaskRecord, usize)>,
    /// Tasks that stay queued, with the reason.
    pub waits: Vec<(&'a TaskRecord, String)>,
    /// The last router failure of the round, if any (its tasks are among `waits`).
    pub failure: Option<RouteError>,
}

/// Route `queued` (oldest first) over `targets`: tasks are grouped by group, each group's
/// batch is planned into requests ([`routing::plan_requests`]), sent to the router off
/// the async threads, and its decisions checked against the targets
/// ([`routing::check_decisions`]). Nothing is written: the caller claims the runs and
/// records the waits.
pub async fn route_round<'a>(
    router: &Arc<dyn Router>,
    targets: &[(TargetSpec, Free)],
    route_tag_keys: &[String],
    queued: &'a [TaskRecord],
) -> Round<'a> {
    let mut round = Round {
        runs: Vec::new(),
        waits: Vec::new(),
        failure: None,
    };
    let candidates: Vec<Candidate> = queued
        .iter()
        .map(|t| candidate(t, route_tag_keys))
        .collect();
    let mut by_group: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        match by_group.iter_mut().find(|(g, _)| *g == c.group) {
            Some((_, members)) => members.push(i),
            None => by_group.push((c.group.clone(), vec![i])),
        }
    }
    for (group, members) in by_group {
        let group_candidates: Vec<Candidate> =
            members.iter().map(|&i| candidates[i].clone()).collect();
        let (planned, refused) = routing::plan_requests(&group_candidates, targets);
        for (j, reason) in refused {
            round.waits.push((&queued[members[j]], reason));
        }
        for plan in planned {
            let router = router.clone();
            let g = group.clone();
            let request = plan.request;
            let (request, answer) = tokio::task::spawn_blocking(move || {
                let answer = router.route(&g, &request);
                (request, answer)
            })
            .await
            .unwrap_or_else(|e| {
                (
                    routing::RouteRequest::default(),
                    Err(RouteError {
                        router: String::new(),
                        message: format!("the routing thread failed: {e}"),
                    }),
                )
            });
            let outcomes = answer.and_then(|decisions| {
                routing::check_decisions(&request, &decisions).map_err(|e| RouteError {
                    router: String::new(),
                    message: e.to_string(),
                })
            });
            match outcomes {
                Ok(outcomes) => {
                    for (k, outcome) in outcomes.into_iter().enumerate() {
                        let task = &queued[members[plan.candidates[k]]];
                        match outcome {
                            Outcome::Run(t) => round.runs.push((task, t)),
                            Outcome::Wait(reason) => round.waits.push((task, reason)),
                        }
                    }
                }
                Err(e) => {
                    let reason = format!("{e}; retrying");
                    for &j in &plan.candidates {
                        round.waits.push((&queued[members[j]], reason.clone()));
                    }
                    round.failure = Some(e);
                }
            }
        }
    }
    round
}

/// Where a driven task runs, its group and what it asked for.
#[derive(Debug, Clone)]
struct Placement {
    target: usize,
    group: String,
    cpu_cores: u32,
    ram_bytes: u64,
}

/// The groups' quotas, by group.
pub type Quotas = Arc<HashMap<String, Quota>>;

/// How long the groups' quotas are cached (changes through this server apply at once).
const QUOTA_CACHE_TTL: Duration = Duration::from_secs(1);
/// Most groups looked at in one dispatch round.
const MAX_GROUPS_PER_ROUND: u32 = 256;
/// Fewest tasks of each group looked at in one round.
const MIN_PER_GROUP: u32 = 4;

/// A queued task as the router sees it: its placement tags (the tags with routing keys),
/// its group, and what it asks for.
pub fn candidate(task: &TaskRecord, route_tag_keys: &[String]) -> Candidate {
    let tags = task
        .spec
        .tags
        .iter()
        .flatten()
        .filter(|(k, _)| route_tag_keys.iter().any(|r| r == *k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let resources = task.spec.resources.clone().unwrap_or_default();
    Candidate {
        tags,
        group: task.group.clone(),
        priority: task.priority,
        cpu_cores: resources.cpu_count(),
        ram_bytes: resources.ram_bytes(),
        queued_at_ms: tessera_core::time_fmt::unix_ms(task.creation_time),
    }
}

type Submission = (NewTask, oneshot::Sender<Result<TaskRecord, SubmitError>>);

/// Why a task could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("storing the task failed: {0}")]
    Store(#[from] StoreError),
    /// The batch this task was stored with failed.
    #[error("storing the task failed: {0}")]
    Batch(std::sync::Arc<StoreError>),
    /// Nobody answered for the task: the server is shutting down, or what stored it
    /// failed.
    #[error("the task intake has stopped")]
    Stopped,
}

#[derive(Clone)]
pub struct Runner(Arc<Inner>);

/// Where the runner reads secret values when it starts a task that references them.
/// Values are held only while the task's processes are made, never stored or logged.
pub trait SecretSource: Send + Sync {
    /// The value of `key` of `secret` in `group`; the error says what is missing.
    fn value<'a>(
        &'a self,
        group: &'a str,
        secret: &'a str,
        key: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<String, String>>;
}

struct Inner {
    /// Secret values for tasks that reference them (set once, at start).
    secrets: std::sync::OnceLock<Arc<dyn SecretSource>>,
    store: Store,
    /// `None`: no executor, tasks stay queued.
    executor: Option<Arc<dyn Executor>>,
    /// Executors that run whole tasks (Kubernetes), for targets that name them.
    jobs: std::sync::OnceLock<Vec<Arc<dyn JobExecutor>>>,
    cfg: RunnerConfig,
    wake: Notify,
    router: Arc<dyn Router>,
    /// Staging for URL schemes served by filer plugins.
    filers: Arc<dyn tessera_core::staging::Filers>,
    /// One slot pool per target, in the order of `cfg.targets`.
    slots: Vec<Arc<Semaphore>>,
    /// What each driven task asked for, and where: for the targets' CPU/memory budgets.
    placed: Mutex<HashMap<String, Placement>>,
    /// When routing last failed (retries wait a little so a broken router is not hammered).
    route_failed_at: Mutex<Option<std::time::Instant>>,
    /// The groups' quotas, and when they were read.
    quotas: Mutex<Option<(std::time::Instant, Quotas)>>,
    running: Mutex<HashMap<String, CancellationToken>>,
    status: RwLock<ExecutorStatus>,
    last_probe: Mutex<Option<std::time::Instant>>,
    intake: Mutex<Intake>,
}

/// Group commit. A submission waits in `pending`; the first that finds no leader leads:
/// on its own task it stores what is pending in one transaction, and hands what arrived
/// meanwhile to a leader task of its own. One client at a time pays no hop to another
/// task; under load a batch shares one transaction. `pending` holds at most one
/// submission per request in flight, so the server's connection cap bounds it.
#[derive(Default)]
struct Intake {
    pending: Vec<Submission>,
    leading: bool,
}

/// A future run in place that, if dropped before it is done (the request that leads
/// went away), goes on as a task of its own: the submissions it carries are never lost.
struct Detachable(Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>);

impl std::future::Future for Detachable {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let Some(f) = self.0.as_mut() else {
            return std::task::Poll::Ready(());
        };
        let done = f.as_mut().poll(cx);
        if done.is_ready() {
            self.0 = None;
        }
        done
    }
}

impl Drop for Detachable {
    fn drop(&mut self) {
        if let (Some(f), Ok(rt)) = (self.0.take(), tokio::runtime::Handle::try_current()) {
            rt.spawn(f);
        }
    }
}

impl Runner {
    /// Build the runner. Call [`Runner::start`] to reconcile
    /// and begin dispatching. Needs a tokio runtime. Without an executor, tasks are
    /// accepted and stay QUEUED.
    pub fn new(
        store: Store,
        mut cfg: RunnerConfig,
        executor: Option<Arc<dyn Executor>>,
        router: Arc<dyn Router>,
        filers: Arc<dyn tessera_core::staging::Filers>,
    ) -> Runner {
        if cfg.targets.is_empty() {
            cfg.targets.push(TargetConfig {
                spec: TargetSpec {
                    name: "local".into(),
                    ..TargetSpec::default()
                },
                slots: u32::try_from(cfg.max_concurrent_tasks.max(1)).unwrap_or(u32::MAX),
                cpu_cores: None,
                ram_bytes: None,
                isolation: cfg.isolation.clone(),
                job_executor: None,
                pending_timeout: Duration::from_secs(300),
            });
        }
        let status = if executor.is_some() {
            ExecutorStatus::Unknown
        } else {
            ExecutorStatus::Disabled
        };
        metrics::init();
        Runner(Arc::new(Inner {
            secrets: std::sync::OnceLock::new(),
            jobs: std::sync::OnceLock::new(),
            store,
            executor,
            slots: cfg
                .targets
                .iter()
                .map(|t| Arc::new(Semaphore::new(t.slots as usize)))
                .collect(),
            router,
            filers,
            placed: Mutex::new(HashMap::new()),
            route_failed_at: Mutex::new(None),
            quotas: Mutex::new(None),
            cfg,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            status: RwLock::new(status),
            last_probe: Mutex::new(None),
            intake: Mutex::new(Intake::default()),
        }))
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The executors that run whole tasks, for the targets that name them (once, before
    /// [`Runner::start`]; later calls are ignored).
    pub fn set_job_executors(&self, jobs: Vec<Arc<dyn JobExecutor>>) {
        if !jobs.is_empty() && self.0.executor.is_none() {
            self.set_executor_status(ExecutorStatus::Unknown);
        }
        let _ = self.0.jobs.set(jobs);
    }

    fn job_executors(&self) -> &[Arc<dyn JobExecutor>] {
        self.0.jobs.get().map(Vec::as_slice).unwrap_or_default()
    }

    /// The job executor of task `id`'s target, when it runs on one (from the target
    /// recorded in its log).
    fn job_executor_of(&self, task: &TaskRecord) -> Option<Arc<dyn JobExecutor>> {
        let name = task
            .logs
            .last()
            .and_then(|l| l.metadata.as_ref())
            .and_then(|m| m.get(TARGET_METADATA))?;
        let target = self.0.cfg.targets.iter().find(|t| t.spec.name == *name)?;
        self.job_executors().get(target.job_executor?).cloned()
    }

    /// Where secret values come from (once; later calls are ignored).
    pub fn set_secrets(&self, secrets: Arc<dyn SecretSource>) {
        let _ = self.0.secrets.set(secrets);
    }

    /// The values of a task's secret references: its env variables and its files (path,
    /// mode, content).
    pub(crate) async fn resolve_secrets(
        &self,
        task: &TaskRecord,
    ) -> Result<(Vec<(String, String)>, Vec<(String, u32, String)>), String> {
        let extra = &task.extra;
        if extra.secret_env.is_empty() && extra.secret_files.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let source = self
            .0
            .secrets
            .get()
            .ok_or("this server has no secret store")?;
        let mut env = Vec::new();
        for e in &extra.secret_env {
            env.push((
                e.name.clone(),
                source.value(&task.group, &e.secret, &e.key).await?,
            ));
        }
        let mut files = Vec::new();
        for f in &extra.secret_files {
            files.push((
                f.path.clone(),
                f.mode,
                source.value(&task.group, &f.secret, &f.key).await?,
            ));
        }
        Ok((env, files))
    }

    /// Run `command` in the container a task is kept in for a person (human in the
    /// loop). `Err` says why not (the task is not kept, or not here).
    pub async fn exec_in_kept(
        &self,
        task: &TaskRecord,
        command: &[String],
        max_output: usize,
    ) -> Result<tessera_executor::ExecOutput, String> {
        let Some(exec) = &self.0.executor else {
            return Err("this server has no executor".into());
        };
        if task.extra.keep_alive_secs.is_none() {
            return Err("the task's agent does not keep its container (human_in_the_loop)".into());
        }
        let name = drive::keeper_name(task);
        match exec.status(&name).await {
            Ok(Some(tessera_executor::ProcessState::Running)) => {}
            Ok(_) => {
                return Err(format!(
                    "the task is not kept now (it is {}; its container is kept after its command ends)",
                    task.state
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
        exec.exec(&name, command, max_output)
            .await
            .map_err(|e| e.to_string())
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.0.cfg
    }

    pub fn executor_status(&self) -> ExecutorStatus {
        self.0
            .status
            .read()
            .map(|e| e.clone())
            .unwrap_or(ExecutorStatus::Unknown)
    }

    /// The executor's kind (`docker`), or `none`.
    pub fn executor_kind(&self) -> &'static str {
        match (&self.0.executor, self.job_executors().first()) {
            (Some(e), _) => e.kind(),
            (None, Some(j)) => j.kind(),
            (None, None) => "none",
        }
    }

    fn set_executor_status(&self, status: ExecutorStatus) -> bool {
        match self.0.status.write() {
            Ok(mut e) if *e != status => {
                *e = status;
                true
            }
            _ => false,
        }
    }

    /// Number of tasks being driven right now.
    pub fn running_count(&self) -> usize {
        self.0.running.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Why a newly queued task waits, in words a person can act on.
    pub fn queue_reason(&self) -> String {
        let kind = self.executor_kind();
        match self.executor_status() {
            ExecutorStatus::Disabled => {
                "no executor is configured (executor = \"none\"): the task waits until a server with one runs it".into()
            }
            ExecutorStatus::Unreachable(why) => format!("waiting for the {kind} executor: {why}"),
            ExecutorStatus::Unknown => format!("waiting for the {kind} executor to answer"),
            ExecutorStatus::Ready { .. } => format!(
                "waiting for a free task slot ({} of {} in use)",
                self.running_count(),
                self.0.cfg.targets.iter().map(|t| u64::from(t.slots)).sum::<u64>()
            ),
        }
    }

    /// Store a new task (batched with concurrent submissions into one transaction).
    pub async fn submit(&self, mut task: NewTask) -> Result<TaskRecord, SubmitError> {
        if task.reason.is_none() {
            task.reason = Some(self.queue_reason());
        }
        let (tx, rx) = oneshot::channel();
        let lead = match self.0.intake.lock() {
            Ok(mut intake) => {
                intake.pending.push((task, tx));
                !std::mem::replace(&mut intake.leading, true)
            }
            Err(_) => return Err(SubmitError::Stopped),
        };
        if lead {
            Detachable(Some(self.clone().lead_boxed())).await;
        }
        rx.await.map_err(|_| SubmitError::Stopped)?
    }

    /// Store one batch of what is pending (it holds the leader's own submission). What
    /// arrived meanwhile goes to a leader task of its own, so the request that led gets
    /// its answer now.
    async fn lead(self) {
        const MAX_BATCH: usize = 512;
        let batch: Vec<Submission> = match self.0.intake.lock() {
            Ok(mut intake) => {
                let n = intake.pending.len().min(MAX_BATCH);
                intake.pending.drain(..n).collect()
            }
            Err(_) => return,
        };
        self.store_batch(batch).await;
        let more = match self.0.intake.lock() {
            Ok(mut intake) if intake.pending.is_empty() => {
                intake.leading = false;
                false
            }
            Ok(_) => true,
            Err(_) => false,
        };
        if more {
            tokio::spawn(self.lead_boxed());
        }
    }

    /// [`Runner::lead`] with its type spelled out (it spawns itself).
    fn lead_boxed(self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.lead())
    }

    /// Store one batch and answer each submission. One bad row must not fail its
    /// neighbours: a failed batch is stored again a task at a time.
    async fn store_batch(&self, batch: Vec<Submission>) {
        let (tasks, replies): (Vec<NewTask>, Vec<_>) = batch.into_iter().unzip();
        match self.0.store.insert_tasks(&tasks).await {
            Ok(records) => {
                for (reply, record) in replies.into_iter().zip(records) {
                    let _ = reply.send(Ok(record));
                }
                self.0.wake.notify_one();
            }
            // One bad row must not fail its neighbours: retry each on its own.
            Err(e) if tasks.len() > 1 => {
                tracing::warn!(error = %e, count = tasks.len(), "storing a batch failed; storing its tasks one by one");
                for (task, reply) in tasks.into_iter().zip(replies) {
                    let result = self.0.store.insert_tasks(std::slice::from_ref(&task)).await;
                    let _ = reply.send(result.map_err(SubmitError::Store).and_then(|mut r| {
                        r.pop().ok_or_else(|| {
                            SubmitError::Store(StoreError::Corrupt(
                                "the store returned no record".into(),
                            ))
                        })
                    }));
                }
                self.0.wake.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, "storing a new task failed");
                let e = std::sync::Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(SubmitError::Batch(e.clone())));
                }
            }
        }
    }

    /// Cancel a task. QUEUED tasks pass through CANCELING to CANCELED at once; running
    /// ones are killed and cleaned up by their driver, which then writes CANCELED.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let store = &self.0.store;
        match store
            .transition(id, State::Canceling, Some("canceled by user"), None)
            .await?
        {
            None => Ok(match store.get_task(id).await? {
                None => CancelOutcome::NotFound,
                Some(t) if t.state.is_terminal() => CancelOutcome::AlreadyFinished(t.state),
                Some(_) => CancelOutcome::Canceling,
            }),
            Some(previous) => {
                tracing::info!(task_id = id, from = %previous, "cancel requested");
                let token = self.0.running.lock().ok().and_then(|r| r.get(id).cloned());
                if let Some(token) = &token {
                    token.cancel();
                }
                match token {
                    // Nothing runs for a queued task (a driver that just put it back in
                    // the queue is finishing and will not touch it again).
                    _ if previous == State::Queued => {
                        self.finish_canceled(id, None, false).await;
                    }
                    Some(_) => {}
                    // Held here but not driven, or held by another server: its holder
                    // finds it CANCELING ([`Runner::poll_cancels`]) and cleans up; a task
                    // whose holder is gone is cleaned up by the server that adopts it.
                    None => self.0.wake.notify_one(),
                }
                Ok(CancelOutcome::Canceling)
            }
        }
    }

    /// A state change that must not be lost to a passing store error: retried with
    /// backoff for about a minute. (If it still fails, the periodic sweep picks the
    /// task up again.)
    /// With `held`, only while this server holds the task.
    pub(crate) async fn transition_with_retry(
        &self,
        id: &str,
        to: State,
        reason: &str,
        logs: Option<&[tessera_core::tes::TaskLog]>,
        held: bool,
    ) -> Result<Option<State>, StoreError> {
        let owner = held.then_some(self.owner());
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            match self
                .0
                .store
                .transition_held(id, to, Some(reason), logs, owner)
                .await
            {
                Err(e) if attempt < 10 && !matches!(e, StoreError::NotHeld(_)) => {
                    tracing::warn!(task_id = id, error = %e, to = %to, "recording a state failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// This server's instance: the owner of the tasks it holds.
    pub(crate) fn owner(&self) -> &str {
        &self.0.cfg.lease.owner
    }

    /// Write CANCELED. `held`: the task is ours (we were running it); otherwise it was
    /// queued, and nobody holds it.
    async fn finish_canceled(
        &self,
        id: &str,
        logs: Option<&[tessera_core::tes::TaskLog]>,
        held: bool,
    ) {
        match self
            .transition_with_retry(id, State::Canceled, "canceled by user", logs, held)
            .await
        {
            Ok(Some(_)) => {
                metrics::TASKS_FINISHED
                    .with_label_values(&[State::Canceled.as_str()])
                    .inc();
                tracing::info!(task_id = id, "task canceled");
            }
            Ok(None) => {}
            Err(StoreError::NotHeld(_)) => {
                tracing::info!(
                    task_id = id,
                    "another server holds the task now; leaving its cancel to it"
                )
            }
            Err(e) => tracing::error!(task_id = id, error = %e, "recording CANCELED failed"),
        }
    }

    /// Kill and remove every container of the task, and its workspace.
    async fn remove_task_resources(&self, id: &str) {
        if let Some(exec) = &self.0.executor {
            match exec.list(Some(id)).await {
                Ok(processes) => {
                    for p in processes {
                        if let Err(e) = exec.remove(&p.name).await {
                            tracing::warn!(task_id = id, process = %p.name, error = %e, "removing a process failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(task_id = id, error = %e, "listing the task's processes failed")
                }
            }
        }
        let ws = task_dir::TaskDir::new(&self.0.cfg.work_dir, id);
        if let Err(e) = tokio::fs::remove_dir_all(&ws.root).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(task_id = id, error = %e, "removing the workspace failed");
        }
    }

    /// Reconcile unfinished tasks with reality, then dispatch forever.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.clone().lease_loop());
        let runner = self.clone();
        tokio::spawn(async move { runner.dispatch_loop().await })
    }

    /// Renew the leases of every task this server holds, every third of their time to
    /// live, whether or not the executor answers (the tasks stay ours while it is away).
    async fn lease_loop(self) {
        let every = (self.0.cfg.lease.ttl / 3).max(Duration::from_millis(10));
        loop {
            if let Err(e) = self.0.store.renew_leases(&self.0.cfg.lease).await {
                tracing::warn!(error = %e, "renewing task leases failed; will retry");
            }
            tokio::time::sleep(every).await;
        }
    }

    /// Cancels made on any server reach the tasks we hold here: a driven task's driver
    /// is told; a held task without a driver is cleaned up and ended CANCELED.
    async fn poll_cancels(&self) {
        let ids = match self.0.store.canceling_held(self.owner()).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "looking for canceled tasks failed; will retry");
                return;
            }
        };
        for id in ids {
            let token = self.0.running.lock().ok().and_then(|r| r.get(&id).cloned());
            match token {
                Some(token) => token.cancel(),
                None => self.spawn_cancel_cleanup(id),
            }
        }
    }

    /// Clean up a CANCELING task we hold and no driver has, and end it CANCELED.
    /// Registered like a driver, so neither the sweep nor the next poll starts another.
    fn spawn_cancel_cleanup(&self, id: String) {
        match self.0.running.lock() {
            Ok(mut running) if !running.contains_key(&id) => {
                running.insert(id.clone(), CancellationToken::new());
            }
            _ => return,
        }
        let runner = self.clone();
        tokio::spawn(async move {
            if runner.still_held(&id).await {
                if let Ok(Some(task)) = runner.0.store.get_task(&id).await
                    && let Some(job) = runner.job_executor_of(&task)
                    && let Err(e) = job.delete(&id).await
                {
                    tracing::warn!(task_id = %id, error = %e, "deleting the task's job failed");
                }
                runner.remove_task_resources(&id).await;
                runner.finish_canceled(&id, None, true).await;
            }
            if let Ok(mut running) = runner.0.running.lock() {
                running.remove(&id);
            }
        });
    }

    /// Whether we still hold task `id`: checked before removing its processes and
    /// workspace, which another server may be using once it took the task over.
    pub(crate) async fn still_held(&self, id: &str) -> bool {
        match self.0.store.holder(id).await {
            Ok(holder) => holder.as_deref() == Some(self.owner()),
            Err(e) => {
                tracing::warn!(task_id = id, error = %e, "reading who holds the task failed");
                false
            }
        }
    }

    /// Check the executor; on a change, log it and update the reason of queued tasks.
    async fn probe_executor(&self) -> bool {
        if self.0.executor.is_none() && self.job_executors().is_empty() {
            return false;
        }
        // Re-ask at most once a second: cheap, and a vanished executor is noticed before
        // more tasks are claimed for it.
        let due = self
            .0
            .last_probe
            .lock()
            .map(|mut last| {
                let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            })
            .unwrap_or(true);
        if !due {
            return self.executor_status().is_ready();
        }
        let capacity = match (&self.0.executor, self.job_executors().first()) {
            (Some(exec), _) => exec.capacity().await,
            (None, Some(job)) => job.capacity().await,
            (None, None) => return false,
        };
        let status = match capacity {
            Ok(c) => ExecutorStatus::Ready {
                version: c.version,
                cpus: c.cpus,
                memory_bytes: c.memory_bytes,
            },
            Err(tessera_executor::ExecError::Unreachable(why)) => ExecutorStatus::Unreachable(why),
            Err(e) => ExecutorStatus::Unreachable(e.to_string()),
        };
        let ready = status.is_ready();
        if self.set_executor_status(status.clone()) {
            let kind = self.executor_kind();
            match &status {
                ExecutorStatus::Ready { version, .. } => {
                    tracing::info!(executor = kind, version = %version, "the executor is reachable")
                }
                ExecutorStatus::Unreachable(why) => {
                    tracing::warn!(executor = kind, reason = %why, "the executor is unreachable; tasks stay QUEUED until it answers")
                }
                _ => {}
            }
            if let Err(e) = self
                .0
                .store
                .set_reason_where_state(State::Queued, &self.queue_reason())
                .await
            {
                tracing::warn!(error = %e, "updating the reason of queued tasks failed");
            }
        }
        ready
    }

    /// Mark the executor unreachable after a call failed because of it.
    fn executor_lost(&self, why: &str) {
        if self.set_executor_status(ExecutorStatus::Unreachable(why.to_string())) {
            tracing::warn!(executor = self.executor_kind(), reason = %why, "lost the executor");
        }
    }

    async fn dispatch_loop(self) {
        let mut last_sweep: Option<std::time::Instant> = None;
        let mut last_cancel_poll: Option<std::time::Instant> = None;
        loop {
            if last_cancel_poll.is_none_or(|t| t.elapsed() >= CANCEL_POLL_EVERY) {
                last_cancel_poll = Some(std::time::Instant::now());
                self.poll_cancels().await;
            }
            let was_ready = self.executor_status().is_ready();
            if self.probe_executor().await {
                // Each time the executor comes (back): what was left behind while it could
                // not be reached (a cancel's processes, a crash's) goes now.
                if !was_ready {
                    self.remove_orphans().await;
                }
                // Adopt tasks nobody drives (after a restart, a lost executor, a store
                // error): at once when the executor comes (back), then every few seconds.
                if !was_ready || last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                    last_sweep = Some(std::time::Instant::now());
                    if let Err(e) = self.sweep().await {
                        tracing::error!(error = %e, "sweeping unfinished tasks failed; will retry");
                    }
                }
                if let Err(e) = self.dispatch_once().await {
                    tracing::error!(error = %e, "dispatching failed; will retry");
                }
            }
            tokio::select! {
                _ = self.0.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Register a driver for `task` on target `t` and start it (unless something else
    /// already works on the task here). `note` goes into the task's system logs.
    fn spawn_driver(
        &self,
        task: TaskRecord,
        permit: tokio::sync::OwnedSemaphorePermit,
        t: usize,
        note: Option<String>,
    ) {
        let token = CancellationToken::new();
        match self.0.running.lock() {
            Ok(mut running) if !running.contains_key(&task.id) => {
                running.insert(task.id.clone(), token.clone());
            }
            _ => return,
        }
        let resources = task.spec.resources.clone().unwrap_or_default();
        let placement = Placement {
            target: t,
            group: task.group.clone(),
            cpu_cores: resources.cpu_count(),
            ram_bytes: resources.ram_bytes(),
        };
        if let Ok(mut placed) = self.0.placed.lock() {
            placed.insert(task.id.clone(), placement);
        }
        if let Some(j) = self.0.cfg.targets[t].job_executor {
            match self.job_executors().get(j).cloned() {
                Some(exec) => {
                    tokio::spawn(self.clone().drive_job(exec, task, token, permit, t, note));
                }
                None => tracing::error!(
                    target = t,
                    "the target names a job executor that is not set"
                ),
            }
            return;
        }
        // Dispatch happens only while an executor answers.
        let Some(exec) = self.0.executor.clone() else {
            return;
        };
        tokio::spawn(self.clone().drive(exec, task, token, permit, t, note));
    }

    fn is_driven(&self, id: &str) -> bool {
        self.0
            .running
            .lock()
            .map(|r| r.contains_key(id))
            .unwrap_or(true)
    }

    async fn dispatch_once(&self) -> Result<(), StoreError> {
        // After a router failure, retry once a second rather than on every wake-up.
        if self
            .0
            .route_failed_at
            .lock()
            .is_ok_and(|t| t.is_some_and(|t| t.elapsed() < Duration::from_secs(1)))
        {
            return Ok(());
        }
        loop {
            let free = self.free_capacity();
            let total: u64 = free.iter().map(|f| u64::from(f.slots)).sum();
            if total == 0 {
                return Ok(());
            }
            // Look a little past the free slots, so a task that fits can pass one that
            // waits for a busy target.
            let limit = u32::try_from((total * 4).clamp(16, 1024)).unwrap_or(1024);
            let queued = self.fair_queue(limit).await?;
            if queued.is_empty() {
                return Ok(());
            }
            let started = self.route_and_start(queued, free).await?;
            if started == 0 {
                return Ok(());
            }
        }
    }

    /// The groups' quotas (cached for [`QUOTA_CACHE_TTL`]).
    pub async fn quotas(&self) -> Result<Quotas, StoreError> {
        if let Ok(q) = self.0.quotas.lock()
            && let Some((at, q)) = q.as_ref()
            && at.elapsed() < QUOTA_CACHE_TTL
        {
            return Ok(q.clone());
        }
        let fresh: Quotas = Arc::new(self.0.store.quotas().await?.into_iter().collect());
        if let Ok(mut q) = self.0.quotas.lock() {
            *q = Some((std::time::Instant::now(), fresh.clone()));
        }
        Ok(fresh)
    }

    /// Read the quotas again on next use (after a change), and look at the queue.
    pub fn forget_quotas(&self) {
        if let Ok(mut q) = self.0.quotas.lock() {
            *q = None;
        }
        self.0.wake.notify_one();
    }

    /// Up to about `limit` queued tasks in the order they should start: one of each
    /// group per round (see [`fair::interleave`]), without those their group's quota
    /// holds back (they are told why).
    async fn fair_queue(&self, limit: u32) -> Result<Vec<TaskRecord>, StoreError> {
        let store = &self.0.store;
        let groups = store.queued_groups(MAX_GROUPS_PER_ROUND).await?;
        let per_group = match u32::try_from(groups.len()) {
            Ok(0) => return Ok(Vec::new()),
            Ok(1) => limit,
            Ok(n) => (limit / n).max(MIN_PER_GROUP),
            Err(_) => MIN_PER_GROUP,
        };
        let mut queues = Vec::with_capacity(groups.len());
        for g in groups {
            let q = store.oldest_queued_in(&g, per_group).await?;
            queues.push((g, q));
        }
        let mut started: HashMap<String, u32> = HashMap::new();
        if let Ok(placed) = self.0.placed.lock() {
            for p in placed.values() {
                *started.entry(p.group.clone()).or_default() += 1;
            }
        }
        let ordered = self
            .apply_agent_limits(fair::interleave(queues, &started))
            .await?;
        let quotas = self.quotas().await?;
        let mut limited: Vec<String> = ordered
            .iter()
            .filter(|t| quotas.get(&t.group).is_some_and(Quota::limits_running))
            .map(|t| t.group.clone())
            .collect();
        if limited.is_empty() {
            return Ok(ordered);
        }
        limited.sort();
        limited.dedup();
        // Counted across every server on the store.
        let active = store.active_in(&limited).await?;
        let (kept, held) = fair::apply_quotas(ordered, &quotas, fair::usage(&active));
        for (task, reason) in &held {
            self.wait_with_reason(task, reason).await;
        }
        Ok(kept)
    }

    /// What each target has free now (slots, and CPU/memory left in its budgets).
    fn free_capacity(&self) -> Vec<Free> {
        let placed = self.0.placed.lock().map(|p| p.clone()).unwrap_or_default();
        self.0
            .cfg
            .targets
            .iter()
            .zip(&self.0.slots)
            .enumerate()
            .map(|(i, (t, slots))| {
                let (mut cores, mut ram) = (0u64, 0u64);
                for p in placed.values().filter(|p| p.target == i) {
                    cores += u64::from(p.cpu_cores);
                    ram = ram.saturating_add(p.ram_bytes);
                }
                Free {
                    slots: u32::try_from(slots.available_permits()).unwrap_or(u32::MAX),
                    cpu_cores: t.cpu_cores.map_or(u32::MAX, |c| {
                        u32::try_from(u64::from(c).saturating_sub(cores)).unwrap_or(0)
                    }),
                    ram_bytes: t.ram_bytes.map_or(u64::MAX, |r| r.saturating_sub(ram)),
                }
            })
            .collect()
    }

    /// Route queued tasks (oldest first) through the router, start those it places, and
    /// give the others the router's reason. Returns how many started.
    async fn route_and_start(
        &self,
        queued: Vec<TaskRecord>,
        free: Vec<Free>,
    ) -> Result<usize, StoreError> {
        let targets: Vec<(TargetSpec, Free)> = self
            .0
            .cfg
            .targets
            .iter()
            .map(|t| t.spec.clone())
            .zip(free)
            .collect();
        let round = route_round(
            &self.0.router,
            &targets,
            &self.0.cfg.route_tag_keys,
            &queued,
        )
        .await;
        for (task, reason) in &round.waits {
            self.wait_with_reason(task, reason).await;
        }
        if let Some(e) = &round.failure {
            metrics::ROUTING_FAILURES.inc();
            tracing::warn!(error = %e, "routing failed; the tasks stay queued");
        }
        if let Ok(mut at) = self.0.route_failed_at.lock() {
            *at = round.failure.as_ref().map(|_| std::time::Instant::now());
        }
        self.start_all(round.runs).await
    }

    /// Keep a queued task waiting, with `reason` (written only when it changed).
    /// Hold back tasks whose agent runs its `max_concurrent_tasks` already (counted
    /// across servers from the store).
    async fn apply_agent_limits(
        &self,
        tasks: Vec<TaskRecord>,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let mut limits: HashMap<fair::AgentKey, u32> = HashMap::new();
        let mut active: HashMap<fair::AgentKey, u32> = HashMap::new();
        for t in &tasks {
            let Some(agent) = &t.extra.agent else {
                continue;
            };
            let key = (t.group.clone(), agent.clone());
            if limits.contains_key(&key) || active.contains_key(&key) {
                continue;
            }
            let limit = self
                .0
                .store
                .named(None, &t.group, agent)
                .await?
                .and_then(|row| {
                    serde_json::from_str::<tessera_core::agent::AgentSpec>(&row.data).ok()
                })
                .and_then(|a| a.max_concurrent_tasks);
            let Some(limit) = limit else {
                active.insert(key, 0);
                continue;
            };
            let n = self
                .0
                .store
                .active_tagged(&t.group, tessera_core::agent::AGENT_TAG, agent)
                .await?;
            active.insert(key.clone(), u32::try_from(n).unwrap_or(u32::MAX));
            limits.insert(key, limit);
        }
        if limits.is_empty() {
            return Ok(tasks);
        }
        let (kept, held) = fair::apply_agent_limits(tasks, &limits, active);
        for (task, reason) in &held {
            self.wait_with_reason(task, reason).await;
        }
        Ok(kept)
    }

    async fn wait_with_reason(&self, task: &TaskRecord, reason: &str) {
        if task.reason.as_deref() == Some(reason) {
            return;
        }
        if let Err(e) = self.0.store.set_reason(&task.id, Some(reason)).await {
            tracing::warn!(task_id = %task.id, error = %e, "recording why a task waits failed");
        }
    }

    /// Claim routed tasks (one transaction for all) and start a driver for each on its
    /// target. A task no longer queued (canceled meanwhile) is skipped, and one whose
    /// target filled up since routing waits for the next round. Returns how many started.
    async fn start_all(&self, runs: Vec<(&TaskRecord, usize)>) -> Result<usize, StoreError> {
        let mut ready = Vec::with_capacity(runs.len());
        for (task, t) in runs {
            match self
                .0
                .slots
                .get(t)
                .and_then(|s| s.clone().try_acquire_owned().ok())
            {
                Some(permit) => ready.push((task, t, permit)),
                None => {
                    let name = &self.0.cfg.targets[t].spec.name;
                    self.wait_with_reason(task, &format!("target {name} has no free slot"))
                        .await;
                }
            }
        }
        let ids: Vec<&str> = ready.iter().map(|(task, _, _)| task.id.as_str()).collect();
        let claimed: std::collections::HashSet<String> = self
            .0
            .store
            .claim_ids(&ids, None, &self.0.cfg.lease)
            .await?
            .into_iter()
            .collect();
        let mut started = 0;
        for (task, t, permit) in ready {
            if !claimed.contains(&task.id) {
                continue;
            }
            let mut task = task.clone();
            task.state = State::Initializing;
            task.reason = Some(tessera_store::CLAIM_REASON.to_string());
            tracing::info!(task_id = %task.id, target = %self.0.cfg.targets[t].spec.name, "task placed");
            self.spawn_driver(task, permit, t, None);
            started += 1;
        }
        Ok(started)
    }

    /// Every task that is past QUEUED, has no driver here, and is ours or free (its
    /// holder's lease ran out): take it, then finish its cancel, or resume it from what
    /// the executor has (the driver's code is the same for both).
    async fn sweep(&self) -> Result<(), StoreError> {
        let lease = &self.0.cfg.lease;
        // Oldest first, a page at a time; each task read in full only when it is resumed.
        const STARTED: [State; 4] = [
            State::Canceling,
            State::Initializing,
            State::Running,
            State::Paused,
        ];
        let mut after = None;
        loop {
            let page = self
                .0
                .store
                .tasks_in_states(&STARTED, after, SWEEP_PAGE)
                .await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.seq);
            for stub in page.into_iter().filter(|t| !self.is_driven(&t.id)) {
                let ours = stub.owner.as_deref() == Some(self.owner());
                if !ours && !stub.lease_free {
                    continue; // another server holds it
                }
                if stub.state == State::Canceling {
                    if let Adoption::Adopted { from } = self.0.store.adopt(&stub.id, lease).await? {
                        self.log_adoption(&stub.id, from.as_deref());
                        self.spawn_cancel_cleanup(stub.id);
                    }
                    continue;
                }
                let Some(task) = self.0.store.get_task(&stub.id).await? else {
                    continue;
                };
                if task.state.is_terminal() {
                    continue;
                }
                // Back on the target it was placed on, when that is still configured.
                let placed_on = task
                    .logs
                    .last()
                    .and_then(|l| l.metadata.as_ref())
                    .and_then(|m| m.get(TARGET_METADATA))
                    .and_then(|name| self.0.cfg.targets.iter().position(|t| t.spec.name == *name));
                let order: Vec<usize> = match placed_on {
                    Some(t) => vec![t],
                    None => (0..self.0.slots.len()).collect(),
                };
                let Some((t, permit)) = order.into_iter().find_map(|t| {
                    self.0.slots[t]
                        .clone()
                        .try_acquire_owned()
                        .ok()
                        .map(|p| (t, p))
                }) else {
                    continue; // no free slot there now; the next sweep continues
                };
                let Adoption::Adopted { from } = self.0.store.adopt(&task.id, lease).await? else {
                    continue; // another server was quicker
                };
                self.log_adoption(&task.id, from.as_deref());
                let note = from.filter(|f| f != self.owner()).map(|f| {
                    format!(
                        "resumed by server {} after the lease of server {f} ran out",
                        self.owner()
                    )
                });
                tracing::info!(task_id = %task.id, state = %task.state, "resuming task that has no driver");
                self.spawn_driver(task, permit, t, note);
            }
        }
    }

    fn log_adoption(&self, id: &str, from: Option<&str>) {
        match from {
            Some(from) if from != self.owner() => {
                metrics::TASKS_ADOPTED.inc();
                tracing::info!(
                    task_id = id,
                    from,
                    "adopting a task whose holder's lease ran out"
                )
            }
            _ => {}
        }
    }

    /// Remove processes and workspaces this server left behind for tasks that are
    /// finished (or unknown), and what the executor keeps beside processes that are gone.
    async fn remove_orphans(&self) {
        // What exists first, then which tasks are live: a process or workspace made in
        // between belongs to a task that the second read sees as live.
        let processes = match &self.0.executor {
            Some(exec) => exec.list(None).await.ok(),
            None => None,
        };
        let mut jobs = Vec::new();
        for exec in self.job_executors() {
            if let Ok(ids) = exec.list().await {
                jobs.push((exec.clone(), ids));
            }
        }
        let mut workspaces = Vec::new();
        if let Ok(mut dir) = tokio::fs::read_dir(&self.0.cfg.work_dir).await {
            while let Ok(Some(entry)) = dir.next_entry().await {
                workspaces.push(entry);
            }
        }
        let Ok(unfinished) = self.0.store.unfinished_task_ids().await else {
            return;
        };
        let live: std::collections::HashSet<String> = unfinished.into_iter().collect();
        if let (Some(exec), Some(processes)) = (&self.0.executor, processes) {
            for p in processes.iter().filter(|p| !live.contains(&p.task_id)) {
                tracing::info!(task_id = %p.task_id, process = %p.name, "removing the process of a finished task");
                if let Err(e) = exec.remove(&p.name).await {
                    tracing::warn!(process = %p.name, error = %e, "removing a process failed");
                }
            }
            exec.tidy().await;
        }
        for (exec, ids) in jobs {
            for id in ids.iter().filter(|id| !live.contains(*id)) {
                tracing::info!(task_id = %id, executor = exec.kind(), "removing the job of a finished or unknown task");
                if let Err(e) = exec.delete(id).await {
                    tracing::warn!(task_id = %id, error = %e, "removing a job failed");
                }
            }
        }
        for entry in workspaces {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !live.contains(&name) {
                tracing::info!(task_id = %name, "removing workspace of a finished task");
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Detachable;
    use tokio::sync::oneshot;

    /// The router is asked per group, with the task's own group.
    #[test]
    fn a_candidate_carries_its_tasks_group() {
        let task = tessera_core::TaskRecord {
            id: "t".into(),
            seq: 1,
            state: tessera_core::State::Queued,
            reason: None,
            group: "lab".into(),
            origin: Default::default(),
            priority: 0,
            extra: Default::default(),
            spec: tessera_core::tes::Task::default(),
            logs: Vec::new(),
            creation_time: time::OffsetDateTime::UNIX_EPOCH,
        };
        assert_eq!(super::candidate(&task, &[]).group, "lab");
    }

    /// The request leading a group commit goes away mid-way: what it carried is finished
    /// on a task of its own.
    #[tokio::test]
    async fn a_dropped_detachable_future_finishes_on_its_own() {
        let (go_tx, go_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel::<&str>();
        let mut lead = Box::pin(Detachable(Some(Box::pin(async move {
            let _ = go_rx.await;
            let _ = done_tx.send("stored");
        }))));
        // Polled once (it waits for `go`), then dropped.
        assert!(futures_util::FutureExt::now_or_never(&mut lead).is_none());
        drop(lead);
        go_tx.send(()).unwrap();
        assert_eq!(done_rx.await.unwrap(), "stored");
    }
}
