//! Helpers for the tests that run against the real Docker engine.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{Stream, StreamExt};
use tessera_docker::{ContainerSpec, DockerClient, DockerError};
use tessera_executor::LogChunk;

/// The FROM-scratch busybox image built by `tests/images/build.sh`.
pub const IMAGE: &str = "tessera-test/busybox:latest";
/// The same with an ENTRYPOINT, to check that specs override it.
pub const ENTRYPOINT_IMAGE: &str = "tessera-test/busybox-entrypoint:latest";
/// Every container made by these tests carries this label (value: the test run).
pub const LABEL: &str = "tessera-docker-test";

fn repo_root() -> PathBuf {
    // At run time when Cargo runs the test (it sets the variable): a test binary built
    // from another checkout of the same sources is not rebuilt here, and its
    // compile-time path may not exist.
    let dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&dir).join("../..")
}

/// Builds the test images once per test binary (the script is idempotent).
pub fn ensure_test_images() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let script = repo_root().join("tests/images/build.sh");
        let status = Command::new("bash")
            .arg(&script)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(status.success(), "{} failed", script.display());

        let present = Command::new("docker")
            .args(["image", "inspect", ENTRYPOINT_IMAGE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !present {
            let mut child = Command::new("docker")
                .args(["build", "--quiet", "--tag", ENTRYPOINT_IMAGE, "-"])
                .env("DOCKER_BUILDKIT", "0")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker build");
            let dockerfile = format!("FROM {IMAGE}\nENTRYPOINT [\"/bin/echo\", \"ENTRYPOINT\"]\n");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(dockerfile.as_bytes())
                .expect("write Dockerfile");
            assert!(
                child.wait().expect("docker build").success(),
                "building {ENTRYPOINT_IMAGE} failed"
            );
        }
    });
}

pub fn engine() -> DockerClient {
    ensure_test_images();
    DockerClient::connect(None).expect("connect")
}

/// A name unique to this process and call.
pub fn unique(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "tessera-dkt-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the named containers when dropped, even when the test panics.
pub struct Cleanup(pub Vec<String>);

impl Cleanup {
    pub fn new(names: &[&str]) -> Self {
        Cleanup(names.iter().map(|n| n.to_string()).collect())
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(&self.0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A spec running `command` in the test image, labelled as a test container.
pub fn spec(name: &str, command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.to_owned(),
        image: IMAGE.to_owned(),
        command: command.iter().map(|s| s.to_string()).collect(),
        labels: BTreeMap::from([(LABEL.to_owned(), std::process::id().to_string())]),
        network: Some("none".to_owned()),
        ..Default::default()
    }
}

pub fn sh(name: &str, script: &str) -> ContainerSpec {
    spec(name, &["sh", "-c", script])
}

#[derive(Debug, Default)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub chunks: Vec<LogChunk>,
}

impl Output {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

pub async fn collect(logs: impl Stream<Item = Result<LogChunk, DockerError>>) -> Output {
    let mut output = Output::default();
    let mut logs = std::pin::pin!(logs);
    while let Some(chunk) = logs.next().await {
        let chunk = chunk.expect("log chunk");
        match &chunk {
            LogChunk::Stdout(b) => output.stdout.extend_from_slice(b),
            LogChunk::Stderr(b) => output.stderr.extend_from_slice(b),
        }
        output.chunks.push(chunk);
    }
    output
}

/// create + start + wait + logs.
pub async fn run(
    engine: &DockerClient,
    spec: &ContainerSpec,
    stdin: Option<PathBuf>,
) -> (i64, Output) {
    engine.create(spec).await.expect("create");
    engine.start(&spec.name, stdin).await.expect("start");
    let code = engine.wait(&spec.name).await.expect("wait");
    let output = collect(engine.logs(&spec.name, false)).await;
    (code, output)
}

/// `docker inspect --format FORMAT NAME`, trimmed.
pub fn inspect(name: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, name])
        .output()
        .expect("docker inspect");
    assert!(
        out.status.success(),
        "docker inspect {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
