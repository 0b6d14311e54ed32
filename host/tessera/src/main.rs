//! `tessera`: the server (`tessera serve`) and a client for it (`tessera task …`).

mod cli;
mod config;
mod credentials;
mod data_cli;
mod data_dir;
mod http_server;
mod identity_cli;
mod operator_cli;
mod plugin_cli;
mod run_cli;
mod stage_cli;

/// The plugins built into this binary (see build.rs).
mod builtins {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

use clap::{Parser, Subcommand};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: task and workflow execution (GA4GH TES v1.1.0 on Docker)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: TES API on Docker with an embedded store.
    Serve(Box<config::ServeArgs>),
    /// Submit, inspect, list, cancel tasks and read their logs on a running server.
    Task(cli::TaskArgs),
    /// Operations: named container images with typed parameters (the Task API).
    Op(run_cli::OpArgs),
    /// Runs of operations: submit, list, follow, cancel, rerun, logs and artifacts.
    Run(run_cli::RunArgs),
    /// Install, list, inspect, activate, roll back and remove plugins on a running server.
    Plugin(plugin_cli::PluginArgs),
    /// Put, get, list and remove objects in the server's object store (s3:// URLs).
    Data(data_cli::DataArgs),
    /// Log in to a server (username and password, or a token from stdin) and keep the
    /// token for the other commands.
    Login(identity_cli::LoginArgs),
    /// Forget the token kept for a server.
    Logout(identity_cli::SessionArgs),
    /// Who the server takes you for: your user, groups and roles.
    Whoami(identity_cli::SessionArgs),
    /// Users, groups and your personal access tokens.
    Admin(identity_cli::AdminArgs),
    /// Inside a task's Kubernetes pod: stage its inputs, run an executor, stage its
    /// outputs (the server's Jobs run these; not for use by hand).
    #[command(hide = true)]
    Stage(stage_cli::StageArgs),
    /// Kubernetes: reconcile Task, CronTask, Agent and TesseraConfig resources into a
    /// server (`run`), or print their CRDs (`crds`).
    Operator(operator_cli::OperatorArgs),
    /// Print the OpenAPI 3.1 document of the APIs (what a server serves at
    /// /v1/openapi.json), e.g. to generate a client.
    Openapi,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One TLS provider for every client that asks rustls for the process default (the
    // Kubernetes client): ring, whatever other crates' features turn on.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if !matches!(cli.command, Command::Serve(_)) {
        // A client command whose reader goes away (`tessera task get ID | head -3`) ends
        // quietly, as other command-line tools do, instead of panicking on a broken
        // pipe. The server keeps Rust's default (SIGPIPE ignored): its sockets report
        // EPIPE as an error.
        // SAFETY: setting a signal's disposition to the default before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Serve(args) => match runtime.block_on(serve(*args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Task(args) => runtime.block_on(cli::run(args)),
        Command::Plugin(args) => runtime.block_on(plugin_cli::run(args)),
        Command::Op(args) => runtime.block_on(run_cli::op(args)),
        Command::Run(args) => runtime.block_on(run_cli::run(args)),
        Command::Data(args) => runtime.block_on(data_cli::run(args)),
        Command::Login(args) => runtime.block_on(identity_cli::login(args)),
        Command::Logout(args) => runtime.block_on(identity_cli::logout(args)),
        Command::Whoami(args) => runtime.block_on(identity_cli::whoami(args)),
        Command::Admin(args) => runtime.block_on(identity_cli::admin(args)),
        Command::Stage(args) => runtime.block_on(stage_cli::run(args)),
        Command::Operator(args) => runtime.block_on(operator_cli::run(args)),
        Command::Openapi => {
            println!("{}", tessera_api::openapi_json());
            ExitCode::SUCCESS
        }
    }
}

pub(crate) fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("TESSERA_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,wasmtime_wasi_http=warn,wasmtime_wasi=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

async fn serve(args: config::ServeArgs) -> Result<(), String> {
    let cfg = config::Config::load(args)?;
    init_tracing(cfg.log_json);

    let data_dir = data_dir::prepare(&cfg.data_dir)?;
    std::fs::create_dir_all(&cfg.work_dir)
        .map_err(|e| format!("creating {}: {e}", cfg.work_dir.display()))?;
    let work_dir = std::fs::canonicalize(&cfg.work_dir)
        .map_err(|e| format!("the work directory {}: {e}", cfg.work_dir.display()))?;

    let tls = match &cfg.tls {
        Some((cert, key)) => Some(http_server::tls_acceptor(cert, key)?),
        None => None,
    };

    // The instance admin's token: --auth-token, or <data_dir>/api-token (made on first
    // start). Either is registered as one of its personal access tokens.
    let bootstrap_token = if cfg.no_auth {
        tracing::warn!(
            "authentication is OFF (--no-auth): anyone who can reach the port acts as the \
             instance admin and can run containers"
        );
        None
    } else {
        Some(match &cfg.auth_token {
            Some(t) => (t.clone(), "configured".to_string()),
            None => (
                load_or_create_token(&data_dir.join("api-token"))?,
                String::new(),
            ),
        })
    };
    let signing_key = load_or_create_signing_key(&cfg.signing_key)?;

    let mut file_roots = Vec::new();
    for dir in &cfg.allow_dirs {
        let real = std::fs::canonicalize(dir)
            .map_err(|e| format!("allowed directory {}: {e}", dir.display()))?;
        file_roots.push(real);
    }
    let database = tessera_store::sqlite_file(&cfg.database_url)
        .map_err(|e| format!("the database URL: {e}"))?
        .map(|db| {
            // The file may not exist yet: its directory says where it will be.
            let dir = db.parent().filter(|d| !d.as_os_str().is_empty());
            match dir.and_then(|d| std::fs::canonicalize(d).ok()) {
                Some(real) => real.join(db.file_name().unwrap_or_default()),
                None => db,
            }
        });
    data_dir::check_allowed_dirs(&data_dir, &work_dir, database.as_deref(), &file_roots)?;

    let store = tessera_store::Store::connect(&cfg.database_url)
        .await
        .map_err(|e| {
            format!(
                "opening the store at {}: {e}",
                redact_url(&cfg.database_url)
            )
        })?;
    tracing::info!(store = %redact_url(&cfg.database_url), "store ready");

    let runtime =
        tessera_plugin_runtime::PluginRuntime::new(tessera_plugin_runtime::RuntimeConfig {
            cache_dir: Some(data_dir.join("plugin-cache")),
            max_router_timeout: cfg.max_router_timeout,
            max_timeout: cfg.max_plugin_timeout,
            ..tessera_plugin_runtime::RuntimeConfig::default()
        })
        .map_err(|e| e.to_string())?;
    let objects = open_object_store(&cfg, &data_dir)?;
    let registry = tessera_registry::Registry::open(
        store.clone(),
        runtime,
        builtins::BUILTINS,
        Some(objects.clone()),
        default_bindings(&cfg, &load_or_create_webhook_key(&cfg.webhook_key)?),
    )
    .await
    .map_err(|e| format!("loading plugins: {e}"))?;

    // This server's identity on the store and the Docker engine, stable across restarts:
    // a restarted server resumes its own tasks at once, others only after their leases.
    let instance = load_or_create_instance_id(&data_dir.join("instance-id"))?;
    let bootstrap_name = match &bootstrap_token {
        Some((_, name)) if !name.is_empty() => name.clone(),
        // Each server's own api-token file: servers sharing a store keep theirs apart.
        _ => format!("api-token-{}", instance.to_ascii_lowercase()),
    };
    tessera_api::auth::bootstrap(
        &store,
        bootstrap_token
            .as_ref()
            .map(|(token, _)| tessera_api::auth::BootstrapToken {
                name: &bootstrap_name,
                token,
            }),
    )
    .await
    .map_err(|e| format!("setting up the instance admin: {e}"))?;
    let lease = tessera_store::Lease {
        owner: instance.clone(),
        ttl: cfg.task_lease,
    };
    tokio::spawn(registry.clone().run_notifiers(lease.clone()));

    use tessera_core::tes::backend_parameter;
    let targets = cfg
        .targets
        .iter()
        .zip(&cfg.target_isolation)
        .map(|(t, isolation)| tessera_runner::TargetConfig {
            spec: tessera_core::routing::TargetSpec {
                name: t.name.clone(),
                tags: t.tags.clone(),
                groups: t.groups.clone(),
            },
            slots: t.slots,
            cpu_cores: t.cpu_cores,
            ram_bytes: t.ram_gb.map(tessera_core::units::gb_to_bytes),
            isolation: isolation.clone(),
            job_executor: (t.kubernetes == Some(true)).then_some(0),
            pending_timeout: cfg
                .kubernetes
                .as_ref()
                .map_or(Duration::from_secs(300), |k| k.pending_timeout),
        })
        .collect::<Vec<_>>();
    let kubernetes: Option<std::sync::Arc<dyn tessera_executor::job::JobExecutor>> =
        match &cfg.kubernetes {
            Some(k) if targets.iter().any(|t| t.job_executor.is_some()) => {
                let mut settings = k.settings.clone();
                settings.instance = instance.to_ascii_lowercase();
                settings.object_store_secret = cfg
                    .s3
                    .as_ref()
                    .map(stage_cli::PortableObjectStore::of)
                    .map(|o| serde_json::to_string(&o))
                    .transpose()
                    .map_err(|e| e.to_string())?;
                let exec = tessera_kube::KubeExecutor::connect(settings)
                    .await
                    .map_err(|e| format!("the Kubernetes executor: {e}"))?;
                Some(std::sync::Arc::new(exec))
            }
            _ => None,
        };
    let executor: Option<std::sync::Arc<dyn tessera_executor::Executor>> = if cfg.executor_docker {
        Some(std::sync::Arc::new(
            tessera_docker::DockerExecutor::connect(&instance, cfg.docker.clone())
                .map_err(|e| format!("the Docker executor: {e}"))?,
        ))
    } else {
        None
    };
    let runner = tessera_runner::Runner::new(
        store,
        tessera_runner::RunnerConfig {
            work_dir,
            max_concurrent_tasks: cfg.max_concurrent_tasks,
            log_tail_bytes: cfg.log_tail_bytes,
            file_roots: file_roots.clone(),
            log_flush_interval: Duration::from_millis(500),
            targets,
            route_tag_keys: cfg.route_tag_keys.clone(),
            isolation: cfg.isolation.clone(),
            max_run_time: cfg.max_run_time,
            lease,
        },
        executor,
        std::sync::Arc::new(registry.clone()),
        std::sync::Arc::new(registry.clone()),
    );
    runner.set_job_executors(kubernetes.into_iter().collect());
    runner.start();

    let policy = tessera_core::validate::Policy {
        file_roots,
        backend_parameters: vec![
            backend_parameter::NETWORK.into(),
            backend_parameter::MAX_RUN_TIME.into(),
        ],
        backend_parameter_values: vec![(
            backend_parameter::NETWORK.into(),
            vec!["bridge".into(), "none".into()],
        )],
        max_run_time_cap: Some(cfg.max_run_time_cap),
        // Inline content shares the body limit; keep room for the rest of the document.
        max_content_bytes: cfg.max_body_bytes.saturating_sub(64 * 1024).max(128 * 1024),
        max_cpu_cores: None,
        max_ram_gb: None,
        // Filled per request from the bound filers.
        filer_schemes: Vec::new(),
    };
    let secrets_key = std::sync::Arc::new(load_or_create_secrets_key(&cfg.secrets_key)?);
    runner.set_secrets(std::sync::Arc::new(tessera_api::agents::SealedSecrets {
        store: runner.store().clone(),
        key: secrets_key.clone(),
    }));
    let state = tessera_api::AppState::new(
        runner,
        tessera_api::ApiConfig {
            auth: tessera_api::auth::AuthConfig {
                enabled: !cfg.no_auth,
                signing_key: std::sync::Arc::new(signing_key),
                access_token_lifetime: cfg.access_token_lifetime,
                group_tag: cfg.group_tag.clone(),
                oidc: cfg.oidc.clone(),
            },
            audit_retention: cfg.audit_retention,
            max_body_bytes: cfg.max_body_bytes,
            policy,
            secrets_key,
            retention: cfg.retention,
        },
        registry,
        objects,
    )?;
    let app = tessera_api::router(state.clone());
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", cfg.listen))?;
    tracing::info!(
        listen = %cfg.listen,
        tls = tls.is_some(),
        data_dir = %data_dir.display(),
        max_concurrent_tasks = cfg.max_concurrent_tasks,
        executor = if cfg.executor_docker { "docker" } else { "none" },
        token_file = %if cfg.no_auth || cfg.auth_token.is_some() { "-".to_string() } else { data_dir.join("api-token").display().to_string() },
        "tessera is serving"
    );
    http_server::serve(listener, app, cfg.http.clone(), tls, shutdown_signal()).await;
    state.audit().flush().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!(
        "shutting down; running tasks continue in Docker and are resumed on the next start"
    );
}

/// The object store behind `s3://` URLs and the data API: the configured S3 service, or
/// the embedded store in `<data_dir>/objects`.
fn open_object_store(
    cfg: &config::Config,
    data_dir: &Path,
) -> Result<std::sync::Arc<dyn tessera_objstore::ObjectStore>, String> {
    let store: std::sync::Arc<dyn tessera_objstore::ObjectStore> = match &cfg.s3 {
        Some(s3) => {
            let client =
                tessera_s3::S3Client::new(s3.clone()).map_err(|e| format!("the S3 store: {e}"))?;
            std::sync::Arc::new(
                tessera_s3::BlockingS3::new(client, tokio::runtime::Handle::current())
                    .map_err(|e| format!("the S3 store: {e}"))?,
            )
        }
        None => {
            let root = data_dir.join("objects");
            std::sync::Arc::new(
                tessera_objstore::EmbeddedObjectStore::open(&root)
                    .map_err(|e| format!("the embedded object store at {}: {e}", root.display()))?,
            )
        }
    };
    tracing::info!(store = %store.describe(), "object store ready");
    Ok(store)
}

/// Where nothing else is bound: filer-http for http:// and https:// inputs (public
/// addresses, and the internal hosts the operator named), filer-s3 for s3:// (every
/// bucket of the object store).
/// And the built-in webhook notifier to the run summaries' scope, signing with
/// `webhook_key` and reaching public addresses and the internal hosts the operator named.
fn default_bindings(
    cfg: &config::Config,
    webhook_key: &str,
) -> Vec<tessera_registry::DefaultBinding> {
    let summaries = tessera_registry::DefaultBinding {
        world: tessera_plugin_runtime::World::Notifier,
        scope: tessera_core::plugin::RUN_SUMMARY_SCOPE.into(),
        plugin: "notifier-webhook".into(),
        settings: tessera_registry::Settings {
            secrets: [("signing-key".to_string(), webhook_key.to_string())].into(),
            allow_hosts: std::iter::once("*".to_string())
                .chain(cfg.response_url_allow_hosts.iter().cloned())
                .collect(),
            ..tessera_registry::Settings::default()
        },
    };
    if !cfg.default_filers {
        return vec![summaries];
    }
    let http = tessera_registry::Settings {
        allow_hosts: std::iter::once("*".to_string())
            .chain(cfg.http_allow_hosts.iter().cloned())
            .collect(),
        ..tessera_registry::Settings::default()
    };
    let mut defaults: Vec<tessera_registry::DefaultBinding> = ["http", "https"]
        .into_iter()
        .map(|scheme| tessera_registry::DefaultBinding {
            world: tessera_plugin_runtime::World::Filer,
            scope: scheme.into(),
            plugin: "filer-http".into(),
            settings: http.clone(),
        })
        .collect();
    defaults.push(tessera_registry::DefaultBinding {
        world: tessera_plugin_runtime::World::Filer,
        scope: "s3".into(),
        plugin: "filer-s3".into(),
        settings: tessera_registry::Settings {
            buckets: vec!["*".into()],
            ..tessera_registry::Settings::default()
        },
    });
    defaults.push(summaries);
    defaults
}

/// The key secrets are sealed with: read it (and keep its file private), or make one
/// readable only by us.
fn load_or_create_secrets_key(path: &Path) -> Result<tessera_auth::sealed::SealKey, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => {
            data_dir::keep_private(path)?;
            b
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let b = tessera_auth::sealed::SealKey::generate();
            data_dir::write_private(path, &b)?;
            tracing::info!(path = %path.display(), "generated the secrets key");
            b.to_vec()
        }
        Err(e) => return Err(format!("reading the secrets key {}: {e}", path.display())),
    };
    tessera_auth::sealed::SealKey::from_bytes(&bytes)
        .map_err(|e| format!("the secrets key {}: {e}", path.display()))
}

/// The key run summaries are signed with: read it (and keep its file private), or make
/// one (32 random bytes, hex) readable only by us.
fn load_or_create_webhook_key(path: &Path) -> Result<String, String> {
    if let Ok(k) = std::fs::read_to_string(path) {
        let k = k.trim().to_string();
        if !k.is_empty() {
            data_dir::keep_private(path)?;
            return Ok(k);
        }
    }
    let key: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    data_dir::write_private(path, key.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the run summaries' signing key");
    Ok(key)
}

/// The API token: read it (and keep its file private), or make one (32 random bytes,
/// hex) readable only by us.
fn load_or_create_token(path: &Path) -> Result<String, String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            data_dir::keep_private(path)?;
            return Ok(t);
        }
    }
    let (token, _) = tessera_auth::pat::generate();
    data_dir::write_private(path, token.as_bytes())?;
    tracing::info!(path = %path.display(), "generated the instance admin's API token");
    Ok(token)
}

/// The key access tokens are signed with: read it (and keep its file private), or make
/// one readable only by us.
fn load_or_create_signing_key(path: &Path) -> Result<tessera_auth::SigningKey, String> {
    match std::fs::read(path) {
        Ok(der) => {
            data_dir::keep_private(path)?;
            tessera_auth::SigningKey::from_pkcs8(&der)
                .map_err(|e| format!("the signing key {}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = tessera_auth::SigningKey::generate().map_err(|e| e.to_string())?;
            data_dir::write_private(path, key.pkcs8())?;
            tracing::info!(path = %path.display(), "generated the access-token signing key");
            Ok(key)
        }
        Err(e) => Err(format!("reading the signing key {}: {e}", path.display())),
    }
}

/// This server's stable identity, for labelling the containers it owns.
fn load_or_create_instance_id(path: &Path) -> Result<String, String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let id = tessera_core::id::new_task_id();
    std::fs::write(path, &id).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(id)
}

/// A store URL fit for logs: the password replaced.
fn redact_url(url: &str) -> String {
    if url.contains("password=") {
        return match url.split_once('?') {
            Some((base, _)) => format!("{}?***", redact_url(base)),
            None => url.to_string(),
        };
    }
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
