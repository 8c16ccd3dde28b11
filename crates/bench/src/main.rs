//! `mandate-bench`: load tools for Mandate, kept out of the shipped `mandate` command.
//!
//! `echo`, `authorize`, `delegate`, `mixed` and `revoke-cascade` drive a coordinator over
//! loopback (its own, in this process, unless `--server` is given) and report throughput
//! and latency percentiles; `scale` writes a store of a million live links and measures
//! a real `mandate serve` on it; `gateway` compares calls to an HTTP API straight and
//! through `mandate gateway`; `soak` samples a coordinator's memory and disk over millions
//! of requests; `several` measures three coordinators of one service on etcd.
//! BENCHMARKS.md has the figures and the commands.

/// Prints a line to stdout, ignoring a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod gateway;
mod load;
mod scale;
mod several;
mod soak;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mandate_sdk::{Client, Signer};

/// Load tools for Mandate.
#[derive(Parser, Debug)]
#[command(name = "mandate-bench", version, about)]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    args: load::BenchArgs,
}

/// The coordinator to drive, when not the tool's own.
#[derive(clap::Args, Debug)]
pub(crate) struct Target {
    /// A running coordinator to drive (default: start one in this process).
    #[arg(long, global = true, env = "MANDATE_SERVER")]
    pub(crate) server: Option<String>,
    /// The admin's private key, for a coordinator given with `--server`.
    #[arg(
        long,
        global = true,
        env = "MANDATE_KEY",
        default_value = "mandate-data/admin.key"
    )]
    pub(crate) key: PathBuf,
    /// The admin's agent id, for a coordinator given with `--server`.
    #[arg(
        long,
        global = true,
        env = "MANDATE_AGENT",
        default_value = "spiffe://mandate.local/admin"
    )]
    pub(crate) agent: String,
    /// Machine-readable output: one JSON object per result.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Run the tool's own coordinator on an etcd cluster of this many members, started on
    /// loopback from Debian's `etcd-server` for the run (0: sled in a temporary directory).
    #[arg(long, global = true, default_value_t = 0)]
    pub(crate) etcd_members: usize,
}

impl Target {
    /// A client signing as the admin, for `--server`.
    pub(crate) async fn client(&self, server: &str) -> anyhow::Result<Client> {
        let signer = Signer::from_key_file(&self.agent, &self.key)?;
        let endpoint = mandate_sdk::endpoint(server);
        Client::connect(endpoint.clone(), signer)
            .await
            .with_context(|| format!("cannot reach the coordinator at {endpoint}"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(load::run(cli.args, &cli.target)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
