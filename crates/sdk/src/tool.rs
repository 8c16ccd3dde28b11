//! The tool side: verify chains and invocation proofs offline, following the revocation
//! feed, with bounded staleness; fall back to online `Authorize` where configured.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use mandate_core::{
    Call, Chain, Clock, Invocation, LinkId, PublicKey, RevocationEntry, RevocationList,
    RevocationSet, TrustBundle, Verifier, VerifierConfig,
};
use mandate_proto::v1 as pb;
use tokio_stream::StreamExt as _;

use crate::{Client, Error};

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
        let bundle = client
            .clone()
            .get_trust_bundle(pb::GetTrustBundleRequest {})
            .await?;
        let mut trust = TrustBundle::new();
        for k in bundle.keys {
            let bytes: [u8; 32] =
                k.public_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::Status {
                        code: tonic::Code::Internal,
                        reason: "BAD_TRUST_BUNDLE".into(),
                        message: "a trusted key is not 32 bytes".into(),
                    })?;
            trust.add(
                PublicKey::from_bytes(&bytes)?,
                k.not_before_ms,
                k.not_after_ms,
            )?;
        }
        let clock = Arc::clone(client.signer().clock());
        let inner = Arc::new(Inner {
            verifier: Verifier::new(trust, config.verifier.clone(), Arc::clone(&clock)),
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

    /// The revocation epoch applied so far.
    pub fn epoch(&self) -> u64 {
        read(&self.inner.revoked).list.epoch()
    }

    /// Decides whether the holder of `chain` may make `call`, proven by `invocation` (both
    /// encoded). Offline when possible; online when the chain requires it or, if so
    /// configured, when the feed is stale.
    pub async fn authorize(&self, chain: &[u8], invocation: &[u8], call: &Call) -> Decision {
        let inner = &self.inner;
        let decoded = match inner.verifier.decode_chain(chain) {
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

/// Follows the feed until the verifier is dropped: applies snapshots and batches, notes
/// heartbeats, reconnects with backoff, resuming after the last epoch applied.
async fn follow(
    inner: std::sync::Weak<Inner>,
    ready: tokio::sync::oneshot::Sender<Result<(), Error>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let after = read(&strong.revoked).list.epoch();
        let mut client = strong.client.clone();
        let clock = Arc::clone(&strong.clock);
        let skew = strong.config.verifier.clock_skew_ms;
        drop(strong);
        match client
            .watch_revocations(pb::WatchRevocationsRequest { after_epoch: after })
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
                        match msg.event {
                            Some(pb::watch_revocations_response::Event::Snapshot(s)) => {
                                r.list.replace(parse(s.links), s.epoch);
                            }
                            Some(pb::watch_revocations_response::Event::Batch(b)) => {
                                for (link, entry) in parse(b.links) {
                                    r.list.insert(link, entry);
                                }
                                r.list.advance_epoch(b.epoch);
                            }
                            Some(pb::watch_revocations_response::Event::Heartbeat(h)) => {
                                r.list.advance_epoch(h.epoch);
                            }
                            None => {}
                        }
                        r.heard_ms = now;
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

/// The feed names cut links only: none is implied.
fn parse(links: Vec<pb::RevokedLink>) -> impl Iterator<Item = (LinkId, RevocationEntry)> {
    links.into_iter().filter_map(|l| {
        l.link_id.parse::<LinkId>().ok().map(|id| {
            (
                id,
                RevocationEntry {
                    expires_at_ms: l.expires_at_ms,
                    implied: false,
                },
            )
        })
    })
}
