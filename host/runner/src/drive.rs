//! Driving one task from INITIALIZING to a terminal state, or resuming it: the driver
//! gathers the facts, asks [`step::next`] what to do, performs that step through the
//! executor and the store, and asks again. The decisions are all in `step.rs`; this file
//! only does them.

use crate::spec::process_spec;
use crate::staging::{self, Staged};
use crate::step::{self, ExecutorFacts, Facts, Observed, Step};
use crate::tail::Tail;
use crate::task_dir::{TaskDir, plan_mounts};
use crate::{Runner, metrics};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera_core::State;
use tessera_core::task::TaskRecord;
use tessera_core::tes::{ExecutorLog, TaskLog};
use tessera_core::time_fmt::{end_not_before, format_rfc3339, now_rfc3339};
use tessera_executor::{ExecError, Executor, Isolation, LogChunk, ProcessState, process_name};
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Retries of a save the next step depends on (with backoff from 50 ms: about 3 s).
const SAVE_RETRIES: u32 = 6;
/// Times the executor may say a process exists and then not report it before the task
/// fails: more is an executor that contradicts itself.
const CREATE_CONFLICTS: u32 = 5;

/// How a step ended when it did not simply succeed.
enum Stop {
    Canceled,
    /// SYSTEM_ERROR with this reason.
    System(String),
    /// The executor went away before anything ran: back to QUEUED.
    Requeue(String),
    /// The executor went away while executors were running: leave the task as it is;
    /// the runner's sweep resumes it (following its processes) once the executor is back.
    ExecutorLost(String),
    /// The store did not take something the next step depends on (a start before its
    /// process is created, a result before its process is removed): leave the task and
    /// its processes as they are; the sweep resumes it once the store answers.
    StoreLost(String),
    /// Another server took the task over (our lease ran out): leave everything to it.
    NotHeld,
}

struct Drive {
    runner: Runner,
    exec: Arc<dyn Executor>,
    task: TaskRecord,
    dir: TaskDir,
    token: CancellationToken,
    logs: Vec<TaskLog>,
    last_flush: Instant,
    /// What the executor has of each executor's process (asked once when the driver
    /// starts; kept up to date by the driver's own steps after that).
    observed: Vec<Observed>,
    /// When this driver started executor `.0`: its wall-clock start and the same moment
    /// on the monotonic clock, so that its end is `start + elapsed` (one clock: the end
    /// is never before the start, and run_ms is exactly end minus start).
    exec_started: Option<(usize, OffsetDateTime, Instant)>,
    /// How many times in a row the executor said a process exists that it then did not
    /// report.
    create_conflicts: u32,
    /// The driver stopped with the task unfinished, for the sweep to resume.
    left_unfinished: bool,
    /// How the target isolates the task's processes.
    isolation: Isolation,
    /// The task's maximum run time.
    max_run_time: Duration,
    /// A save found that another server holds the task now.
    not_held: bool,
    /// The values of the task's secret env references, once read (only in memory).
    secret_env: Option<Vec<(String, String)>>,
}

/// The process a task is kept in for a person after its command ends (human in the
/// loop): numbered after its executors, in its current attempt.
pub(crate) fn keeper_name(task: &TaskRecord) -> String {
    process_name(
        &task.id,
        task.logs.len().saturating_sub(1),
        task.executors().len(),
    )
}

/// The metadata key of when a kept task is let go (RFC 3339).
const KEEP_UNTIL: &str = "keep_alive_until";

impl Runner {
    /// Drive one task. The caller registered `token` in `running` before spawning us,
    /// so the sweep never starts a second driver for the same task.
    pub(crate) async fn drive(
        self,
        exec: Arc<dyn Executor>,
        task: TaskRecord,
        token: CancellationToken,
        _permit: OwnedSemaphorePermit,
        target: usize,
        note: Option<String>,
    ) {
        let id = task.id.clone();
        let target = self.0.cfg.targets[target].clone();
        let max_run_time = task
            .spec
            .resources
            .as_ref()
            .and_then(|r| r.max_run_time())
            .unwrap_or(self.0.cfg.max_run_time);
        let span = tracing::info_span!("task", task_id = %id);
        let mut drive = Drive {
            dir: TaskDir::new(&self.0.cfg.work_dir, &id),
            runner: self.clone(),
            exec,
            logs: task.logs.clone(),
            observed: vec![Observed::Absent; task.executors().len()],
            task,
            token,
            last_flush: Instant::now(),
            exec_started: None,
            create_conflicts: 0,
            left_unfinished: false,
            isolation: target.isolation,
            max_run_time,
            not_held: false,
            secret_env: None,
        };
        drive.meta(crate::TARGET_METADATA, target.spec.name);
        if let Some(note) = note {
            drive.system_log(note);
        }
        drive.run().instrument(span.clone()).await;
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&id);
        }
        if drive.left_unfinished {
            // A cancel that came after the driver stopped looking: it found the driver
            // registered and left the rest to it. Unregistered now, a later cancel
            // cleans up itself; one that came before shows here as CANCELING.
            drive.finish_late_cancel().instrument(span).await;
        }
        if let Ok(mut placed) = self.0.placed.lock() {
            placed.remove(&id);
        }
        self.0.wake.notify_one();
    }
}

/// The current attempt's log (the last; made when there is none).
pub(crate) fn current_log(logs: &mut Vec<TaskLog>) -> &mut TaskLog {
    if logs.is_empty() {
        logs.push(TaskLog::default());
    }
    let last = logs.len() - 1;
    &mut logs[last]
}

/// Set a metadata entry of the current attempt's log.
pub(crate) fn put_meta(logs: &mut Vec<TaskLog>, key: String, value: String) {
    current_log(logs)
        .metadata
        .get_or_insert_with(BTreeMap::new)
        .insert(key, value);
}

/// Add a line to the current attempt's system logs.
pub(crate) fn push_system_log(logs: &mut Vec<TaskLog>, line: String) {
    current_log(logs)
        .system_logs
        .get_or_insert_with(Vec::new)
        .push(line);
}

impl Drive {
    fn log(&mut self) -> &mut TaskLog {
        current_log(&mut self.logs)
    }

    /// The attempt whose executors run now (its log is the last one).
    fn attempt(&self) -> usize {
        self.logs.len().saturating_sub(1)
    }

    fn process(&self, i: usize) -> String {
        process_name(&self.task.id, self.attempt(), i)
    }

    fn meta(&mut self, key: impl Into<String>, value: impl ToString) {
        put_meta(&mut self.logs, key.into(), value.to_string());
    }

    fn system_log(&mut self, line: impl Into<String>) {
        push_system_log(&mut self.logs, line.into());
    }

    /// Save the logs as they are now (output so far): a failure is only logged, the
    /// next save carries the same and more.
    async fn save_logs(&mut self) {
        self.last_flush = Instant::now();
        match self
            .runner
            .0
            .store
            .set_logs(&self.task.id, &self.logs, self.runner.owner())
            .await
        {
            Ok(_) => {}
            Err(tessera_store::StoreError::NotHeld(_)) => self.not_held = true,
            Err(e) => tracing::warn!(error = %e, "saving task logs failed"),
        }
    }

    /// Save logs that the next step depends on (an executor's start before its process
    /// is created, its result before its process goes): retried with backoff, and if
    /// the store stays away, the driver stops with everything left as it is.
    async fn save_logs_or_stop(&mut self) -> Result<(), Stop> {
        self.last_flush = Instant::now();
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            match self
                .runner
                .0
                .store
                .set_logs(&self.task.id, &self.logs, self.runner.owner())
                .await
            {
                Ok(_) => return Ok(()),
                Err(tessera_store::StoreError::NotHeld(_)) => return Err(Stop::NotHeld),
                Err(e) if attempt < SAVE_RETRIES => {
                    tracing::warn!(error = %e, attempt, "saving task logs failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(e) => return Err(Stop::StoreLost(e.to_string())),
            }
        }
    }

    async fn current_state(&self) -> Option<State> {
        match self.runner.0.store.get_task(&self.task.id).await {
            Ok(Some(t)) => Some(t.state),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "reading task state failed");
                Some(self.task.state)
            }
        }
    }

    /// What is stored and observed, for [`step::next`].
    fn facts(&self) -> Facts {
        let entries = self.logs.last().map(|l| l.logs.as_slice()).unwrap_or(&[]);
        Facts {
            state: self.task.state,
            cancel: self.token.is_cancelled(),
            overdue: self.deadline().is_some_and(|d| Instant::now() >= d),
            executors: self
                .task
                .executors()
                .iter()
                .enumerate()
                .map(|(i, e)| ExecutorFacts {
                    exit_code: entries
                        .get(i)
                        .filter(|l| l.end_time.is_some())
                        .map(|l| l.exit_code),
                    ignore_error: e.ignore_error.unwrap_or(false),
                    process: self.observed[i],
                })
                .collect(),
        }
    }

    /// When the task's maximum run time ends: that long after its first executor's
    /// recorded start (`None` before it has one). From the stored start, so a resumed
    /// task keeps its deadline.
    fn deadline(&self) -> Option<Instant> {
        let first = self.logs.last()?.logs.first()?.start_time.as_deref()?;
        let start = tessera_core::time_fmt::parse_rfc3339(first)?;
        let ends = start + self.max_run_time;
        let left = ends - OffsetDateTime::now_utc();
        Some(Instant::now() + Duration::try_from(left).unwrap_or(Duration::ZERO))
    }

    async fn run(&mut self) {
        // Re-read: a cancel may have landed between the claim and our registration.
        match self.current_state().await {
            Some(s) => self.task.state = s,
            None => return,
        }
        if let Err(stop) = self.observe().await {
            return self.stop(stop).await;
        }
        loop {
            if self.not_held {
                return self.stop(Stop::NotHeld).await;
            }
            let step = step::next(&self.facts());
            tracing::debug!(?step, "next step");
            let done = match step {
                Step::Done => return,
                Step::Cancel => return self.cancel_cleanup().await,
                Step::Finish { failed } => return self.finish_with_outputs(failed).await,
                Step::StageIn => self.stage_in().await,
                Step::Create(i) => self.create(i).await,
                Step::Start(i) => self.start(i).await,
                Step::Follow(i) => self.follow(i).await,
                Step::Remove(i) => self.remove(i).await,
                Step::TimeOut => Err(self.time_out()),
            };
            if let Err(stop) = done {
                return self.stop(stop).await;
            }
        }
    }

    /// Ask the executor what it has of the processes of executors whose start is
    /// recorded in this attempt (a restart, or a lost executor that came back).
    async fn observe(&mut self) -> Result<(), Stop> {
        let recorded = self.logs.last().map_or(0, |l| l.logs.len());
        for i in 0..recorded.min(self.observed.len()) {
            let name = self.process(i);
            let state = self
                .exec
                .status(&name)
                .await
                .map_err(|e| self.executor_error("status", e))?;
            self.observed[i] = match state {
                None => Observed::Absent,
                Some(ProcessState::Created) => Observed::Created,
                Some(_) => Observed::Started,
            };
        }
        Ok(())
    }

    /// INITIALIZING: images, then inputs, then RUNNING.
    async fn stage_in(&mut self) -> Result<(), Stop> {
        let start = OffsetDateTime::now_utc();
        if self.log().start_time.is_none() {
            self.log().start_time = Some(format_rfc3339(start));
        }
        let queued = (start - self.task.creation_time).whole_milliseconds();
        if let Ok(ms) = u64::try_from(queued) {
            self.meta("queue_ms", ms);
            metrics::PHASE_SECONDS
                .with_label_values(&["queue"])
                .observe(ms as f64 / 1000.0);
        }
        self.meta("executor", self.exec.kind());
        self.report_unenforced_resources();

        let mut images: Vec<String> = self
            .task
            .executors()
            .iter()
            .map(|e| e.image.clone())
            .collect();
        images.dedup();
        for image in images {
            tokio::select! {
                _ = self.token.cancelled() => return Err(Stop::Canceled),
                r = self.exec.prepare_image(&image) => match r {
                    Ok(()) => {}
                    Err(ExecError::Unreachable(why)) => return Err(Stop::Requeue(why)),
                    Err(e) => {
                        metrics::EXECUTOR_ERRORS.with_label_values(&["image_pull"]).inc();
                        let why = match e {
                            ExecError::ImageUnavailable { reason, .. } => reason,
                            other => other.to_string(),
                        };
                        return Err(Stop::System(format!("image {image} is not available: {why}")));
                    }
                }
            }
        }

        let began = Instant::now();
        let task = self.task.clone();
        let dir = self.dir.clone();
        let roots = self.runner.0.cfg.file_roots.clone();
        let filers = self.runner.0.filers.clone();
        let user = self.isolation.user;
        let (env, secret_files) = self
            .runner
            .resolve_secrets(&self.task)
            .await
            .map_err(|e| Stop::System(format!("reading the task's secrets failed: {e}")))?;
        self.secret_env = Some(env);
        let staged = tokio::task::spawn_blocking(move || {
            let mounts = plan_mounts(&task);
            let staged = staging::stage_in(&task, &dir, &mounts, &roots, filers.as_ref())?;
            staging::place_secret_files(&dir, &secret_files)?;
            if let Some(u) = user {
                dir.hand_over(u.uid, u.gid).map_err(|e| staging::At {
                    at: format!("giving the task's files to user {u}"),
                    error: staging::StagingError::Copy(e),
                })?;
            }
            Ok::<_, staging::At>(staged)
        })
        .await
        .map_err(|e| Stop::System(format!("staging inputs panicked: {e}")))?;
        let staged: Staged = match staged {
            Ok(s) => s,
            Err(e) => {
                metrics::EXECUTOR_ERRORS
                    .with_label_values(&["staging"])
                    .inc();
                return Err(Stop::System(format!("staging inputs failed: {e}")));
            }
        };
        let ms = began.elapsed().as_millis();
        self.meta("stage_in_ms", ms);
        self.meta("stage_in_bytes", staged.bytes);
        self.meta("stage_in_files", staged.files);
        metrics::PHASE_SECONDS
            .with_label_values(&["stage_in"])
            .observe(ms as f64 / 1000.0);
        if self.token.is_cancelled() {
            return Err(Stop::Canceled);
        }
        let logs = self.logs.clone();
        match self
            .runner
            .0
            .store
            .transition_held(
                &self.task.id,
                State::Running,
                Some("running executors"),
                Some(&logs),
                Some(self.runner.owner()),
            )
            .await
        {
            Ok(Some(_)) => {
                self.task.state = State::Running;
                Ok(())
            }
            Ok(None) => Err(Stop::Canceled),
            Err(tessera_store::StoreError::NotHeld(_)) => Err(Stop::NotHeld),
            Err(e) => Err(Stop::System(format!("recording RUNNING failed: {e}"))),
        }
    }

    fn report_unenforced_resources(&mut self) {
        let Some(res) = self.task.spec.resources.clone() else {
            return;
        };
        let (kind, enforces) = (self.exec.kind(), self.exec.enforces());
        if res.disk_gb.is_some() && !enforces.disk {
            self.system_log(format!(
                "disk_gb is not enforced: the {kind} executor cannot limit a process's disk use"
            ));
        }
        if res.preemptible.is_some() && !enforces.preemptible {
            self.system_log(format!("preemptible has no effect on the {kind} executor"));
        }
        if res.zones.as_ref().is_some_and(|z| !z.is_empty()) && !enforces.zones {
            self.system_log(format!("zones have no effect on the {kind} executor"));
        }
    }

    /// Record executor `i`'s start (before its process exists, so a crash cannot hide
    /// it), then create its process.
    async fn create(&mut self, i: usize) -> Result<(), Stop> {
        if self.log().logs.len() <= i {
            self.log().logs.push(ExecutorLog {
                start_time: Some(now_rfc3339()),
                exit_code: 0,
                ..ExecutorLog::default()
            });
            self.save_logs_or_stop().await?;
        }
        let env = self.secret_env().await?;
        let spec = process_spec(
            &self.task,
            self.attempt(),
            i,
            &self.dir,
            &self.isolation,
            &env,
        );
        let created = tokio::select! {
            _ = self.token.cancelled() => return Err(Stop::Canceled),
            r = self.exec.create(&spec) => r,
        };
        match created {
            Ok(()) => {
                self.observed[i] = Observed::Created;
                self.create_conflicts = 0;
                Ok(())
            }
            // It exists after all (created by an earlier driver): look again.
            Err(ExecError::Conflict) => {
                let state = self
                    .exec
                    .status(&spec.name)
                    .await
                    .map_err(|e| self.executor_error("status", e))?;
                self.observed[i] = match state {
                    Some(ProcessState::Created) => Observed::Created,
                    Some(_) => Observed::Started,
                    None => Observed::Absent,
                };
                if state.is_some() {
                    self.create_conflicts = 0;
                    return Ok(());
                }
                // Gone again (being removed, or the executor contradicts itself): try
                // again after a pause, a few times.
                self.create_conflicts += 1;
                if self.create_conflicts >= CREATE_CONFLICTS {
                    return Err(self.executor_error(
                        "create",
                        ExecError::Other(format!(
                            "{} says process {} exists, then that it does not ({} times)",
                            self.exec.kind(),
                            spec.name,
                            self.create_conflicts
                        )),
                    ));
                }
                tokio::select! {
                    _ = self.token.cancelled() => return Err(Stop::Canceled),
                    _ = tokio::time::sleep(Duration::from_millis(100) * self.create_conflicts) => {}
                }
                Ok(())
            }
            Err(e) => Err(self.executor_error("create", e)),
        }
    }

    async fn start(&mut self, i: usize) -> Result<(), Stop> {
        let name = self.process(i);
        let stdin = match &self.task.executors()[i].stdin {
            Some(p) => {
                Some(staging::stdin_file(&self.dir, p).map_err(|e| Stop::System(e.to_string()))?)
            }
            None => None,
        };
        // Not before the previous executor's end, whatever the wall clock did.
        let previous_end = i
            .checked_sub(1)
            .and_then(|p| self.log().logs.get(p))
            .and_then(|l| l.end_time.as_deref())
            .and_then(tessera_core::time_fmt::parse_rfc3339);
        let now = OffsetDateTime::now_utc();
        let started_at = previous_end.map_or(now, |p| now.max(p));
        self.exec_started = Some((i, started_at, Instant::now()));
        self.log().logs[i].start_time = Some(format_rfc3339(started_at));
        let started = tokio::select! {
            _ = self.token.cancelled() => return Err(Stop::Canceled),
            r = self.exec.start(&name, stdin) => r,
        };
        match started {
            Ok(()) => {
                self.observed[i] = Observed::Started;
                Ok(())
            }
            Err(ExecError::CommandNotFound(msg)) => {
                // What a shell reports as 127: the program does not exist. The process
                // stays (created) until its result is stored, like any other.
                self.record_end(i);
                let entry = &mut self.log().logs[i];
                entry.exit_code = 127;
                entry.stderr = Some(format!("{msg}\n"));
                self.save_logs_or_stop().await?;
                self.observed[i] = Observed::Started;
                Ok(())
            }
            Err(e) => Err(self.executor_error("start", e)),
        }
    }

    /// Past the maximum run time: what ran has its result; what did not run never will.
    /// Finishing removes the processes that are left.
    fn time_out(&mut self) -> Stop {
        let end = now_rfc3339();
        for entry in &mut self.log().logs {
            if entry.end_time.is_none() {
                entry.end_time = Some(end.clone());
            }
        }
        metrics::EXECUTOR_ERRORS
            .with_label_values(&["max_run_time"])
            .inc();
        Stop::System(format!(
            "the task ran longer than its maximum run time of {} s and was stopped",
            self.max_run_time.as_secs()
        ))
    }

    /// The task's maximum run time has passed while `name` runs: kill it (its output and
    /// exit are then collected as usual).
    async fn kill_at_deadline(&self, name: &str) -> Result<(), Stop> {
        tracing::info!(process = %name, "the task's maximum run time has passed; killing its process");
        self.exec
            .kill(name)
            .await
            .map_err(|e| self.executor_error("kill", e))
    }

    /// Only once its result is stored does a process go.
    async fn remove(&mut self, i: usize) -> Result<(), Stop> {
        let name = self.process(i);
        match self.exec.remove(&name).await {
            Ok(()) => {}
            Err(ExecError::Unreachable(why)) => {
                return Err(self.executor_error("remove", ExecError::Unreachable(why)));
            }
            // Nothing more can be done for it; the orphan sweep at start tries again.
            Err(e) => tracing::warn!(process = %name, error = %e, "removing the process failed"),
        }
        self.observed[i] = Observed::Absent;
        Ok(())
    }

    /// Executor `i` ended now: its end time from the clock its start was taken from,
    /// and its run time as the difference of the two.
    fn record_end(&mut self, i: usize) {
        let (start, end) = match self.exec_started {
            Some((j, at, mono)) if j == i => (at, at + mono.elapsed()),
            // Resumed after a restart: the start was stored by an earlier driver.
            _ => {
                let now = OffsetDateTime::now_utc();
                let start = self.log().logs[i]
                    .start_time
                    .as_deref()
                    .and_then(tessera_core::time_fmt::parse_rfc3339)
                    .unwrap_or(now);
                (start, now.max(start))
            }
        };
        let entry = &mut self.log().logs[i];
        entry.start_time = Some(format_rfc3339(start));
        entry.end_time = Some(format_rfc3339(end));
        let ms = (end - start).whole_milliseconds();
        self.meta(format!("executor.{i}.run_ms"), ms);
        metrics::PHASE_SECONDS
            .with_label_values(&["run"])
            .observe(ms as f64 / 1000.0);
    }

    fn executor_error(&self, what: &str, e: ExecError) -> Stop {
        if let ExecError::Unreachable(why) = &e {
            self.runner.executor_lost(why);
            metrics::EXECUTOR_ERRORS
                .with_label_values(&["engine_unreachable"])
                .inc();
            return Stop::ExecutorLost(format!("{what} failed: {why}"));
        }
        metrics::EXECUTOR_ERRORS.with_label_values(&[what]).inc();
        Stop::System(format!("{} {what} failed: {e}", self.exec.kind()))
    }

    /// Follow a started process to its end: stream its output into the log tails (and
    /// the executor's stdout/stderr files), then record its result.
    async fn follow(&mut self, i: usize) -> Result<(), Stop> {
        let name = self.process(i);
        let exec = self.task.executors()[i].clone();
        let cap = self.runner.0.cfg.log_tail_bytes;
        let flush_every = self.runner.0.cfg.log_flush_interval;
        let (mut out, mut err) = (Tail::new(cap), Tail::new(cap));
        let mut out_file = self.capture_file(i, "stdout", exec.stdout.is_some())?;
        let mut err_file = self.capture_file(i, "stderr", exec.stderr.is_some())?;

        let mut stream = self.exec.logs(&name, true);
        let mut dirty = false;
        // Killed at the deadline: its output and exit are then collected as usual.
        let deadline = self.deadline();
        let mut killed = false;
        loop {
            let next = tokio::select! {
                _ = self.token.cancelled() => {
                    let _ = self.exec.kill(&name).await;
                    return Err(Stop::Canceled);
                }
                _ = sleep_until_some(deadline), if !killed => {
                    killed = true;
                    self.kill_at_deadline(&name).await?;
                    None
                }
                _ = tokio::time::sleep(flush_every), if dirty => None,
                chunk = stream.next() => Some(chunk),
            };
            match next {
                None => {}
                Some(None) => break,
                Some(Some(Ok(LogChunk::Stdout(b)))) => {
                    out.push(&b);
                    write_chunk(&mut out_file, &b);
                    dirty = true;
                }
                Some(Some(Ok(LogChunk::Stderr(b)))) => {
                    err.push(&b);
                    write_chunk(&mut err_file, &b);
                    dirty = true;
                }
                Some(Some(Err(e))) => {
                    tracing::warn!(process = %name, error = %e, "log stream broke; collecting the exit status");
                    break;
                }
            }
            if dirty && self.last_flush.elapsed() >= flush_every {
                dirty = false;
                let entry = &mut self.log().logs[i];
                entry.stdout = Some(out.text());
                entry.stderr = Some(err.text());
                self.meta(format!("executor.{i}.stdout_bytes"), out.total);
                self.meta(format!("executor.{i}.stderr_bytes"), err.total);
                self.save_logs().await;
                if self.not_held {
                    return Err(Stop::NotHeld);
                }
            }
        }

        let exit = loop {
            tokio::select! {
                _ = self.token.cancelled() => {
                    let _ = self.exec.kill(&name).await;
                    return Err(Stop::Canceled);
                }
                // The output may end before the process does (a broken log stream).
                _ = sleep_until_some(deadline), if !killed => {
                    killed = true;
                    self.kill_at_deadline(&name).await?;
                }
                r = self.exec.wait(&name) => break r.map_err(|e| self.executor_error("wait", e))?,
            }
        };
        self.record_end(i);
        let oom = matches!(
            self.exec.status(&name).await,
            Ok(Some(ProcessState::Exited {
                oom_killed: true,
                ..
            }))
        );
        let peak = self.exec.peak_memory(&name).await;

        let exit_code = i32::try_from(exit).unwrap_or(-1);
        {
            let entry = &mut self.log().logs[i];
            entry.exit_code = exit_code;
            entry.stdout = Some(out.text());
            entry.stderr = Some(err.text());
        }
        self.meta(format!("executor.{i}.stdout_bytes"), out.total);
        self.meta(format!("executor.{i}.stderr_bytes"), err.total);
        if let Some(p) = peak {
            self.meta(format!("executor.{i}.peak_memory_bytes"), p);
        }
        if oom {
            self.system_log(format!(
                "executor {i} was killed for using more memory than ram_gb allows"
            ));
        }
        drop(out_file);
        drop(err_file);
        for (stream, path) in [("stdout", &exec.stdout), ("stderr", &exec.stderr)] {
            if let Some(p) = path {
                let captured = self.capture_path(i, stream);
                let dir = self.dir.clone();
                let p = p.clone();
                let placed = tokio::task::spawn_blocking(move || {
                    staging::place_capture(&dir, &p, &captured)
                })
                .await;
                if let Err(e) = placed
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                {
                    self.system_log(format!(
                        "executor {i}: writing its {stream} file failed: {e}"
                    ));
                }
            }
        }
        tracing::info!(executor = i, exit_code, "executor finished");
        self.save_logs_or_stop().await
    }

    /// Where executor `i`'s stream is captured while it runs: outside the tree the
    /// processes see, so an executor cannot redirect our writes with a symlink.
    fn capture_path(&self, i: usize, stream: &str) -> std::path::PathBuf {
        self.dir.root.join("capture").join(format!("{i}.{stream}"))
    }

    fn capture_file(
        &self,
        i: usize,
        stream: &str,
        wanted: bool,
    ) -> Result<Option<std::fs::File>, Stop> {
        if !wanted {
            return Ok(None);
        }
        let path = self.capture_path(i, stream);
        let open = || -> std::io::Result<std::fs::File> {
            std::fs::create_dir_all(self.dir.root.join("capture"))?;
            // Start empty: a resumed executor replays its output from the beginning.
            std::fs::File::create(&path)
        };
        open()
            .map(Some)
            .map_err(|e| Stop::System(format!("capturing executor {i} {stream}: {e}")))
    }

    /// The secret env values, read on first use (a resumed task did not stage in here).
    async fn secret_env(&mut self) -> Result<Vec<(String, String)>, Stop> {
        if let Some(env) = &self.secret_env {
            return Ok(env.clone());
        }
        let (env, _) = self
            .runner
            .resolve_secrets(&self.task)
            .await
            .map_err(|e| Stop::System(format!("reading the task's secrets failed: {e}")))?;
        self.secret_env = Some(env.clone());
        Ok(env)
    }

    /// Human in the loop: after the command, keep a container of the task's image with
    /// its workspace, env and secrets for `keep_alive_secs` (counted once, kept across a
    /// restart) so a person can look inside (`tessera task exec`). The task stays
    /// RUNNING meanwhile; a cancel ends it.
    async fn keep_alive(&mut self) -> Result<(), Stop> {
        let Some(secs) = self.task.extra.keep_alive_secs else {
            return Ok(());
        };
        let now = OffsetDateTime::now_utc();
        let until = self
            .logs
            .last()
            .and_then(|l| l.metadata.as_ref())
            .and_then(|m| m.get(KEEP_UNTIL))
            .and_then(|t| tessera_core::time_fmt::parse_rfc3339(t));
        let until = match until {
            Some(u) => u,
            None => {
                let u = now + Duration::from_secs(secs);
                self.meta(KEEP_UNTIL, format_rfc3339(u));
                self.save_logs_or_stop().await?;
                u
            }
        };
        let left = Duration::try_from(until - now).unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return Ok(());
        }
        let name = keeper_name(&self.task);
        let env = self.secret_env().await?;
        let n = self.task.executors().len();
        let running = matches!(
            self.exec.status(&name).await,
            Ok(Some(ProcessState::Running))
        );
        if !running {
            let _ = self.exec.remove(&name).await;
            let mut spec = process_spec(
                &self.task,
                self.attempt(),
                0,
                &self.dir,
                &self.isolation,
                &env,
            );
            spec.name = name.clone();
            spec.index = n;
            spec.stdin = false;
            spec.command = vec!["sleep".into(), left.as_secs().max(1).to_string()];
            self.exec
                .create(&spec)
                .await
                .map_err(|e| self.executor_error("create (keep-alive)", e))?;
            self.exec
                .start(&name, None)
                .await
                .map_err(|e| self.executor_error("start (keep-alive)", e))?;
        }
        let reason = format!(
            "the command ended; its container is kept until {} for `tessera task exec {}`",
            format_rfc3339(until),
            self.task.id
        );
        let _ = self
            .runner
            .0
            .store
            .set_reason(&self.task.id, Some(&reason))
            .await;
        tracing::info!(keeper = %name, until = %format_rfc3339(until), "keeping the task's container");
        tokio::select! {
            _ = self.token.cancelled() => {
                let _ = self.exec.remove(&name).await;
                return Err(Stop::Canceled);
            }
            _ = tokio::time::sleep(left) => {}
            _ = self.exec.wait(&name) => {}
        }
        let _ = self.exec.remove(&name).await;
        Ok(())
    }

    async fn finish_with_outputs(&mut self, failed_executor: Option<usize>) {
        if self.token.is_cancelled() {
            return self.cancel_cleanup().await;
        }
        if let Err(stop) = self.keep_alive().await {
            return self.stop(stop).await;
        }
        let began = Instant::now();
        let task = self.task.clone();
        let dir = self.dir.clone();
        let roots = self.runner.0.cfg.file_roots.clone();
        let filers = self.runner.0.filers.clone();
        let result = tokio::task::spawn_blocking(move || {
            staging::stage_out(&task, &dir, &roots, filers.as_ref())
        })
        .await;
        let (outputs, staged, errors): (_, _, Vec<String>) = match result {
            Ok((outputs, staged, errors)) => (
                outputs,
                staged,
                errors.iter().map(ToString::to_string).collect(),
            ),
            Err(e) => (
                Vec::new(),
                Staged::default(),
                vec![format!("staging outputs panicked: {e}")],
            ),
        };
        let ms = began.elapsed().as_millis();
        self.log().outputs = outputs;
        self.meta("stage_out_ms", ms);
        self.meta("stage_out_bytes", staged.bytes);
        self.meta("stage_out_files", staged.files);
        metrics::PHASE_SECONDS
            .with_label_values(&["stage_out"])
            .observe(ms as f64 / 1000.0);
        for e in &errors {
            self.system_log(format!("staging outputs: {e}"));
        }
        let (state, reason) = match (failed_executor, errors.first()) {
            (Some(i), _) => {
                let code = self.log().logs.get(i).map(|l| l.exit_code).unwrap_or(-1);
                (
                    State::ExecutorError,
                    format!("executor {i} exited with code {code}"),
                )
            }
            (None, Some(e)) => {
                metrics::EXECUTOR_ERRORS
                    .with_label_values(&["staging"])
                    .inc();
                (State::SystemError, format!("staging outputs failed: {e}"))
            }
            (None, None) => (State::Complete, "all executors succeeded".to_string()),
        };
        self.finish(state, &reason).await;
    }

    async fn stop(&mut self, stop: Stop) {
        match stop {
            Stop::Canceled => self.cancel_cleanup().await,
            Stop::System(reason) => {
                self.system_log(reason.clone());
                self.finish(State::SystemError, &reason).await;
            }
            Stop::ExecutorLost(why) => {
                self.left_unfinished = true;
                tracing::warn!(reason = %why, "lost the executor; the task resumes when it is back");
                self.save_logs().await;
                let _ = self
                    .runner
                    .0
                    .store
                    .set_reason(
                        &self.task.id,
                        Some(&format!(
                            "waiting for the {} executor to come back: {why}",
                            self.exec.kind()
                        )),
                    )
                    .await;
            }
            Stop::StoreLost(why) => {
                self.left_unfinished = true;
                tracing::error!(error = %why, "the store does not answer; the task resumes when it does");
            }
            Stop::NotHeld => {
                tracing::warn!(
                    "another server took the task over (this server's lease ran out); leaving it"
                );
            }
            Stop::Requeue(why) => {
                tracing::warn!(reason = %why, "executor unavailable; putting the task back in the queue");
                self.runner.executor_lost(&why);
                let reason = self.runner.queue_reason();
                match self
                    .runner
                    .0
                    .store
                    .transition_held(
                        &self.task.id,
                        State::Queued,
                        Some(&reason),
                        Some(&self.logs),
                        Some(self.runner.owner()),
                    )
                    .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => self.cancel_cleanup().await,
                    Err(tessera_store::StoreError::NotHeld(_)) => {}
                    Err(e) => tracing::error!(error = %e, "requeueing failed"),
                }
            }
        }
    }

    /// Write the terminal state with the final logs, then clean up. If a cancel got there
    /// first (CANCELING), the task ends CANCELED instead.
    async fn finish(&mut self, state: State, reason: &str) {
        let end = end_not_before(self.log().start_time.as_deref());
        self.log().end_time = Some(end);
        let logs = self.logs.clone();
        match self
            .runner
            .transition_with_retry(&self.task.id, state, reason, Some(&logs), true)
            .await
        {
            Ok(Some(_)) => {
                metrics::TASKS_FINISHED
                    .with_label_values(&[state.as_str()])
                    .inc();
                tracing::info!(state = %state, reason, "task finished");
                self.runner.remove_task_resources(&self.task.id).await;
            }
            Ok(None) => {
                if self.current_state().await == Some(State::Canceling) {
                    self.cancel_cleanup().await;
                }
            }
            Err(tessera_store::StoreError::NotHeld(_)) => {
                tracing::warn!(
                    "another server took the task over (this server's lease ran out); leaving it"
                )
            }
            Err(e) => tracing::error!(error = %e, "recording the final state failed"),
        }
    }

    async fn finish_late_cancel(&mut self) {
        if self.current_state().await == Some(State::Canceling) {
            self.cancel_cleanup().await;
        }
    }

    async fn cancel_cleanup(&mut self) {
        if !self.runner.still_held(&self.task.id).await {
            return;
        }
        self.runner.remove_task_resources(&self.task.id).await;
        if !self.logs.is_empty() {
            let end = end_not_before(self.log().start_time.as_deref());
            self.log().end_time = Some(end);
            for entry in &mut self.log().logs {
                if entry.end_time.is_none() {
                    entry.end_time = Some(end_not_before(entry.start_time.as_deref()));
                }
            }
        }
        let logs = self.logs.clone();
        self.runner
            .finish_canceled(
                &self.task.id,
                (!logs.is_empty()).then_some(logs.as_slice()),
                true,
            )
            .await;
    }
}

/// Sleep until `deadline`; forever when there is none.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn write_chunk(file: &mut Option<std::fs::File>, bytes: &[u8]) {
    if let Some(f) = file
        && let Err(e) = f.write_all(bytes)
    {
        tracing::warn!(error = %e, "writing executor output file failed");
        *file = None;
    }
}
