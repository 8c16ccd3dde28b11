//! The coordinator's logic, independent of gRPC: agents, tasks, grants, delegation,
//! revocation, online authorisation and the revocation feed.
//!
//! Every mutation runs under one writer lock (read, validate, commit), so a cascade can
//! never miss a delegation committed concurrently. The lock is released before the flush:
//! concurrent mutations share one fsync (see `durability`). A caller is answered only after
//! the flush that covers its change.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use mandate_core::{
    AgentId, Call, Capability, Chain, Clock, Denial, LinkId, LinkKind, LinkSpec, PublicKey, Reason,
    RevocationSet, SigningKey, TaskId, TrustBundle, Verifier, VerifierConfig,
};
use mandate_store::{
    AgentRecord, AgentStatus, AuditEvent, Change, Committed, LinkRecord, NewRevocation, Severity,
    Store, TaskRecord, TaskState,
};
use tokio::sync::{Mutex, broadcast};

use crate::auth::Caller;
use crate::durability::{AfterFlush, Flusher};
use crate::error::ApiError;
use crate::policy::{Decision, Policies, agent_info, check_signals, task_info};
use mandate_policy::{Action, AgentInfo, Request as PolicyRequest, Target, TaskInfo};

mod admission;
pub(crate) mod approvals;
mod drift;

pub use approvals::Started;
pub use drift::Reloaded;

/// One change of the revocation set, as the feed publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationEvent {
    /// Epoch after the change.
    pub epoch: u64,
    /// Revoked links with their expiry.
    pub links: Vec<(LinkId, u64)>,
}

/// The revocation feed: events wait here, in epoch order, until a flush covers them; the
/// flush loop then publishes them before releasing its waiters.
struct Feed {
    sender: broadcast::Sender<RevocationEvent>,
    unpublished: std::sync::Mutex<VecDeque<RevocationEvent>>,
    /// The last epoch committed, and the last published.
    committed: std::sync::atomic::AtomicU64,
    published: std::sync::atomic::AtomicU64,
}

impl AfterFlush for Feed {
    fn mark(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    fn durable(&self, upto: u64) {
        let mut pending = lock(&self.unpublished);
        while pending.front().is_some_and(|e| e.epoch <= upto) {
            if let Some(event) = pending.pop_front() {
                self.published.fetch_max(event.epoch, Ordering::SeqCst);
                let _ = self.sender.send(event);
            }
        }
    }
}

/// Live revocations in memory, for `Authorize` and the feed: each revoked link with its
/// expiry and whether a revoked ancestor covers it (the feed carries only the others).
#[derive(Debug, Default)]
pub(crate) struct Revoked {
    pub(crate) links: HashMap<LinkId, (u64, bool)>,
    pub(crate) epoch: u64,
}

impl RevocationSet for Revoked {
    fn is_revoked(&self, id: &LinkId) -> bool {
        self.links.contains_key(id)
    }
}

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
        }
    }
}

/// Deepest delegation any policy may allow below a root (chains hold at most 16 links).
const MAX_DEPTH: u32 = 15;

/// Limits that keep one runaway agent from starving the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Most links registered directly below one link.
    pub children_per_link: usize,
    /// Most links in one task.
    pub links_per_task: usize,
    /// Delegations one agent may register per second (sustained; bursts up to the same).
    pub delegations_per_agent_per_second: u32,
    /// Most live (unexpired, unrevoked) links one agent may have created: the roots it
    /// was granted (tasks, renewals, break-glass) and the delegations it issued. Counted
    /// against the creator, so nobody can use up another agent's quota by delegating to it.
    pub live_links_per_agent: usize,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            children_per_link: 10_000,
            links_per_task: 100_000,
            delegations_per_agent_per_second: 1_000,
            live_links_per_agent: 10_000,
        }
    }
}

/// Per-agent token buckets and per-link / per-task counts, kept in memory (rebuilt from
/// the store on first use after a start).
#[derive(Debug, Default)]
struct QuotaState {
    buckets: HashMap<String, (f64, u64)>,
    children: HashMap<LinkId, usize>,
    task_links: HashMap<TaskId, usize>,
    /// Live links each agent created (roots granted to it, delegations it issued):
    /// counted from the store on first use, then kept up to date by issuance; recounted
    /// after every collection pass (revocations and expiry only lower the true count, so
    /// in between the check errs on the strict side).
    held: HashMap<String, usize>,
}

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

/// The outcome of `Authorize`.
#[derive(Clone, Debug)]
pub struct AuthorizeOutcome {
    /// The token denial, if the chain or the call was refused before policy.
    pub denial: Option<Denial>,
    /// The Cedar `Invoke` decision, when the chain and call verified.
    pub policy: Option<Decision>,
    /// The chain's task, if it decoded.
    pub task: Option<TaskId>,
    /// The leaf holder, if it decoded.
    pub holder: Option<String>,
    /// Link ids, root first.
    pub links: Vec<LinkId>,
    /// Earliest expiry.
    pub expires_at_ms: u64,
    /// Revocation epoch at decision time.
    pub epoch: u64,
}

impl AuthorizeOutcome {
    /// Whether the call may proceed: the chain verified and policy permits it.
    pub fn allowed(&self) -> bool {
        self.denial.is_none() && self.policy.as_ref().is_some_and(|d| d.allowed)
    }
}

/// The coordinator.
pub struct Coordinator {
    store: Arc<dyn Store>,
    policies: Arc<Policies>,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    verifier: Verifier,
    revoked: RwLock<Revoked>,
    feed: Arc<Feed>,
    writer: Mutex<()>,
    // Delegations waiting to be admitted by the next holder of the writer lock.
    delegations: std::sync::Mutex<Vec<admission::Pending>>,
    flusher: Flusher,
    config: CoordinatorConfig,
    trust: TrustBundle,
    // The sequence number of the newest audit record; audit followers wake on changes and
    // read from the store, so they never miss or reorder records.
    audit_head: tokio::sync::watch::Sender<u64>,
    audit_batch: AuditBatch,
    quota: std::sync::Mutex<QuotaState>,
    // Bumped on every change of an approval request; waiters re-read the store.
    approvals_changed: tokio::sync::watch::Sender<u64>,
}

/// Collects audit events that need no flush of their own (`Authorize` decisions) and
/// commits them together: one sled batch for many records instead of one per call. Each
/// caller still waits until its record is committed, so no decision is answered without
/// its audit record.
#[derive(Debug)]
struct AuditBatch {
    tx: tokio::sync::mpsc::Sender<(AuditEvent, tokio::sync::oneshot::Sender<Result<(), String>>)>,
}

impl AuditBatch {
    async fn record(&self, e: AuditEvent) -> Result<(), ApiError> {
        let unavailable = |why: String| {
            ApiError::new(
                tonic::Code::Unavailable,
                "STORE_UNAVAILABLE",
                format!("the decision could not be audited, so it is not given: {why}"),
            )
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        self.tx
            .send((e, done))
            .await
            .map_err(|_| unavailable("the audit log is not accepting records".into()))?;
        wait.await
            .map_err(|_| unavailable("the audit writer stopped".into()))?
            .map_err(unavailable)
    }
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("coordinator_id", &self.config.coordinator_id)
            .finish_non_exhaustive()
    }
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

fn event(caller: &str, action: &str, now: u64) -> AuditEvent {
    AuditEvent::new(caller, action, now)
}

fn with_decision(mut e: AuditEvent, d: &Decision) -> AuditEvent {
    e.decision = if d.allowed { "allow" } else { "deny" }.into();
    e.reason = d.reason.clone();
    e.policies = d.policies.clone();
    e.policy_hash = d.policy_hash.clone();
    if !d.allowed {
        e.severity = Severity::Notice;
    }
    e
}

/// Refuses requests larger than any link may carry before policy is asked: the decision
/// runs one Cedar evaluation per (resource, action) pair, and the intent is stored.
pub(crate) fn check_request_size(
    capabilities: &[Capability],
    intent: &str,
    fields: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    let limits = mandate_core::Limits::default();
    if capabilities.len() > limits.max_capabilities {
        return Err(ApiError::invalid(format!(
            "at most {} capabilities per link, got {}",
            limits.max_capabilities,
            capabilities.len()
        )));
    }
    for c in capabilities {
        let actions = c.actions.to_strings().len();
        if actions > limits.max_actions || c.constraints.len() > limits.max_constraints {
            return Err(ApiError::invalid(format!(
                "a capability has at most {} actions and {} constraints",
                limits.max_actions, limits.max_constraints
            )));
        }
    }
    if intent.len() > 4096
        || fields.len() > 32
        || fields.iter().any(|(k, v)| k.len() > 64 || v.len() > 1024)
    {
        return Err(ApiError::invalid(
            "the intent is limited to 4096 bytes and 32 fields (names up to 64 bytes, values up to 1024)",
        ));
    }
    Ok(())
}

/// The `RequestGrant` question for a start request (at start, and again on approval).
fn grant_request<'a>(
    principal: &'a AgentInfo,
    r: &'a TaskRequest,
    task: TaskInfo<'a>,
    agents: &'a [AgentInfo],
    now: u64,
) -> PolicyRequest<'a> {
    let mut q = PolicyRequest::new(
        Action::RequestGrant,
        principal,
        Target::Capabilities(&r.capabilities),
        now,
    );
    q.task = Some(task);
    q.agents = agents;
    q.ttl_ms = r.ttl_ms;
    q.max_depth = r.max_depth;
    q.require_online = r.require_online;
    q.signals = &r.signals;
    q
}

fn agent_key(a: &AgentRecord) -> Result<PublicKey, ApiError> {
    <[u8; 32]>::try_from(a.public_key.as_slice())
        .ok()
        .and_then(|b| PublicKey::from_bytes(&b).ok())
        .ok_or_else(|| {
            ApiError::precondition(
                "AGENT_KEY_INVALID",
                format!("agent `{}` has an unusable key", a.id),
            )
        })
}

/// A link of a delegation tree with its revocation, if revoked.
pub type TreeLink = (LinkRecord, Option<mandate_store::RevocationRecord>);

/// A registration request.
#[derive(Clone, Debug, Default)]
pub struct Registration {
    /// Agent id.
    pub agent_id: String,
    /// Public key bytes.
    pub public_key: Vec<u8>,
    /// Role.
    pub role: String,
    /// Owner.
    pub owner: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Parent agent id, or empty.
    pub parent: String,
}

/// A start-task request.
#[derive(Clone, Debug, Default)]
pub struct TaskRequest {
    /// Intent text.
    pub intent: String,
    /// Intent fields.
    pub intent_fields: BTreeMap<String, String>,
    /// Requested capabilities.
    pub capabilities: Vec<Capability>,
    /// Requested lifetime, ms.
    pub ttl_ms: u64,
    /// Requested delegation depth.
    pub max_depth: u32,
    /// Require online authorisation.
    pub require_online: bool,
    /// Caller-supplied signals for policy.
    pub signals: BTreeMap<String, String>,
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
        let trust = TrustBundle::new()
            .with_key(key.public_key(), 0, u64::MAX)
            .map_err(|e| ApiError::new(tonic::Code::Internal, "BAD_KEY", e.to_string()))?;
        let verifier = Verifier::new(
            trust.clone(),
            VerifierConfig {
                online: true,
                clock_skew_ms: config.clock_skew_ms,
                ..VerifierConfig::default()
            },
            Arc::clone(&clock),
        );
        let now = clock.now_ms();
        let mut revoked = Revoked {
            epoch: store.epoch()?,
            ..Revoked::default()
        };
        for r in store
            .revocations_after(0)?
            .into_iter()
            .chain(store.all_implied_revocations()?)
        {
            if r.expires_at_ms.saturating_add(config.clock_skew_ms) >= now {
                revoked.links.insert(r.link, (r.expires_at_ms, r.implied));
            }
        }
        // Everything in the store at start is durable.
        let feed = Arc::new(Feed {
            sender: broadcast::channel(4096).0,
            unpublished: std::sync::Mutex::new(VecDeque::new()),
            committed: std::sync::atomic::AtomicU64::new(revoked.epoch),
            published: std::sync::atomic::AtomicU64::new(revoked.epoch),
        });
        let (audit_head, _) = tokio::sync::watch::channel(store.audit_head()?.0);
        let (audit_tx, mut audit_rx) = tokio::sync::mpsc::channel::<(
            AuditEvent,
            tokio::sync::oneshot::Sender<Result<(), String>>,
        )>(8192);
        {
            let store = Arc::clone(&store);
            let head = audit_head.clone();
            tokio::spawn(async move {
                while let Some(first) = audit_rx.recv().await {
                    let mut batch = vec![first];
                    // Gather what else is queued, yielding while more keeps arriving: every
                    // sled batch costs a log buffer write of its own (and a wake-up of
                    // sled's I/O threads), so fewer, larger batches save CPU under load.
                    loop {
                        let before = batch.len();
                        while batch.len() < 1024 {
                            match audit_rx.try_recv() {
                                Ok(e) => batch.push(e),
                                Err(_) => break,
                            }
                        }
                        if batch.len() == before || batch.len() >= 1024 {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    let (events, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let store = Arc::clone(&store);
                    let change = Change {
                        audit: events,
                        ..Change::default()
                    };
                    let size = change.audit.len();
                    let started = std::time::Instant::now();
                    let result =
                        match tokio::task::spawn_blocking(move || store.commit(change)).await {
                            Ok(Ok(c)) => {
                                if let Some(&last) = c.audit_seqs.last() {
                                    head.send_if_modified(|h| {
                                        let newer = last > *h;
                                        *h = (*h).max(last);
                                        newer
                                    });
                                }
                                Ok(())
                            }
                            Ok(Err(e)) => Err(e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                    tracing::debug!(
                        batch = size,
                        micros = started.elapsed().as_micros() as u64,
                        "audit batch"
                    );
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            });
        }
        Ok(Coordinator {
            quota: std::sync::Mutex::new(QuotaState::default()),
            audit_batch: AuditBatch { tx: audit_tx },
            audit_head,
            flusher: Flusher::start(Arc::clone(&store), Arc::clone(&feed) as Arc<dyn AfterFlush>),
            store,
            policies,
            approvals_changed: tokio::sync::watch::channel(0).0,
            key,
            clock,
            verifier,
            revoked: RwLock::new(revoked),
            feed,
            writer: Mutex::new(()),
            delegations: std::sync::Mutex::new(Vec::new()),
            config,
            trust,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The policy set in force and its source.
    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// Decides `q` with the policy set in force.
    fn decide(&self, q: &PolicyRequest<'_>) -> Decision {
        self.policies.current().set.decide(q)
    }

    /// Called under the writer lock with a decision made before it: when a reload
    /// installed another set meanwhile, decides again, so nothing the new set denies is
    /// issued after its drift pass.
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
            let Some(a) = self.store.agent(id)? else {
                continue;
            };
            if let Some(p) = &a.parent
                && !out.iter().any(|x| &x.id == p)
                && let Some(parent) = self.store.agent(p)?
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

    /// The trust bundle verifiers should use.
    pub fn trust_bundle(&self) -> &TrustBundle {
        &self.trust
    }

    /// Current time.
    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Subscribes to revocation changes.
    pub fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
        self.feed.sender.subscribe()
    }

    /// Live revocations and the epoch they are current at. Revocations covered by a revoked
    /// ancestor are left out: a verifier rejects every chain that contains the ancestor.
    pub fn revocation_snapshot(&self) -> RevocationEvent {
        let r = read(&self.revoked);
        let now = self.now();
        RevocationEvent {
            // The links may include revocations not durable yet (their events follow),
            // the epoch never does.
            epoch: self.feed.published.load(Ordering::SeqCst).min(r.epoch),
            links: r
                .links
                .iter()
                .filter(|(_, (e, implied))| {
                    !implied && e.saturating_add(self.config.clock_skew_ms) >= now
                })
                .map(|(l, (e, _))| (*l, *e))
                .collect(),
        }
    }

    /// Forgets revocations of links that no verifier can accept any more (expired beyond
    /// the clock skew). Called by the garbage collector.
    pub fn prune_revocations(&self) {
        let now = self.now();
        let skew = self.config.clock_skew_ms;
        write(&self.revoked)
            .links
            .retain(|_, (e, _)| e.saturating_add(skew) >= now);
    }

    /// One garbage collection pass: forgets revocations no verifier can need, expires
    /// approval requests, and removes from the store revocations and nonces past their
    /// expiry (plus the clock skew) and links and tasks past the history retention.
    pub async fn collect_garbage(&self) -> Result<mandate_store::GcStats, ApiError> {
        // After a failed flush, revocations wait unpublished: try again now and then.
        self.flusher.request();
        self.prune_revocations();
        // A failure here must not stop the rest of the pass.
        match self.expire_approvals().await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "approval requests expired"),
            Err(e) => {
                tracing::warn!(reason = %e.reason, error = %e.message, "expiring approval requests failed");
            }
        }
        // Revocations must outlive their links by the skew verifiers allow.
        let now = self.now().saturating_sub(self.config.clock_skew_ms);
        let history = now.saturating_sub(self.config.retain_history_ms);
        let store = Arc::clone(&self.store);
        let stats = tokio::task::spawn_blocking(move || store.gc(now, history))
            .await
            .map_err(|e| ApiError::new(tonic::Code::Internal, "INTERNAL", e.to_string()))??;
        // Counts are read again from the store on next use: links held may have been
        // revoked or expired, links and tasks collected. Under the writer lock, so no
        // group of delegations is being admitted (its staged links are not in the store
        // yet, and a recount in the middle would miss them).
        let _w = self.writer.lock().await;
        let mut q = self.quota.lock().unwrap_or_else(PoisonError::into_inner);
        q.held.clear();
        if stats.links > 0 || stats.tasks > 0 {
            q.children.clear();
            q.task_links.clear();
        }
        drop(q);
        Ok(stats)
    }

    /// The clock skew verifiers allow, ms: revocations are kept this long past expiry.
    pub fn clock_skew_ms(&self) -> u64 {
        self.config.clock_skew_ms
    }

    /// Live revocations with an epoch above `epoch`, from the store, as the feed carries
    /// them: the store lists cut links only, not those a revoked ancestor covers.
    pub fn revocations_after(&self, epoch: u64) -> Result<Vec<(LinkId, u64, u64)>, ApiError> {
        let now = self.now();
        Ok(self
            .store
            .revocations_after(epoch)?
            .into_iter()
            .filter(|r| r.expires_at_ms.saturating_add(self.config.clock_skew_ms) >= now)
            .map(|r| (r.link, r.expires_at_ms, r.epoch))
            .collect())
    }

    /// Commits under the writer lock (held by the caller), applies revocations to memory
    /// and the feed, and returns what was committed. The caller then awaits durability.
    fn apply(&self, mut change: Change, caller: Option<&Caller>) -> Result<Committed, ApiError> {
        if let Some(c) = caller {
            change.nonces.push((c.nonce, c.nonce_expires_ms));
        }
        let entries: HashMap<LinkId, (u64, bool)> = change
            .revocations
            .iter()
            .map(|r| (r.link, (r.expires_at_ms, r.implied)))
            .collect();
        let committed = self.commit(change)?;
        if let Some(epoch) = committed.epoch {
            let mut links = Vec::new();
            {
                let mut r = write(&self.revoked);
                r.epoch = epoch;
                for l in &committed.revoked {
                    let (expires, implied) = entries.get(l).copied().unwrap_or((u64::MAX, false));
                    r.links.insert(*l, (expires, implied));
                    if !implied {
                        links.push((*l, expires));
                    }
                }
            }
            // Published once durable, by the flush loop (`Feed`): a follower that learnt of
            // epoch E before a crash lost it would skip the different revocation numbered
            // E after the restart. `Authorize` uses the set at once. The event names the
            // links cut, not the descendants they cover. A flush is asked for here, so
            // the event goes out even if the caller's call is cancelled.
            lock(&self.feed.unpublished).push_back(RevocationEvent { epoch, links });
            self.feed.committed.fetch_max(epoch, Ordering::SeqCst);
            self.flusher.request();
        }
        Ok(committed)
    }

    /// Commits a change and tells audit followers about its records.
    fn commit(&self, change: Change) -> Result<Committed, ApiError> {
        let committed = self.store.commit(change)?;
        if let Some(&last) = committed.audit_seqs.last() {
            self.audit_head.send_if_modified(|head| {
                let newer = last > *head;
                *head = (*head).max(last);
                newer
            });
        }
        Ok(committed)
    }

    /// Checks and takes one delegation's worth of quota (called under the writer lock, so
    /// the counts match the store): the agent's rate, the parent's children, the task's
    /// links.
    fn take_quota(
        &self,
        agent: &str,
        parent: &LinkId,
        task: &TaskId,
        now: u64,
    ) -> Result<(), ApiError> {
        let q = self.config.quotas;
        let exceeded =
            |what: String| ApiError::new(tonic::Code::ResourceExhausted, "QUOTA_EXCEEDED", what);
        let mut state = self.quota.lock().unwrap_or_else(PoisonError::into_inner);
        let held = self.held_count(&mut state, agent, now)?;
        let children = match state.children.get(parent) {
            Some(n) => *n,
            None => self.store.children(parent)?.len(),
        };
        if children >= q.children_per_link {
            return Err(exceeded(format!(
                "link `{parent}` already has {children} delegations (limit {})",
                q.children_per_link
            )));
        }
        let links = match state.task_links.get(task) {
            Some(n) => *n,
            None => self.store.task_link_count(task)?,
        };
        if links >= q.links_per_task {
            return Err(exceeded(format!(
                "task `{task}` already has {links} links (limit {})",
                q.links_per_task
            )));
        }
        let rate = f64::from(q.delegations_per_agent_per_second.max(1));
        let (tokens, last) = state.buckets.get(agent).copied().unwrap_or((rate, now));
        let tokens = (tokens + (now.saturating_sub(last) as f64) * rate / 1000.0).min(rate);
        if tokens < 1.0 {
            return Err(exceeded(format!(
                "agent `{agent}` is delegating faster than {} per second; slow down",
                q.delegations_per_agent_per_second
            )));
        }
        state.buckets.insert(agent.to_owned(), (tokens - 1.0, now));
        state.children.insert(*parent, children + 1);
        state.task_links.insert(*task, links + 1);
        state.held.insert(agent.to_owned(), held + 1);
        Ok(())
    }

    /// Live links `agent` created (roots granted to it, delegations it issued), refused
    /// at the quota (the caller holds the quota lock). The count is cached even when it
    /// refuses, so retries do not rescan the store.
    fn held_count(&self, state: &mut QuotaState, agent: &str, now: u64) -> Result<usize, ApiError> {
        let n = match state.held.get(agent) {
            Some(n) => *n,
            None => {
                let revoked = read(&self.revoked);
                let mut n = 0;
                for id in self.store.agent_links(agent)? {
                    if revoked.links.contains_key(&id) {
                        continue;
                    }
                    if let Some(l) = self.store.link(&id)?
                        && l.expires_at_ms > now
                        && (if l.parent.is_none() {
                            l.holder == agent
                        } else {
                            l.issuer == agent
                        })
                    {
                        n += 1;
                    }
                }
                state.held.insert(agent.to_owned(), n);
                n
            }
        };
        let limit = self.config.quotas.live_links_per_agent;
        if n >= limit {
            return Err(ApiError::new(
                tonic::Code::ResourceExhausted,
                "QUOTA_EXCEEDED",
                format!(
                    "agent `{agent}` already has {n} live links it was granted or issued (limit {limit})"
                ),
            ));
        }
        Ok(n)
    }

    /// Checks and takes one live link for `agent` (a root granted to it), under the writer
    /// lock.
    fn take_live_link(&self, agent: &str, now: u64) -> Result<(), ApiError> {
        let mut state = self.quota.lock().unwrap_or_else(PoisonError::into_inner);
        let n = self.held_count(&mut state, agent, now)?;
        state.held.insert(agent.to_owned(), n + 1);
        Ok(())
    }

    /// Wakes when audit records are written; the value is the newest sequence number.
    pub fn watch_audit(&self) -> tokio::sync::watch::Receiver<u64> {
        self.audit_head.subscribe()
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

    // ---- Agents ----

    /// Registers an agent (admin, or an active agent registering its own worker).
    pub async fn register_agent(
        &self,
        caller: &Caller,
        r: Registration,
    ) -> Result<AgentRecord, ApiError> {
        let id = AgentId::new(r.agent_id.clone()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let key: [u8; 32] = r
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| ApiError::invalid("public_key must be 32 bytes"))?;
        PublicKey::from_bytes(&key).map_err(|e| ApiError::invalid(e.to_string()))?;
        let parent = (!r.parent.is_empty()).then(|| r.parent.clone());
        if id.as_str() == self.config.coordinator_id {
            return Err(ApiError::forbidden(format!(
                "`{id}` is reserved for the coordinator"
            )));
        }
        // An agent of another trust domain would be issued authority by this coordinator
        // under a name another authority controls: only where the operator federated it.
        let coordinator = AgentId::new(self.config.coordinator_id.clone()).ok();
        let own = coordinator.as_ref().map_or("", AgentId::trust_domain);
        if id.trust_domain() != own
            && !self
                .config
                .federated_trust_domains
                .iter()
                .any(|d| d == id.trust_domain())
        {
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                "FOREIGN_TRUST_DOMAIN",
                format!(
                    "trust domain `{}` is neither this coordinator's (`{own}`) nor federated (--federated-trust-domain)",
                    id.trust_domain()
                ),
            ));
        }
        if !caller.is_admin() {
            let caller_id = AgentId::new(caller.agent.id.clone())
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            if parent.as_deref() != Some(caller.agent.id.as_str()) {
                return Err(ApiError::forbidden(
                    "only an admin may register agents; others may register their own workers (parent_agent_id = caller)",
                ));
            }
            if id.trust_domain() != caller_id.trust_domain() {
                return Err(ApiError::forbidden(
                    "a worker must be in its parent's trust domain",
                ));
            }
            // Workers are workers: only an admin assigns roles that carry privileges
            // (admin, auditor, tool, planner).
            if !(r.role.is_empty() || r.role == "worker") {
                return Err(ApiError::forbidden(
                    "only an admin may assign a role other than `worker`",
                ));
            }
            // Policy may rest on owner and labels: a worker cannot claim what its parent
            // does not have. The owner is inherited; every label must be the parent's.
            if !(r.owner.is_empty() || r.owner == caller.agent.owner) {
                return Err(ApiError::forbidden(
                    "a worker's owner is its parent's: leave owner empty or give the parent's",
                ));
            }
            if let Some((k, _)) = r
                .labels
                .iter()
                .find(|(k, v)| caller.agent.labels.get(*k) != Some(*v))
            {
                return Err(ApiError::forbidden(format!(
                    "label `{k}` is not one of the parent's: a worker carries only labels its parent has"
                )));
            }
        }
        let owner = if caller.is_admin() || !r.owner.is_empty() {
            r.owner.clone()
        } else {
            caller.agent.owner.clone()
        };
        let role = if r.role.is_empty() {
            "worker".to_owned()
        } else {
            r.role
        };
        // Admins register anyone; others also need a policy permit.
        let decision = if caller.is_admin() {
            None
        } else {
            let new_agent = AgentInfo {
                id: id.as_str().to_owned(),
                role: role.clone(),
                owner: owner.clone(),
                labels: r.labels.clone(),
                parent: parent.clone(),
            };
            let principal = agent_info(&caller.agent);
            let agents = self.related(&[&caller.agent.id])?;
            let mut q = PolicyRequest::new(
                Action::RegisterAgent,
                &principal,
                Target::Agent(&new_agent),
                self.now(),
            );
            q.agents = &agents;
            let d = self.decide(&q);
            if !d.allowed {
                let mut e = with_decision(
                    event(&caller.agent.id, "agent.registration_denied", self.now()),
                    &d,
                );
                e.detail.insert("agent".into(), id.as_str().to_owned());
                self.audit_refusal(e, Some(caller)).await?;
                return Err(ApiError::new(
                    tonic::Code::PermissionDenied,
                    "POLICY_DENIED",
                    format!("policy denied the registration: {}", d.reason),
                ));
            }
            Some(d)
        };
        let _w = self.writer.lock().await;
        self.current(caller)?;
        if self.store.agent(id.as_str())?.is_some() {
            return Err(ApiError::new(
                tonic::Code::AlreadyExists,
                "ALREADY_EXISTS",
                format!("agent `{id}` is already registered"),
            ));
        }
        if let Some(p) = &parent
            && self.store.agent(p)?.is_none()
        {
            return Err(ApiError::not_found("parent agent", p));
        }
        let now = self.now();
        let record = AgentRecord {
            id: id.as_str().to_owned(),
            public_key: key.to_vec(),
            role: role.clone(),
            owner,
            labels: r.labels,
            parent,
            status: AgentStatus::Active,
            created_ms: now,
            disabled_ms: 0,
            registered_by: caller.agent.id.clone(),
        };
        let mut e = event(&caller.agent.id, "agent.registered", now);
        if let Some(d) = &decision {
            e = with_decision(e, d);
        }
        e.detail.insert("agent".into(), record.id.clone());
        e.detail.insert("role".into(), role);
        self.commit_and_wait(
            _w,
            Change {
                agents: vec![record.clone()],
                audit: vec![e],
                ..Change::default()
            },
            Some(caller),
        )
        .await?;
        Ok(record)
    }

    /// The caller as stored now (under the writer lock): a caller disabled while its
    /// request waited is refused.
    fn current(&self, caller: &Caller) -> Result<AgentRecord, ApiError> {
        match self.store.agent(&caller.agent.id)? {
            Some(a) if a.status == AgentStatus::Active => Ok(a),
            _ => Err(ApiError::new(
                tonic::Code::PermissionDenied,
                "AGENT_DISABLED",
                format!("agent `{}` is disabled", caller.agent.id),
            )),
        }
    }

    /// Reads an agent.
    pub fn agent(&self, id: &str) -> Result<AgentRecord, ApiError> {
        self.store
            .agent(id)?
            .ok_or_else(|| ApiError::not_found("agent", id))
    }

    /// Disables an agent and revokes every link it holds or issued, with their subtrees.
    pub async fn disable_agent(
        &self,
        caller: &Caller,
        id: &str,
        reason: &str,
    ) -> Result<(AgentRecord, RevokedLinks), ApiError> {
        let _w = self.writer.lock().await;
        let mut agent = self.agent(id)?;
        if !caller.is_admin() && agent.parent.as_deref() != Some(caller.agent.id.as_str()) {
            return Err(ApiError::forbidden(
                "only an admin or the agent's parent may disable it",
            ));
        }
        if agent.status == AgentStatus::Disabled {
            return Ok((agent, RevokedLinks::default()));
        }
        let now = self.now();
        self.current(caller)?;
        // The agent and every worker registered below it, transitively.
        let mut agents = vec![agent.clone()];
        let mut children: HashMap<String, Vec<AgentRecord>> = HashMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.agents(after.as_deref(), 1024)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for a in page {
                if let Some(p) = a.parent.clone() {
                    children.entry(p).or_default().push(a);
                }
            }
        }
        let mut queue = VecDeque::from([id.to_owned()]);
        while let Some(next) = queue.pop_front() {
            for child in children.remove(&next).unwrap_or_default() {
                queue.push_back(child.id.clone());
                if child.status == AgentStatus::Active {
                    agents.push(child);
                }
            }
        }
        let mut roots = Vec::new();
        for a in &mut agents {
            a.status = AgentStatus::Disabled;
            a.disabled_ms = now;
            roots.extend(self.store.agent_links(&a.id)?);
        }
        agent = agents[0].clone();
        let disabled: HashSet<String> = agents.iter().map(|a| a.id.clone()).collect();
        let (revocations, tasks) =
            self.cascade(&roots, &format!("agent `{id}` disabled: {reason}"), now)?;
        let mut task_records = Vec::new();
        for t in tasks {
            if let Some(mut task) = self.store.task(&t)?
                && disabled.contains(&task.requester)
                && !task.state.is_final()
            {
                task.state = TaskState::Revoked;
                task.ended_ms = now;
                task.end_reason = format!("requester disabled: {reason}");
                task_records.push(task);
            }
        }
        let mut e = event(&caller.agent.id, "agent.disabled", now);
        e.severity = Severity::High;
        e.reason = reason.to_owned();
        e.links = revocations.iter().map(|r| r.link.to_string()).collect();
        e.detail.insert("agent".into(), id.to_owned());
        if agents.len() > 1 {
            e.detail.insert(
                "also_disabled".into(),
                agents[1..]
                    .iter()
                    .map(|a| a.id.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            );
        }
        let committed = self
            .commit_and_wait(
                _w,
                Change {
                    agents,
                    tasks: task_records,
                    revocations,
                    audit: vec![e],
                    ..Change::default()
                },
                Some(caller),
            )
            .await?;
        Ok((
            agent,
            RevokedLinks {
                links: committed.revoked,
                epoch: committed.epoch.unwrap_or(0),
            },
        ))
    }

    /// Every not-yet-revoked link in the subtrees of `roots`, as revocations, and the
    /// tasks they belong to.
    ///
    /// A descendant's revocation is marked implied when a revoked ancestor (new or old)
    /// stays in the revocation set at least as long as the descendant can be accepted:
    /// verifiers reject every chain that contains the ancestor, so the feed need not name
    /// the descendant. Children never outlive their parents, so in practice only the roots
    /// are published; the check keeps the rule sound even for a record that breaks that.
    fn cascade(
        &self,
        roots: &[LinkId],
        reason: &str,
        now: u64,
    ) -> Result<(Vec<NewRevocation>, HashSet<TaskId>), ApiError> {
        let revoked = read(&self.revoked);
        let mut out = Vec::new();
        let mut tasks = HashSet::new();
        let mut seen = HashSet::new();
        /// A link to visit: its task and expiry when known (a child's come from the tree
        /// index, so no record is read below the roots) and until when a revoked ancestor
        /// covers it (0: not covered).
        struct Visit {
            id: LinkId,
            known: Option<(TaskId, u64)>,
            covered_until: u64,
        }
        let mut queue: VecDeque<Visit> = roots
            .iter()
            .map(|r| Visit {
                id: *r,
                known: None,
                covered_until: 0,
            })
            .collect();
        while let Some(Visit {
            id,
            known,
            covered_until,
        }) = queue.pop_front()
        {
            if !seen.insert(id) {
                continue;
            }
            let (task, expires_at_ms) = match known {
                Some(k) => k,
                None => match self.store.link(&id)? {
                    Some(l) => (l.task, l.expires_at_ms),
                    None => continue,
                },
            };
            tasks.insert(task);
            let mut covers = covered_until;
            match revoked.links.get(&id) {
                Some(&(expires, false)) => covers = covers.max(expires),
                Some(_) => {}
                // Verifiers accept a link until its expiry plus the clock skew: revoke
                // until then.
                None if expires_at_ms.saturating_add(self.config.clock_skew_ms) >= now => {
                    let implied = covered_until >= expires_at_ms;
                    if !implied {
                        covers = covers.max(expires_at_ms);
                    }
                    out.push(NewRevocation {
                        link: id,
                        task,
                        expires_at_ms,
                        reason: reason.to_owned(),
                        time_ms: now,
                        implied,
                    });
                }
                None => {}
            }
            // A child belongs to its parent's task (verification checks it).
            for (child, expiry) in self.store.children_with_expiry(&id)? {
                queue.push_back(Visit {
                    id: child,
                    known: expiry.map(|e| (task, e)),
                    covered_until: covers,
                });
            }
        }
        Ok((out, tasks))
    }

    // ---- Tasks and grants ----

    /// Starts a task: policy decides; on grant, issues a sealed-subtree root to the caller;
    /// when policy requires approval, records a pending request instead.
    pub async fn start_task(&self, caller: &Caller, r: TaskRequest) -> Result<Started, ApiError> {
        if r.capabilities.is_empty() {
            return Err(ApiError::invalid("a task needs at least one capability"));
        }
        if r.ttl_ms == 0 {
            return Err(ApiError::invalid("ttl_ms must be above 0"));
        }
        check_signals(&r.signals)?;
        check_request_size(&r.capabilities, &r.intent, &r.intent_fields)?;
        agent_key(&caller.agent)?;
        let now = self.now();
        let task_id = TaskId::random()
            .map_err(|e| ApiError::new(tonic::Code::Internal, "INTERNAL", e.to_string()))?;
        let task_hex = task_id.to_string();
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id])?;
        let task = TaskInfo {
            id: &task_hex,
            requester: &caller.agent.id,
            intent: &r.intent,
            fields: &r.intent_fields,
        };
        let q = grant_request(&principal, &r, task, &agents, now);
        let decision = self.decide(&q);
        let guard = self.writer.lock().await;
        self.current(caller)?;
        let decision = self.decide_again_if_reloaded(&q, decision);
        let mut e = with_decision(event(&caller.agent.id, "grant.denied", now), &decision);
        e.task = Some(task_id);
        e.detail.insert("intent".into(), r.intent.clone());
        if !decision.allowed {
            drop(guard);
            self.audit_refusal(e, Some(caller)).await?;
            return Err(ApiError::new(
                tonic::Code::PermissionDenied,
                "POLICY_DENIED",
                format!("policy denied the grant: {}", decision.reason),
            ));
        }
        if decision.obligations.require_approval {
            return self
                .request_approval(guard, caller, task_id, r, decision, e, now)
                .await;
        }
        let issued = self
            .issue_grant(guard, caller, task_id, &r, decision, e, now, None)
            .await?;
        Ok(Started::Granted(issued))
    }

    /// Issues the root link of a task whose grant is decided (at start, or on approval)
    /// and commits it with `extra` records; the caller holds the writer lock.
    #[expect(clippy::too_many_arguments, reason = "the parts of one issuance")]
    async fn issue_grant(
        &self,
        guard: tokio::sync::MutexGuard<'_, ()>,
        caller: &Caller,
        task_id: TaskId,
        r: &TaskRequest,
        decision: Decision,
        mut e: AuditEvent,
        now: u64,
        approval: Option<(mandate_store::ApprovalRecord, AuditEvent, AgentRecord)>,
    ) -> Result<Issued, ApiError> {
        // The holder is the requester (the caller, or the requester of an approved task).
        let requester = match &approval {
            Some((_, _, requester)) => requester.clone(),
            None => caller.agent.clone(),
        };
        let holder = agent_key(&requester)?;
        let holder_agent =
            AgentId::new(requester.id.clone()).map_err(|e| ApiError::invalid(e.to_string()))?;
        let ttl = r.ttl_ms.min(self.ttl_cap(&decision));
        let deadline = now.saturating_add(ttl);
        let spec = LinkSpec::new(holder, holder_agent, r.capabilities.clone(), now, deadline)
            .map_err(|e| ApiError::new(tonic::Code::Internal, "INTERNAL", e.to_string()))?
            .max_depth(r.max_depth.min(Self::depth_cap(&decision)))
            .require_seal(true)
            .require_online(r.require_online || decision.obligations.require_online);
        let chain = Chain::issue_root(&self.key, task_id, LinkKind::Grant, spec)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let root = chain.root();
        let task = TaskRecord {
            id: task_id,
            requester: requester.id.clone(),
            intent: r.intent.clone(),
            intent_fields: r.intent_fields.clone(),
            state: TaskState::Active,
            created_ms: now,
            deadline_ms: deadline,
            ended_ms: 0,
            end_reason: String::new(),
            root_link: Some(root.id()),
        };
        e.action = "grant.issued".into();
        e.links = vec![root.id().to_string()];
        e.detail.insert("ttl_ms".into(), ttl.to_string());
        let mut change = Change {
            tasks: vec![task.clone()],
            links: vec![self.link_record(&chain, 0, &self.config.coordinator_id, now)],
            audit: Vec::new(),
            ..Change::default()
        };
        self.take_live_link(&requester.id, now)?;
        let approved = approval.is_some();
        if let Some((record, approved_event, _)) = approval {
            change.approvals.push(record);
            change.audit.push(approved_event);
        }
        change.audit.push(e);
        self.commit_and_wait(guard, change, Some(caller)).await?;
        if approved {
            self.approvals_changed.send_modify(|n| *n += 1);
        }
        Ok(Issued {
            task,
            chain,
            decision,
        })
    }

    /// Records a task (new or with a new root) with its root link and audit event, and
    /// hands back what was issued: the tail of `start_task` and `renew`.
    #[expect(clippy::too_many_arguments, reason = "the parts of one issuance")]
    async fn commit_root(
        &self,
        guard: tokio::sync::MutexGuard<'_, ()>,
        task: TaskRecord,
        chain: Chain,
        audit: AuditEvent,
        decision: Decision,
        caller: &Caller,
        now: u64,
    ) -> Result<Issued, ApiError> {
        let change = Change {
            tasks: vec![task.clone()],
            links: vec![self.link_record(&chain, 0, &self.config.coordinator_id, now)],
            audit: vec![audit],
            ..Change::default()
        };
        self.commit_and_wait(guard, change, Some(caller)).await?;
        Ok(Issued {
            task,
            chain,
            decision,
        })
    }

    fn link_record(&self, chain: &Chain, index: usize, issuer: &str, now: u64) -> LinkRecord {
        let link = &chain.links()[index];
        LinkRecord {
            id: link.id(),
            task: chain.task(),
            parent: index.checked_sub(1).map(|p| chain.links()[p].id()),
            digest: *link.digest(),
            holder: link.body().holder_agent.as_str().to_owned(),
            issuer: issuer.to_owned(),
            encoded: link.encode(),
            expires_at_ms: link.body().expires_at_ms,
            created_ms: now,
        }
    }

    /// Reads a task.
    pub fn task(&self, id: &TaskId) -> Result<TaskRecord, ApiError> {
        self.store
            .task(id)?
            .ok_or_else(|| ApiError::not_found("task", &id.to_string()))
    }

    /// Ends a task (completed or failed) and revokes its whole tree.
    pub async fn end_task(
        &self,
        caller: &Caller,
        id: &TaskId,
        state: TaskState,
        reason: &str,
    ) -> Result<(TaskRecord, RevokedLinks), ApiError> {
        let _w = self.writer.lock().await;
        self.current(caller)?;
        let mut task = self.task(id)?;
        if !caller.is_admin() && task.requester != caller.agent.id {
            return Err(ApiError::forbidden(
                "only the task's requester or an admin may end it",
            ));
        }
        if task.state.is_final() {
            return Err(ApiError::precondition(
                "TASK_ENDED",
                format!("task `{id}` has already ended"),
            ));
        }
        let now = self.now();
        let roots = self.store.task_roots(id)?;
        let what = if state == TaskState::Completed {
            "completed"
        } else {
            "failed"
        };
        let (revocations, _) = self.cascade(&roots, &format!("task {what}: {reason}"), now)?;
        // A task still waiting for approval takes its request with it: no later approval
        // may bring it back.
        let mut approvals = Vec::new();
        if task.state == TaskState::PendingApproval
            && let Some(mut a) = self.store.approval(id)?
            && a.state == mandate_store::ApprovalState::Pending
        {
            a.state = mandate_store::ApprovalState::Denied;
            a.decided_by = caller.agent.id.clone();
            a.decided_ms = now;
            a.comment = format!("task {what} before a decision: {reason}");
            approvals.push(a);
        }
        task.state = state;
        task.ended_ms = now;
        task.end_reason = reason.to_owned();
        let mut e = event(&caller.agent.id, &format!("task.{what}"), now);
        e.task = Some(*id);
        e.reason = reason.to_owned();
        e.links = revocations.iter().map(|r| r.link.to_string()).collect();
        e.detail
            .insert("revoked".into(), revocations.len().to_string());
        let committed = self
            .commit_and_wait(
                _w,
                Change {
                    tasks: vec![task.clone()],
                    revocations,
                    approvals,
                    audit: vec![e],
                    ..Change::default()
                },
                Some(caller),
            )
            .await?;
        self.approvals_changed.send_modify(|n| *n += 1);
        Ok((
            task,
            RevokedLinks {
                links: committed.revoked,
                epoch: committed.epoch.unwrap_or(0),
            },
        ))
    }

    /// Registers and seals a delegation submitted by the holder of its parent.
    pub async fn delegate(
        &self,
        caller: &Caller,
        chain_bytes: &[u8],
        signals: &BTreeMap<String, String>,
    ) -> Result<Issued, ApiError> {
        check_signals(signals)?;
        match self.delegate_checked(caller, chain_bytes, signals).await {
            Ok(issued) => Ok(issued),
            // Policy refusals are audited where they are decided; a failing store cannot
            // take another record.
            Err(e) if e.reason == "POLICY_DENIED" || e.reason == "STORE_UNAVAILABLE" => Err(e),
            Err(e) => {
                let now = self.now();
                let mut record = event(&caller.agent.id, "delegation.denied", now);
                record.decision = "deny".into();
                record.reason = e.reason.clone();
                record.severity = Severity::Notice;
                record
                    .detail
                    .insert("message".into(), e.message.chars().take(200).collect());
                if let Ok(chain) = self.verifier.decode_chain(chain_bytes) {
                    record.task = Some(chain.task());
                    record.links = chain
                        .links()
                        .iter()
                        .rev()
                        .take(2)
                        .map(|l| l.id().to_string())
                        .collect();
                }
                self.audit_refusal(record, None).await?;
                Err(e)
            }
        }
    }

    async fn delegate_checked(
        &self,
        caller: &Caller,
        chain_bytes: &[u8],
        signals: &BTreeMap<String, String>,
    ) -> Result<Issued, ApiError> {
        // A reload between the decision and admission means deciding again under the new
        // set; reloads are rare, so this loops at most a few times.
        loop {
            if let Some(issued) = self.delegate_once(caller, chain_bytes, signals).await? {
                return Ok(issued);
            }
        }
    }

    /// One attempt: `None` when the policy set changed before admission.
    async fn delegate_once(
        &self,
        caller: &Caller,
        chain_bytes: &[u8],
        signals: &BTreeMap<String, String>,
    ) -> Result<Option<Issued>, ApiError> {
        let chain = self
            .verifier
            .decode_chain(chain_bytes)
            .map_err(|d| ApiError::denied(&d))?;
        if chain.len() < 2 {
            return Err(ApiError::invalid(
                "the chain must end with the new delegation link",
            ));
        }
        let n = chain.len();
        let (parent, child) = (&chain.links()[n - 2], &chain.links()[n - 1]);
        let caller_key = agent_key(&caller.agent)?;
        if parent.body().holder != caller_key
            || parent.body().holder_agent.as_str() != caller.agent.id
        {
            return Err(ApiError::forbidden(
                "only the holder of the parent link may delegate from it",
            ));
        }
        let holder_id = child.body().holder_agent.as_str().to_owned();
        let holder = self.store.agent(&holder_id)?.ok_or_else(|| {
            ApiError::precondition(
                "UNKNOWN_AGENT",
                format!("the new holder `{holder_id}` is not registered"),
            )
        })?;
        if holder.status != AgentStatus::Active {
            return Err(ApiError::precondition(
                "AGENT_DISABLED",
                format!("the new holder `{holder_id}` is disabled"),
            ));
        }
        if agent_key(&holder)? != child.body().holder {
            return Err(ApiError::precondition(
                "HOLDER_KEY_MISMATCH",
                format!("the new link's holder key is not the registered key of `{holder_id}`"),
            ));
        }
        let depth = child.body().depth();
        let ttl = child
            .body()
            .expires_at_ms
            .saturating_sub(child.body().not_before_ms);
        let now = self.now();
        let task = self.task(&chain.task())?;
        let task_hex = task.id.to_string();
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id, &holder_id])?;
        let mut q = PolicyRequest::new(
            Action::Delegate,
            &principal,
            Target::Capabilities(&child.body().capabilities),
            now,
        );
        q.task = Some(task_info(&task, &task_hex));
        q.agents = &agents;
        q.holder = Some(&holder_id);
        q.ttl_ms = ttl;
        q.depth = depth;
        q.max_depth = child.body().max_depth;
        q.signals = signals;
        let decision = self.decide(&q);
        let mut e = with_decision(event(&caller.agent.id, "delegation.sealed", now), &decision);
        e.task = Some(chain.task());
        e.links = vec![child.id().to_string(), parent.id().to_string()];
        e.detail.insert("holder".into(), holder_id.clone());
        // The signature work happens before the writer lock: verifying caches every link,
        // so the check repeated under the lock (for revocations that landed meanwhile) is
        // cheap. The seal is made here too and discarded if the lock-held checks refuse.
        {
            let revoked = read(&self.revoked);
            self.verifier
                .verify_for_sealing(&chain, &*revoked)
                .map_err(|d| ApiError::denied(&d))?;
        }
        let seal = mandate_core::Seal::sign(&self.key, chain.leaf().digest());
        // Queue it, then take the writer lock: whoever holds it admits every queued
        // delegation as one commit (`admission.rs`), so by the time this call holds the
        // lock, its delegation has been admitted by it or by an earlier holder.
        let (reply, admitted) = tokio::sync::oneshot::channel();
        lock(&self.delegations).push(admission::Pending {
            delegation: admission::Delegation {
                caller: caller.clone(),
                chain,
                seal,
                decision,
                event: e,
                holder_id,
                ttl,
                depth,
                now,
            },
            reply,
        });
        {
            let _w = self.writer.lock().await;
            let mut group = admission::Group::take(&self.delegations);
            // Let delegations still being checked join, while more keep arriving.
            while !group.is_empty() && group.len() < 256 {
                tokio::task::yield_now().await;
                if !group.take_more() {
                    break;
                }
            }
            if !group.is_empty() {
                self.admit_delegations(group.into_jobs());
            }
        }
        match admitted.await {
            Ok(admission::Admitted::Issued(issued)) => {
                self.durable().await?;
                Ok(Some(*issued))
            }
            Ok(admission::Admitted::Refused(e)) => {
                self.durable().await?;
                Err(e)
            }
            Ok(admission::Admitted::Failed(e)) => Err(e),
            Ok(admission::Admitted::Reloaded) => Ok(None),
            Err(_) => Err(ApiError::new(
                tonic::Code::Internal,
                "INTERNAL",
                "a queued delegation was never admitted",
            )),
        }
    }

    /// Issues a fresh root link for a task after a new decision; never past the deadline.
    pub async fn renew(
        &self,
        caller: &Caller,
        id: &TaskId,
        ttl_ms: u64,
        signals: &BTreeMap<String, String>,
    ) -> Result<Issued, ApiError> {
        check_signals(signals)?;
        let task = self.task(id)?;
        if task.requester != caller.agent.id {
            return Err(ApiError::forbidden(
                "only the task's requester may renew its grant",
            ));
        }
        let now = self.now();
        if task.state != TaskState::Active || now >= task.deadline_ms {
            return Err(ApiError::precondition(
                "TASK_NOT_ACTIVE",
                format!("task `{id}` is not active"),
            ));
        }
        let current = task
            .root_link
            .map(|l| self.store.link(&l))
            .transpose()?
            .flatten()
            .ok_or_else(|| {
                ApiError::precondition("TASK_NOT_ACTIVE", "the task has no root link")
            })?;
        let root =
            mandate_core::Link::decode(&current.encoded, &mandate_core::Limits::default())
                .map_err(|d| ApiError::new(tonic::Code::Internal, "CORRUPT_LINK", d.to_string()))?;
        let b = root.body();
        let principal = agent_info(&caller.agent);
        let agents = self.related(&[&caller.agent.id])?;
        let task_hex = id.to_string();
        let mut q = PolicyRequest::new(
            Action::Renew,
            &principal,
            Target::Capabilities(&b.capabilities),
            now,
        );
        q.task = Some(task_info(&task, &task_hex));
        q.agents = &agents;
        q.ttl_ms = ttl_ms.max(1);
        q.max_depth = b.max_depth;
        q.require_online = b.require_online;
        q.signals = signals;
        let decision = self.decide(&q);
        let refuse = |decision: &Decision| {
            let mut e = with_decision(
                event(&caller.agent.id, "grant.renewal_denied", now),
                decision,
            );
            e.task = Some(*id);
            e.decision = "deny".into();
            e
        };
        if !decision.allowed || decision.obligations.require_approval {
            return self
                .refuse_renewal(refuse(&decision), &decision, caller)
                .await;
        }
        let mut e = with_decision(event(&caller.agent.id, "grant.renewed", now), &decision);
        e.task = Some(*id);
        let expires = now
            .saturating_add(ttl_ms.max(1).min(self.ttl_cap(&decision)))
            .min(task.deadline_ms);
        let spec = LinkSpec::new(
            b.holder,
            b.holder_agent.clone(),
            b.capabilities.clone(),
            now,
            expires,
        )
        .map_err(|e| ApiError::new(tonic::Code::Internal, "INTERNAL", e.to_string()))?
        .max_depth(b.max_depth.min(Self::depth_cap(&decision)))
        .require_seal(true)
        .require_online(b.require_online || decision.obligations.require_online);
        let chain = Chain::issue_root(&self.key, *id, b.kind, spec)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let _w = self.writer.lock().await;
        self.current(caller)?;
        let again = self.decide_again_if_reloaded(&q, decision.clone());
        if again != decision {
            drop(_w);
            // The set changed between the decision and the lock: decide afresh.
            return Box::pin(self.renew(caller, id, ttl_ms, signals)).await;
        }
        let mut task = self.task(id)?;
        if task.state != TaskState::Active {
            return Err(ApiError::precondition(
                "TASK_NOT_ACTIVE",
                format!("task `{id}` is not active"),
            ));
        }
        // Earlier roots stay valid until they expire: each renewal is one more live link.
        self.take_live_link(&caller.agent.id, now)?;
        task.root_link = Some(chain.root().id());
        e.links = vec![chain.root().id().to_string(), current.id.to_string()];
        self.commit_root(_w, task, chain, e, decision, caller, now)
            .await
    }

    async fn refuse_renewal(
        &self,
        e: AuditEvent,
        decision: &Decision,
        caller: &Caller,
    ) -> Result<Issued, ApiError> {
        self.audit_refusal(e, Some(caller)).await?;
        Err(ApiError::new(
            tonic::Code::PermissionDenied,
            "POLICY_DENIED",
            if decision.allowed {
                "policy requires approval for this grant: start a new task to request it".to_owned()
            } else {
                format!("policy denied the renewal: {}", decision.reason)
            },
        ))
    }

    /// Revokes a link and its subtree. Allowed for admins, the task's requester, and the
    /// holder of the link or of any link above it.
    pub async fn revoke(
        &self,
        caller: &Caller,
        id: &LinkId,
        reason: &str,
    ) -> Result<RevokedLinks, ApiError> {
        let _w = self.writer.lock().await;
        let started = std::time::Instant::now();
        self.current(caller)?;
        let link = self
            .store
            .link(id)?
            .ok_or_else(|| ApiError::not_found("link", &id.to_string()))?;
        let mut task = self.task(&link.task)?;
        let mut allowed = caller.is_admin() || task.requester == caller.agent.id;
        let mut cursor = Some(link.clone());
        while let (false, Some(l)) = (allowed, cursor) {
            allowed = l.holder == caller.agent.id;
            cursor = l.parent.map(|p| self.store.link(&p)).transpose()?.flatten();
        }
        if !allowed {
            return Err(ApiError::forbidden(
                "only an admin, the task's requester or a holder at or above the link may revoke it",
            ));
        }
        let now = self.now();
        let mut tasks = Vec::new();
        let mut roots = vec![*id];
        if task.root_link == Some(*id) && task.state == TaskState::Active {
            // Revoking the task's current root ends the task: every root it ever had (older
            // ones survive a renewal) goes with it.
            roots.extend(self.store.task_roots(&link.task)?);
            task.state = TaskState::Revoked;
            task.ended_ms = now;
            task.end_reason = format!("root link revoked: {reason}");
            tasks.push(task);
        }
        let (revocations, _) = self.cascade(&roots, reason, now)?;
        let walked = started.elapsed();
        let mut e = event(&caller.agent.id, "link.revoked", now);
        e.task = Some(link.task);
        e.reason = reason.to_owned();
        e.severity = Severity::Notice;
        e.links = revocations.iter().map(|r| r.link.to_string()).collect();
        e.detail.insert("requested".into(), id.to_string());
        e.detail
            .insert("revoked".into(), revocations.len().to_string());
        let committed = self
            .commit_and_wait(
                _w,
                Change {
                    tasks,
                    revocations,
                    audit: vec![e],
                    ..Change::default()
                },
                Some(caller),
            )
            .await?;
        tracing::debug!(
            revoked = committed.revoked.len(),
            walk_us = walked.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "revoke"
        );
        Ok(RevokedLinks {
            links: committed.revoked,
            epoch: committed.epoch.unwrap_or(0),
        })
    }

    /// The links of a task, parents before children, with their revocation state. For
    /// admins, the requester and holders in the tree.
    pub fn tree(
        &self,
        caller: &Caller,
        id: &TaskId,
    ) -> Result<(TaskRecord, Vec<TreeLink>), ApiError> {
        let task = self.task(id)?;
        let mut links = self.store.task_links(id)?;
        if !caller.is_admin()
            && task.requester != caller.agent.id
            && !links.iter().any(|l| l.holder == caller.agent.id)
        {
            return Err(ApiError::forbidden(
                "only an admin, the requester or a holder in the tree may read it",
            ));
        }
        // Parents first: sort by depth (computed once from a map), then creation.
        let parents: HashMap<LinkId, Option<LinkId>> =
            links.iter().map(|l| (l.id, l.parent)).collect();
        let mut depths: HashMap<LinkId, usize> = HashMap::new();
        for l in &links {
            let mut d = 0;
            let mut p = l.parent;
            while let Some(pid) = p {
                d += 1;
                if d > links.len() {
                    break;
                }
                p = parents.get(&pid).copied().flatten();
            }
            depths.insert(l.id, d);
        }
        links.sort_by_key(|l| (depths.get(&l.id).copied().unwrap_or(0), l.created_ms, l.id));
        let mut cut = HashMap::new();
        for l in &links {
            if let Some(r) = self.store.revocation(&l.id)? {
                cut.insert(l.id, r);
            }
        }
        // Descendants revoked with a cut link are stored with its change, by epoch.
        let epochs: HashSet<u64> = cut.values().map(|r| r.epoch).collect();
        let mut implied = HashMap::new();
        for epoch in epochs {
            for r in self.store.implied_revocations(epoch, id)? {
                if parents.contains_key(&r.link) {
                    implied.insert(r.link, r);
                }
            }
        }
        let out = links
            .into_iter()
            .map(|l| {
                let r = cut.remove(&l.id).or_else(|| implied.remove(&l.id));
                (l, r)
            })
            .collect();
        Ok((task, out))
    }

    /// Online authorisation for the calling tool: everything an offline verifier checks,
    /// against live revocation state, then the Cedar `Invoke` decision with the tool's
    /// context. The decision is audited.
    pub async fn authorize(
        &self,
        caller: &Caller,
        chain: &[u8],
        invocation: &[u8],
        call: &Call,
        context: &BTreeMap<String, String>,
        refuse_break_glass: bool,
    ) -> Result<AuthorizeOutcome, ApiError> {
        check_signals(context)?;
        let now = self.now();
        let mut outcome = AuthorizeOutcome {
            denial: None,
            policy: None,
            task: None,
            holder: None,
            links: Vec::new(),
            expires_at_ms: 0,
            epoch: 0,
        };
        let result = (|| -> Result<(u32, bool), Denial> {
            let chain = self.verifier.decode_chain(chain)?;
            outcome.task = Some(chain.task());
            outcome.holder = Some(chain.leaf().body().holder_agent.as_str().to_owned());
            outcome.links = chain.links().iter().map(|l| l.id()).collect();
            let invocation = self.verifier.decode_invocation(invocation)?;
            let revoked = read(&self.revoked);
            outcome.epoch = revoked.epoch;
            let verified = self.verifier.verify_invocation(
                &chain,
                &invocation,
                &caller.agent.id,
                call,
                &*revoked,
            )?;
            outcome.expires_at_ms = verified.expires_at_ms();
            let break_glass = chain.root().body().kind == LinkKind::BreakGlass;
            if break_glass && refuse_break_glass {
                return Err(Denial::at(
                    Reason::BreakGlassRefused,
                    0,
                    "this tool refuses break-glass access",
                ));
            }
            Ok((chain.leaf().body().depth(), break_glass))
        })();
        match result {
            Ok((depth, break_glass)) => {
                let decision =
                    self.decide_invoke(caller, &outcome, call, context, depth, break_glass, now)?;
                outcome.policy = Some(decision);
            }
            Err(d) => {
                if d.reason() == Reason::Malformed || outcome.task.is_none() {
                    tracing::debug!(reason = %d.reason(), "authorize: bad token");
                }
                outcome.denial = Some(d);
            }
        }
        let mut e = event(&caller.agent.id, "invocation.authorized", now);
        e.task = outcome.task;
        e.links = outcome.links.iter().map(ToString::to_string).collect();
        // Caller-supplied strings are bounded in the log.
        e.detail
            .insert("action".into(), call.action.chars().take(128).collect());
        e.detail
            .insert("resource".into(), call.resource.chars().take(512).collect());
        if let Some(h) = &outcome.holder {
            e.detail.insert("holder".into(), h.clone());
        }
        if let Some(d) = &outcome.policy {
            e.policies = d.policies.clone();
            e.policy_hash = d.policy_hash.clone();
        }
        match (&outcome.denial, &outcome.policy) {
            (None, Some(d)) if d.allowed => e.decision = "allow".into(),
            (Some(d), _) => {
                e.action = "invocation.denied".into();
                e.decision = "deny".into();
                e.reason = d.reason().code().into();
                e.severity = Severity::Notice;
            }
            (None, policy) => {
                e.action = "invocation.denied".into();
                e.decision = "deny".into();
                e.reason = format!(
                    "POLICY_DENIED: {}",
                    policy
                        .as_ref()
                        .map(|d| d.reason.as_str())
                        .unwrap_or_default()
                );
                e.severity = Severity::Notice;
            }
        }
        // Authorize changes no durable state: its audit record is committed with others in
        // a batch (and made durable with the next flush), not one commit per call.
        self.audit_batch.record(e).await?;
        Ok(outcome)
    }

    /// The Cedar `Invoke` decision for a verified chain.
    #[expect(clippy::too_many_arguments, reason = "the parts of one call")]
    fn decide_invoke(
        &self,
        caller: &Caller,
        outcome: &AuthorizeOutcome,
        call: &Call,
        context: &BTreeMap<String, String>,
        depth: u32,
        break_glass: bool,
        now: u64,
    ) -> Result<Decision, ApiError> {
        let (Some(task_id), Some(holder_id)) = (outcome.task, outcome.holder.as_deref()) else {
            return Err(ApiError::new(
                tonic::Code::Internal,
                "INTERNAL",
                "a verified chain without task or holder",
            ));
        };
        let refused =
            |reason: String| Decision::refused(reason, self.policies.current().set.hash());
        // The agents a decision may read include the holder: one store read each, on
        // every online check.
        let agents = self.related(&[holder_id, &caller.agent.id])?;
        let Some(principal) = agents.iter().find(|a| a.id == holder_id).cloned() else {
            return Ok(refused(format!(
                "the holder `{holder_id}` is not registered"
            )));
        };
        let Some(task) = self.store.task(&task_id)? else {
            return Ok(refused(format!("task `{task_id}` is not registered")));
        };
        let task_hex = task_id.to_string();
        let mut q = PolicyRequest::new(
            Action::Invoke,
            &principal,
            Target::Call {
                operation: &call.action,
                resource: &call.resource,
            },
            now,
        );
        q.task = Some(task_info(&task, &task_hex));
        q.agents = &agents;
        q.tool = Some(&caller.agent.id);
        q.depth = depth;
        q.break_glass = break_glass;
        q.signals = context;
        Ok(self.decide(&q))
    }
}
