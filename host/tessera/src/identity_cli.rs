//! `tessera login`, `logout`, `whoami` and `tessera admin user|group|token …`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use crate::cli::{Client, ConnectArgs, Output, print_table, s};
use crate::credentials;

#[derive(Args)]
pub struct LoginArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    /// Your username (asked for when not given)
    #[arg(long, short = 'u')]
    username: Option<String>,
    /// Read the password from the first line of stdin instead of asking for it
    #[arg(long)]
    password_stdin: bool,
    /// Keep a token you already have (a personal access token), read from stdin
    #[arg(long, conflicts_with_all = ["username", "password_stdin"])]
    with_token: bool,
    /// Get a token from the server's OpenID provider with the client-credentials grant
    /// as this client (its secret read from stdin)
    #[arg(long, conflicts_with_all = ["username", "password_stdin", "with_token"])]
    oidc_client_id: Option<String>,
}

#[derive(Args)]
pub struct SessionArgs {
    #[command(flatten)]
    conn: ConnectArgs,
}

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Users (instance admins)
    #[command(subcommand)]
    User(UserCommand),
    /// Groups and their members
    #[command(subcommand)]
    Group(GroupCommand),
    /// Your personal access tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log, newest first (instance admins)
    Audit {
        /// Only requests of this user
        #[arg(long)]
        actor: Option<String>,
        /// At most this many entries
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// List users
    List,
    /// Create a user (with a personal group of the same name)
    Create {
        name: String,
        /// Read its password from the first line of stdin (without: token login only)
        #[arg(long)]
        password_stdin: bool,
        /// Make it an instance admin
        #[arg(long)]
        instance_admin: bool,
    },
    /// Show a user and its groups
    Show { name: String },
    /// Set a user's password from the first line of stdin (this ends its sessions)
    Password { name: String },
    /// Revoke every token of a user at once
    RevokeTokens { name: String },
    /// Delete a user and its personal group
    Delete { name: String },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List the groups you see
    List,
    /// Create a shared group (instance admins)
    Create { name: String },
    /// Show a group and its members
    Show { name: String },
    /// Add a member or change its role (read, write or admin)
    SetMember {
        group: String,
        user: String,
        #[arg(long)]
        role: String,
    },
    /// Take a member out of a group
    RemoveMember { group: String, user: String },
    /// Set a group's limits (instance admins); none given removes them
    Quota {
        group: String,
        /// Tasks waiting in the queue (a create beyond it is refused)
        #[arg(long)]
        max_queued: Option<u32>,
        /// Tasks started and not ended (beyond it tasks wait)
        #[arg(long)]
        max_running: Option<u32>,
        /// CPU cores asked for by the started tasks together
        #[arg(long)]
        max_cpu_cores: Option<u32>,
        /// Memory asked for by the started tasks together, GB (GiB, as TES ram_gb)
        #[arg(long)]
        max_ram_gb: Option<f64>,
    },
    /// Delete a shared group (instance admins)
    Delete { name: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// List your personal access tokens
    List,
    /// Make a personal access token (printed once)
    Create {
        name: String,
        /// Days until it expires; 0: never [default: 90]
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// It can read but not change anything
        #[arg(long)]
        read_only: bool,
    },
    /// Revoke one of your tokens
    Revoke { name: String },
    /// Revoke all your tokens and access tokens at once
    RevokeAll,
}

fn finish(r: Result<(), String>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One line from stdin, without its newline.
fn stdin_line() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading stdin: {e}"))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Ask on the terminal without echoing what is typed.
fn ask_hidden(prompt: &str) -> Result<String, String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err("stdin is not a terminal: use --password-stdin".into());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios the call fills in.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::tcgetattr(0, &mut term) } == 0;
    if got {
        let mut quiet = term;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &quiet) };
    }
    let line = stdin_line();
    if got {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &term) };
    }
    eprintln!();
    line
}

fn ask(prompt: &str) -> Result<String, String> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    stdin_line()
}

pub async fn login(args: LoginArgs) -> ExitCode {
    finish(login_inner(args).await)
}

async fn login_inner(args: LoginArgs) -> Result<(), String> {
    let client = Client::new(&args.conn);
    let server = client.base().to_string();
    let (token, expires_at) = if args.with_token {
        (stdin_line()?.trim().to_string(), None)
    } else if let Some(client_id) = &args.oidc_client_id {
        oidc_client_credentials(&client, client_id, &stdin_line()?).await?
    } else {
        let username = match args.username {
            Some(u) => u,
            None => ask("username: ")?,
        };
        let password = if args.password_stdin {
            stdin_line()?
        } else {
            ask_hidden("password: ")?
        };
        let answer = client
            .call(
                reqwest::Method::POST,
                "/v1/auth/token",
                &[],
                Some(
                    serde_json::to_vec(&json!({"username": username, "password": password}))
                        .map_err(|e| e.to_string())?,
                ),
            )
            .await?;
        (
            s(&answer["access_token"]),
            expiry_in(answer["expires_in"].as_i64()),
        )
    };
    if token.is_empty() {
        return Err("no token".into());
    }
    // Ask the server who the token is, so a wrong token is never kept.
    let me = client
        .with_token(token.clone())
        .call(reqwest::Method::GET, "/v1/auth/whoami", &[], None)
        .await?;
    let username = s(&me["username"]);
    let path = credentials::save(
        &server,
        credentials::Credential {
            token,
            username: username.clone(),
            expires_at: expires_at.clone(),
        },
    )?;
    eprintln!(
        "logged in to {server} as {username}{}; the token is kept in {}",
        expires_at
            .map(|e| format!(" until {e}"))
            .unwrap_or_default(),
        path.display()
    );
    Ok(())
}

fn expiry_in(secs: Option<i64>) -> Option<String> {
    secs.map(|s| {
        tessera_core::time_fmt::format_rfc3339(
            time::OffsetDateTime::now_utc() + time::Duration::seconds(s),
        )
    })
}

/// A token from the server's OpenID provider (client-credentials grant): the provider
/// the server names, its token endpoint from its discovery document.
async fn oidc_client_credentials(
    client: &Client,
    client_id: &str,
    secret: &str,
) -> Result<(String, Option<String>), String> {
    let providers = client
        .call(reqwest::Method::GET, "/v1/auth/providers", &[], None)
        .await?;
    let issuer = providers["oidc"]["issuer"]
        .as_str()
        .ok_or("this server accepts no OpenID provider's tokens")?
        .trim_end_matches('/')
        .to_string();
    let http = reqwest::Client::new();
    let discovery = format!("{issuer}/.well-known/openid-configuration");
    let doc: Value = http
        .get(&discovery)
        .send()
        .await
        .map_err(|e| format!("{discovery}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{discovery}: {e}"))?;
    let endpoint = doc["token_endpoint"]
        .as_str()
        .ok_or_else(|| format!("{discovery} names no token_endpoint"))?;
    let resp = http
        .post(endpoint)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!(
            "the OpenID provider refused ({status}): {}",
            body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .unwrap_or("no reason given")
        ));
    }
    let token = body["access_token"]
        .as_str()
        .ok_or("the OpenID provider answered without an access_token")?;
    Ok((token.to_string(), expiry_in(body["expires_in"].as_i64())))
}

pub async fn logout(args: SessionArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    finish(match credentials::remove(client.base()) {
        Ok(true) => {
            eprintln!("logged out of {}", client.base());
            Ok(())
        }
        Ok(false) => Err(format!("no token was kept for {}", client.base())),
        Err(e) => Err(e),
    })
}

pub async fn whoami(args: SessionArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    finish(
        async {
            let me = client
                .call(reqwest::Method::GET, "/v1/auth/whoami", &[], None)
                .await?;
            if args.conn.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&me).unwrap_or_default());
                return Ok(());
            }
            let mut flags = Vec::new();
            if me["instance_admin"] == true {
                flags.push("instance admin");
            }
            if me["read_only"] == true {
                flags.push("read-only token");
            }
            println!(
                "{}{}",
                s(&me["username"]),
                if flags.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", flags.join(", "))
                }
            );
            let rows: Vec<Vec<String>> = me["groups"]
                .as_array()
                .map(|g| {
                    g.iter()
                        .map(|g| vec![s(&g["group"]), s(&g["role"])])
                        .collect()
                })
                .unwrap_or_default();
            print_table(&["GROUP", "ROLE"], &rows);
            Ok(())
        }
        .await,
    )
}

fn path_segment(name: &str) -> Result<&str, String> {
    tessera_core::identity::check_name(name)?;
    Ok(name)
}

pub async fn admin(args: AdminArgs) -> ExitCode {
    let client = Client::new(&args.conn);
    let json_out = args.conn.output == Output::Json;
    finish(admin_inner(&client, args.command, json_out).await)
}

async fn admin_inner(client: &Client, command: AdminCommand, json_out: bool) -> Result<(), String> {
    use reqwest::Method;
    let body = |v: Value| serde_json::to_vec(&v).map_err(|e| e.to_string());
    let print = |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    let list = |v: &Value, key: &str, header: &[&str], cols: &[&str]| {
        if json_out {
            print(v);
            return;
        }
        let rows: Vec<Vec<String>> = v[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|i| cols.iter().map(|c| s(&i[*c])).collect())
                    .collect()
            })
            .unwrap_or_default();
        print_table(header, &rows);
    };
    match command {
        AdminCommand::User(c) => match c {
            UserCommand::List => {
                let v = client
                    .call(Method::GET, "/v1/admin/users", &[], None)
                    .await?;
                list(
                    &v,
                    "users",
                    &["NAME", "INSTANCE ADMIN", "PASSWORD LOGIN"],
                    &["name", "instance_admin", "password_login"],
                );
            }
            UserCommand::Create {
                name,
                password_stdin,
                instance_admin,
            } => {
                let password = if password_stdin {
                    Some(stdin_line()?)
                } else {
                    None
                };
                let v = client
                    .call(
                        Method::POST,
                        "/v1/admin/users",
                        &[],
                        Some(body(json!({
                            "name": name,
                            "password": password,
                            "instance_admin": instance_admin
                        }))?),
                    )
                    .await?;
                if json_out {
                    print(&v);
                } else {
                    eprintln!("created user {name} with its personal group {name}");
                }
            }
            UserCommand::Show { name } => {
                let v = client
                    .call(
                        Method::GET,
                        &format!("/v1/admin/users/{}", path_segment(&name)?),
                        &[],
                        None,
                    )
                    .await?;
                print(&v);
            }
            UserCommand::Password { name } => {
                let password = stdin_line()?;
                client
                    .call(
                        Method::PUT,
                        &format!("/v1/admin/users/{}/password", path_segment(&name)?),
                        &[],
                        Some(body(json!({ "password": password }))?),
                    )
                    .await?;
                eprintln!("password of {name} set; its earlier access tokens no longer work");
            }
            UserCommand::RevokeTokens { name } => {
                client
                    .call(
                        Method::POST,
                        &format!("/v1/admin/users/{}/revoke-tokens", path_segment(&name)?),
                        &[],
                        None,
                    )
                    .await?;
                eprintln!("every token of {name} is revoked");
            }
            UserCommand::Delete { name } => {
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/admin/users/{}", path_segment(&name)?),
                        &[],
                        None,
                    )
                    .await?;
                eprintln!("deleted user {name}");
            }
        },
        AdminCommand::Group(c) => match c {
            GroupCommand::List => {
                let v = client.call(Method::GET, "/v1/groups", &[], None).await?;
                list(
                    &v,
                    "groups",
                    &["NAME", "YOUR ROLE", "PERSONAL OF"],
                    &["name", "role", "personal_of"],
                );
            }
            GroupCommand::Create { name } => {
                client
                    .call(
                        Method::POST,
                        "/v1/groups",
                        &[],
                        Some(body(json!({ "name": name }))?),
                    )
                    .await?;
                eprintln!("created group {name}");
            }
            GroupCommand::Show { name } => {
                let v = client
                    .call(
                        Method::GET,
                        &format!("/v1/groups/{}", path_segment(&name)?),
                        &[],
                        None,
                    )
                    .await?;
                list(&v, "members", &["USER", "ROLE"], &["user", "role"]);
            }
            GroupCommand::SetMember { group, user, role } => {
                client
                    .call(
                        Method::PUT,
                        &format!(
                            "/v1/groups/{}/members/{}",
                            path_segment(&group)?,
                            path_segment(&user)?
                        ),
                        &[],
                        Some(body(json!({ "role": role.to_ascii_lowercase() }))?),
                    )
                    .await?;
                eprintln!("{user} is now {role} in {group}");
            }
            GroupCommand::RemoveMember { group, user } => {
                client
                    .call(
                        Method::DELETE,
                        &format!(
                            "/v1/groups/{}/members/{}",
                            path_segment(&group)?,
                            path_segment(&user)?
                        ),
                        &[],
                        None,
                    )
                    .await?;
                eprintln!("{user} is no longer in {group}");
            }
            GroupCommand::Quota {
                group,
                max_queued,
                max_running,
                max_cpu_cores,
                max_ram_gb,
            } => {
                let mut quota = serde_json::Map::new();
                for (k, v) in [
                    ("max_queued", max_queued.map(Value::from)),
                    ("max_running", max_running.map(Value::from)),
                    ("max_cpu_cores", max_cpu_cores.map(Value::from)),
                    ("max_ram_gb", max_ram_gb.map(Value::from)),
                ] {
                    if let Some(v) = v {
                        quota.insert(k.to_string(), v);
                    }
                }
                let v = client
                    .call(
                        Method::PUT,
                        &format!("/v1/groups/{}/quota", path_segment(&group)?),
                        &[],
                        Some(body(Value::Object(quota))?),
                    )
                    .await?;
                if json_out {
                    print(&v);
                } else if v.as_object().is_some_and(|o| o.is_empty()) {
                    eprintln!("{group} has no limits now");
                } else {
                    eprintln!("{group}'s limits: {v}");
                }
            }
            GroupCommand::Delete { name } => {
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/groups/{}", path_segment(&name)?),
                        &[],
                        None,
                    )
                    .await?;
                eprintln!("deleted group {name}");
            }
        },
        AdminCommand::Audit { actor, limit } => {
            let mut query = vec![("page_size", limit.to_string())];
            if let Some(a) = actor {
                query.push(("actor", a));
            }
            let v = client
                .call(Method::GET, "/v1/admin/audit", &query, None)
                .await?;
            list(
                &v,
                "entries",
                &["TIME", "ACTOR", "METHOD", "ACTION", "OBJECT", "STATUS"],
                &["time", "actor", "method", "action", "object", "status"],
            );
        }
        AdminCommand::Token(c) => match c {
            TokenCommand::List => {
                let v = client
                    .call(Method::GET, "/v1/auth/tokens", &[], None)
                    .await?;
                list(
                    &v,
                    "tokens",
                    &["NAME", "READ ONLY", "EXPIRES", "CREATED"],
                    &["name", "read_only", "expires_at", "created_at"],
                );
            }
            TokenCommand::Create {
                name,
                expires_in_days,
                read_only,
            } => {
                let v = client
                    .call(
                        Method::POST,
                        "/v1/auth/tokens",
                        &[],
                        Some(body(json!({
                            "name": name,
                            "expires_in_days": expires_in_days,
                            "read_only": read_only
                        }))?),
                    )
                    .await?;
                if json_out {
                    print(&v);
                } else {
                    // The token alone on stdout (for `$(…)`); the rest on stderr.
                    println!("{}", s(&v["token"]));
                    let expires = v["expires_at"].as_str().unwrap_or("never");
                    eprintln!("token {name} (expires: {expires}); it is shown only this once");
                }
            }
            TokenCommand::Revoke { name } => {
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/auth/tokens/{}", path_segment(&name)?),
                        &[],
                        None,
                    )
                    .await?;
                eprintln!("revoked token {name}");
            }
            TokenCommand::RevokeAll => {
                client
                    .call(Method::POST, "/v1/auth/tokens/revoke-all", &[], None)
                    .await?;
                eprintln!("every token of yours is revoked; log in again");
            }
        },
    }
    Ok(())
}
