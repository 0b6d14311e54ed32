//! The task runner: takes tasks in (with group commit), dispatches them to free slots,
//! drives each one through staging, its executors in order and output staging, handles
//! cancel, and on start reconciles every unfinished task with what Docker really has.
//!
//! A task's progress is recorded in its log entry before each step (an executor log is
//! written before its container is created, and a container is removed only after its
//! result is stored), so the same `drive` code both starts a task and resumes one after
//! a crash, and no executor runs twice.

mod drive;
pub mod metrics;
pub mod staging;
pub mod tail;
pub mod workspace;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tessera_core::State;
use tessera_core::task::{NewTask, TaskRecord};
use tessera_docker::DockerEngine;
use tessera_store::{Store, StoreError};
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The label every container carries, with the task id as its value.
pub const TASK_LABEL: &str = "tessera.task-id";
/// The label naming the server instance (its data directory) that owns a container, so
/// that several servers can share one Docker engine without reaping each other's.
pub const INSTANCE_LABEL: &str = "tessera.instance";

#[derive(Debug, Clone)]
pub enum ExecutorConfig {
    Docker {
        socket: Option<String>,
    },
    /// No executor: tasks are accepted and stay QUEUED (benchmarks, API-only nodes).
    Disabled,
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// This server's identity on the Docker engine (stable across restarts).
    pub instance: String,
    /// Task workspaces live in `work_dir/<task id>`.
    pub work_dir: PathBuf,
    pub max_concurrent_tasks: usize,
    /// How much of each executor's stdout/stderr the task log keeps (the tail).
    pub log_tail_bytes: usize,
    /// Canonical host directories `file://` URLs may use.
    pub file_roots: Vec<PathBuf>,
    pub executor: ExecutorConfig,
    /// Network for containers unless the task's `network` backend parameter says otherwise.
    pub default_network: Option<String>,
    /// How often live stdout/stderr of running executors is written to the store.
    pub log_flush_interval: Duration,
}

/// What the executor side looks like right now, for readiness and queue reasons.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineStatus {
    Disabled,
    Unknown,
    Ready {
        version: String,
        cpus: i64,
        memory_bytes: i64,
    },
    Unreachable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    NotFound,
    /// Already terminal: cancel is a no-op.
    AlreadyFinished(State),
    Canceling,
}

type Submission = (NewTask, oneshot::Sender<Result<TaskRecord, String>>);

#[derive(Clone)]
pub struct Runner(Arc<Inner>);

struct Inner {
    store: Store,
    docker: Option<DockerEngine>,
    cfg: RunnerConfig,
    wake: Notify,
    slots: Arc<Semaphore>,
    running: Mutex<HashMap<String, CancellationToken>>,
    engine: RwLock<EngineStatus>,
    intake: mpsc::Sender<Submission>,
}

impl Runner {
    /// Build the runner and start its intake loop. Call [`Runner::start`] to reconcile
    /// and begin dispatching. Needs a tokio runtime.
    pub fn new(store: Store, cfg: RunnerConfig) -> Result<Runner, String> {
        let docker = match &cfg.executor {
            ExecutorConfig::Docker { socket } => Some(
                DockerEngine::connect(socket.as_deref())
                    .map_err(|e| format!("Docker engine client: {e}"))?,
            ),
            ExecutorConfig::Disabled => None,
        };
        let engine = if docker.is_some() {
            EngineStatus::Unknown
        } else {
            EngineStatus::Disabled
        };
        metrics::init();
        let (tx, rx) = mpsc::channel(8192);
        let runner = Runner(Arc::new(Inner {
            store,
            docker,
            slots: Arc::new(Semaphore::new(cfg.max_concurrent_tasks.max(1))),
            cfg,
            wake: Notify::new(),
            running: Mutex::new(HashMap::new()),
            engine: RwLock::new(engine),
            intake: tx,
        }));
        tokio::spawn(runner.clone().intake_loop(rx));
        Ok(runner)
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.0.cfg
    }

    pub fn engine_status(&self) -> EngineStatus {
        self.0
            .engine
            .read()
            .map(|e| e.clone())
            .unwrap_or(EngineStatus::Unknown)
    }

    fn set_engine_status(&self, status: EngineStatus) -> bool {
        match self.0.engine.write() {
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
        match self.engine_status() {
            EngineStatus::Disabled => {
                "no executor is configured (executor = \"none\"): the task waits until a server with one runs it".into()
            }
            EngineStatus::Unreachable(why) => format!("waiting for the Docker engine: {why}"),
            EngineStatus::Unknown => "waiting for the Docker engine to answer".into(),
            EngineStatus::Ready { .. } => format!(
                "waiting for a free task slot ({} of {} in use)",
                self.running_count(),
                self.0.cfg.max_concurrent_tasks
            ),
        }
    }

    /// Store a new task (batched with concurrent submissions into one transaction).
    pub async fn submit(&self, mut task: NewTask) -> Result<TaskRecord, String> {
        if task.reason.is_none() {
            task.reason = Some(self.queue_reason());
        }
        let (tx, rx) = oneshot::channel();
        self.0
            .intake
            .send((task, tx))
            .await
            .map_err(|_| "the task intake has stopped".to_string())?;
        rx.await
            .map_err(|_| "the task intake dropped the request".to_string())?
    }

    async fn intake_loop(self, mut rx: mpsc::Receiver<Submission>) {
        const MAX_BATCH: usize = 512;
        let mut batch: Vec<Submission> = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
            let (tasks, replies): (Vec<NewTask>, Vec<_>) = batch.drain(..).unzip();
            match self.0.store.insert_tasks(&tasks).await {
                Ok(records) => {
                    for (reply, record) in replies.into_iter().zip(records) {
                        let _ = reply.send(Ok(record));
                    }
                    self.0.wake.notify_one();
                }
                Err(e) => {
                    tracing::error!(error = %e, count = tasks.len(), "storing new tasks failed");
                    for reply in replies {
                        let _ = reply.send(Err(format!("storing the task failed: {e}")));
                    }
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
                match token {
                    Some(token) => token.cancel(),
                    None if previous == State::Queued => {
                        self.finish_canceled(id, None).await;
                    }
                    // Claimed but not driven yet, or orphaned: clean up here; a driver that
                    // registers meanwhile sees CANCELING and does the same, and the first
                    // CANCELED write wins.
                    None => {
                        let runner = self.clone();
                        let id = id.to_string();
                        tokio::spawn(async move {
                            runner.remove_task_resources(&id).await;
                            runner.finish_canceled(&id, None).await;
                        });
                    }
                }
                Ok(CancelOutcome::Canceling)
            }
        }
    }

    async fn finish_canceled(&self, id: &str, logs: Option<&[tessera_core::tes::TaskLog]>) {
        match self
            .0
            .store
            .transition(id, State::Canceled, Some("canceled by user"), logs)
            .await
        {
            Ok(Some(_)) => {
                metrics::TASKS_FINISHED
                    .with_label_values(&[State::Canceled.as_str()])
                    .inc();
                tracing::info!(task_id = id, "task canceled");
            }
            Ok(None) => {}
            Err(e) => tracing::error!(task_id = id, error = %e, "recording CANCELED failed"),
        }
    }

    /// Kill and remove every container of the task, and its workspace.
    async fn remove_task_resources(&self, id: &str) {
        if let Some(docker) = &self.0.docker {
            match docker.list_by_label(TASK_LABEL, Some(id)).await {
                Ok(containers) => {
                    for c in containers {
                        if let Err(e) = docker.remove(&c.name).await {
                            tracing::warn!(task_id = id, container = %c.name, error = %e, "removing container failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(task_id = id, error = %e, "listing the task's containers failed")
                }
            }
        }
        let ws = workspace::Workspace::new(&self.0.cfg.work_dir, id);
        if let Err(e) = tokio::fs::remove_dir_all(&ws.root).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(task_id = id, error = %e, "removing the workspace failed");
        }
    }

    /// Reconcile unfinished tasks with reality, then dispatch forever.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move { runner.dispatch_loop().await })
    }

    /// Check the engine; on a change, log it and update the reason of queued tasks.
    async fn probe_engine(&self) -> bool {
        let Some(docker) = &self.0.docker else {
            return false;
        };
        if matches!(self.engine_status(), EngineStatus::Ready { .. }) {
            return true;
        }
        let status = match docker.info().await {
            Ok(info) => EngineStatus::Ready {
                version: info.version,
                cpus: i64::from(info.cpus),
                memory_bytes: i64::try_from(info.memory_bytes).unwrap_or(i64::MAX),
            },
            Err(e) => EngineStatus::Unreachable(e.to_string()),
        };
        let ready = matches!(status, EngineStatus::Ready { .. });
        if self.set_engine_status(status.clone()) {
            match &status {
                EngineStatus::Ready { version, .. } => {
                    tracing::info!(docker_version = %version, "Docker engine is reachable")
                }
                EngineStatus::Unreachable(why) => {
                    tracing::warn!(reason = %why, "Docker engine is unreachable; tasks stay QUEUED until it answers")
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

    /// Mark the engine unreachable after a call failed because of it.
    fn engine_lost(&self, why: &str) {
        if self.set_engine_status(EngineStatus::Unreachable(why.to_string())) {
            tracing::warn!(reason = %why, "lost the Docker engine");
        }
    }

    async fn dispatch_loop(self) {
        let mut reconciled = false;
        loop {
            if self.probe_engine().await {
                if !reconciled {
                    match self.reconcile().await {
                        Ok(()) => reconciled = true,
                        Err(e) => {
                            tracing::error!(error = %e, "reconciling unfinished tasks failed; will retry")
                        }
                    }
                }
                if reconciled && let Err(e) = self.dispatch_once().await {
                    tracing::error!(error = %e, "dispatching failed; will retry");
                }
            }
            tokio::select! {
                _ = self.0.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    async fn dispatch_once(&self) -> Result<(), StoreError> {
        loop {
            let free = self.0.slots.available_permits();
            if free == 0 {
                return Ok(());
            }
            let claimed = self.0.store.claim_queued(free as u32).await?;
            if claimed.is_empty() {
                return Ok(());
            }
            for task in claimed {
                let Ok(permit) = self.0.slots.clone().try_acquire_owned() else {
                    // Cannot happen (we claimed at most `free`), but never lose a task.
                    self.0
                        .store
                        .transition(&task.id, State::Queued, Some(&self.queue_reason()), None)
                        .await?;
                    continue;
                };
                tokio::spawn(self.clone().drive(task, permit));
            }
        }
    }

    /// After a restart: finish cancels, resume tasks that were being driven, and remove
    /// containers that belong to no unfinished task.
    async fn reconcile(&self) -> Result<(), StoreError> {
        let unfinished = self.0.store.unfinished_tasks().await?;
        let mut live_ids = std::collections::HashSet::new();
        for task in unfinished {
            live_ids.insert(task.id.clone());
            match task.state {
                State::Queued => {}
                State::Canceling => {
                    self.remove_task_resources(&task.id).await;
                    self.finish_canceled(&task.id, None).await;
                }
                _ => {
                    tracing::info!(task_id = %task.id, state = %task.state, "resuming task after restart");
                    let Ok(permit) = self.0.slots.clone().acquire_owned().await else {
                        continue;
                    };
                    tokio::spawn(self.clone().drive(task, permit));
                }
            }
        }
        if let Some(docker) = &self.0.docker
            && let Ok(containers) = docker
                .list_by_label(INSTANCE_LABEL, Some(&self.0.cfg.instance))
                .await
        {
            for c in containers {
                let owner = c.labels.get(TASK_LABEL).cloned().unwrap_or_default();
                if !live_ids.contains(&owner) {
                    tracing::info!(task_id = %owner, container = %c.name, "removing container of a finished task");
                    let _ = docker.remove(&c.name).await;
                }
            }
        }
        Ok(())
    }
}
