//! `mandate`: the coordinator command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Just-in-time, task-scoped authority for AI agents.
#[derive(Parser, Debug)]
#[command(name = "mandate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the coordinator. With no flags: data in ./mandate-data, listening on 127.0.0.1:7468.
    Serve(ServeArgs),
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

/// Exit code for bad configuration (EX_USAGE / EX_CONFIG family).
const EXIT_CONFIG: u8 = 64;

#[expect(clippy::print_stdout, reason = "the command's output")]
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<mandate_server::StartError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
