//! Plain data returned by [`crate::DockerClient`].

use std::collections::BTreeMap;

/// What the engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerInfo {
    /// Engine version, e.g. `20.10.24+dfsg1`.
    pub version: String,
    /// The Engine API version this client speaks with it, e.g. `1.41`.
    pub api_version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
    /// e.g. `overlay2`.
    pub storage_driver: String,
    /// 1 or 2; `None` when the engine does not say.
    pub cgroup_version: Option<u8>,
    /// `cgroupfs` or `systemd`; empty when the engine does not say.
    pub cgroup_driver: String,
}

/// The state of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    /// Docker's state word: `created`, `running`, `paused`, `restarting`, `removing`,
    /// `exited` or `dead`.
    pub state: String,
    pub running: bool,
    /// Set once the container has finished, or when it failed to start (Docker records
    /// 127 for a missing executable); `None` while running or never started.
    pub exit_code: Option<i64>,
    /// RFC 3339; `None` when never started.
    pub started_at: Option<String>,
    /// RFC 3339; `None` when not finished.
    pub finished_at: Option<String>,
    pub oom_killed: bool,
    /// The engine's error for this container (e.g. why it failed to start), if any.
    pub error: Option<String>,
}

/// One entry of [`crate::DockerClient::list_by_label`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    /// The container's name, without Docker's leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
}
