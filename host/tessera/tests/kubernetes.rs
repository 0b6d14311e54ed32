//! The Kubernetes executor end to end, on the real cluster `scripts/k8s-cluster.sh`
//! runs (Kubernetes v1.20.2): TES tasks become Jobs in a namespace of their own per
//! test, staged in their pods by the `tessera` image the test command builds, with
//! inputs and outputs through the S3 store (Garage).
//!
//! Needs TESSERA_TEST_KUBECONFIG, TESSERA_TEST_K8S_TESSERA_IMAGE and the other
//! TESSERA_TEST_K8S_* variables (`scripts/test.sh` sets them); skipped
//! without, unless TESSERA_REQUIRE_K8S=1.

mod common;

use common::{Options, Remote, Server, short};
use serde_json::{Value, json};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Cluster {
    kubeconfig: String,
    busybox: String,
    tessera_image: String,
    storage_class: String,
    host_ip: String,
}

fn cluster() -> Option<Cluster> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(kubeconfig) = var("TESSERA_TEST_KUBECONFIG") else {
        assert!(
            var("TESSERA_REQUIRE_K8S").is_none(),
            "TESSERA_TEST_KUBECONFIG is not set (scripts/k8s-cluster.sh up sets it)"
        );
        eprintln!("skipping: no Kubernetes cluster (TESSERA_TEST_KUBECONFIG)");
        return None;
    };
    let need = |k: &str| var(k).unwrap_or_else(|| panic!("{k} is not set"));
    Some(Cluster {
        kubeconfig,
        busybox: need("TESSERA_TEST_K8S_IMAGE"),
        tessera_image: need("TESSERA_TEST_K8S_TESSERA_IMAGE"),
        storage_class: need("TESSERA_TEST_K8S_STORAGE_CLASS"),
        host_ip: need("TESSERA_TEST_K8S_HOST_IP"),
    })
}

impl Cluster {
    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }
}

/// A namespace of the test's own, deleted when it ends.
struct Namespace<'a> {
    cluster: &'a Cluster,
    name: String,
}

static NAMESPACES: AtomicUsize = AtomicUsize::new(0);

impl<'a> Namespace<'a> {
    fn new(cluster: &'a Cluster) -> Namespace<'a> {
        let name = format!(
            "tessera-e2e-{}-{}",
            std::process::id(),
            NAMESPACES.fetch_add(1, Ordering::Relaxed)
        );
        let (ok, out) = cluster.kubectl(&["create", "namespace", &name]);
        assert!(ok, "{out}");
        Namespace { cluster, name }
    }

    /// Wait until the names of the namespace's Jobs satisfy `done`.
    async fn jobs_until(&self, what: &str, done: impl Fn(&str) -> bool) {
        kubectl_until(
            self.cluster,
            &[
                "-n",
                &self.name,
                "get",
                "jobs",
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            what,
            done,
        )
        .await;
    }
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// A forwarder on the host's address on the pods' bridge to `upstream` on loopback: how
/// pods reach the test's Garage and PostgreSQL. Its address.
async fn forward_for_pods(host_ip: &str, upstream: String) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((host_ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    addr
}

/// Garage as the pods see it: its endpoint and the test bucket.
async fn s3_for_pods(host_ip: &str) -> Option<(String, String)> {
    let endpoint = std::env::var("TESSERA_TEST_S3_ENDPOINT").ok()?;
    let upstream = endpoint.trim_start_matches("http://").to_string();
    let addr = forward_for_pods(host_ip, upstream).await;
    let bucket = std::env::var("TESSERA_TEST_S3_BUCKET").ok()?;
    Some((format!("http://{addr}"), bucket))
}

/// A server whose only target is the cluster, in namespace `ns`.
async fn server(c: &Cluster, ns: &Namespace<'_>, s3_endpoint: Option<&str>) -> Server {
    let dir = std::env::temp_dir().join(format!("{}-config", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tessera.toml");
    let mut text = format!(
        "[kubernetes]\nkubeconfig = {:?}\nnamespace = {:?}\nimage = {:?}\nstorage_class = {:?}\npending_timeout_secs = 15\n",
        c.kubeconfig, ns.name, c.tessera_image, c.storage_class
    );
    if let Some(endpoint) = s3_endpoint {
        text.push_str(&format!(
            "[s3]\nendpoint = {endpoint:?}\nregion = {:?}\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
            std::env::var("TESSERA_TEST_S3_REGION").unwrap_or_else(|_| "garage".into()),
            std::env::var("TESSERA_TEST_S3_ACCESS_KEY").unwrap(),
            std::env::var("TESSERA_TEST_S3_SECRET_KEY").unwrap(),
        ));
    }
    std::fs::write(&config, text).unwrap();
    Server::start(Options {
        executor: "kubernetes",
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Options::default()
    })
    .await
}

fn sh(c: &Cluster, script: &str) -> Value {
    json!({"image": c.busybox, "command": ["sh", "-c", script]})
}

/// Why the task is where it is (the status view's `reason`).
async fn reason_of(s: &Server, id: &str) -> String {
    s.status(id).await["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn system_logs(task: &Value) -> String {
    task["logs"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l["system_logs"].as_array())
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

fn executor_logs(task: &Value) -> Vec<Value> {
    task["logs"]
        .as_array()
        .and_then(|l| l.last())
        .and_then(|l| l["logs"].as_array())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tes_task_runs_as_a_job_staging_inputs_and_outputs_through_s3() {
    let Some(c) = cluster() else { return };
    let Some((endpoint, bucket)) = s3_for_pods(&c.host_ip).await else {
        panic!("the Kubernetes suite needs the S3 store (TESSERA_TEST_S3_*)");
    };
    let ns = Namespace::new(&c);
    let s = server(&c, &ns, Some(&endpoint)).await;
    let (status, b) = s
        .post_json(
            &format!("{}/v1/plugins/filer-s3/versions/0.2.0/activate", s.url),
            &json!({"scope": "s3", "buckets": [bucket]}),
        )
        .await;
    assert_eq!(status, 200, "{b}");
    let prefix = format!("k8s-e2e-{}", std::process::id());
    // A first task writes an object; the second reads it back as an input.
    let first = s
        .create(&json!({
            "inputs": [{"path": "/in/greeting.txt", "content": "hello from TES\n"}],
            "outputs": [{"url": format!("s3://{bucket}/{prefix}/out/shout.txt"), "path": "/out/shout.txt"}],
            "executors": [
                sh(&c, "tr a-z A-Z < /in/greeting.txt > /out/shout.txt && echo staged"),
            ],
            "resources": {"cpu_cores": 1, "ram_gb": 0.25}
        }))
        .await;
    let done = s.wait_done(&first).await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        short(&done),
        s.server_log()
    );
    let logs = executor_logs(&done);
    assert_eq!(logs.len(), 1, "{}", short(&done));
    assert_eq!(logs[0]["exit_code"], 0);
    assert!(
        logs[0]["stdout"].as_str().unwrap_or("").contains("staged"),
        "{}",
        short(&done)
    );
    let outputs = done["logs"][0]["outputs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(outputs.len(), 1, "{}", short(&done));
    assert_eq!(outputs[0]["size_bytes"], "15");
    let meta = &done["logs"][0]["metadata"];
    assert_eq!(meta["target"], "kubernetes");
    assert!(
        meta["kubernetes_job"]
            .as_str()
            .is_some_and(|j| j.starts_with("tessera-")),
        "{meta}"
    );

    let second = s
        .create(&json!({
            "inputs": [{"url": format!("s3://{bucket}/{prefix}/out/shout.txt"), "path": "/data/in.txt"}],
            "executors": [sh(&c, "cat /data/in.txt")],
        }))
        .await;
    let done = s.wait_done(&second).await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        short(&done),
        s.server_log()
    );
    assert_eq!(executor_logs(&done)[0]["stdout"], "HELLO FROM TES\n");
    // The finished tasks' Jobs (and with them their pods, PVCs, ConfigMaps, Secrets) go.
    ns.jobs_until("the finished tasks' Jobs go", str::is_empty)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executors_run_in_order_with_ignore_error_streams_and_their_own_logs() {
    let Some(c) = cluster() else { return };
    let ns = Namespace::new(&c);
    let s = server(&c, &ns, None).await;
    let mut tolerated = sh(&c, "echo first; exit 3");
    tolerated["ignore_error"] = json!(true);
    let mut piped = sh(&c, "tr a-z A-Z");
    piped["stdin"] = json!("/data/words");
    piped["stdout"] = json!("/data/upper");
    let id = s
        .create(&json!({
            "inputs": [{"path": "/data/words", "content": "quiet words\n"}],
            "volumes": ["/data"],
            "executors": [
                tolerated,
                piped,
                sh(&c, "cat /data/upper; echo oops >&2; exit 5"),
                sh(&c, "echo never"),
            ],
        }))
        .await;
    let done = s.wait_done(&id).await;
    assert_eq!(
        done["state"],
        "EXECUTOR_ERROR",
        "{}\n{}",
        short(&done),
        s.server_log()
    );
    let logs = executor_logs(&done);
    let codes: Vec<i64> = logs
        .iter()
        .map(|l| l["exit_code"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [3, 0, 5], "the fourth never ran: {}", short(&done));
    assert_eq!(logs[0]["stdout"], "first\n");
    assert_eq!(logs[1]["stdout"], "QUIET WORDS\n");
    assert!(logs[2]["stdout"].as_str().unwrap().contains("QUIET WORDS"));
    assert!(logs[2]["stdout"].as_str().unwrap().contains("oops"));
    let reason = reason_of(&s, &id).await;
    assert!(reason.contains("executor 2 exited with code 5"), "{reason}");

    // A failing last executor without ignore_error, no wrapper: the same result.
    let id = s
        .create(&json!({"executors": [sh(&c, "echo bye; exit 7")]}))
        .await;
    let done = s.wait_done(&id).await;
    assert_eq!(done["state"], "EXECUTOR_ERROR", "{}", short(&done));
    assert_eq!(executor_logs(&done)[0]["exit_code"], 7);
    assert_eq!(executor_logs(&done)[0]["stdout"], "bye\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_deletes_the_job_and_a_deadline_or_a_missing_image_fail_readably() {
    let Some(c) = cluster() else { return };
    let ns = Namespace::new(&c);
    let s = server(&c, &ns, None).await;

    let long = s
        .create(&json!({"executors": [sh(&c, "echo started; sleep 300")]}))
        .await;
    s.wait_until(&long, "RUNNING", |t| t["state"] == "RUNNING")
        .await;
    let (status, _) = s.cancel(&long).await;
    assert_eq!(status, 200);
    let done = s.wait_done(&long).await;
    assert_eq!(done["state"], "CANCELED", "{}", short(&done));
    ns.jobs_until("the canceled task's Job goes", str::is_empty)
        .await;

    let overdue = s
        .create(&json!({
            "executors": [sh(&c, "sleep 300")],
            "resources": {"backend_parameters": {"max_run_time": "3"}},
        }))
        .await;
    let done = s.wait_done(&overdue).await;
    assert_eq!(done["state"], "SYSTEM_ERROR", "{}", short(&done));
    let reason = reason_of(&s, &overdue).await;
    assert!(reason.contains("maximum run time"), "{reason}");

    let missing = s
        .create(
            &json!({"executors": [{"image": "127.0.0.1:1/no-such-image:1", "command": ["true"]}]}),
        )
        .await;
    let done = s.wait_done(&missing).await;
    assert_eq!(done["state"], "SYSTEM_ERROR", "{}", short(&done));
    let reason = reason_of(&s, &missing).await;
    assert!(
        reason.contains("ErrImagePull") || reason.contains("ImagePullBackOff"),
        "{reason}"
    );
    assert!(system_logs(&done).contains("pending: "), "{}", short(&done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_its_memory_or_on_no_node_fails_with_the_clusters_reason() {
    let Some(c) = cluster() else { return };
    let ns = Namespace::new(&c);
    let s = server(&c, &ns, None).await;

    // 32 MiB of memory and a shell that holds 200 MB: the kernel kills it.
    let hungry = s
        .create(&json!({
            "executors": [sh(&c, "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived")],
            "resources": {"ram_gb": 0.03125},
        }))
        .await;
    // An agent whose pods go to a pool no node is in: the scheduler says so until the
    // pending timeout. (More CPUs than the node has would be refused at submission once
    // the server knows the node's size.)
    let (status, body) = s
        .post_json(
            &format!("{}/v1/agents", s.url),
            &json!({"name": "nowhere", "image": c.busybox, "command": ["true"],
                    "kubernetes": {"node_selector": {"tessera.dev/test-pool": "none"},
                                   "pod_labels": {"tessera-test": "placed"}}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = s
        .post_json(
            &format!("{}/v1/tasks", s.url),
            &json!({"agent_ref": "nowhere"}),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    let unplaced = body["id"].as_str().expect("a task id").to_string();
    // The agent's placement is on the pod.
    kubectl_until(
        &c,
        &[
            "-n",
            &ns.name,
            "get",
            "pods",
            "-l",
            "tessera-test=placed",
            "-o",
            "jsonpath={.items[*].spec.nodeSelector}",
        ],
        "the agent's pod labels and node selector on its pod",
        |o| o.contains("tessera.dev/test-pool"),
    )
    .await;

    let done = s.wait_done(&hungry).await;
    assert_eq!(done["state"], "EXECUTOR_ERROR", "{}", short(&done));
    assert_eq!(
        executor_logs(&done)[0]["exit_code"],
        137,
        "{}",
        short(&done)
    );
    assert!(system_logs(&done).contains("OOMKilled"), "{}", short(&done));

    let done = s.wait_done(&unplaced).await;
    assert_eq!(done["state"], "SYSTEM_ERROR", "{}", short(&done));
    let reason = reason_of(&s, &unplaced).await;
    // Kubernetes 1.20 words a node selector as node affinity.
    assert!(
        reason.contains("Unschedulable: 0/1 nodes are available")
            && (reason.contains("node selector") || reason.contains("node affinity")),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_deleted_outside_fails_its_task_and_a_restarted_server_resumes_its_tasks() {
    let Some(c) = cluster() else { return };
    let ns = Namespace::new(&c);
    let mut s = server(&c, &ns, None).await;

    let orphan = s.create(&json!({"executors": [sh(&c, "sleep 300")]})).await;
    s.wait_until(&orphan, "RUNNING", |t| t["state"] == "RUNNING")
        .await;
    let task = s.task(&orphan, "FULL").await;
    let job = task["logs"][0]["metadata"]["kubernetes_job"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out) = c.kubectl(&["-n", &ns.name, "delete", "job", &job, "--wait=false"]);
    assert!(ok, "{out}");
    let done = s.wait_done(&orphan).await;
    assert_eq!(done["state"], "SYSTEM_ERROR", "{}", short(&done));
    let reason = reason_of(&s, &orphan).await;
    assert!(reason.contains("is gone"), "{reason}");

    // A task running when the server dies finishes after it comes back.
    let id = s
        .create(&json!({"executors": [sh(&c, "echo before; sleep 6; echo after")]}))
        .await;
    s.wait_until(&id, "RUNNING", |t| t["state"] == "RUNNING")
        .await;
    s.kill9();
    // Meanwhile a Job of this server's appears whose task it does not have (a task
    // deleted with the server down, say): the server removes it when it comes back.
    let instance = std::fs::read_to_string(s.data_dir.join("instance-id"))
        .unwrap()
        .trim()
        .to_ascii_lowercase();
    let orphan = json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "tessera-orphan-0", "labels": {
            "app.kubernetes.io/managed-by": "tessera",
            "tessera.dev/instance": instance,
            "tessera.dev/task": "0000000000000000000000orph"}},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "step-0", "image": c.busybox, "command": ["sleep", "300"]}]}}}
    });
    let file = std::env::temp_dir().join(format!("{}-orphan.json", ns.name));
    std::fs::write(&file, orphan.to_string()).unwrap();
    let (ok, out) = c.kubectl(&["-n", &ns.name, "create", "-f", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    s.spawn().await;
    let done = s.wait_done(&id).await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        short(&done),
        s.server_log()
    );
    assert_eq!(executor_logs(&done)[0]["stdout"], "before\nafter\n");
    ns.jobs_until("the orphaned Job goes", |jobs| {
        !jobs.contains("tessera-orphan-0")
    })
    .await;
}

/// `tessera operator run` beside the server, for one namespace; stopped on drop.
struct OperatorProcess(std::process::Child);

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Apply a manifest given as JSON (kubectl reads JSON as YAML).
fn apply(c: &Cluster, ns: &Namespace<'_>, doc: Value) {
    let file = std::env::temp_dir().join(format!(
        "{}-{}.json",
        ns.name,
        doc["metadata"]["name"].as_str().unwrap_or("doc")
    ));
    std::fs::write(&file, doc.to_string()).unwrap();
    let (ok, out) = c.kubectl(&["-n", &ns.name, "apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{out}");
}

/// `kubectl apply` of something holding the CRDs, which are the cluster's: another test
/// may be applying them at the same moment (a conflict, or an "already exists" from the
/// create that lost), so a failure is retried a few times.
fn apply_cluster_wide(c: &Cluster, args: &[&str]) -> (bool, String) {
    let mut applied = c.kubectl(args);
    for _ in 0..4 {
        if applied.0 {
            break;
        }
        applied = c.kubectl(args);
    }
    applied
}

/// Poll `kubectl get` with a JSONPath until `done` holds for what it prints.
async fn kubectl_until(
    c: &Cluster,
    args: &[&str],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + common::DEADLINE;
    loop {
        let (_, out) = c.kubectl(args);
        if done(out.trim()) {
            return out.trim().to_string();
        }
        assert!(Instant::now() < deadline, "{what}: last {out:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_agent_and_cron_task_resources_work_through_kubectl() {
    let Some(c) = cluster() else { return };
    let ns = Namespace::new(&c);
    let s = server(&c, &ns, None).await;
    let crds = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/kubernetes/crds/tessera.dev.yaml"
    );
    let (ok, out) = apply_cluster_wide(&c, &["apply", "-f", crds]);
    assert!(ok, "{out}");
    for crd in ["tasks", "crontasks", "agents", "tesseraconfigs"] {
        let (ok, out) = c.kubectl(&[
            "wait",
            "--for=condition=established",
            &format!("crd/{crd}.tessera.dev"),
            "--timeout=60s",
        ]);
        assert!(ok, "{out}");
    }
    let _operator = OperatorProcess(
        Command::new(common::tessera_bin())
            .args([
                "operator",
                "run",
                "--server",
                &s.url,
                "--namespace",
                &ns.name,
            ])
            .arg("--kubeconfig")
            .arg(&c.kubeconfig)
            .arg("--token-file")
            .arg(s.data_dir.join("api-token"))
            .spawn()
            .expect("starting the operator"),
    );
    let field = |kind: &str, name: &str, path: &str| -> String {
        let (_, out) = c.kubectl(&[
            "-n",
            &ns.name,
            "get",
            kind,
            name,
            "-o",
            &format!("jsonpath={{{path}}}"),
        ]);
        out.trim().to_string()
    };
    let until = |kind: &'static str, name: &'static str, path: &'static str, want: &'static str| {
        let field = &field;
        async move {
            let deadline = Instant::now() + common::DEADLINE;
            loop {
                let got = field(kind, name, path);
                if got == want {
                    return;
                }
                assert!(
                    got != "Failed",
                    "{kind}/{name} failed: {}",
                    field(kind, name, ".status")
                );
                assert!(
                    Instant::now() < deadline,
                    "{kind}/{name} {path}: {got:?}, not {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };

    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Agent",
            "metadata": {"name": "reader"},
            "spec": {"image": c.busybox, "command": ["cat", "/work/task.md"]}
        }),
    );
    until("agent", "reader", ".status.synced", "true").await;

    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": "hello"},
            "spec": {"agentRef": "reader",
                     "contexts": [{"text": "hello from kubectl\n", "filePath": "/work/task.md"}]}
        }),
    );
    until("task", "hello", ".status.phase", "Completed").await;
    let id = field("task", "hello", ".status.taskId");
    assert!(field("task", "hello", ".status.jobName").starts_with("tessera-"));
    assert!(!field("task", "hello", ".status.completionTime").is_empty());
    // The same task through the REST APIs, run on the cluster.
    let task = s.task(&id, "FULL").await;
    assert_eq!(task["state"], "COMPLETE", "{}", short(&task));
    assert_eq!(executor_logs(&task)[0]["stdout"], "hello from kubectl\n");
    let (_, listed) = c.kubectl(&["-n", &ns.name, "get", "tasks"]);
    assert!(
        listed.contains("hello") && listed.contains("Completed"),
        "{listed}"
    );

    // `kubectl delete task` stops the work.
    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": "long"},
            "spec": {"agentRef": "reader", "command": ["sleep", "300"]}
        }),
    );
    until("task", "long", ".status.phase", "Running").await;
    let id = field("task", "long", ".status.taskId");
    let (ok, out) = c.kubectl(&[
        "-n",
        &ns.name,
        "delete",
        "task",
        "long",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(ok, "{out}");
    let done = s.wait_done(&id).await;
    assert_eq!(done["state"], "CANCELED", "{}", short(&done));

    // A CronTask is the server's cron task; its children are named {name}-{unix time}.
    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "CronTask",
            "metadata": {"name": "tick"},
            "spec": {"schedule": "0 0 1 1 *", "task": {"agentRef": "reader", "command": ["true"]}}
        }),
    );
    until("crontask", "tick", ".status.synced", "true").await;
    let (status, body) = s
        .post_json(&format!("{}/v1/cron-tasks/tick/trigger", s.url), &json!({}))
        .await;
    assert!(status < 300, "{status} {body}");
    let (_, listed) = s.get_json(&format!("{}/v1/tasks?origin=cron", s.url)).await;
    let name = listed["tasks"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stamp = name.strip_prefix("tick-").unwrap_or_default();
    assert!(
        !stamp.is_empty() && stamp.chars().all(|ch| ch.is_ascii_digit()),
        "{name}"
    );
    let (ok, out) = c.kubectl(&[
        "-n",
        &ns.name,
        "delete",
        "crontask",
        "tick",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(ok, "{out}");
    let (status, _) = s.get_json(&format!("{}/v1/cron-tasks/tick", s.url)).await;
    assert_eq!(status, 404);

    // With a TTL, a finished Task resource goes by itself.
    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "TesseraConfig",
            "metadata": {"name": "settings"}, "spec": {"ttlSecondsAfterFinished": 1}
        }),
    );
    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": "brief"},
            "spec": {"agentRef": "reader", "command": ["true"]}
        }),
    );
    kubectl_until(
        &c,
        &[
            "-n",
            &ns.name,
            "get",
            "tasks",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        "the finished task's resource is deleted after its TTL",
        |o| !o.contains("brief"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_and_kubernetes_targets_side_by_side_are_chosen_by_tags() {
    let Some(c) = cluster() else { return };
    let ns = Namespace::new(&c);
    let dir = std::env::temp_dir().join(format!("{}-config", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("tessera.toml");
    std::fs::write(
        &config,
        format!(
            "route_tag_keys = [\"site\"]\n\
             [[targets]]\nname = \"box\"\nslots = 2\ntags = {{ site = \"docker\" }}\n\
             [[targets]]\nname = \"cluster\"\nslots = 2\nkubernetes = true\ntags = {{ site = \"k8s\" }}\n\
             [kubernetes]\nkubeconfig = {:?}\nnamespace = {:?}\nimage = {:?}\n",
            c.kubeconfig, ns.name, c.tessera_image
        ),
    )
    .unwrap();
    let s = Server::start(Options {
        extra_args: vec!["--config".into(), config.display().to_string()],
        ..Options::default()
    })
    .await;
    let on_k8s = s
        .create(&json!({"tags": {"site": "k8s"}, "executors": [sh(&c, "echo pod")]}))
        .await;
    let on_docker = s
        .create(&json!({"tags": {"site": "docker"},
                        "executors": [{"image": common::BUSYBOX, "command": ["echo", "container"]}]}))
        .await;
    let k8s = s.wait_done(&on_k8s).await;
    let docker = s.wait_done(&on_docker).await;
    assert_eq!(
        k8s["state"],
        "COMPLETE",
        "{}\n{}",
        short(&k8s),
        s.server_log()
    );
    assert_eq!(docker["state"], "COMPLETE", "{}", short(&docker));
    let meta = |t: &Value| t["logs"][0]["metadata"].clone();
    assert_eq!(meta(&k8s)["target"], "cluster");
    assert!(meta(&k8s)["kubernetes_job"].is_string(), "{}", meta(&k8s));
    assert_eq!(executor_logs(&k8s)[0]["stdout"], "pod\n");
    assert_eq!(meta(&docker)["target"], "box");
    assert!(meta(&docker)["kubernetes_job"].is_null());
    assert_eq!(executor_logs(&docker)[0]["stdout"], "container\n");
}

/// `deploy/kubernetes/overlays/{overlay}` under a test overlay in `dir`: the test's
/// namespace, image and configuration (storage class), `patches` of the test's own, and
/// what this cluster lacks: no kube-proxy, so the API server's address is given to the
/// pods.
fn test_overlay(
    c: &Cluster,
    ns: &Namespace<'_>,
    dir: &std::path::Path,
    overlay: &str,
    patches: Vec<Value>,
) {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/kubernetes/overlays")
        .join(overlay)
        .canonicalize()
        .unwrap();
    let dir = dir.canonicalize().unwrap();
    // kustomize takes a base by relative path only.
    let up = "../".repeat(dir.components().count() - 1);
    let base = format!("{up}{}", deploy.strip_prefix("/").unwrap().display());
    let (_, server) = c.kubectl(&[
        "config",
        "view",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let authority = server.trim().trim_start_matches("https://");
    let (api_host, api_port) = authority.rsplit_once(':').unwrap();
    let api_env = json!([
        {"name": "KUBERNETES_SERVICE_HOST", "value": api_host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": api_port},
    ]);
    let (image, tag) = c.tessera_image.rsplit_once(':').unwrap();
    std::fs::write(
        dir.join("tessera.toml"),
        format!(
            "listen = \"0.0.0.0:8000\"\nexecutor = \"kubernetes\"\nlog_format = \"json\"\n\
             [kubernetes]\nimage = {:?}\nstorage_class = {:?}\npending_timeout_secs = 60\n",
            c.tessera_image, c.storage_class
        ),
    )
    .unwrap();
    let mut all = vec![
        json!({"patch": json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tessera"},
            "spec": {"template": {"spec": {"containers": [{"name": "tessera", "env": api_env}]}}}
        }).to_string()}),
        json!({"patch": json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tessera-operator"},
            "spec": {"template": {"spec": {"containers": [{"name": "operator", "env": api_env}]}}}
        }).to_string()}),
    ];
    all.extend(patches);
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": ns.name,
        "resources": [base],
        "images": [{"name": "tessera.local/tessera", "newName": image, "newTag": tag}],
        "configMapGenerator": [{"name": "tessera-config", "behavior": "replace", "files": ["tessera.toml"]}],
        "patches": all,
    });
    std::fs::write(dir.join("kustomization.yaml"), kustomization.to_string()).unwrap();
}

/// A server deployed from the manifests, reached at its pods' addresses.
struct Deployed<'a> {
    c: &'a Cluster,
    ns: &'a Namespace<'a>,
    /// One per replica (the Service's endpoints), with the admin's token.
    replicas: Vec<Remote>,
}

impl<'a> Deployed<'a> {
    /// Secrets (the admin's token and `secrets`, name → (key, value)), then the overlay
    /// in `dir` applied and rolled out with `replicas` servers.
    async fn apply(
        c: &'a Cluster,
        ns: &'a Namespace<'a>,
        dir: &std::path::Path,
        replicas: usize,
        secrets: &[(&str, &str, String)],
    ) -> Deployed<'a> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let token = format!("tsr-deploy-test-{nanos:x}{:x}", std::process::id());
        let admin = [
            ("tessera-admin", "token", token.clone()),
            ("tessera-operator", "token", token.clone()),
        ];
        for (name, key, value) in admin.iter().chain(secrets) {
            let (ok, out) = c.kubectl(&[
                "-n",
                &ns.name,
                "create",
                "secret",
                "generic",
                name,
                &format!("--from-literal={key}={value}"),
            ]);
            assert!(ok, "{out}");
        }
        let (ok, out) = apply_cluster_wide(c, &["apply", "-k", dir.to_str().unwrap()]);
        assert!(ok, "{out}");
        let d = Deployed {
            c,
            ns,
            replicas: Vec::new(),
        };
        let (ok, out) = c.kubectl(&[
            "-n",
            &ns.name,
            "rollout",
            "status",
            "deployment/tessera",
            "--timeout=120s",
        ]);
        assert!(ok, "{out}\n{}", d.logs("tessera"));
        // No kube-proxy here: the Service is reached at its endpoints, as kube-proxy would.
        let ips = kubectl_until(
            c,
            &[
                "-n",
                &ns.name,
                "get",
                "endpoints",
                "tessera",
                "-o",
                "jsonpath={.subsets[*].addresses[*].ip}",
            ],
            "the Service has the servers' pods as its endpoints",
            |o| o.split_whitespace().count() == replicas,
        )
        .await;
        Deployed {
            replicas: ips
                .split_whitespace()
                .map(|ip| Remote::new(format!("http://{ip}:8000"), &token))
                .collect(),
            ..d
        }
    }

    fn logs(&self, deployment: &str) -> String {
        self.c
            .kubectl(&[
                "-n",
                &self.ns.name,
                "logs",
                &format!("deployment/{deployment}"),
                "--all-containers",
            ])
            .1
    }

    /// A TES task submitted to replica 0, followed to its end on `follow`.
    async fn run(&self, task: Value, follow: usize) -> Value {
        let id = self.replicas[0].create(&task).await;
        self.replicas[follow]
            .wait_done(&id, || self.logs("tessera"))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_deployed_from_the_kustomize_manifests_runs_tasks_as_jobs_beside_it() {
    let Some(c) = cluster() else { return };
    let ns = Namespace::new(&c);
    let dir = std::env::temp_dir().join(format!("{}-deploy", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    // The host-path provisioner's volumes are root's (0750): an init container hands the
    // data volume to the server's user, as fsGroup does on other volume types.
    let patches = vec![
        json!({"target": {"kind": "PersistentVolumeClaim", "name": "tessera-data"},
               "patch": json!([{"op": "add", "path": "/spec/storageClassName", "value": c.storage_class}]).to_string()}),
        json!({"patch": json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tessera"},
            "spec": {"template": {"spec": {"initContainers": [{
                "name": "data-owner", "image": c.busybox,
                "command": ["/bin/busybox", "chown", "65532:65532", "/var/lib/tessera"],
                "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/tessera"}]
            }]}}}
        }).to_string()}),
    ];
    test_overlay(&c, &ns, &dir, "sqlite", patches);
    let d = Deployed::apply(&c, &ns, &dir, 1, &[]).await;
    let (status, _) = d.replicas[0]
        .call_as(None, reqwest::Method::GET, "/ga4gh/tes/v1/tasks", None)
        .await;
    assert_eq!(status, 401);

    let done = d
        .run(
            json!({
                "inputs": [{"path": "/data/note.txt", "content": "staged by the server's image\n"}],
                "executors": [sh(&c, "cat /data/note.txt")],
            }),
            0,
        )
        .await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        short(&done),
        d.logs("tessera")
    );
    assert_eq!(
        executor_logs(&done)[0]["stdout"],
        "staged by the server's image\n"
    );
    assert!(
        done["logs"][0]["metadata"]["kubernetes_job"]
            .as_str()
            .is_some_and(|j| j.starts_with("tessera-")),
        "{}",
        short(&done)
    );

    // The operator beside it: a Task resource through kubectl becomes the server's task.
    // (No cluster DNS here either: the Service's name is pointed at its endpoint.)
    let ip = d.replicas[0]
        .url
        .trim_start_matches("http://")
        .trim_end_matches(":8000");
    let (ok, out) = c.kubectl(&[
        "-n",
        &ns.name,
        "patch",
        "deployment",
        "tessera-operator",
        "--type=merge",
        "-p",
        &json!({"spec": {"template": {"spec": {"hostAliases": [{"ip": ip, "hostnames": ["tessera"]}]}}}})
            .to_string(),
    ]);
    assert!(ok, "{out}");
    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Agent",
            "metadata": {"name": "echo"},
            "spec": {"image": c.busybox, "command": ["echo", "from the operator's pod"]}
        }),
    );
    apply(
        &c,
        &ns,
        json!({
            "apiVersion": "tessera.dev/v1alpha1", "kind": "Task",
            "metadata": {"name": "deployed"},
            "spec": {"agentRef": "echo"}
        }),
    );
    let phase = kubectl_until(
        &c,
        &[
            "-n",
            &ns.name,
            "get",
            "task",
            "deployed",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "the Task resource completes",
        |o| o == "Completed" || o == "Failed",
    )
    .await;
    assert_eq!(phase, "Completed", "{}", d.logs("tessera-operator"));
    let (_, task_id) = c.kubectl(&[
        "-n",
        &ns.name,
        "get",
        "task",
        "deployed",
        "-o",
        "jsonpath={.status.taskId}",
    ]);
    let (_, task) = d.replicas[0]
        .call(
            reqwest::Method::GET,
            &format!("/ga4gh/tes/v1/tasks/{}?view=FULL", task_id.trim()),
            None,
        )
        .await;
    assert_eq!(task["state"], "COMPLETE", "{}", short(&task));
    assert_eq!(
        executor_logs(&task)[0]["stdout"],
        "from the operator's pod\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_deployed_on_postgresql_share_tasks_and_each_others_access_tokens() {
    let Some(c) = cluster() else { return };
    let Some((database_url, database)) = common::fresh_database("tessera_k8s_deploy").await else {
        panic!("the Kubernetes suite needs PostgreSQL (TESSERA_TEST_POSTGRES_URL)");
    };
    let ns = Namespace::new(&c);
    let dir = std::env::temp_dir().join(format!("{}-deploy", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    // PostgreSQL as the pods see it.
    let authority = database_url
        .split_once('@')
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(authority, _)| authority.to_string())
        .expect("host:port in the database URL");
    let forwarded = forward_for_pods(&c.host_ip, authority.clone()).await;
    let pod_database_url = database_url.replace(&authority, &forwarded.to_string());
    // A signing key made as the overlay's instructions say.
    let key_file = dir.join("signing-key");
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "ed25519",
            "-outform",
            "DER",
            "-out",
        ])
        .arg(&key_file)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = c.kubectl(&[
        "-n",
        &ns.name,
        "create",
        "secret",
        "generic",
        "tessera-signing-key",
        &format!("--from-file=signing-key={}", key_file.display()),
    ]);
    assert!(ok, "{out}");
    // Two replicas (the overlay's three would only load this machine), no operator.
    let patches = vec![
        json!({"target": {"kind": "Deployment", "name": "tessera"},
               "patch": json!([{"op": "replace", "path": "/spec/replicas", "value": 2}]).to_string()}),
        json!({"target": {"kind": "Deployment", "name": "tessera-operator"},
               "patch": json!([{"op": "replace", "path": "/spec/replicas", "value": 0}]).to_string()}),
    ];
    test_overlay(&c, &ns, &dir, "postgres", patches);
    let d = Deployed::apply(
        &c,
        &ns,
        &dir,
        2,
        &[("tessera-database", "url", pod_database_url)],
    )
    .await;

    // A user logs in at one replica; the other takes the access token.
    let (status, body) = d.replicas[0]
        .call(
            reqwest::Method::POST,
            "/v1/admin/users",
            Some(&json!({"name": "ada", "password": "ada-password-1"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, login) = d.replicas[0]
        .call_as(
            None,
            reqwest::Method::POST,
            "/v1/auth/token",
            Some(&json!({"username": "ada", "password": "ada-password-1"})),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let access = login["access_token"].as_str().expect("an access token");
    for replica in 0..2 {
        let (status, me) = d.replicas[replica]
            .call_as(Some(access), reqwest::Method::GET, "/v1/auth/whoami", None)
            .await;
        assert_eq!(
            (status, me["username"].as_str()),
            (200, Some("ada")),
            "replica {replica}: {me}"
        );
    }

    // A task submitted to one replica is followed to its end on the other.
    let done = d
        .run(json!({"executors": [sh(&c, "echo from a replica")]}), 1)
        .await;
    assert_eq!(
        done["state"],
        "COMPLETE",
        "{}\n{}",
        short(&done),
        d.logs("tessera")
    );
    assert_eq!(executor_logs(&done)[0]["stdout"], "from a replica\n");
    drop(d);
    drop(ns);
    common::drop_database(&database).await;
}
