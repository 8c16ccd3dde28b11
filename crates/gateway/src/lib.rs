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
mod decide;
mod limits;
pub mod mcp;
mod routes;
mod stdio;

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
use mandate_core::{Chain, Invocation, Limits};
use tokio::net::TcpListener;

pub use config::{Config, ConfigError, Credential, GatewaySection, Route, Upstream};
pub use decide::signals;
pub use routes::http_call;
pub use stdio::run_stdio;

use decide::{Decider, Reports, verifier};
use routes::matches;

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
    /// The listener's TLS files could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] mandate_tls::TlsError),
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
    tls: Option<Arc<mandate_tls::ServerTls>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Reads the listener's TLS files again (`mandate gateway` does on SIGHUP); new
    /// connections get them, and on error the old ones stay. `Ok(false)`: no TLS.
    pub fn reload_tls(&self) -> Result<bool, mandate_tls::TlsError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

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
    let tls = match config.gateway.tls() {
        Some(files) => Some(Arc::new(mandate_tls::ServerTls::load(
            files,
            mandate_tls::Alpn::Http1,
        )?)),
        None => None,
    };
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
    let tls_on = tls.is_some();
    let reload = tls.clone();
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
                    let acceptor = tls.as_ref().map(|t| t.acceptor());
                    tokio::spawn(async move {
                        match acceptor {
                            None => serve_connection(state, stream).await,
                            Some(acceptor) => {
                                let handshake = tokio::time::timeout(
                                    mandate_tls::HANDSHAKE_TIMEOUT,
                                    acceptor.accept(stream),
                                );
                                match handshake.await {
                                    Ok(Ok(stream)) => serve_connection(state, stream).await,
                                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                            }
                        }
                        drop(permit);
                    });
                }
            }
        }
    });
    tracing::info!(%local_addr, tls = tls_on, "mandate gateway listening");
    Ok(Gateway {
        local_addr,
        stop,
        task,
        reports,
        tls: reload,
    })
}

/// Serves HTTP/1.1 on one accepted connection (plaintext or after the TLS handshake).
async fn serve_connection<S>(state: Arc<State>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
                            .verify_chain(&c)
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
            if let Err(d) = state.decider.verifier.verify_chain(&chain) {
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
