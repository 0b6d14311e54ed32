//! The Kubernetes executor: a task becomes one batch/v1 Job ([`manifest`]), followed
//! through a watch of this server's Jobs and pods ([`observe`] reads them). It
//! implements the job side of the executor boundary
//! ([`tessera_executor::job::JobExecutor`]); the runner decides, this crate only talks
//! to the API server, within a request rate.

pub mod manifest;
pub mod observe;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client};
use tessera_executor::job::{JobExecutor, JobOutcome, JobRequest, JobStatus, StepOutcome};
use tessera_executor::{BoxFuture, Capacity, ExecError};
use tokio::sync::Mutex;

use crate::manifest::{LABEL_ATTEMPT, LABEL_TASK, Slot};

/// How the executor reaches the cluster and what its Jobs look like.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// A kubeconfig file; `None`: the pod's service account (in the cluster), else
    /// `$KUBECONFIG` or `~/.kube/config`.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Empty: the kubeconfig context's namespace, or in a pod its own.
    pub namespace: String,
    /// The image with the `tessera` binary at `/tessera` (staging runs it).
    pub image: String,
    /// This server's instance (a label on everything it makes).
    pub instance: String,
    /// The workspace PVC's storage class (`None`: the cluster's default).
    pub storage_class: Option<String>,
    pub access_mode: String,
    /// The smallest workspace, for tasks that do not ask for disk.
    pub min_workspace_bytes: u64,
    /// How long a finished Job stays (ttlSecondsAfterFinished).
    pub ttl_after_finished: Duration,
    /// Requests per second to the API server, at most (watches excluded).
    pub requests_per_second: u32,
    /// The object store's connection for filers in the pod (JSON; kept in each staging
    /// task's Secret).
    pub object_store_secret: Option<String>,
}

impl Default for KubeSettings {
    fn default() -> Self {
        KubeSettings {
            kubeconfig: None,
            namespace: "default".into(),
            image: "tessera:latest".into(),
            instance: "tessera".into(),
            storage_class: None,
            access_mode: "ReadWriteOnce".into(),
            min_workspace_bytes: 1 << 30,
            ttl_after_finished: Duration::from_secs(3600),
            requests_per_second: 50,
            object_store_secret: None,
        }
    }
}

/// Spacing of API requests, so the client keeps within `requests_per_second` (with a
/// burst of one second's worth after a quiet spell).
struct Pacer {
    interval: Duration,
    burst: Duration,
    next: Mutex<tokio::time::Instant>,
}

impl Pacer {
    fn new(per_second: u32) -> Pacer {
        Pacer {
            interval: Duration::from_secs(1) / per_second.max(1),
            burst: Duration::from_secs(1),
            next: Mutex::new(tokio::time::Instant::now()),
        }
    }

    async fn pace(&self) {
        let at = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let at = (*next).max(now.checked_sub(self.burst).unwrap_or(now));
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod pacer_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_keep_to_the_rate_after_a_burst() {
        let pacer = Pacer::new(10);
        let start = tokio::time::Instant::now();
        tokio::time::advance(Duration::from_secs(5)).await;
        let quiet = tokio::time::Instant::now();
        for _ in 0..10 {
            pacer.pace().await;
        }
        // A second's worth passes at once after a quiet spell…
        assert!(
            quiet.elapsed() < Duration::from_millis(50),
            "{:?}",
            quiet.elapsed()
        );
        for _ in 0..20 {
            pacer.pace().await;
        }
        // …then ten a second.
        let took = quiet.elapsed();
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(start.elapsed() < Duration::from_secs(8));
    }
}

pub struct KubeExecutor {
    client: Client,
    settings: KubeSettings,
    pacer: Pacer,
    jobs: reflector::Store<Job>,
    pods: reflector::Store<Pod>,
    /// Counts what the watches saw; drivers wait on it.
    seen: tokio::sync::watch::Receiver<u64>,
    watches: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeExecutor {
    fn drop(&mut self) {
        for w in &self.watches {
            w.abort();
        }
    }
}

fn api_error(e: kube::Error) -> ExecError {
    match &e {
        kube::Error::Api(s) if s.code == 409 => ExecError::Conflict,
        kube::Error::Api(s) if s.code == 404 => ExecError::NotFound,
        kube::Error::Api(s) => ExecError::Other(format!("{} ({})", s.message, s.reason)),
        _ => ExecError::Unreachable(e.to_string()),
    }
}

impl KubeExecutor {
    /// Connect and start watching this server's Jobs and pods.
    pub async fn connect(mut settings: KubeSettings) -> Result<KubeExecutor, ExecError> {
        let client = client(settings.kubeconfig.as_deref())
            .await
            .map_err(ExecError::Other)?;
        if settings.namespace.is_empty() {
            // The kubeconfig context's namespace, or in a pod its own.
            settings.namespace = client.default_namespace().to_string();
        }
        // Every server's Jobs in the namespace, not only this one's: a server that adopts
        // a task from another (a replica whose lease ran out) follows its Job.
        let selector = manifest::MANAGED_SELECTOR;
        let (seen_tx, seen) = tokio::sync::watch::channel(0u64);
        let seen_tx = Arc::new(seen_tx);
        let (jobs, jobs_writer) = reflector::store::<Job>();
        let (pods, pods_writer) = reflector::store::<Pod>();
        let cfg = watcher::Config::default().labels(selector);
        let job_api: Api<Job> = Api::namespaced(client.clone(), &settings.namespace);
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), &settings.namespace);
        let bump = |tx: Arc<tokio::sync::watch::Sender<u64>>| move || tx.send_modify(|n| *n += 1);
        let job_bump = bump(seen_tx.clone());
        let job_watch = reflector(jobs_writer, watcher(job_api, cfg.clone()))
            .default_backoff()
            .for_each(move |ev| {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "watching Jobs");
                }
                job_bump();
                async {}
            });
        let pod_bump = bump(seen_tx);
        let pod_watch = reflector(pods_writer, watcher(pod_api, cfg))
            .default_backoff()
            .for_each(move |ev| {
                if let Err(e) = ev {
                    tracing::warn!(error = %e, "watching pods");
                }
                pod_bump();
                async {}
            });
        Ok(KubeExecutor {
            pacer: Pacer::new(settings.requests_per_second),
            client,
            settings,
            jobs,
            pods,
            seen,
            watches: vec![tokio::spawn(job_watch), tokio::spawn(pod_watch)],
        })
    }

    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    /// The task's newest Job, from the watch (or the API server when the watch has not
    /// seen it yet).
    async fn job_of(&self, task_id: &str) -> Result<Option<Job>, ExecError> {
        let newest = |jobs: Vec<Job>| {
            jobs.into_iter().max_by_key(|j| {
                j.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_ATTEMPT))
                    .and_then(|a| a.parse::<usize>().ok())
                    .unwrap_or(0)
            })
        };
        let cached: Vec<Job> = self
            .jobs
            .state()
            .iter()
            .filter(|j| label(&j.metadata.labels, LABEL_TASK) == Some(task_id))
            .map(|j| (**j).clone())
            .collect();
        if !cached.is_empty() {
            return Ok(newest(cached));
        }
        self.pacer.pace().await;
        let listed = self
            .api::<Job>()
            .list(&ListParams::default().labels(&self.task_selector(task_id)))
            .await
            .map_err(api_error)?;
        Ok(newest(listed.items))
    }

    /// The objects of one task, whichever server made them (task ids are unique).
    fn task_selector(&self, task_id: &str) -> String {
        format!("{},{LABEL_TASK}={task_id}", manifest::MANAGED_SELECTOR)
    }

    fn pod_of(&self, job: &Job) -> Option<Pod> {
        let uid = job.metadata.uid.as_deref()?;
        self.pods
            .state()
            .iter()
            .filter(|p| label(&p.metadata.labels, "controller-uid") == Some(uid))
            .max_by_key(|p| p.metadata.creation_timestamp.clone())
            .map(|p| (**p).clone())
    }

    async fn fresh_pod_of(&self, job: &Job) -> Result<Option<Pod>, ExecError> {
        let Some(uid) = job.metadata.uid.as_deref() else {
            return Ok(None);
        };
        self.pacer.pace().await;
        let pods = self
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("controller-uid={uid}")))
            .await
            .map_err(api_error)?;
        Ok(pods
            .items
            .into_iter()
            .max_by_key(|p| p.metadata.creation_timestamp.clone()))
    }

    async fn create<K>(&self, obj: &K) -> Result<K, ExecError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.pacer.pace().await;
        self.api::<K>()
            .create(&PostParams::default(), obj)
            .await
            .map_err(api_error)
    }

    async fn own<K>(
        &self,
        name: &str,
        owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<(), ExecError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.pacer.pace().await;
        let patch = serde_json::json!({"metadata": {"ownerReferences": [owner]}});
        match self
            .api::<K>()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match api_error(e) {
                ExecError::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn log_of(&self, pod: &str, container: &str) -> Vec<u8> {
        self.pacer.pace().await;
        let lp = LogParams {
            container: Some(container.to_string()),
            ..LogParams::default()
        };
        match self.api::<Pod>().logs(pod, &lp).await {
            Ok(s) => s.into_bytes(),
            Err(e) => {
                tracing::debug!(pod, container, error = %e, "no log");
                Vec::new()
            }
        }
    }

    /// Delete what carries `selector`; how many there were.
    async fn delete_labelled<K>(&self, selector: &str) -> Result<usize, ExecError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        self.pacer.pace().await;
        let dp = DeleteParams::foreground();
        match self
            .api::<K>()
            .delete_collection(&dp, &ListParams::default().labels(selector))
            .await
        {
            Ok(either) => Ok(either.left().map_or(0, |list| list.items.len())),
            Err(e) => match api_error(e) {
                ExecError::NotFound => Ok(0),
                e => Err(e),
            },
        }
    }
}

/// A client from a kubeconfig file, or with `None` from the pod's service account (in a
/// cluster), else `$KUBECONFIG` or `~/.kube/config`.
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration: {e}"))?,
    };
    Client::try_from(config).map_err(|e| format!("Kubernetes client: {e}"))
}

fn label<'a>(labels: &'a Option<BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    labels.as_ref()?.get(key).map(String::as_str)
}

/// The containers of a Job's pod, in order, and whether executors run wrapped.
pub fn slots_of(job: &Job) -> (Vec<Slot>, bool) {
    let Some(spec) = job.spec.as_ref().and_then(|s| s.template.spec.as_ref()) else {
        return (Vec::new(), false);
    };
    let containers: Vec<_> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
        .collect();
    let wrapped = containers.iter().any(|c| {
        matches!(Slot::from_container_name(&c.name), Some(Slot::Step(_)))
            && c.command
                .as_ref()
                .and_then(|c| c.first())
                .map(String::as_str)
                == Some(&format!("{}/tessera", manifest::RUN_DIR))
    });
    let slots = containers
        .iter()
        .filter_map(|c| Slot::from_container_name(&c.name))
        .collect();
    (slots, wrapped)
}

fn parse_quantity_cpu(q: &str) -> u32 {
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<u64>().map(|m| (m / 1000) as u32).unwrap_or(0);
    }
    q.parse().unwrap_or(0)
}

fn parse_quantity_bytes(q: &str) -> u64 {
    const SUFFIXES: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (s, m) in SUFFIXES {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<u64>().map(|n| n.saturating_mul(m)).unwrap_or(0);
        }
    }
    q.parse().unwrap_or(0)
}

impl JobExecutor for KubeExecutor {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn capacity(&self) -> BoxFuture<'_, Result<Capacity, ExecError>> {
        Box::pin(async move {
            self.pacer.pace().await;
            let version = self
                .client
                .apiserver_version()
                .await
                .map_err(|e| ExecError::Unreachable(e.to_string()))?;
            // Nodes are cluster-wide: a server with only its namespace's rights reports
            // no capacity (targets then set their own budgets).
            self.pacer.pace().await;
            let (cpus, memory_bytes) = match Api::<Node>::all(self.client.clone())
                .list(&ListParams::default())
                .await
            {
                Ok(nodes) => nodes.items.iter().fold((0u32, 0u64), |(c, m), n| {
                    let alloc = n.status.as_ref().and_then(|s| s.allocatable.as_ref());
                    let get = |k: &str| alloc.and_then(|a| a.get(k)).map(|q| q.0.clone());
                    (
                        c + get("cpu").map_or(0, |q| parse_quantity_cpu(&q)),
                        m + get("memory").map_or(0, |q| parse_quantity_bytes(&q)),
                    )
                }),
                Err(_) => (0, 0),
            };
            Ok(Capacity {
                version: version.git_version,
                cpus,
                memory_bytes,
            })
        })
    }

    fn submit<'a>(&'a self, req: &'a JobRequest) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let s = &self.settings;
            let lay = manifest::layout(req);
            // What the pod mounts exists before the pod does (no retries by the kubelet
            // or the scheduler); each is then owned by the Job.
            let mut owned: Vec<(&str, String)> = Vec::new();
            let name = manifest::job_name(&req.task_id, req.attempt);
            let tolerate = |r: Result<(), ExecError>| match r {
                Err(ExecError::Conflict) | Ok(()) => Ok(()),
                Err(e) => Err(e),
            };
            if lay.workspace {
                tolerate(
                    self.create(&manifest::workspace_claim(req, s))
                        .await
                        .map(|_| ()),
                )?;
                owned.push(("pvc", name.clone()));
            }
            if let Some(cm) = manifest::staging_config_map(req, s) {
                tolerate(self.create(&cm).await.map(|_| ()))?;
                owned.push(("configmap", name.clone()));
            }
            if let Some(secret) = manifest::credentials_secret(req, s) {
                tolerate(self.create(&secret).await.map(|_| ()))?;
                owned.push(("secret", name.clone()));
            }
            let job = self.create(&manifest::job(req, s)).await?;
            if let Some(owner) = manifest::owned_by(&job) {
                for (kind, name) in owned {
                    match kind {
                        "pvc" => self.own::<PersistentVolumeClaim>(&name, &owner).await?,
                        "configmap" => self.own::<ConfigMap>(&name, &owner).await?,
                        _ => self.own::<Secret>(&name, &owner).await?,
                    }
                }
            }
            tracing::info!(task_id = %req.task_id, job = %name, "job created");
            Ok(())
        })
    }

    fn status<'a>(
        &'a self,
        task_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobStatus>, ExecError>> {
        Box::pin(async move {
            let Some(job) = self.job_of(task_id).await? else {
                return Ok(None);
            };
            let (slots, _) = slots_of(&job);
            let pod = self.pod_of(&job);
            Ok(Some(observe::status(&job, pod.as_ref(), &slots)))
        })
    }

    fn changed<'a>(
        &'a self,
        _task_id: &'a str,
        seen: u64,
        at_most: Duration,
    ) -> BoxFuture<'a, u64> {
        Box::pin(async move {
            let mut rx = self.seen.clone();
            let _ = tokio::time::timeout(at_most, rx.wait_for(|n| *n > seen)).await;
            *rx.borrow()
        })
    }

    fn collect<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<JobOutcome, ExecError>> {
        Box::pin(async move {
            let mut outcome = JobOutcome::default();
            let Some(job) = self.job_of(task_id).await? else {
                return Ok(outcome);
            };
            let (slots, wrapped) = slots_of(&job);
            let Some(pod) = self.fresh_pod_of(&job).await? else {
                return Ok(outcome);
            };
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            if let Some(st) = &pod.status
                && let Some(reason) = &st.reason
            {
                outcome.system.push(format!(
                    "pod {pod_name}: {reason}{}",
                    st.message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                ));
            }
            for slot in &slots {
                let ended = observe::ended(&pod, *slot, wrapped);
                match slot {
                    Slot::Step(_) => {
                        let started = ended.is_some()
                            || observe::container_status(&pod, &slot.container_name())
                                .and_then(|c| c.state.as_ref())
                                .is_some_and(|s| s.running.is_some());
                        let stdout = if started {
                            self.log_of(&pod_name, &slot.container_name()).await
                        } else {
                            Vec::new()
                        };
                        let step = match ended {
                            Some(e) => {
                                if e.oom_killed {
                                    outcome.system.push(format!(
                                        "{}: OOMKilled (the container used more memory than its limit)",
                                        slot.container_name()
                                    ));
                                }
                                StepOutcome {
                                    exit_code: e.exit_code,
                                    start: e.start,
                                    end: e.end,
                                    stdout,
                                    stderr: Vec::new(),
                                    oom_killed: e.oom_killed,
                                }
                            }
                            None => StepOutcome {
                                stdout,
                                ..StepOutcome::default()
                            },
                        };
                        outcome.steps.push(step);
                    }
                    Slot::StageIn => {
                        if let Some(e) = ended
                            && e.exit_code != Some(0)
                        {
                            outcome.staging_error = Some(
                                e.message
                                    .unwrap_or_else(|| "staging inputs failed".into())
                                    .trim()
                                    .to_string(),
                            );
                        }
                    }
                    Slot::StageOut => {
                        if let Some(e) = ended {
                            if e.exit_code == Some(0) {
                                let log = self.log_of(&pod_name, "stage-out").await;
                                outcome.staged_out = String::from_utf8_lossy(&log)
                                    .lines()
                                    .rev()
                                    .find(|l| l.starts_with('{'))
                                    .map(str::to_string);
                            } else {
                                outcome.staging_error = Some(
                                    e.message
                                        .unwrap_or_else(|| "staging outputs failed".into())
                                        .trim()
                                        .to_string(),
                                );
                            }
                        }
                    }
                }
            }
            Ok(outcome)
        })
    }

    fn delete<'a>(&'a self, task_id: &'a str) -> BoxFuture<'a, Result<(), ExecError>> {
        Box::pin(async move {
            let selector = self.task_selector(task_id);
            // The Job's pods, PVC, ConfigMap and Secret go with it (owner references).
            if self.delete_labelled::<Job>(&selector).await? > 0 {
                return Ok(());
            }
            // No Job: what a crash between creating them and the Job left.
            self.delete_labelled::<PersistentVolumeClaim>(&selector)
                .await?;
            self.delete_labelled::<ConfigMap>(&selector).await?;
            self.delete_labelled::<Secret>(&selector).await?;
            Ok(())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, ExecError>> {
        Box::pin(async move {
            self.pacer.pace().await;
            let jobs = self
                .api::<Job>()
                .list(
                    &ListParams::default()
                        .labels(&manifest::instance_selector(&self.settings.instance)),
                )
                .await
                .map_err(api_error)?;
            let mut ids: Vec<String> = jobs
                .items
                .iter()
                .filter_map(|j| label(&j.metadata.labels, LABEL_TASK).map(str::to_string))
                .collect();
            ids.sort();
            ids.dedup();
            Ok(ids)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_the_api_writes_them() {
        assert_eq!(parse_quantity_cpu("4"), 4);
        assert_eq!(parse_quantity_cpu("3500m"), 3);
        assert_eq!(parse_quantity_bytes("16384Ki"), 16 << 20);
        assert_eq!(parse_quantity_bytes("2Gi"), 2 << 30);
        assert_eq!(parse_quantity_bytes("1000"), 1000);
    }
}
