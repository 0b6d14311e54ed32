//! A task's directory on the host (its workspace), where its container paths live, and
//! what to mount into its processes.
//!
//! Every container path `P` of a task maps to `<work_dir>/<task id>/fs/P` on the host. Executors
//! see the parts of that tree they need through bind mounts: directory mounts for
//! volumes, output locations and stdout/stderr files, file mounts for inputs that no
//! directory mount covers. Planning is pure so it can be tested without Docker.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use tessera_core::TaskRecord;
use tessera_core::tes::FileType;
use tessera_core::validate::{normalise, wildcard_base};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMount {
    /// Path inside the container.
    pub container: String,
    pub is_dir: bool,
    /// The task's secret files: its processes read them, never replace them.
    pub read_only: bool,
}

/// A task's directory: `<work_dir>/<task id>`, with the container file system under
/// `fs/` and captured output under `capture/`.
#[derive(Debug, Clone)]
pub struct TaskDir {
    pub root: PathBuf,
}

impl TaskDir {
    pub fn new(work_dir: &Path, task_id: &str) -> Self {
        TaskDir {
            root: work_dir.join(task_id),
        }
    }

    /// The host path behind a container path (already validated: absolute, no `..`).
    pub fn host_path(&self, container_path: &str) -> PathBuf {
        self.root
            .join("fs")
            .join(normalise(container_path).trim_start_matches('/'))
    }
}

impl TaskDir {
    /// Give everything under `fs/` (what the task's processes can see) to `uid:gid`, so
    /// that processes running as that user can write their outputs. Symbolic links are
    /// changed themselves, never followed. Called before any process runs.
    pub fn hand_over(&self, uid: u32, gid: u32) -> std::io::Result<()> {
        let mut pending = vec![self.root.join("fs")];
        while let Some(path) = pending.pop() {
            let meta = match std::fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(&path)? {
                    pending.push(entry?.path());
                }
            }
        }
        Ok(())
    }
}

fn parent(p: &str) -> String {
    let n = normalise(p);
    match n.rfind('/') {
        Some(0) | None => "/".to_string(),
        Some(i) => n[..i].to_string(),
    }
}

/// The mounts a task's executors need. Directory mounts nested inside another are
/// dropped (the outer one shows them); the root directory is never mounted.
pub fn plan_mounts(task: &TaskRecord) -> Vec<PlannedMount> {
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    for v in task.volumes() {
        dirs.insert(normalise(v));
    }
    for o in task.outputs() {
        let dir = if o.path.contains(['*', '?', '[']) {
            // Mount what the pattern searches, whatever path_prefix says.
            wildcard_base(&o.path)
        } else if o.r#type == Some(FileType::Directory) {
            normalise(&o.path)
        } else {
            parent(&o.path)
        };
        dirs.insert(dir);
    }
    for e in task.executors() {
        for p in [&e.stdout, &e.stderr].into_iter().flatten() {
            dirs.insert(parent(p));
        }
    }
    for i in task.inputs() {
        if i.r#type == Some(FileType::Directory) {
            dirs.insert(normalise(&i.path));
        }
    }
    dirs.remove("/");

    let covered = |p: &str, set: &BTreeSet<String>| {
        set.iter()
            .any(|d| p != d && (p.starts_with(&format!("{d}/")) || d == "/"))
    };
    let top_dirs: Vec<String> = dirs
        .iter()
        .filter(|d| !covered(d, &dirs))
        .cloned()
        .collect();
    let top_set: BTreeSet<String> = top_dirs.iter().cloned().collect();

    let mut mounts: Vec<PlannedMount> = top_dirs
        .into_iter()
        .map(|container| PlannedMount {
            container,
            is_dir: true,
            read_only: false,
        })
        .collect();
    // Files no directory mount shows: inputs anywhere, and outputs or stdout/stderr
    // files that sit directly under `/` (whose parent cannot be mounted).
    let mut files: BTreeSet<String> = BTreeSet::new();
    for i in task.inputs() {
        if i.r#type != Some(FileType::Directory) {
            files.insert(normalise(&i.path));
        }
    }
    for o in task.outputs() {
        if o.r#type != Some(FileType::Directory) && !o.path.contains(['*', '?', '[']) {
            files.insert(normalise(&o.path));
        }
    }
    for e in task.executors() {
        for p in [&e.stdout, &e.stderr].into_iter().flatten() {
            files.insert(normalise(p));
        }
    }
    for container in files {
        if !covered(&container, &top_set) {
            mounts.push(PlannedMount {
                container,
                is_dir: false,
                read_only: false,
            });
        }
    }
    // Secret files: each its own read-only mount, also inside a directory mount (so the
    // file stays read-only there too).
    for f in &task.extra.secret_files {
        let container = normalise(&f.path);
        mounts.retain(|m| m.container != container);
        mounts.push(PlannedMount {
            container,
            is_dir: false,
            read_only: true,
        });
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::State;
    use tessera_core::tes::{Executor, Input, Output, Task};

    fn record(spec: Task) -> TaskRecord {
        TaskRecord {
            id: "t".into(),
            seq: 1,
            state: State::Queued,
            reason: None,
            group: String::new(),
            origin: Default::default(),
            priority: 0,
            extra: Default::default(),
            spec,
            logs: vec![],
            creation_time: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn nested_dirs_collapse_and_uncovered_inputs_are_file_mounts() {
        let t = record(Task {
            volumes: Some(vec!["/vol/a".into(), "/vol/a/b".into()]),
            outputs: Some(vec![
                Output {
                    path: "/out/result.txt".into(),
                    url: "file:///x".into(),
                    ..Output::default()
                },
                Output {
                    path: "/vol/a/c/*.txt".into(),
                    path_prefix: Some("/vol/a/c/".into()),
                    url: "file:///x".into(),
                    ..Output::default()
                },
            ]),
            inputs: Some(vec![
                Input {
                    path: "/data/in.txt".into(),
                    content: Some("x".into()),
                    ..Input::default()
                },
                Input {
                    path: "/out/seed.txt".into(),
                    content: Some("x".into()),
                    ..Input::default()
                },
            ]),
            executors: Some(vec![Executor {
                stdout: Some("/logs/stdout".into()),
                ..Executor::default()
            }]),
            ..Task::default()
        });
        let m = plan_mounts(&t);
        let names: Vec<(&str, bool)> = m.iter().map(|m| (m.container.as_str(), m.is_dir)).collect();
        assert_eq!(
            names,
            [
                ("/logs", true),
                ("/out", true),
                ("/vol/a", true),
                ("/data/in.txt", false)
            ]
        );
    }

    #[test]
    fn root_level_files_do_not_mount_the_root() {
        let t = record(Task {
            outputs: Some(vec![Output {
                path: "/result".into(),
                url: "file:///x".into(),
                ..Output::default()
            }]),
            ..Task::default()
        });
        assert_eq!(
            plan_mounts(&t),
            [PlannedMount {
                container: "/result".into(),
                is_dir: false,
                read_only: false,
            }]
        );
        let ws = TaskDir::new(Path::new("/w"), "t");
        assert_eq!(ws.host_path("/a//b/./c"), PathBuf::from("/w/t/fs/a/b/c"));
    }
}
