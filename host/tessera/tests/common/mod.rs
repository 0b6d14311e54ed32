//! Harness for the end-to-end tests: start the `tessera` binary Cargo just built
//! (`CARGO_BIN_EXE_tessera`) on a free port with a private data directory, and talk to it
//! over HTTP like any client. Each test file includes it (`mod common;`) and uses a part.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The image the test command builds locally (`tests/images/build.sh`).
pub const BUSYBOX: &str = "tessera-test/busybox:latest";

/// Upper bound for anything a test waits on; a bound, not a synchronisation.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// The `tessera` binary Cargo built for these tests (always the current one).
pub fn tessera_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tessera"))
}

/// Run `tessera serve` with `args`, expecting it to refuse to start: its exit status is a
/// failure within the deadline; returns what it printed on stderr.
pub fn serve_refused(args: &[&std::ffi::OsStr]) -> String {
    let mut child = Command::new(tessera_bin())
        .arg("serve")
        .args(["--listen", "127.0.0.1:0", "--executor", "none"])
        .args(args)
        .env_remove("TESSERA_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tessera");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for tessera") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("tessera serve {args:?} kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success(), "tessera serve {args:?} succeeded: {err}");
    err
}

#[derive(Clone, Debug)]
pub struct Options {
    pub executor: &'static str,
    pub max_concurrent_tasks: usize,
    pub docker_socket: Option<String>,
    pub extra_args: Vec<String>,
    pub database_url: Option<String>,
    /// The server process's umask (default: the test's).
    pub umask: Option<u32>,
    /// Put the data directory on a tmpfs of this many bytes (a disk that fills up);
    /// needs root.
    pub small_data_disk: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            executor: "docker",
            max_concurrent_tasks: 4,
            docker_socket: None,
            extra_args: Vec::new(),
            database_url: None,
            umask: None,
            small_data_disk: None,
        }
    }
}

pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub token: String,
    pub data_dir: PathBuf,
    /// A directory the server allows for file:// inputs and outputs.
    pub allowed: PathBuf,
    pub options: Options,
    _tmp: tempfile::TempDir,
    pub http: reqwest::Client,
    port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Server {
    pub async fn start(options: Options) -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data_dir = tmp.path().join("data");
        let allowed = std::fs::canonicalize(tmp.path()).unwrap().join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        if let Some(bytes) = options.small_data_disk {
            std::fs::create_dir_all(&data_dir).unwrap();
            let mounted = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={bytes},mode=0700"),
                    "tessera-test",
                ])
                .arg(&data_dir)
                .status()
                .expect("mount");
            assert!(
                mounted.success(),
                "mounting a tmpfs at {}",
                data_dir.display()
            );
        }
        let mut server = Server {
            child: None,
            url: String::new(),
            token: String::new(),
            data_dir,
            allowed,
            options,
            _tmp: tmp,
            // No idle connections kept: a test of the server's connection cap counts
            // only its own.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            port: free_port(),
        };
        server.spawn().await;
        server
    }

    /// (Re)start the process on the same data directory (and port, unless another
    /// process took it meanwhile: a free port is picked before it is bound, so a server
    /// starting beside may win it; then the one answering is not ours).
    pub async fn spawn(&mut self) {
        for _ in 0..5 {
            self.spawn_on_port().await;
            if self.answering_is_ours().await {
                return;
            }
            self.kill9();
            self.port = free_port();
        }
        panic!("no free port stayed free for tessera to bind");
    }

    /// Whether the server answering on our port is the one we started: our token is
    /// good there (each data directory has its own), or, with a token of the test's own
    /// choosing, our process still runs.
    async fn answering_is_ours(&mut self) -> bool {
        let alive = self
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
        if self.token.is_empty() {
            return alive;
        }
        let whoami = self
            .req(
                reqwest::Method::GET,
                &format!("{}/v1/auth/whoami", self.url),
            )
            .send()
            .await;
        alive && !whoami.is_ok_and(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED)
    }

    async fn spawn_on_port(&mut self) {
        let mut cmd = Command::new(tessera_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--allow-dir")
            .arg(&self.allowed)
            .arg("--executor")
            .arg(self.options.executor)
            .arg("--max-concurrent-tasks")
            .arg(self.options.max_concurrent_tasks.to_string())
            .args(&self.options.extra_args)
            .env_remove("TESSERA_CONFIG")
            .env("TESSERA_LOG", "info,tessera=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self._tmp.path().join("server.log"))
                    .unwrap(),
            ));
        if let Some(s) = &self.options.docker_socket {
            cmd.arg("--docker-socket").arg(s);
        }
        if let Some(u) = &self.options.database_url {
            cmd.arg("--database-url").arg(u);
        }
        if let Some(mask) = self.options.umask {
            use std::os::unix::process::CommandExt;
            // SAFETY: umask is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    libc::umask(mask as libc::mode_t);
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", tessera_bin().display()));
        self.child = Some(child);
        self.url = format!("http://127.0.0.1:{}", self.port);
        let start = Instant::now();
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.url)).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "tessera exited at start with {status}:\n{}",
                    self.server_log()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "tessera did not become healthy:\n{}",
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.token = std::fs::read_to_string(self.data_dir.join("api-token"))
            .unwrap_or_default()
            .trim()
            .to_string();
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self._tmp.path().join("server.log")).unwrap_or_default()
    }

    /// SIGTERM without waiting.
    pub fn signal_terminate(&self) {
        if let Some(pid) = self
            .child
            .as_ref()
            .and_then(|c| libc::pid_t::try_from(c.id()).ok())
        {
            // SAFETY: kill(2) with a pid we spawned and a valid signal number.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

    /// Wait for the server process to exit (after a signal).
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.take()?.wait().ok()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the server (no chance to clean up), like a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn tes(&self, path: &str) -> String {
        format!("{}/ga4gh/tes/v1{path}", self.url)
    }

    /// The text of `/metrics` (open, no token).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A request with the bearer token.
    pub fn req(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.token)
    }

    /// GET a URL with auth: (status, JSON body).
    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::GET, url)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POST raw bytes with auth: (status, JSON body).
    pub async fn post_raw(&self, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .req(reqwest::Method::POST, url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Upload a plugin (multipart `manifest` + `component`): (status, JSON body).
    pub async fn upload_plugin(&self, manifest: &str, component: Vec<u8>) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest.to_string())
            .part("component", reqwest::multipart::Part::bytes(component));
        let r = self
            .req(reqwest::Method::POST, &format!("{}/v1/plugins", self.url))
            .multipart(form)
            .send()
            .await
            .expect("POST /v1/plugins");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn post_json(&self, url: &str, body: &Value) -> (u16, Value) {
        self.post_raw(url, serde_json::to_vec(body).unwrap()).await
    }

    /// Create a task; panics unless the server accepts it.
    pub async fn create(&self, task: &Value) -> String {
        let (status, body) = self.post_json(&self.tes("/tasks"), task).await;
        assert_eq!(status, 200, "create failed: {body}");
        body["id"].as_str().expect("id").to_string()
    }

    pub async fn task(&self, id: &str, view: &str) -> Value {
        let (status, body) = self
            .get_json(&self.tes(&format!("/tasks/{id}?view={view}")))
            .await;
        assert_eq!(status, 200, "get {id}: {body}");
        body
    }

    /// The Tessera view: state, reason and events.
    pub async fn status(&self, id: &str) -> Value {
        let (status, body) = self.get_json(&format!("{}/v1/tasks/{id}", self.url)).await;
        assert_eq!(status, 200, "status {id}: {body}");
        body
    }

    pub async fn cancel(&self, id: &str) -> (u16, Value) {
        self.post_raw(&self.tes(&format!("/tasks/{id}:cancel")), "")
            .await
    }

    /// Poll until `pred` holds for the FULL view, or fail at the deadline.
    pub async fn wait_until(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let t = self.task(id, "FULL").await;
            if pred(&t) {
                return t;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "task {id} never reached: {what}; last seen: {}\nserver log:\n{}",
                short(&t),
                self.server_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait for a terminal state; returns the FULL view.
    pub async fn wait_done(&self, id: &str) -> Value {
        self.wait_until(id, "a terminal state", |t| {
            is_terminal(t["state"].as_str().unwrap_or(""))
        })
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if self.options.small_data_disk.is_some() {
            let _ = Command::new("umount").arg(&self.data_dir).status();
        }
    }
}

/// A JSON value cut to a readable length for assertion messages.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 1500 {
        let mut end = 1500;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    } else {
        s
    }
}

pub fn is_terminal(state: &str) -> bool {
    matches!(
        state,
        "COMPLETE" | "EXECUTOR_ERROR" | "SYSTEM_ERROR" | "CANCELED" | "PREEMPTED"
    )
}

/// A server the test did not start itself (in a container, a pod), at `url`.
pub struct Remote {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Remote {
    pub fn new(url: String, token: &str) -> Remote {
        Remote {
            url,
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    /// A call with `token` (none: unauthenticated): the status and the JSON body.
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("the server answers");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// A call with the admin's token.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.call_as(Some(&self.token), method, path, body).await
    }

    /// Submit a TES task; its id.
    pub async fn create(&self, task: &Value) -> String {
        let (status, created) = self
            .call(reqwest::Method::POST, "/ga4gh/tes/v1/tasks", Some(task))
            .await;
        assert_eq!(status, 200, "{created}");
        created["id"].as_str().expect("a task id").to_string()
    }

    /// The TES task `id` (FULL) once it has ended; `context` (the server's logs) is
    /// printed if it does not in time.
    pub async fn wait_done(&self, id: &str, context: impl Fn() -> String) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (_, task) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/ga4gh/tes/v1/tasks/{id}?view=FULL"),
                    None,
                )
                .await;
            if is_terminal(task["state"].as_str().unwrap_or("")) {
                return task;
            }
            assert!(Instant::now() < deadline, "{}\n{}", short(&task), context());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A one-executor task running `command` in the busybox test image.
pub fn simple_task(command: &[&str]) -> Value {
    json!({
        "name": "e2e",
        "executors": [{"image": BUSYBOX, "command": command}]
    })
}

/// Run `docker` with arguments; returns stdout.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Read one HTTP/1.1 request (head and a `content-length` body) from a test server's
/// connection: `(head, body)`, or `None` when the peer closed before a whole head.
pub async fn read_http_request(conn: &mut tokio::net::TcpStream) -> Option<(String, Vec<u8>)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let (head_end, len) = loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, len);
        }
    };
    while buf.len() < head_end + len {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    Some((head, buf[head_end..].to_vec()))
}

/// An HTTP server on 127.0.0.1: GET serves `files`, PUT stores into `files`.
#[derive(Clone)]
pub struct FileServer {
    pub port: u16,
    pub files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

impl FileServer {
    pub async fn start() -> FileServer {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = FileServer {
            port: listener.local_addr().unwrap().port(),
            files: Arc::default(),
        };
        let server = me.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let Some((head, request_body)) = read_http_request(&mut conn).await else {
                        return;
                    };
                    let mut first = head.lines().next().unwrap_or("").split(' ');
                    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
                    let (status, body) = match method {
                        "GET" => match server.files.lock().unwrap().get(path) {
                            Some(b) => (200, b.clone()),
                            None => (404, b"not found".to_vec()),
                        },
                        "PUT" => {
                            server
                                .files
                                .lock()
                                .unwrap()
                                .insert(path.to_string(), request_body);
                            (201, Vec::new())
                        }
                        _ => (405, Vec::new()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(head.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                });
            }
        });
        me
    }

    pub fn insert(&self, path: &str, bytes: &[u8]) {
        self.files
            .lock()
            .unwrap()
            .insert(path.to_string(), bytes.to_vec());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The `tessera` CLI pointed at `s` (its token from the data directory): the command,
/// ready to run.
pub fn cli_command(s: &Server, args: &[&str]) -> Command {
    let mut cmd = Command::new(tessera_bin());
    cmd.args(args)
        .env("TESSERA_SERVER", &s.url)
        .env("TESSERA_DATA_DIR", &s.data_dir)
        .env_remove("TESSERA_TOKEN");
    cmd
}

/// Run the CLI off the async threads; panics unless it succeeds. Returns stdout.
pub async fn cli_ok(s: &Server, args: &[&str]) -> Vec<u8> {
    let mut cmd = cli_command(s, args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("tessera CLI"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "tessera {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The Python with py-tes (TESSERA_TEST_PYTHON, made by scripts/test-env.sh); `None`
/// skips unless TESSERA_REQUIRE_ALL=1.
pub fn pytes_python() -> Option<String> {
    match std::env::var("TESSERA_TEST_PYTHON") {
        Ok(p) => Some(p),
        Err(_) => {
            assert!(
                std::env::var("TESSERA_REQUIRE_ALL").is_err(),
                "TESSERA_TEST_PYTHON is not set; scripts/test-env.sh makes the py-tes venv"
            );
            eprintln!("SKIPPED: TESSERA_TEST_PYTHON not set (run scripts/test.sh)");
            None
        }
    }
}

/// Submit `task` with py-tes, wait for it to end, and return its FULL view as py-tes
/// read it.
pub async fn pytes_run(python: &str, s: &Server, task: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pytes/run_task.py");
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .arg(&s.url)
        .arg(&s.token)
        .arg(task.to_string());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("python"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "py-tes failed:\n{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.server_log()
    );
    serde_json::from_slice(&out.stdout).expect("py-tes printed the task as JSON")
}

/// A caller of a running server with one bearer token. Paths under `/v1` and `/ga4gh`
/// are the server's; others are TES paths (`/tasks`).
pub struct Client<'a> {
    pub s: &'a Server,
    pub token: String,
}

impl Client<'_> {
    /// The status and the JSON answer (a text answer as a JSON string).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let url = if path.starts_with("/ga4gh") || path.starts_with("/v1") {
            format!("{}{path}", self.s.url)
        } else {
            self.s.tes(path)
        };
        let mut req = self.s.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await.expect("the request");
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
    /// The bytes of a GET.
    pub async fn bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let r = self
            .s
            .http
            .get(format!("{}{path}", self.s.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the request");
        (
            r.status().as_u16(),
            r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
        )
    }
    /// GET `path` until `done` holds for its answer (within [`DEADLINE`]); the answer.
    pub async fn wait_until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            let (_, v) = self.get(path).await;
            if done(&v) {
                return v;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{path} never reached {what}: {v}\n{}",
                self.s.server_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The instance admin, with the bootstrap token.
pub fn admin(s: &Server) -> Client<'_> {
    Client {
        s,
        token: s.token.clone(),
    }
}

/// A client with the token a JSON answer holds (a login's, a new token's).
pub fn client_with<'a>(s: &'a Server, token: &Value) -> Client<'a> {
    Client {
        s,
        token: token.as_str().expect("a token in the answer").to_string(),
    }
}

/// Log in with a password: the status and the answer.
pub async fn login(s: &Server, user: &str, password: &str) -> (u16, Value) {
    let r = s
        .http
        .post(format!("{}/v1/auth/token", s.url))
        .json(&serde_json::json!({ "username": user, "password": password }))
        .send()
        .await
        .expect("the login");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A new user (with a personal group of its name), made by the admin, logged in.
pub async fn user<'a>(s: &'a Server, name: &str) -> Client<'a> {
    let password = format!("{name}-password-1");
    let (status, body) = admin(s)
        .post(
            "/v1/admin/users",
            &serde_json::json!({ "name": name, "password": password }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = login(s, name, &password).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    client_with(s, &body["access_token"])
}

/// Read SSE events from a response until `until` says stop; (id, data) pairs.
pub async fn read_events(
    r: reqwest::Response,
    mut until: impl FnMut(&[(i64, Value)]) -> bool,
) -> Vec<(i64, Value)> {
    use futures_util::StreamExt;
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while !until(&out) {
        let chunk = tokio::time::timeout_at(deadline.into(), body.next())
            .await
            .expect("events in time")
            .expect("the stream went on")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let (mut id, mut data) = (None, None);
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str::<Value>(v.trim()).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, data));
            }
        }
    }
    out
}

pub async fn subscribe(
    s: &Server,
    token: &str,
    query: &str,
    last: Option<i64>,
) -> reqwest::Response {
    let mut req = s
        .http
        .get(format!("{}/v1/events{query}", s.url))
        .bearer_auth(token);
    if let Some(l) = last {
        req = req.header("last-event-id", l.to_string());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    r
}

/// A database of its own on the test PostgreSQL; `None` skips (unless required).
pub async fn fresh_database(prefix: &str) -> Option<(String, String)> {
    let base = match std::env::var("TESSERA_TEST_POSTGRES_URL") {
        Ok(url) => url,
        Err(_) => {
            assert!(
                std::env::var("TESSERA_REQUIRE_POSTGRES").is_err()
                    && std::env::var("TESSERA_REQUIRE_ALL").is_err(),
                "TESSERA_TEST_POSTGRES_URL is not set; scripts/test-env.sh starts PostgreSQL"
            );
            eprintln!("SKIPPED: TESSERA_TEST_POSTGRES_URL not set (run scripts/test.sh)");
            return None;
        }
    };
    let name = format!(
        "{prefix}_{}_{}",
        std::process::id(),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    on_test_postgres(&base, &format!("CREATE DATABASE {name}")).await;
    let (server, _) = base.rsplit_once('/').expect("a database URL");
    Some((format!("{server}/{name}"), name))
}

pub async fn drop_database(name: &str) {
    let base = std::env::var("TESSERA_TEST_POSTGRES_URL").unwrap();
    on_test_postgres(&base, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
}

/// One statement on the test PostgreSQL at `url`, on a connection of its own.
async fn on_test_postgres(url: &str, sql: &str) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    sqlx::Connection::close(conn).await.unwrap();
}
