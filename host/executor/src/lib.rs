//! The executor boundary: where deciding ends and doing begins.
//!
//! The runner decides each step of a task's life; an [`Executor`] carries out the steps
//! that touch processes: make an image available, create a process for one TES executor
//! from an executor-neutral [`ProcessSpec`], start it, report its state, stream its
//! output, wait for its exit, kill and remove it, list what this server owns, and say
//! what capacity it has. Docker implements it (`tessera-docker`); Kubernetes Jobs,
//! remote workers and WASI tasks are further implementations. The runner never names
//! one of them, and its tests run against [`fake::FakeExecutor`] (feature `fake`).
//!
//! Processes are named by the runner (one name per task, attempt and executor index), so
//! that a restarted server finds the processes of the tasks it resumes by name.
//! Executor-specific knobs (Docker's socket, labels, default network) live in the
//! implementations, not here.

#[cfg(feature = "fake")]
pub mod fake;
pub mod job;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A process's output, chunk by chunk, stdout and stderr apart. It ends after the first
/// error.
pub type LogStream = Pin<Box<dyn futures_core::Stream<Item = Result<LogChunk, ExecError>> + Send>>;

/// One TES executor as a process to run, in terms every executor understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Unique per task, attempt and executor index ([`process_name`]).
    pub name: String,
    pub task_id: String,
    /// Which executor of the task (0-based).
    pub index: usize,
    pub image: String,
    /// `command[0]` is the program; no shell is added.
    pub command: Vec<String>,
    pub workdir: Option<String>,
    pub env: Vec<(String, String)>,
    /// Host paths made visible at container paths.
    pub mounts: Vec<Mount>,
    /// CPU cores it may use; 0: no limit.
    pub cpu_cores: u32,
    /// Memory it may use, in bytes (swap off); 0: no limit.
    pub memory_bytes: u64,
    /// `None`: the executor's default network.
    pub network: Option<Network>,
    /// Started with its stdin fed from a file ([`Executor::start`]).
    pub stdin: bool,
    /// Run as this user instead of the image's (the runner hands the task's mounted
    /// files to it first).
    pub user: Option<User>,
    /// The image's file system is read-only; `/tmp` is a small writable scratch space.
    pub read_only_root: bool,
}

/// A numeric user and group a process runs as (`UID[:GID]`; the group defaults to the
/// user id). Numeric only: the host must know the ids to hand files to them, and a
/// name would be resolved in each image differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for User {
    type Err = String;

    fn from_str(s: &str) -> Result<User, String> {
        let id = |part: &str| {
            part.parse::<u32>()
                .map_err(|_| format!("user {s:?} is not UID or UID:GID with numeric ids"))
        };
        match s.split_once(':') {
            Some((uid, gid)) => Ok(User {
                uid: id(uid)?,
                gid: id(gid)?,
            }),
            None => {
                let uid = id(s)?;
                Ok(User { uid, gid: uid })
            }
        }
    }
}

impl std::fmt::Display for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.uid, self.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::User;

    #[test]
    fn users_are_numeric_ids() {
        assert_eq!(
            "1000".parse(),
            Ok(User {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!("1000:50".parse(), Ok(User { uid: 1000, gid: 50 }));
        assert_eq!(User { uid: 1, gid: 2 }.to_string(), "1:2");
        for bad in ["nobody", "1000:staff", "", ":1", "-1", "1:2:3"] {
            assert!(bad.parse::<User>().is_err(), "{bad:?}");
        }
    }
}

/// How a target isolates its processes beyond the task's own requests (server-wide
/// settings, overridden per target).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolation {
    pub user: Option<User>,
    /// The target's processes have no network, whatever a task asks for.
    pub no_network: bool,
    pub read_only_root: bool,
}

/// A host path visible inside the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub container: String,
    pub read_only: bool,
}

/// Which network a process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// No network at all (TES backend parameter `network=none`).
    None,
    /// The executor's ordinary network (`network=bridge`): on Docker, the network
    /// Tessera creates, from which link-local addresses and the host are unreachable.
    Bridge,
}

/// The name of the process of executor `index` of `task_id`'s attempt `attempt`.
pub fn process_name(task_id: &str, attempt: usize, index: usize) -> String {
    format!("tessera-{task_id}-{attempt}-{index}")
}

/// What the executor says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Created, never started.
    Created,
    Running,
    /// Ended with this exit code (killed for memory when `oom_killed`).
    Exited {
        code: i64,
        oom_killed: bool,
    },
}

/// One chunk of a process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogChunk {
    Stdout(Bytes),
    Stderr(Bytes),
}

/// What a command run in a process printed, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i64,
}

/// What the executor has to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// The executor's own version, e.g. Docker's `20.10.24`.
    pub version: String,
    pub cpus: u32,
    pub memory_bytes: u64,
}

/// Which of TES's resource requests an executor enforces, beyond CPU and memory (the
/// others are reported in the task's system logs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enforces {
    pub disk: bool,
    pub preemptible: bool,
    pub zones: bool,
}

/// A process this server owns (from [`Executor::list`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub name: String,
    pub task_id: String,
}

/// Why an executor call failed, by what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// The executor cannot be reached (retry later; nothing is known to have happened).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The image is not there and cannot be had: the task's fault.
    #[error("image {image} is not available: {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// The program does not exist in the image (a shell would say 127).
    #[error("command not found: {0}")]
    CommandNotFound(String),
    /// No such process.
    #[error("no such process")]
    NotFound,
    /// A process of that name exists already.
    #[error("a process of that name exists already")]
    Conflict,
    #[error("{0}")]
    Other(String),
}

/// An executor: runs the processes of TES executors. Shared across tasks (`Send +
/// Sync`); every method may wait on the executor.
pub trait Executor: Send + Sync {
    /// A short name for logs and task metadata, e.g. `docker`.
    fn kind(&self) -> &'static str;

    /// Which resource requests it enforces beyond CPU and memory.
    fn enforces(&self) -> Enforces;

    /// Whether the executor answers, and what it has: `Err(Unreachable)` when it does
    /// not.
    fn capacity(&self) -> BoxFuture<'_, Result<Capacity, ExecError>>;

    /// Make `image` available (pull it if it is missing).
    fn prepare_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Create (not start) the process; [`ExecError::Conflict`] when one of that name
    /// exists.
    fn create<'a>(&'a self, spec: &'a ProcessSpec) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Start a created process; with `stdin`, the file's bytes are its standard input
    /// (the process was created with `stdin: true`). Returns once it has started.
    fn start<'a>(
        &'a self,
        name: &'a str,
        stdin: Option<PathBuf>,
    ) -> BoxFuture<'a, Result<(), ExecError>>;

    /// The process's state; `None` when there is no such process.
    fn status<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProcessState>, ExecError>>;

    /// The process's output from its start; with `follow`, until it ends.
    fn logs(&self, name: &str, follow: bool) -> LogStream;

    /// Wait until the process has ended; its exit code.
    fn wait<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, ExecError>>;

    /// The most memory the process used, once it has ended, when the executor can tell.
    fn peak_memory<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<u64>>;

    /// Kill the process (fine when it is not running or does not exist).
    fn kill<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>>;

    /// Remove the process, running or not (fine when it does not exist).
    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>>;

    /// The processes of one task, whichever server made them (the caller holds the task,
    /// and another server may have started its processes before it took the task over);
    /// or, with `None`, every process this server made.
    fn list<'a>(&'a self, task_id: Option<&'a str>)
    -> BoxFuture<'a, Result<Vec<Owned>, ExecError>>;

    /// Run `command` inside the running process `name` (a person looking into a task
    /// kept for them) and collect its output, at most `max_output` bytes of each stream.
    fn exec<'a>(
        &'a self,
        name: &'a str,
        command: &'a [String],
        max_output: usize,
    ) -> BoxFuture<'a, Result<ExecOutput, ExecError>> {
        let _ = (name, command, max_output);
        Box::pin(async move {
            Err(ExecError::Other(format!(
                "the {} executor cannot run commands in a process",
                self.kind()
            )))
        })
    }

    /// Let go of what the executor keeps beside processes that no longer exist (after a
    /// crash, or what a failed removal left). Best effort.
    fn tidy(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}
