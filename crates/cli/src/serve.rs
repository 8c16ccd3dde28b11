//! `mandate serve` and `mandate config print`: the coordinator's settings from flags, the
//! environment, a TOML file and defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::LogFormat;

/// The coordinator's settings as flags (each also an environment variable and a key of the
/// `--config` file; a flag wins over the environment, which wins over the file).
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML): keys are the flag names with `_` (`data_dir = "..."`);
    /// relative paths in it are relative to the file. Unknown keys are refused.
    #[arg(long, env = "MANDATE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Address to listen on; port 0 picks a free one [default: 127.0.0.1:7468].
    #[arg(long, env = "MANDATE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory (store, coordinator key, admin key); created on first start
    /// [default: mandate-data].
    #[arg(long, env = "MANDATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Trust domain of the built-in admin and coordinator identities [default:
    /// mandate.local].
    #[arg(long, env = "MANDATE_TRUST_DOMAIN")]
    trust_domain: Option<String>,
    /// Another trust domain whose agents an admin may register (repeat for several;
    /// comma-separated in the environment). Agents of any other domain are refused.
    #[arg(
        long = "federated-trust-domain",
        env = "MANDATE_FEDERATED_TRUST_DOMAINS",
        value_delimiter = ','
    )]
    federated_trust_domains: Option<Vec<String>>,
    /// Directory of `*.cedar` policy files (default: the built-in policy set). Reloaded on
    /// SIGHUP and by `mandate policy reload`.
    #[arg(long, env = "MANDATE_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// TLS certificate chain (PEM) of the listener; reloaded on SIGHUP.
    #[arg(long, env = "MANDATE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the listener; reloaded on SIGHUP.
    #[arg(long, env = "MANDATE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// CA (PEM) for client certificates: every client must present one (mutual TLS), and
    /// a certificate's SPIFFE id must be the agent the request is signed as.
    #[arg(long, env = "MANDATE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (only behind a TLS-terminating proxy).
    #[arg(long, env = "MANDATE_INSECURE_PLAINTEXT", num_args = 0..=1, default_missing_value = "true")]
    insecure_plaintext: Option<bool>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (plain HTTP; off by default).
    #[arg(long, env = "MANDATE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Audit records per sealed segment file [default: 8192].
    #[arg(long, env = "MANDATE_AUDIT_SEGMENT_RECORDS")]
    audit_segment_records: Option<usize>,
    /// How often the coordinator signs an `audit.checkpoint` record of the log's head
    /// (`90s`, `15m`, `1h`; `0` turns it off) [default: 1h].
    #[arg(long, env = "MANDATE_AUDIT_CHECKPOINT_INTERVAL")]
    audit_checkpoint_interval: Option<String>,
    /// How long expired links and tasks stay readable (`GetTask`, tree views) before the
    /// collection pass removes them; the audit log keeps their history [default: 24h].
    #[arg(long, env = "MANDATE_RETAIN_HISTORY")]
    retain_history: Option<String>,
    /// The store's page cache in MiB: enough for the hot records (agents, live tasks and
    /// links) [default: 128].
    #[arg(long, env = "MANDATE_STORE_CACHE_MIB")]
    store_cache_mib: Option<u64>,
    /// sled's files are rewritten with only the live data, while serving, once they pass
    /// this many MiB and twice what the last rewrite left [default: 64].
    #[arg(long, env = "MANDATE_STORE_REWRITE_MIB")]
    store_rewrite_mib: Option<u64>,
    /// Where the state lives: `sled` (in the data directory) or etcd,
    /// `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (`etcds://` for TLS) [default: sled].
    #[arg(long, env = "MANDATE_STORE")]
    store: Option<String>,
    /// CA (PEM) of the etcd members' certificates (`etcds://`).
    #[arg(long, env = "MANDATE_ETCD_CA_FILE")]
    etcd_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd, with --etcd-key-file.
    #[arg(long, env = "MANDATE_ETCD_CERT_FILE")]
    etcd_cert_file: Option<PathBuf>,
    /// Client key (PEM) for etcd.
    #[arg(long, env = "MANDATE_ETCD_KEY_FILE")]
    etcd_key_file: Option<PathBuf>,
    /// etcd user, when etcd has authentication on; the password is read from
    /// `MANDATE_ETCD_PASSWORD` or --etcd-password-file, never from a flag.
    #[arg(long, env = "MANDATE_ETCD_USER")]
    etcd_user: Option<String>,
    /// A file holding the etcd user's password (one line).
    #[arg(long, env = "MANDATE_ETCD_PASSWORD_FILE")]
    etcd_password_file: Option<PathBuf>,
    /// How often the collection pass runs (expired state, nonces, approvals) [default: 60s].
    #[arg(long, env = "MANDATE_GC_INTERVAL")]
    gc_interval: Option<String>,
    /// Run as one of several coordinators sharing the etcd store: how the others reach
    /// this one (`HOST:PORT`, or `auto` for the address it listens on). It forwards calls
    /// to the leader until it is elected (docs/DEPLOYMENT.md, "Several coordinators").
    #[arg(long, env = "MANDATE_ADVERTISE")]
    advertise: Option<String>,
    /// The leader's lease with --advertise (`5s`; whole seconds, at least 2): how long a
    /// lost leader may go unnoticed before another takes over [default: 5s].
    #[arg(long, env = "MANDATE_LEADER_LEASE")]
    leader_lease: Option<String>,
    /// With --advertise over TLS: the CA (PEM) that signed the other coordinators'
    /// certificates, which a forwarding coordinator checks the leader's against.
    #[arg(long, env = "MANDATE_PEER_CA")]
    peer_ca: Option<PathBuf>,
}

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    trust_domain: Option<String>,
    federated_trust_domains: Option<Vec<String>>,
    policy_dir: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    insecure_plaintext: Option<bool>,
    audit_checkpoint_interval: Option<String>,
    retain_history: Option<String>,
    gc_interval: Option<String>,
    advertise: Option<String>,
    leader_lease: Option<String>,
    peer_ca: Option<PathBuf>,
    store_cache_mib: Option<u64>,
    store_rewrite_mib: Option<u64>,
    store: Option<String>,
    etcd_ca_file: Option<PathBuf>,
    etcd_cert_file: Option<PathBuf>,
    etcd_key_file: Option<PathBuf>,
    etcd_user: Option<String>,
    etcd_password_file: Option<PathBuf>,
    audit_segment_records: Option<usize>,
    metrics_listen: Option<SocketAddr>,
    log_format: Option<LogFormat>,
}

/// Where a setting's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Env => "environment",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// One effective setting, for `mandate config print`.
#[derive(Debug)]
struct Shown {
    key: &'static str,
    /// The TOML value, or `None` when unset.
    value: Option<String>,
    source: Source,
}

/// The effective settings.
pub(crate) struct Resolved {
    pub(crate) server: mandate_server::Config,
    /// With several coordinators: the advertised address (`None`: where it listens) and
    /// the leader lease.
    pub(crate) ha: Option<(Option<String>, std::time::Duration)>,
    pub(crate) log_format: LogFormat,
    shown: Vec<Shown>,
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_path(p: &Path) -> String {
    toml_string(&p.display().to_string())
}

/// Reads the file named by `args.config`, if any.
fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration `{}`", path.display()))?;
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "`{}`: {}",
            path.display(),
            e.to_string().trim_end().replace('\n', " ")
        )
    })?;
    // Paths in the file are relative to it, wherever the command runs.
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [
        &mut file.data_dir,
        &mut file.policy_dir,
        &mut file.tls_cert,
        &mut file.tls_key,
        &mut file.tls_client_ca,
        &mut file.peer_ca,
        &mut file.etcd_ca_file,
        &mut file.etcd_cert_file,
        &mut file.etcd_key_file,
        &mut file.etcd_password_file,
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(file)
}

struct Picker<'a> {
    sources: &'a dyn Fn(&str) -> Option<ValueSource>,
    shown: Vec<Shown>,
}

impl Picker<'_> {
    /// flag > environment > file > default.
    fn pick<T>(
        &mut self,
        key: &'static str,
        arg: Option<T>,
        file: Option<T>,
        default: Option<T>,
        render: impl Fn(&T) -> String,
    ) -> Option<T> {
        let (value, source) = match (arg, file) {
            (Some(v), _) => {
                let source = match (self.sources)(key) {
                    Some(ValueSource::EnvVariable) => Source::Env,
                    _ => Source::Flag,
                };
                (Some(v), source)
            }
            (None, Some(v)) => (Some(v), Source::File),
            (None, None) => (default, Source::Default),
        };
        self.shown.push(Shown {
            key,
            value: value.as_ref().map(render),
            source,
        });
        value
    }
}

/// Resolves the settings. `sources` tells, for an argument id, whether clap took it from
/// the command line or the environment; `log_format` is the global flag's value (`None`
/// when it was left at its default).
pub(crate) fn resolve(
    args: ServeArgs,
    log_format: Option<(LogFormat, Source)>,
    sources: &dyn Fn(&str) -> Option<ValueSource>,
) -> anyhow::Result<Resolved> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let mut p = Picker {
        sources,
        shown: Vec::new(),
    };
    let store = store_choice(&mut p, &args, &file)?;
    let listen = p
        .pick(
            "listen",
            args.listen,
            file.listen,
            Some(SocketAddr::from((
                [127, 0, 0, 1],
                mandate_server::DEFAULT_PORT,
            ))),
            |a| toml_string(&a.to_string()),
        )
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], mandate_server::DEFAULT_PORT)));
    let data_dir = p
        .pick(
            "data_dir",
            args.data_dir,
            file.data_dir,
            Some(PathBuf::from("mandate-data")),
            |d| toml_path(d),
        )
        .unwrap_or_else(|| PathBuf::from("mandate-data"));
    let mut config = mandate_server::Config::new(listen, data_dir);
    if let Some(domain) = p.pick(
        "trust_domain",
        args.trust_domain,
        file.trust_domain,
        Some(config.trust_domain.clone()),
        |d| toml_string(d),
    ) {
        config.trust_domain = domain;
    }
    config.federated_trust_domains = p
        .pick(
            "federated_trust_domains",
            args.federated_trust_domains,
            file.federated_trust_domains,
            Some(Vec::new()),
            |v| {
                let items: Vec<String> = v.iter().map(|d| toml_string(d)).collect();
                format!("[{}]", items.join(", "))
            },
        )
        .unwrap_or_default();
    config.policy_dir = p.pick("policy_dir", args.policy_dir, file.policy_dir, None, |d| {
        toml_path(d)
    });
    let cert = p.pick("tls_cert", args.tls_cert, file.tls_cert, None, |d| {
        toml_path(d)
    });
    let key = p.pick("tls_key", args.tls_key, file.tls_key, None, |d| {
        toml_path(d)
    });
    let client_ca = p.pick(
        "tls_client_ca",
        args.tls_client_ca,
        file.tls_client_ca,
        None,
        |d| toml_path(d),
    );
    config.tls = match (cert, key, client_ca) {
        (Some(cert), Some(key), client_ca) => Some(mandate_tls::ServerTlsFiles {
            cert,
            key,
            client_ca,
        }),
        (None, None, None) => None,
        (None, None, Some(_)) => {
            anyhow::bail!("tls_client_ca needs tls_cert and tls_key (mutual TLS is TLS first)")
        }
        _ => anyhow::bail!("tls_cert and tls_key go together: give both or neither"),
    };
    config.insecure_plaintext = p
        .pick(
            "insecure_plaintext",
            args.insecure_plaintext,
            file.insecure_plaintext,
            Some(false),
            bool::to_string,
        )
        .unwrap_or(false);
    config.metrics_listen = p.pick(
        "metrics_listen",
        args.metrics_listen,
        file.metrics_listen,
        None,
        |a| toml_string(&a.to_string()),
    );
    let sealing = mandate_store::AuditSealing::default();
    let per_segment = p
        .pick(
            "audit_segment_records",
            args.audit_segment_records,
            file.audit_segment_records,
            Some(sealing.records_per_segment),
            usize::to_string,
        )
        .unwrap_or(sealing.records_per_segment);
    anyhow::ensure!(per_segment > 0, "audit_segment_records is at least 1");
    config.audit_sealing = mandate_store::AuditSealing {
        records_per_segment: per_segment,
    };
    let interval = p
        .pick(
            "audit_checkpoint_interval",
            args.audit_checkpoint_interval,
            file.audit_checkpoint_interval,
            Some("1h".to_owned()),
            |s| toml_string(s),
        )
        .unwrap_or_default();
    config.audit_checkpoint_interval = std::time::Duration::from_millis(
        crate::input::parse_ttl(&interval).context("audit_checkpoint_interval")?,
    );
    let retain = p
        .pick(
            "retain_history",
            args.retain_history,
            file.retain_history,
            Some("24h".to_owned()),
            |s| toml_string(s),
        )
        .unwrap_or_default();
    config.retain_history_ms = crate::input::parse_ttl(&retain).context("retain_history")?;
    let cache = p
        .pick(
            "store_cache_mib",
            args.store_cache_mib,
            file.store_cache_mib,
            Some(mandate_store::DEFAULT_CACHE_BYTES >> 20),
            u64::to_string,
        )
        .unwrap_or(mandate_store::DEFAULT_CACHE_BYTES >> 20);
    anyhow::ensure!(
        (8..=1 << 20).contains(&cache),
        "store_cache_mib is between 8 and 1048576"
    );
    config.store_cache_bytes = cache << 20;
    let rewrite = p
        .pick(
            "store_rewrite_mib",
            args.store_rewrite_mib,
            file.store_rewrite_mib,
            Some(mandate_store::DEFAULT_REWRITE_FLOOR >> 20),
            u64::to_string,
        )
        .unwrap_or(mandate_store::DEFAULT_REWRITE_FLOOR >> 20);
    anyhow::ensure!(
        rewrite <= 1 << 30,
        "store_rewrite_mib is at most 1073741824"
    );
    config.store_rewrite_bytes = rewrite << 20;
    config.store = store;
    let gc = p
        .pick(
            "gc_interval",
            args.gc_interval,
            file.gc_interval,
            Some("60s".to_owned()),
            |s| toml_string(s),
        )
        .unwrap_or_default();
    config.gc_interval =
        std::time::Duration::from_millis(crate::input::parse_ttl(&gc).context("gc_interval")?);
    anyhow::ensure!(
        config.gc_interval >= std::time::Duration::from_secs(1),
        "gc_interval is at least 1s"
    );
    let advertise = p.pick(
        "advertise",
        args.advertise.clone(),
        file.advertise.clone(),
        None,
        |s| toml_string(s),
    );
    let lease = p
        .pick(
            "leader_lease",
            args.leader_lease.clone(),
            file.leader_lease.clone(),
            Some("5s".to_owned()),
            |s| toml_string(s),
        )
        .unwrap_or_default();
    let lease =
        std::time::Duration::from_millis(crate::input::parse_ttl(&lease).context("leader_lease")?);
    anyhow::ensure!(
        lease >= std::time::Duration::from_secs(2),
        "leader_lease is at least 2s"
    );
    config.peer_ca = p.pick(
        "peer_ca",
        args.peer_ca.clone(),
        file.peer_ca.clone(),
        None,
        |d| toml_path(d),
    );
    let ha = match advertise {
        None => None,
        Some(a) => {
            anyhow::ensure!(
                matches!(config.store, mandate_server::StoreChoice::Etcd(_)),
                "advertise (several coordinators) needs store = \"etcd://...\""
            );
            Some(((a != "auto").then_some(a), lease))
        }
    };
    let (log_format, source) = match (log_format, file.log_format) {
        (Some(given), _) => given,
        (None, Some(f)) => (f, Source::File),
        (None, None) => (LogFormat::Text, Source::Default),
    };
    p.shown.push(Shown {
        key: "log_format",
        value: Some(toml_string(match log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })),
        source,
    });
    config.reload_on_sighup = true;
    Ok(Resolved {
        server: config,
        ha,
        log_format,
        shown: p.shown,
    })
}

/// The `store` setting and, for etcd, how to reach it.
fn store_choice(
    p: &mut Picker<'_>,
    args: &ServeArgs,
    file: &FileConfig,
) -> anyhow::Result<mandate_server::StoreChoice> {
    let store = p
        .pick(
            "store",
            args.store.clone(),
            file.store.clone(),
            Some("sled".to_owned()),
            |s| toml_string(s),
        )
        .unwrap_or_default();
    let path = |p: &mut Picker<'_>, key, arg: &Option<PathBuf>, file: &Option<PathBuf>| {
        p.pick(key, arg.clone(), file.clone(), None, |v| toml_path(v))
    };
    let ca = path(p, "etcd_ca_file", &args.etcd_ca_file, &file.etcd_ca_file);
    let cert = path(
        p,
        "etcd_cert_file",
        &args.etcd_cert_file,
        &file.etcd_cert_file,
    );
    let key = path(p, "etcd_key_file", &args.etcd_key_file, &file.etcd_key_file);
    let user = p.pick(
        "etcd_user",
        args.etcd_user.clone(),
        file.etcd_user.clone(),
        None,
        |s| toml_string(s),
    );
    let password_file = path(
        p,
        "etcd_password_file",
        &args.etcd_password_file,
        &file.etcd_password_file,
    );
    if store == "sled" {
        anyhow::ensure!(
            ca.is_none() && cert.is_none() && key.is_none() && user.is_none(),
            "the etcd_* settings need store = \"etcd://...\""
        );
        return Ok(mandate_server::StoreChoice::Sled);
    }
    let mut etcd = mandate_store::EtcdConfig::parse(&store)
        .map_err(|e| anyhow::anyhow!("store: {e} (or `sled`)"))?;
    let read = |path: &Path| {
        std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))
    };
    etcd.ca_pem = ca.as_deref().map(read).transpose()?;
    etcd.client_cert_pem = match (cert, key) {
        (Some(c), Some(k)) => Some((read(&c)?, read(&k)?)),
        (None, None) => None,
        _ => anyhow::bail!("etcd_cert_file and etcd_key_file go together"),
    };
    if let Some(user) = user {
        let password = match (password_file, std::env::var("MANDATE_ETCD_PASSWORD")) {
            (Some(f), _) => String::from_utf8(read(&f)?)
                .context("the etcd password file is not UTF-8")?
                .trim_end_matches(['\r', '\n'])
                .to_owned(),
            (None, Ok(p)) => p,
            (None, Err(_)) => anyhow::bail!(
                "etcd_user needs a password: MANDATE_ETCD_PASSWORD or etcd_password_file"
            ),
        };
        etcd.credentials = Some((user, password));
    }
    Ok(mandate_server::StoreChoice::Etcd(Box::new(etcd)))
}

impl Resolved {
    /// The effective configuration as a TOML file that `--config` accepts, each key
    /// annotated with where its value came from.
    pub(crate) fn print(&self) {
        out!(
            "# The effective configuration of `mandate serve` (flag > environment > file > default)."
        );
        for s in &self.shown {
            match &s.value {
                Some(v) => out!("{} = {v}  # {}", s.key, s.source.as_str()),
                None => out!("# {} is not set", s.key),
            }
        }
    }
}

/// Runs the coordinator until SIGTERM or Ctrl-C.
pub(crate) async fn serve(
    config: mandate_server::Config,
    ha: Option<(Option<String>, std::time::Duration)>,
) -> anyhow::Result<()> {
    if let Some((advertise, lease)) = ha {
        let events = std::sync::Arc::new(Printed {
            tls: config.tls.is_some(),
        });
        mandate_server::serve_ha(config, advertise, lease, events, crate::shutdown_signal())
            .await?;
        return Ok(());
    }
    let tls = config.tls.is_some();
    let server = mandate_server::start(config).await?;
    out!("mandate coordinator listening on {}", server.local_addr);
    details(&server, tls);
    crate::shutdown_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await?;
    Ok(())
}

/// What `serve` prints as one of several coordinators.
struct Printed {
    tls: bool,
}

impl mandate_server::HaEvents for Printed {
    fn listening(&self, addr: std::net::SocketAddr) {
        out!("mandate coordinator listening on {addr} (forwarding to the leader until elected)");
    }

    fn leading(&self, server: &mandate_server::Server) {
        out!("elected: this coordinator leads the service");
        details(server, self.tls);
    }
}

/// The server's details, printed once it serves.
fn details(server: &mandate_server::Server, tls: bool) {
    out!("  data directory:   {}", server.data_dir.display());
    out!("  admin agent:      {}", server.admin_id);
    out!("  admin key:        {}", server.admin_key_path.display());
    out!("  coordinator key:  {}", server.coordinator_key);
    out!("  policy set:       {}", server.policy_summary());
    if let Some(addr) = server.metrics_addr {
        out!("  metrics:          http://{addr}/metrics");
    }
    if tls {
        out!(
            "  health/reflection: grpcurl -cacert CA.pem {} list",
            server.local_addr
        );
    } else {
        out!(
            "  health/reflection: grpcurl -plaintext {} list",
            server.local_addr
        );
    }
}
