//! A thin, tested wrapper over the Docker Engine API (via bollard) with exactly what
//! Tessera's runner needs: make sure an image is present, create / start / wait / kill /
//! remove containers, feed a container's stdin from a file, read its demultiplexed logs,
//! measure its peak memory, and find containers by label.
//!
//! Only a local unix socket is supported (no TCP, no TLS). The API version is negotiated
//! with the engine on first use, so both old (Docker 20.10, API 1.41) and new engines
//! work.
//!
//! Engine behaviours worth knowing (checked against Docker 20.10 with runc 1.1):
//! - A missing executable fails the *start* call (HTTP 400, "exec: \"x\": executable
//!   file not found in $PATH"), surfaced as [`DockerError::CommandNotFound`]. The container
//!   is left in state `created` with exit code 127 and the message as its error, so
//!   [`DockerClient::status`] reports `exit_code: Some(127)` and [`DockerClient::wait`]
//!   returns 127.
//! - The stats stream never ends by itself: after the container stops it keeps sending
//!   empty samples every second. [`DockerClient::peak_memory`] therefore checks the
//!   container's state on empty samples and stops once it is no longer running.
//! - Logs are read from the json-file (or local) log driver, so they stay available
//!   until the container is removed; non-UTF-8 output is not byte-exact through it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tessera_docker::DockerError> {
//! use tessera_docker::{ContainerSpec, DockerClient};
//! let engine = DockerClient::connect(None)?;
//! engine.ensure_image("busybox:latest").await?;
//! let spec = ContainerSpec {
//!     name: "demo".into(),
//!     image: "busybox:latest".into(),
//!     command: vec!["echo".into(), "hello".into()],
//!     ..Default::default()
//! };
//! engine.create(&spec).await?;
//! engine.start("demo", None).await?;
//! let code = engine.wait("demo").await?;
//! engine.remove("demo").await?;
//! # let _ = code; Ok(()) }
//! ```

mod cgroup;
mod client;
mod error;
mod executor;
mod network;
mod spec;
mod types;
mod version;

pub use client::{DEFAULT_SOCKET, DockerClient, Output};
pub use error::DockerError;
pub use executor::{DockerExecutor, DockerOptions, INSTANCE_LABEL, TASK_LABEL};
pub use network::{TASK_BRIDGE, TASK_NETWORK};
pub use spec::{Bind, ContainerSpec};
pub use types::{ContainerStatus, ContainerSummary, DockerInfo};
