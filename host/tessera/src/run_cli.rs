//! `tessera op …` and `tessera run …`: operations and their runs on a running server
//! (the Task API's `/v1/operations` and `/v1/runs`).

use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{Client, ConnectArgs, Output, print_table, s};

#[derive(Args)]
pub struct OpArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: OpCommand,
}

#[derive(Subcommand)]
enum OpCommand {
    /// Create an operation from a JSON document (a file, or - for stdin)
    Create {
        file: PathBuf,
        /// The group it belongs to [default: your personal group]
        #[arg(long)]
        group: Option<String>,
    },
    /// Make a new version of an operation from a JSON document
    Update { id: String, file: PathBuf },
    /// List operations
    List {
        #[arg(long)]
        group: Option<String>,
    },
    /// Show an operation (its latest version, or --version N)
    Get {
        id: String,
        #[arg(long)]
        version: Option<i64>,
    },
    /// Delete an operation (its runs stay readable)
    Delete { id: String },
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: RunCommand,
}

#[derive(Subcommand)]
enum RunCommand {
    /// Run an operation
    Submit {
        /// The operation's id
        operation: String,
        /// A parameter value, NAME=VALUE (read as the parameter's declared type); repeat
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
        /// An environment override, NAME=VALUE; repeat
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// A dataset input, BUCKET/KEY[:PATH]; repeat
        #[arg(long = "input", short = 'i')]
        inputs: Vec<String>,
        /// Higher runs first (-1000 to 1000)
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Where the run's summary is POSTed when it ends
        #[arg(long)]
        response_url: Option<String>,
        /// Follow the run until it ends, printing its output; exit 0 only if COMPLETE
        #[arg(long)]
        wait: bool,
    },
    /// List runs, newest first
    List {
        #[arg(long)]
        operation: Option<String>,
        #[arg(long)]
        state: Option<String>,
    },
    /// Show a run
    Get { id: String },
    /// Cancel a run
    Cancel { id: String },
    /// Run again with the same values, overriding some
    Rerun {
        id: String,
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
    },
    /// Print a run's output
    Logs {
        id: String,
        /// Keep printing while it runs, with its progress on a terminal
        #[arg(long, short = 'f')]
        follow: bool,
        /// Standard error instead of standard output
        #[arg(long)]
        stderr: bool,
    },
    /// List a run's artifacts, or download them
    Artifacts {
        id: String,
        /// Download every artifact into this directory
        #[arg(long)]
        download: Option<PathBuf>,
    },
    /// Follow a run's state until it ends
    Watch { id: String },
}

pub async fn op(args: OpArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    let json = args.conn.output == Output::Json;
    finish(op_dispatch(&client, args.command, json).await)
}

pub async fn run(args: RunArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    let json = args.conn.output == Output::Json;
    finish(run_dispatch(&client, args.command, json).await)
}

fn finish(r: Result<ExitCode, String>) -> ExitCode {
    r.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn read_document(file: &Path) -> Result<Vec<u8>, String> {
    if file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)
            .map_err(|e| format!("reading stdin: {e}"))?;
        Ok(b)
    } else {
        std::fs::read(file).map_err(|e| format!("reading {}: {e}", file.display()))
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn enc(s: &str) -> String {
    crate::cli::encode_segment(s)
}

async fn op_dispatch(client: &Client, cmd: OpCommand, json: bool) -> Result<ExitCode, String> {
    use reqwest::Method;
    let shown = match cmd {
        OpCommand::Create { file, group } => {
            let query: Vec<(&str, String)> = group.map(|g| ("group", g)).into_iter().collect();
            client
                .call(
                    Method::POST,
                    "/v1/operations",
                    &query,
                    Some(read_document(&file)?),
                )
                .await?
        }
        OpCommand::Update { id, file } => {
            client
                .call(
                    Method::PUT,
                    &format!("/v1/operations/{}", enc(&id)),
                    &[],
                    Some(read_document(&file)?),
                )
                .await?
        }
        OpCommand::Get { id, version } => {
            let query: Vec<(&str, String)> = version
                .map(|v| ("version", v.to_string()))
                .into_iter()
                .collect();
            client
                .get(&format!("/v1/operations/{}", enc(&id)), &query)
                .await?
        }
        OpCommand::Delete { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/operations/{}", enc(&id)),
                    &[],
                    None,
                )
                .await?;
            if !json {
                eprintln!("deleted operation {id}");
            }
            return Ok(ExitCode::SUCCESS);
        }
        OpCommand::List { group } => {
            let query: Vec<(&str, String)> = group.map(|g| ("group", g)).into_iter().collect();
            let list = client.get("/v1/operations", &query).await?;
            if json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list["operations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|o| {
                        vec![
                            s(&o["id"]),
                            s(&o["name"]),
                            s(&o["group"]),
                            s(&o["version"]),
                            s(&o["image"]),
                        ]
                    })
                    .collect();
                print_table(&["ID", "NAME", "GROUP", "VERSION", "IMAGE"], &rows);
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    if json {
        print_json(&shown);
    } else {
        println!(
            "{}  {} (version {}, group {})",
            s(&shown["id"]),
            s(&shown["name"]),
            s(&shown["version"]),
            s(&shown["group"])
        );
        for p in shown["parameters"].as_array().into_iter().flatten() {
            println!(
                "  {:<16} {:<8} {}",
                s(&p["name"]),
                s(&p["type"]),
                p["description"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `NAME=VALUE` pairs.
fn pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| format!("{what} {i:?} is not NAME=VALUE"))
        })
        .collect()
}

/// Parameter values as the operation declares their types (a value of an unknown
/// parameter is sent as text, for the server to refuse by name).
fn typed_params(op: &Value, given: &[(String, String)]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (name, text) in given {
        let kind = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["type"].as_str())
            .unwrap_or("string");
        let value = match kind {
            "integer" => text
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("parameter {name}: {text:?} is not an integer"))?,
            "number" => text
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .ok_or_else(|| format!("parameter {name}: {text:?} is not a number"))?,
            "boolean" => text
                .parse::<bool>()
                .map(Value::from)
                .map_err(|_| format!("parameter {name}: {text:?} is not true or false"))?,
            _ => Value::from(text.as_str()),
        };
        out.insert(name.clone(), value);
    }
    Ok(out)
}

fn dataset(spec: &str) -> Result<Value, String> {
    let (object, path) = match spec.split_once(':') {
        Some((o, p)) => (o, Some(p)),
        None => (spec, None),
    };
    let (bucket, key) = object
        .split_once('/')
        .ok_or_else(|| format!("input {spec:?} is not BUCKET/KEY[:PATH]"))?;
    Ok(json!({"bucket": bucket, "key": key, "path": path}))
}

fn print_run(run: &Value) {
    let rows = [
        ("ID", s(&run["id"])),
        (
            "OPERATION",
            format!("{} v{}", s(&run["operation"]), s(&run["version"])),
        ),
        ("STATE", s(&run["state"])),
        ("REASON", s(&run["reason"])),
        ("EXIT CODE", s(&run["exit_code"])),
        ("CREATED", s(&run["created_at"])),
        ("STARTED", s(&run["start_time"])),
        ("ENDED", s(&run["end_time"])),
        ("PARAMS", run["params"].to_string()),
    ];
    for (k, v) in rows {
        println!("{k:<10} {v}");
    }
    if let Some(d) = run["delivery"].as_object() {
        println!(
            "{:<10} {} after {} attempt(s){}",
            "SUMMARY",
            s(&d["state"]),
            s(&d["attempts"]),
            d.get("error")
                .and_then(Value::as_str)
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
}

async fn run_dispatch(client: &Client, cmd: RunCommand, json: bool) -> Result<ExitCode, String> {
    use reqwest::Method;
    match cmd {
        RunCommand::Submit {
            operation,
            params,
            env,
            inputs,
            priority,
            response_url,
            wait,
        } => {
            let op = client
                .get(&format!("/v1/operations/{}", enc(&operation)), &[])
                .await?;
            let body = json!({
                "params": typed_params(&op, &pairs(&params, "parameter")?)?,
                "env": pairs(&env, "env")?.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "inputs": inputs.iter().map(|i| dataset(i)).collect::<Result<Vec<_>, _>>()?,
                "priority": priority,
                "response_url": response_url,
            });
            let run = client
                .call(
                    Method::POST,
                    &format!("/v1/operations/{}/runs", enc(&operation)),
                    &[],
                    Some(body.to_string().into_bytes()),
                )
                .await?;
            let id = s(&run["id"]);
            if !wait {
                if json {
                    print_json(&run);
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !json {
                eprintln!("submitted run {id}");
            }
            follow_logs(client, &id, false).await
        }
        RunCommand::Rerun { id, params, env } => {
            let original = client.get(&format!("/v1/runs/{}", enc(&id)), &[]).await?;
            let op = client
                .get(
                    &format!("/v1/operations/{}", enc(&s(&original["operation_id"]))),
                    &[("version", s(&original["version"]))],
                )
                .await?;
            let body = json!({
                "params": typed_params(&op, &pairs(&params, "parameter")?)?,
                "env": pairs(&env, "env")?.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
            });
            let run = client
                .call(
                    Method::POST,
                    &format!("/v1/runs/{}/rerun", enc(&id)),
                    &[],
                    Some(body.to_string().into_bytes()),
                )
                .await?;
            if json {
                print_json(&run);
            } else {
                println!("{}", s(&run["id"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::List { operation, state } => {
            let mut query = Vec::new();
            if let Some(o) = operation {
                query.push(("operation_id", o));
            }
            if let Some(st) = state {
                query.push(("state", st));
            }
            let list = client.get("/v1/runs", &query).await?;
            if json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list["runs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        vec![
                            s(&r["id"]),
                            format!("{} v{}", s(&r["operation"]), s(&r["version"])),
                            s(&r["state"]),
                            s(&r["created_at"]),
                        ]
                    })
                    .collect();
                print_table(&["ID", "OPERATION", "STATE", "CREATED"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Get { id } => {
            let run = client.get(&format!("/v1/runs/{}", enc(&id)), &[]).await?;
            if json {
                print_json(&run);
            } else {
                print_run(&run);
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Cancel { id } => {
            let r = client
                .call(
                    Method::POST,
                    &format!("/v1/runs/{}/cancel", enc(&id)),
                    &[],
                    None,
                )
                .await?;
            if json {
                print_json(&r);
            } else {
                println!("{}", s(&r["state"]));
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Logs { id, follow, stderr } => {
            if follow {
                return follow_logs(client, &id, stderr).await;
            }
            let stream = if stderr { "stderr" } else { "stdout" };
            let resp = client
                .request(Method::GET, &format!("/v1/runs/{}/logs", enc(&id)))
                .query(&[("stream", stream)])
                .send()
                .await
                .map_err(|e| client.unreachable(e))?;
            if !resp.status().is_success() {
                return Client::answer(resp).await.map(|_| ExitCode::FAILURE);
            }
            let text = resp
                .bytes()
                .await
                .map_err(|e| format!("reading the log: {e}"))?;
            let _ = std::io::stdout().write_all(&text);
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Artifacts { id, download } => {
            let list = client
                .get(&format!("/v1/runs/{}/artifacts", enc(&id)), &[])
                .await?;
            let artifacts = list["artifacts"].as_array().cloned().unwrap_or_default();
            if let Some(dir) = download {
                for a in &artifacts {
                    let path = s(&a["path"]);
                    let dest = safe_join(&dir, &path)?;
                    let resp = client
                        .request(Method::GET, a["download"].as_str().unwrap_or_default())
                        .send()
                        .await
                        .map_err(|e| client.unreachable(e))?;
                    if !resp.status().is_success() {
                        return Client::answer(resp).await.map(|_| ExitCode::FAILURE);
                    }
                    let bytes = resp
                        .bytes()
                        .await
                        .map_err(|e| format!("downloading {path}: {e}"))?;
                    if let Some(parent) = dest.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
                    }
                    std::fs::write(&dest, &bytes)
                        .map_err(|e| format!("writing {}: {e}", dest.display()))?;
                    if !json {
                        eprintln!("{}  {} bytes", dest.display(), bytes.len());
                    }
                }
            } else if json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = artifacts
                    .iter()
                    .map(|a| vec![s(&a["path"]), s(&a["size"]), s(&a["url"])])
                    .collect();
                print_table(&["PATH", "SIZE", "URL"], &rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        RunCommand::Watch { id } => {
            let status = crate::cli::watch(client, &id, json).await?;
            if json {
                print_json(&status);
            }
            Ok(if status["state"] == "COMPLETE" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `dir/path` for an artifact path from the server, refusing one that would leave `dir`.
fn safe_join(dir: &Path, path: &str) -> Result<PathBuf, String> {
    let rel = Path::new(path);
    let ok = rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !ok || path.is_empty() {
        return Err(format!(
            "the server named an artifact {path:?} outside the directory"
        ));
    }
    Ok(dir.join(rel))
}

/// Stream a run's output to stdout until it ends, with its state changes (from the
/// event stream) on stderr when that is a terminal. Exit 0 only if it COMPLETEd.
async fn follow_logs(client: &Client, id: &str, stderr: bool) -> Result<ExitCode, String> {
    use futures_util::StreamExt;
    let stream = if stderr { "stderr" } else { "stdout" };
    let progress = std::io::stderr().is_terminal();
    let watcher = {
        let client = client.clone();
        let id = id.to_string();
        tokio::spawn(async move { crate::cli::watch(&client, &id, !progress).await })
    };
    // A connection that drops (an idle timeout during a quiet stretch) is resumed after
    // the bytes already printed, until the run has ended.
    let mut printed: u64 = 0;
    let mut out = std::io::stdout();
    loop {
        let resp = client
            .request(reqwest::Method::GET, &format!("/v1/runs/{}/logs", enc(id)))
            .query(&[
                ("stream", stream.to_string()),
                ("follow", "true".to_string()),
                ("skip", printed.to_string()),
            ])
            .send()
            .await
            .map_err(|e| client.unreachable(e))?;
        if !resp.status().is_success() {
            watcher.abort();
            return Client::answer(resp).await.map(|_| ExitCode::FAILURE);
        }
        let mut body = resp.bytes_stream();
        while let Some(Ok(chunk)) = body.next().await {
            printed += chunk.len() as u64;
            let _ = out.write_all(&chunk);
            let _ = out.flush();
        }
        let run = client.get(&format!("/v1/runs/{}", enc(id)), &[]).await?;
        if crate::cli::is_terminal_state(run["state"].as_str().unwrap_or("")) {
            break;
        }
    }
    let status = watcher
        .await
        .map_err(|e| format!("following the run failed: {e}"))??;
    Ok(if status["state"] == "COMPLETE" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
