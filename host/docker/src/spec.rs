//! What a container is created from, and how that maps onto the Engine API.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountTypeEnum};

/// The capabilities a task's container keeps; all others are dropped. What ordinary
/// batch images need when they run as root: to own, write and change files they did not
/// create (CHOWN, DAC_OVERRIDE, FOWNER, FSETID), to switch to another user (SETUID,
/// SETGID; `no-new-privileges` still stops any gain through set-user-id programs), and
/// to signal their own processes running as another user (KILL). Dropped compared with
/// Docker's defaults: MKNOD (device files left in bind-mounted host directories),
/// NET_RAW (spoofed packets), NET_BIND_SERVICE, SYS_CHROOT, SETPCAP, SETFCAP,
/// AUDIT_WRITE.
pub const BATCH_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
];

/// The scratch space at `/tmp` of a container whose root file system is read-only.
const READ_ONLY_ROOT_TMP: &str = "rw,nosuid,nodev,size=256m";

/// A host path made visible inside the container (a `bind` mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// Absolute path on the host; it must exist when the container is created.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
    pub read_only: bool,
}

impl Bind {
    pub fn new(host: impl Into<PathBuf>, container: impl Into<String>, read_only: bool) -> Self {
        Bind {
            host: host.into(),
            container: container.into(),
            read_only,
        }
    }
}

/// Everything needed to create one executor container.
///
/// `command` becomes the container's `Cmd` with the image's entrypoint overridden to
/// empty, so `command[0]` is the program that runs; no shell is added. Containers are
/// always created unprivileged, with `no-new-privileges`, no added capabilities, and
/// (when `memory_bytes` is set) swap capped at the memory limit; every capability but
/// [`BATCH_CAPABILITIES`] is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub workdir: Option<String>,
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub binds: Vec<Bind>,
    /// CPU quota in units of 1e-9 CPUs (1.5 CPUs = 1_500_000_000).
    pub nano_cpus: Option<i64>,
    pub memory_bytes: Option<i64>,
    /// Network mode, e.g. `"none"` or `"bridge"`; `None` is the daemon's default.
    pub network: Option<String>,
    /// Create the container with an open, attachable stdin that closes once the attached
    /// client is done (`OpenStdin` + `StdinOnce`). Needed for `start(name, Some(file))`.
    pub open_stdin: bool,
    /// The parent cgroup (set by the engine when it reads peak memory from the kernel).
    pub cgroup_parent: Option<String>,
    /// `UID:GID` to run as; `None`: the image's user.
    pub user: Option<String>,
    /// Mount the image read-only, with a small tmpfs at `/tmp`.
    pub read_only_root: bool,
    /// Processes (and threads) the container may have at once.
    pub pids_limit: Option<i64>,
    /// Docker keeps at most two log files of this size for the container (json-file
    /// driver); `None`: the daemon's default logging.
    pub log_file_bytes: Option<u64>,
}

impl ContainerSpec {
    /// The request body of `POST /containers/create` for this spec.
    pub(crate) fn to_create_body(&self) -> ContainerCreateBody {
        let mounts = self
            .binds
            .iter()
            .map(|b| Mount {
                typ: Some(MountTypeEnum::BIND),
                source: Some(b.host.to_string_lossy().into_owned()),
                target: Some(b.container.clone()),
                read_only: Some(b.read_only),
                ..Default::default()
            })
            .collect::<Vec<_>>();
        let host_config = HostConfig {
            mounts: (!mounts.is_empty()).then_some(mounts),
            nano_cpus: self.nano_cpus,
            memory: self.memory_bytes,
            // Equal to the memory limit: no swap beyond it.
            memory_swap: self.memory_bytes,
            network_mode: self.network.clone(),
            cgroup_parent: self.cgroup_parent.clone(),
            privileged: Some(false),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            // Device nodes and raw sockets are never needed by batch tasks; MKNOD would
            // let a root container leave device files in bind-mounted host directories.
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(BATCH_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            pids_limit: self.pids_limit,
            readonly_rootfs: self.read_only_root.then_some(true),
            // A volume of the task's own at /tmp is its scratch space instead.
            tmpfs: (self.read_only_root && !self.binds.iter().any(|b| b.container == "/tmp"))
                .then(|| HashMap::from([("/tmp".to_owned(), READ_ONLY_ROOT_TMP.to_owned())])),
            log_config: self.log_file_bytes.map(|bytes| HostConfigLogConfig {
                typ: Some("json-file".to_owned()),
                config: Some(HashMap::from([
                    ("max-size".to_owned(), bytes.to_string()),
                    ("max-file".to_owned(), "2".to_owned()),
                ])),
            }),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(self.image.clone()),
            cmd: Some(self.command.clone()),
            // An empty (not absent) list clears the image's ENTRYPOINT.
            entrypoint: Some(Vec::new()),
            working_dir: self.workdir.clone().filter(|w| !w.is_empty()),
            env: (!self.env.is_empty()).then(|| {
                self.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
            }),
            labels: (!self.labels.is_empty()).then(|| {
                self.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<HashMap<_, _>>()
            }),
            user: self.user.clone(),
            tty: Some(false),
            attach_stdin: Some(self.open_stdin),
            open_stdin: Some(self.open_stdin),
            stdin_once: Some(self.open_stdin),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            name: "c1".into(),
            image: "busybox".into(),
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            workdir: Some("/work".into()),
            env: vec![("A".into(), "1".into()), ("B".into(), "x=y".into())],
            labels: BTreeMap::from([("tessera.task".into(), "t1".into())]),
            binds: vec![
                Bind::new("/host/in", "/in", true),
                Bind::new("/host/out", "/out", false),
            ],
            nano_cpus: Some(1_500_000_000),
            memory_bytes: Some(1 << 30),
            network: Some("none".into()),
            open_stdin: true,
            cgroup_parent: Some("/tessera/x/c1".into()),
            user: Some("1000:1000".into()),
            read_only_root: true,
            pids_limit: Some(4096),
            log_file_bytes: Some(1 << 20),
        }
    }

    #[test]
    fn maps_every_field() {
        let body = spec().to_create_body();
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["Image"], "busybox");
        assert_eq!(json["Cmd"], serde_json::json!(["sh", "-c", "echo hi"]));
        assert_eq!(json["Entrypoint"], serde_json::json!([]));
        assert_eq!(json["WorkingDir"], "/work");
        assert_eq!(json["Env"], serde_json::json!(["A=1", "B=x=y"]));
        assert_eq!(json["Labels"]["tessera.task"], "t1");
        assert_eq!(json["OpenStdin"], true);
        assert_eq!(json["StdinOnce"], true);
        assert_eq!(json["Tty"], false);
        let hc = &json["HostConfig"];
        assert_eq!(hc["Memory"], 1 << 30);
        assert_eq!(hc["MemorySwap"], 1 << 30);
        assert_eq!(hc["NanoCpus"], 1_500_000_000i64);
        assert_eq!(hc["NetworkMode"], "none");
        assert_eq!(hc["Privileged"], false);
        assert_eq!(hc["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
        assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
        assert_eq!(
            hc["CapAdd"],
            serde_json::json!([
                "CHOWN",
                "DAC_OVERRIDE",
                "FOWNER",
                "FSETID",
                "KILL",
                "SETGID",
                "SETUID"
            ])
        );
        assert_eq!(json["User"], "1000:1000");
        assert_eq!(hc["ReadonlyRootfs"], true);
        assert_eq!(
            hc["Tmpfs"],
            serde_json::json!({"/tmp": "rw,nosuid,nodev,size=256m"})
        );
        assert_eq!(hc["PidsLimit"], 4096);
        assert_eq!(
            hc["LogConfig"],
            serde_json::json!({"Type": "json-file", "Config": {"max-size": "1048576", "max-file": "2"}})
        );
        assert_eq!(
            hc["Mounts"],
            serde_json::json!([
                {"Type": "bind", "Source": "/host/in", "Target": "/in", "ReadOnly": true},
                {"Type": "bind", "Source": "/host/out", "Target": "/out", "ReadOnly": false},
            ])
        );
    }

    #[test]
    fn leaves_unset_fields_to_the_daemon() {
        let body = ContainerSpec {
            name: "c".into(),
            image: "i".into(),
            command: vec!["true".into()],
            ..Default::default()
        }
        .to_create_body();
        let json = serde_json::to_value(&body).unwrap();
        let hc = &json["HostConfig"];
        for key in [
            "Memory",
            "MemorySwap",
            "NanoCpus",
            "NetworkMode",
            "Mounts",
            "ReadonlyRootfs",
            "Tmpfs",
            "PidsLimit",
            "LogConfig",
        ] {
            assert!(hc.get(key).is_none(), "{key} should be absent: {hc}");
        }
        assert!(json.get("WorkingDir").is_none());
        assert!(json.get("User").is_none());
        // Hardening is not optional.
        assert_eq!(hc["CapDrop"], serde_json::json!(["ALL"]));
        assert!(json.get("Env").is_none());
        assert_eq!(json["OpenStdin"], false);
        assert_eq!(hc["SecurityOpt"], serde_json::json!(["no-new-privileges"]));
    }

    #[test]
    fn a_task_volume_at_tmp_replaces_the_scratch_space() {
        let body = ContainerSpec {
            name: "c".into(),
            image: "i".into(),
            command: vec!["true".into()],
            binds: vec![Bind::new("/host/v", "/tmp", false)],
            read_only_root: true,
            ..Default::default()
        }
        .to_create_body();
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["HostConfig"]["ReadonlyRootfs"], true);
        assert!(json["HostConfig"].get("Tmpfs").is_none());
    }
}
