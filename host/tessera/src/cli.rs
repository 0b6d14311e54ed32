//! `tessera task …`: a client for a running server's TES API.

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub(crate) conn: ConnectArgs,
    #[command(subcommand)]
    command: TaskCommand,
}

/// How a client command reaches the server, and how it prints.
#[derive(Args)]
pub struct ConnectArgs {
    /// Server URL
    #[arg(
        long,
        env = "TESSERA_SERVER",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    server: String,
    /// API token [default: the one `tessera login` kept for this server, else the
    /// server's <data_dir>/api-token]
    #[arg(long, env = "TESSERA_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Where to find the server's api-token file when --token is not given
    #[arg(
        long,
        env = "TESSERA_DATA_DIR",
        default_value = "./tessera-data",
        global = true
    )]
    data_dir: PathBuf,
    /// Output: human-readable table, or JSON for scripts
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table, global = true)]
    pub(crate) output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ViewArg {
    Minimal,
    Basic,
    Full,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Submit a TES task document (a file, or - for stdin)
    Submit {
        file: PathBuf,
        /// Wait for the task to finish, showing its progress; exit 0 only if COMPLETE
        #[arg(long)]
        wait: bool,
    },
    /// Show one task
    Get {
        id: String,
        #[arg(long, value_enum, default_value_t = ViewArg::Basic)]
        view: ViewArg,
    },
    /// List tasks, newest first
    List {
        /// Only tasks in this state (e.g. RUNNING)
        #[arg(long)]
        state: Option<String>,
        /// Only tasks with this tag: KEY=VALUE, or KEY for any value; repeat to AND
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only tasks whose name starts with this
        #[arg(long)]
        name_prefix: Option<String>,
        /// At most this many tasks
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Cancel a task
    Cancel { id: String },
    /// Follow a task until it ends: each state change as it happens (a live line on a
    /// terminal); exit 0 only if COMPLETE
    Watch { id: String },
    /// Run a command in the container a task is kept in after its command ended (its
    /// agent's human_in_the_loop); without a command, a line-by-line shell (each line
    /// runs as `sh -c LINE`; no terminal)
    Exec {
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Print a task's executor stdout/stderr
    Logs {
        id: String,
        /// Keep printing output as it grows until the task ends
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(conn: &ConnectArgs) -> Client {
        let base = conn.server.trim_end_matches('/').to_string();
        let token = conn
            .token
            .clone()
            .or_else(|| crate::credentials::load(&base).map(|c| c.token))
            .or_else(|| {
                std::fs::read_to_string(conn.data_dir.join("api-token"))
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            });
        Client {
            http: reqwest::Client::new(),
            base,
            token,
        }
    }

    /// The server's URL, without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// The same server with another token.
    pub(crate) fn with_token(&self, token: String) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            token: Some(token),
        }
    }

    /// Upload a plugin: its manifest text and component bytes as a multipart form.
    pub(crate) async fn upload_plugin(
        &self,
        manifest: String,
        component: Vec<u8>,
    ) -> Result<Value, String> {
        let form = reqwest::multipart::Form::new()
            .text("manifest", manifest)
            .part(
                "component",
                reqwest::multipart::Part::bytes(component).file_name("component.wasm"),
            );
        let mut req = self
            .http
            .post(format!("{}/v1/plugins", self.base))
            .multipart(form);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        Self::answer(resp).await
    }

    /// A request to `path` with the token.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub(crate) fn unreachable(&self, e: reqwest::Error) -> String {
        format!(
            "cannot reach the server at {}: {}",
            self.base,
            tessera_core::error::chain(&e)
        )
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        Self::answer(resp).await
    }

    pub(crate) async fn answer(resp: reqwest::Response) -> Result<Value, String> {
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("reading the response: {e}"))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(value)
        } else {
            let msg = value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            let details = value
                .get("details")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .map(|x| {
                            format!(
                                "\n  {}: {}",
                                x["field"].as_str().unwrap_or(""),
                                x["message"].as_str().unwrap_or("")
                            )
                        })
                        .collect::<String>()
                })
                .unwrap_or_default();
            Err(format!("{} ({status}){details}", msg))
        }
    }

    pub(crate) async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, query, None).await
    }
}

pub async fn run(args: TaskArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    match dispatch(&client, &args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

const TES: &str = "/ga4gh/tes/v1";

async fn dispatch(client: &Client, args: &TaskArgs) -> Result<ExitCode, String> {
    let json = args.conn.output == Output::Json;
    match &args.command {
        TaskCommand::Submit { file, wait } => {
            let body = if file.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut b)
                    .map_err(|e| format!("reading stdin: {e}"))?;
                b
            } else {
                std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))?
            };
            let created = client
                .call(
                    reqwest::Method::POST,
                    &format!("{TES}/tasks"),
                    &[],
                    Some(body),
                )
                .await?;
            let id = created["id"]
                .as_str()
                .ok_or("the server returned no task id")?
                .to_string();
            if !wait {
                if json {
                    println!("{created}");
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                eprintln!("submitted {id}");
            }
            let status = watch(client, &id, json).await?;
            let state = status["state"].as_str().unwrap_or("").to_string();
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status["task"]).unwrap_or_default()
                );
            } else {
                print_task(&status);
            }
            Ok(if state == "COMPLETE" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        TaskCommand::Get { id, view } => {
            if json {
                let v = match view {
                    ViewArg::Minimal => "MINIMAL",
                    ViewArg::Basic => "BASIC",
                    ViewArg::Full => "FULL",
                };
                let task = client
                    .get(&format!("{TES}/tasks/{id}"), &[("view", v.to_string())])
                    .await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&task).unwrap_or_default()
                );
            } else {
                let status = client.get(&format!("/v1/tasks/{id}"), &[]).await?;
                print_task(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::List {
            state,
            tags,
            name_prefix,
            limit,
        } => {
            let mut tasks: Vec<Value> = Vec::new();
            let mut token: Option<String> = None;
            while tasks.len() < *limit {
                let mut q: Vec<(&str, String)> = vec![
                    ("view", "BASIC".into()),
                    ("page_size", (*limit - tasks.len()).min(2047).to_string()),
                ];
                if let Some(s) = state {
                    q.push(("state", s.to_ascii_uppercase()));
                }
                if let Some(p) = name_prefix {
                    q.push(("name_prefix", p.clone()));
                }
                for t in tags {
                    let (k, v) = t.split_once('=').unwrap_or((t.as_str(), ""));
                    q.push(("tag_key", k.to_string()));
                    q.push(("tag_value", v.to_string()));
                }
                if let Some(t) = &token {
                    q.push(("page_token", t.clone()));
                }
                let page = client.get(&format!("{TES}/tasks"), &q).await?;
                tasks.extend(page["tasks"].as_array().cloned().unwrap_or_default());
                token = page["next_page_token"].as_str().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Value::Array(tasks)).unwrap_or_default()
                );
            } else {
                let rows: Vec<Vec<String>> = tasks
                    .iter()
                    .map(|t| {
                        vec![
                            s(&t["id"]),
                            s(&t["state"]),
                            t["name"].as_str().unwrap_or("-").to_string(),
                            s(&t["creation_time"]),
                            t["executors"]
                                .as_array()
                                .map(|e| e.len())
                                .unwrap_or(0)
                                .to_string(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "STATE", "NAME", "CREATED", "EXECUTORS"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Cancel { id } => {
            let r = client
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/tasks/{id}/cancel"),
                    &[],
                    None,
                )
                .await?;
            let state = s(&r["state"]);
            if json {
                println!("{r}");
            } else if r["already_ended"].as_bool() == Some(true) {
                println!("{id} had already ended ({state}); nothing to cancel");
            } else if state == "CANCELED" {
                println!("canceled {id}");
            } else {
                println!("cancel requested for {id} ({state}): its containers are being stopped");
            }
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Logs { id, follow } => {
            logs(client, id, *follow).await?;
            Ok(ExitCode::SUCCESS)
        }
        TaskCommand::Exec { id, command } => exec(client, id, command).await,
        TaskCommand::Watch { id } => {
            let status = watch(client, id, json).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            }
            Ok(if status["state"] == "COMPLETE" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// One path segment, percent-encoded (ids and keys in URLs).
pub(crate) fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn s(v: &Value) -> String {
    v.as_str().map(str::to_string).unwrap_or_else(|| {
        if v.is_null() {
            "-".into()
        } else {
            v.to_string()
        }
    })
}

pub(crate) fn is_terminal_state(s: &str) -> bool {
    matches!(
        s,
        "COMPLETE" | "EXECUTOR_ERROR" | "SYSTEM_ERROR" | "CANCELED" | "PREEMPTED"
    )
}

/// Follow `/v1/events` (with the filters in `query`) from after event `after`, handing
/// each event's data to `on_event` until it returns true; `on_tick` runs every 200 ms
/// meanwhile (a progress display). A dropped connection is resumed with
/// `Last-Event-ID`, so no event is missed.
pub(crate) async fn follow_events(
    client: &Client,
    query: &[(&str, String)],
    mut after: i64,
    mut on_event: impl FnMut(&Value) -> bool,
    mut on_tick: impl FnMut(),
) -> Result<(), String> {
    use futures_util::StreamExt;
    let mut failures = 0;
    loop {
        let resp = client
            .request(reqwest::Method::GET, "/v1/events")
            .query(query)
            .header("last-event-id", after.to_string())
            .send()
            .await;
        let resp = match resp {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => return Client::answer(r).await.map(|_| ()),
            Err(e) if failures < 5 => {
                failures += 1;
                tracing::debug!(error = %e, "event stream: reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => return Err(client.unreachable(e)),
        };
        let mut body = resp.bytes_stream();
        let mut buf = String::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            let chunk = tokio::select! {
                c = body.next() => c,
                _ = tick.tick() => { on_tick(); continue; }
            };
            let Some(Ok(chunk)) = chunk else {
                break; // dropped: resume after the last event seen
            };
            failures = 0;
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse::<i64>().ok();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let (Some(id), Ok(event)) = (id, serde_json::from_str::<Value>(&data)) {
                    after = id;
                    if on_event(&event) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Run one command in a kept task: its output on ours, its exit code as ours.
async fn exec_once(client: &Client, id: &str, command: &[String]) -> Result<i64, String> {
    let body = serde_json::json!({ "command": command })
        .to_string()
        .into_bytes();
    let out = client
        .call(
            reqwest::Method::POST,
            &format!("/v1/tasks/{}/exec", encode_segment(id)),
            &[],
            Some(body),
        )
        .await?;
    let _ = std::io::stdout().write_all(out["stdout"].as_str().unwrap_or("").as_bytes());
    let _ = std::io::stderr().write_all(out["stderr"].as_str().unwrap_or("").as_bytes());
    let _ = std::io::stdout().flush();
    Ok(out["exit_code"].as_i64().unwrap_or(-1))
}

async fn exec(client: &Client, id: &str, command: &[String]) -> Result<ExitCode, String> {
    if !command.is_empty() {
        let code = exec_once(client, id, command).await?;
        return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)));
    }
    let tty = std::io::stdin().is_terminal();
    let mut line = String::new();
    loop {
        if tty {
            eprint!("{id}$ ");
            let _ = std::io::stderr().flush();
        }
        line.clear();
        if std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("reading stdin: {e}"))?
            == 0
        {
            return Ok(ExitCode::SUCCESS);
        }
        let cmd = line.trim();
        if cmd.is_empty() {
            continue;
        }
        if cmd == "exit" {
            return Ok(ExitCode::SUCCESS);
        }
        match exec_once(client, id, &["sh".into(), "-c".into(), cmd.to_string()]).await {
            Ok(0) => {}
            Ok(code) if tty => eprintln!("[exit {code}]"),
            Ok(_) => {}
            Err(e) => eprintln!("error: {e}"),
        }
    }
}

/// Watch a task until it ends: its history so far, then each change as it happens
/// (from the event stream), on stderr — a live line on a terminal. Returns its final
/// status.
pub(crate) async fn watch(client: &Client, id: &str, quiet: bool) -> Result<Value, String> {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal() && !quiet;
    let status = client.get(&format!("/v1/tasks/{id}"), &[]).await?;
    let events = status["events"].as_array().cloned().unwrap_or_default();
    let after = events
        .iter()
        .filter_map(|e| e["seq"].as_i64())
        .max()
        .unwrap_or(0);
    let line_of = |state: &str, reason: &str| {
        if reason.is_empty() {
            state.to_string()
        } else {
            format!("{state}: {reason}")
        }
    };
    let mut line = line_of(
        &s(&status["state"]),
        status["reason"].as_str().unwrap_or(""),
    );
    if !quiet && !tty {
        for e in &events {
            eprintln!(
                "{}  {}",
                s(&e["at"]),
                line_of(&s(&e["to_state"]), e["reason"].as_str().unwrap_or(""))
            );
        }
    }
    if !is_terminal_state(&s(&status["state"])) {
        let spinner = ['|', '/', '-', '\\'];
        let mut tick = 0usize;
        let show = |line: &str, tick: usize| {
            eprint!(
                "\r\x1b[2K{} {:>6.1}s  {line}",
                spinner[tick % 4],
                start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        };
        let line_cell = std::sync::Mutex::new(std::mem::take(&mut line));
        follow_events(
            client,
            &[("task", id.to_string())],
            after,
            |e| {
                let state = s(&e["to"]);
                let l = line_of(&state, e["reason"].as_str().unwrap_or(""));
                if !quiet && !tty {
                    eprintln!("{}  {l}", s(&e["at"]));
                }
                if let Ok(mut cell) = line_cell.lock() {
                    *cell = l;
                }
                is_terminal_state(&state)
            },
            || {
                if tty {
                    tick += 1;
                    show(
                        &line_cell.lock().map(|l| l.clone()).unwrap_or_default(),
                        tick,
                    );
                }
            },
        )
        .await?;
        if tty {
            show(
                &line_cell.lock().map(|l| l.clone()).unwrap_or_default(),
                tick,
            );
            eprintln!();
        }
    }
    client.get(&format!("/v1/tasks/{id}"), &[]).await
}

fn print_task(status: &Value) {
    let task = &status["task"];
    let mut rows = vec![
        ("ID", s(&status["id"])),
        ("STATE", s(&status["state"])),
        ("REASON", s(&status["reason"])),
        ("NAME", task["name"].as_str().unwrap_or("-").to_string()),
        ("CREATED", s(&task["creation_time"])),
    ];
    let last_log = task["logs"]
        .as_array()
        .and_then(|l| l.last())
        .cloned()
        .unwrap_or(Value::Null);
    if !last_log.is_null() {
        rows.push(("STARTED", s(&last_log["start_time"])));
        rows.push(("ENDED", s(&last_log["end_time"])));
    }
    for (k, v) in rows {
        println!("{k:<10} {v}");
    }
    let execs = task["executors"].as_array().cloned().unwrap_or_default();
    let exec_logs = last_log["logs"].as_array().cloned().unwrap_or_default();
    let meta = &last_log["metadata"];
    if !execs.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = execs
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let l = exec_logs.get(i);
                let cmd: Vec<String> = e["command"]
                    .as_array()
                    .map(|c| c.iter().map(s).collect())
                    .unwrap_or_default();
                vec![
                    i.to_string(),
                    s(&e["image"]),
                    cmd.join(" "),
                    match l {
                        None => "not run".into(),
                        Some(l) if l["end_time"].is_null() => "running".into(),
                        Some(l) => s(&l["exit_code"]),
                    },
                    meta[format!("executor.{i}.run_ms")]
                        .as_str()
                        .map(|m| format!("{m} ms"))
                        .unwrap_or("-".into()),
                    meta[format!("executor.{i}.peak_memory_bytes")]
                        .as_str()
                        .and_then(|m| m.parse::<f64>().ok())
                        .map(|b| format!("{:.1} MiB", b / 1048576.0))
                        .unwrap_or("-".into()),
                ]
            })
            .collect();
        print_table(
            &["#", "IMAGE", "COMMAND", "EXIT", "RUN TIME", "PEAK MEM"],
            &rows,
        );
    }
    if let Some(outputs) = last_log["outputs"].as_array().filter(|o| !o.is_empty()) {
        println!();
        let rows: Vec<Vec<String>> = outputs
            .iter()
            .map(|o| vec![s(&o["path"]), s(&o["url"]), s(&o["size_bytes"])])
            .collect();
        print_table(&["OUTPUT", "URL", "BYTES"], &rows);
    }
    if let Some(sys) = last_log["system_logs"].as_array().filter(|o| !o.is_empty()) {
        println!("\nSYSTEM LOGS");
        for l in sys {
            println!("  {}", s(l));
        }
    }
}

pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count().min(60));
            }
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let c: String = if c.chars().count() > 60 {
                    c.chars().take(59).chain(['…']).collect()
                } else {
                    c.clone()
                };
                format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0))
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Print executor output. Following polls the FULL view and prints what is new, using
/// the byte counts in the log metadata to know how much of the tail is new.
async fn logs(client: &Client, id: &str, follow: bool) -> Result<(), String> {
    let mut printed: Vec<(u64, u64)> = Vec::new();
    loop {
        let task = client
            .get(&format!("{TES}/tasks/{id}"), &[("view", "FULL".into())])
            .await?;
        let log = task["logs"]
            .as_array()
            .and_then(|l| l.last())
            .cloned()
            .unwrap_or(Value::Null);
        let meta = &log["metadata"];
        let execs = log["logs"].as_array().cloned().unwrap_or_default();
        for (i, e) in execs.iter().enumerate() {
            if printed.len() <= i {
                printed.push((0, 0));
            }
            let count = |k: &str, text: &str| {
                meta[format!("executor.{i}.{k}_bytes")]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(text.len() as u64)
            };
            let out = e["stdout"].as_str().unwrap_or("");
            let err = e["stderr"].as_str().unwrap_or("");
            let (out_total, err_total) = (count("stdout", out), count("stderr", err));
            let (p_out, p_err) = printed[i];
            print_new(&mut std::io::stdout(), out, out_total, p_out);
            print_new(&mut std::io::stderr(), err, err_total, p_err);
            printed[i] = (out_total.max(p_out), err_total.max(p_err));
        }
        if !follow || is_terminal_state(task["state"].as_str().unwrap_or("")) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `tail` holds the last bytes of a stream of `total` bytes; print the part after `printed`.
fn print_new(w: &mut dyn Write, tail: &str, total: u64, printed: u64) {
    let (_, text) = tessera_core::view::unseen_tail(tail, total, printed);
    let _ = w.write_all(text.as_bytes());
    let _ = w.flush();
}
