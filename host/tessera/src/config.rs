//! Server configuration: defaults, then `tessera.toml`, then `TESSERA_*` environment
//! variables, then flags (each later source wins).

use clap::Args;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Flags of `tessera serve`. Each has an environment variable; unset ones fall back to
/// the config file, then to the default shown.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Config file (TOML). Default: ./tessera.toml if it exists.
    #[arg(long, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "TESSERA_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for the store, task workspaces and the API token [default: ./tessera-data]
    #[arg(long, env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Store URL: sqlite://PATH or postgres://… [default: sqlite://<data_dir>/tessera.db]
    #[arg(long, env = "TESSERA_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Tasks that run at once; the rest wait QUEUED [default: 4]
    #[arg(long, env = "TESSERA_MAX_CONCURRENT_TASKS")]
    pub max_concurrent_tasks: Option<usize>,
    /// Executor: "docker", "kubernetes" (needs [kubernetes] in the config file) or "none"
    /// (accept tasks, never run them) [default: docker]
    #[arg(long, env = "TESSERA_EXECUTOR")]
    pub executor: Option<String>,
    /// Docker engine socket [default: DOCKER_HOST or /var/run/docker.sock]
    #[arg(long, env = "TESSERA_DOCKER_SOCKET")]
    pub docker_socket: Option<String>,
    /// Container network unless a task's `network` backend parameter says otherwise
    /// ("bridge" or "none") [default: bridge]
    #[arg(long, env = "TESSERA_DEFAULT_NETWORK")]
    pub default_network: Option<String>,
    /// Host directory that file:// inputs and outputs may use; repeat for several
    /// (env: comma-separated) [default: none, file:// refused]
    #[arg(long = "allow-dir", env = "TESSERA_ALLOW_DIRS", value_delimiter = ',')]
    pub allow_dirs: Vec<PathBuf>,
    /// Bytes of each executor's stdout/stderr kept in the task log (the tail) [default: 65536]
    #[arg(long, env = "TESSERA_LOG_TAIL_BYTES")]
    pub log_tail_bytes: Option<usize>,
    /// Largest request body in bytes; larger gets 413 [default: 16777216]
    #[arg(long, env = "TESSERA_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Bearer token clients must send [default: generated into <data_dir>/api-token]
    #[arg(long, env = "TESSERA_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,
    /// Turn authentication off (only for a server no one else can reach)
    #[arg(long, env = "TESSERA_NO_AUTH")]
    pub no_auth: bool,
    /// Log format: "text" or "json" [default: text]
    #[arg(long, env = "TESSERA_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// TES tag key that is a placement constraint: a task's tag with this key must be
    /// carried by the target it runs on; repeat for several (env: comma-separated)
    /// [default: none, tags are metadata only]
    #[arg(
        long = "route-tag-key",
        env = "TESSERA_ROUTE_TAG_KEYS",
        value_delimiter = ','
    )]
    pub route_tag_keys: Vec<String>,
    /// An internal host (`host` or `host:port`) the built-in http filer may fetch
    /// http(s):// inputs from, besides public addresses; repeat for several (env:
    /// comma-separated) [default: none: loopback, private and link-local addresses are
    /// refused]
    #[arg(
        long = "http-allow-host",
        env = "TESSERA_HTTP_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub http_allow_hosts: Vec<String>,
    /// An internal host (`host` or `host:port`) run summaries may be POSTed to (a run's
    /// `response_url`), besides public addresses; repeat for several (env:
    /// comma-separated) [default: none]
    #[arg(
        long = "response-url-allow-host",
        env = "TESSERA_RESPONSE_URL_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub response_url_allow_hosts: Vec<String>,
    /// The key run summaries are signed with (HMAC-SHA256, `X-Tessera-Signature`); servers
    /// sharing a store share it [default: <data_dir>/webhook-key, made on first start]
    #[arg(long, env = "TESSERA_WEBHOOK_KEY")]
    pub webhook_key: Option<PathBuf>,
    /// The key (32 bytes) secrets are sealed with at rest; servers sharing a store share
    /// it [default: <data_dir>/secrets-key, made on first start]
    #[arg(long, env = "TESSERA_SECRETS_KEY")]
    pub secrets_key: Option<PathBuf>,
    /// Do not bind the built-in filers to http://, https:// and s3:// (only inline
    /// content, file:// and schemes bound with `tessera plugin activate` are served)
    #[arg(long, env = "TESSERA_NO_DEFAULT_FILERS")]
    pub no_default_filers: bool,
    /// The longest call timeout a router plugin may declare (routing waits on it)
    /// [default: 1000]
    #[arg(long, env = "TESSERA_MAX_ROUTER_TIMEOUT_MS")]
    pub max_router_timeout_ms: Option<u64>,
    /// The longest call timeout any other plugin may declare [default: 600000]
    #[arg(long, env = "TESSERA_MAX_PLUGIN_TIMEOUT_MS")]
    pub max_plugin_timeout_ms: Option<u64>,
    /// Docker network for tasks that have one: "tessera" (made by Tessera, with
    /// link-local addresses and the host blocked; needs root and iptables) or the name
    /// of an existing network, used as it is [default: tessera]
    #[arg(long, env = "TESSERA_DOCKER_NETWORK")]
    pub docker_network: Option<String>,
    /// Processes and threads one task container may have at once [default: 4096]
    #[arg(long, env = "TESSERA_PIDS_LIMIT")]
    pub pids_limit: Option<u32>,
    /// Size of each of the two log files Docker keeps per container [default: 33554432]
    #[arg(long, env = "TESSERA_DOCKER_LOG_BYTES")]
    pub docker_log_bytes: Option<u64>,
    /// Run task processes as this numeric user, UID or UID:GID (targets may override)
    /// [default: the image's user]
    #[arg(long, env = "TESSERA_USER")]
    pub user: Option<String>,
    /// Mount task images read-only, with a 256 MiB tmpfs at /tmp (targets may override)
    #[arg(long, env = "TESSERA_READ_ONLY_ROOT")]
    pub read_only_root: bool,
    /// A task's maximum run time in seconds when it does not ask for one, from the start
    /// of its first executor [default: 604800 (a week), or the cap if smaller]
    #[arg(long, env = "TESSERA_MAX_RUN_TIME_SECS")]
    pub max_run_time_secs: Option<u64>,
    /// The longest run time a task may ask for (backend parameter max_run_time)
    /// [default: the default run time]
    #[arg(long, env = "TESSERA_MAX_RUN_TIME_CAP_SECS")]
    pub max_run_time_cap_secs: Option<u64>,
    /// Connections open at once; more wait until one closes [default: 1024]
    #[arg(long, env = "TESSERA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's head (and a kept-alive connection may
    /// wait for its next request) [default: 10]
    #[arg(long, env = "TESSERA_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request body may stall between bytes [default: 60]
    #[arg(long, env = "TESSERA_BODY_TIMEOUT_SECS")]
    pub body_timeout_secs: Option<u64>,
    /// Seconds a connection may move no byte either way before it is closed [default: 300]
    #[arg(long, env = "TESSERA_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds requests in flight get to finish at shutdown [default: 30]
    #[arg(long, env = "TESSERA_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key)
    #[arg(long, env = "TESSERA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, env = "TESSERA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Delete finished tasks (their logs, events and run artifacts) this many days after
    /// they ended; 0 keeps them; a group may have its own (`PUT /v1/groups/NAME/retention`)
    /// [default: 7]
    #[arg(long, env = "TESSERA_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Where task workspaces live. Servers sharing one store and one Docker engine
    /// share it too, at the same path, so one can resume another's tasks
    /// [default: <data_dir>/work]
    #[arg(long, env = "TESSERA_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Seconds a server's hold on a task lasts without renewal (renewed every third of
    /// it); another server on the same store adopts the task only after that [default: 30]
    #[arg(long, env = "TESSERA_TASK_LEASE_SECS")]
    pub task_lease_secs: Option<u64>,
    /// The Ed25519 key (PKCS#8 DER) access tokens are signed with; servers sharing a
    /// store share it so each accepts the others' tokens [default: <data_dir>/signing-key,
    /// made on first start]
    #[arg(long, env = "TESSERA_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Longest lifetime in seconds of an access token from `POST /v1/auth/token`
    /// [default: 3600]
    #[arg(long, env = "TESSERA_ACCESS_TOKEN_LIFETIME_SECS")]
    pub access_token_lifetime_secs: Option<u64>,
    /// TES tag key naming the group a task is submitted to [default: tessera.group]
    #[arg(long, env = "TESSERA_GROUP_TAG")]
    pub group_tag: Option<String>,
    /// Days audit log entries are kept [default: 90]
    #[arg(long, env = "TESSERA_AUDIT_RETENTION_DAYS")]
    pub audit_retention_days: Option<u32>,
    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// An external OpenID provider whose access tokens the server accepts (`[oidc]` in the
/// config file).
#[derive(clap::Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcArgs {
    /// The provider's issuer URL (https://, or http:// on loopback); discovery starts
    /// at <issuer>/.well-known/openid-configuration [default: no provider]
    #[arg(long = "oidc-issuer", env = "TESSERA_OIDC_ISSUER")]
    pub issuer: Option<String>,
    /// The audience (`aud`) tokens must name [required with --oidc-issuer]
    #[arg(long = "oidc-audience", env = "TESSERA_OIDC_AUDIENCE")]
    pub audience: Option<String>,
    /// The claim holding the username [default: preferred_username]
    #[arg(long = "oidc-username-claim", env = "TESSERA_OIDC_USERNAME_CLAIM")]
    pub username_claim: Option<String>,
    /// The claim holding roles: GROUP:ROLE, or the admin role [default: realm_access.roles]
    #[arg(long = "oidc-roles-claim", env = "TESSERA_OIDC_ROLES_CLAIM")]
    pub roles_claim: Option<String>,
    /// The claim holding group names [default: groups]
    #[arg(long = "oidc-groups-claim", env = "TESSERA_OIDC_GROUPS_CLAIM")]
    pub groups_claim: Option<String>,
    /// The role a group in the groups claim gives [default: read]
    #[arg(long = "oidc-group-role", env = "TESSERA_OIDC_GROUP_ROLE")]
    pub group_role: Option<String>,
    /// The role (in the roles claim) that makes an instance admin [default: tessera-admin]
    #[arg(long = "oidc-admin-role", env = "TESSERA_OIDC_ADMIN_ROLE")]
    pub admin_role: Option<String>,
    /// Seconds the provider's keys are used before they are fetched again [default: 300]
    #[arg(
        long = "oidc-jwks-refresh-secs",
        env = "TESSERA_OIDC_JWKS_REFRESH_SECS"
    )]
    pub jwks_refresh_secs: Option<u64>,
    /// Fewest seconds between fetches caused by a token with an unknown key id
    /// [default: 30]
    #[arg(
        long = "oidc-refetch-interval-secs",
        env = "TESSERA_OIDC_REFETCH_INTERVAL_SECS"
    )]
    pub refetch_interval_secs: Option<u64>,
    /// PEM file of CA certificates to trust for the provider besides the Mozilla roots
    #[arg(long = "oidc-ca-file", env = "TESSERA_OIDC_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// A place tasks can run (`[[targets]]` in the config file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    pub name: String,
    /// Tasks at once on this target.
    pub slots: u32,
    /// Tags the target carries (matched against tasks' routing tags).
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    /// Groups that may use it; empty: every group.
    #[serde(default)]
    pub groups: Vec<String>,
    /// CPU cores its tasks may ask for together (no budget when unset).
    pub cpu_cores: Option<u32>,
    /// Memory its tasks may ask for together, in GB (no budget when unset).
    pub ram_gb: Option<f64>,
    /// Run its processes as this numeric user (`UID` or `UID:GID`) [default: the
    /// server's `user`].
    pub user: Option<String>,
    /// `"none"`: its processes have no network, whatever a task asks for.
    pub network: Option<String>,
    /// Mount images read-only [default: the server's `read_only_root`].
    pub read_only_root: Option<bool>,
    /// Run its tasks as Kubernetes Jobs (the `[kubernetes]` section says where).
    pub kubernetes: Option<bool>,
}

/// Where Kubernetes targets run their tasks (`[kubernetes]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KubernetesFile {
    /// A kubeconfig file [default: the pod's service account in a cluster, else
    /// `$KUBECONFIG` or `~/.kube/config`].
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of the tasks' Jobs [default: the kubeconfig context's, or in a pod
    /// its own].
    pub namespace: Option<String>,
    /// The image with this version's `tessera` at `/tessera` (staging runs it).
    pub image: String,
    /// The storage class of task workspaces [default: the cluster's default].
    pub storage_class: Option<String>,
    /// [default: "ReadWriteOnce"].
    pub access_mode: Option<String>,
    /// A task whose pod waits this long with a reason (a missing image,
    /// unschedulable) fails SYSTEM_ERROR [default: 300].
    pub pending_timeout_secs: Option<u64>,
    /// How long finished Jobs stay if the server cannot remove them [default: 3600].
    pub ttl_after_finished_secs: Option<u64>,
    /// Requests per second to the API server, at most [default: 50].
    pub requests_per_second: Option<u32>,
}

/// The Kubernetes executor's settings, checked.
#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    pub settings: tessera_kube::KubeSettings,
    pub pending_timeout: Duration,
}

impl KubernetesFile {
    fn check(self) -> Result<KubernetesConfig, String> {
        if self.image.trim().is_empty() {
            return Err("kubernetes: image must name the tessera image".into());
        }
        let rps = self.requests_per_second.unwrap_or(50);
        if rps == 0 {
            return Err("kubernetes: requests_per_second must be at least 1".into());
        }
        let access_mode = self.access_mode.unwrap_or_else(|| "ReadWriteOnce".into());
        if !matches!(
            access_mode.as_str(),
            "ReadWriteOnce" | "ReadWriteMany" | "ReadWriteOncePod"
        ) {
            return Err(format!(
                "kubernetes: access_mode {access_mode:?} is not one of ReadWriteOnce, ReadWriteMany, ReadWriteOncePod"
            ));
        }
        Ok(KubernetesConfig {
            settings: tessera_kube::KubeSettings {
                kubeconfig: self.kubeconfig,
                namespace: self.namespace.unwrap_or_default(),
                image: self.image,
                storage_class: self.storage_class,
                access_mode,
                ttl_after_finished: Duration::from_secs(
                    self.ttl_after_finished_secs.unwrap_or(3600),
                ),
                requests_per_second: rps,
                ..tessera_kube::KubeSettings::default()
            },
            pending_timeout: Duration::from_secs(self.pending_timeout_secs.unwrap_or(300)),
        })
    }
}

/// The config file's shape; every key optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub max_concurrent_tasks: Option<usize>,
    pub executor: Option<String>,
    pub docker_socket: Option<String>,
    pub default_network: Option<String>,
    pub allow_dirs: Option<Vec<PathBuf>>,
    pub log_tail_bytes: Option<usize>,
    pub max_body_bytes: Option<usize>,
    pub auth_token: Option<String>,
    pub no_auth: Option<bool>,
    pub log_format: Option<String>,
    pub route_tag_keys: Option<Vec<String>>,
    pub targets: Option<Vec<TargetFile>>,
    pub kubernetes: Option<KubernetesFile>,
    pub s3: Option<S3File>,
    pub http_allow_hosts: Option<Vec<String>>,
    pub response_url_allow_hosts: Option<Vec<String>>,
    pub webhook_key: Option<PathBuf>,
    pub secrets_key: Option<PathBuf>,
    pub default_filers: Option<bool>,
    pub max_router_timeout_ms: Option<u64>,
    pub max_plugin_timeout_ms: Option<u64>,
    pub docker_network: Option<String>,
    pub pids_limit: Option<u32>,
    pub docker_log_bytes: Option<u64>,
    pub user: Option<String>,
    pub read_only_root: Option<bool>,
    pub max_run_time_secs: Option<u64>,
    pub max_run_time_cap_secs: Option<u64>,
    pub max_connections: Option<usize>,
    pub header_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub drain_timeout_secs: Option<u64>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub retention_days: Option<u32>,
    pub work_dir: Option<PathBuf>,
    pub task_lease_secs: Option<u64>,
    pub signing_key: Option<PathBuf>,
    pub access_token_lifetime_secs: Option<u64>,
    pub group_tag: Option<String>,
    pub audit_retention_days: Option<u32>,
    pub oidc: Option<OidcArgs>,
}

/// The S3-compatible store behind `s3://` URLs and the data API (`[s3]`); without it,
/// the embedded object store in `<data_dir>/objects` serves them.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3File {
    /// e.g. `http://127.0.0.1:3900`; unset for AWS S3.
    pub endpoint: Option<String>,
    pub region: String,
    /// Or the environment variable TESSERA_S3_ACCESS_KEY_ID.
    pub access_key_id: Option<String>,
    /// Or the environment variable TESSERA_S3_SECRET_ACCESS_KEY.
    pub secret_access_key: Option<String>,
    /// Path-style addressing (most self-hosted stores) [default: true].
    pub path_style: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub max_concurrent_tasks: usize,
    pub executor_docker: bool,
    /// Kubernetes targets' executor (`[kubernetes]`).
    pub kubernetes: Option<KubernetesConfig>,
    pub allow_dirs: Vec<PathBuf>,
    pub log_tail_bytes: usize,
    pub max_body_bytes: usize,
    pub auth_token: Option<String>,
    pub no_auth: bool,
    pub log_json: bool,
    pub route_tag_keys: Vec<String>,
    /// Empty: one target, "local", with max_concurrent_tasks slots.
    pub targets: Vec<TargetFile>,
    /// The S3 store behind `s3://` and the data API, when configured (otherwise the
    /// embedded object store).
    pub s3: Option<tessera_s3::S3Config>,
    /// Internal hosts the default http filer binding may reach.
    pub http_allow_hosts: Vec<String>,
    /// Internal hosts run summaries may go to.
    pub response_url_allow_hosts: Vec<String>,
    /// The run summaries' signing key file.
    pub webhook_key: PathBuf,
    /// The file of the key secrets are sealed with.
    pub secrets_key: PathBuf,
    /// Bind filer-http to http/https and filer-s3 to s3 where nothing else is bound.
    pub default_filers: bool,
    /// The longest call timeout a router plugin may declare.
    pub max_router_timeout: std::time::Duration,
    /// The longest call timeout any other plugin may declare.
    pub max_plugin_timeout: std::time::Duration,
    /// The Docker-only settings (socket, network, pids, logs).
    pub docker: tessera_docker::DockerOptions,
    /// How the default target isolates processes; targets start from it.
    pub isolation: tessera_executor::Isolation,
    /// Each configured target's isolation, in the order of `targets`.
    pub target_isolation: Vec<tessera_executor::Isolation>,
    /// A task's maximum run time when it does not ask.
    pub max_run_time: std::time::Duration,
    /// The longest a task may ask for.
    pub max_run_time_cap: std::time::Duration,
    /// Connections and time the HTTP server allows.
    pub http: crate::http_server::Limits,
    /// Certificate chain and key files, when serving HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How long finished tasks are kept; `None`: forever.
    pub retention: Option<std::time::Duration>,
    /// Where task workspaces live.
    pub work_dir: PathBuf,
    /// How long a hold on a task lasts without renewal.
    pub task_lease: std::time::Duration,
    /// The access tokens' signing key file.
    pub signing_key: PathBuf,
    /// Longest lifetime of an access token.
    pub access_token_lifetime: std::time::Duration,
    /// The TES tag naming a task's group.
    pub group_tag: String,
    /// How long audit entries are kept.
    pub audit_retention: std::time::Duration,
    /// The external OpenID provider, when configured.
    pub oidc: Option<tessera_api::oidc::OidcConfig>,
}

impl Config {
    pub fn load(args: ServeArgs) -> Result<Config, String> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None if Path::new("tessera.toml").exists() => read_file(Path::new("tessera.toml"))?,
            None => FileConfig::default(),
        };
        let data_dir = args
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./tessera-data"));
        let database_url = args
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tessera.db").display()));
        let executor = args
            .executor
            .or(file.executor)
            .unwrap_or_else(|| "docker".into());
        let executor_docker = match executor.as_str() {
            "docker" => true,
            "none" | "kubernetes" => false,
            other => {
                return Err(format!(
                    "executor {other:?} is not one of \"docker\", \"kubernetes\", \"none\""
                ));
            }
        };
        let kubernetes = file.kubernetes.map(KubernetesFile::check).transpose()?;
        if executor == "kubernetes" && kubernetes.is_none() {
            return Err(
                "executor \"kubernetes\" needs a [kubernetes] section (image, namespace, …)".into(),
            );
        }
        let log_format = args
            .log_format
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(format!(
                    "log_format {other:?} is not one of \"text\", \"json\""
                ));
            }
        };
        let default_network = match args.default_network.or(file.default_network).as_deref() {
            None => None,
            Some("bridge") => Some(tessera_executor::Network::Bridge),
            Some("none") => Some(tessera_executor::Network::None),
            Some(n) => {
                return Err(format!(
                    "default_network {n:?} is not one of \"bridge\", \"none\""
                ));
            }
        };
        let max_concurrent_tasks = args
            .max_concurrent_tasks
            .or(file.max_concurrent_tasks)
            .unwrap_or(4);
        if max_concurrent_tasks == 0 {
            return Err("max_concurrent_tasks must be at least 1".into());
        }
        let mut targets = file.targets.unwrap_or_default();
        if executor == "kubernetes" && targets.is_empty() {
            // One target: the cluster.
            targets.push(TargetFile {
                name: "kubernetes".into(),
                slots: u32::try_from(max_concurrent_tasks).unwrap_or(u32::MAX),
                tags: Default::default(),
                groups: Vec::new(),
                cpu_cores: None,
                ram_gb: None,
                user: None,
                network: None,
                read_only_root: None,
                kubernetes: Some(true),
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for t in &targets {
            if t.name.trim().is_empty() || !names.insert(t.name.as_str()) {
                return Err(format!(
                    "targets: names must be non-empty and distinct ({:?})",
                    t.name
                ));
            }
            if t.slots == 0 {
                return Err(format!("target {:?}: slots must be at least 1", t.name));
            }
            if t.kubernetes == Some(true) {
                if kubernetes.is_none() {
                    return Err(format!(
                        "target {:?} runs on Kubernetes: add a [kubernetes] section",
                        t.name
                    ));
                }
                if t.user.is_some() || t.network.is_some() || t.read_only_root.is_some() {
                    return Err(format!(
                        "target {:?}: user, network and read_only_root are Docker settings; \
                         on Kubernetes the pod's security context and network policies decide",
                        t.name
                    ));
                }
            }
            if t.ram_gb.is_some_and(|g| !(g.is_finite() && g > 0.0)) {
                return Err(format!(
                    "target {:?}: ram_gb must be a positive number",
                    t.name
                ));
            }
        }
        let parse_user =
            |u: Option<String>, what: &str| -> Result<Option<tessera_executor::User>, String> {
                u.map(|u| u.parse().map_err(|e| format!("{what}: {e}")))
                    .transpose()
            };
        let isolation = tessera_executor::Isolation {
            user: parse_user(args.user.or(file.user), "user")?,
            no_network: false,
            read_only_root: args.read_only_root || file.read_only_root.unwrap_or(false),
        };
        let target_isolation = targets
            .iter()
            .map(|t| {
                let no_network = match t.network.as_deref() {
                    None | Some("bridge") => false,
                    Some("none") => true,
                    Some(n) => {
                        return Err(format!(
                            "target {:?}: network {n:?} is not one of \"bridge\", \"none\"",
                            t.name
                        ));
                    }
                };
                Ok(tessera_executor::Isolation {
                    user: parse_user(t.user.clone(), &format!("target {:?}: user", t.name))?
                        .or(isolation.user),
                    no_network,
                    read_only_root: t.read_only_root.unwrap_or(isolation.read_only_root),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        const WEEK_SECS: u64 = 7 * 24 * 3600;
        let cap_given = args.max_run_time_cap_secs.or(file.max_run_time_cap_secs);
        let max_run_time = args
            .max_run_time_secs
            .or(file.max_run_time_secs)
            .unwrap_or_else(|| cap_given.map_or(WEEK_SECS, |c| c.min(WEEK_SECS)));
        let max_run_time_cap = cap_given.unwrap_or(max_run_time);
        if max_run_time == 0 || max_run_time > max_run_time_cap {
            return Err(format!(
                "max_run_time_secs ({max_run_time}) must be at least 1 and at most max_run_time_cap_secs ({max_run_time_cap})"
            ));
        }
        let docker_network = args
            .docker_network
            .or(file.docker_network)
            .unwrap_or_else(|| tessera_docker::TASK_NETWORK.to_owned());
        if matches!(docker_network.as_str(), "" | "none" | "host")
            || docker_network.starts_with("container:")
        {
            return Err(format!(
                "docker_network {docker_network:?}: name a bridge network (or use the task parameter network=none)"
            ));
        }
        let docker = tessera_docker::DockerOptions {
            socket: args.docker_socket.or(file.docker_socket),
            network: docker_network,
            default_network,
            pids_limit: match args.pids_limit.or(file.pids_limit).unwrap_or(4096) {
                0 => return Err("pids_limit must be at least 1".into()),
                n => Some(i64::from(n)),
            },
            log_file_bytes: match args
                .docker_log_bytes
                .or(file.docker_log_bytes)
                .unwrap_or(32 << 20)
            {
                n if n < 1 << 20 => return Err("docker_log_bytes must be at least 1048576".into()),
                n => Some(n),
            },
        };
        let s3 = match file.s3 {
            None => None,
            Some(f) => {
                let secret = std::env::var("TESSERA_S3_SECRET_ACCESS_KEY")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .or(f.secret_access_key)
                    .filter(|s| !s.is_empty())
                    .ok_or("s3: secret_access_key is required (or TESSERA_S3_SECRET_ACCESS_KEY)")?;
                let access_key_id = std::env::var("TESSERA_S3_ACCESS_KEY_ID")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .or(f.access_key_id)
                    .filter(|s| !s.is_empty())
                    .ok_or("s3: access_key_id is required (or TESSERA_S3_ACCESS_KEY_ID)")?;
                Some(tessera_s3::S3Config {
                    endpoint: f.endpoint,
                    region: f.region,
                    access_key_id,
                    secret_access_key: tessera_s3::Secret::new(secret),
                    path_style: f.path_style.unwrap_or(true),
                })
            }
        };
        let http_allow_hosts = if args.http_allow_hosts.is_empty() {
            file.http_allow_hosts.unwrap_or_default()
        } else {
            args.http_allow_hosts
        };
        for h in &http_allow_hosts {
            if h.trim() == "*" {
                return Err("http_allow_hosts: `*` is already allowed (public addresses); name internal hosts here".into());
            }
            tessera_plugin_runtime::check_allowed_host(h)
                .map_err(|e| format!("http_allow_hosts: {e}"))?;
        }
        let response_url_allow_hosts = if args.response_url_allow_hosts.is_empty() {
            file.response_url_allow_hosts.unwrap_or_default()
        } else {
            args.response_url_allow_hosts
        };
        for h in &response_url_allow_hosts {
            if h.trim() == "*" {
                return Err("response_url_allow_hosts: `*` is already allowed (public addresses); name internal hosts here".into());
            }
            tessera_plugin_runtime::check_allowed_host(h)
                .map_err(|e| format!("response_url_allow_hosts: {e}"))?;
        }
        // A setting that must be at least 1 (a count or a duration's number of units).
        let positive = |flag: Option<u64>, file: Option<u64>, default: u64, name: &str| match flag
            .or(file)
            .unwrap_or(default)
        {
            0 => Err(format!("{name} must be at least 1")),
            n => Ok(n),
        };
        let millis = |flag, file, default, name: &str| {
            positive(flag, file, default, name).map(std::time::Duration::from_millis)
        };
        let secs = |flag, file, default, name: &str| {
            positive(flag, file, default, name).map(std::time::Duration::from_secs)
        };
        let http = crate::http_server::Limits {
            max_connections: match args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(1024)
            {
                0 => return Err("max_connections must be at least 1".into()),
                n => n,
            },
            header_timeout: secs(
                args.header_timeout_secs,
                file.header_timeout_secs,
                10,
                "header_timeout_secs",
            )?,
            body_timeout: secs(
                args.body_timeout_secs,
                file.body_timeout_secs,
                60,
                "body_timeout_secs",
            )?,
            idle_timeout: secs(
                args.idle_timeout_secs,
                file.idle_timeout_secs,
                300,
                "idle_timeout_secs",
            )?,
            drain_timeout: secs(
                args.drain_timeout_secs,
                file.drain_timeout_secs,
                30,
                "drain_timeout_secs",
            )?,
        };
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key)),
            _ => return Err("tls_cert and tls_key go together".into()),
        };
        // A week by default; 0 keeps finished tasks (groups may say otherwise).
        let retention = match args.retention_days.or(file.retention_days).unwrap_or(7) {
            0 => None,
            d => Some(std::time::Duration::from_secs(u64::from(d) * 24 * 3600)),
        };
        let task_lease = match args.task_lease_secs.or(file.task_lease_secs) {
            None => std::time::Duration::from_secs(30),
            Some(s) if s >= 3 => std::time::Duration::from_secs(s),
            Some(s) => {
                return Err(format!(
                    "task_lease_secs ({s}) must be at least 3 (it is renewed every third of it)"
                ));
            }
        };
        let work_dir = args
            .work_dir
            .or(file.work_dir)
            .unwrap_or_else(|| data_dir.join("work"));
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000)));
        let signing_key = args
            .signing_key
            .or(file.signing_key)
            .unwrap_or_else(|| data_dir.join("signing-key"));
        let webhook_key = args
            .webhook_key
            .or(file.webhook_key)
            .unwrap_or_else(|| data_dir.join("webhook-key"));
        let secrets_key = args
            .secrets_key
            .or(file.secrets_key)
            .unwrap_or_else(|| data_dir.join("secrets-key"));
        let access_token_lifetime = match args
            .access_token_lifetime_secs
            .or(file.access_token_lifetime_secs)
        {
            None => std::time::Duration::from_secs(3600),
            Some(s) if (60..=30 * 24 * 3600).contains(&s) => std::time::Duration::from_secs(s),
            Some(s) => {
                return Err(format!(
                    "access_token_lifetime_secs ({s}) must be between 60 and 2592000 (30 days)"
                ));
            }
        };
        let group_tag = args
            .group_tag
            .or(file.group_tag)
            .unwrap_or_else(|| "tessera.group".into());
        if group_tag.is_empty() {
            return Err("group_tag must not be empty".into());
        }
        let audit_retention = match args.audit_retention_days.or(file.audit_retention_days) {
            None => std::time::Duration::from_secs(90 * 24 * 3600),
            Some(0) => return Err("audit_retention_days must be at least 1".into()),
            Some(d) => std::time::Duration::from_secs(u64::from(d) * 24 * 3600),
        };
        let oidc = oidc_config(args.oidc, file.oidc.unwrap_or_default())?;
        let no_auth = args.no_auth || file.no_auth.unwrap_or(false);
        // Without authentication anyone who reaches the port runs containers as the
        // server: only on this machine's own loopback.
        if no_auth && !listen.ip().is_loopback() {
            return Err(format!(
                "no_auth is refused on {listen}: without authentication anyone who can reach \
                 the port runs containers; listen on a loopback address (127.0.0.1 or ::1) \
                 or drop no_auth"
            ));
        }
        Ok(Config {
            oidc,
            audit_retention,
            signing_key,
            access_token_lifetime,
            group_tag,
            work_dir,
            task_lease,
            retention,
            http,
            tls,
            docker,
            isolation,
            target_isolation,
            max_run_time: std::time::Duration::from_secs(max_run_time),
            max_run_time_cap: std::time::Duration::from_secs(max_run_time_cap),
            max_router_timeout: millis(
                args.max_router_timeout_ms,
                file.max_router_timeout_ms,
                1000,
                "max_router_timeout_ms",
            )?,
            max_plugin_timeout: millis(
                args.max_plugin_timeout_ms,
                file.max_plugin_timeout_ms,
                600_000,
                "max_plugin_timeout_ms",
            )?,
            s3,
            http_allow_hosts,
            response_url_allow_hosts,
            webhook_key,
            secrets_key,
            default_filers: !args.no_default_filers && file.default_filers.unwrap_or(true),
            route_tag_keys: if args.route_tag_keys.is_empty() {
                file.route_tag_keys.unwrap_or_default()
            } else {
                args.route_tag_keys
            },
            targets,
            listen,
            data_dir,
            database_url,
            max_concurrent_tasks,
            executor_docker,
            kubernetes,
            allow_dirs: if args.allow_dirs.is_empty() {
                file.allow_dirs.unwrap_or_default()
            } else {
                args.allow_dirs
            },
            log_tail_bytes: args
                .log_tail_bytes
                .or(file.log_tail_bytes)
                .unwrap_or(64 * 1024),
            max_body_bytes: args
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(16 * 1024 * 1024),
            auth_token: args
                .auth_token
                .or(file.auth_token)
                .filter(|t| !t.is_empty()),
            no_auth,
            log_json,
        })
    }
}

/// The OpenID provider from the arguments over the file; `None` without an issuer.
fn oidc_config(
    args: OidcArgs,
    file: OidcArgs,
) -> Result<Option<tessera_api::oidc::OidcConfig>, String> {
    let Some(issuer) = args.issuer.or(file.issuer) else {
        return Ok(None);
    };
    tessera_api::oidc::check_issuer(&issuer)?;
    let audience = args
        .audience
        .or(file.audience)
        .ok_or("--oidc-audience (audience in [oidc]) is required with an issuer: the `aud` its tokens must name")?;
    let mut settings = tessera_auth::oidc::OidcSettings::keycloak(&issuer, &audience);
    if let Some(c) = args.username_claim.or(file.username_claim) {
        settings.username_claim = c;
    }
    if let Some(c) = args.roles_claim.or(file.roles_claim) {
        settings.roles_claim = c;
    }
    if let Some(c) = args.groups_claim.or(file.groups_claim) {
        settings.groups_claim = c;
    }
    if let Some(r) = args.group_role.or(file.group_role) {
        settings.group_role = r.parse().map_err(|e| format!("--oidc-group-role: {e}"))?;
    }
    if let Some(r) = args.admin_role.or(file.admin_role) {
        settings.admin_role = r;
    }
    let extra_roots_pem = match args.ca_file.or(file.ca_file) {
        Some(path) => Some(
            std::fs::read(&path).map_err(|e| format!("--oidc-ca-file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    Ok(Some(tessera_api::oidc::OidcConfig {
        settings,
        jwks_ttl: std::time::Duration::from_secs(
            args.jwks_refresh_secs
                .or(file.jwks_refresh_secs)
                .unwrap_or(300)
                .max(1),
        ),
        refetch_interval: std::time::Duration::from_secs(
            args.refetch_interval_secs
                .or(file.refetch_interval_secs)
                .unwrap_or(30),
        ),
        extra_roots_pem,
    }))
}

fn read_file(path: &Path) -> Result<FileConfig, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("tessera-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\nmax_concurrent_tasks = 7\nallow_dirs = [\"/srv\"]\n",
        )
        .unwrap();
        let cfg = Config::load(ServeArgs {
            config: Some(file.clone()),
            max_concurrent_tasks: Some(2),
            ..ServeArgs::default()
        })
        .unwrap();
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.max_concurrent_tasks, 2);
        assert_eq!(cfg.allow_dirs, [PathBuf::from("/srv")]);
        assert_eq!(cfg.database_url, "sqlite://./tessera-data/tessera.db");
        std::fs::write(&file, "bogus_key = 1\n").unwrap();
        let err = Config::load(ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        })
        .unwrap_err();
        assert!(err.contains("bogus_key"), "{err}");
    }

    #[test]
    fn kubernetes_targets_need_their_section_and_refuse_docker_settings() {
        let dir = std::env::temp_dir().join(format!("tessera-k8s-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.toml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::load(ServeArgs {
                config: Some(file.clone()),
                ..ServeArgs::default()
            })
        };
        let section = "[kubernetes]\nimage = \"tessera:1\"\n";
        // The cluster as the only target.
        let cfg = load(&format!(
            "executor = \"kubernetes\"\nmax_concurrent_tasks = 9\n{section}"
        ))
        .unwrap();
        assert!(!cfg.executor_docker);
        assert_eq!(cfg.targets.len(), 1);
        assert_eq!(cfg.targets[0].kubernetes, Some(true));
        assert_eq!(cfg.targets[0].slots, 9);
        let k = cfg.kubernetes.unwrap();
        assert_eq!(k.settings.access_mode, "ReadWriteOnce");
        assert_eq!(k.settings.namespace, "", "the client's namespace decides");
        assert_eq!(k.pending_timeout, Duration::from_secs(300));
        // Beside Docker.
        let cfg = load(&format!(
            "[[targets]]\nname = \"box\"\nslots = 2\n[[targets]]\nname = \"k8s\"\nslots = 5\nkubernetes = true\n{section}"
        ))
        .unwrap();
        assert!(cfg.executor_docker);
        assert_eq!(cfg.targets[1].kubernetes, Some(true));
        for (bad, says) in [
            ("executor = \"kubernetes\"\n".to_string(), "[kubernetes]"),
            (
                "[[targets]]\nname = \"k\"\nslots = 1\nkubernetes = true\n".into(),
                "[kubernetes]",
            ),
            (
                format!(
                    "[[targets]]\nname = \"k\"\nslots = 1\nkubernetes = true\nuser = \"1000\"\n{section}"
                ),
                "Docker settings",
            ),
            (
                format!("{section}access_mode = \"Sometimes\"\n"),
                "access_mode",
            ),
            (
                format!("{section}requests_per_second = 0\n"),
                "requests_per_second",
            ),
        ] {
            let err = load(&bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn no_auth_is_refused_unless_the_server_listens_on_loopback() {
        let with = |listen: &str| {
            Config::load(ServeArgs {
                listen: Some(listen.parse().unwrap()),
                no_auth: true,
                ..ServeArgs::default()
            })
        };
        for open in ["0.0.0.0:8000", "192.0.2.1:8000", "[::]:8000"] {
            let err = with(open).unwrap_err();
            assert!(err.contains("loopback"), "{open}: {err}");
        }
        for local in ["127.0.0.1:8000", "[::1]:8000"] {
            assert!(with(local).is_ok_and(|c| c.no_auth), "{local}");
        }
    }
}
