//! An in-memory [`Executor`] for tests of the runner: processes are entries in a table,
//! they "run" a [`Script`] (output, then an exit code, or run until killed), and the
//! executor can be told to fail on command (create fails, start hangs or finds no
//! command, logs break, the whole executor becomes unreachable). It counts what was
//! created and started, so a test can check that no executor ran twice.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::Notify;

use crate::{
    BoxFuture, Capacity, Enforces, ExecError, Executor, LogChunk, LogStream, Owned, ProcessSpec,
    ProcessState,
};

/// What a process does once started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Script {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `Some`: exits with it at once; `None`: runs until [`FakeExecutor::exit`] or a kill.
    pub exit: Option<i64>,
    pub peak_memory: Option<u64>,
}

impl Script {
    /// Prints nothing and exits with `code`.
    pub fn exits(code: i64) -> Script {
        Script {
            exit: Some(code),
            peak_memory: Some(1 << 20),
            ..Script::default()
        }
    }

    /// Runs until told to exit or killed.
    pub fn runs() -> Script {
        Script {
            peak_memory: Some(1 << 20),
            ..Script::default()
        }
    }

    pub fn stdout(mut self, text: &str) -> Script {
        self.stdout = text.as_bytes().to_vec();
        self
    }
}

/// Failures to inject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every call fails with `Unreachable`.
    pub unreachable: bool,
    /// `create` fails (with `Other`) this many more times.
    pub failing_creates: usize,
    /// `start` never returns.
    pub start_hangs: bool,
    /// `start` fails with `CommandNotFound` for these executor indexes.
    pub command_not_found: Vec<usize>,
    /// Log streams fail after their first chunk (or at once when there is none).
    pub logs_fail: bool,
    /// `prepare_image` refuses these images.
    pub missing_images: Vec<String>,
    /// `create` says the process exists this many more times (while `status` says it
    /// does not: an executor that contradicts itself).
    pub phantom_conflicts: usize,
}

#[derive(Debug, Clone)]
struct Process {
    spec: ProcessSpec,
    state: ProcessState,
    output: Vec<LogChunk>,
    script: Script,
}

#[derive(Debug, Default)]
struct Table {
    processes: BTreeMap<String, Process>,
    /// Scripts by executor index (a process whose index has none exits 0).
    scripts: HashMap<usize, Script>,
    faults: Faults,
    creates: HashMap<String, usize>,
    starts: HashMap<String, usize>,
    removed: Vec<String>,
}

/// The in-memory executor. Cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct FakeExecutor {
    table: Mutex<Table>,
    changed: Notify,
}

impl FakeExecutor {
    pub fn new() -> FakeExecutor {
        FakeExecutor::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Table) -> R) -> R {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut t)
    }

    /// What executor `index` of every task does when started.
    pub fn script(&self, index: usize, script: Script) {
        self.with(|t| t.scripts.insert(index, script));
    }

    /// Change the failures to inject.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        self.with(|t| f(&mut t.faults));
        self.changed.notify_waiters();
    }

    /// A process that exists already (as a server that crashed left it).
    pub fn seed(&self, spec: ProcessSpec, state: ProcessState, stdout: &str) {
        let output = if stdout.is_empty() {
            Vec::new()
        } else {
            vec![LogChunk::Stdout(Bytes::copy_from_slice(stdout.as_bytes()))]
        };
        self.with(|t| {
            let script = t.scripts.get(&spec.index).cloned().unwrap_or_default();
            t.processes.insert(
                spec.name.clone(),
                Process {
                    spec,
                    state,
                    output,
                    script,
                },
            )
        });
    }

    /// A running process ends with `code`.
    pub fn exit(&self, name: &str, code: i64) {
        self.with(|t| {
            if let Some(p) = t.processes.get_mut(name)
                && p.state == ProcessState::Running
            {
                p.state = ProcessState::Exited {
                    code,
                    oom_killed: false,
                };
            }
        });
        self.changed.notify_waiters();
    }

    /// How often a process of this name was created.
    pub fn creates(&self, name: &str) -> usize {
        self.with(|t| t.creates.get(name).copied().unwrap_or(0))
    }

    /// How often a process of this name was started.
    pub fn starts(&self, name: &str) -> usize {
        self.with(|t| t.starts.get(name).copied().unwrap_or(0))
    }

    /// Every process start, by name.
    pub fn all_starts(&self) -> HashMap<String, usize> {
        self.with(|t| t.starts.clone())
    }

    /// The names of the processes that exist now.
    pub fn names(&self) -> Vec<String> {
        self.with(|t| t.processes.keys().cloned().collect())
    }

    /// The state of a process, if it exists.
    pub fn state(&self, name: &str) -> Option<ProcessState> {
        self.with(|t| t.processes.get(name).map(|p| p.state))
    }

    /// The spec a process was created with.
    pub fn spec(&self, name: &str) -> Option<ProcessSpec> {
        self.with(|t| t.processes.get(name).map(|p| p.spec.clone()))
    }

    /// Processes removed so far, in order.
    pub fn removed(&self) -> Vec<String> {
        self.with(|t| t.removed.clone())
    }

    fn reachable(&self) -> Result<(), ExecError> {
        if self.with(|t| t.faults.unreachable) {
            Err(ExecError::Unreachable("the fake executor is away".into()))
        } else {
            Ok(())
        }
    }
}

impl Executor for FakeExecutor {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn enforces(&self) -> Enforces {
        Enforces::default()
    }

    fn capacity(&self) -> BoxFuture<'_, Result<Capacity, ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            Ok(Capacity {
                version: "fake".into(),
                cpus: 64,
                memory_bytes: 256 << 30,
            })
        })
    }

    fn prepare_image<'a>(&'a self, image: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            if self.with(|t| t.faults.missing_images.iter().any(|m| m == image)) {
                return Err(ExecError::ImageUnavailable {
                    image: image.into(),
                    reason: "not in the fake registry".into(),
                });
            }
            Ok(())
        })
    }

    fn create<'a>(&'a self, spec: &'a ProcessSpec) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            self.with(|t| {
                if t.faults.failing_creates > 0 {
                    t.faults.failing_creates -= 1;
                    return Err(ExecError::Other("create failed on command".into()));
                }
                if t.faults.phantom_conflicts > 0 {
                    t.faults.phantom_conflicts -= 1;
                    return Err(ExecError::Conflict);
                }
                if t.processes.contains_key(&spec.name) {
                    return Err(ExecError::Conflict);
                }
                *t.creates.entry(spec.name.clone()).or_default() += 1;
                let script = t
                    .scripts
                    .get(&spec.index)
                    .cloned()
                    .unwrap_or_else(|| Script::exits(0));
                t.processes.insert(
                    spec.name.clone(),
                    Process {
                        spec: spec.clone(),
                        state: ProcessState::Created,
                        output: Vec::new(),
                        script,
                    },
                );
                Ok(())
            })
        })
    }

    fn start<'a>(
        &'a self,
        name: &'a str,
        _stdin: Option<PathBuf>,
    ) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            if self.with(|t| t.faults.start_hangs) {
                std::future::pending::<()>().await;
            }
            let result = self.with(|t| {
                let missing = t.faults.command_not_found.clone();
                let p = t.processes.get_mut(name).ok_or(ExecError::NotFound)?;
                if p.state != ProcessState::Created {
                    return Err(ExecError::Conflict);
                }
                if missing.contains(&p.spec.index) {
                    p.state = ProcessState::Exited {
                        code: 127,
                        oom_killed: false,
                    };
                    return Err(ExecError::CommandNotFound(format!(
                        "exec: {:?}: executable file not found in $PATH",
                        p.spec.command.first().cloned().unwrap_or_default()
                    )));
                }
                *t.starts.entry(name.to_string()).or_default() += 1;
                let p = t.processes.get_mut(name).ok_or(ExecError::NotFound)?;
                if !p.script.stdout.is_empty() {
                    p.output
                        .push(LogChunk::Stdout(Bytes::from(p.script.stdout.clone())));
                }
                if !p.script.stderr.is_empty() {
                    p.output
                        .push(LogChunk::Stderr(Bytes::from(p.script.stderr.clone())));
                }
                p.state = match p.script.exit {
                    Some(code) => ProcessState::Exited {
                        code,
                        oom_killed: false,
                    },
                    None => ProcessState::Running,
                };
                Ok(())
            });
            self.changed.notify_waiters();
            result
        })
    }

    fn status<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ProcessState>, ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            Ok(self.state(name))
        })
    }

    fn logs(&self, name: &str, follow: bool) -> LogStream {
        let (output, fail) = self.with(|t| {
            (
                t.processes
                    .get(name)
                    .map(|p| p.output.clone())
                    .unwrap_or_default(),
                t.faults.logs_fail,
            )
        });
        let _ = follow; // output is complete at start, so following adds nothing
        let mut items: Vec<Result<LogChunk, ExecError>> = output.into_iter().map(Ok).collect();
        if fail {
            items.truncate(1);
            items.push(Err(ExecError::Other("the log stream broke".into())));
        }
        futures_util::stream::iter(items).boxed()
    }

    fn wait<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<i64, ExecError>> {
        Box::pin(async move {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                self.reachable()?;
                match self.state(name) {
                    None => return Err(ExecError::NotFound),
                    Some(ProcessState::Exited { code, .. }) => return Ok(code),
                    Some(_) => {}
                }
                changed.await;
            }
        })
    }

    fn peak_memory<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<u64>> {
        Box::pin(
            async move { self.with(|t| t.processes.get(name).and_then(|p| p.script.peak_memory)) },
        )
    }

    fn kill<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            self.with(|t| {
                if let Some(p) = t.processes.get_mut(name)
                    && p.state == ProcessState::Running
                {
                    p.state = ProcessState::Exited {
                        code: 137,
                        oom_killed: false,
                    };
                }
            });
            self.changed.notify_waiters();
            Ok(())
        })
    }

    fn remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            self.with(|t| {
                if t.processes.remove(name).is_some() {
                    t.removed.push(name.to_string());
                }
            });
            self.changed.notify_waiters();
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        task_id: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Owned>, ExecError>> {
        Box::pin(async move {
            self.reachable()?;
            Ok(self.with(|t| {
                t.processes
                    .values()
                    .filter(|p| task_id.is_none_or(|id| p.spec.task_id == id))
                    .map(|p| Owned {
                        name: p.spec.name.clone(),
                        task_id: p.spec.task_id.clone(),
                    })
                    .collect()
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process_name;

    fn spec(index: usize) -> ProcessSpec {
        ProcessSpec {
            name: process_name("t", 0, index),
            task_id: "t".into(),
            index,
            image: "img".into(),
            command: vec!["run".into()],
            ..ProcessSpec::default()
        }
    }

    #[tokio::test]
    async fn a_process_runs_its_script_and_is_counted() {
        let x = FakeExecutor::new();
        x.script(0, Script::exits(3).stdout("hi\n"));
        let s = spec(0);
        x.create(&s).await.unwrap();
        assert_eq!(x.create(&s).await, Err(ExecError::Conflict));
        assert_eq!(x.status(&s.name).await, Ok(Some(ProcessState::Created)));
        x.start(&s.name, None).await.unwrap();
        assert_eq!(x.wait(&s.name).await, Ok(3));
        let out: Vec<_> = x.logs(&s.name, true).collect().await;
        assert_eq!(out, [Ok(LogChunk::Stdout(Bytes::from_static(b"hi\n")))]);
        assert_eq!((x.creates(&s.name), x.starts(&s.name)), (1, 1));
        x.remove(&s.name).await.unwrap();
        assert_eq!(x.status(&s.name).await, Ok(None));
    }

    #[tokio::test]
    async fn a_running_process_ends_when_told_or_killed() {
        let x = std::sync::Arc::new(FakeExecutor::new());
        x.script(0, Script::runs());
        let s = spec(0);
        x.create(&s).await.unwrap();
        x.start(&s.name, None).await.unwrap();
        let waiter = tokio::spawn({
            let (x, name) = (x.clone(), s.name.clone());
            async move { x.wait(&name).await }
        });
        x.kill(&s.name).await.unwrap();
        assert_eq!(waiter.await.unwrap(), Ok(137));
    }

    #[tokio::test]
    async fn faults_happen_on_command() {
        let x = FakeExecutor::new();
        x.faults(|f| {
            f.failing_creates = 1;
            f.command_not_found = vec![1];
        });
        assert!(matches!(x.create(&spec(0)).await, Err(ExecError::Other(_))));
        x.create(&spec(0)).await.unwrap();
        x.create(&spec(1)).await.unwrap();
        assert!(matches!(
            x.start(&spec(1).name, None).await,
            Err(ExecError::CommandNotFound(_))
        ));
        x.faults(|f| f.unreachable = true);
        assert!(matches!(x.capacity().await, Err(ExecError::Unreachable(_))));
    }
}
