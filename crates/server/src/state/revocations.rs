//! The revocation feed: what followers of `WatchRevocations` receive, published only once
//! the change that made it is durable.
//!
//! The live revocation set itself is a [`mandate_core::RevocationList`] the coordinator
//! holds (the SDK's feed follower keeps the same type).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use mandate_core::LinkId;
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

/// Events wait here, in epoch order, until a flush covers them; the flush loop then
/// publishes them before releasing its waiters (see [`AfterFlush`]).
#[derive(Debug)]
pub(crate) struct Feed {
    sender: broadcast::Sender<RevocationEvent>,
    unpublished: Mutex<VecDeque<RevocationEvent>>,
    /// The last epoch committed, and the last published.
    committed: AtomicU64,
    published: AtomicU64,
}

impl Feed {
    /// A feed whose every epoch up to `epoch` is durable (what the store holds at start).
    pub(crate) fn new(epoch: u64) -> Feed {
        Feed {
            sender: broadcast::channel(4096).0,
            unpublished: Mutex::new(VecDeque::new()),
            committed: AtomicU64::new(epoch),
            published: AtomicU64::new(epoch),
        }
    }

    /// A new follower, receiving every event published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<RevocationEvent> {
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
                self.published.fetch_max(event.epoch, Ordering::SeqCst);
                let _ = self.sender.send(event);
            }
        }
    }
}
