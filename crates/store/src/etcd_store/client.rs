//! A blocking client for the few etcd v3 calls the store makes (range, txn, authenticate,
//! and the lease calls of `leader.rs`),
//! over the generated tonic client of `mandate-etcd`, on a runtime of its own: the
//! [`crate::Store`] trait is synchronous and is called from inside the server's runtime,
//! where a nested `block_on` is not allowed.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mandate_etcd::etcdserverpb::{
    AuthenticateRequest, Compare, RangeRequest, RequestOp, TxnRequest, TxnResponse,
    auth_client::AuthClient, compare, kv_client::KvClient, lease_client::LeaseClient, request_op,
    response_op,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{Result, StoreError};

/// How to reach etcd.
#[derive(Clone, Default)]
pub struct EtcdConfig {
    /// Client URLs (`http://127.0.0.1:2379`, `https://...`): calls are balanced over them
    /// and move off a member that fails.
    pub endpoints: Vec<String>,
    /// The prefix of every key the store writes (several stores can share one etcd).
    pub prefix: String,
    /// CA (PEM) that signed the members' certificates, for `https` endpoints.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate and key (PEM), when etcd asks for one.
    pub client_cert_pem: Option<(Vec<u8>, Vec<u8>)>,
    /// A user and password, when etcd has authentication on.
    pub credentials: Option<(String, String)>,
    /// How long one call may take before the store reports etcd unavailable.
    pub timeout: Duration,
    /// Most operations in one transaction (etcd's `--max-txn-ops`, 128 by default).
    pub max_txn_ops: usize,
    /// Most bytes of keys and values in one transaction (below etcd's
    /// `--max-request-bytes`, 1.5 MiB by default).
    pub max_txn_bytes: usize,
    /// Audit records per sealed segment: the tail of the log in etcd is sealed, a
    /// segment at a time, once it holds two segments' worth.
    pub records_per_segment: usize,
    /// Bytes of values kept in memory to spare round trips (agents, tasks, links this
    /// coordinator wrote or read recently).
    pub cache_bytes: u64,
    /// The leadership this store writes under ([`crate::EtcdLeadership::fence`]): every
    /// transaction then also requires that the leader key is still the one this
    /// coordinator created, so a coordinator whose lease ended (paused, partitioned) can
    /// write nothing more, even where no one else has written yet. `None`: a single
    /// coordinator, no leader key.
    pub fence: Option<i64>,
}

impl std::fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password and the client key stay out of logs.
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("tls", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("timeout", &self.timeout)
            .field("max_txn_ops", &self.max_txn_ops)
            .field("max_txn_bytes", &self.max_txn_bytes)
            .field("cache_bytes", &self.cache_bytes)
            .field("records_per_segment", &self.records_per_segment)
            .field("fence", &self.fence)
            .finish()
    }
}

impl EtcdConfig {
    /// Endpoints with etcd's default limits, a 5 s timeout, a 64 MiB read cache and the
    /// prefix `mandate/`.
    pub fn new(endpoints: Vec<String>) -> EtcdConfig {
        EtcdConfig {
            endpoints,
            prefix: "mandate/".into(),
            timeout: Duration::from_secs(5),
            max_txn_ops: 128,
            max_txn_bytes: 1 << 20,
            cache_bytes: 64 << 20,
            records_per_segment: 8192,
            ..EtcdConfig::default()
        }
    }

    /// Parses `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]` (`etcds://` for TLS): the
    /// members, and the key prefix (default `mandate/`).
    pub fn parse(url: &str) -> Result<EtcdConfig, String> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("etcd://") {
            ("http", r)
        } else if let Some(r) = url.strip_prefix("etcds://") {
            ("https", r)
        } else {
            return Err(format!(
                "`{url}` is not an etcd address: etcd://HOST:PORT[,HOST:PORT...][/PREFIX]"
            ));
        };
        let (hosts, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p),
            None => (rest, ""),
        };
        let endpoints: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{scheme}://{h}"))
            .collect();
        if endpoints.is_empty() {
            return Err(format!("`{url}` names no etcd member"));
        }
        for e in &endpoints {
            Endpoint::from_shared(e.clone()).map_err(|err| format!("`{e}`: {err}"))?;
        }
        let mut config = EtcdConfig::new(endpoints);
        if !prefix.is_empty() {
            config.prefix = if prefix.ends_with('/') {
                prefix.to_owned()
            } else {
                format!("{prefix}/")
            };
        }
        Ok(config)
    }
}

/// Read transactions in flight at once for a batch of reads.
const CONCURRENT_READS: usize = 16;

/// A failed call: the status code when etcd (or the transport) answered with one.
struct Failed {
    code: Option<tonic::Code>,
    error: StoreError,
}

impl Failed {
    fn other(what: &str, why: impl std::fmt::Display) -> Failed {
        Failed {
            code: None,
            error: unavailable(what, why),
        }
    }
}

/// A key (without the prefix) and its value.
pub(crate) use crate::kv::Entry;

fn unavailable(what: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd unavailable ({what}): {why}"))
}

type TokenSlot = Arc<RwLock<Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>>>;

/// Puts the authentication token, if any, on every call.
#[derive(Clone)]
pub(crate) struct Token(TokenSlot);

impl tonic::service::Interceptor for Token {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        let token = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(t) = token {
            req.metadata_mut().insert("token", t);
        }
        Ok(req)
    }
}

type KvApi = KvClient<tonic::service::interceptor::InterceptedService<Channel, Token>>;
pub(crate) type LeaseApi =
    LeaseClient<tonic::service::interceptor::InterceptedService<Channel, Token>>;

/// The key of the leader (under the prefix), held with a lease (`leader.rs`).
pub(crate) const LEADER: &[u8] = b"mleader";

/// The connection: a channel to each member (calls go to one, and move to the next when
/// it cannot be reached) and the runtime that drives them.
pub(crate) struct Etcd {
    runtime: Option<tokio::runtime::Runtime>,
    channels: Vec<Channel>,
    /// How many times an expired token was replaced.
    pub(crate) reauthentications: std::sync::atomic::AtomicU64,
    /// The member calls go to.
    current: std::sync::atomic::AtomicUsize,
    token: TokenSlot,
    config: EtcdConfig,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // Dropped from inside the server's runtime too, where blocking is not allowed.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Etcd {
    pub(crate) fn connect(config: EtcdConfig) -> Result<Etcd> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mandate-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("cannot start etcd's runtime: {e}")))?;
        let mut endpoints = Vec::new();
        for e in &config.endpoints {
            let mut ep = Endpoint::from_shared(e.clone())
                .map_err(|err| StoreError::Backend(format!("etcd endpoint `{e}`: {err}")))?
                .connect_timeout(config.timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(config.timeout);
            if e.starts_with("https://") {
                let mut tls = ClientTlsConfig::new();
                if let Some(ca) = &config.ca_pem {
                    tls = tls.ca_certificate(Certificate::from_pem(ca));
                }
                if let Some((cert, key)) = &config.client_cert_pem {
                    tls = tls.identity(Identity::from_pem(cert, key));
                }
                ep = ep
                    .tls_config(tls)
                    .map_err(|err| StoreError::Backend(format!("etcd TLS for `{e}`: {err}")))?;
            }
            endpoints.push(ep);
        }
        let channels = {
            let _guard = runtime.enter();
            endpoints.into_iter().map(|e| e.connect_lazy()).collect()
        };
        let etcd = Etcd {
            runtime: Some(runtime),
            channels,
            reauthentications: std::sync::atomic::AtomicU64::new(0),
            current: std::sync::atomic::AtomicUsize::new(0),
            token: Arc::new(RwLock::new(None)),
            config,
        };
        etcd.authenticate()?;
        Ok(etcd)
    }

    pub(crate) fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// Runs `call` on the runtime and waits for it, at most the configured timeout.
    fn run<T, F>(&self, what: &str, call: F) -> std::result::Result<T, Failed>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        let Some(rt) = self.runtime.as_ref() else {
            return Err(Failed::other(what, "the client is shut down"));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.config.timeout;
        rt.spawn(async move {
            let _ = tx.send(tokio::time::timeout(timeout, call).await);
        });
        match rx.recv() {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(status))) => Err(Failed {
                code: Some(status.code()),
                error: unavailable(
                    what,
                    format_args!("{:?}: {}", status.code(), status.message()),
                ),
            }),
            Ok(Err(_)) => Err(Failed::other(
                what,
                format_args!("no answer in {timeout:?}"),
            )),
            Err(_) => Err(Failed::other(what, "the call was dropped")),
        }
    }

    /// Runs `call` against the current member, moving on to the next ones while a member
    /// cannot be reached, and authenticating again once if etcd says the token expired.
    fn run_authed<T, F, Fut>(&self, what: &str, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(KvApi) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        self.run_on(what, |at| self.kv(at), call)
    }

    /// [`Etcd::run_authed`] with the lease service.
    pub(crate) fn run_lease<T, F, Fut>(&self, what: &str, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(LeaseApi) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        self.run_on(what, |at| self.lease(at), call)
    }

    fn run_on<C, T, F, Fut>(&self, what: &str, client: impl Fn(usize) -> C, call: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(C) -> Fut,
        Fut: Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        use std::sync::atomic::Ordering;
        let n = self.channels.len();
        let first = self.current.load(Ordering::Relaxed);
        let mut reauthenticated = false;
        let mut attempt = 0;
        loop {
            let at = (first + attempt) % n;
            match self.run(what, call(client(at))) {
                Ok(v) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(v);
                }
                // The member is unreachable or its connection broke mid-call: the next
                // one is asked. (A transaction that did go through before the break is
                // recognised by the caller when shipped again; reads are idempotent.)
                Err(Failed {
                    code:
                        Some(
                            tonic::Code::Unavailable
                            | tonic::Code::Cancelled
                            | tonic::Code::Unknown,
                        ),
                    error,
                }) => {
                    attempt += 1;
                    if attempt >= n {
                        return Err(error);
                    }
                }
                // No answer in time (a member stopped, or partitioned): this call fails,
                // and the next one goes to another member.
                Err(Failed { code: None, error }) => {
                    self.current.store((at + 1) % n, Ordering::Relaxed);
                    return Err(error);
                }
                Err(Failed {
                    code: Some(tonic::Code::Unauthenticated | tonic::Code::InvalidArgument),
                    error,
                }) if self.config.credentials.is_some() && !reauthenticated => {
                    tracing::debug!(%error, "authenticating to etcd again");
                    reauthenticated = true;
                    self.reauthentications.fetch_add(1, Ordering::Relaxed);
                    self.authenticate()?;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    fn kv(&self, at: usize) -> KvApi {
        KvClient::with_interceptor(self.channels[at].clone(), Token(Arc::clone(&self.token)))
            .max_decoding_message_size(64 << 20)
    }

    fn lease(&self, at: usize) -> LeaseApi {
        LeaseClient::with_interceptor(self.channels[at].clone(), Token(Arc::clone(&self.token)))
    }

    fn authenticate(&self) -> Result<()> {
        let Some((name, password)) = self.config.credentials.clone() else {
            return Ok(());
        };
        let mut reply = None;
        let mut last = None;
        for channel in &self.channels {
            let mut auth = AuthClient::new(channel.clone());
            let (name, password) = (name.clone(), password.clone());
            match self.run("authenticate", async move {
                auth.authenticate(AuthenticateRequest { name, password })
                    .await
                    .map(tonic::Response::into_inner)
            }) {
                Ok(r) => {
                    reply = Some(r);
                    break;
                }
                Err(f) => last = Some(f.error),
            }
        }
        let reply = match (reply, last) {
            (Some(r), _) => r,
            (None, Some(e)) => return Err(e),
            (None, None) => return Err(unavailable("authenticate", "no member")),
        };
        let token = reply
            .token
            .parse()
            .map_err(|_| StoreError::Backend("etcd returned an unusable token".into()))?;
        *self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token);
        Ok(())
    }

    /// The full key of table key `k`.
    pub(crate) fn full(&self, k: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.config.prefix.len() + k.len());
        out.extend_from_slice(self.config.prefix.as_bytes());
        out.extend_from_slice(k);
        out
    }

    /// The value of table key `k` (a linearizable read).
    pub(crate) fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = self.full(k);
        self.run_authed("get", move |mut kv| {
            let key = key.clone();
            async move {
                let reply = kv
                    .range(RangeRequest {
                        key,
                        ..RangeRequest::default()
                    })
                    .await?
                    .into_inner();
                Ok(reply.kvs.into_iter().next().map(|kv| kv.value))
            }
        })
    }

    /// Entries with table keys in `start..end`, at most `limit`, and whether there are more.
    pub(crate) fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<(Vec<Entry>, bool)> {
        self.range_with(start, end, limit, false)
    }

    /// [`Etcd::range`], with empty values when `keys_only`.
    fn range_with(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        keys_only: bool,
    ) -> Result<(Vec<Entry>, bool)> {
        let (key, range_end) = (self.full(start), self.full(end));
        let cut = self.config.prefix.len();
        self.run_authed("range", move |mut kv| {
            let (key, range_end) = (key.clone(), range_end.clone());
            async move {
                let reply = kv
                    .range(RangeRequest {
                        key,
                        range_end,
                        limit: i64::try_from(limit).unwrap_or(i64::MAX),
                        keys_only,
                        ..RangeRequest::default()
                    })
                    .await?
                    .into_inner();
                let entries = reply
                    .kvs
                    .into_iter()
                    .map(|mut kv| (kv.key.split_off(cut), kv.value))
                    .collect();
                Ok((entries, reply.more))
            }
        })
    }

    /// Every entry with a table key in `start..end`, read `page` at a time (empty values
    /// when `keys_only`).
    pub(crate) fn all(
        &self,
        start: &[u8],
        end: &[u8],
        page: usize,
        keys_only: bool,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut cursor = start.to_vec();
        loop {
            let (entries, more) = self.range_with(&cursor, end, page, keys_only)?;
            let Some((last, _)) = entries.last() else {
                break;
            };
            cursor = [&last[..], &[0]].concat();
            out.extend(entries);
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// Whether each of table keys `keys` is present: read-only transactions of counting
    /// ranges, as many keys a transaction as etcd takes.
    pub(crate) fn count_each(&self, keys: &[&[u8]]) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(keys.len());
        for part in keys.chunks(self.config.max_txn_ops.max(1)) {
            let success: Vec<RequestOp> = part
                .iter()
                .map(|k| RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: self.full(k),
                        count_only: true,
                        ..RangeRequest::default()
                    })),
                })
                .collect();
            let reply = self.txn(TxnRequest {
                compare: Vec::new(),
                success,
                failure: Vec::new(),
            })?;
            if reply.responses.len() != part.len() {
                return Err(unavailable(
                    "txn",
                    "etcd answered a different number of reads",
                ));
            }
            out.extend(reply.responses.into_iter().map(|r| match r.response {
                Some(response_op::Response::ResponseRange(range)) => range.count > 0,
                _ => false,
            }));
        }
        Ok(out)
    }

    /// Every entry under each of the table key prefixes `prefixes`: read-only transactions
    /// of ranges, as many ranges a transaction as etcd takes, [`CONCURRENT_READS`] of
    /// them in flight.
    pub(crate) fn prefixes(&self, prefixes: &[Vec<u8>]) -> Result<Vec<Vec<Entry>>> {
        let cut = self.config.prefix.len();
        let txns: Vec<TxnRequest> = prefixes
            .chunks(self.config.max_txn_ops.max(1))
            .map(|part| TxnRequest {
                compare: Vec::new(),
                success: part
                    .iter()
                    .map(|p| RequestOp {
                        request: Some(request_op::Request::RequestRange(RangeRequest {
                            key: self.full(p),
                            range_end: self.full(&crate::kv::prefix_end(p)),
                            ..RangeRequest::default()
                        })),
                    })
                    .collect(),
                failure: Vec::new(),
            })
            .collect();
        let mut out = Vec::with_capacity(prefixes.len());
        for wave in txns.chunks(CONCURRENT_READS) {
            let replies = self.run_authed("txn", |kv| {
                let wave = wave.to_vec();
                async move {
                    let mut set = tokio::task::JoinSet::new();
                    for (i, txn) in wave.into_iter().enumerate() {
                        let mut kv = kv.clone();
                        set.spawn(async move { (i, kv.txn(txn).await) });
                    }
                    let mut replies = Vec::new();
                    while let Some(done) = set.join_next().await {
                        let (i, reply) =
                            done.map_err(|e| tonic::Status::internal(e.to_string()))?;
                        replies.push((i, reply?.into_inner()));
                    }
                    replies.sort_by_key(|(i, _)| *i);
                    Ok(replies)
                }
            })?;
            for (_, reply) in replies {
                for r in reply.responses {
                    let Some(response_op::Response::ResponseRange(range)) = r.response else {
                        return Err(unavailable(
                            "txn",
                            "etcd answered a read with something else",
                        ));
                    };
                    out.push(
                        range
                            .kvs
                            .into_iter()
                            .map(|mut kv| (kv.key.split_off(cut), kv.value))
                            .collect(),
                    );
                }
            }
        }
        if out.len() != prefixes.len() {
            return Err(unavailable(
                "txn",
                "etcd answered a different number of reads",
            ));
        }
        Ok(out)
    }

    /// Runs a transaction. Under a fence ([`EtcdConfig::fence`]) it also requires the
    /// leader key this coordinator created, and fails with [`StoreError::Conflict`] when
    /// another holds it or none does.
    pub(crate) fn txn(&self, mut txn: TxnRequest) -> Result<TxnResponse> {
        if let Some(fence) = self.config.fence {
            let key = self.full(LEADER);
            txn.compare.push(Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Create as i32,
                key: key.clone(),
                target_union: Some(compare::TargetUnion::CreateRevision(fence)),
                range_end: Vec::new(),
            });
            // Last, after any read the caller's failure branch makes.
            txn.failure.push(RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key,
                    ..RangeRequest::default()
                })),
            });
        }
        let reply = self.run_authed("txn", move |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await.map(tonic::Response::into_inner) }
        })?;
        if let Some(fence) = self.config.fence
            && !reply.succeeded
        {
            let held = match reply.responses.last().and_then(|r| r.response.as_ref()) {
                Some(response_op::Response::ResponseRange(range)) => {
                    range.kvs.first().map(|kv| kv.create_revision)
                }
                _ => None,
            };
            if held != Some(fence) {
                return Err(StoreError::Conflict(
                    "this coordinator no longer leads the service (its lease ended): it writes nothing more".into(),
                ));
            }
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_members_and_a_prefix() {
        let c = EtcdConfig::parse("etcd://127.0.0.1:2379,127.0.0.1:2380/teams/a").unwrap();
        assert_eq!(
            c.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.1:2380"]
        );
        assert_eq!(c.prefix, "teams/a/");
        let c = EtcdConfig::parse("etcds://etcd.internal:2379").unwrap();
        assert_eq!(c.endpoints, ["https://etcd.internal:2379"]);
        assert_eq!(c.prefix, "mandate/");
        assert!(EtcdConfig::parse("http://127.0.0.1:2379").is_err());
        assert!(EtcdConfig::parse("etcd:///x").is_err());
    }

    #[test]
    fn the_password_stays_out_of_debug() {
        let mut c = EtcdConfig::new(vec!["http://127.0.0.1:2379".into()]);
        c.credentials = Some(("root".into(), "hunter2".into()));
        let shown = format!("{c:?}");
        assert!(
            shown.contains("root") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
