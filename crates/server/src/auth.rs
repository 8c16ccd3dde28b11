//! Request authentication as a tower layer: every call to a `mandate.v1` service must be
//! signed by a registered, active agent (docs/PROTOCOL.md). The layer hashes the request
//! message exactly as received, checks the signature, the timestamp window and the nonce,
//! and puts the verified [`Caller`] in the request extensions. Health and reflection stay
//! open (read-only, no secrets).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use mandate_core::{Clock, NonceWindow, PreparedKey, RequestAuth};
use mandate_store::{AgentRecord, AgentStatus, Store};
use tonic::body::Body;
use tower::{Layer, Service};

use crate::coordinator::Role;
use crate::error::{ApiError, ErrorReason};

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The caller's agent record, as of the call.
    pub agent: AgentRecord,
    /// The request nonce; mutating calls store it with their change so that a replay is
    /// refused even after a restart.
    pub nonce: [u8; 16],
    /// When the nonce may be forgotten, Unix ms.
    pub nonce_expires_ms: u64,
}

impl Caller {
    /// The caller's role, as the coordinator's permission rules see it.
    pub fn role(&self) -> Role {
        Role::of(&self.agent.role)
    }

    /// Whether the caller is an administrator.
    pub fn is_admin(&self) -> bool {
        self.role() == Role::Admin
    }
}

/// Settings and state shared by every request.
pub(crate) struct AuthState {
    pub(crate) store: Arc<dyn Store>,
    /// Agent records, shared with the coordinator (which clears it when agents change).
    pub(crate) agents: Arc<crate::state::agents::AgentCache>,
    pub(crate) clock: Arc<dyn Clock>,
    /// How old a request may be, ms.
    pub(crate) window_ms: u64,
    /// How far in the future a request may be dated, ms.
    pub(crate) skew_ms: u64,
    /// Largest request message accepted, bytes.
    pub(crate) max_message_bytes: usize,
    pub(crate) nonces: Mutex<NonceCache>,
    /// Agents' keys, decompressed once (keyed by agent id, checked against the stored key
    /// bytes on every use).
    pub(crate) keys: Mutex<HashMap<String, PreparedKey>>,
    /// A key nobody holds: a request from an unregistered agent is checked against it, so
    /// the answer and its timing are those of a bad signature (no enumeration of ids).
    pub(crate) decoy: PreparedKey,
    /// Whether this coordinator still leads the service (`Config::leading`).
    pub(crate) leading: Option<crate::LeaderCheck>,
}

impl AuthState {
    /// Refuses when this coordinator no longer leads the service.
    fn check_leading(&self) -> Result<(), ApiError> {
        match &self.leading {
            Some(leads) if !leads() => Err(ApiError::new(
                tonic::Code::Unavailable,
                ErrorReason::NotLeader,
                "this coordinator no longer leads the service: ask another",
            )),
            _ => Ok(()),
        }
    }
}

/// Most agents' decompressed keys kept (about 200 bytes each).
const MAX_PREPARED_KEYS: usize = 16_384;

/// The one answer for "no such agent" and "wrong signature".
fn bad_signature() -> ApiError {
    ApiError::unauthenticated(
        ErrorReason::BadRequestSignature,
        "the request signature does not verify for this agent, method and message",
    )
}

/// Recently seen request nonces, bounded; refuses rather than forgets when full.
pub(crate) struct NonceCache {
    // Fingerprints of nonces (`mandate_core::Fingerprints` says why a collision can only
    // refuse, never admit), in generations; each generation counts its nonces per agent.
    window: NonceWindow<HashMap<Box<str>, u32>>,
    fingerprints: mandate_core::Fingerprints,
    capacity: usize,
    // Nonces per agent in the window: one agent flooding it cannot lock everyone out.
    per_agent_capacity: usize,
}

impl NonceCache {
    /// At most `capacity` nonces, `per_agent_capacity` from any one agent, each kept for
    /// at most `horizon_ms`.
    pub(crate) fn new(capacity: usize, per_agent_capacity: usize, horizon_ms: u64) -> NonceCache {
        NonceCache {
            window: NonceWindow::new(horizon_ms / 8),
            fingerprints: mandate_core::Fingerprints::default(),
            capacity,
            per_agent_capacity,
        }
    }

    fn check_and_insert(
        &mut self,
        agent: &str,
        nonce: [u8; 16],
        expires: u64,
        now: u64,
    ) -> Result<(), ApiError> {
        let nonce = self.fingerprints.of(&[&nonce]);
        self.window.expire(now);
        if self.window.seen(nonce, now) {
            return Err(ApiError::unauthenticated(
                ErrorReason::RequestReplayed,
                "this request was already received",
            ));
        }
        // An agent's nonces count until their generation goes: at most an eighth of the
        // horizon longer than each is kept.
        let from_agent: u64 = self
            .window
            .tallies()
            .filter_map(|t| t.get(agent))
            .map(|&n| u64::from(n))
            .sum();
        if from_agent >= self.per_agent_capacity as u64 {
            return Err(ApiError::new(
                tonic::Code::ResourceExhausted,
                ErrorReason::RateLimited,
                "too many requests from this agent in the replay window; slow down",
            ));
        }
        if self.window.len() >= self.capacity {
            self.window.sweep(now);
        }
        if self.window.len() >= self.capacity {
            return Err(ApiError::new(
                tonic::Code::ResourceExhausted,
                ErrorReason::Overloaded,
                "too many requests in the replay window",
            ));
        }
        let tally = self.window.insert(nonce, expires, now);
        match tally.get_mut(agent) {
            Some(n) => *n += 1,
            None => {
                tally.insert(agent.into(), 1);
            }
        }
        Ok(())
    }
}

impl AuthState {
    /// Entries held: request nonces in the replay window, decompressed agent keys.
    pub(crate) fn sizes(&self) -> [usize; 2] {
        let nonces = self
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .window
            .len();
        let keys = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        [nonces, keys]
    }

    fn prepared_key(&self, agent: &AgentRecord) -> Result<PreparedKey, ApiError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = keys.get(agent.id.as_str())
            && k.public_key() == agent.public_key
        {
            return Ok(*k);
        }
        let key = agent.public_key.prepare().map_err(|_| {
            tracing::warn!(agent = %agent.id, "an agent's stored key is unusable");
            bad_signature()
        })?;
        // Bounded: active agents come back at once, inactive ones are forgotten.
        if keys.len() >= MAX_PREPARED_KEYS {
            keys.clear();
            keys.shrink_to_fit();
        }
        keys.insert(agent.id.to_string(), key);
        Ok(key)
    }

    /// Over mutual TLS, a client certificate that names SPIFFE ids must name the agent the
    /// request is signed as (a certificate without one is not an identity claim).
    fn check_peer(extensions: &http::Extensions, agent: &str) -> Result<(), ApiError> {
        let Some(info) = extensions
            .get::<mandate_tls::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>()
        else {
            return Ok(());
        };
        match mandate_tls::peer_identity(info) {
            mandate_tls::PeerIdentity::None => Ok(()),
            mandate_tls::PeerIdentity::Spiffe(id) if id == agent => Ok(()),
            mandate_tls::PeerIdentity::Spiffe(id) => {
                tracing::info!(agent, certificate = %id, "request signed as another agent than the client certificate names");
                Err(ApiError::unauthenticated(
                    ErrorReason::PeerIdentityMismatch,
                    "the request is signed as another agent than the client certificate names",
                ))
            }
            mandate_tls::PeerIdentity::Invalid(why) => {
                tracing::info!(agent, why, "client certificate refused as an identity");
                Err(ApiError::unauthenticated(
                    ErrorReason::PeerIdentityMismatch,
                    why,
                ))
            }
        }
    }

    /// The checks that need only the headers: present, well formed, timely.
    fn precheck(&self, headers: &http::HeaderMap) -> Result<RequestAuth, ApiError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let auth = RequestAuth::from_header_values(
            header(mandate_core::HEADER_AGENT),
            header(mandate_core::HEADER_TIMESTAMP),
            header(mandate_core::HEADER_NONCE),
            header(mandate_core::HEADER_SIGNATURE),
        )
        .ok_or_else(|| {
            ApiError::unauthenticated(
                ErrorReason::UnsignedRequest,
                "the request must carry x-mandate-agent, x-mandate-timestamp, x-mandate-nonce and x-mandate-signature",
            )
        })?;
        let now = self.clock.now_ms();
        if auth.timestamp_ms > now.saturating_add(self.skew_ms)
            || now > auth.timestamp_ms.saturating_add(self.window_ms)
        {
            return Err(ApiError::unauthenticated(
                ErrorReason::StaleRequest,
                "the request timestamp is outside the accepted window; check the clock",
            ));
        }
        Ok(auth)
    }

    fn authenticate(&self, parts: &http::request::Parts, body: &[u8]) -> Result<Caller, ApiError> {
        let auth = self.precheck(&parts.headers)?;
        let message = grpc_message(body)?;
        let now = self.clock.now_ms();
        let Some(agent) = self.agents.get(&*self.store, &auth.agent)? else {
            // Same work and same answer as a bad signature: callers cannot tell which
            // agent ids exist. The log keeps the detail.
            let _ = auth.verify_prepared(&self.decoy, parts.uri.path(), message);
            tracing::info!(agent = %auth.agent, "request from an unregistered agent");
            return Err(bad_signature());
        };
        let key = self.prepared_key(&agent)?;
        if !auth.verify_prepared(&key, parts.uri.path(), message) {
            return Err(bad_signature());
        }
        if agent.status != AgentStatus::Active {
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                ErrorReason::AgentDisabled,
                format!("agent `{}` is disabled", agent.id),
            ));
        }
        let expires = auth
            .timestamp_ms
            .saturating_add(self.window_ms)
            .saturating_add(1);
        // Mutating calls persist their nonce with their change; a replay after a restart
        // finds it in the store.
        if self.store.nonce(&auth.nonce)?.is_some_and(|e| e > now) {
            return Err(ApiError::unauthenticated(
                ErrorReason::RequestReplayed,
                "this request was already received",
            ));
        }
        self.nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check_and_insert(&agent.id, auth.nonce, expires, now)?;
        Ok(Caller {
            agent: Arc::unwrap_or_clone(agent),
            nonce: auth.nonce,
            nonce_expires_ms: expires,
        })
    }
}

/// The one gRPC message in a request body: a 5-byte frame header (uncompressed flag and
/// big-endian length) and exactly that many bytes.
fn grpc_message(body: &[u8]) -> Result<&[u8], ApiError> {
    let bad = |why: &str| ApiError::invalid(format!("malformed gRPC request body: {why}"));
    let header = body
        .get(..5)
        .ok_or_else(|| bad("shorter than a frame header"))?;
    if header[0] != 0 {
        return Err(bad("compressed requests are not accepted"));
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if body.len() != 5 + len {
        return Err(bad("expected exactly one message"));
    }
    Ok(&body[5..])
}

/// Adds request authentication to a service.
#[derive(Clone)]
pub(crate) struct AuthLayer {
    pub(crate) state: Arc<AuthState>,
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> AuthService<S> {
        AuthService {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

/// See [`AuthLayer`].
#[derive(Clone)]
pub(crate) struct AuthService<S> {
    inner: S,
    state: Arc<AuthState>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S> Service<http::Request<Body>> for AuthService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if !req.uri().path().starts_with("/mandate.v1.") {
            return Box::pin(inner.call(req));
        }
        let state = Arc::clone(&self.state);
        // One span per request: the method, the signing agent once authenticated, and the
        // task and link the request names (recorded where they are parsed). Never a token,
        // a key or a signature.
        let span = tracing::info_span!(
            "rpc",
            method = %req.uri().path(),
            agent = tracing::field::Empty,
            task = tracing::field::Empty,
            link = tracing::field::Empty,
        );
        let in_span = span.clone();
        Box::pin(tracing::Instrument::instrument(
            async move {
                // Cheap checks before buffering any body: an unsigned or stale request costs
                // nothing but its headers.
                let checked = state.check_leading().and_then(|()| {
                    state
                        .precheck(req.headers())
                        .and_then(|auth| AuthState::check_peer(req.extensions(), &auth.agent))
                });
                if let Err(e) = checked {
                    tracing::info!(method = %req.uri().path(), reason = %e.reason, "request refused");
                    return Ok(e.into_status().into_http());
                }
                let (mut parts, body) = req.into_parts();
                let limit = state.max_message_bytes + 5;
                let bytes: Bytes = match Limited::new(body, limit).collect().await {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => {
                        let e = ApiError::new(
                            tonic::Code::ResourceExhausted,
                            ErrorReason::RequestTooLarge,
                            format!("request larger than {} bytes", state.max_message_bytes),
                        );
                        return Ok(e.into_status().into_http());
                    }
                };
                match state.authenticate(&parts, &bytes) {
                    Ok(caller) => {
                        in_span.record("agent", tracing::field::display(&caller.agent.id));
                        tracing::debug!("authenticated");
                        parts.extensions.insert(caller);
                        let response = inner
                            .call(http::Request::from_parts(
                                parts,
                                Body::new(Full::new(bytes)),
                            ))
                            .await;
                        // Decided while the lease ran out (a pause mid-call): withheld.
                        if let Err(e) = state.check_leading() {
                            return Ok(e.into_status().into_http());
                        }
                        if let Ok(r) = &response {
                            let status = r
                                .headers()
                                .get("grpc-status")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("0");
                            tracing::debug!(grpc_status = status, "handled");
                        }
                        response
                    }
                    Err(e) => {
                        tracing::info!(reason = %e.reason, "request refused");
                        Ok(e.into_status().into_http())
                    }
                }
            },
            span,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_agent_cannot_fill_the_nonce_cache_for_everyone() {
        let mut c = NonceCache::new(10, 3, 100);
        for i in 0..3u8 {
            c.check_and_insert("a", [i; 16], 100, 0).unwrap();
        }
        assert_eq!(
            c.check_and_insert("a", [9; 16], 100, 0).unwrap_err().reason,
            ErrorReason::RateLimited
        );
        c.check_and_insert("b", [10; 16], 100, 0).unwrap();
        assert_eq!(
            c.check_and_insert("b", [10; 16], 100, 0)
                .unwrap_err()
                .reason,
            ErrorReason::RequestReplayed
        );
        // After the window the agent's quota is back.
        c.check_and_insert("a", [11; 16], 300, 200).unwrap();
    }
}
