//! Prometheus metrics (docs/DEPLOYMENT.md lists them): per-RPC counts and latency, decisions
//! by reason, store commit and flush latency with group sizes, the revocation feed, and
//! gauges of what is live, served in the OpenMetrics text format on their own listener
//! (`--metrics-listen`).
//!
//! Counters and histograms are updated where things happen. The gauges of live state
//! (agents, tasks, links, approvals) need a pass over the store, so they are sampled when
//! scraped, at most once per [`SAMPLE_EVERY`]; `mandate_live_sampled_timestamp_seconds` says
//! when. Label values come from fixed sets (method names the server implements, reason
//! codes, action names), so a caller cannot grow the label space.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tower::{Layer, Service};

/// Longest a scrape reuses the last sample of live state.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Latency buckets, seconds: 100 µs to 10 s.
const LATENCY: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Flush group sizes (commits made durable by one fsync).
const GROUPS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// Follower queue depths (feed events waiting).
const LAG: [f64; 10] = [
    0.0, 1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 2048.0, 4096.0,
];

fn latency() -> Histogram {
    Histogram::new(LATENCY)
}

/// `grpc_service`, `grpc_method`, `grpc_code` (go-grpc-prometheus' names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Rpc {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

/// `decision`, `reason`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    decision: &'static str,
    reason: String,
}

/// `action`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ActionLabel {
    action: String,
}

/// `status`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabel {
    status: &'static str,
}

/// `structure`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StructureLabel {
    structure: &'static str,
}

/// `part`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PartLabel {
    part: &'static str,
}

/// What the live-state sampler found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LiveSample {
    pub(crate) agents_active: i64,
    pub(crate) agents_disabled: i64,
    pub(crate) tasks_active: i64,
    pub(crate) links_live: i64,
    pub(crate) longest_remaining_ms: u64,
    pub(crate) approvals_pending: i64,
    pub(crate) revocations_live: i64,
    pub(crate) epoch: u64,
    pub(crate) disk: mandate_store::DiskUsage,
}

/// Every metric the coordinator exports.
pub struct Metrics {
    registry: Registry,
    rpc_handled: Family<Rpc, Counter>,
    rpc_seconds: Family<Rpc, Histogram, fn() -> Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    audit_records: Family<ActionLabel, Counter>,
    store_commit: Histogram,
    store_flush: Histogram,
    flush_group: Histogram,
    flush_failures: Counter,
    feed_followers: Gauge,
    feed_lag: Histogram,
    feed_resnapshots: Counter,
    feed_published_epoch: Gauge,
    agents: Family<StatusLabel, Gauge>,
    tasks_active: Gauge,
    links_live: Gauge,
    longest_remaining: Gauge<f64, AtomicU64>,
    approvals_pending: Gauge,
    revocations_live: Gauge,
    sampled_at: Gauge<f64, AtomicU64>,
    memory: Family<StructureLabel, Gauge>,
    disk: Family<PartLabel, Gauge>,
    last_sample: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            rpc_handled: Family::default(),
            rpc_seconds: Family::new_with_constructor(latency),
            decisions: Family::default(),
            audit_records: Family::default(),
            store_commit: latency(),
            store_flush: latency(),
            flush_group: Histogram::new(GROUPS),
            flush_failures: Counter::default(),
            feed_followers: Gauge::default(),
            feed_lag: Histogram::new(LAG),
            feed_resnapshots: Counter::default(),
            feed_published_epoch: Gauge::default(),
            agents: Family::default(),
            tasks_active: Gauge::default(),
            links_live: Gauge::default(),
            longest_remaining: Gauge::default(),
            approvals_pending: Gauge::default(),
            revocations_live: Gauge::default(),
            sampled_at: Gauge::default(),
            memory: Family::default(),
            disk: Family::default(),
            last_sample: Mutex::new(None),
        };
        let r = &mut m.registry;
        r.register(
            "grpc_server_handled",
            "RPCs completed, by method and gRPC status code",
            m.rpc_handled.clone(),
        );
        r.register_with_unit(
            "grpc_server_handling",
            "Time from request to response headers (unary: the whole call), by method and gRPC status code",
            Unit::Seconds,
            m.rpc_seconds.clone(),
        );
        r.register(
            "mandate_authorize_decisions",
            "Authorize decisions, by decision and reason code",
            m.decisions.clone(),
        );
        r.register(
            "mandate_audit_records",
            "Audit records committed, by action",
            m.audit_records.clone(),
        );
        r.register_with_unit(
            "mandate_store_commit",
            "Time to apply one change to the store (before the flush)",
            Unit::Seconds,
            m.store_commit.clone(),
        );
        r.register_with_unit(
            "mandate_store_flush",
            "Time of one group flush (fsync) of the store",
            Unit::Seconds,
            m.store_flush.clone(),
        );
        r.register(
            "mandate_store_flush_group_size",
            "Callers made durable by one flush",
            m.flush_group.clone(),
        );
        r.register(
            "mandate_store_flush_failures",
            "Flushes that failed (the changes they covered were reported unavailable)",
            m.flush_failures.clone(),
        );
        r.register(
            "mandate_feed_followers",
            "Open WatchRevocations streams",
            m.feed_followers.clone(),
        );
        r.register(
            "mandate_feed_follower_lag_events",
            "Feed events waiting for a follower when it took the next one",
            m.feed_lag.clone(),
        );
        r.register(
            "mandate_feed_resnapshots",
            "Followers too slow to follow the feed, sent a fresh snapshot",
            m.feed_resnapshots.clone(),
        );
        r.register(
            "mandate_revocation_epoch",
            "The newest revocation epoch published to followers",
            m.feed_published_epoch.clone(),
        );
        r.register(
            "mandate_agents",
            "Registered agents, by status (sampled)",
            m.agents.clone(),
        );
        r.register(
            "mandate_tasks_active",
            "Tasks not yet ended (sampled)",
            m.tasks_active.clone(),
        );
        r.register(
            "mandate_links_live",
            "Links live now: unexpired and not revoked, in active tasks (sampled)",
            m.links_live.clone(),
        );
        r.register_with_unit(
            "mandate_link_longest_remaining",
            "The longest remaining lifetime of a live link (sampled)",
            Unit::Seconds,
            m.longest_remaining.clone(),
        );
        r.register(
            "mandate_approvals_pending",
            "Grant requests waiting for approval (sampled)",
            m.approvals_pending.clone(),
        );
        r.register(
            "mandate_revocations_live",
            "Revocations verifiers still need (the coordinator's set, with implied ones)",
            m.revocations_live.clone(),
        );
        r.register(
            "mandate_memory_entries",
            "Entries held by each bounded in-memory structure (docs/DEPLOYMENT.md lists the bounds)",
            m.memory.clone(),
        );
        r.register_with_unit(
            "mandate_store_disk",
            "Bytes the store keeps on this machine's disk, by part: `state` (sled's files, live state with sled's amplification) and `audit` (segments and journal); absent on etcd (sampled)",
            Unit::Bytes,
            m.disk.clone(),
        );
        r.register(
            "mandate_live_sampled_timestamp_seconds",
            "When the sampled gauges were last computed, Unix seconds",
            m.sampled_at.clone(),
        );
        m
    }

    /// Counts a finished RPC.
    fn rpc(&self, path: &str, code: &'static str, elapsed: Duration) {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("unknown", "unknown"));
        // Only implemented methods get their own label.
        let (service, method) = if code == "UNIMPLEMENTED" {
            ("unknown", "unknown")
        } else {
            (service, method)
        };
        let labels = Rpc {
            grpc_service: service.to_owned(),
            grpc_method: method.to_owned(),
            grpc_code: code,
        };
        self.rpc_handled.get_or_create(&labels).inc();
        self.rpc_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Counts an `Authorize` decision (`reason` is a stable code, empty when allowed).
    pub(crate) fn decision(&self, allowed: bool, reason: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: if allowed { "allow" } else { "deny" },
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts committed audit records and the commit's time.
    pub(crate) fn committed<'a>(&self, actions: impl Iterator<Item = &'a str>, elapsed: Duration) {
        self.store_commit.observe(elapsed.as_secs_f64());
        for action in actions {
            self.audit_records
                .get_or_create(&ActionLabel {
                    action: action.to_owned(),
                })
                .inc();
        }
    }

    /// Records one group flush.
    pub(crate) fn flushed(&self, ok: bool, group: usize, elapsed: Duration) {
        self.store_flush.observe(elapsed.as_secs_f64());
        self.flush_group.observe(group as f64);
        if !ok {
            self.flush_failures.inc();
        }
    }

    /// A follower opened (`+1`) or closed (`-1`) its feed stream.
    pub(crate) fn follower(&self, delta: i64) {
        self.feed_followers.inc_by(delta);
    }

    /// A follower took an event with `waiting` more queued behind it.
    pub(crate) fn follower_lag(&self, waiting: usize) {
        self.feed_lag.observe(waiting as f64);
    }

    /// A follower fell behind and was sent a snapshot.
    pub(crate) fn resnapshot(&self) {
        self.feed_resnapshots.inc();
    }

    /// The newest published epoch.
    pub(crate) fn published_epoch(&self, epoch: u64) {
        self.feed_published_epoch
            .set(i64::try_from(epoch).unwrap_or(i64::MAX));
    }

    /// Whether the live-state gauges are due for a new sample.
    pub(crate) fn sample_due(&self) -> bool {
        let last = self
            .last_sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY)
    }

    /// Sets the live-state gauges.
    pub(crate) fn set_live(&self, s: &LiveSample, now_ms: u64) {
        self.agents
            .get_or_create(&StatusLabel { status: "active" })
            .set(s.agents_active);
        self.agents
            .get_or_create(&StatusLabel { status: "disabled" })
            .set(s.agents_disabled);
        self.tasks_active.set(s.tasks_active);
        self.links_live.set(s.links_live);
        self.longest_remaining
            .set(s.longest_remaining_ms as f64 / 1000.0);
        self.approvals_pending.set(s.approvals_pending);
        self.revocations_live.set(s.revocations_live);
        self.published_epoch(s.epoch);
        for (part, bytes) in [("state", s.disk.state), ("audit", s.disk.audit)] {
            if let Some(bytes) = bytes {
                self.disk
                    .get_or_create(&PartLabel { part })
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
        }
        self.sampled_at.set(now_ms as f64 / 1000.0);
        *self
            .last_sample
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Sets the entry counts of the in-memory structures.
    pub(crate) fn set_memory(&self, sizes: &[(&'static str, usize)]) {
        for (structure, n) in sizes {
            self.memory
                .get_or_create(&StructureLabel { structure })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// The exposition (OpenMetrics text).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The gRPC status code name of a response (`OK` when the status comes in trailers: tonic
/// sends failures of unary calls trailers-only, in the headers).
fn code_name(headers: &http::HeaderMap) -> &'static str {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Counts every RPC (outside request authentication, so refusals count too).
#[derive(Clone)]
pub(crate) struct MetricsLayer {
    pub(crate) metrics: Arc<Metrics>,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// See [`MetricsLayer`].
#[derive(Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<http::Request<B>> for MetricsService<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
    S::Error: Send,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        let metrics = Arc::clone(&self.metrics);
        let started = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let response = fut.await;
            let code = match &response {
                Ok(r) => code_name(r.headers()),
                Err(_) => "UNAVAILABLE",
            };
            metrics.rpc(&path, code, started.elapsed());
            response
        })
    }
}

/// Serves `GET /metrics` on `listener` until `stop` changes. `sample` refreshes the
/// live-state gauges when due.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    sample: Arc<dyn Fn() -> BoxFuture<()> + Send + Sync>,
    tls: Option<Arc<mandate_tls::ServerTls>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.changed() => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            let metrics = Arc::clone(&metrics);
            let sample = Arc::clone(&sample);
            let acceptor = tls.as_ref().map(|t| t.acceptor());
            tokio::spawn(async move {
                match acceptor {
                    None => scrape_connection(stream, metrics, sample).await,
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(
                            mandate_tls::HANDSHAKE_TIMEOUT,
                            acceptor.accept(stream),
                        );
                        if let Ok(Ok(stream)) = handshake.await {
                            scrape_connection(stream, metrics, sample).await;
                        }
                    }
                }
            });
        }
    });
}

/// Serves `GET /metrics` on one connection (plaintext or after the TLS handshake).
async fn scrape_connection<S>(
    stream: S,
    metrics: Arc<Metrics>,
    sample: Arc<dyn Fn() -> BoxFuture<()> + Send + Sync>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: http::Request<_>| {
        let metrics = Arc::clone(&metrics);
        let sample = Arc::clone(&sample);
        async move {
            let mut response = http::Response::new(String::new());
            if req.method() != http::Method::GET || req.uri().path() != "/metrics" {
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                *response.body_mut() = "not found: the metrics are at /metrics\n".into();
            } else {
                if metrics.sample_due() {
                    sample().await;
                }
                *response.body_mut() = metrics.encode();
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ),
                );
            }
            Ok::<_, std::convert::Infallible>(
                response.map(|b| http_body_util::Full::new(bytes::Bytes::from(b))),
            )
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}
