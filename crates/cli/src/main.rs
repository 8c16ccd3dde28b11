//! `mandate`: run the coordinator, and talk to it.
//!
//! Exit codes: 0 success; 1 a negative answer (a denial, a broken audit chain);
//! 2 usage error; 3 the coordinator refused the call or could not be reached; 64 the
//! server could not start with this configuration.

/// jemalloc: a long-running server frees memory on many threads (tokio workers, sled's
/// flushers, the blocking pool); glibc's per-thread arenas keep much of it, so the
/// process grew with traffic while the live heap stayed flat (BENCHMARKS.md, soak).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Prints a line to stdout, ignoring a closed pipe (`mandate … | head` must not panic).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like [`out!`] without the newline.
macro_rules! out_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod access;
mod agent;
mod approvals;
mod audit;
mod client;
mod console;
mod delegate;
mod input;
mod inspect;
mod invoke;
mod keys;
mod output;
mod policy;
mod prune;
mod serve;
mod task;
mod tree;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

/// Just-in-time, task-scoped authority for AI agents.
#[derive(Parser, Debug)]
#[command(name = "mandate", version, about)]
struct Cli {
    #[command(flatten)]
    connection: client::Connection,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object
    /// per line, for log shippers) [default: text].
    #[arg(long, global = true, env = "MANDATE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the log subscriber: `RUST_LOG` filters (default `info`), stderr receives.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// An error with its causes, each said once: a cause whose text the message already holds
/// (errors that print their source and also return it) is not repeated.
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// How a client command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It did what was asked.
    Ok,
    /// The answer was negative (exit code 1).
    Denied,
    /// Exit with this code (a child's, for `mandate gateway stdio`).
    Code(u8),
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the coordinator. With no flags: data in ./mandate-data, listening on 127.0.0.1:7468.
    Serve(serve::ServeArgs),
    /// The coordinator's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Rewrite the store's state into a fresh generation now, keeping everything and
    /// giving back the space of old versions sled still holds (with the coordinator
    /// stopped; a running coordinator does this by itself, `store_rewrite_mib`).
    CompactStore {
        /// The coordinator's data directory.
        #[arg(long, env = "MANDATE_DATA_DIR", default_value = "mandate-data")]
        data_dir: PathBuf,
    },
    /// Remove sealed audit segments past their retention (with the coordinator stopped):
    /// whole segments ending before a record, archived first if asked, after a signed
    /// `audit.pruned` record of what goes is written (docs/AUDIT.md, "Retention").
    PruneAudit {
        /// The coordinator's data directory.
        #[arg(long, env = "MANDATE_DATA_DIR", default_value = "mandate-data")]
        data_dir: PathBuf,
        /// Remove the sealed segments that end before this record (sequence number).
        #[arg(long)]
        before: u64,
        /// Copy the segments here (synced) before removing them.
        #[arg(long)]
        archive_to: Option<PathBuf>,
        /// The coordinator's trust domain (names it as the record's actor).
        #[arg(long, env = "MANDATE_TRUST_DOMAIN", default_value = "mandate.local")]
        trust_domain: String,
    },
    /// Replace the coordinator's signing key (with the coordinator stopped). The old key
    /// stays in the trust bundle until every link it sealed has expired.
    RotateKey {
        /// The coordinator's data directory.
        #[arg(long, env = "MANDATE_DATA_DIR", default_value = "mandate-data")]
        data_dir: PathBuf,
        /// How long verifiers keep trusting the old key: at least the longest link
        /// lifetime (24 h by default) plus the clock skew.
        #[arg(long, default_value = "25h")]
        trust_old_for: String,
    },
    /// Put HTTP APIs and MCP servers behind Mandate: every call needs a chain and a proof
    /// (docs/GATEWAY.md).
    Gateway(GatewayArgs),
    /// Read the audit log: query, tail, verify, export.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Draw the delegation tree of a task.
    Tree(tree::TreeArgs),
    /// Create an Ed25519 key pair for an agent.
    Keygen(agent::KeygenArgs),
    /// Register, show, list and disable agents.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Start, show, list, complete and fail tasks.
    #[command(subcommand)]
    Task(task::TaskCommand),
    /// Delegate a narrower scope from your chain to a registered agent.
    Delegate(delegate::DelegateArgs),
    /// Get a fresh root link for a task you started.
    Renew {
        /// Task id.
        task: String,
        /// Lifetime of the new link.
        #[arg(long, default_value = "5m")]
        ttl: String,
    },
    /// Revoke a link and everything below it.
    Revoke {
        /// Link id.
        link: String,
        /// Why.
        #[arg(long, default_value = "revoked from the CLI")]
        reason: String,
    },
    /// Sign an invocation proof for one tool call with your key.
    Prove(invoke::ProveArgs),
    /// Ask the coordinator whether a call may proceed (as the tool; exit 1 when denied).
    Authorize(invoke::AuthorizeArgs),
    /// Decode and explain a chain or invocation proof.
    Inspect(inspect::InspectArgs),
    /// The policy set: show, reload, validate a directory offline, print the schema or the
    /// default set.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// The operator console: a web page on this machine for tasks and their trees,
    /// agents, approvals, the audit log and the access review, acting as you (--key).
    Console(console::ConsoleArgs),
    /// The access review: who can make a call now, live authority, exposure over a window.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// The service's coordinator keys (the trust bundle): list, add an instance's key,
    /// retire one.
    #[command(subcommand)]
    CoordinatorKeys(keys::KeysCommand),
    /// Grant requests waiting for approval: list, show, wait.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Approve a pending grant request (quote the hash you reviewed).
    Approve(approvals::DecideArgs),
    /// Deny a pending grant request.
    Deny(approvals::DecideArgs),
    /// Emergency access for a person: time-boxed, audited at high severity, not delegable.
    BreakGlass(approvals::BreakGlassArgs),
}

/// `mandate config ...`.
#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the configuration `mandate serve` would run with these flags, environment and
    /// file, each key with where its value came from.
    Print(serve::ServeArgs),
}

#[derive(clap::Args, Debug)]
struct GatewayArgs {
    /// The gateway's configuration (TOML).
    #[arg(long, env = "MANDATE_GATEWAY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    mode: Option<GatewayMode>,
}

#[derive(clap::Subcommand, Debug)]
enum GatewayMode {
    /// Gate a local MCP server over stdio: run it as a child and relay MCP between this
    /// process's stdin/stdout and it (the agent's MCP client starts this command instead of
    /// the server). Uses the configuration's `[gateway]` section.
    Stdio {
        /// The server's name: its tools are the resources `mcp/<name>/<tool>`.
        #[arg(long)]
        name: String,
        /// A tool decided online (`Authorize`, with its arguments as policy signals): a
        /// name, or a prefix ending in `*` (`*` for all). Repeatable.
        #[arg(long = "online", value_name = "TOOL")]
        online: Vec<String>,
        /// The server's command and arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

async fn gateway(args: GatewayArgs) -> anyhow::Result<Outcome> {
    let Some(path) = args.config else {
        return Err(mandate_gateway::ConfigError::Missing.into());
    };
    let config = mandate_gateway::Config::load(&path)?;
    if let Some(GatewayMode::Stdio {
        name,
        online,
        command,
    }) = args.mode
    {
        let code = mandate_gateway::run_stdio(config, &name, &online, &command).await?;
        return Ok(Outcome::Code(u8::try_from(code).unwrap_or(1)));
    }
    let gateway = mandate_gateway::start(config).await?;
    out!("mandate gateway listening on {}", gateway.local_addr);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut stopped = false;
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        loop {
            tokio::select! {
                () = &mut stop => {
                    stopped = true;
                    break;
                }
                _ = hup.recv() => match gateway.reload_tls() {
                    Ok(true) => tracing::info!("TLS certificate reloaded on SIGHUP"),
                    Ok(false) => tracing::info!("SIGHUP: no TLS files to reload"),
                    Err(e) => tracing::error!(error = %e, "TLS reload refused; the previous certificate stays in use"),
                },
            }
        }
    }
    if !stopped {
        stop.await;
    }
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(Outcome::Ok)
}

fn rotate_key(
    data_dir: &std::path::Path,
    trust_old_for: &str,
    conn: &client::Connection,
) -> anyhow::Result<Outcome> {
    let ms = input::parse_ttl(trust_old_for)?;
    let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
    let r = mandate_server::keys::rotate_coordinator_key(data_dir, ms, now)?;
    if conn.json {
        out!(
            "{}",
            serde_json::json!({
                "coordinator_key": r.new_key.to_string(),
                "retired_key": r.retired.public_key,
                "retired_trusted_until_ms": r.retired.trusted_until_ms,
            })
        );
    } else {
        out!("new coordinator key: {}", r.new_key);
        out!(
            "retired key:         {} (trusted until {})",
            r.retired.public_key,
            client::time(r.retired.trusted_until_ms)
        );
        out!("start the coordinator again; tools pick the new key up from the trust bundle");
        out!(
            "one of several coordinators: add the new key through the running service first (`mandate coordinator-keys add {} --instance ADDRESS`), then retire the old one",
            r.new_key
        );
    }
    Ok(Outcome::Ok)
}

/// Exit code for a negative answer.
const EXIT_DENIED: u8 = 1;
/// Exit code when the coordinator refused the call or could not be reached.
const EXIT_FAILED: u8 = 3;
/// Exit code for bad configuration (EX_USAGE / EX_CONFIG family).
const EXIT_CONFIG: u8 = 64;

pub(crate) async fn shutdown_signal() {
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
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let log_given = cli.log_format.map(|f| {
        let source = match matches.value_source("log_format") {
            Some(clap::parser::ValueSource::EnvVariable) => serve::Source::Env,
            _ => serve::Source::Flag,
        };
        (f, source)
    });
    // `serve` and `config print` read their file before logging starts (it may set the
    // log format).
    let mut serve_config = None;
    let mut log_format = cli.log_format.unwrap_or(LogFormat::Text);
    if let Command::Serve(args) | Command::Config(ConfigCommand::Print(args)) = &cli.command {
        let sub = if matches!(cli.command, Command::Serve(_)) {
            matches.subcommand_matches("serve")
        } else {
            matches
                .subcommand_matches("config")
                .and_then(|m| m.subcommand_matches("print"))
        };
        match serve::resolve(args.clone(), log_given, &|id| {
            sub.and_then(|m| m.value_source(id))
        }) {
            Ok(resolved) => {
                log_format = resolved.log_format;
                serve_config = Some(resolved);
            }
            Err(e) => {
                eprintln!("error: {}", describe(&e));
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    if let (Command::Config(ConfigCommand::Print(_)), Some(resolved)) =
        (&cli.command, &serve_config)
    {
        resolved.print();
        return ExitCode::SUCCESS;
    }
    init_logs(log_format);
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
            Command::Serve(_) | Command::Config(_) => match serve_config {
                Some(resolved) => serve::serve(resolved.server, resolved.ha)
                    .await
                    .map(|()| Outcome::Ok),
                None => Ok(Outcome::Ok),
            },
            Command::Gateway(args) => gateway(args).await,
            Command::Audit(cmd) => audit::run(cmd, &conn).await,
            Command::Tree(args) => tree::run(args, &conn).await,
            Command::RotateKey {
                data_dir,
                trust_old_for,
            } => rotate_key(&data_dir, &trust_old_for, &conn),
            Command::PruneAudit {
                data_dir,
                before,
                archive_to,
                trust_domain,
            } => {
                match prune::prune(&data_dir, &trust_domain, before, archive_to.as_deref())? {
                    None if conn.json => out!("{}", serde_json::json!({"removed": []})),
                    None => out!("nothing to prune: no sealed segment ends before record {before}"),
                    Some(p) if conn.json => out!(
                        "{}",
                        serde_json::json!({
                            "first_removed": p.first,
                            "last_removed": p.last,
                            "removed": p.files,
                            "record": p.record,
                        })
                    ),
                    Some(p) => out!(
                        "records {}-{} removed ({} segment files); audit.pruned is record {}",
                        p.first,
                        p.last,
                        p.files.len(),
                        p.record
                    ),
                }
                Ok(Outcome::Ok)
            }
            Command::CompactStore { data_dir } => {
                let store = data_dir.join("store");
                anyhow::ensure!(
                    store.exists(),
                    "no store in `{}`: is this a data directory?",
                    data_dir.display()
                );
                let (before, after) = mandate_store::SledStore::compact(&store).map_err(|e| {
                    anyhow::anyhow!(
                        "{e} (the coordinator must be stopped: it holds the store's lock)"
                    )
                })?;
                if conn.json {
                    out!(
                        "{}",
                        serde_json::json!({"bytes_before": before, "bytes_after": after})
                    );
                } else {
                    out!(
                        "store compacted: {:.1} MiB -> {:.1} MiB",
                        before as f64 / 1048576.0,
                        after as f64 / 1048576.0
                    );
                }
                Ok(Outcome::Ok)
            }
            Command::Keygen(args) => agent::keygen(&args, &conn),
            Command::Agent(cmd) => agent::agent(cmd, &conn).await,
            Command::Task(cmd) => task::task(cmd, &conn).await,
            Command::Delegate(args) => delegate::delegate(args, &conn).await,
            Command::Renew { task, ttl } => task::renew(task, ttl, &conn).await,
            Command::Revoke { link, reason } => delegate::revoke(link, reason, &conn).await,
            Command::Prove(args) => invoke::prove(&args, &conn),
            Command::Authorize(args) => invoke::authorize(args, &conn).await,
            Command::Inspect(args) => inspect::inspect(args, &conn).await,
            Command::Policy(cmd) => policy::policy(cmd, &conn).await,
            Command::CoordinatorKeys(cmd) => keys::keys(cmd, &conn).await,
            Command::Access(cmd) => access::access(cmd, &conn).await,
            Command::Console(args) => console::console(args, &conn).await,
            Command::Approvals(cmd) => approvals::approvals(cmd, &conn).await,
            Command::Approve(args) => approvals::decide(args, true, &conn).await,
            Command::Deny(args) => approvals::decide(args, false, &conn).await,
            Command::BreakGlass(args) => approvals::break_glass(args, &conn).await,
        }
    });
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Denied) => ExitCode::from(EXIT_DENIED),
        Ok(Outcome::Code(code)) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            if e.downcast_ref::<mandate_server::StartError>().is_some()
                || e.downcast_ref::<mandate_gateway::StartError>().is_some()
                || e.downcast_ref::<mandate_gateway::ConfigError>().is_some()
            {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base64url public key may start with `-`: it is a key, not a flag.
    #[test]
    fn public_keys_starting_with_a_hyphen_are_keys() {
        let key = "-ExampleKeyThatStartsWithAHyphen0123456789abc";
        for args in [
            vec![
                "mandate",
                "coordinator-keys",
                "add",
                key,
                "--instance",
                "c1",
            ],
            vec!["mandate", "coordinator-keys", "retire", key],
            vec![
                "mandate",
                "agent",
                "register",
                "spiffe://mandate.local/a",
                "--public-key",
                key,
            ],
        ] {
            let parsed = Cli::try_parse_from(&args);
            assert!(parsed.is_ok(), "{args:?}: {parsed:?}");
            assert!(format!("{parsed:?}").contains(key));
        }
    }
}
