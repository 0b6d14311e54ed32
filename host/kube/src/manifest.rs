//! A task as Kubernetes objects, as plain functions (no I/O): one batch/v1 Job, its
//! workspace PVC, a ConfigMap with what staging reads and a Secret with the task's
//! credentials. The PVC, ConfigMap and Secret are owned by the Job, so deleting the Job
//! removes them with its pods.
//!
//! The pod runs the task's containers in order, as init containers and a last main
//! container: `stage-in` (the tessera image: `tessera stage in`), `step-0` … `step-N`
//! (the task's executors), `stage-out` (`tessera stage out`). A task that stages nothing
//! and needs no workspace is its executors alone. Executors that must not stop the pod
//! when they fail (a later executor or the output staging still runs, as on Docker), or
//! that read or write their standard streams from files, run under `tessera stage exec`,
//! which `stage-in` copies into the pod: it runs the command, tees its streams, records
//! its real exit code in the container's termination message and exits 0.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource,
    PodSecurityContext, PodSpec, PodTemplateSpec, ResourceRequirements, Secret, SecretKeySelector,
    SecretVolumeSource, SecurityContext, Toleration, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use tessera_executor::job::JobRequest;

use crate::KubeSettings;

/// Labels on everything Tessera makes.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_TASK: &str = "tessera.dev/task";
pub const LABEL_ATTEMPT: &str = "tessera.dev/attempt";
pub const LABEL_INSTANCE: &str = "tessera.dev/instance";

/// Where the pod's own files are, in every container: the copied `tessera` binary, and
/// the marker of an executor that failed.
pub const RUN_DIR: &str = "/.tessera";
/// Where staging containers see the workspace, the ConfigMap and the Secret.
pub const WORKSPACE_DIR: &str = "/.tessera/workspace";
pub const SPEC_DIR: &str = "/.tessera/spec";
pub const SECRET_DIR: &str = "/.tessera/secret";
/// The file names in the ConfigMap and the Secret.
pub const STAGING_KEY: &str = "staging.json";
pub const STAGING_SECRET_KEY: &str = "staging-secret.json";
pub const SECRET_FILES_KEY: &str = "secret-files.json";
pub const OBJECT_STORE_KEY: &str = "object-store.json";
/// How long a stopped pod's containers have between SIGTERM and SIGKILL.
pub const STOP_GRACE_SECS: i64 = 5;
/// The binary in the tessera image.
pub const TESSERA_BIN: &str = "/tessera";

/// One container of the task's pod, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    StageIn,
    Step(usize),
    StageOut,
}

impl Slot {
    pub fn container_name(self) -> String {
        match self {
            Slot::StageIn => "stage-in".into(),
            Slot::Step(i) => format!("step-{i}"),
            Slot::StageOut => "stage-out".into(),
        }
    }

    pub fn from_container_name(name: &str) -> Option<Slot> {
        match name {
            "stage-in" => Some(Slot::StageIn),
            "stage-out" => Some(Slot::StageOut),
            _ => name.strip_prefix("step-")?.parse().ok().map(Slot::Step),
        }
    }
}

/// The shape of a task's pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The containers in order: every one but the last is an init container.
    pub slots: Vec<Slot>,
    /// Executors run under `tessera stage exec`.
    pub wrapped: bool,
    /// The pod has a workspace volume.
    pub workspace: bool,
}

/// How a task's pod is laid out.
pub fn layout(job: &JobRequest) -> Layout {
    let n = job.steps.len();
    let outputs = job.stage_out;
    let wrapped = outputs
        || job
            .steps
            .iter()
            .any(|s| s.stdin.is_some() || s.stdout.is_some() || s.stderr.is_some())
        || job.steps[..n.saturating_sub(1)]
            .iter()
            .any(|s| s.ignore_error);
    let workspace = job.needs_workspace || outputs || !job.secret_files.is_empty();
    let stage_in = workspace || wrapped;
    let mut slots = Vec::with_capacity(n + 2);
    if stage_in {
        slots.push(Slot::StageIn);
    }
    slots.extend((0..n).map(Slot::Step));
    if outputs {
        slots.push(Slot::StageOut);
    }
    Layout {
        slots,
        wrapped,
        workspace,
    }
}

/// The name of a task attempt's Job (and of its PVC, ConfigMap and Secret).
pub fn job_name(task_id: &str, attempt: usize) -> String {
    format!("tessera-{task_id}-{attempt}")
}

/// The label selector of everything Tessera makes.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=tessera";

/// The label selector of every object this server made.
pub fn instance_selector(instance: &str) -> String {
    format!("{LABEL_MANAGED_BY}=tessera,{LABEL_INSTANCE}={instance}")
}

fn labels(job: &JobRequest, settings: &KubeSettings) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), "tessera".to_string()),
        (LABEL_TASK.to_string(), job.task_id.clone()),
        (LABEL_ATTEMPT.to_string(), job.attempt.to_string()),
        (LABEL_INSTANCE.to_string(), settings.instance.clone()),
    ])
}

/// What a Job owns, so that deleting the Job removes it.
pub fn owned_by(job: &Job) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.metadata.name.clone()?,
        uid: job.metadata.uid.clone()?,
        controller: Some(false),
        block_owner_deletion: Some(true),
    })
}

/// The Job for a task attempt.
pub fn job(req: &JobRequest, settings: &KubeSettings) -> Job {
    let name = job_name(&req.task_id, req.attempt);
    let lay = layout(req);
    let labels = labels(req, settings);
    let mut containers: Vec<Container> = lay
        .slots
        .iter()
        .map(|slot| container(req, settings, &lay, *slot, &name))
        .collect();
    let main = containers.pop().unwrap_or_default();
    let mut pod_labels = req.placement.labels.clone();
    pod_labels.extend(labels.clone());
    let mut volumes = vec![Volume {
        name: "run".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    if lay.workspace {
        volumes.push(Volume {
            name: "workspace".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: name.clone(),
                read_only: None,
            }),
            ..Volume::default()
        });
    }
    if lay.slots.contains(&Slot::StageIn) || lay.slots.contains(&Slot::StageOut) {
        volumes.push(Volume {
            name: "spec".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                optional: Some(true),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        volumes.push(Volume {
            name: "secret".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                optional: Some(true),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    let tolerations: Vec<Toleration> = req
        .placement
        .tolerations
        .iter()
        .map(|t| Toleration {
            key: t.key.clone(),
            operator: t.operator.clone(),
            value: t.value.clone(),
            effect: t.effect.clone(),
            toleration_seconds: None,
        })
        .collect();
    Job {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            active_deadline_seconds: (req.deadline_secs > 0)
                .then(|| i64::try_from(req.deadline_secs).unwrap_or(i64::MAX)),
            ttl_seconds_after_finished: Some(
                i32::try_from(settings.ttl_after_finished.as_secs()).unwrap_or(i32::MAX),
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    // A canceled or overdue task's containers get SIGTERM, then this
                    // long before they are killed (on Docker a cancel kills at once).
                    termination_grace_period_seconds: Some(STOP_GRACE_SECS),
                    init_containers: (!containers.is_empty()).then_some(containers),
                    containers: vec![main],
                    volumes: Some(volumes),
                    service_account_name: req.placement.service_account.clone(),
                    // The task's containers do not talk to the API server.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    node_selector: (!req.placement.node_selector.is_empty())
                        .then(|| req.placement.node_selector.clone()),
                    tolerations: (!tolerations.is_empty()).then_some(tolerations),
                    security_context: Some(PodSecurityContext::default()),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// A container never gains privileges beyond its image's user.
fn no_privileges() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        ..SecurityContext::default()
    }
}

fn mount(name: &str, path: &str, sub_path: Option<String>, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        sub_path,
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn container(
    req: &JobRequest,
    settings: &KubeSettings,
    lay: &Layout,
    slot: Slot,
    job_name: &str,
) -> Container {
    let name = slot.container_name();
    match slot {
        Slot::StageIn | Slot::StageOut => {
            let verb = if slot == Slot::StageIn { "in" } else { "out" };
            let mut command = vec![
                TESSERA_BIN.to_string(),
                "stage".into(),
                verb.into(),
                "--task".into(),
                req.task_id.clone(),
            ];
            if slot == Slot::StageIn && lay.wrapped {
                command.push("--install-exec".into());
                command.push(RUN_DIR.into());
            }
            let mut mounts = vec![
                mount("run", RUN_DIR, None, false),
                mount("spec", SPEC_DIR, None, true),
                mount("secret", SECRET_DIR, None, true),
            ];
            if lay.workspace {
                mounts.push(mount("workspace", WORKSPACE_DIR, None, false));
            }
            Container {
                name,
                image: Some(settings.image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(command),
                volume_mounts: Some(mounts),
                security_context: Some(no_privileges()),
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            }
        }
        Slot::Step(i) => {
            let step = &req.steps[i];
            let command = if lay.wrapped {
                let mut c = vec![
                    format!("{RUN_DIR}/tessera"),
                    "stage".into(),
                    "exec".into(),
                    "--index".into(),
                    i.to_string(),
                ];
                for (flag, path) in [
                    ("--stdin", &step.stdin),
                    ("--stdout", &step.stdout),
                    ("--stderr", &step.stderr),
                ] {
                    if let Some(p) = path {
                        c.push(flag.into());
                        c.push(p.clone());
                    }
                }
                if step.ignore_error {
                    c.push("--ignore-error".into());
                }
                c.push("--".into());
                c.extend(step.command.iter().cloned());
                c
            } else {
                step.command.clone()
            };
            let mut env: Vec<EnvVar> = step
                .env
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    value_from: None,
                })
                .collect();
            for (i, (k, _)) in req.secret_env.iter().enumerate() {
                env.push(EnvVar {
                    name: k.clone(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: job_name.to_string(),
                            key: secret_env_key(i),
                            optional: Some(false),
                        }),
                        ..EnvVarSource::default()
                    }),
                });
            }
            let mut mounts = vec![mount("run", RUN_DIR, None, false)];
            if lay.workspace {
                for m in &req.mounts {
                    mounts.push(mount(
                        "workspace",
                        &m.container,
                        Some(workspace_sub_path(&m.container)),
                        m.read_only,
                    ));
                }
            }
            Container {
                name,
                image: Some(step.image.clone()),
                image_pull_policy: Some("IfNotPresent".into()),
                command: Some(command),
                working_dir: step.workdir.clone(),
                env: (!env.is_empty()).then_some(env),
                volume_mounts: Some(mounts),
                resources: resources(req),
                security_context: Some(no_privileges()),
                termination_message_policy: Some("File".into()),
                ..Container::default()
            }
        }
    }
}

/// The key of secret env variable `i` in the task's Secret.
pub fn secret_env_key(i: usize) -> String {
    format!("env-{i}")
}

/// The key of secret file `i` in the task's Secret.
pub fn secret_file_key(i: usize) -> String {
    format!("file-{i}")
}

/// Where a container path lives in the workspace volume: `fs/<path>`, as in a task's
/// directory on Docker.
pub fn workspace_sub_path(container: &str) -> String {
    format!("fs/{}", container.trim_start_matches('/'))
}

/// The task's CPU and memory as requests and limits, in the units the runner gives
/// (cores, bytes: the same numbers as Docker's limits).
fn resources(req: &JobRequest) -> Option<ResourceRequirements> {
    let mut q = BTreeMap::new();
    if req.cpu_cores > 0 {
        q.insert("cpu".to_string(), Quantity(req.cpu_cores.to_string()));
    }
    if req.memory_bytes > 0 {
        q.insert("memory".to_string(), Quantity(req.memory_bytes.to_string()));
    }
    (!q.is_empty()).then(|| ResourceRequirements {
        limits: Some(q.clone()),
        requests: Some(q),
        ..ResourceRequirements::default()
    })
}

/// The task's workspace: a PVC of the task's disk size (at least the configured minimum).
pub fn workspace_claim(req: &JobRequest, settings: &KubeSettings) -> PersistentVolumeClaim {
    let name = job_name(&req.task_id, req.attempt);
    let bytes = req.disk_bytes.max(settings.min_workspace_bytes);
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels(req, settings)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![settings.access_mode.clone()]),
            storage_class_name: settings.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(bytes.to_string()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// What staging reads: the task's inputs and outputs and the filers that serve them.
pub fn staging_config_map(req: &JobRequest, settings: &KubeSettings) -> Option<ConfigMap> {
    let staging = req.staging.as_ref()?;
    if !layout(req).slots.contains(&Slot::StageIn) {
        return None;
    }
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(job_name(&req.task_id, req.attempt)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels(req, settings)),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(STAGING_KEY.to_string(), staging.clone())])),
        ..ConfigMap::default()
    })
}

/// The task's credentials: its secret env values, its secret files (with where they go)
/// and what the filers are granted.
pub fn credentials_secret(req: &JobRequest, settings: &KubeSettings) -> Option<Secret> {
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    for (i, (_, v)) in req.secret_env.iter().enumerate() {
        data.insert(secret_env_key(i), ByteString(v.clone().into_bytes()));
    }
    if !req.secret_files.is_empty() {
        let index: Vec<serde_json::Value> = req
            .secret_files
            .iter()
            .enumerate()
            .map(|(i, f)| serde_json::json!({"key": secret_file_key(i), "path": f.path, "mode": f.mode}))
            .collect();
        data.insert(
            SECRET_FILES_KEY.into(),
            ByteString(serde_json::Value::Array(index).to_string().into_bytes()),
        );
        for (i, f) in req.secret_files.iter().enumerate() {
            data.insert(
                secret_file_key(i),
                ByteString(f.content.clone().into_bytes()),
            );
        }
    }
    if let Some(s) = &req.staging_secret {
        data.insert(
            STAGING_SECRET_KEY.into(),
            ByteString(s.clone().into_bytes()),
        );
        if let Some(o) = &settings.object_store_secret {
            data.insert(OBJECT_STORE_KEY.into(), ByteString(o.clone().into_bytes()));
        }
    }
    (!data.is_empty()).then(|| Secret {
        metadata: ObjectMeta {
            name: Some(job_name(&req.task_id, req.attempt)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels(req, settings)),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_executor::job::{JobCommand, JobMount, SecretFile};

    fn settings() -> KubeSettings {
        KubeSettings {
            instance: "server-a".into(),
            ..KubeSettings::default()
        }
    }

    fn step(cmd: &str) -> JobCommand {
        JobCommand {
            image: "busybox".into(),
            command: vec!["sh".into(), "-c".into(), cmd.into()],
            ..JobCommand::default()
        }
    }

    fn names(job: &Job) -> Vec<String> {
        let spec = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        spec.init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| c.name.clone())
            .collect()
    }

    #[test]
    fn a_task_that_stages_nothing_is_its_executors_alone() {
        let req = JobRequest {
            task_id: "t1".into(),
            steps: vec![step("echo a"), step("echo b")],
            deadline_secs: 60,
            ..JobRequest::default()
        };
        let job = job(&req, &settings());
        assert_eq!(names(&job), ["step-0", "step-1"]);
        let spec = job.spec.as_ref().unwrap();
        assert_eq!(spec.backoff_limit, Some(0));
        assert_eq!(spec.active_deadline_seconds, Some(60));
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        // The executor's command as given: no wrapper, no workspace.
        assert_eq!(pod.containers[0].command.as_ref().unwrap()[0], "sh");
        assert!(
            pod.volumes
                .as_ref()
                .unwrap()
                .iter()
                .all(|v| v.name != "workspace")
        );
        assert_eq!(
            job.metadata.labels.as_ref().unwrap()[LABEL_INSTANCE],
            "server-a"
        );
        assert!(staging_config_map(&req, &settings()).is_none());
        assert!(credentials_secret(&req, &settings()).is_none());
    }

    #[test]
    fn outputs_and_streams_run_executors_under_the_wrapper_between_staging() {
        let mut first = step("exit 3");
        first.ignore_error = true;
        let mut second = step("cat");
        second.stdin = Some("/data/in".into());
        second.stdout = Some("/data/out".into());
        let req = JobRequest {
            task_id: "t2".into(),
            attempt: 1,
            steps: vec![first, second],
            mounts: vec![JobMount {
                container: "/data".into(),
                is_dir: true,
                read_only: false,
            }],
            staging: Some("{}".into()),
            stage_out: true,
            needs_workspace: true,
            secret_env: vec![("TOKEN".into(), "s3cr3t".into())],
            secret_files: vec![SecretFile {
                path: "/data/key".into(),
                mode: 0o400,
                content: "k".into(),
            }],
            cpu_cores: 2,
            memory_bytes: 1 << 30,
            disk_bytes: 5 << 30,
            ..JobRequest::default()
        };
        let job = job(&req, &settings());
        assert_eq!(names(&job), ["stage-in", "step-0", "step-1", "stage-out"]);
        let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let inits = pod.init_containers.as_ref().unwrap();
        let s1 = &inits[2];
        let cmd = s1.command.as_ref().unwrap();
        assert_eq!(cmd[..3], ["/.tessera/tessera", "stage", "exec"]);
        assert!(cmd.windows(2).any(|w| w == ["--stdin", "/data/in"]));
        assert_eq!(cmd[cmd.len() - 3..], ["sh", "-c", "cat"]);
        assert!(
            inits[1]
                .command
                .as_ref()
                .unwrap()
                .contains(&"--ignore-error".into())
        );
        let mount = s1
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.mount_path == "/data")
            .unwrap();
        assert_eq!(mount.sub_path.as_deref(), Some("fs/data"));
        // The secret's value is referenced, never inlined.
        let env = s1.env.as_ref().unwrap();
        assert_eq!(env[0].name, "TOKEN");
        assert!(env[0].value.is_none());
        let limits = s1.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["memory"].0, "1073741824");
        assert_eq!(limits["cpu"].0, "2");
        let pvc = workspace_claim(&req, &settings());
        assert_eq!(
            pvc.spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0,
            (5u64 << 30).to_string()
        );
        let secret = credentials_secret(&req, &settings()).unwrap();
        let data = secret.data.unwrap();
        assert_eq!(data[&secret_env_key(0)].0, b"s3cr3t");
        assert!(data.contains_key(SECRET_FILES_KEY));
        assert_eq!(job.metadata.name.as_deref(), Some("tessera-t2-1"));
    }

    #[test]
    fn container_names_round_trip() {
        for slot in [Slot::StageIn, Slot::Step(0), Slot::Step(12), Slot::StageOut] {
            assert_eq!(
                Slot::from_container_name(&slot.container_name()),
                Some(slot)
            );
        }
        assert_eq!(Slot::from_container_name("step-x"), None);
    }
}
