//! `mandate-gateway`: puts existing HTTP APIs behind Mandate with no change to them.
//!
//! Each upstream is mounted under `/<name>/`. A call passes only when it matches a
//! configured route and carries a chain (`x-mandate-chain`) and an invocation proof
//! (`x-mandate-invocation`) for exactly this call, made out to the gateway's agent id; the
//! gateway then forwards it with the upstream's credential, which agents never see. Chain
//! and proof are never forwarded. Decisions are offline, with the SDK's `ToolVerifier`
//! (trust bundle, revocation feed, bounded staleness, replay cache). docs/GATEWAY.md says
//! how a proof binds a call.

#![forbid(unsafe_code)]

mod audit;
mod config;
mod limits;
pub mod mcp;
mod stdio;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mandate_core::{Call, Chain, Clock as _, Invocation, Limits, Value};
use mandate_sdk::{Client, Signer, ToolConfig, ToolVerifier, WhenStale};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;

pub use config::{Config, ConfigError, Credential, GatewaySection, Route, Upstream};
pub use stdio::run_stdio;

/// The header carrying the chain (text form).
pub const HEADER_CHAIN: &str = "x-mandate-chain";
/// The header carrying the invocation proof (text form).
pub const HEADER_INVOCATION: &str = "x-mandate-invocation";
/// The header naming the reason of a refusal.
pub const HEADER_REASON: &str = "x-mandate-reason";

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The gateway's key could not be loaded.
    #[error("gateway key: {0}")]
    Key(#[from] mandate_core::Error),
    /// A credential's secret could not be read.
    #[error("upstream `{upstream}`: {why}")]
    Credential {
        /// The upstream.
        upstream: String,
        /// Why.
        why: String,
    },
    /// The coordinator could not be reached or refused the gateway.
    #[error("coordinator: {0}")]
    Coordinator(#[from] mandate_sdk::Error),
    /// The server command could not be started (`mandate gateway stdio`).
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The program.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The decision spool file could not be opened or read.
    #[error("decision spool `{}`: {source}", path.display())]
    Spool {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

type Body = BoxBody<Bytes, hyper::Error>;

/// An upstream ready to serve: its routes and the credential header to inject.
struct Mount {
    upstream: Upstream,
    credential: Option<(HeaderName, HeaderValue)>,
}

struct State {
    mounts: Vec<Mount>,
    decider: Decider,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    max_body_bytes: usize,
}

/// A running gateway.
pub struct Gateway {
    /// Where it listens.
    pub local_addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    reports: Reports,
}

/// The delivery of offline decisions to the coordinator's audit log.
struct Reports {
    spool: Arc<audit::Spool>,
    verifier: ToolVerifier,
    task: tokio::task::JoinHandle<()>,
}

impl Reports {
    fn start(verifier: &ToolVerifier, gateway: &GatewaySection) -> Result<Reports, StartError> {
        let started = mandate_core::SystemClock.now_ms();
        let (capacity, prefix) = (gateway.max_spooled_decisions, format!("{started:x}"));
        let spool = Arc::new(match &gateway.spool_file {
            None => audit::Spool::new(capacity, prefix),
            Some(path) => {
                audit::Spool::open(capacity, prefix, path).map_err(|source| StartError::Spool {
                    path: path.clone(),
                    source,
                })?
            }
        });
        let task = tokio::spawn({
            let spool = Arc::clone(&spool);
            let verifier = verifier.clone();
            async move { spool.deliver(verifier, Duration::from_secs(1)).await }
        });
        Ok(Reports {
            spool,
            verifier: verifier.clone(),
            task,
        })
    }

    /// Stops the delivery task and delivers what waits (for up to 5 s); what cannot be
    /// delivered is counted in the log.
    async fn finish(self) {
        self.task.abort();
        let flushed =
            tokio::time::timeout(Duration::from_secs(5), self.spool.flush(&self.verifier)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::error!(
                undelivered = self.spool.len(),
                "offline decisions could not be delivered to the coordinator's audit log"
            );
        }
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Stops accepting calls, waits for the accept loop to end, and delivers the offline
    /// decisions still waiting to the coordinator's audit log.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.reports.finish().await;
    }
}

fn secret(upstream: &str, c: &Credential) -> Result<(HeaderName, HeaderValue), StartError> {
    let fail = |why: String| StartError::Credential {
        upstream: upstream.to_owned(),
        why,
    };
    let raw = match (&c.env, &c.file) {
        (Some(var), _) => std::env::var(var)
            .map_err(|_| fail(format!("environment variable `{var}` is not set")))?,
        (_, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read `{}`: {e}", path.display())))?
            .trim()
            .to_owned(),
        (None, None) => return Err(fail("no secret source".into())),
    };
    let value = match c.scheme.as_str() {
        "bearer" => format!("Bearer {raw}"),
        "basic" => format!("Basic {raw}"),
        _ => raw,
    };
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| fail("the secret is not a valid header value".into()))?;
    value.set_sensitive(true);
    let name = HeaderName::from_bytes(c.header.as_bytes())
        .map_err(|_| fail("bad credential header".into()))?;
    Ok((name, value))
}

/// Starts a gateway: loads its key and the upstream secrets, connects to the coordinator
/// (trust bundle, revocation feed) and listens.
pub async fn start(config: Config) -> Result<Gateway, StartError> {
    let mut mounts = Vec::new();
    for u in config.upstreams {
        let credential = u
            .credential
            .as_ref()
            .map(|c| secret(&u.name, c))
            .transpose()?;
        mounts.push(Mount {
            upstream: u,
            credential,
        });
    }
    let verifier = verifier(&config.gateway).await?;
    let reports = Reports::start(&verifier, &config.gateway)?;
    let listener = TcpListener::bind(config.gateway.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.gateway.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: config.gateway.listen,
        source,
    })?;
    let state = Arc::new(State {
        mounts,
        decider: Decider {
            verifier,
            spool: Arc::clone(&reports.spool),
            limits: limits::Limits::new(
                config.gateway.max_requests_per_minute,
                config.gateway.max_calls_per_holder_per_minute,
            ),
        },
        http: HttpClient::builder(TokioExecutor::new()).build_http(),
        max_body_bytes: config.gateway.max_body_bytes,
    });
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let connections = Arc::new(tokio::sync::Semaphore::new(config.gateway.max_connections));
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    // Over the connection cap, a new connection is closed at once.
                    let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                        tracing::warn!("connection cap reached: closing a new connection");
                        continue;
                    };
                    let state = Arc::clone(&state);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = Arc::clone(&state);
                            async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                        });
                        // A client that never finishes its headers is dropped.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        drop(permit);
                    });
                }
            }
        }
    });
    tracing::info!(%local_addr, "mandate gateway listening");
    Ok(Gateway {
        local_addr,
        stop,
        task,
        reports,
    })
}

/// The gateway's offline verifier: its identity, the coordinator's trust bundle and
/// revocation feed, staleness that fails closed.
async fn verifier(gateway: &GatewaySection) -> Result<ToolVerifier, StartError> {
    let signer = Signer::from_key_file(&gateway.agent, &gateway.key)?;
    let client = Client::connect(mandate_sdk::endpoint(&gateway.coordinator), signer).await?;
    let mut tool = ToolConfig::new(gateway.agent.clone());
    tool.max_staleness = Duration::from_millis(gateway.max_staleness_ms);
    tool.when_stale = WhenStale::FailClosed;
    Ok(ToolVerifier::connect(client, tool).await?)
}

/// Everything a decision needs: the verifier, the spool of offline decisions, the budgets.
struct Decider {
    verifier: ToolVerifier,
    spool: Arc<audit::Spool>,
    limits: limits::Limits,
}

impl Decider {
    /// Decides a call: offline against the followed revocation feed, or, when `online`,
    /// with `Authorize` at the coordinator (which audits it) and the call as policy
    /// signals; then the holder's budget, and the offline decision's record.
    async fn decide(
        &self,
        online: bool,
        upstream: &str,
        call: &Call,
        chain: &[u8],
        proof: &[u8],
    ) -> mandate_sdk::Decision {
        let (verifier, spool, limits) = (&self.verifier, &*self.spool, &self.limits);
        let mut decision = if online {
            verifier
                .authorize_online(chain, proof, call, signals(upstream, call))
                .await
        } else {
            verifier.authorize(chain, proof, call).await
        };
        // The budget is the task's: a holder cannot multiply it by delegating to fresh keys.
        let budget = decision.task.as_deref().or(decision.holder.as_deref());
        if decision.allowed && !limits.call(budget.unwrap_or_default()) {
            decision.allowed = false;
            decision.reason = "RATE_LIMITED".into();
            decision.detail = "this task is over its call budget; retry later".into();
        }
        // An offline decision is reported to the coordinator's audit log; one that cannot be
        // recorded is not given.
        if !decision.online
            && !spool.push(
                upstream,
                call,
                &decision,
                mandate_core::SystemClock.now_ms(),
            )
        {
            tracing::error!(
                upstream,
                resource = %call.resource,
                allowed = decision.allowed,
                "the decision spool is full: refusing, and this decision is not in the coordinator's audit log"
            );
            decision.allowed = false;
            decision.reason = "AUDIT_BACKLOG".into();
            decision.detail =
                "the gateway cannot record more decisions until the coordinator takes them".into();
        }
        log_decision(upstream, call, &decision);
        decision
    }
}

/// The signals an online decision carries for the `Invoke` policy
/// (`context.signals.getTag("arg.id")`): `gateway.upstream`, and `arg.<name>` for each
/// argument whose name and value fit the coordinator's limits (names of `[A-Za-z0-9_.-]`
/// up to 64 characters with the prefix, values up to 256 bytes, integers in decimal; 32
/// signals in all). An argument that does not fit is left out, so a policy that needs it
/// should forbid when the tag is absent.
pub fn signals(upstream: &str, call: &Call) -> BTreeMap<String, String> {
    let mut signals = BTreeMap::new();
    if upstream.len() <= 256 {
        signals.insert("gateway.upstream".to_owned(), upstream.to_owned());
    }
    for (name, value) in &call.args {
        if signals.len() >= 32 {
            break;
        }
        let key = format!("arg.{name}");
        let value = match value {
            Value::Text(t) => t.clone(),
            Value::Int(i) => i.to_string(),
        };
        let fits = key.len() <= 64
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && value.len() <= 256;
        if fits {
            signals.insert(key, value);
        }
    }
    signals
}

/// One log line per decision (the credential and the tokens never appear).
fn log_decision(upstream: &str, call: &Call, decision: &mandate_sdk::Decision) {
    tracing::info!(
        upstream = %upstream,
        action = %call.action,
        resource = %call.resource,
        allowed = decision.allowed,
        reason = %decision.reason,
        holder = decision.holder.as_deref().unwrap_or_default(),
        task = decision.task.as_deref().unwrap_or_default(),
        "gateway decision"
    );
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A refusal: the status, the reason in a header and a small JSON body. Never the chain,
/// the proof or anything of the upstream's.
fn refuse(status: StatusCode, reason: &str, detail: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": { "reason": reason, "detail": detail } }).to_string();
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(reason) {
        r.headers_mut().insert(HEADER_REASON, v);
    }
    r
}

/// Matches `path` (below the mount) against a route pattern; the parameters on success.
fn matches(pattern: &str, path: &str) -> Option<BTreeMap<String, String>> {
    let (p, a): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    if p.len() != a.len() {
        return None;
    }
    let mut params = BTreeMap::new();
    for (want, got) in p.iter().zip(&a) {
        match want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) => {
                params.insert(name.to_owned(), param_value(got)?);
            }
            None if want == got => {}
            None => return None,
        }
    }
    Some(params)
}

/// A path parameter as the upstream will read it: percent-decoded, and refused (no route
/// matches) when empty, a dot segment, not UTF-8, or holding anything an upstream might
/// read as structure (`/`, `\`, `;`, `%` after decoding, `{`, `}`, `*`, control
/// characters). So `%31%33` is the parameter `13`, and `42%2Fpay` matches nothing.
fn param_value(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let v = String::from_utf8(out).ok()?;
    let unsafe_value = v.is_empty()
        || v == "."
        || v == ".."
        || v.chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\' | ';' | '%' | '{' | '}' | '*'));
    (!unsafe_value).then_some(v)
}

/// The call an HTTP request stands for (docs/GATEWAY.md), which the agent's proof must
/// name exactly: the route's `action`, its `resource` with the path parameters filled in,
/// and as arguments the path parameters (text) and `http.method`, `http.path` (the path as
/// sent to the gateway), `http.query` (the raw query, or empty) and `http.body_sha256`
/// (lowercase hex of the body's SHA-256). Agents build the same call to sign their proof.
pub fn http_call(
    action: &str,
    resource_template: &str,
    params: &BTreeMap<String, String>,
    method: &str,
    path: &str,
    query: &str,
    body: &[u8],
) -> Call {
    let mut resource = resource_template.to_owned();
    for (k, v) in params {
        resource = resource.replace(&format!("{{{k}}}"), v);
    }
    let mut call = Call::new(action, resource);
    for (k, v) in params {
        call.args.insert(k.clone(), Value::Text(v.clone()));
    }
    let digest: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    for (k, v) in [
        ("http.method", method.to_owned()),
        ("http.path", path.to_owned()),
        ("http.query", query.to_owned()),
        ("http.body_sha256", digest),
    ] {
        call.args.insert(k.to_owned(), Value::Text(v));
    }
    call
}

/// Headers that are the connection's, not the request's, and never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Headers some servers read as a different method, path or client than the request's
/// own: never forwarded, since the proof does not bind them.
const REWRITING: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-method",
    "forwarded",
    "x-real-ip",
    "x-client-ip",
];

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    if req.method() == Method::GET && req.uri().path() == "/healthz" {
        return Response::new(full("ok"));
    }
    if !state.decider.limits.request() {
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "the gateway is over its request budget; retry later",
        );
    }
    let path = req.uri().path().to_owned();
    let rest = path.trim_start_matches('/');
    let (name, below) = rest.split_once('/').map_or((rest, ""), |(n, b)| (n, b));
    let below = format!("/{below}");
    let Some(mount) = state.mounts.iter().find(|m| m.upstream.name == name) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "NO_SUCH_UPSTREAM",
            "no upstream is mounted here",
        );
    };
    if mount.upstream.kind == "mcp" {
        return handle_mcp(state, mount, req).await;
    }
    let Some((route, params)) = mount.upstream.routes.iter().find_map(|r| {
        (r.method.to_ascii_uppercase() == req.method().as_str())
            .then(|| matches(&r.path, &below).map(|p| (r, p)))
            .flatten()
    }) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "NO_SUCH_ROUTE",
            "no route of this upstream matches the call",
        );
    };
    let (parts, body) = match read_body(state, req).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(chain_text), Some(proof_text)) = (header(HEADER_CHAIN), header(HEADER_INVOCATION))
    else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "MANDATE_REQUIRED",
            "send the chain in x-mandate-chain and a proof for this call in x-mandate-invocation",
        );
    };
    let limits = Limits::default();
    let tokens = Chain::from_text(chain_text, &limits).and_then(|c| {
        Ok((
            c.encode(),
            Invocation::from_text(proof_text, &limits)?.encode(),
        ))
    });
    let (chain, proof) = match tokens {
        Ok(t) => t,
        Err(d) => return refuse(StatusCode::FORBIDDEN, d.reason().code(), d.detail()),
    };
    let call = http_call(
        &route.action,
        &route.resource,
        &params,
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or_default(),
        &body,
    );
    let online = mount.upstream.online || route.online;
    let decision = state
        .decider
        .decide(online, &mount.upstream.name, &call, &chain, &proof)
        .await;
    if !decision.allowed {
        let status = if decision.reason == "RATE_LIMITED" {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::FORBIDDEN
        };
        return refuse(status, &decision.reason, &decision.detail);
    }
    forward(state, mount, &below, parts, body).await
}

fn rpc_answer(v: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The request's head and its whole body, or the refusal of a body over the limit.
async fn read_body(
    state: &State,
    req: Request<Incoming>,
) -> Result<(http::request::Parts, Bytes), Response<Body>> {
    let (parts, body) = req.into_parts();
    match Limited::new(body, state.max_body_bytes).collect().await {
        Ok(b) => Ok((parts, b.to_bytes())),
        Err(_) => Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_TOO_LARGE",
            "the body is over the gateway's limit",
        )),
    }
}

/// Largest `tools/list` answer the gateway rewrites.
const MAX_LIST_BYTES: usize = 16 << 20;

async fn handle_mcp(state: &State, mount: &Mount, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = match read_body(state, req).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let mut parts = parts;
    // Answers are rewritten (tool lists), so they come uncompressed.
    parts.headers.remove(http::header::ACCEPT_ENCODING);
    if parts.method != Method::POST {
        // The server's event stream (GET) and the end of a session (DELETE) carry no call,
        // but only a live chain opens or ends one; replaying past events (`Last-Event-ID`)
        // could bring back unfiltered tool lists, so it is not passed on.
        if parts.method == Method::GET || parts.method == Method::DELETE {
            let live = parts
                .headers
                .get(HEADER_CHAIN)
                .and_then(|v| v.to_str().ok())
                .map(|t| Chain::from_text(t, &Limits::default()))
                .map(|c| c.map_err(|d| d.reason().code().to_owned()))
                .map(|c| {
                    c.and_then(|c| {
                        state
                            .decider
                            .verifier
                            .verify_chain(&c.encode())
                            .map_err(|d| d.reason)
                    })
                });
            return match live {
                None => refuse(
                    StatusCode::UNAUTHORIZED,
                    "MANDATE_REQUIRED",
                    "send the chain (x-mandate-chain) to open or end an MCP stream",
                ),
                Some(Err(reason)) => {
                    refuse(StatusCode::FORBIDDEN, &reason, "the chain is not live")
                }
                Some(Ok(_)) => {
                    parts.headers.remove("last-event-id");
                    forward(state, mount, "", parts, Bytes::new()).await
                }
            };
        }
        return refuse(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "MCP takes POST, GET and DELETE",
        );
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let name = &mount.upstream.name;
    let planned = mcp::plan(
        name,
        &body,
        header(HEADER_CHAIN),
        header(HEADER_INVOCATION),
        header("mcp-method"),
        header("mcp-name"),
    );
    match planned {
        mcp::Plan::Answer(v) => rpc_answer(&v),
        mcp::Plan::Forward(b) => forward(state, mount, "", parts, Bytes::from(b)).await,
        mcp::Plan::ForwardAndFilter(b, chain) => {
            if let Err(d) = state.decider.verifier.verify_chain(&chain.encode()) {
                return rpc_answer(&mcp::rpc_error(
                    &request_id(&b),
                    mcp::REFUSED,
                    &d.reason,
                    &d.detail,
                ));
            }
            let resp = forward(state, mount, "", parts, Bytes::from(b)).await;
            let (mut head, body) = resp.into_parts();
            let Ok(collected) = Limited::new(body, MAX_LIST_BYTES).collect().await else {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    "UPSTREAM_UNAVAILABLE",
                    "the tool list could not be read",
                );
            };
            head.headers.remove(http::header::CONTENT_LENGTH);
            let Some(filtered) = mcp::filter_tools(&collected.to_bytes(), &chain, name) else {
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    "UPSTREAM_UNREADABLE",
                    "the tool list could not be read whole, so it is not passed on",
                );
            };
            Response::from_parts(head, full(filtered))
        }
        mcp::Plan::Check {
            body: b,
            chain,
            proof,
            call,
        } => {
            let tool = call
                .resource
                .rsplit_once('/')
                .map_or("", |(_, t)| t)
                .to_owned();
            let online = mount.upstream.tool_online(&tool);
            let decision = state
                .decider
                .decide(online, name, &call, &chain, &proof)
                .await;
            if !decision.allowed {
                return rpc_answer(&mcp::rpc_error(
                    &request_id(&b),
                    mcp::REFUSED,
                    &decision.reason,
                    &decision.detail,
                ));
            }
            forward(state, mount, "", parts, Bytes::from(b)).await
        }
    }
}

fn request_id(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(serde_json::Value::Null)
}

async fn forward(
    state: &State,
    mount: &Mount,
    below: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let base = mount.upstream.url.trim_end_matches('/');
    let uri = match parts.uri.query() {
        Some(q) => format!("{base}{below}?{q}"),
        None => format!("{base}{below}"),
    };
    let mut out = Request::builder().method(parts.method.clone()).uri(uri);
    for (name, value) in &parts.headers {
        let n = name.as_str();
        let injected = mount.credential.as_ref().is_some_and(|(h, _)| h == name);
        // The body may have been rewritten: hyper sets its length.
        if HOP_BY_HOP.contains(&n)
            || REWRITING.contains(&n)
            || n.starts_with("x-forwarded-")
            || n.starts_with("x-mandate-")
            || injected
            || n == "content-length"
        {
            continue;
        }
        out = out.header(name, value);
    }
    if let Some((h, v)) = &mount.credential {
        out = out.header(h, v);
    }
    let Ok(request) = out.body(Full::new(body)) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "the call cannot be forwarded",
        );
    };
    match state.http.request(request).await {
        Ok(resp) => resp.map(|b| b.boxed()),
        Err(e) => {
            tracing::warn!(upstream = %mount.upstream.name, error = %e, "upstream unreachable");
            refuse(
                StatusCode::BAD_GATEWAY,
                "UPSTREAM_UNAVAILABLE",
                "the upstream did not answer",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_patterns_bind_whole_segments() {
        let p = matches("/invoices/{id}", "/invoices/42").unwrap();
        assert_eq!(p["id"], "42");
        assert!(matches("/invoices/{id}", "/invoices/").is_none());
        assert!(matches("/invoices/{id}", "/invoices/42/pay").is_none());
        assert!(matches("/invoices/{id}", "/orders/42").is_none());
        assert!(matches("/health", "/health").unwrap().is_empty());
    }

    #[test]
    fn path_parameters_are_checked_as_the_upstream_reads_them() {
        let id = |path: &str| matches("/invoices/{id}", path).map(|p| p["id"].clone());
        assert_eq!(id("/invoices/%31%33").as_deref(), Some("13"));
        assert_eq!(id("/invoices/a%20b").as_deref(), Some("a b"));
        for refused in [
            "/invoices/42%2Fpay",
            "/invoices/42%2fpay",
            "/invoices/..",
            "/invoices/.",
            "/invoices/%2E%2E",
            "/invoices/a%5Cb",
            "/invoices/a;jsessionid=1",
            "/invoices/%2531",
            "/invoices/%zz",
            "/invoices/%3",
            "/invoices/%FF",
            "/invoices/{b}",
            "/invoices/a%00",
            "/invoices/*",
        ] {
            assert_eq!(id(refused), None, "{refused}");
        }
    }
}
