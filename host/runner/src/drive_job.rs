//! Driving a task on a job executor (Kubernetes): the whole task runs where the job
//! runs, so the driver submits it once, follows the job's status into the task's state
//! and, once it has ended, records each executor's result and output and the staged
//! outputs, then removes the job. What to do next is one plain function ([`next`]) over
//! what is stored and what the executor reports, as for processes (`step.rs`).
//!
//! The rules that make a restart safe: the job is created before it is recorded in the
//! task's log, and a driver that finds no record submits again (a job that exists is
//! then followed, not made twice); a recorded job that is gone is a job someone else
//! removed: the task fails SYSTEM_ERROR. Logs are saved before the job is removed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_core::State;
use tessera_core::staging::scheme_of;
use tessera_core::task::TaskRecord;
use tessera_core::tes::{ExecutorLog, OutputFileLog, TaskLog};
use tessera_core::time_fmt::{end_not_before, now_rfc3339};
use tessera_executor::ExecError;
use tessera_executor::job::{
    JobCommand, JobExecutor, JobMount, JobOutcome, JobPhase, JobRequest, JobStatus, PodPlacement,
    SecretFile, Toleration,
};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::drive::{current_log, push_system_log, put_meta};
use crate::tail::Tail;
use crate::task_dir::plan_mounts;
use crate::{Runner, metrics};

/// The metadata key of a task log that names its Kubernetes Job (recorded once the Job
/// exists).
pub const JOB_METADATA: &str = "kubernetes_job";

/// How long the driver waits for news from the executor before asking again.
const POLL: Duration = Duration::from_secs(2);

/// What the driver knows when it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub state: State,
    pub cancel: bool,
    /// The task's log names its job (it was created).
    pub recorded: bool,
    /// What the executor says; `None`: no job.
    pub status: Option<JobStatus>,
    /// The job has been pending this long, with a reason, past the configured limit.
    pub stuck: bool,
}

/// The next thing to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStep {
    /// Save what there is, remove the job, write CANCELED.
    Cancel,
    /// Create the job (again: a job that exists is then followed).
    Submit,
    /// The recorded job is gone: SYSTEM_ERROR.
    Vanished,
    /// Wait for the executor; write this state first when the task is not in it yet.
    Wait(Option<State>),
    /// The job ended: record results and outputs, write the final state.
    Finish,
    /// The cluster stopped it, or it is stuck: save what there is, remove it,
    /// SYSTEM_ERROR with this reason.
    Fail(String),
    Done,
}

/// The next step for a task on a job executor.
pub fn next(f: &JobFacts) -> JobStep {
    if f.state.is_terminal() {
        return JobStep::Done;
    }
    if f.cancel || f.state == State::Canceling {
        return JobStep::Cancel;
    }
    let Some(status) = &f.status else {
        return if f.recorded {
            JobStep::Vanished
        } else {
            JobStep::Submit
        };
    };
    let moved = |to: State| (f.state != to).then_some(to);
    match &status.phase {
        JobPhase::Pending { reason } if f.stuck => JobStep::Fail(match reason {
            Some(r) => format!("the task's pod could not start: {r}"),
            None => "the task's pod did not start in time".into(),
        }),
        JobPhase::Pending { .. } => JobStep::Wait(None),
        JobPhase::StagingIn => JobStep::Wait(None),
        JobPhase::Running { .. } | JobPhase::StagingOut => JobStep::Wait(moved(State::Running)),
        JobPhase::Ended => JobStep::Finish,
        JobPhase::Failed { reason, deadline } => JobStep::Fail(if *deadline {
            format!("the task ran past its maximum run time ({reason})")
        } else {
            reason.clone()
        }),
    }
}

struct JobDrive {
    runner: Runner,
    exec: Arc<dyn JobExecutor>,
    task: TaskRecord,
    token: CancellationToken,
    logs: Vec<TaskLog>,
    /// Since when the job has been pending, and the kinds of reason logged meanwhile.
    pending: Option<(Instant, Vec<String>)>,
    pending_timeout: Duration,
    max_run_time: Duration,
    seen: u64,
}

impl Runner {
    /// Drive one task on a job executor (registered in `running` by the caller).
    pub(crate) async fn drive_job(
        self,
        exec: Arc<dyn JobExecutor>,
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
        let span = tracing::info_span!("task", task_id = %id, executor = exec.kind());
        let mut drive = JobDrive {
            runner: self.clone(),
            exec,
            logs: task.logs.clone(),
            task,
            token,
            pending: None,
            pending_timeout: target.pending_timeout,
            max_run_time,
            seen: 0,
        };
        drive.meta(crate::TARGET_METADATA, target.spec.name);
        if let Some(note) = note {
            drive.system_log(note);
        }
        drive.run().instrument(span).await;
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&id);
        }
        if let Ok(mut placed) = self.0.placed.lock() {
            placed.remove(&id);
        }
        self.0.wake.notify_one();
    }
}

impl JobDrive {
    fn log(&mut self) -> &mut TaskLog {
        current_log(&mut self.logs)
    }

    fn attempt(&self) -> usize {
        self.logs.len().saturating_sub(1)
    }

    fn meta(&mut self, key: impl Into<String>, value: impl ToString) {
        put_meta(&mut self.logs, key.into(), value.to_string());
    }

    fn system_log(&mut self, line: impl Into<String>) {
        push_system_log(&mut self.logs, line.into());
    }

    fn recorded(&self) -> bool {
        self.logs
            .last()
            .and_then(|l| l.metadata.as_ref())
            .is_some_and(|m| m.contains_key(JOB_METADATA))
    }

    async fn save_logs(&mut self) -> bool {
        match self
            .runner
            .0
            .store
            .set_logs(&self.task.id, &self.logs, self.runner.owner())
            .await
        {
            Ok(_) => true,
            Err(tessera_store::StoreError::NotHeld(_)) => false,
            Err(e) => {
                tracing::warn!(error = %e, "saving task logs failed");
                true
            }
        }
    }

    async fn current_state(&self) -> Option<State> {
        self.runner
            .0
            .store
            .get_task(&self.task.id)
            .await
            .ok()
            .flatten()
            .map(|t| t.state)
    }

    async fn run(&mut self) {
        if self.task.state == State::Queued || self.log().start_time.is_none() {
            let now = now_rfc3339();
            self.log().start_time.get_or_insert(now);
        }
        loop {
            let status = match self.exec.status(&self.task.id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "asking the executor failed; will retry");
                    self.seen = self.exec.changed(&self.task.id, self.seen, POLL).await;
                    if self.token.is_cancelled() {
                        return self.cancel().await;
                    }
                    continue;
                }
            };
            let stuck = self.note_pending(status.as_ref());
            let facts = JobFacts {
                state: self.task.state,
                cancel: self.token.is_cancelled(),
                recorded: self.recorded(),
                status,
                stuck,
            };
            match next(&facts) {
                JobStep::Done => return,
                JobStep::Cancel => return self.cancel().await,
                JobStep::Submit => {
                    if let Err(reason) = self.submit().await {
                        return self.fail(reason).await;
                    }
                    continue;
                }
                JobStep::Vanished => {
                    let job = self
                        .logs
                        .last()
                        .and_then(|l| l.metadata.as_ref())
                        .and_then(|m| m.get(JOB_METADATA))
                        .cloned()
                        .unwrap_or_default();
                    return self
                        .fail(format!(
                            "the task's Kubernetes Job {job} is gone (deleted outside Tessera)"
                        ))
                        .await;
                }
                JobStep::Wait(to) => {
                    if let Some(to) = to {
                        if to == State::Running
                            && let Some(started) =
                                facts.status.as_ref().and_then(|s| s.started.clone())
                        {
                            self.meta("executor_started", started);
                        }
                        if !self
                            .transition(to, "the task's pod runs its executors")
                            .await
                        {
                            return;
                        }
                    }
                }
                JobStep::Finish => return self.finish().await,
                JobStep::Fail(reason) => return self.fail(reason).await,
            }
            self.seen = tokio::select! {
                seen = self.exec.changed(&self.task.id, self.seen, POLL) => seen,
                _ = self.token.cancelled() => self.seen,
            };
        }
    }

    /// Track how long the job has been pending (logging each kind of reason once); true
    /// once past the limit.
    fn note_pending(&mut self, status: Option<&JobStatus>) -> bool {
        let Some(JobPhase::Pending { reason }) = status.map(|s| &s.phase) else {
            self.pending = None;
            return false;
        };
        let (since, logged) = self
            .pending
            .get_or_insert_with(|| (Instant::now(), Vec::new()));
        let stuck = since.elapsed() >= self.pending_timeout;
        if let Some(reason) = reason {
            let kind = reason.split(':').next().unwrap_or_default().to_string();
            if !logged.contains(&kind) {
                logged.push(kind);
                let line = format!("pending: {reason}");
                self.system_log(line);
            }
        }
        stuck
    }

    async fn transition(&mut self, to: State, reason: &str) -> bool {
        let logs = self.logs.clone();
        match self
            .runner
            .transition_with_retry(&self.task.id, to, reason, Some(&logs), true)
            .await
        {
            Ok(Some(_)) => {
                self.task.state = to;
                true
            }
            Ok(None) => {
                // Someone else changed it (a cancel): look again.
                if let Some(s) = self.current_state().await {
                    self.task.state = s;
                }
                true
            }
            Err(tessera_store::StoreError::NotHeld(_)) => false,
            Err(e) => {
                tracing::warn!(error = %e, "recording a state failed");
                true
            }
        }
    }

    /// The job for the task's current attempt.
    async fn request(&self) -> Result<JobRequest, String> {
        let task = &self.task;
        let (secret_env, secret_files) = self.runner.resolve_secrets(task).await?;
        let res = task.spec.resources.clone().unwrap_or_default();
        let mut schemes: Vec<String> = Vec::new();
        for url in task
            .inputs()
            .iter()
            .filter(|i| i.content.as_deref().is_none_or(str::is_empty))
            .filter_map(|i| i.url.as_deref())
            .chain(task.outputs().iter().map(|o| o.url.as_str()))
        {
            let scheme = scheme_of(url).unwrap_or_default();
            if scheme == "file" {
                return Err(format!(
                    "{url} is a path on the server's host; a task on Kubernetes stages only \
                     through filers (s3://, http://, …)"
                ));
            }
            if !schemes.contains(&scheme) {
                schemes.push(scheme);
            }
        }
        let staging_secret = if schemes.is_empty() {
            None
        } else {
            Some(
                self.runner
                    .0
                    .filers
                    .portable(&schemes)
                    .map_err(|e| format!("staging on Kubernetes: {e}"))?,
            )
        };
        let mut bare = task.clone();
        bare.logs.clear();
        let staging = serde_json::to_string(&serde_json::json!({ "task": bare }))
            .map_err(|e| format!("the staging document: {e}"))?;
        let mounts = plan_mounts(task);
        let placement = self.placement().await;
        Ok(JobRequest {
            task_id: task.id.clone(),
            attempt: self.attempt(),
            steps: task
                .executors()
                .iter()
                .map(|e| JobCommand {
                    image: e.image.clone(),
                    command: e.command.clone(),
                    workdir: e.workdir.clone(),
                    env: e
                        .env
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    stdin: e.stdin.clone(),
                    stdout: e.stdout.clone(),
                    stderr: e.stderr.clone(),
                    ignore_error: e.ignore_error.unwrap_or(false),
                })
                .collect(),
            needs_workspace: !mounts.is_empty() || !task.inputs().is_empty(),
            mounts: mounts
                .into_iter()
                .map(|m| JobMount {
                    container: m.container,
                    is_dir: m.is_dir,
                    read_only: m.read_only,
                })
                .collect(),
            stage_out: !task.outputs().is_empty(),
            staging: Some(staging),
            staging_secret,
            secret_env,
            secret_files: secret_files
                .into_iter()
                .map(|(path, mode, content)| SecretFile {
                    path,
                    mode,
                    content,
                })
                .collect(),
            cpu_cores: res.cpu_count(),
            memory_bytes: res.ram_bytes(),
            disk_bytes: res.disk_bytes(),
            deadline_secs: self.max_run_time.as_secs(),
            placement,
        })
    }

    /// The pod settings of the task's agent.
    async fn placement(&self) -> PodPlacement {
        let Some(agent) = &self.task.extra.agent else {
            return PodPlacement::default();
        };
        let spec = self
            .runner
            .0
            .store
            .named(None, &self.task.group, agent)
            .await
            .ok()
            .flatten()
            .and_then(|row| serde_json::from_str::<tessera_core::agent::AgentSpec>(&row.data).ok());
        let Some(k) = spec.and_then(|s| s.kubernetes) else {
            return PodPlacement::default();
        };
        PodPlacement {
            service_account: k.service_account,
            node_selector: k.node_selector,
            tolerations: k
                .tolerations
                .into_iter()
                .map(|t| Toleration {
                    key: t.key,
                    operator: t.operator,
                    value: t.value,
                    effect: t.effect,
                })
                .collect(),
            labels: k.pod_labels,
        }
    }

    async fn submit(&mut self) -> Result<(), String> {
        let req = self.request().await?;
        match self.exec.submit(&req).await {
            Ok(()) | Err(ExecError::Conflict) => {}
            Err(ExecError::Unreachable(why)) => {
                tracing::warn!(reason = %why, "the executor is unreachable; will retry");
                self.seen = self.exec.changed(&self.task.id, self.seen, POLL).await;
                return Ok(());
            }
            Err(e) => return Err(format!("creating the task's Kubernetes Job: {e}")),
        }
        self.meta(
            JOB_METADATA,
            format!("tessera-{}-{}", self.task.id, self.attempt()),
        );
        if !self.save_logs().await {
            return Err("another server holds the task".into());
        }
        Ok(())
    }

    /// Record what the job's executors did (and what staging said).
    fn record(&mut self, outcome: &JobOutcome) -> Option<usize> {
        let cap = self.runner.0.cfg.log_tail_bytes;
        let executors = self.task.executors().to_vec();
        let mut failed = None;
        let mut logs = Vec::new();
        for (i, step) in outcome.steps.iter().enumerate() {
            let Some(code) = step.exit_code else {
                continue;
            };
            let mut out = Tail::new(cap);
            out.push(&step.stdout);
            let mut err = Tail::new(cap);
            err.push(&step.stderr);
            logs.push(ExecutorLog {
                start_time: step.start.clone(),
                end_time: step.end.clone(),
                stdout: Some(out.text()),
                stderr: Some(err.text()),
                exit_code: i32::try_from(code).unwrap_or(i32::MIN),
            });
            let ignore = executors
                .get(i)
                .is_some_and(|e| e.ignore_error.unwrap_or(false));
            if code != 0 && !ignore && failed.is_none() {
                failed = Some(i);
            }
        }
        self.log().logs = logs;
        for line in &outcome.system {
            self.system_log(line.clone());
        }
        failed
    }

    async fn finish(&mut self) {
        let outcome = match self.exec.collect(&self.task.id).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "collecting the job's results failed; will retry");
                return;
            }
        };
        let failed = self.record(&outcome);
        if self.task.state == State::Initializing
            && outcome.steps.iter().any(|s| s.exit_code.is_some())
            && !self
                .transition(State::Running, "the task's pod ran its executors")
                .await
        {
            return;
        }
        let mut errors: Vec<String> = Vec::new();
        if let Some(report) = &outcome.staged_out {
            match serde_json::from_str::<StagedOut>(report) {
                Ok(r) => {
                    self.log().outputs = r.outputs;
                    self.meta("stage_out_bytes", r.bytes);
                    self.meta("stage_out_files", r.files);
                    errors.extend(r.errors);
                }
                Err(e) => errors.push(format!("the output staging report did not read: {e}")),
            }
        }
        for e in &errors {
            self.system_log(format!("staging outputs: {e}"));
        }
        let (state, reason) = match (&outcome.staging_error, failed, errors.first()) {
            (Some(e), _, _) if outcome.steps.iter().all(|s| s.exit_code.is_none()) => {
                self.system_log(format!("staging inputs: {e}"));
                (State::SystemError, format!("staging inputs failed: {e}"))
            }
            (_, Some(i), _) => {
                let code = self.log().logs.get(i).map(|l| l.exit_code).unwrap_or(-1);
                (
                    State::ExecutorError,
                    format!("executor {i} exited with code {code}"),
                )
            }
            (Some(e), None, _) => {
                self.system_log(format!("staging outputs: {e}"));
                (State::SystemError, format!("staging outputs failed: {e}"))
            }
            (None, None, Some(e)) => (State::SystemError, format!("staging outputs failed: {e}")),
            (None, None, None) => (State::Complete, "all executors succeeded".to_string()),
        };
        if state == State::ExecutorError || state == State::SystemError {
            metrics::EXECUTOR_ERRORS
                .with_label_values(&[self.exec.kind()])
                .inc();
        }
        self.end(state, &reason).await;
    }

    /// Save what the job has (logs before its pods go), remove it, end SYSTEM_ERROR.
    async fn fail(&mut self, reason: String) {
        if let Ok(outcome) = self.exec.collect(&self.task.id).await {
            self.record(&outcome);
        }
        self.system_log(reason.clone());
        self.end(State::SystemError, &reason).await;
    }

    async fn cancel(&mut self) {
        if let Ok(outcome) = self.exec.collect(&self.task.id).await {
            self.record(&outcome);
        }
        self.save_logs().await;
        if let Err(e) = self.exec.delete(&self.task.id).await {
            tracing::warn!(error = %e, "deleting the task's job failed");
        }
        let end = end_not_before(self.log().start_time.as_deref());
        self.log().end_time = Some(end);
        let logs = self.logs.clone();
        self.runner
            .finish_canceled(&self.task.id, Some(&logs), true)
            .await;
    }

    async fn end(&mut self, state: State, reason: &str) {
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
                if let Err(e) = self.exec.delete(&self.task.id).await {
                    tracing::warn!(error = %e, "deleting the task's job failed (its TTL removes it)");
                }
            }
            Ok(None) => {
                if self.current_state().await == Some(State::Canceling) {
                    self.cancel().await;
                }
            }
            Err(tessera_store::StoreError::NotHeld(_)) => {
                tracing::warn!("another server took the task over; leaving it")
            }
            Err(e) => tracing::error!(error = %e, "recording the final state failed"),
        }
    }
}

/// What `tessera stage out` reports.
#[derive(serde::Deserialize)]
struct StagedOut {
    #[serde(default)]
    outputs: Vec<OutputFileLog>,
    #[serde(default)]
    bytes: u64,
    #[serde(default)]
    files: u64,
    #[serde(default)]
    errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(state: State, status: Option<JobPhase>) -> JobFacts {
        JobFacts {
            state,
            cancel: false,
            recorded: status.is_some(),
            status: status.map(|phase| JobStatus {
                phase,
                started: None,
            }),
            stuck: false,
        }
    }

    #[test]
    fn a_new_task_is_submitted_and_a_recorded_job_that_is_gone_fails_it() {
        assert_eq!(next(&facts(State::Initializing, None)), JobStep::Submit);
        let mut f = facts(State::Running, None);
        f.recorded = true;
        assert_eq!(next(&f), JobStep::Vanished);
    }

    #[test]
    fn the_tasks_state_follows_the_job() {
        let pending = JobPhase::Pending { reason: None };
        assert_eq!(
            next(&facts(State::Initializing, Some(pending))),
            JobStep::Wait(None)
        );
        assert_eq!(
            next(&facts(
                State::Initializing,
                Some(JobPhase::Running { index: 0 })
            )),
            JobStep::Wait(Some(State::Running))
        );
        assert_eq!(
            next(&facts(State::Running, Some(JobPhase::Running { index: 1 }))),
            JobStep::Wait(None)
        );
        assert_eq!(
            next(&facts(State::Running, Some(JobPhase::Ended))),
            JobStep::Finish
        );
    }

    #[test]
    fn cancel_wins_and_terminal_tasks_are_left() {
        let mut f = facts(State::Running, Some(JobPhase::Ended));
        f.cancel = true;
        assert_eq!(next(&f), JobStep::Cancel);
        assert_eq!(
            next(&facts(State::Canceling, Some(JobPhase::Ended))),
            JobStep::Cancel
        );
        assert_eq!(next(&facts(State::Complete, None)), JobStep::Done);
    }

    #[test]
    fn a_stuck_pod_fails_with_the_kubelets_reason_and_a_deadline_says_so() {
        let mut f = facts(
            State::Initializing,
            Some(JobPhase::Pending {
                reason: Some("ImagePullBackOff: no such image".into()),
            }),
        );
        assert_eq!(next(&f), JobStep::Wait(None));
        f.stuck = true;
        assert_eq!(
            next(&f),
            JobStep::Fail("the task's pod could not start: ImagePullBackOff: no such image".into())
        );
        let deadline = JobPhase::Failed {
            reason: "DeadlineExceeded".into(),
            deadline: true,
        };
        assert!(matches!(
            next(&facts(State::Running, Some(deadline))),
            JobStep::Fail(r) if r.contains("maximum run time")
        ));
    }
}
