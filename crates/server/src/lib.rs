//! The Mandate coordinator server: gRPC services over a [`Store`], request authentication
//! as a tower layer, Cedar policy decisions ([`Policies`]), approvals, the revocation
//! feed, health and reflection.
//!
//! [`start`] opens (or creates) a data directory, binds the listener and serves until
//! [`Server::shutdown`]. The `mandate serve` command is a thin wrapper around it.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod coordinator;
mod data_dir;
mod error;
mod forward;
mod ha;
pub mod keys;
mod metrics;
mod policies;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mandate_core::{AgentId, Clock, PublicKey, SystemClock};
use mandate_proto::v1::access_service_server::AccessServiceServer;
use mandate_proto::v1::agent_service_server::AgentServiceServer;
use mandate_proto::v1::approval_service_server::ApprovalServiceServer;
use mandate_proto::v1::audit_service_server::AuditServiceServer;
use mandate_proto::v1::authorization_service_server::AuthorizationServiceServer;
use mandate_proto::v1::policy_service_server::PolicyServiceServer;
use mandate_proto::v1::task_service_server::TaskServiceServer;
use mandate_store::Store;
use tokio::sync::oneshot;

pub use api::Api;
pub use auth::Caller;
pub use coordinator::{
    AuthorizeAsk, AuthorizeOutcome, Coordinator, CoordinatorConfig, ExposureReport, ExposureRow,
    Issued, LiveFilter, LiveLink, Quotas, Registration, Reloaded, RevocationEvent, RevokedLinks,
    Role, Started, TaskRequest, TreeLink, USES_EXHAUSTED,
};
pub use data_dir::{LOCK_FILE, lock_data_dir};
use data_dir::{bootstrap_admin, create_dir, load_or_create_key};
pub use error::{ApiError, ERROR_DOMAIN, ErrorReason};
pub use forward::{ForwardTarget, Forwarding};
pub use ha::{HaError, HaEvents, serve_ha};
pub use metrics::Metrics;
pub use policies::{Decision, LoadedPolicy, Obligations, Policies};

/// How long shutdown waits for calls and connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The port `mandate serve` listens on by default (on 127.0.0.1).
pub const DEFAULT_PORT: u16 = 7468;

/// Server settings. [`Config::new`] gives the defaults.
#[derive(Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Data directory: store, coordinator key, admin key. Created on first start.
    pub data_dir: PathBuf,
    /// Trust domain of the built-in agents (`spiffe://<domain>/admin`, `/coordinator`) and
    /// of every agent registered, unless federated.
    pub trust_domain: String,
    /// Other trust domains whose agents an admin may register (federation).
    pub federated_trust_domains: Vec<String>,
    /// Time source (tests inject a manual clock).
    pub clock: Arc<dyn Clock>,
    /// Clock skew allowed in token verification, ms.
    pub clock_skew_ms: u64,
    /// How old a signed request may be, ms.
    pub request_window_ms: u64,
    /// How far in the future a signed request may be dated, ms.
    pub request_skew_ms: u64,
    /// Interval between revocation feed heartbeats.
    pub heartbeat: Duration,
    /// Largest request message, bytes.
    pub max_message_bytes: usize,
    /// Most requests one agent may make within the request window (60 s by default).
    pub max_requests_per_agent: usize,
    /// Delegation quotas.
    pub quotas: Quotas,
    /// Directory of `*.cedar` policy files; `None` runs the shipped default set.
    pub policy_dir: Option<PathBuf>,
    /// Reload the policy directory on SIGHUP (the `mandate serve` command sets this).
    pub reload_on_sighup: bool,
    /// Start with the policy set recorded in the store when it holds one, rather than
    /// `policy_dir` (which then only seeds a store that holds none): several coordinators
    /// of one service serve one set, the last one installed through any of them
    /// ([`serve_ha`] sets this).
    pub policy_from_store: bool,
    /// This coordinator's name among several of one service (its advertised address;
    /// [`serve_ha`] sets it): it then leads only with a key already added to the service's
    /// coordinator keys (`AddCoordinatorKey`), never adding its own. `None`: it runs alone
    /// and records its own key.
    pub instance: Option<String>,
    /// Longest grant or delegation when no policy obligation is tighter, ms.
    pub max_ttl_ms: u64,
    /// Longest break-glass grant, whatever policy says, ms.
    pub max_break_glass_ms: u64,
    /// How long a grant request waits for approval, ms.
    pub approval_ttl_ms: u64,
    /// How long links and tasks are kept after they expire (tree views, `GetTask`), ms; the
    /// audit log keeps their history for good.
    pub retain_history_ms: u64,
    /// How often the collection pass runs.
    pub gc_interval: Duration,
    /// TLS for the listener (certificate, key, and a client CA for mutual TLS); `None`
    /// serves plaintext, which [`start`] allows only on a loopback address unless
    /// `insecure_plaintext` is set.
    pub tls: Option<mandate_tls::ServerTlsFiles>,
    /// With several coordinators over TLS: the CA (PEM) that signed the other
    /// coordinators' certificates; a forwarding coordinator checks the leader's against it.
    pub peer_ca: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (a TLS-terminating proxy in front).
    pub insecure_plaintext: bool,
    /// How often an `audit.checkpoint` record signs the log's head (skipped when nothing
    /// was written since the last); zero turns it off.
    pub audit_checkpoint_interval: Duration,
    /// Where to serve Prometheus metrics (`GET /metrics`, plain HTTP); `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// When audit records move from the store into sealed segment files (by the
    /// collection pass).
    pub audit_sealing: mandate_store::AuditSealing,
    /// The store's page cache, bytes.
    pub store_cache_bytes: u64,
    /// sled's files are rewritten with only the live data (while serving) once they pass
    /// this size and twice what the last rewrite left
    /// ([`mandate_store::SledStore::rewrite_state`]).
    pub store_rewrite_bytes: u64,
    /// Where the state lives: sled in the data directory (the default) or etcd.
    pub store: StoreChoice,
    /// Whether this coordinator still leads the service, when several share one etcd
    /// (`mandate_store::EtcdLeadership::holds`): once it says no, every call is refused
    /// with `NOT_LEADER` (and an answer computed meanwhile is withheld), so a coordinator
    /// resumed after a pause serves nothing from stale state. `None`: it always leads.
    pub leading: Option<LeaderCheck>,
}

/// Whether this coordinator still leads the service ([`Config::leading`]).
pub type LeaderCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// The backend of the coordinator's state.
#[derive(Clone, Debug, Default)]
pub enum StoreChoice {
    /// sled under `<data_dir>/store`, with the audit journal and segments beside it.
    #[default]
    Sled,
    /// etcd v3 (the coordinator's keys stay in the data directory).
    Etcd(Box<mandate_store::EtcdConfig>),
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("trust_domain", &self.trust_domain)
            .field("tls", &self.tls)
            .field("peer_ca", &self.peer_ca)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults for everything but where to listen and where to keep data.
    pub fn new(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Config {
        Config {
            listen,
            data_dir: data_dir.into(),
            trust_domain: "mandate.local".into(),
            federated_trust_domains: Vec::new(),
            clock: Arc::new(SystemClock),
            clock_skew_ms: 30_000,
            request_window_ms: 60_000,
            request_skew_ms: 30_000,
            heartbeat: Duration::from_secs(2),
            max_message_bytes: 256 * 1024,
            max_requests_per_agent: 100_000,
            quotas: Quotas::default(),
            policy_dir: None,
            reload_on_sighup: false,
            policy_from_store: false,
            instance: None,
            max_ttl_ms: 24 * 3_600_000,
            max_break_glass_ms: 3_600_000,
            approval_ttl_ms: 3_600_000,
            retain_history_ms: 24 * 3_600_000,
            gc_interval: Duration::from_secs(60),
            tls: None,
            peer_ca: None,
            insecure_plaintext: false,
            audit_checkpoint_interval: Duration::from_secs(3600),
            metrics_listen: None,
            audit_sealing: mandate_store::AuditSealing::default(),
            store_cache_bytes: mandate_store::DEFAULT_CACHE_BYTES,
            store_rewrite_bytes: mandate_store::DEFAULT_REWRITE_FLOOR,
            store: StoreChoice::Sled,
            leading: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory could not be created or used.
    #[error("data directory `{path}`: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key could not be created or loaded.
    #[error(transparent)]
    Key(#[from] mandate_core::Error),
    /// The store could not be opened or initialised.
    #[error("store: {0}")]
    Store(#[from] mandate_store::StoreError),
    /// The coordinator could not start.
    #[error(transparent)]
    Coordinator(#[from] ApiError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The trust domain is not valid.
    #[error("invalid trust domain `{0}`")]
    TrustDomain(String),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The policy set could not be loaded.
    #[error("policy: {0}")]
    Policy(#[from] mandate_policy::LoadError),
    /// The TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] mandate_tls::TlsError),
    /// The retired coordinator keys cannot be read or used.
    #[error("retired coordinator keys: {0}")]
    RetiredKeys(String),
    /// Another coordinator (or `mandate rotate-key`) holds the data directory's lock.
    #[error(
        "data directory `{0}` is in use: another coordinator runs on it (it holds `{LOCK_FILE}`)"
    )]
    DataDirInUse(PathBuf),
    /// Plaintext on an address other machines can reach.
    #[error(
        "refusing to serve plaintext on {0}, which is not a loopback address: give a certificate \
         (--tls-cert, --tls-key) or, behind a TLS-terminating proxy, --insecure-plaintext"
    )]
    PlaintextOnNetwork(SocketAddr),
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Where the metrics listener is, when there is one.
    pub metrics_addr: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Path of the admin key file.
    pub admin_key_path: PathBuf,
    /// The admin agent id.
    pub admin_id: String,
    /// The coordinator's public key (the trust bundle).
    pub coordinator_key: PublicKey,
    coordinator: Arc<Coordinator>,
    store: Arc<dyn Store>,
    tls: Option<Arc<mandate_tls::ServerTls>>,
    metrics_tls: Option<Arc<mandate_tls::ServerTls>>,
    stop: Option<oneshot::Sender<()>>,
    stop_tasks: tokio::sync::watch::Sender<bool>,
    join: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// The data directory's lock, held while the server lives.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// The store (for operations tooling and tests; mutations go through the API).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs one garbage collection pass now (the server also runs one every minute).
    pub async fn collect_garbage(&self) -> Result<mandate_store::GcStats, ApiError> {
        self.coordinator.collect_garbage().await
    }

    /// The policy set in force, in one line: hash and source.
    pub fn policy_summary(&self) -> String {
        let p = self.coordinator.policies().current();
        format!("{} ({})", p.set.hash(), p.source)
    }

    /// Reads the TLS certificate, key and client CA files again (also done on SIGHUP by
    /// `mandate serve`). New connections get the new files; on error the old ones stay.
    /// `Ok(false)`: the server runs without TLS.
    pub fn reload_tls(&self) -> Result<bool, mandate_tls::TlsError> {
        if let Some(m) = &self.metrics_tls {
            m.reload()?;
        }
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    /// Whether the listener serves TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The coordinator (for in-process callers and tests).
    pub fn coordinator(&self) -> &Arc<Coordinator> {
        &self.coordinator
    }

    /// Stops accepting calls, finishes those in flight, flushes the store and returns once
    /// every task has let go of it (so the data directory can be opened again at once).
    pub async fn shutdown(self) -> Result<(), mandate_store::StoreError> {
        let Server {
            coordinator,
            store,
            stop,
            stop_tasks,
            join,
            ..
        } = self;
        let _ = stop_tasks.send(true);
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        // Calls in flight finish; connections that stay open past the grace period (an idle
        // client that never reads the GOAWAY) are cut.
        let mut join = join;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut join)
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
            join.abort();
            let _ = join.await;
        }
        drop(coordinator);
        store.flush()?;
        for _ in 0..500 {
            if Arc::strong_count(&store) == 1 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("the store is still in use five seconds after shutdown");
        Ok(())
    }

    /// Waits until the server stops (after [`Server::shutdown`] from elsewhere, or an error).
    pub async fn wait(&mut self) -> Result<(), String> {
        match (&mut self.join).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Plaintext only where no other machine can listen in.
fn check_transport(config: &Config) -> Result<(), StartError> {
    if config.tls.is_none() && !config.listen.ip().is_loopback() && !config.insecure_plaintext {
        return Err(StartError::PlaintextOnNetwork(config.listen));
    }
    Ok(())
}

/// Opens the data directory and starts serving.
pub async fn start(config: Config) -> Result<Server, StartError> {
    check_transport(&config)?;
    create_dir(&config.data_dir)?;
    let lock = lock_data_dir(&config.data_dir)?;
    let store = data_dir::open_store(&config).await?;
    start_locked(config, store, lock).await
}

/// Starts serving over an already opened store (keys still live in the data directory).
/// For tests that wrap the store, and for other [`Store`] implementations.
pub async fn start_with_store(config: Config, store: Arc<dyn Store>) -> Result<Server, StartError> {
    create_dir(&config.data_dir)?;
    let lock = lock_data_dir(&config.data_dir)?;
    start_locked(config, store, lock).await
}

async fn start_locked(
    config: Config,
    store: Arc<dyn Store>,
    lock: std::fs::File,
) -> Result<Server, StartError> {
    check_transport(&config)?;
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(mandate_tls::ServerTls::load(
            files.clone(),
            mandate_tls::Alpn::Grpc,
        )?)),
        None => None,
    };
    let admin_id = AgentId::new(format!("spiffe://{}/admin", config.trust_domain))
        .map_err(|_| StartError::TrustDomain(config.trust_domain.clone()))?;
    let coordinator_id = format!("spiffe://{}/coordinator", config.trust_domain);
    create_dir(&config.data_dir)?;
    let (key, _) = load_or_create_key(&config.data_dir.join("coordinator.key"))?;
    let admin_key_path = config.data_dir.join("admin.key");
    let (admin_key, _) = load_or_create_key(&admin_key_path)?;
    bootstrap_admin(
        &*store,
        admin_id.as_str(),
        &admin_key.public_key(),
        config.clock.now_ms(),
    )?;
    let coordinator_key = key.public_key();
    let mut retired = Vec::new();
    for r in keys::retired_keys(&config.data_dir)? {
        if r.trusted_until_ms > config.clock.now_ms() {
            retired.push((r.key()?, r.trusted_until_ms));
        }
    }
    let stored = if config.policy_from_store {
        store.policy_files()?
    } else {
        None
    };
    let policies = Arc::new(match stored {
        Some(files) => {
            Policies::from_store(files, config.policy_dir.as_deref(), config.clock.now_ms())?
        }
        None => Policies::load(config.policy_dir.as_deref(), config.clock.now_ms())?,
    });
    tracing::info!(
        policy_hash = policies.current().set.hash(),
        source = %policies.current().source,
        "policy set loaded"
    );
    let coordinator = Arc::new(Coordinator::new(
        Arc::clone(&store),
        policies,
        key,
        Arc::clone(&config.clock),
        CoordinatorConfig {
            clock_skew_ms: config.clock_skew_ms,
            quotas: config.quotas,
            max_ttl_ms: config.max_ttl_ms,
            max_break_glass_ms: config.max_break_glass_ms,
            approval_ttl_ms: config.approval_ttl_ms,
            retain_history_ms: config.retain_history_ms,
            federated_trust_domains: config.federated_trust_domains.clone(),
            retired_keys: retired,
            instance: config.instance.clone(),
            ..CoordinatorConfig::new(coordinator_id)
        },
    )?);
    coordinator.check_keys_at_start().await?;

    // A policy change while the coordinator was down is checked like a reload.
    coordinator.check_policy_at_start().await?;

    let auth_state = Arc::new(auth::AuthState {
        store: Arc::clone(&store),
        agents: Arc::clone(coordinator.agent_cache()),
        clock: Arc::clone(&config.clock),
        window_ms: config.request_window_ms,
        skew_ms: config.request_skew_ms,
        max_message_bytes: config.max_message_bytes,
        nonces: Mutex::new(auth::NonceCache::new(
            1 << 20,
            config.max_requests_per_agent,
            // A request's nonce is kept until its timestamp (up to `skew` ahead) plus the
            // window.
            config
                .request_window_ms
                .saturating_add(config.request_skew_ms)
                .saturating_add(1),
        )),
        keys: Mutex::new(std::collections::HashMap::new()),
        decoy: mandate_core::SigningKey::generate()?
            .public_key()
            .prepare()?,
        leading: config.leading.clone(),
    });
    let auth = auth::AuthLayer {
        state: Arc::clone(&auth_state),
    };
    let (stop_tasks, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_sighup = stop_rx.clone();
    let api = Api {
        coordinator: Arc::clone(&coordinator),
        heartbeat: config.heartbeat,
        stop: stop_rx.clone(),
        streams: Arc::default(),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AgentServiceServer<Api>>().await;
    health.set_serving::<TaskServiceServer<Api>>().await;
    health
        .set_serving::<AuthorizationServiceServer<Api>>()
        .await;
    health.set_serving::<ApprovalServiceServer<Api>>().await;
    health.set_serving::<PolicyServiceServer<Api>>().await;
    let reflection = |b: tonic_reflection::server::Builder<'static>| {
        b.register_encoded_file_descriptor_set(mandate_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection(tonic_reflection::server::Builder::configure())
        .build_v1()
        .map_err(|e| StartError::Reflection(e.to_string()))?;
    let reflection_v1alpha = reflection(tonic_reflection::server::Builder::configure())
        .build_v1alpha()
        .map_err(|e| StartError::Reflection(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.listen,
        source,
    })?;
    let max = config.max_message_bytes;
    let router = tonic::transport::Server::builder()
        .layer(metrics::MetricsLayer {
            metrics: Arc::clone(coordinator.metrics()),
        })
        .layer(auth)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AgentServiceServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(TaskServiceServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(AuthorizationServiceServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(ApprovalServiceServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(PolicyServiceServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(AuditServiceServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(AccessServiceServer::new(api).max_decoding_message_size(max));
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let join = match &tls {
        Some(tls) => tokio::spawn(router.serve_with_incoming_shutdown(
            mandate_tls::incoming(listener, Arc::clone(tls)),
            stopped,
        )),
        None => {
            // TCP_NODELAY: a response goes out in more than one write (headers, data,
            // trailers); with Nagle's algorithm the later writes wait for the peer's
            // delayed ACK, about 40 ms.
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
        }
    };

    // Background garbage collection: expired revocations, nonces and approval requests,
    // and links and tasks past the history retention.
    let gc_coordinator = Arc::downgrade(&coordinator);
    let gc_every = config.gc_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(gc_every);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let Some(coordinator) = gc_coordinator.upgrade() else { return };
                    match coordinator.collect_garbage().await {
                        Ok(stats) => tracing::debug!(?stats, "garbage collected"),
                        Err(e) => tracing::warn!(reason = %e.reason, error = %e.message, "garbage collection failed"),
                    }
                }
                _ = stop_rx.changed() => return,
            }
        }
    });
    // The metrics listener serves HTTPS with the coordinator's certificate when it has one
    // (scrapers need no client certificate).
    let metrics_tls = match (&config.tls, config.metrics_listen) {
        (Some(files), Some(_)) => Some(Arc::new(mandate_tls::ServerTls::load(
            mandate_tls::ServerTlsFiles {
                client_ca: None,
                ..files.clone()
            },
            mandate_tls::Alpn::Http1,
        )?)),
        _ => None,
    };
    let metrics_addr = match config.metrics_listen {
        Some(addr) => Some(
            serve_metrics(
                addr,
                &coordinator,
                Arc::clone(&auth_state),
                metrics_tls.clone(),
                stop_tasks.subscribe(),
            )
            .await?,
        ),
        None => None,
    };
    if !config.audit_checkpoint_interval.is_zero() {
        let coordinator = Arc::downgrade(&coordinator);
        let mut stop = stop_tasks.subscribe();
        let every = config.audit_checkpoint_interval;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let Some(c) = coordinator.upgrade() else { return };
                        match c.record_checkpoint().await {
                            Ok(Some(cp)) => tracing::info!(seq = cp.seq, hash = %cp.hash, "audit checkpoint recorded"),
                            Ok(None) => {}
                            Err(e) => tracing::warn!(reason = %e.reason, error = %e.message, "audit checkpoint failed"),
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        });
    }
    if config.reload_on_sighup {
        reload_on_sighup(
            Arc::downgrade(&coordinator),
            tls.iter()
                .chain(metrics_tls.iter())
                .map(Arc::downgrade)
                .collect(),
            stop_rx_sighup,
        );
    }
    tracing::info!(%local_addr, tls = tls.is_some(), mutual_tls = tls.as_ref().is_some_and(|t| t.mutual()), data_dir = %config.data_dir.display(), "mandate coordinator listening");
    Ok(Server {
        local_addr,
        metrics_addr,
        data_dir: config.data_dir,
        admin_key_path,
        admin_id: admin_id.as_str().to_owned(),
        coordinator_key,
        coordinator,
        store,
        tls,
        metrics_tls,
        stop: Some(stop),
        stop_tasks,
        join,
        _lock: lock,
    })
}

/// Binds the metrics listener and serves it until the server stops.
async fn serve_metrics(
    addr: SocketAddr,
    coordinator: &Arc<Coordinator>,
    auth: Arc<auth::AuthState>,
    tls: Option<Arc<mandate_tls::ServerTls>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<SocketAddr, StartError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;
    let weak = Arc::downgrade(coordinator);
    let sample: Arc<dyn Fn() -> metrics::BoxFuture<()> + Send + Sync> = Arc::new(move || {
        let weak = weak.clone();
        let auth = Arc::clone(&auth);
        Box::pin(async move {
            let Some(c) = weak.upgrade() else { return };
            let [nonces, keys] = auth.sizes();
            let mut sizes = vec![("request_nonces", nonces), ("prepared_keys", keys)];
            sizes.extend(c.memory_sizes());
            c.metrics().set_memory(&sizes);
            let now = c.now();
            let scan = Arc::clone(&c);
            match tokio::task::spawn_blocking(move || scan.sample_live()).await {
                Ok(Ok(s)) => c.metrics().set_live(&s, now),
                Ok(Err(e)) => {
                    tracing::warn!(reason = %e.reason, error = %e.message, "sampling live state for metrics failed")
                }
                Err(e) => tracing::warn!(error = %e, "sampling live state for metrics failed"),
            }
        })
    });
    metrics::serve(
        listener,
        Arc::clone(coordinator.metrics()),
        sample,
        tls,
        stop,
    );
    tracing::info!(%bound, "metrics listening (GET /metrics)");
    Ok(bound)
}

/// Reloads the policy directory (and the TLS files) whenever the process receives SIGHUP.
#[cfg(unix)]
/// Reads a listener's certificate and key again (SIGHUP); a bad pair is refused and the
/// previous one stays in use.
fn reload_tls(tls: &mandate_tls::ServerTls) {
    match tls.reload() {
        Ok(()) => tracing::info!("TLS certificate reloaded on SIGHUP"),
        Err(e) => {
            tracing::error!(error = %e, "TLS reload refused; the previous certificate stays in use")
        }
    }
}

fn reload_on_sighup(
    coordinator: std::sync::Weak<Coordinator>,
    tls: Vec<std::sync::Weak<mandate_tls::ServerTls>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with `mandate policy reload`");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    for tls in tls.iter().filter_map(std::sync::Weak::upgrade) {
                        reload_tls(&tls);
                    }
                    let Some(c) = coordinator.upgrade() else { return };
                    match c.reload_policy(None, Vec::new()).await {
                        Ok(r) => tracing::info!(
                            policy_hash = r.policy.set.hash(),
                            previous = %r.previous_hash,
                            reevaluated = r.reevaluated,
                            revoked = r.revoked.links.len(),
                            "policy reloaded on SIGHUP"
                        ),
                        Err(e) => tracing::error!(
                            reason = %e.reason,
                            "policy reload refused; the previous set stays in force:\n{}",
                            e.message
                        ),
                    }
                }
                _ = stop.changed() => return,
            }
        }
    });
}

#[cfg(not(unix))]
fn reload_on_sighup(
    _coordinator: std::sync::Weak<Coordinator>,
    _tls: Vec<std::sync::Weak<mandate_tls::ServerTls>>,
    _stop: tokio::sync::watch::Receiver<bool>,
) {
}
