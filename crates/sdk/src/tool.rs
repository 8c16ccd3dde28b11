//! The tool side: verify chains and invocation proofs offline, following the revocation
//! feed, with bounded staleness; fall back to online `Authorize` where configured.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use mandate_core::{
    Call, Chain, Clock, Invocation, LinkId, RevocationList, RevocationSet, TrustBundle, Verifier,
    VerifierConfig,
};
use mandate_proto::v1 as pb;
use tokio_stream::StreamExt as _;

use crate::{Client, Error};

mod feed;
use feed::{FeedRefusal, FeedUpdate, check_feed_message, trust_bundle};

/// What to do when the revocation feed is older than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenStale {
    /// Refuse every call with `FEED_STALE` until the feed is current again.
    FailClosed,
    /// Ask the coordinator (`Authorize`) instead.
    AskOnline,
}

/// Tool-side settings.
#[derive(Clone, Debug)]
pub struct ToolConfig {
    /// This tool's audience: the agent id invocation proofs must name (the tool's own id
    /// when it also calls `Authorize`).
    pub audience: String,
    /// Longest time without word from the feed before the revocation set counts as stale.
    pub max_staleness: Duration,
    /// What to do when stale.
    pub when_stale: WhenStale,
    /// Offline verification settings.
    pub verifier: VerifierConfig,
}

impl ToolConfig {
    /// Defaults: 10 s staleness bound, fail closed.
    pub fn new(audience: impl Into<String>) -> ToolConfig {
        ToolConfig {
            audience: audience.into(),
            max_staleness: Duration::from_secs(10),
            when_stale: WhenStale::FailClosed,
            verifier: VerifierConfig::default(),
        }
    }
}

/// A decision on one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the call may proceed.
    pub allowed: bool,
    /// Stable reason when denied: a token reason (docs/TOKEN.md), `FEED_STALE`, or
    /// `COORDINATOR_UNAVAILABLE`.
    pub reason: String,
    /// Human-readable detail.
    pub detail: String,
    /// Whether the coordinator decided (online) rather than this process.
    pub online: bool,
    /// The leaf holder's agent id, when the chain decoded.
    pub holder: Option<String>,
    /// The task (hex), when the chain decoded.
    pub task: Option<String>,
}

impl Decision {
    fn deny(reason: &str, detail: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            reason: reason.to_owned(),
            detail: detail.into(),
            online: false,
            holder: None,
            task: None,
        }
    }
}

/// What the feed follower has applied: the live revocations, and when the feed was last
/// heard from.
#[derive(Debug, Default)]
struct Revocations {
    list: RevocationList,
    heard_ms: u64,
}

impl RevocationSet for Revocations {
    fn is_revoked(&self, id: &LinkId) -> bool {
        self.list.is_revoked(id)
    }
}

struct Inner {
    verifier: Verifier,
    // The version of the trust bundle in the verifier (0: one the coordinator does not
    // version, and the feed then carries no trust updates).
    trust_version: AtomicU64,
    revoked: RwLock<Revocations>,
    config: ToolConfig,
    client: Client,
    clock: Arc<dyn Clock>,
}

/// Verifies calls for one tool. Cheap to clone; the feed follower stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct ToolVerifier {
    inner: Arc<Inner>,
    _follower: Arc<FollowerGuard>,
}

impl std::fmt::Debug for ToolVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolVerifier")
            .field("audience", &self.inner.config.audience)
            .finish_non_exhaustive()
    }
}

struct FollowerGuard(tokio::task::JoinHandle<()>);

impl Drop for FollowerGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl ToolVerifier {
    /// Fetches the trust bundle with `client` (signing as the tool), starts following the
    /// revocation feed (reconnecting and resuming by epoch), and waits for its first
    /// message so that the set is current before the first call.
    pub async fn connect(client: Client, config: ToolConfig) -> Result<ToolVerifier, Error> {
        let (trust, version) = fetch_trust(&mut client.clone()).await?;
        let clock = Arc::clone(client.signer().clock());
        let inner = Arc::new(Inner {
            verifier: Verifier::new(trust, config.verifier.clone(), Arc::clone(&clock)),
            trust_version: AtomicU64::new(version),
            revoked: RwLock::new(Revocations::default()),
            config,
            client,
            clock,
        });
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let follower = tokio::spawn(follow(Arc::downgrade(&inner), ready_tx));
        let guard = Arc::new(FollowerGuard(follower));
        ready_rx.await.map_err(|_| Error::Status {
            code: tonic::Code::Unavailable,
            reason: "COORDINATOR_UNAVAILABLE".into(),
            message: "the revocation feed did not start".into(),
        })??;
        Ok(ToolVerifier {
            inner,
            _follower: guard,
        })
    }

    /// Milliseconds since the feed was last heard from.
    pub fn staleness_ms(&self) -> u64 {
        self.inner
            .clock
            .now_ms()
            .saturating_sub(read(&self.inner.revoked).heard_ms)
    }

    /// The version of the trust bundle in use (0 from a coordinator that does not version
    /// it): it grows as the feed announces coordinator keys added or retired.
    pub fn trust_version(&self) -> u64 {
        self.inner.trust_version.load(Ordering::SeqCst)
    }

    /// The trust bundle in use.
    pub fn trust_bundle(&self) -> Arc<TrustBundle> {
        self.inner.verifier.trust_bundle()
    }

    /// The revocation epoch applied so far.
    pub fn epoch(&self) -> u64 {
        read(&self.inner.revoked).list.epoch()
    }

    /// Decides whether the holder of `chain` may make `call`, proven by `invocation` (both
    /// encoded). Offline when possible; online when the chain requires it or, if so
    /// configured, when the feed is stale.
    pub async fn authorize(&self, chain: &[u8], invocation: &[u8], call: &Call) -> Decision {
        let inner = &self.inner;
        let decoded = match inner.verifier.decode_chain_shared(chain) {
            Ok(c) => c,
            Err(d) => return Decision::deny(d.reason().code(), d.to_string()),
        };
        let stale = self.stale();
        let online_only = decoded.links().iter().any(|l| l.body().require_online);
        if online_only || stale.is_some() {
            if let Some(refusal) = stale
                && !online_only
                && inner.config.when_stale == WhenStale::FailClosed
            {
                return refusal;
            }
            return self.online(chain, invocation, call).await;
        }
        let proof = match inner.verifier.decode_invocation(invocation) {
            Ok(i) => i,
            Err(d) => return Decision::deny(d.reason().code(), d.to_string()),
        };
        offline_decision(
            &inner.verifier,
            &decoded,
            &proof,
            &inner.config.audience,
            call,
            &*read(&inner.revoked),
        )
    }

    /// Verifies a decoded chain on its own, offline, against the followed revocation set
    /// (no call, no proof): for listing what a holder may do. A stale feed refuses
    /// (`FEED_STALE`).
    pub fn verify_chain(&self, chain: &Chain) -> Result<(), Decision> {
        if let Some(refusal) = self.stale() {
            return Err(refusal);
        }
        self.inner
            .verifier
            .verify_chain(chain, &*read(&self.inner.revoked))
            .map(|_| ())
            .map_err(|d| Decision::deny(d.reason().code(), d.to_string()))
    }

    /// The `FEED_STALE` refusal, when the feed is older than the configured bound.
    fn stale(&self) -> Option<Decision> {
        let limit = u64::try_from(self.inner.config.max_staleness.as_millis()).unwrap_or(u64::MAX);
        let age = self.staleness_ms();
        (age > limit).then(|| {
            Decision::deny(
                "FEED_STALE",
                format!("no word from the revocation feed for {age} ms"),
            )
        })
    }

    /// Reports decisions made offline to the coordinator's audit log; returns once they
    /// are durable there.
    pub async fn report(&self, decisions: Vec<pb::OfflineDecision>) -> Result<(), Error> {
        self.inner
            .client
            .clone()
            .report_decisions(pb::ReportDecisionsRequest { decisions })
            .await
            .map(|_| ())
    }

    async fn online(&self, chain: &[u8], invocation: &[u8], call: &Call) -> Decision {
        self.authorize_online(chain, invocation, call, BTreeMap::new())
            .await
    }

    /// Decides a call online, always: `Authorize` at the coordinator (live revocation
    /// state, the Cedar `Invoke` policy with `context` as its signals, the coordinator's
    /// audit log). An unreachable coordinator denies (`COORDINATOR_UNAVAILABLE`).
    pub async fn authorize_online(
        &self,
        chain: &[u8],
        invocation: &[u8],
        call: &Call,
        context: BTreeMap<String, String>,
    ) -> Decision {
        let req = pb::AuthorizeRequest {
            chain: chain.to_vec(),
            invocation: invocation.to_vec(),
            action: call.action.clone(),
            resource: call.resource.clone(),
            args: call_args_to_pb(call),
            context,
            // Online checks refuse break-glass exactly when offline ones do.
            refuse_break_glass: !self.inner.config.verifier.accept_break_glass,
        };
        match self.inner.client.clone().authorize(req).await {
            Ok(r) => Decision {
                allowed: r.allowed,
                reason: r.reason,
                detail: r.detail,
                online: true,
                holder: (!r.holder_agent_id.is_empty()).then_some(r.holder_agent_id),
                task: (!r.task_id.is_empty()).then_some(r.task_id),
            },
            Err(e) => Decision::deny(
                "COORDINATOR_UNAVAILABLE",
                format!("online authorisation failed: {e}"),
            ),
        }
    }
}

/// A call's arguments as the API carries them (`AuthorizeRequest.args`).
/// (Shorthand for [`Call::args_to_pb`].)
pub fn call_args_to_pb(call: &Call) -> Vec<mandate_proto::token::Argument> {
    call.args_to_pb()
}

fn offline_decision(
    verifier: &Verifier,
    chain: &Chain,
    proof: &Invocation,
    audience: &str,
    call: &Call,
    revoked: &dyn RevocationSet,
) -> Decision {
    let holder = Some(chain.leaf().body().holder_agent.as_str().to_owned());
    let task = Some(chain.task().to_string());
    match verifier.verify_invocation(chain, proof, audience, call, revoked) {
        Ok(_) => Decision {
            allowed: true,
            reason: String::new(),
            detail: String::new(),
            online: false,
            holder,
            task,
        },
        Err(d) => Decision {
            holder,
            task,
            ..Decision::deny(d.reason().code(), d.to_string())
        },
    }
}

/// The coordinator's trust bundle and its version, fetched over the client's channel (as
/// trusted as that channel: use TLS).
async fn fetch_trust(client: &mut Client) -> Result<(TrustBundle, u64), Error> {
    let bundle = client
        .get_trust_bundle(pb::GetTrustBundleRequest {})
        .await?;
    let trust = trust_bundle(&bundle.keys).map_err(|why| Error::Status {
        code: tonic::Code::Internal,
        reason: "BAD_TRUST_BUNDLE".into(),
        message: why.into(),
    })?;
    Ok((trust, bundle.version))
}

/// Follows the feed until the verifier is dropped: checks each message's signature and
/// epoch, applies snapshots and batches, notes heartbeats, reconnects with backoff,
/// resuming after the last epoch applied. Staleness is measured from the coordinator's
/// signed time, so a replayed old message never makes the set look fresh.
async fn follow(
    inner: std::sync::Weak<Inner>,
    ready: tokio::sync::oneshot::Sender<Result<(), Error>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    let mut refresh_trust = false;
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        // A message signed by a key we do not know: the coordinator may have rotated its
        // key. Fetch the bundle again before resuming (a stale bundle keeps failing, and
        // the staleness bound fails closed meanwhile).
        // Only over TLS: on a plaintext channel whoever can alter the feed could also
        // answer the fetch with a key of their own.
        if std::mem::take(&mut refresh_trust) {
            if strong.client.is_tls() {
                match fetch_trust(&mut strong.client.clone()).await {
                    Ok((trust, version)) => {
                        strong.verifier.set_trust_bundle(trust);
                        strong.trust_version.store(version, Ordering::SeqCst);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot fetch the trust bundle again"),
                }
            } else {
                tracing::warn!(
                    "the feed is signed by a key this verifier does not trust; over plaintext the trust bundle is not fetched again (restart the tool after a key rotation, or connect over TLS)"
                );
            }
        }
        let after = read(&strong.revoked).list.epoch();
        let mut client = strong.client.clone();
        let clock = Arc::clone(&strong.clock);
        let skew = strong.config.verifier.clock_skew_ms;
        let mut trust = strong.verifier.trust_bundle();
        let trust_version = strong.trust_version.load(Ordering::SeqCst);
        drop(strong);
        match client
            .watch_revocations(pb::WatchRevocationsRequest {
                after_epoch: after,
                trust_version,
            })
            .await
        {
            Ok(mut stream) => {
                while let Some(msg) = stream.next().await {
                    let Ok(msg) = msg else { break };
                    let Some(strong) = inner.upgrade() else {
                        return;
                    };
                    let now = clock.now_ms();
                    {
                        let mut r = write(&strong.revoked);
                        let versions =
                            (r.list.epoch(), strong.trust_version.load(Ordering::SeqCst));
                        match check_feed_message(&msg, &trust, versions, now) {
                            Ok(FeedUpdate::Replace(links, epoch)) => {
                                r.list.replace(links, epoch);
                            }
                            Ok(FeedUpdate::Add(links, epoch)) => {
                                for (link, entry) in links {
                                    r.list.insert(link, entry);
                                }
                                r.list.advance_epoch(epoch);
                            }
                            Ok(FeedUpdate::Current) => {}
                            // Keys added or retired through the service: verifiers learn a
                            // new instance's key before it leads. A trust update says
                            // nothing of revocations: the feed is no fresher for it.
                            Ok(FeedUpdate::Trust(bundle, version)) => {
                                strong.verifier.set_trust_bundle(bundle);
                                strong.trust_version.store(version, Ordering::SeqCst);
                                trust = strong.verifier.trust_bundle();
                                continue;
                            }
                            Ok(FeedUpdate::KnownTrust) => continue,
                            Err(refusal) => {
                                tracing::warn!(
                                    ?refusal,
                                    "revocation feed message refused; resuming from epoch {}",
                                    r.list.epoch()
                                );
                                refresh_trust = refusal == FeedRefusal::Untrusted;
                                if refusal == FeedRefusal::Untrusted
                                    && let Some(tx) = ready.take()
                                {
                                    let _ = tx.send(Err(Error::Status {
                                        code: tonic::Code::Unauthenticated,
                                        reason: "FEED_UNTRUSTED".into(),
                                        message: "the revocation feed is not signed by a trusted coordinator key".into(),
                                    }));
                                    return;
                                }
                                break;
                            }
                        }
                        r.heard_ms = r.heard_ms.max(msg.time_ms.min(now));
                        r.list.prune(now, skew);
                    }
                    backoff = Duration::from_millis(100);
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
            }
            Err(e) => {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
