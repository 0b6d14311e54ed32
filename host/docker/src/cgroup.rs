//! Peak memory read from the kernel when a container ends.
//!
//! Docker's stats are sampled about once a second, so a container that runs for less
//! than that often has no figure at all. The kernel keeps the exact maximum per cgroup
//! (`memory.max_usage_in_bytes` on cgroup v1, `memory.peak` on cgroup v2), but a
//! container's own cgroup is removed as soon as it exits. So each container gets a parent
//! cgroup of its own (`--cgroup-parent <root>/<container>`): memory accounting is
//! hierarchical, the parent's maximum is the container's, and the parent outlives the
//! container until we read it and remove it.
//!
//! This needs the `cgroupfs` cgroup driver (with the `systemd` driver a parent must be a
//! systemd slice, which systemd may collect) and the same cgroup file system as the
//! engine (the host's, at `/sys/fs/cgroup`); elsewhere it is off and figures are sampled.

use std::path::{Path, PathBuf};

/// The cgroup file system.
const CGROUP_FS: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone)]
pub(crate) struct CgroupPeaks {
    fs: PathBuf,
    version: u8,
    /// e.g. `/tessera/<instance>`.
    root: String,
}

impl CgroupPeaks {
    /// Accounting under `root` when the engine's cgroups are visible here.
    pub(crate) fn detect(root: &str, driver: &str, version: Option<u8>) -> Option<CgroupPeaks> {
        Self::detect_in(Path::new(CGROUP_FS), root, driver, version)
    }

    fn detect_in(fs: &Path, root: &str, driver: &str, version: Option<u8>) -> Option<CgroupPeaks> {
        if driver != "cgroupfs" {
            return None;
        }
        let version = version?;
        let visible = match version {
            1 => fs.join("memory/memory.max_usage_in_bytes").exists(),
            2 => fs.join("cgroup.controllers").exists(),
            _ => false,
        };
        visible.then(|| CgroupPeaks {
            fs: fs.to_path_buf(),
            version,
            root: format!("/{}", root.trim_matches('/')),
        })
    }

    /// The cgroup parent to give container `name`.
    pub(crate) fn parent(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }

    /// The directories of `cgroup` (absolute, as Docker takes it) in every hierarchy.
    fn dirs(&self, cgroup: &str) -> Vec<PathBuf> {
        let rel = cgroup.trim_start_matches('/');
        match self.version {
            1 => std::fs::read_dir(&self.fs)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path().join(rel))
                        .collect()
                })
                .unwrap_or_default(),
            _ => vec![self.fs.join(rel)],
        }
    }

    /// The most memory container `name` used, from the kernel; `None` when its cgroup is
    /// not there (it never started, or accounting was off when it was created).
    pub(crate) fn peak(&self, name: &str) -> Option<u64> {
        let rel = self.parent(name);
        let rel = rel.trim_start_matches('/');
        let file = match self.version {
            1 => self
                .fs
                .join("memory")
                .join(rel)
                .join("memory.max_usage_in_bytes"),
            _ => self.fs.join(rel).join("memory.peak"),
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|&p| p > 0)
    }

    /// Remove container `name`'s parent cgroup (once the container is gone; a cgroup that
    /// still holds one is left alone by the kernel).
    pub(crate) fn remove(&self, name: &str) {
        for dir in self.dirs(&self.parent(name)) {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::debug!(cgroup = %dir.display(), error = %e, "removing a container's parent cgroup failed")
                }
            }
        }
    }

    /// The containers that have a parent cgroup here (by name), in any hierarchy.
    pub(crate) fn parents(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .dirs(&self.root)
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flat_map(|entries| entries.filter_map(Result::ok))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_with_cgroupfs_and_a_visible_hierarchy() {
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path();
        std::fs::create_dir_all(fs.join("memory")).unwrap();
        std::fs::write(fs.join("memory/memory.max_usage_in_bytes"), "1\n").unwrap();
        assert!(CgroupPeaks::detect_in(fs, "tessera/x", "systemd", Some(1)).is_none());
        assert!(CgroupPeaks::detect_in(fs, "tessera/x", "cgroupfs", None).is_none());
        assert!(CgroupPeaks::detect_in(fs, "tessera/x", "cgroupfs", Some(2)).is_none());
        let p = CgroupPeaks::detect_in(fs, "tessera/x", "cgroupfs", Some(1)).unwrap();
        assert_eq!(p.parent("c1"), "/tessera/x/c1");
    }

    #[test]
    fn reads_the_parents_maximum_and_removes_it_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path();
        for ctrl in ["memory", "cpu", "pids"] {
            std::fs::create_dir_all(fs.join(ctrl).join("tessera/x/c1")).unwrap();
        }
        std::fs::write(fs.join("memory/memory.max_usage_in_bytes"), "1\n").unwrap();
        std::fs::write(
            fs.join("memory/tessera/x/c1/memory.max_usage_in_bytes"),
            "61034496\n",
        )
        .unwrap();
        let p = CgroupPeaks::detect_in(fs, "/tessera/x/", "cgroupfs", Some(1)).unwrap();
        assert_eq!(p.peak("c1"), Some(61_034_496));
        assert_eq!(p.peak("c2"), None);
        std::fs::remove_file(fs.join("memory/tessera/x/c1/memory.max_usage_in_bytes")).unwrap();
        p.remove("c1");
        for ctrl in ["memory", "cpu", "pids"] {
            assert!(!fs.join(ctrl).join("tessera/x/c1").exists(), "{ctrl}");
        }
    }

    #[test]
    fn cgroup_v2_reads_memory_peak() {
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path();
        std::fs::write(fs.join("cgroup.controllers"), "memory\n").unwrap();
        std::fs::create_dir_all(fs.join("tessera/x/c1")).unwrap();
        std::fs::write(fs.join("tessera/x/c1/memory.peak"), "4096\n").unwrap();
        let p = CgroupPeaks::detect_in(fs, "tessera/x", "cgroupfs", Some(2)).unwrap();
        assert_eq!(p.peak("c1"), Some(4096));
    }

    #[test]
    fn parents_are_listed_by_container_name() {
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path();
        std::fs::create_dir_all(fs.join("memory")).unwrap();
        std::fs::write(fs.join("memory/memory.max_usage_in_bytes"), "1\n").unwrap();
        for ctrl in ["memory", "cpu"] {
            for c in ["exited", "gone"] {
                std::fs::create_dir_all(fs.join(ctrl).join("tessera/x").join(c)).unwrap();
            }
        }
        let p = CgroupPeaks::detect_in(fs, "tessera/x", "cgroupfs", Some(1)).unwrap();
        assert_eq!(p.parents(), ["exited", "gone"]);
        p.remove("gone");
        assert_eq!(p.parents(), ["exited"]);
    }
}
