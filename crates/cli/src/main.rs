//! `mandate`: run the coordinator, and talk to it.
//!
//! Exit codes: 0 success; 1 a negative answer (a denial, a broken audit chain);
//! 2 usage error; 3 the coordinator refused the call or could not be reached; 64 the
//! server could not start with this configuration.

#![expect(
    clippy::print_stdout,
    reason = "a command-line tool prints its results"
)]

mod audit;
mod client;
mod tree;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Just-in-time, task-scoped authority for AI agents.
#[derive(Parser, Debug)]
#[command(name = "mandate", version, about)]
struct Cli {
    #[command(flatten)]
    connection: client::Connection,
    #[command(subcommand)]
    command: Command,
}

/// How a client command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It did what was asked.
    Ok,
    /// The answer was negative (exit code 1).
    Denied,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the coordinator. With no flags: data in ./mandate-data, listening on 127.0.0.1:7468.
    Serve(ServeArgs),
    /// Read the audit log: query, tail, verify, export.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Draw the delegation tree of a task.
    Tree(tree::TreeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "MANDATE_LISTEN", default_value_t = SocketAddr::from(([127, 0, 0, 1], mandate_server::DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Data directory (store, coordinator key, admin key); created on first start.
    #[arg(long, env = "MANDATE_DATA_DIR", default_value = "mandate-data")]
    data_dir: PathBuf,
    /// Trust domain of the built-in admin and coordinator identities.
    #[arg(long, env = "MANDATE_TRUST_DOMAIN", default_value = "mandate.local")]
    trust_domain: String,
}

/// Exit code for a negative answer.
const EXIT_DENIED: u8 = 1;
/// Exit code when the coordinator refused the call or could not be reached.
const EXIT_FAILED: u8 = 3;
/// Exit code for bad configuration (EX_USAGE / EX_CONFIG family).
const EXIT_CONFIG: u8 = 64;

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = mandate_server::Config::new(args.listen, args.data_dir);
    config.trust_domain = args.trust_domain;
    let server = mandate_server::start(config).await?;
    println!("mandate coordinator listening on {}", server.local_addr);
    println!("  data directory:   {}", server.data_dir.display());
    println!("  admin agent:      {}", server.admin_id);
    println!("  admin key:        {}", server.admin_key_path.display());
    println!("  coordinator key:  {}", server.coordinator_key);
    println!(
        "  health/reflection: grpcurl -plaintext {} list",
        server.local_addr
    );
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let conn = cli.connection;
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await.map(|()| Outcome::Ok),
            Command::Audit(cmd) => audit::run(cmd, &conn).await,
            Command::Tree(args) => tree::run(args, &conn).await,
        }
    });
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Denied) => ExitCode::from(EXIT_DENIED),
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<mandate_server::StartError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
    }
}
