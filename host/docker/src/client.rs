//! [`DockerClient`]: the handle through which Tessera talks to the local Docker engine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::{ContainerState, ContainerSummaryStateEnum, SystemInfoCgroupVersionEnum};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, KillContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    StatsOptions, WaitContainerOptions,
};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

use crate::cgroup::CgroupPeaks;
use crate::error::{self, DockerError};
use crate::spec::ContainerSpec;
use crate::types::{ContainerStatus, ContainerSummary, DockerInfo};
use crate::version;
use tessera_executor::LogChunk;

/// Where the engine listens when neither the caller nor `DOCKER_HOST` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// bollard's per-request timeout, in seconds. It bounds the wait for response headers
/// only; streamed bodies (logs, wait, stats, pulls) may run for as long as they need.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// What Docker reports for a time that never happened.
const ZERO_TIME_PREFIX: &str = "0001-01-01";

/// A cheap, cloneable handle on the local Docker engine (clones share one connection
/// pool, one negotiated API version and one cache of images known to be present).
#[derive(Clone)]
pub struct DockerClient {
    inner: Arc<Inner>,
}

struct Inner {
    socket: String,
    client: OnceCell<Docker>,
    images: Mutex<HashSet<String>>,
    /// Where containers get their parent cgroups, when asked for ([`DockerClient::account_cgroups_under`]).
    cgroup_root: Mutex<Option<String>>,
    /// Kernel peak memory, when the engine's cgroups are visible here (set by `info`).
    cgroups: Mutex<Option<CgroupPeaks>>,
}

impl std::fmt::Debug for DockerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerClient")
            .field("socket", &self.inner.socket)
            .finish_non_exhaustive()
    }
}

/// The socket path to use: the explicit one, else `DOCKER_HOST` when it is a `unix://`
/// address, else [`DEFAULT_SOCKET`]. Other `DOCKER_HOST` schemes are refused rather
/// than silently ignored: this crate only talks to a local unix socket.
pub(crate) fn resolve_socket(
    explicit: Option<&str>,
    docker_host: Option<&str>,
) -> Result<String, DockerError> {
    let from_env = docker_host.map(str::trim).filter(|h| !h.is_empty());
    let (raw, origin) = match (explicit, from_env) {
        (Some(s), _) => (s.trim(), "socket"),
        (None, Some(h)) => (h, "DOCKER_HOST"),
        (None, None) => return Ok(DEFAULT_SOCKET.to_owned()),
    };
    let path = match raw.strip_prefix("unix://") {
        Some(path) => path,
        None if raw.contains("://") => {
            return Err(DockerError::Other(format!(
                "{origin} {raw:?} is not supported: only unix:// sockets are"
            )));
        }
        None => raw,
    };
    if path.is_empty() {
        return Err(DockerError::Other(format!(
            "{origin} {raw:?} names no socket path"
        )));
    }
    Ok(path.to_owned())
}

/// The reference Docker should pull: `name` without tag or digest means `name:latest`
/// (the pull API would otherwise fetch every tag of the repository).
pub(crate) fn normalize_image(image: &str) -> Option<String> {
    let image = image.trim();
    if image.is_empty() {
        return None;
    }
    if image.contains('@') {
        return Some(image.to_owned());
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') {
        Some(image.to_owned())
    } else {
        Some(format!("{image}:latest"))
    }
}

fn real_time(t: Option<String>) -> Option<String> {
    t.filter(|t| !t.is_empty() && !t.starts_with(ZERO_TIME_PREFIX))
}

pub(crate) fn status_from_state(state: Option<ContainerState>) -> ContainerStatus {
    let state = state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    let finished_at = real_time(state.finished_at);
    let code = state.exit_code.unwrap_or(0);
    let exit_code = (!running && (finished_at.is_some() || code != 0)).then_some(code);
    ContainerStatus {
        state: state.status.map(|s| s.to_string()).unwrap_or_default(),
        running,
        exit_code,
        started_at: real_time(state.started_at),
        finished_at,
        oom_killed: state.oom_killed.unwrap_or(false),
        error: state.error.filter(|e| !e.is_empty()),
    }
}

/// A container's output, chunk by chunk, stdout and stderr apart.
pub type Output = BoxStream<'static, Result<LogChunk, DockerError>>;

/// The stream up to and including its first error.
fn until_first_error(
    s: impl Stream<Item = Result<LogChunk, DockerError>> + Send + 'static,
) -> Output {
    s.scan(false, |failed, item| {
        let next = (!*failed).then(|| {
            *failed = item.is_err();
            item
        });
        std::future::ready(next)
    })
    .boxed()
}

fn log_chunk(
    item: Result<LogOutput, bollard::errors::Error>,
) -> Option<Result<LogChunk, DockerError>> {
    match item {
        Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
            (!message.is_empty()).then_some(Ok(LogChunk::Stdout(message)))
        }
        Ok(LogOutput::StdErr { message }) => {
            (!message.is_empty()).then_some(Ok(LogChunk::Stderr(message)))
        }
        Ok(LogOutput::StdIn { .. }) => None,
        Err(e) => Some(Err(error::map(e))),
    }
}

impl DockerClient {
    /// A handle on the engine at `socket` (a path, or `unix://path`); with `None`,
    /// `DOCKER_HOST` if it is a `unix://` address, else `/var/run/docker.sock`.
    ///
    /// Does no I/O: the engine is first contacted (and the API version negotiated) by
    /// the first call that needs it, so an engine that is down shows up there as
    /// [`DockerError::Unreachable`].
    pub fn connect(socket: Option<&str>) -> Result<Self, DockerError> {
        let docker_host = std::env::var("DOCKER_HOST").ok();
        let socket = resolve_socket(socket, docker_host.as_deref())?;
        Ok(DockerClient {
            inner: Arc::new(Inner {
                socket,
                client: OnceCell::new(),
                images: Mutex::new(HashSet::new()),
                cgroup_root: Mutex::new(None),
                cgroups: Mutex::new(None),
            }),
        })
    }

    /// Give each container created from now on a parent cgroup `<root>/<name>`, so that
    /// [`DockerClient::exit_peak_memory`] reads its peak memory from the kernel when it
    /// ends. Takes effect at the next [`DockerClient::info`], and only where that works
    /// (the `cgroupfs` driver, the engine's cgroup file system visible here); otherwise
    /// containers are created as before.
    pub fn account_cgroups_under(&self, root: &str) {
        *self
            .inner
            .cgroup_root
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(root.to_string());
    }

    fn cgroups(&self) -> Option<CgroupPeaks> {
        self.inner
            .cgroups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The most memory container `name` used while it ran, as the kernel counted it
    /// (exact, however short the run); `None` when cgroup accounting is off. Call once
    /// the container has exited.
    pub fn exit_peak_memory(&self, name: &str) -> Option<u64> {
        self.cgroups()?.peak(name)
    }

    /// The socket path this handle talks to.
    pub fn socket(&self) -> &str {
        &self.inner.socket
    }

    /// The bollard client, created on first use with the negotiated API version.
    /// A failure is not cached: the next call tries again.
    async fn client(&self) -> Result<Docker, DockerError> {
        let socket = self.inner.socket.as_str();
        self.inner
            .client
            .get_or_try_init(|| async move {
                let version = version::negotiate(socket).await?;
                tracing::debug!(socket, api_version = %version, "connected to the Docker engine");
                Docker::connect_with_unix(socket, REQUEST_TIMEOUT_SECS, &version)
                    .map_err(error::map)
            })
            .await
            .cloned()
    }

    /// Engine version and resources.
    pub async fn info(&self) -> Result<DockerInfo, DockerError> {
        let docker = self.client().await?;
        let info = docker.info().await.map_err(error::map)?;
        Ok(DockerInfo {
            version: info.server_version.unwrap_or_default(),
            api_version: docker.client_version().to_string(),
            cpus: info.ncpu.and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
            memory_bytes: info
                .mem_total
                .and_then(|m| u64::try_from(m).ok())
                .unwrap_or(0),
            storage_driver: info.driver.unwrap_or_default(),
            cgroup_version: match info.cgroup_version {
                Some(SystemInfoCgroupVersionEnum::_1) => Some(1),
                Some(SystemInfoCgroupVersionEnum::_2) => Some(2),
                _ => None,
            },
            cgroup_driver: info
                .cgroup_driver
                .map(|d| d.to_string())
                .unwrap_or_default(),
        })
        .inspect(|info| self.update_cgroups(info))
    }

    /// Make sure the bridge network `name` exists, on Linux bridge `bridge`, without
    /// traffic between its containers. One made by someone else on another bridge is an
    /// error: the firewall rules name the bridge.
    pub async fn ensure_bridge_network(&self, name: &str, bridge: &str) -> Result<(), DockerError> {
        const BRIDGE_NAME: &str = "com.docker.network.bridge.name";
        let docker = self.client().await?;
        let request = bollard::models::NetworkCreateRequest {
            name: name.to_owned(),
            driver: Some("bridge".to_owned()),
            options: Some(HashMap::from([
                (BRIDGE_NAME.to_owned(), bridge.to_owned()),
                (
                    "com.docker.network.bridge.enable_icc".to_owned(),
                    "false".to_owned(),
                ),
            ])),
            labels: Some(HashMap::from([(
                "tessera.network".to_owned(),
                "tasks".to_owned(),
            )])),
            ..Default::default()
        };
        let created = match docker.create_network(request).await.map_err(error::map) {
            Ok(_) => {
                tracing::info!(network = name, bridge, "created the task network");
                return Ok(());
            }
            Err(e) if e.is_unreachable() => return Err(e),
            // Made earlier, or by another server meanwhile (Docker then says the name
            // or the bridge name is taken): what exists is checked below.
            Err(e) => e,
        };
        let existing = match docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(n) => n,
            Err(_) => return Err(created),
        };
        let on = existing
            .options
            .as_ref()
            .and_then(|o| o.get(BRIDGE_NAME))
            .map(String::as_str);
        if on != Some(bridge) {
            return Err(DockerError::Other(format!(
                "Docker network {name:?} exists on bridge {on:?}, not {bridge:?}; remove it (docker network rm {name}) so that Tessera makes its own"
            )));
        }
        Ok(())
    }

    fn update_cgroups(&self, info: &DockerInfo) {
        let root = self
            .inner
            .cgroup_root
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(root) = root else { return };
        let detected = CgroupPeaks::detect(&root, &info.cgroup_driver, info.cgroup_version);
        let mut current = self.inner.cgroups.lock().unwrap_or_else(|e| e.into_inner());
        if detected.is_some() && current.is_none() {
            tracing::info!(cgroup_root = %root, "peak memory is read from each container's cgroup when it ends");
        }
        *current = detected;
    }

    /// The containers that have a parent cgroup (see
    /// [`DockerClient::account_cgroups_under`]), by name; empty when accounting is off.
    pub fn cgroup_parents(&self) -> Vec<String> {
        self.cgroups().map(|c| c.parents()).unwrap_or_default()
    }

    /// Remove container `name`'s parent cgroup (the kernel refuses while it is in use).
    pub fn remove_cgroup_parent(&self, name: &str) {
        if let Some(cgroups) = self.cgroups() {
            cgroups.remove(name);
        }
    }

    fn image_known(&self, reference: &str) -> bool {
        let images = self.inner.images.lock().unwrap_or_else(|e| e.into_inner());
        images.contains(reference)
    }

    fn remember_image(&self, reference: &str, present: bool) {
        let mut images = self.inner.images.lock().unwrap_or_else(|e| e.into_inner());
        if present {
            images.insert(reference.to_owned());
        } else {
            images.remove(reference);
        }
    }

    /// Makes sure `image` is present locally: inspects it, and pulls it only when it is
    /// missing. Images found present are remembered in-process, so repeated calls for
    /// the same image cost nothing. A failed pull is [`DockerError::ImagePull`] with the
    /// daemon's message as the reason.
    pub async fn ensure_image(&self, image: &str) -> Result<(), DockerError> {
        let Some(reference) = normalize_image(image) else {
            return Err(DockerError::ImagePull {
                image: image.to_owned(),
                reason: "empty image name".to_owned(),
            });
        };
        if self.image_known(&reference) {
            return Ok(());
        }
        let docker = self.client().await?;
        match docker.inspect_image(&reference).await.map_err(error::map) {
            Ok(_) => {
                self.remember_image(&reference, true);
                return Ok(());
            }
            Err(DockerError::NotFound) => {}
            Err(e) => return Err(e),
        }

        tracing::info!(image = %reference, "pulling image");
        // The engine going away mid-pull is Unreachable; anything else the engine or the
        // registry says (including a pull that stalls past the request timeout) is the
        // image's problem.
        let pull_error = |e: bollard::errors::Error| {
            if matches!(e, bollard::errors::Error::RequestTimeoutError) {
                return DockerError::ImagePull {
                    image: image.to_owned(),
                    reason: "the engine did not answer the pull request in time".to_owned(),
                };
            }
            let reason = error::message(&e);
            match error::map(e) {
                unreachable @ DockerError::Unreachable(_) => unreachable,
                _ => DockerError::ImagePull {
                    image: image.to_owned(),
                    reason,
                },
            }
        };
        let options = CreateImageOptions {
            from_image: Some(reference.clone()),
            ..Default::default()
        };
        let mut progress = docker.create_image(Some(options), None, None);
        while let Some(item) = progress.next().await {
            item.map_err(pull_error)?;
        }
        match docker.inspect_image(&reference).await {
            Ok(_) => {
                self.remember_image(&reference, true);
                Ok(())
            }
            Err(e) => match error::map(e) {
                DockerError::NotFound => Err(DockerError::ImagePull {
                    image: image.to_owned(),
                    reason: "the pull ended without error but the image is still missing"
                        .to_owned(),
                }),
                other => Err(other),
            },
        }
    }

    /// Creates (does not start) a container. A name already in use is
    /// [`DockerError::Conflict`]; a missing image is [`DockerError::NotFound`] (call
    /// [`DockerClient::ensure_image`] first).
    pub async fn create(&self, spec: &ContainerSpec) -> Result<(), DockerError> {
        let docker = self.client().await?;
        let mut spec = spec.clone();
        if let Some(cgroups) = self.cgroups() {
            spec.cgroup_parent = Some(cgroups.parent(&spec.name));
        }
        let spec = &spec;
        let options = CreateContainerOptions {
            name: Some(spec.name.clone()),
            ..Default::default()
        };
        match docker
            .create_container(Some(options), spec.to_create_body())
            .await
        {
            Ok(created) => {
                for warning in created.warnings.iter().filter(|w| !w.is_empty()) {
                    tracing::warn!(container = %spec.name, "Docker: {warning}");
                }
                Ok(())
            }
            Err(e) => {
                let e = error::map(e);
                if e.is_not_found() {
                    // The image (or network) is gone: do not trust the cache for it.
                    if let Some(reference) = normalize_image(&spec.image) {
                        self.remember_image(&reference, false);
                    }
                }
                Err(e)
            }
        }
    }

    /// Starts a created container (see [`DockerClient::start_attached`]; its output is
    /// left to Docker's logs).
    pub async fn start(&self, name: &str, stdin: Option<PathBuf>) -> Result<(), DockerError> {
        self.start_attached(name, stdin).await.map(drop)
    }

    /// Starts a created container with its output attached first, and returns that
    /// output: all of it, live, from the first byte, whatever Docker's log files keep
    /// (they rotate). Dropping the stream detaches; the container runs on.
    ///
    /// With `stdin`, the file is opened first and, once the container has started, its
    /// bytes are streamed in by a background task which then closes stdin (the container
    /// must have been created with `open_stdin: true`, so that closing our side closes
    /// the container's). This returns once the container has started, not when stdin
    /// has been consumed; a container that exits without reading all of it is fine.
    ///
    /// A missing executable is [`DockerError::CommandNotFound`].
    pub async fn start_attached(
        &self,
        name: &str,
        stdin: Option<PathBuf>,
    ) -> Result<Output, DockerError> {
        let docker = self.client().await?;
        let feed = match stdin {
            None => None,
            Some(path) => {
                let file = tokio::fs::File::open(&path).await.map_err(|e| {
                    DockerError::Other(format!("cannot open stdin file {}: {e}", path.display()))
                })?;
                Some((path, file))
            }
        };
        let options = AttachContainerOptions {
            stdin: feed.is_some(),
            stdout: true,
            stderr: true,
            stream: true,
            logs: false,
            ..Default::default()
        };
        let AttachContainerResults { output, input } = docker
            .attach_container(name, Some(options))
            .await
            .map_err(error::map)?;
        docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(error::map_start)?;
        if let Some((path, file)) = feed {
            tokio::spawn(feed_stdin(name.to_owned(), path, file, input));
        }
        Ok(until_first_error(
            output.filter_map(|item| std::future::ready(log_chunk(item))),
        ))
    }

    /// The container's output from its start, stdout and stderr kept apart. With
    /// `follow`, the stream goes on until the container stops; otherwise it ends with
    /// what has been logged so far. The stream ends after the first error.
    pub fn logs(&self, name: &str, follow: bool) -> Output {
        let engine = self.clone();
        let name = name.to_owned();
        let options = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            since: 0,
            until: 0,
            timestamps: false,
            tail: "all".to_owned(),
        };
        until_first_error(stream::once(async move { engine.client().await }).flat_map(
            move |client| {
                match client {
                    Ok(docker) => docker
                        .logs(&name, Some(options.clone()))
                        .filter_map(|item| std::future::ready(log_chunk(item)))
                        .left_stream(),
                    Err(e) => stream::once(std::future::ready(Err(e))).right_stream(),
                }
            },
        ))
    }

    /// Waits until the container is not running and returns its exit code (immediately
    /// if it has already exited). A non-zero exit is a value, not an error.
    pub async fn wait(&self, name: &str) -> Result<i64, DockerError> {
        let docker = self.client().await?;
        let options = WaitContainerOptions {
            condition: "not-running".to_owned(),
        };
        let mut waiting = docker.wait_container(name, Some(options));
        match waiting.next().await {
            Some(Ok(response)) => Ok(response.status_code),
            // bollard turns a non-zero exit into an error; it is the answer here.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(error::map(e)),
            None => Err(DockerError::Other(format!(
                "waiting for container {name}: the engine closed the stream without an exit code"
            ))),
        }
    }

    /// Run `cmd` in the running container `name`: its output (each stream cut at `max`
    /// bytes) and exit code.
    pub async fn exec(
        &self,
        name: &str,
        cmd: &[String],
        max: usize,
    ) -> Result<(Vec<u8>, Vec<u8>, i64), DockerError> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let docker = self.client().await?;
        let created = docker
            .create_exec(
                name,
                CreateExecOptions::<String> {
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    cmd: Some(cmd.to_vec()),
                    ..Default::default()
                },
            )
            .await
            .map_err(error::map)?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } = docker
            .start_exec(&created.id, None)
            .await
            .map_err(error::map)?
        {
            while let Some(item) = output.next().await {
                match item.map_err(error::map)? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        let room = max.saturating_sub(out.len());
                        out.extend_from_slice(&message[..message.len().min(room)]);
                    }
                    LogOutput::StdErr { message } => {
                        let room = max.saturating_sub(err.len());
                        err.extend_from_slice(&message[..message.len().min(room)]);
                    }
                    LogOutput::StdIn { .. } => {}
                }
            }
        }
        let inspected = docker.inspect_exec(&created.id).await.map_err(error::map)?;
        Ok((out, err, inspected.exit_code.unwrap_or(-1)))
    }

    /// The container's state, or `None` when there is no such container.
    pub async fn status(&self, name: &str) -> Result<Option<ContainerStatus>, DockerError> {
        let docker = self.client().await?;
        match docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(inspect) => Ok(Some(status_from_state(inspect.state))),
            Err(e) => match error::map(e) {
                DockerError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    /// Follows the container's resource statistics until it stops and returns the largest
    /// memory use seen, in bytes (cgroup v1's `max_usage` when the engine reports it, else
    /// the largest `usage` sampled, about once a second). `None` when nothing was
    /// measured. Meant to be spawned right after [`DockerClient::start`]; it also works
    /// when spawned before the start, and returns once the container has stopped or is
    /// gone.
    pub async fn peak_memory(&self, name: &str) -> Option<u64> {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        self.track_peak_memory(name, peak.clone()).await;
        Some(peak.load(std::sync::atomic::Ordering::Relaxed)).filter(|&p| p > 0)
    }

    /// Like [`DockerClient::peak_memory`], but keeps the largest value seen so far in
    /// `peak`, so a caller can read it the moment the container ends instead of waiting
    /// for the stats stream's next (once a second) sample.
    pub async fn track_peak_memory(
        &self,
        name: &str,
        peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        let Ok(docker) = self.client().await else {
            return;
        };
        let options = StatsOptions {
            stream: true,
            one_shot: false,
        };
        let mut samples = docker.stats(name, Some(options));
        while let Some(sample) = samples.next().await {
            let sample = match sample {
                Ok(sample) => sample,
                Err(e) => {
                    tracing::debug!(container = name, "stats stream ended: {e}");
                    break;
                }
            };
            let memory = sample
                .memory_stats
                .and_then(|m| m.max_usage.filter(|&v| v > 0).or(m.usage))
                .filter(|&v| v > 0);
            if let Some(memory) = memory {
                peak.fetch_max(memory, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            // An empty sample: Docker sends these while the container is not running
            // (and keeps the stream open after it stops), so look at its state.
            match self.status(name).await {
                Ok(Some(status)) if status.running || status.state == "created" => {}
                _ => break,
            }
        }
    }

    /// Sends SIGKILL. A container that is not running or does not exist is fine.
    pub async fn kill(&self, name: &str) -> Result<(), DockerError> {
        let docker = self.client().await?;
        let options = KillContainerOptions {
            signal: "SIGKILL".to_owned(),
        };
        match docker.kill_container(name, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) => match error::map(e) {
                DockerError::NotFound | DockerError::Conflict => Ok(()),
                other => Err(other),
            },
        }
    }

    /// Removes the container, running or not, with its anonymous volumes. A container
    /// that does not exist (or is already being removed) is fine.
    pub async fn remove(&self, name: &str) -> Result<(), DockerError> {
        let docker = self.client().await?;
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            link: false,
        };
        let removed = docker.remove_container(name, Some(options)).await;
        if let Some(cgroups) = self.cgroups() {
            cgroups.remove(name);
        }
        match removed {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                message,
            }) if message.contains("already in progress") => Ok(()),
            Err(e) => match error::map(e) {
                DockerError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    /// All containers, running or not, that carry label `key` (with `value`, when given).
    pub async fn list_by_label(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        let docker = self.client().await?;
        let filter = match value {
            Some(value) => format!("{key}={value}"),
            None => key.to_owned(),
        };
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".to_owned(), vec![filter])])),
            ..Default::default()
        };
        let containers = docker
            .list_containers(Some(options))
            .await
            .map_err(error::map)?;
        Ok(containers
            .into_iter()
            .map(|c| ContainerSummary {
                name: c
                    .names
                    .and_then(|names| names.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .or(c.id)
                    .unwrap_or_default(),
                labels: c
                    .labels
                    .unwrap_or_default()
                    .into_iter()
                    .collect::<BTreeMap<_, _>>(),
                running: c.state == Some(ContainerSummaryStateEnum::RUNNING),
            })
            .collect())
    }
}

/// Streams `file` into the attached stdin, closes it, then holds the connection until
/// the engine ends it (when the container stops), so the engine reads everything.
async fn feed_stdin(
    name: String,
    path: PathBuf,
    mut file: tokio::fs::File,
    mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
) {
    match tokio::io::copy(&mut file, &mut input).await {
        Ok(bytes) => tracing::debug!(container = %name, bytes, "stdin sent"),
        // Typically the container exited without reading all of its input.
        Err(e) => {
            tracing::debug!(container = %name, file = %path.display(), "stdin not fully sent: {e}")
        }
    }
    if let Err(e) = input.shutdown().await {
        tracing::debug!(container = %name, "closing stdin: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every future and stream is `Send + 'static`-friendly, so callers can spawn them.
    #[allow(dead_code, clippy::let_underscore_future)]
    fn futures_are_send(engine: DockerClient, spec: ContainerSpec) {
        fn send<T: Send>(_: T) {}
        fn send_static<T: Send + 'static>(_: T) {}
        send(engine.info());
        send(engine.ensure_image("x"));
        send(engine.create(&spec));
        send(engine.start("x", None));
        send(engine.wait("x"));
        send(engine.status("x"));
        send(engine.peak_memory("x"));
        send(engine.kill("x"));
        send(engine.remove("x"));
        send(engine.list_by_label("k", None));
        send_static(engine.logs(&String::from("x"), true));
        send_static(engine.clone());
    }

    #[test]
    fn resolves_the_socket() {
        let r = resolve_socket;
        assert_eq!(r(None, None).unwrap(), DEFAULT_SOCKET);
        assert_eq!(r(None, Some("")).unwrap(), DEFAULT_SOCKET);
        assert_eq!(r(None, Some("unix:///run/d.sock")).unwrap(), "/run/d.sock");
        assert_eq!(
            r(Some("/x.sock"), Some("unix:///run/d.sock")).unwrap(),
            "/x.sock"
        );
        assert_eq!(r(Some("unix:///x.sock"), None).unwrap(), "/x.sock");
        assert_eq!(
            r(Some("/x.sock"), Some("tcp://1.2.3.4:2375")).unwrap(),
            "/x.sock"
        );
        assert!(r(None, Some("tcp://1.2.3.4:2375")).is_err());
        assert!(r(Some("ssh://host"), None).is_err());
        assert!(r(Some("unix://"), None).is_err());
    }

    #[test]
    fn normalizes_image_references() {
        let n = |s| normalize_image(s).unwrap();
        assert_eq!(n("busybox"), "busybox:latest");
        assert_eq!(n("busybox:1.36"), "busybox:1.36");
        assert_eq!(
            n("localhost:5000/team/tool"),
            "localhost:5000/team/tool:latest"
        );
        assert_eq!(
            n("localhost:5000/team/tool:2"),
            "localhost:5000/team/tool:2"
        );
        assert_eq!(n("ubuntu@sha256:abcd"), "ubuntu@sha256:abcd");
        assert_eq!(n(" alpine "), "alpine:latest");
        assert_eq!(normalize_image("  "), None);
    }

    #[test]
    fn reads_container_state() {
        let never_started = ContainerState {
            status: Some(bollard::models::ContainerStateStatusEnum::CREATED),
            running: Some(false),
            exit_code: Some(0),
            started_at: Some("0001-01-01T00:00:00Z".into()),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            error: Some(String::new()),
            ..Default::default()
        };
        let s = status_from_state(Some(never_started));
        assert_eq!(s.state, "created");
        assert_eq!(
            (s.running, s.exit_code, s.started_at, s.finished_at, s.error),
            (false, None, None, None, None)
        );

        let failed_start = ContainerState {
            status: Some(bollard::models::ContainerStateStatusEnum::CREATED),
            running: Some(false),
            exit_code: Some(127),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            error: Some("exec: \"nope\": executable file not found".into()),
            ..Default::default()
        };
        let s = status_from_state(Some(failed_start));
        assert_eq!(s.exit_code, Some(127));
        assert!(s.error.is_some());

        let exited = ContainerState {
            status: Some(bollard::models::ContainerStateStatusEnum::EXITED),
            running: Some(false),
            exit_code: Some(0),
            oom_killed: Some(true),
            started_at: Some("2024-01-01T00:00:00.1Z".into()),
            finished_at: Some("2024-01-01T00:00:01.2Z".into()),
            ..Default::default()
        };
        let s = status_from_state(Some(exited));
        assert_eq!(s.exit_code, Some(0));
        assert!(s.oom_killed);
        assert_eq!(s.finished_at.as_deref(), Some("2024-01-01T00:00:01.2Z"));

        let running = ContainerState {
            running: Some(true),
            exit_code: Some(0),
            started_at: Some("2024-01-01T00:00:00Z".into()),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        let s = status_from_state(Some(running));
        assert!(s.running);
        assert_eq!(s.exit_code, None);
        assert!(s.started_at.is_some());

        assert!(!status_from_state(None).running);
    }

    #[test]
    fn maps_log_frames() {
        let out = log_chunk(Ok(LogOutput::StdOut {
            message: "a".into(),
        }));
        assert_eq!(out, Some(Ok(LogChunk::Stdout("a".into()))));
        let err = log_chunk(Ok(LogOutput::StdErr {
            message: "b".into(),
        }));
        assert_eq!(err, Some(Ok(LogChunk::Stderr("b".into()))));
        let tty = log_chunk(Ok(LogOutput::Console {
            message: "c".into(),
        }));
        assert_eq!(tty, Some(Ok(LogChunk::Stdout("c".into()))));
        assert_eq!(
            log_chunk(Ok(LogOutput::StdIn {
                message: "d".into()
            })),
            None
        );
        assert_eq!(
            log_chunk(Ok(LogOutput::StdOut { message: "".into() })),
            None
        );
    }
}
