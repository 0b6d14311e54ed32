//! `tessera plugin …`: install, list, inspect, activate, roll back and remove plugins on a
//! running server (`/v1/plugins`).

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::{Client, ConnectArgs, Output, print_table, s};

#[derive(Args)]
pub struct PluginArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Upload a component (.wasm) with its manifest; it is checked against the world the
    /// manifest claims before it is stored
    Install {
        component: PathBuf,
        /// The manifest (TOML or JSON) [default: manifest.toml beside the component]
        #[arg(long, short = 'm')]
        manifest: Option<PathBuf>,
        /// Activate it right away (in its world's default scope, or --scope)
        #[arg(long)]
        activate: bool,
        #[arg(long)]
        scope: Option<String>,
    },
    /// List installed plugins, their versions and bindings
    List,
    /// Show one plugin: versions, imports, exports, call counts and latency
    Show { name: String },
    /// Make a version serve (new calls use it at once; calls in flight finish on the old)
    Activate {
        name: String,
        version: String,
        /// The group (routers), URL scheme (filers), engine (adapters) or binding name
        /// (notifiers) [default: the world's default scope]
        #[arg(long)]
        scope: Option<String>,
        /// Plugin configuration KEY=VALUE; repeat for several (replaces the binding's)
        #[arg(long = "config")]
        config: Vec<String>,
        /// Secret NAME=VALUE the plugin may read if its manifest lists it; repeat
        #[arg(long = "secret")]
        secrets: Vec<String>,
        /// Host (host or host:port; * for any public address) the plugin may reach over HTTP; repeat
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        /// Filers: a bucket the plugin may use through the host's object store (* for
        /// every bucket); repeat
        #[arg(long = "bucket")]
        buckets: Vec<String>,
        /// Allow `*` in --allow-host or --bucket (any public host, every bucket)
        #[arg(long)]
        grant_any: bool,
        /// Notifiers: deliver only events entering this state; repeat
        #[arg(long = "on-state")]
        on_states: Vec<String>,
        /// Notifiers: deliver only events of tasks with this tag KEY=VALUE (KEY: any
        /// value); repeat
        #[arg(long = "on-tag")]
        on_tags: Vec<String>,
    },
    /// Put back what served before the last activation
    Rollback {
        name: String,
        #[arg(long)]
        scope: Option<String>,
    },
    /// Delete a version that serves nowhere
    Rm { name: String, version: String },
}

pub async fn run(args: PluginArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    match dispatch(&client, &args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn pairs(items: &[String], what: &str) -> Result<serde_json::Map<String, Value>, String> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), Value::String(v.to_string()))),
            _ => Err(format!("{what} {kv:?} is not KEY=VALUE")),
        })
        .collect()
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn dispatch(client: &Client, args: &PluginArgs) -> Result<(), String> {
    let json_out = args.conn.output == Output::Json;
    let print = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match &args.command {
        PluginCommand::Install {
            component,
            manifest,
            activate,
            scope,
        } => {
            let manifest = manifest.clone().unwrap_or_else(|| {
                component
                    .parent()
                    .map(|d| d.join("manifest.toml"))
                    .unwrap_or_else(|| PathBuf::from("manifest.toml"))
            });
            let text = std::fs::read_to_string(&manifest)
                .map_err(|e| format!("reading the manifest {}: {e}", manifest.display()))?;
            let bytes = std::fs::read(component)
                .map_err(|e| format!("reading {}: {e}", component.display()))?;
            let installed = client.upload_plugin(text, bytes).await?;
            let (name, version) = (s(&installed["name"]), s(&installed["version"]));
            let bound = if *activate {
                let body = json!({ "scope": scope });
                Some(
                    client
                        .call(
                            reqwest::Method::POST,
                            &format!(
                                "/v1/plugins/{}/versions/{}/activate",
                                path_segment(&name),
                                path_segment(&version)
                            ),
                            &[],
                            Some(body.to_string().into_bytes()),
                        )
                        .await?,
                )
            } else {
                None
            };
            if json_out {
                print(&json!({ "installed": installed, "binding": bound }));
            } else {
                println!(
                    "installed {name}@{version} ({} world, {} bytes, compiled in {:.0} ms)",
                    s(&installed["world"]),
                    s(&installed["size_bytes"]),
                    installed["compile_ms"].as_f64().unwrap_or(0.0)
                );
                if let Some(b) = bound {
                    println!("active in {} scope {:?}", s(&b["world"]), s(&b["scope"]));
                }
            }
        }
        PluginCommand::List => {
            let list = client.get("/v1/plugins", &[]).await?;
            if json_out {
                print(&list);
                return Ok(());
            }
            let mut rows = Vec::new();
            for p in list["plugins"].as_array().into_iter().flatten() {
                let bindings = p["bindings"].as_array().cloned().unwrap_or_default();
                for v in p["versions"].as_array().into_iter().flatten() {
                    let serving: Vec<String> = bindings
                        .iter()
                        .filter(|b| b["version"] == v["version"])
                        .map(|b| {
                            let scope = s(&b["scope"]);
                            let scope = if scope.is_empty() { "*".into() } else { scope };
                            if b["default"].as_bool() == Some(true) {
                                format!("{scope} (default)")
                            } else {
                                scope
                            }
                        })
                        .collect();
                    // What `*` grants anywhere this version serves.
                    let mut grants: Vec<&str> = Vec::new();
                    for b in bindings.iter().filter(|b| b["version"] == v["version"]) {
                        let has_any = |key: &str| {
                            b[key]
                                .as_array()
                                .is_some_and(|a| a.iter().any(|x| x == "*"))
                        };
                        if has_any("allow_hosts") && !grants.contains(&"any host") {
                            grants.push("any host");
                        }
                        if has_any("buckets") && !grants.contains(&"any bucket") {
                            grants.push("any bucket");
                        }
                    }
                    let calls: u64 = v["calls"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| c["calls"].as_u64().unwrap_or(0))
                        .sum();
                    rows.push(vec![
                        s(&p["name"]),
                        s(&v["version"]),
                        s(&p["world"]),
                        s(&v["origin"]),
                        if serving.is_empty() {
                            "-".into()
                        } else {
                            serving.join(",")
                        },
                        if grants.is_empty() {
                            "-".into()
                        } else {
                            grants.join(",")
                        },
                        calls.to_string(),
                    ]);
                }
            }
            print_table(
                &[
                    "NAME",
                    "VERSION",
                    "WORLD",
                    "ORIGIN",
                    "ACTIVE IN",
                    "GRANTS",
                    "CALLS",
                ],
                &rows,
            );
        }
        PluginCommand::Show { name } => {
            let p = client
                .get(&format!("/v1/plugins/{}", path_segment(name)), &[])
                .await?;
            if json_out {
                print(&p);
                return Ok(());
            }
            println!("{} ({} world)", s(&p["name"]), s(&p["world"]));
            for b in p["bindings"].as_array().into_iter().flatten() {
                let scope = s(&b["scope"]);
                println!(
                    "  active: {}@{} in scope {}{}{}",
                    s(&b["plugin"]),
                    s(&b["version"]),
                    if scope.is_empty() {
                        "* (every group)".into()
                    } else {
                        scope
                    },
                    b["rollback_to"]
                        .as_str()
                        .map(|r| format!(", rollback to {r}"))
                        .unwrap_or_default(),
                    b["error"]
                        .as_str()
                        .map(|e| format!("\n    NOT SERVING: {e}"))
                        .unwrap_or_default(),
                );
            }
            for v in p["versions"].as_array().into_iter().flatten() {
                println!(
                    "  version {}: {} bytes, sha256 {}, {} {}",
                    s(&v["version"]),
                    s(&v["size_bytes"]),
                    s(&v["sha256"]),
                    s(&v["origin"]),
                    s(&v["installed_at"])
                );
                let list = |key: &str| {
                    v[key]
                        .as_array()
                        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default()
                };
                println!("    imports: {}", list("imports"));
                println!("    exports: {}", list("exports"));
                for c in v["calls"].as_array().into_iter().flatten() {
                    println!(
                        "    calls: {} ({} errors {}), p50 {} µs, p99 {} µs",
                        s(&c["calls"]),
                        s(&c["errors"]),
                        c["errors_by_kind"],
                        c["p50_us"]
                            .as_f64()
                            .map_or("-".into(), |x| format!("{x:.1}")),
                        c["p99_us"]
                            .as_f64()
                            .map_or("-".into(), |x| format!("{x:.1}")),
                    );
                }
            }
        }
        PluginCommand::Activate {
            name,
            version,
            scope,
            config,
            secrets,
            allow_hosts,
            buckets,
            grant_any,
            on_states,
            on_tags,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(scope) = scope {
                body.insert("scope".into(), Value::String(scope.clone()));
            }
            if *grant_any {
                body.insert("grant_any".into(), Value::Bool(true));
            }
            let settings_given = !config.is_empty()
                || !secrets.is_empty()
                || !allow_hosts.is_empty()
                || !buckets.is_empty()
                || !on_states.is_empty()
                || !on_tags.is_empty();
            if settings_given {
                body.insert("config".into(), Value::Object(pairs(config, "--config")?));
                body.insert("secrets".into(), Value::Object(pairs(secrets, "--secret")?));
                body.insert("allow_hosts".into(), json!(allow_hosts));
                body.insert("buckets".into(), json!(buckets));
                if !on_states.is_empty() || !on_tags.is_empty() {
                    let tags: serde_json::Map<String, Value> = on_tags
                        .iter()
                        .map(|t| match t.split_once('=') {
                            Some((k, v)) => (k.to_string(), Value::String(v.to_string())),
                            None => (t.clone(), Value::String(String::new())),
                        })
                        .collect();
                    body.insert(
                        "filter".into(),
                        json!({ "states": on_states, "tags": tags }),
                    );
                }
            }
            let b = client
                .call(
                    reqwest::Method::POST,
                    &format!(
                        "/v1/plugins/{}/versions/{}/activate",
                        path_segment(name),
                        path_segment(version)
                    ),
                    &[],
                    Some(Value::Object(body).to_string().into_bytes()),
                )
                .await?;
            if json_out {
                print(&b);
            } else {
                println!(
                    "{}@{} is active in {} scope {:?}",
                    s(&b["plugin"]),
                    s(&b["version"]),
                    s(&b["world"]),
                    s(&b["scope"])
                );
            }
        }
        PluginCommand::Rollback { name, scope } => {
            let b = client
                .call(
                    reqwest::Method::POST,
                    &format!("/v1/plugins/{}/rollback", path_segment(name)),
                    &[],
                    Some(json!({ "scope": scope }).to_string().into_bytes()),
                )
                .await?;
            if json_out {
                print(&b);
            } else {
                println!(
                    "rolled back: {}@{} is active in {} scope {:?}",
                    s(&b["plugin"]),
                    s(&b["version"]),
                    s(&b["world"]),
                    s(&b["scope"])
                );
            }
        }
        PluginCommand::Rm { name, version } => {
            client
                .call(
                    reqwest::Method::DELETE,
                    &format!(
                        "/v1/plugins/{}/versions/{}",
                        path_segment(name),
                        path_segment(version)
                    ),
                    &[],
                    None,
                )
                .await?;
            if json_out {
                print(&json!({ "deleted": format!("{name}@{version}") }));
            } else {
                println!("deleted {name}@{version}");
            }
        }
    }
    Ok(())
}
