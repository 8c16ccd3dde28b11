//! The revocation feed: what followers of `WatchRevocations` receive, published only once
//! the change that made it is durable.
//!
//! The live revocation set itself is a [`mandate_core::RevocationList`] the coordinator
//! holds (the SDK's feed follower keeps the same type).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use mandate_core::{Clock, FeedKind, FeedLinks, FeedStatement, LinkId, Signature, SigningKey};
use tokio::sync::broadcast;

use crate::state::durability::AfterFlush;

/// One change of the revocation set, as the feed publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationEvent {
    /// Epoch after the change.
    pub epoch: u64,
    /// Revoked links with their expiry.
    pub links: Vec<(LinkId, u64)>,
}

/// A published change, signed once for every follower.
#[derive(Clone, Debug)]
pub(crate) struct SignedBatch {
    /// The change.
    pub event: Arc<RevocationEvent>,
    /// The epoch published before it.
    pub previous_epoch: u64,
    /// When it was signed, coordinator time, Unix ms.
    pub time_ms: u64,
    /// The coordinator's signature over its statement.
    pub signature: Signature,
}

/// The statement of a feed message carrying `links`, all at `link_epoch` (a batch or a
/// snapshot built from the live set) or each at its own epoch.
pub(crate) fn statement<'a>(
    kind: FeedKind,
    previous_epoch: u64,
    epoch: u64,
    time_ms: u64,
    links: impl Iterator<Item = (&'a LinkId, u64, u64)>,
) -> FeedStatement {
    let mut l = FeedLinks::new();
    for (id, expires, link_epoch) in links {
        l.push(id, expires, link_epoch);
    }
    l.statement(kind, previous_epoch, epoch, time_ms)
}

/// Signs feed statements with the coordinator's key, at the coordinator's time.
pub(crate) struct FeedSigner {
    key: SigningKey,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for FeedSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FeedSigner")
    }
}

impl FeedSigner {
    pub(crate) fn new(key: SigningKey, clock: Arc<dyn Clock>) -> FeedSigner {
        FeedSigner { key, clock }
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    pub(crate) fn sign(&self, statement: &FeedStatement) -> Signature {
        statement.sign(&self.key)
    }
}

/// Events wait here, in epoch order, until a flush covers them; the flush loop then
/// publishes them before releasing its waiters (see [`AfterFlush`]).
#[derive(Debug)]
pub(crate) struct Feed {
    sender: broadcast::Sender<SignedBatch>,
    signer: Arc<FeedSigner>,
    unpublished: Mutex<VecDeque<RevocationEvent>>,
    /// The last epoch committed, and the last published.
    committed: AtomicU64,
    published: AtomicU64,
}

impl Feed {
    /// A feed whose every epoch up to `epoch` is durable (what the store holds at start).
    pub(crate) fn new(epoch: u64, signer: Arc<FeedSigner>) -> Feed {
        Feed {
            sender: broadcast::channel(4096).0,
            signer,
            unpublished: Mutex::new(VecDeque::new()),
            committed: AtomicU64::new(epoch),
            published: AtomicU64::new(epoch),
        }
    }

    /// A new follower, receiving every event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<SignedBatch> {
        self.sender.subscribe()
    }

    /// The last epoch published: never one a crash could lose.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Queues a committed change; it is published once a flush covers it.
    pub(crate) fn committed(&self, event: RevocationEvent) {
        let epoch = event.epoch;
        self.unpublished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(event);
        self.committed.fetch_max(epoch, Ordering::SeqCst);
    }
}

impl AfterFlush for Feed {
    fn mark(&self) -> u64 {
        self.committed.load(Ordering::SeqCst)
    }

    fn durable(&self, upto: u64) {
        let mut pending = self
            .unpublished
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while pending.front().is_some_and(|e| e.epoch <= upto) {
            if let Some(event) = pending.pop_front() {
                let previous_epoch = self.published.fetch_max(event.epoch, Ordering::SeqCst);
                // One signature per change, whatever the number of followers.
                let time_ms = self.signer.now();
                let signature = self.signer.sign(&statement(
                    FeedKind::Batch,
                    previous_epoch,
                    event.epoch,
                    time_ms,
                    event.links.iter().map(|(l, e)| (l, *e, event.epoch)),
                ));
                let _ = self.sender.send(SignedBatch {
                    event: Arc::new(event),
                    previous_epoch,
                    time_ms,
                    signature,
                });
            }
        }
    }
}
