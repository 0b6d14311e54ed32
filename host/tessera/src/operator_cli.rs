//! `tessera operator`: reconcile the `tessera.dev` resources of a namespace into a
//! Tessera server (`tessera_operator`), or print their CRDs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct OperatorArgs {
    #[command(subcommand)]
    command: OperatorCommand,
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Watch Task, CronTask, Agent and TesseraConfig resources and keep the server in
    /// step with them.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions (what deploy/kubernetes/crds/ holds).
    Crds,
}

#[derive(Args)]
struct RunArgs {
    /// The Tessera server's URL.
    #[arg(long, env = "TESSERA_SERVER")]
    server: String,
    /// A file holding the token the operator calls the server with (its tasks belong to
    /// the token's group); or TESSERA_TOKEN.
    #[arg(long, env = "TESSERA_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The namespace to watch [default: the kubeconfig context's, or in a pod its own].
    #[arg(long)]
    namespace: Option<String>,
    /// A kubeconfig file [default: in a pod its service account, else $KUBECONFIG or
    /// ~/.kube/config].
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

pub async fn run(args: OperatorArgs) -> ExitCode {
    match args.command {
        OperatorCommand::Crds => match tessera_operator::crd::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        OperatorCommand::Run(a) => match operate(a).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn operate(a: RunArgs) -> Result<(), String> {
    crate::init_tracing(false);
    let token = match (&a.token_file, std::env::var("TESSERA_TOKEN").ok()) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map_err(|e| format!("the token file {}: {e}", f.display()))?
            .trim()
            .to_string(),
        (None, Some(t)) if !t.is_empty() => t,
        _ => return Err("give the server's token: --token-file or TESSERA_TOKEN".into()),
    };
    let client = tessera_kube::client(a.kubeconfig.as_deref()).await?;
    let namespace = a
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    tessera_operator::run(
        client,
        &namespace,
        tessera_operator::TesseraApi::new(&a.server, &token),
    )
    .await;
    Ok(())
}
