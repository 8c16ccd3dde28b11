//! The coordinator's logic, independent of gRPC: a façade whose parts each live in their
//! own module, all as `impl Coordinator` blocks over the state they share:
//!
//! | module | part |
//! |---|---|
//! | `agents` | registration, disabling |
//! | `tasks` | starting tasks, root grants, renewal, ending tasks |
//! | `delegation`, `admission` | delegations, checked then admitted in groups |
//! | `revocation` | revoking, the cascade, the tree, the feed, garbage collection |
//! | `authorize` | online authorisation |
//! | `approvals` | approval requests and break-glass |
//! | `drift` | policy reloads and the links they revoke |
//! | `keys` | the service's coordinator keys (the trust bundle) |
//! | `review` | the access review: live authority, exposure over a window |
//! | `access` | who may read and change what |
//!
//! The state they share lives in `crate::state` (revocation feed, quota ledger, audit
//! writer, durability) and in the store. Every mutation runs under one writer lock (read,
//! validate, commit), so a cascade can never miss a delegation committed concurrently. The
//! lock is released before the flush: concurrent mutations share one fsync (see
//! `state::durability`). A caller is answered only after the flush that covers its change.

use mandate_store::{AuditAction, Verdict};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use mandate_core::{
    Chain, Clock, LinkId, PublicKey, RevocationEntry, RevocationList, SigningKey, TrustBundle,
    Verifier, VerifierConfig,
};
use mandate_policy::{AgentInfo, Request as PolicyRequest};
use mandate_store::{
    AgentRecord, AuditEvent, Change, Committed, CoordinatorKeys, LinkRecord, Severity, Store,
    TaskRecord,
};
use tokio::sync::Mutex;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};
use crate::metrics::Metrics;
use crate::policies::{Decision, Policies, agent_info};
use crate::state::agents::AgentCache;
use crate::state::audit::AuditWriter;
use crate::state::durability::{AfterFlush, Flusher};
use crate::state::quota::QuotaLedger;
use crate::state::revocations::{Feed, FeedSigner};

pub(crate) mod access;
mod admission;
mod agents;
pub(crate) mod approvals;
mod authorize;
mod checkpoint;
mod delegation;
mod drift;
mod keys;
mod reads;
mod review;
mod revocation;
mod tasks;

pub use crate::state::quota::Quotas;
pub use crate::state::revocations::RevocationEvent;
pub(crate) use crate::state::revocations::SignedBatch;
pub use access::Role;
pub use agents::Registration;
pub use approvals::Started;
pub(crate) use authorize::OfflineDecision;
pub use authorize::{AuthorizeAsk, AuthorizeOutcome, USES_EXHAUSTED};
pub use drift::Reloaded;
pub(crate) use keys::bundle as trust_bundle_of;
pub use review::{ExposureReport, ExposureRow, LiveFilter, LiveLink};
pub use revocation::TreeLink;
pub use tasks::TaskRequest;
pub(crate) use tasks::check_request_size;
use tasks::grant_request;

/// Settings of the coordinator logic.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// The coordinator's own agent id (issuer name of root links).
    pub coordinator_id: String,
    /// Clock skew allowed in verification, ms.
    pub clock_skew_ms: u64,
    /// Quotas on delegation.
    pub quotas: Quotas,
    /// Longest grant or delegation when no policy obligation is tighter, ms.
    pub max_ttl_ms: u64,
    /// Longest break-glass grant, whatever policy says, ms.
    pub max_break_glass_ms: u64,
    /// How long a grant request waits for approval before it expires, ms.
    pub approval_ttl_ms: u64,
    /// How long links and tasks are kept after they expire, ms.
    pub retain_history_ms: u64,
    /// Trust domains besides the coordinator's own whose agents may be registered.
    pub federated_trust_domains: Vec<String>,
    /// Keys the coordinator signed with before its current one, each trusted until the
    /// time given (Unix ms): published in the trust bundle beside the current key.
    pub retired_keys: Vec<(PublicKey, u64)>,
    /// This coordinator's name among several of one service (its advertised address):
    /// it then leads only with a key already added to the service. `None`: it runs alone.
    pub instance: Option<String>,
}

impl CoordinatorConfig {
    /// Defaults: 30 s skew, 24 h ceiling on grants, 1 h break-glass, 1 h approvals.
    pub fn new(coordinator_id: impl Into<String>) -> CoordinatorConfig {
        CoordinatorConfig {
            coordinator_id: coordinator_id.into(),
            clock_skew_ms: 30_000,
            quotas: Quotas::default(),
            max_ttl_ms: 24 * 3_600_000,
            max_break_glass_ms: 3_600_000,
            approval_ttl_ms: 3_600_000,
            retain_history_ms: 24 * 3_600_000,
            federated_trust_domains: Vec::new(),
            retired_keys: Vec::new(),
            instance: None,
        }
    }
}

/// Deepest delegation any policy may allow below a root (chains hold at most 16 links).
const MAX_DEPTH: u32 = 15;

/// What a grant, renewal or delegation returns.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The task.
    pub task: TaskRecord,
    /// The chain to hand to the holder.
    pub chain: Chain,
    /// The decision.
    pub decision: Decision,
}

/// What a revoking call returns.
#[derive(Clone, Debug, Default)]
pub struct RevokedLinks {
    /// Every link revoked by the call.
    pub links: Vec<LinkId>,
    /// Epoch of the change (0 when nothing was revoked).
    pub epoch: u64,
}

/// The coordinator.
pub struct Coordinator {
    store: Arc<dyn Store>,
    // Agent records, read through a cache; a commit writing agents forgets theirs.
    agents: Arc<AgentCache>,
    policies: Arc<Policies>,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    verifier: Verifier,
    revoked: RwLock<RevocationList>,
    feed: Arc<Feed>,
    feed_signer: Arc<FeedSigner>,
    metrics: Arc<Metrics>,
    writer: Mutex<()>,
    // Policy reloads, one at a time (their drift pass runs without the writer lock).
    reloading: Mutex<()>,
    // Delegations waiting to be admitted by the next holder of the writer lock.
    delegations: std::sync::Mutex<Vec<admission::Pending>>,
    flusher: Flusher,
    config: CoordinatorConfig,
    // The service's coordinator keys in force; followers of the feed watch it.
    keys: tokio::sync::watch::Sender<Arc<CoordinatorKeys>>,
    audit: AuditWriter,
    quota: QuotaLedger,
    // Bumped on every change of an approval request; waiters re-read the store.
    approvals_changed: tokio::sync::watch::Sender<u64>,
    // When this process started: the replay cache holds nothing older, so online checks
    // refuse proofs issued before it (a restart must not reopen their window).
    started_ms: u64,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("coordinator_id", &self.config.coordinator_id)
            .finish_non_exhaustive()
    }
}

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(tonic::Code::Internal, ErrorReason::Internal, e.to_string()))
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(l: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

fn event(caller: &str, action: AuditAction, now: u64) -> AuditEvent {
    AuditEvent::new(caller, action, now)
}

fn with_decision(mut e: AuditEvent, d: &Decision) -> AuditEvent {
    e.set_verdict(Verdict::of(d.allowed));
    e.reason = d.reason.clone();
    e.policies = d.policies.clone();
    e.policy_hash = d.policy_hash.clone();
    if !d.allowed {
        e.severity = Severity::Notice;
    }
    e
}

/// A link as the store keeps it, decoded; a record that does not decode is the store's
/// corruption, not the caller's error.
fn stored_link(rec: &LinkRecord) -> Result<mandate_core::Link, ApiError> {
    mandate_core::Link::decode(&rec.encoded, &mandate_core::Limits::default()).map_err(corrupt_link)
}

fn corrupt_link(d: mandate_core::Denial) -> ApiError {
    ApiError::new(
        tonic::Code::Internal,
        ErrorReason::CorruptLink,
        d.to_string(),
    )
}

fn agent_key(a: &AgentRecord) -> Result<PublicKey, ApiError> {
    // Checked when the record was read; prepared here so an unusable key is refused before
    // anything is issued to it.
    a.public_key.prepare().map(|_| a.public_key).map_err(|_| {
        ApiError::precondition(
            ErrorReason::AgentKeyInvalid,
            format!("agent `{}` has an unusable key", a.id),
        )
    })
}

impl Coordinator {
    /// A coordinator over `store`, signing with `key`. Loads the live revocation set.
    pub fn new(
        store: Arc<dyn Store>,
        policies: Arc<Policies>,
        key: SigningKey,
        clock: Arc<dyn Clock>,
        config: CoordinatorConfig,
    ) -> Result<Coordinator, ApiError> {
        key.public_key().prepare().map_err(|e| {
            ApiError::new(tonic::Code::Internal, ErrorReason::BadKey, e.to_string())
        })?;
        // The keys recorded, when this coordinator may sign with one of them; otherwise
        // the ones `check_keys_at_start` records (or refuses), as version 0.
        let keys = match store.coordinator_keys()? {
            Some(k) if k.is_active(&key.public_key()) => k,
            _ => CoordinatorKeys {
                version: 0,
                ..keys::initial(key.public_key(), "", &config.retired_keys, clock.now_ms())
            },
        };
        let verifier = Verifier::new(
            keys::bundle(&keys, clock.now_ms()),
            VerifierConfig {
                online: true,
                clock_skew_ms: config.clock_skew_ms,
                ..VerifierConfig::default()
            },
            Arc::clone(&clock),
        );
        let now = clock.now_ms();
        let mut revoked = RevocationList::new(store.epoch()?);
        for r in store
            .revocations_after(0)?
            .into_iter()
            .chain(store.all_implied_revocations()?)
        {
            if RevocationList::matters(r.expires_at_ms, now, config.clock_skew_ms) {
                revoked.insert(
                    r.link,
                    RevocationEntry {
                        expires_at_ms: r.expires_at_ms,
                        implied: r.implied,
                    },
                );
            }
        }
        // Everything in the store at start is durable.
        let feed_signer = Arc::new(FeedSigner::new(key.clone(), Arc::clone(&clock)));
        let feed = Arc::new(Feed::new(revoked.epoch(), Arc::clone(&feed_signer)));
        let metrics = Arc::new(Metrics::new());
        Ok(Coordinator {
            started_ms: clock.now_ms(),
            quota: QuotaLedger::new(config.quotas),
            audit: AuditWriter::start(
                Arc::clone(&store),
                store.audit_head()?.0,
                Arc::clone(&metrics),
            ),
            flusher: Flusher::start(
                Arc::clone(&store),
                Arc::clone(&feed) as Arc<dyn AfterFlush>,
                Arc::clone(&metrics),
            ),
            metrics,
            store,
            agents: Arc::default(),
            policies,
            approvals_changed: tokio::sync::watch::channel(0).0,
            key,
            clock,
            verifier,
            revoked: RwLock::new(revoked),
            feed,
            feed_signer,
            writer: Mutex::new(()),
            reloading: Mutex::new(()),
            delegations: std::sync::Mutex::new(Vec::new()),
            config,
            keys: tokio::sync::watch::channel(Arc::new(keys)).0,
        })
    }

    /// The store. Read it freely; write agents only through the coordinator (it caches
    /// their records and forgets them when its own commits write them).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The agent records this coordinator reads through (the request layer shares them).
    pub(crate) fn agent_cache(&self) -> &Arc<AgentCache> {
        &self.agents
    }

    /// An agent's record, through the cache.
    fn agent_record(&self, id: &str) -> Result<Option<Arc<AgentRecord>>, ApiError> {
        Ok(self.agents.get(&*self.store, id)?)
    }

    /// The policy set in force and its source.
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The trust bundle verifiers should use.
    pub fn trust_bundle(&self) -> Arc<TrustBundle> {
        self.verifier.trust_bundle()
    }

    /// Current time.
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Wakes when audit records are written; the value is the newest sequence number.
    pub fn watch_audit(&self) -> tokio::sync::watch::Receiver<u64> {
        self.audit.watch()
    }

    /// Decides `q` with the policy set in force.
    fn decide(&self, q: &PolicyRequest<'_>) -> Decision {
        self.policies.current().set.decide(q)
    }

    /// Called under the writer lock with a decision made before it: when a reload
    /// installed another set meanwhile, decides again, so nothing the new set denies is
    /// issued once it is installed (its drift pass then takes what was issued before).
    fn decide_again_if_reloaded(&self, q: &PolicyRequest<'_>, d: Decision) -> Decision {
        let current = self.policies.current();
        if current.set.hash() == d.policy_hash {
            d
        } else {
            current.set.decide(q)
        }
    }

    /// Agents a decision may read: each of `ids` and its parent, as policy sees them.
    fn related(&self, ids: &[&str]) -> Result<Vec<AgentInfo>, ApiError> {
        let mut out: Vec<AgentInfo> = Vec::new();
        for id in ids {
            let Some(a) = self.agent_record(id)? else {
                continue;
            };
            if let Some(p) = &a.parent
                && !out.iter().any(|x| &x.id == p)
                && let Some(parent) = self.agent_record(p)?
            {
                out.push(agent_info(&parent));
            }
            if !out.iter().any(|x| x.id == a.id) {
                out.push(agent_info(&a));
            }
        }
        Ok(out)
    }

    /// The ceiling on lifetimes from an obligation (or the server's).
    fn ttl_cap(&self, d: &Decision) -> u64 {
        d.obligations
            .max_ttl_ms
            .unwrap_or(self.config.max_ttl_ms)
            .min(self.config.max_ttl_ms)
    }

    /// The ceiling on depth from an obligation (or the chain limit).
    fn depth_cap(d: &Decision) -> u32 {
        d.obligations.max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH)
    }

    /// Commits under the writer lock (held by the caller), applies revocations to memory
    /// and the feed, and returns what was committed. The caller then awaits durability.
    fn apply(&self, mut change: Change, caller: Option<&Caller>) -> Result<Committed, ApiError> {
        if let Some(c) = caller {
            change.nonces.push((c.nonce, c.nonce_expires_ms));
        }
        let entries: HashMap<LinkId, RevocationEntry> = change
            .revocations
            .iter()
            .map(|r| {
                let entry = RevocationEntry {
                    expires_at_ms: r.expires_at_ms,
                    implied: r.implied,
                };
                (r.link, entry)
            })
            .collect();
        let committed = self.commit(change)?;
        if let Some(epoch) = committed.epoch {
            let mut links = Vec::new();
            {
                let mut r = write(&self.revoked);
                r.advance_epoch(epoch);
                for l in &committed.revoked {
                    let entry = entries.get(l).copied().unwrap_or(RevocationEntry {
                        expires_at_ms: u64::MAX,
                        implied: false,
                    });
                    r.insert(*l, entry);
                    if !entry.implied {
                        links.push((*l, entry.expires_at_ms));
                    }
                }
            }
            // Published once durable, by the flush loop (`Feed`): a follower that learnt of
            // epoch E before a crash lost it would skip the different revocation numbered
            // E after the restart. `Authorize` uses the set at once. The event names the
            // links cut, not the descendants they cover. A flush is asked for here, so
            // the event goes out even if the caller's call is cancelled.
            self.feed.committed(RevocationEvent { epoch, links });
            self.flusher.request();
        }
        Ok(committed)
    }

    /// Commits a change and tells audit followers about its records.
    fn commit(&self, change: Change) -> Result<Committed, ApiError> {
        let actions: Vec<String> = change.audit.iter().map(|e| e.action.clone()).collect();
        let started = std::time::Instant::now();
        let agents: Vec<String> = change.agents.iter().map(|a| a.id.to_string()).collect();
        let committed = self.store.commit(change);
        if !agents.is_empty() {
            // Whether or not it succeeded: a failed commit may still have been applied.
            self.agents.changed(agents.iter().map(String::as_str));
        }
        let committed = committed?;
        self.metrics
            .committed(actions.iter().map(String::as_str), started.elapsed());
        if let Some(&last) = committed.audit_seqs.last() {
            self.audit.committed(last);
        }
        Ok(committed)
    }

    /// Durably records the audit event of a refusal, before the refusal is returned.
    async fn audit_refusal(
        &self,
        audit: AuditEvent,
        caller: Option<&Caller>,
    ) -> Result<(), ApiError> {
        let guard = self.writer.lock().await;
        let change = Change {
            audit: vec![audit],
            ..Change::default()
        };
        self.commit_and_wait(guard, change, caller)
            .await
            .map(|_| ())
    }

    /// Commits `change` (the caller holds the writer lock as `guard`), releases the lock,
    /// and waits until the change is durable: the tail of every mutation.
    async fn commit_and_wait(
        &self,
        guard: tokio::sync::MutexGuard<'_, ()>,
        change: Change,
        caller: Option<&Caller>,
    ) -> Result<Committed, ApiError> {
        let committed = self.apply(change, caller)?;
        drop(guard);
        self.durable().await?;
        Ok(committed)
    }

    /// Waits until everything committed so far is durable (and its revocations published).
    async fn durable(&self) -> Result<(), ApiError> {
        self.flusher.durable().await
    }
}
