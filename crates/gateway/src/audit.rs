//! Offline decisions on their way to the coordinator's audit log: a bounded spool, emptied
//! in batches by one task. A decision leaves the spool only once the coordinator has made
//! it durable; while the coordinator is away the spool holds what it can, and when it is
//! full the gateway refuses further calls (`AUDIT_BACKLOG`) rather than make decisions
//! nobody will see. Online decisions need none of this: the coordinator audits them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mandate_core::{Call, Clock as _};
use mandate_proto::v1 as pb;
use mandate_sdk::{Decision, ToolVerifier};
use tokio::sync::Notify;

/// Most decisions sent in one report (the coordinator's limit).
const BATCH: usize = 1000;

/// Decisions waiting for the coordinator.
#[derive(Debug)]
pub(crate) struct Spool {
    queue: Mutex<VecDeque<pb::OfflineDecision>>,
    capacity: usize,
    wake: Notify,
    prefix: String,
    next: AtomicU64,
    shed: AtomicU64,
}

impl Spool {
    /// An empty spool for up to `capacity` decisions; ids start with `prefix`.
    pub(crate) fn new(capacity: usize, prefix: String) -> Spool {
        Spool {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            wake: Notify::new(),
            prefix,
            next: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<pb::OfflineDecision>> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues the record of a decision; false when the spool is full (the record is not
    /// queued, and the decision must not be given). Denials may fill only half the spool:
    /// beyond it they are counted, and the count is reported as one record, so a flood of
    /// refused calls cannot crowd out the records of allowed ones.
    pub(crate) fn push(&self, place: &str, call: &Call, d: &Decision, now_ms: u64) -> bool {
        let mut q = self.queue();
        if !d.allowed && q.len() >= self.capacity / 2 {
            self.shed.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if q.len() >= self.capacity {
            return false;
        }
        q.push_back(pb::OfflineDecision {
            id: format!(
                "{}-{}",
                self.prefix,
                self.next.fetch_add(1, Ordering::Relaxed)
            ),
            time_ms: now_ms,
            allowed: d.allowed,
            reason: if d.allowed {
                "OK".into()
            } else {
                d.reason.clone()
            },
            action: call.action.clone(),
            resource: call.resource.clone(),
            task_id: d.task.clone().unwrap_or_default(),
            holder_agent_id: d.holder.clone().unwrap_or_default(),
            place: place.to_owned(),
        });
        if q.len() >= BATCH / 2 {
            self.wake.notify_one();
        }
        true
    }

    /// How many decisions wait.
    pub(crate) fn len(&self) -> usize {
        self.queue().len()
    }

    /// The oldest decisions, up to a batch, still queued; first, a record of the denials
    /// counted but not queued since the last one.
    fn peek(&self) -> Vec<pb::OfflineDecision> {
        let shed = self.shed.swap(0, Ordering::Relaxed);
        let mut q = self.queue();
        if shed > 0 {
            q.push_front(pb::OfflineDecision {
                id: format!("{}-shed-{}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed)),
                time_ms: mandate_core::SystemClock.now_ms(),
                allowed: false,
                reason: "DENIALS_COUNTED".into(),
                place: format!("{shed} refused calls over the spool's half for denials, counted, not recorded one by one"),
                ..Default::default()
            });
        }
        q.iter().take(BATCH).cloned().collect()
    }

    /// Drops the `n` oldest decisions (delivered).
    fn delivered(&self, n: usize) {
        let mut q = self.queue();
        let n = n.min(q.len());
        q.drain(..n);
    }

    /// Delivers what waits, batch by batch, until the spool is empty or a report fails.
    pub(crate) async fn flush(&self, verifier: &ToolVerifier) -> Result<(), mandate_sdk::Error> {
        loop {
            let batch = self.peek();
            if batch.is_empty() {
                return Ok(());
            }
            let n = batch.len();
            verifier.report(batch).await?;
            self.delivered(n);
        }
    }

    /// Delivers forever: at least every `interval`, sooner when half a batch waits; after
    /// a failure, waits longer each time (up to 30 s) and keeps everything.
    pub(crate) async fn deliver(&self, verifier: ToolVerifier, interval: Duration) {
        let mut backoff = interval;
        loop {
            let _ = tokio::time::timeout(backoff, self.wake.notified()).await;
            match self.flush(&verifier).await {
                Ok(()) => backoff = interval,
                Err(e) => {
                    tracing::warn!(
                        waiting = self.len(),
                        error = %e,
                        "offline decisions not delivered to the coordinator yet; kept"
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(allowed: bool) -> Decision {
        Decision {
            allowed,
            reason: if allowed {
                String::new()
            } else {
                "REVOKED".into()
            },
            detail: String::new(),
            online: false,
            holder: Some("spiffe://x/h".into()),
            task: None,
        }
    }

    #[test]
    fn a_full_spool_refuses_and_delivery_drops_only_what_was_sent() {
        let spool = Spool::new(3, "g".into());
        let call = Call::new("read", "r/1");
        assert!(spool.push("u", &call, &decision(false), 1));
        assert!(spool.push("u", &call, &decision(true), 2));
        assert!(spool.push("u", &call, &decision(true), 3));
        assert!(!spool.push("u", &call, &decision(true), 4), "over capacity");
        let batch = spool.peek();
        assert_eq!(
            batch.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["g-0", "g-1", "g-2"]
        );
        assert_eq!(
            (batch[0].reason.as_str(), batch[1].reason.as_str()),
            ("REVOKED", "OK")
        );
        spool.delivered(2);
        assert_eq!(spool.len(), 1);
        assert!(spool.push("u", &call, &decision(true), 5));
        assert_eq!(
            spool
                .peek()
                .iter()
                .map(|d| d.id.as_str())
                .collect::<Vec<_>>(),
            ["g-2", "g-3"]
        );
    }

    #[test]
    fn denials_over_half_the_spool_are_counted_and_reported_once() {
        let spool = Spool::new(4, "g".into());
        let call = Call::new("read", "r/1");
        for _ in 0..5 {
            assert!(
                spool.push("u", &call, &decision(false), 1),
                "a denial is always given"
            );
        }
        assert_eq!(spool.len(), 2, "denials fill half");
        assert!(spool.push("u", &call, &decision(true), 2));
        assert!(spool.push("u", &call, &decision(true), 3));
        assert!(
            !spool.push("u", &call, &decision(true), 4),
            "allowed calls get the rest"
        );
        let batch = spool.peek();
        assert_eq!(batch[0].reason, "DENIALS_COUNTED");
        assert!(
            batch[0].place.starts_with("3 refused calls"),
            "{}",
            batch[0].place
        );
        assert_eq!(batch.len(), 5);
    }
}
