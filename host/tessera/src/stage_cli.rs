//! `tessera stage in|out|exec`: a task's staging and executors inside its Kubernetes pod
//! (see `tessera_kube::manifest` for the pod's shape).
//!
//! `in` and `out` load the same built-in filer plugins the server uses, with the
//! binding settings the server handed over in the task's Secret, and stage through the
//! runner's own staging functions into the workspace volume (laid out as a task's
//! directory on Docker). `exec` runs one executor: its standard streams from and to
//! files, its real exit code in the container's termination message.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use tessera_core::TaskRecord;
use tessera_kube::manifest::{
    OBJECT_STORE_KEY, RUN_DIR, SECRET_DIR, SECRET_FILES_KEY, SPEC_DIR, STAGING_KEY,
    STAGING_SECRET_KEY, WORKSPACE_DIR,
};
use tessera_runner::staging;
use tessera_runner::task_dir::{TaskDir, plan_mounts};

#[derive(Args)]
pub struct StageArgs {
    #[command(subcommand)]
    command: StageCommand,
}

#[derive(Subcommand)]
enum StageCommand {
    /// Stage a task's inputs into its workspace (the pod's first container).
    In(InOut),
    /// Stage a task's outputs out of its workspace (the pod's last container); prints
    /// what was staged as one JSON line.
    Out(InOut),
    /// Run one executor of the task (between them).
    Exec(ExecArgs),
}

#[derive(Args)]
struct InOut {
    /// The task (for the filers' requests).
    #[arg(long)]
    task: String,
    /// Copy this binary into DIR as `tessera`, for the executors' `tessera stage exec`.
    #[arg(long, value_name = "DIR")]
    install_exec: Option<PathBuf>,
}

#[derive(Args)]
struct ExecArgs {
    /// Which executor of the task (for messages).
    #[arg(long)]
    index: usize,
    #[arg(long)]
    stdin: Option<PathBuf>,
    #[arg(long)]
    stdout: Option<PathBuf>,
    #[arg(long)]
    stderr: Option<PathBuf>,
    /// A failure does not stop the executors after this one.
    #[arg(long)]
    ignore_error: bool,
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// What the task's ConfigMap holds for staging.
#[derive(Serialize, Deserialize)]
pub struct StagingDoc {
    pub task: TaskRecord,
}

/// The object store's connection, as the server hands it to pods (in a Secret).
#[derive(Serialize, Deserialize)]
pub struct PortableObjectStore {
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub path_style: bool,
}

impl PortableObjectStore {
    pub fn of(c: &tessera_s3::S3Config) -> PortableObjectStore {
        PortableObjectStore {
            endpoint: c.endpoint.clone(),
            region: c.region.clone(),
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.expose().to_string(),
            path_style: c.path_style,
        }
    }

    fn config(self) -> tessera_s3::S3Config {
        tessera_s3::S3Config {
            endpoint: self.endpoint,
            region: self.region,
            access_key_id: self.access_key_id,
            secret_access_key: tessera_s3::Secret::new(self.secret_access_key),
            path_style: self.path_style,
        }
    }
}

/// Where `tessera stage exec` marks that an executor failed, so later ones do not run.
fn failed_marker() -> PathBuf {
    Path::new(RUN_DIR).join("failed")
}

pub async fn run(args: StageArgs) -> ExitCode {
    let result = match args.command {
        StageCommand::In(a) => stage(a, true).await,
        StageCommand::Out(a) => stage(a, false).await,
        StageCommand::Exec(a) => return exec(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The last lines of a failed container are its termination message.
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

async fn stage(args: InOut, inputs: bool) -> Result<(), String> {
    if let Some(dir) = &args.install_exec {
        let me = std::env::current_exe().map_err(|e| format!("finding this binary: {e}"))?;
        let to = dir.join("tessera");
        std::fs::copy(&me, &to)
            .map_err(|e| format!("copying {} to {}: {e}", me.display(), to.display()))?;
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    let workspace = Path::new(WORKSPACE_DIR);
    if !workspace.is_dir() {
        // No workspace: this container only installed the wrapper.
        return Ok(());
    }
    let doc = read_optional(&Path::new(SPEC_DIR).join(STAGING_KEY))?
        .ok_or("the task's staging document is missing")?;
    let doc: StagingDoc =
        serde_json::from_str(&doc).map_err(|e| format!("the staging document: {e}"))?;
    if doc.task.id != args.task {
        return Err(format!(
            "the staging document is task {}'s, not {}'s",
            doc.task.id, args.task
        ));
    }
    let secret_dir = Path::new(SECRET_DIR);
    let filers = open_filers(
        read_optional(&secret_dir.join(STAGING_SECRET_KEY))?,
        read_optional(&secret_dir.join(OBJECT_STORE_KEY))?,
    )
    .await?;
    let task = doc.task;
    let dir = TaskDir {
        root: workspace.to_path_buf(),
    };
    let report = tokio::task::spawn_blocking(move || -> Result<serde_json::Value, String> {
        if inputs {
            let mounts = plan_mounts(&task);
            let staged = staging::stage_in(&task, &dir, &mounts, &[], filers.as_ref())
                .map_err(|e| format!("staging inputs: {e}"))?;
            place_secret_files(&dir, secret_dir)?;
            Ok(serde_json::json!({"bytes": staged.bytes, "files": staged.files}))
        } else {
            let (outputs, staged, errors) = staging::stage_out(&task, &dir, &[], filers.as_ref());
            Ok(serde_json::json!({
                "outputs": outputs,
                "bytes": staged.bytes,
                "files": staged.files,
                "errors": errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }))
        }
    })
    .await
    .map_err(|e| format!("staging stopped: {e}"))??;
    println!("{report}");
    Ok(())
}

/// The task's secret files, from its Secret into its workspace (as on Docker).
fn place_secret_files(dir: &TaskDir, secret_dir: &Path) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Entry {
        key: String,
        path: String,
        mode: u32,
    }
    let Some(index) = read_optional(&secret_dir.join(SECRET_FILES_KEY))? else {
        return Ok(());
    };
    let entries: Vec<Entry> =
        serde_json::from_str(&index).map_err(|e| format!("the secret files' index: {e}"))?;
    let mut files = Vec::new();
    for e in entries {
        let content = std::fs::read_to_string(secret_dir.join(&e.key))
            .map_err(|err| format!("secret file {}: {err}", e.path))?;
        files.push((e.path, e.mode, content));
    }
    staging::place_secret_files(dir, &files).map_err(|e| format!("secret files: {e}"))
}

/// The filers the server handed over, loaded from this binary's built-in plugins.
async fn open_filers(
    filers: Option<String>,
    object_store: Option<String>,
) -> Result<std::sync::Arc<dyn tessera_core::staging::Filers>, String> {
    let filers: Vec<tessera_registry::PortableFiler> = match filers {
        Some(s) => serde_json::from_str(&s).map_err(|e| format!("the filers document: {e}"))?,
        None => Vec::new(),
    };
    for f in &filers {
        let builtin = crate::builtins::BUILTINS.iter().any(|b| {
            tessera_registry::parse_manifest(b.manifest)
                .is_ok_and(|m| m.name == f.plugin && m.version == f.version)
        });
        if !builtin {
            return Err(format!(
                "filer {}@{} (for {}://) is not built into this image's tessera; \
                 run the image of the server's version",
                f.plugin, f.version, f.scheme
            ));
        }
    }
    let objects: Option<std::sync::Arc<dyn tessera_objstore::ObjectStore>> = match object_store {
        Some(s) => {
            let portable: PortableObjectStore =
                serde_json::from_str(&s).map_err(|e| format!("the object store document: {e}"))?;
            let client = tessera_s3::S3Client::new(portable.config())
                .map_err(|e| format!("the S3 store: {e}"))?;
            Some(std::sync::Arc::new(
                tessera_s3::BlockingS3::new(client, tokio::runtime::Handle::current())
                    .map_err(|e| format!("the S3 store: {e}"))?,
            ))
        }
        None => None,
    };
    // The registry over a throwaway store in the pod's scratch space: the filers serve
    // as default bindings, exactly as the server's defaults do.
    let db = Path::new(RUN_DIR).join(format!("stage-{}.db", std::process::id()));
    let store = tessera_store::Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .map_err(|e| format!("the staging store: {e}"))?;
    let runtime = tessera_plugin_runtime::PluginRuntime::new(
        tessera_plugin_runtime::RuntimeConfig::default(),
    )
    .map_err(|e| format!("the plugin runtime: {e}"))?;
    let registry = tessera_registry::Registry::open(
        store,
        runtime,
        crate::builtins::BUILTINS,
        objects,
        filers.into_iter().map(|f| f.into_default()).collect(),
    )
    .await
    .map_err(|e| format!("loading the filers: {e}"))?;
    Ok(std::sync::Arc::new(registry))
}

/// Write the executor's result where the kubelet reports it.
fn terminate_with(code: Option<i64>) {
    let message = tessera_kube::observe::wrapped_exit_message(code);
    if let Err(e) = std::fs::write("/dev/termination-log", &message) {
        eprintln!("tessera: writing the termination message: {e}");
    }
}

fn exec(args: ExecArgs) -> ExitCode {
    if failed_marker().exists() {
        terminate_with(None);
        return ExitCode::SUCCESS;
    }
    let code = run_command(&args);
    terminate_with(Some(code));
    if code != 0
        && !args.ignore_error
        && let Err(e) = std::fs::write(failed_marker(), code.to_string())
    {
        eprintln!("tessera: marking executor {} failed: {e}", args.index);
        // The pod then stops here instead of running the next executors.
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Copy a child's stream to ours and, when asked, to a file.
fn tee(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
    mut file: Option<std::fs::File>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = to.write_all(&buf[..n]);
                    let _ = to.flush();
                    if let Some(f) = file.as_mut() {
                        let _ = f.write_all(&buf[..n]);
                    }
                }
            }
        }
    })
}

/// Run the executor's command; its exit code as a shell would report it (127: not
/// found, 128+N: killed by signal N).
fn run_command(args: &ExecArgs) -> i64 {
    let mut cmd = std::process::Command::new(&args.command[0]);
    cmd.args(&args.command[1..]);
    match &args.stdin {
        Some(p) => match std::fs::File::open(p) {
            Ok(f) => {
                cmd.stdin(f);
            }
            Err(e) => {
                eprintln!(
                    "tessera: executor {}: stdin {}: {e}",
                    args.index,
                    p.display()
                );
                return 1;
            }
        },
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    let open = |p: &Option<PathBuf>| -> Result<Option<std::fs::File>, i64> {
        match p {
            None => Ok(None),
            Some(p) => std::fs::File::create(p).map(Some).map_err(|e| {
                eprintln!("tessera: executor {}: {}: {e}", args.index, p.display());
                1
            }),
        }
    };
    let (out_file, err_file) = match (open(&args.stdout), open(&args.stderr)) {
        (Ok(o), Ok(e)) => (o, e),
        (Err(c), _) | (_, Err(c)) => return c,
    };
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tessera: executor {}: {}: {e}", args.index, args.command[0]);
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    let mut threads = Vec::new();
    if let Some(o) = child.stdout.take() {
        threads.push(tee(o, std::io::stdout(), out_file));
    }
    if let Some(e) = child.stderr.take() {
        threads.push(tee(e, std::io::stderr(), err_file));
    }
    let status = child.wait();
    for t in threads {
        let _ = t.join();
    }
    match status {
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(c), _) => i64::from(c),
            (None, Some(sig)) => 128 + i64::from(sig),
            (None, None) => 1,
        },
        Err(e) => {
            eprintln!("tessera: executor {}: waiting: {e}", args.index);
            1
        }
    }
}
