//! Revocation: revoking a link and its subtree, the cascade every revoking change shares,
//! the delegation tree as it stands, the feed followers read, and garbage collection.

use super::access::{self, Ask};
use super::{Coordinator, RevokedLinks, event, read, write};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::revocations::{RevocationEvent, SignedBatch};
use mandate_core::{LinkId, RevocationEntry, RevocationList, TaskId};
use mandate_store::AuditAction;
use mandate_store::RevocationRecord;
use mandate_store::{Change, LinkRecord, NewRevocation, Severity, TaskRecord, TaskState};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The children of each link of a task's tree.
type Children = HashMap<LinkId, Vec<mandate_store::Child>>;

/// Parents in one level of a cascade above which the walk reads whole task trees.
const WIDE_LEVEL: usize = 256;

/// A link of a delegation tree with its revocation, if revoked.
pub type TreeLink = (LinkRecord, Option<mandate_store::RevocationRecord>);

impl Coordinator {
    /// Whether `agent` holds a link in `task`'s tree.
    pub fn holds_link_in(&self, task: &TaskId, agent: &str) -> Result<bool, ApiError> {
        Ok(self
            .store
            .task_links(task)?
            .iter()
            .any(|l| l.holder == agent))
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
        let holds_at_or_above = || {
            let mut cursor = Some(link.clone());
            while let Some(l) = cursor {
                if l.holder == caller.agent.id {
                    return Ok(true);
                }
                cursor = l.parent.map(|p| self.store.link(&p)).transpose()?.flatten();
            }
            Ok(false)
        };
        access::check(
            caller,
            Ask::Revoke {
                requester: &task.requester,
                holds_at_or_above: &holds_at_or_above,
            },
        )?;
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
        let mut e = event(&caller.agent.id, AuditAction::LinkRevoked, now);
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

    /// Every not-yet-revoked link in the subtrees of `roots`, as revocations, and the
    /// tasks they belong to.
    ///
    /// A descendant's revocation is marked implied when a revoked ancestor (new or old)
    /// stays in the revocation set at least as long as the descendant can be accepted:
    /// verifiers reject every chain that contains the ancestor, so the feed need not name
    /// the descendant. Children never outlive their parents, so in practice only the roots
    /// are published; the check keeps the rule sound even for a record that breaks that.
    pub(super) fn cascade(
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
        let mut level: Vec<Visit> = roots
            .iter()
            .map(|r| Visit {
                id: *r,
                known: None,
                covered_until: 0,
            })
            .collect();
        let mut trees: HashMap<TaskId, Children> = HashMap::new();
        // Level by level: the children of a whole level are read together.
        while !level.is_empty() {
            let mut parents = Vec::with_capacity(level.len());
            for Visit {
                id,
                known,
                covered_until,
            } in level
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
                match revoked.get(&id) {
                    Some(RevocationEntry {
                        expires_at_ms: expires,
                        implied: false,
                    }) => covers = covers.max(expires),
                    Some(_) => {}
                    // Verifiers accept a link until its expiry plus the clock skew: revoke
                    // until then.
                    None if RevocationList::matters(
                        expires_at_ms,
                        now,
                        self.config.clock_skew_ms,
                    ) =>
                    {
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
                parents.push((id, task, covers));
            }
            // A wide level reads the whole tree of its tasks at once (one scan of the task
            // index) instead of every parent's children.
            if parents.len() > WIDE_LEVEL {
                for (_, task, _) in &parents {
                    if !trees.contains_key(task) {
                        let mut children = Children::new();
                        for (id, parent, expiry) in self.store.task_tree(task)? {
                            if let Some(p) = parent {
                                children.entry(p).or_default().push((id, expiry));
                            }
                        }
                        trees.insert(*task, children);
                    }
                }
            }
            let ask: Vec<(TaskId, LinkId)> = parents
                .iter()
                .filter(|(_, task, _)| !trees.contains_key(task))
                .map(|(id, task, _)| (*task, *id))
                .collect();
            let mut asked = self.store.children_with_expiry_of(&ask)?.into_iter();
            level = Vec::new();
            // A child belongs to its parent's task (verification checks it).
            for (id, task, covers) in parents {
                let children = match trees.get(&task) {
                    Some(tree) => tree.get(&id).cloned().unwrap_or_default(),
                    None => asked.next().unwrap_or_default(),
                };
                for (child, expiry) in children {
                    level.push(Visit {
                        id: child,
                        known: Some((task, expiry)),
                        covered_until: covers,
                    });
                }
            }
        }
        Ok((out, tasks))
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
        let holds_a_link = || Ok(links.iter().any(|l| l.holder == caller.agent.id));
        access::check(
            caller,
            Ask::ReadTree {
                requester: &task.requester,
                holds_a_link: &holds_a_link,
            },
        )?;
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

    /// Subscribes to revocation changes.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SignedBatch> {
        self.feed.subscribe()
    }

    /// The newest revocation epoch published to followers.
    pub(crate) fn published_epoch(&self) -> u64 {
        self.feed.published()
    }

    /// Signs a feed message's statement with the coordinator's key.
    pub fn sign_feed(&self, statement: &mandate_core::FeedStatement) -> mandate_core::Signature {
        self.feed_signer.sign(statement)
    }

    /// Live revocations and the epoch they are current at. Revocations covered by a revoked
    /// ancestor are left out: a verifier rejects every chain that contains the ancestor.
    pub fn revocation_snapshot(&self) -> RevocationEvent {
        let r = read(&self.revoked);
        let now = self.now();
        RevocationEvent {
            // The links may include revocations not durable yet (their events follow),
            // the epoch never does.
            epoch: self.feed.published().min(r.epoch()),
            links: r.published(now, self.config.clock_skew_ms).collect(),
        }
    }

    /// Live revocations with an epoch above `epoch`, from the store, as the feed carries
    /// them: the store lists cut links only, not those a revoked ancestor covers.
    pub fn revocations_after(&self, epoch: u64) -> Result<Vec<RevocationRecord>, ApiError> {
        let now = self.now();
        Ok(self
            .store
            .revocations_after(epoch)?
            .into_iter()
            .filter(|r| RevocationList::matters(r.expires_at_ms, now, self.config.clock_skew_ms))
            .collect())
    }

    /// The clock skew verifiers allow, ms: revocations are kept this long past expiry.
    pub fn clock_skew_ms(&self) -> u64 {
        self.config.clock_skew_ms
    }

    /// Forgets revocations of links that no verifier can accept any more (expired beyond
    /// the clock skew). Called by the garbage collector.
    pub fn prune_revocations(&self) {
        let now = self.now();
        let skew = self.config.clock_skew_ms;
        write(&self.revoked).prune(now, skew);
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
        let stats = super::blocking(move || store.gc(now, history)).await??;
        // Counts are read again from the store on next use: links held may have been
        // revoked or expired, links and tasks collected. Under the writer lock, so no
        // group of delegations is being admitted (its staged links are not in the store
        // yet, and a recount in the middle would miss them).
        let _w = self.writer.lock().await;
        self.quota.reset(self.now());
        Ok(stats)
    }
}
