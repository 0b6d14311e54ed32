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
    /// Print a task's executor stdout/stderr
    Logs {
        id: String,
        /// Keep printing output as it grows until the task ends
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

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
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the server at {}: {e}", self.base))?;
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
        format!("cannot reach the server at {}: {e}", self.base)
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
        let resp = req
            .send()
            .await
            .map_err(|e| format!("cannot reach the server at {}: {e}", self.base))?;
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
            let status = wait_for(client, &id, json).await?;
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
    }
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

fn is_terminal_state(s: &str) -> bool {
    matches!(
        s,
        "COMPLETE" | "EXECUTOR_ERROR" | "SYSTEM_ERROR" | "CANCELED" | "PREEMPTED"
    )
}

/// Poll until terminal, showing state changes on stderr (a live line on a terminal).
async fn wait_for(client: &Client, id: &str, quiet: bool) -> Result<Value, String> {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal() && !quiet;
    let spinner = ['|', '/', '-', '\\'];
    let mut last = String::new();
    let mut tick = 0usize;
    loop {
        let status = client.get(&format!("/v1/tasks/{id}"), &[]).await?;
        let state = s(&status["state"]);
        let reason = status["reason"].as_str().unwrap_or("").to_string();
        let line = format!(
            "{state}{}",
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
        if !quiet {
            if tty {
                eprint!(
                    "\r\x1b[2K{} {:>6.1}s  {line}",
                    spinner[tick % 4],
                    start.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
            } else if line != last {
                eprintln!("{:>6.1}s  {line}", start.elapsed().as_secs_f64());
            }
        }
        last = line;
        tick += 1;
        if is_terminal_state(&state) {
            if tty {
                eprintln!();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    if total <= printed {
        return;
    }
    let new = (total - printed) as usize;
    let bytes = tail.as_bytes();
    let start = bytes.len().saturating_sub(new);
    let mut start = start;
    while start < bytes.len() && !tail.is_char_boundary(start) {
        start += 1;
    }
    let _ = w.write_all(&bytes[start..]);
    let _ = w.flush();
}
