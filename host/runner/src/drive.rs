//! Driving one task from INITIALIZING to a terminal state (or resuming it).

use crate::staging::{self, Staged};
use crate::tail::Tail;
use crate::workspace::{Workspace, plan_mounts};
use crate::{EngineStatus, INSTANCE_LABEL, Runner, TASK_LABEL, metrics};
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tessera_core::State;
use tessera_core::task::TaskRecord;
use tessera_core::tes::{ExecutorLog, TaskLog};
use tessera_core::time_fmt::{end_not_before, format_rfc3339, millis_between, now_rfc3339};
use tessera_docker::{Bind, ContainerSpec, DockerError, LogChunk};
use time::OffsetDateTime;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a step ended when it did not simply succeed.
enum Stop {
    Canceled,
    /// SYSTEM_ERROR with this reason.
    System(String),
    /// The engine went away before anything ran: back to QUEUED.
    Requeue(String),
    /// The engine went away while executors were running: leave the task as it is;
    /// the runner's sweep resumes it (following its containers) once the engine is back.
    EngineLost(String),
}

struct Drive {
    runner: Runner,
    task: TaskRecord,
    ws: Workspace,
    token: CancellationToken,
    logs: Vec<TaskLog>,
    last_flush: Instant,
    /// When this driver started executor `.0`: its wall-clock start and the same moment
    /// on the monotonic clock, so that its end is `start + elapsed` (one clock: the end
    /// is never before the start, and run_ms is exactly end minus start).
    exec_started: Option<(usize, OffsetDateTime, Instant)>,
}

impl Runner {
    /// Drive one task. The caller registered `token` in `running` before spawning us,
    /// so the sweep never starts a second driver for the same task.
    pub(crate) async fn drive(
        self,
        task: TaskRecord,
        token: CancellationToken,
        _permit: OwnedSemaphorePermit,
        target: String,
    ) {
        let id = task.id.clone();
        let span = tracing::info_span!("task", task_id = %id);
        let mut drive = Drive {
            ws: Workspace::new(&self.0.cfg.work_dir, &id),
            runner: self.clone(),
            logs: task.logs.clone(),
            task,
            token,
            last_flush: Instant::now(),
            exec_started: None,
        };
        drive.meta(crate::TARGET_METADATA, target);
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

impl Drive {
    fn log(&mut self) -> &mut TaskLog {
        if self.logs.is_empty() {
            self.logs.push(TaskLog::default());
        }
        let last = self.logs.len() - 1;
        &mut self.logs[last]
    }

    fn meta(&mut self, key: impl Into<String>, value: impl ToString) {
        self.log()
            .metadata
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.to_string());
    }

    fn system_log(&mut self, line: impl Into<String>) {
        self.log()
            .system_logs
            .get_or_insert_with(Vec::new)
            .push(line.into());
    }

    async fn save_logs(&mut self) {
        self.last_flush = Instant::now();
        if let Err(e) = self
            .runner
            .0
            .store
            .set_logs(&self.task.id, &self.logs)
            .await
        {
            tracing::warn!(error = %e, "saving task logs failed");
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

    async fn run(&mut self) {
        // Re-read: a cancel may have landed between the claim and our registration.
        match self.current_state().await {
            Some(State::Canceling) => return self.cancel_cleanup().await,
            Some(s) if s.is_terminal() => return,
            None => return,
            Some(s) => self.task.state = s,
        }
        if self.task.state == State::Initializing {
            match self.initialize().await {
                Ok(()) => {}
                Err(stop) => return self.stop(stop).await,
            }
        }
        let failed_executor = match self.run_executors().await {
            Ok(failed) => failed,
            Err(stop) => return self.stop(stop).await,
        };
        self.finish_with_outputs(failed_executor).await;
    }

    /// Stage in and check images; then move to RUNNING.
    async fn initialize(&mut self) -> Result<(), Stop> {
        let start = now_rfc3339();
        if self.log().start_time.is_none() {
            self.log().start_time = Some(start.clone());
        }
        if let Some(ms) = millis_between(&self.task.creation_time, &start) {
            self.meta("queue_ms", ms);
            metrics::PHASE_SECONDS
                .with_label_values(&["queue"])
                .observe(ms as f64 / 1000.0);
        }
        self.meta("executor", "docker");
        self.report_unenforced_resources();

        let docker = self
            .runner
            .0
            .docker
            .clone()
            .ok_or_else(|| Stop::Requeue("no executor".into()))?;
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
                r = docker.ensure_image(&image) => match r {
                    Ok(()) => {}
                    Err(DockerError::Unreachable(why)) => return Err(Stop::Requeue(why)),
                    Err(e) => {
                        metrics::EXECUTOR_ERRORS.with_label_values(&["image_pull"]).inc();
                        return Err(Stop::System(format!("image {image} is not available: {e}")));
                    }
                }
            }
        }

        let began = Instant::now();
        let task = self.task.clone();
        let ws = self.ws.clone();
        let roots = self.runner.0.cfg.file_roots.clone();
        let filers = self.runner.0.filers.clone();
        let staged = tokio::task::spawn_blocking(move || {
            let mounts = plan_mounts(&task);
            staging::stage_in(&task, &ws, &mounts, &roots, filers.as_ref())
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
            .transition(
                &self.task.id,
                State::Running,
                Some("running executors"),
                Some(&logs),
            )
            .await
        {
            Ok(Some(_)) => {
                self.task.state = State::Running;
                Ok(())
            }
            Ok(None) => Err(Stop::Canceled),
            Err(e) => Err(Stop::System(format!("recording RUNNING failed: {e}"))),
        }
    }

    fn report_unenforced_resources(&mut self) {
        let Some(res) = self.task.spec.resources.clone() else {
            return;
        };
        if res.disk_gb.is_some() {
            self.system_log("disk_gb is not enforced: the Docker executor cannot limit a container's disk use on this storage driver");
        }
        if res.preemptible.is_some() {
            self.system_log("preemptible has no effect on the Docker executor");
        }
        if res.zones.as_ref().is_some_and(|z| !z.is_empty()) {
            self.system_log("zones have no effect on the Docker executor");
        }
    }

    /// Run (or resume) executors in order. Returns the index of the executor that failed
    /// without `ignore_error`, if any.
    async fn run_executors(&mut self) -> Result<Option<usize>, Stop> {
        let execs = self.task.executors().to_vec();
        for (i, exec) in execs.iter().enumerate() {
            let done = self
                .log()
                .logs
                .get(i)
                .map(|l| (l.end_time.is_some(), l.exit_code));
            let exit_code = match done {
                Some((true, code)) => code,
                _ => self.run_executor(i).await?,
            };
            if exit_code != 0 && !exec.ignore_error.unwrap_or(false) {
                return Ok(Some(i));
            }
        }
        Ok(None)
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

    fn container_name(&self, i: usize) -> String {
        format!(
            "tessera-{}-{}-{}",
            self.task.id,
            self.logs.len().saturating_sub(1),
            i
        )
    }

    async fn run_executor(&mut self, i: usize) -> Result<i32, Stop> {
        if self.token.is_cancelled() {
            return Err(Stop::Canceled);
        }
        let docker = self
            .runner
            .0
            .docker
            .clone()
            .ok_or_else(|| Stop::System("no executor".into()))?;
        let exec = self.task.executors()[i].clone();
        let name = self.container_name(i);
        if self.log().logs.len() <= i {
            // Record the start before the container exists, so a crash cannot hide it.
            self.log().logs.push(ExecutorLog {
                start_time: Some(now_rfc3339()),
                exit_code: 0,
                ..ExecutorLog::default()
            });
            self.save_logs().await;
        }

        let status = docker
            .status(&name)
            .await
            .map_err(|e| self.engine_error("status", e))?;
        let needs_start = match &status {
            None => {
                let spec = self.container_spec(i, &name);
                match docker.create(&spec).await {
                    Ok(()) | Err(DockerError::Conflict) => {}
                    Err(e) => return Err(self.engine_error("create", e)),
                }
                true
            }
            Some(s) => !s.running && s.started_at.is_none(),
        };
        if needs_start {
            let stdin = match &exec.stdin {
                Some(p) => Some(staging::stdin_file(&self.ws, p).map_err(Stop::System)?),
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
            match docker.start(&name, stdin).await {
                Ok(()) => {}
                Err(DockerError::CommandNotFound(msg)) => {
                    // What a shell reports as 127: the program does not exist.
                    self.record_end(i);
                    let entry = &mut self.log().logs[i];
                    entry.exit_code = 127;
                    entry.stderr = Some(format!("{msg}\n"));
                    self.save_logs().await;
                    let _ = docker.remove(&name).await;
                    return Ok(127);
                }
                Err(e) => return Err(self.engine_error("start", e)),
            }
        }
        self.follow(i, &name, &exec).await
    }

    fn engine_error(&self, what: &str, e: DockerError) -> Stop {
        if let DockerError::Unreachable(why) = &e {
            self.runner.engine_lost(why);
            metrics::EXECUTOR_ERRORS
                .with_label_values(&["engine_unreachable"])
                .inc();
            return Stop::EngineLost(format!("Docker {what} failed: {why}"));
        } else {
            metrics::EXECUTOR_ERRORS.with_label_values(&[what]).inc();
        }
        Stop::System(format!("Docker {what} failed: {e}"))
    }

    fn container_spec(&self, i: usize, name: &str) -> ContainerSpec {
        let exec = &self.task.executors()[i];
        let res = self.task.spec.resources.clone().unwrap_or_default();
        let network = res
            .backend_parameters
            .as_ref()
            .and_then(|p| {
                p.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("network"))
                    .map(|(_, v)| v.to_ascii_lowercase())
            })
            // Validation allows only these; never hand Docker anything else.
            .filter(|n| n == "bridge" || n == "none")
            .or_else(|| self.runner.0.cfg.default_network.clone());
        let binds = plan_mounts(&self.task)
            .into_iter()
            .map(|m| Bind {
                host: self.ws.host_path(&m.container),
                container: m.container,
                read_only: false,
            })
            .collect();
        let mut labels = BTreeMap::new();
        labels.insert(TASK_LABEL.to_string(), self.task.id.clone());
        labels.insert("tessera.executor-index".to_string(), i.to_string());
        labels.insert(
            INSTANCE_LABEL.to_string(),
            self.runner.0.cfg.instance.clone(),
        );
        ContainerSpec {
            name: name.to_string(),
            image: exec.image.clone(),
            command: exec.command.clone(),
            workdir: exec.workdir.clone(),
            env: exec
                .env
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            labels,
            binds,
            nano_cpus: res
                .cpu_cores
                .filter(|c| *c > 0)
                .map(|c| i64::from(c) * 1_000_000_000),
            memory_bytes: Some(res.ram_bytes())
                .filter(|b| *b > 0)
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            network,
            open_stdin: exec.stdin.is_some(),
            cgroup_parent: None,
        }
    }

    /// Follow a started container to its end: stream output into the log tails (and
    /// the executor's stdout/stderr files), then record the result and remove it.
    async fn follow(
        &mut self,
        i: usize,
        name: &str,
        exec: &tessera_core::tes::Executor,
    ) -> Result<i32, Stop> {
        let docker = self
            .runner
            .0
            .docker
            .clone()
            .ok_or_else(|| Stop::System("no executor".into()))?;
        let cap = self.runner.0.cfg.log_tail_bytes;
        let flush_every = self.runner.0.cfg.log_flush_interval;
        let (mut out, mut err) = (Tail::new(cap), Tail::new(cap));
        let mut out_file = self.capture_file(i, "stdout", exec.stdout.is_some())?;
        let mut err_file = self.capture_file(i, "stderr", exec.stderr.is_some())?;
        let peak_bytes = Arc::new(AtomicU64::new(0));
        let peak = tokio::spawn({
            let (docker, name, peak_bytes) = (docker.clone(), name.to_string(), peak_bytes.clone());
            async move { docker.track_peak_memory(&name, peak_bytes).await }
        });

        let mut stream = Box::pin(docker.logs(name, true));
        let mut dirty = false;
        loop {
            let next = tokio::select! {
                _ = self.token.cancelled() => {
                    let _ = docker.kill(name).await;
                    peak.abort();
                    return Err(Stop::Canceled);
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
                    tracing::warn!(container = name, error = %e, "log stream broke; collecting the exit status");
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
            }
        }

        let exit = tokio::select! {
            _ = self.token.cancelled() => {
                let _ = docker.kill(name).await;
                peak.abort();
                return Err(Stop::Canceled);
            }
            r = docker.wait(name) => r.map_err(|e| self.engine_error("wait", e))?,
        };
        self.record_end(i);
        let status = docker.status(name).await.ok().flatten();
        peak.abort();
        // The kernel's own maximum where the engine's cgroups are visible; otherwise what
        // Docker's stats sampled (about once a second) while it ran.
        let peak = docker
            .exit_peak_memory(name)
            .or(Some(peak_bytes.load(Ordering::Relaxed)).filter(|p| *p > 0));

        let exit_code = i32::try_from(exit).unwrap_or(-1);
        let oom = status.as_ref().is_some_and(|s| s.oom_killed);
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
                let ws = self.ws.clone();
                let p = p.clone();
                let placed =
                    tokio::task::spawn_blocking(move || staging::place_capture(&ws, &p, &captured))
                        .await;
                if let Err(e) = placed.map_err(|e| e.to_string()).and_then(|r| r) {
                    self.system_log(format!(
                        "executor {i}: writing its {stream} file failed: {e}"
                    ));
                }
            }
        }
        tracing::info!(executor = i, exit_code, "executor finished");
        self.save_logs().await;
        // Only now that the result is stored may the container go.
        if let Err(e) = docker.remove(name).await {
            tracing::warn!(container = name, error = %e, "removing the container failed");
        }
        Ok(exit_code)
    }

    /// Where executor `i`'s stream is captured while it runs: outside the tree the
    /// containers see, so an executor cannot redirect our writes with a symlink.
    fn capture_path(&self, i: usize, stream: &str) -> std::path::PathBuf {
        self.ws.root.join("capture").join(format!("{i}.{stream}"))
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
            std::fs::create_dir_all(self.ws.root.join("capture"))?;
            // Start empty: a resumed executor replays its output from the beginning.
            std::fs::File::create(&path)
        };
        open()
            .map(Some)
            .map_err(|e| Stop::System(format!("capturing executor {i} {stream}: {e}")))
    }

    async fn finish_with_outputs(&mut self, failed_executor: Option<usize>) {
        if self.token.is_cancelled() {
            return self.cancel_cleanup().await;
        }
        let began = Instant::now();
        let task = self.task.clone();
        let ws = self.ws.clone();
        let roots = self.runner.0.cfg.file_roots.clone();
        let filers = self.runner.0.filers.clone();
        let result = tokio::task::spawn_blocking(move || {
            staging::stage_out(&task, &ws, &roots, filers.as_ref())
        })
        .await;
        let (outputs, staged, errors) = match result {
            Ok(r) => r,
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
            Stop::EngineLost(why) => {
                tracing::warn!(reason = %why, "lost the Docker engine; the task resumes when it is back");
                self.save_logs().await;
                let _ = self
                    .runner
                    .0
                    .store
                    .set_reason(
                        &self.task.id,
                        Some(&format!(
                            "waiting for the Docker engine to come back: {why}"
                        )),
                    )
                    .await;
            }
            Stop::Requeue(why) => {
                tracing::warn!(reason = %why, "executor unavailable; putting the task back in the queue");
                self.runner.engine_lost(&why);
                let reason = self.runner.queue_reason();
                match self
                    .runner
                    .0
                    .store
                    .transition(
                        &self.task.id,
                        State::Queued,
                        Some(&reason),
                        Some(&self.logs),
                    )
                    .await
                {
                    Ok(Some(_)) => {}
                    Ok(None) => self.cancel_cleanup().await,
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
            .transition_with_retry(&self.task.id, state, reason, Some(&logs))
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
            Err(e) => tracing::error!(error = %e, "recording the final state failed"),
        }
    }

    async fn cancel_cleanup(&mut self) {
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
            .finish_canceled(&self.task.id, (!logs.is_empty()).then_some(logs.as_slice()))
            .await;
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

impl EngineStatus {
    pub fn is_ready(&self) -> bool {
        matches!(self, EngineStatus::Ready { .. })
    }
}
