//! Offline decisions on their way to the coordinator's audit log: a bounded spool, emptied
//! in batches by one task. A decision leaves the spool only once the coordinator has made
//! it durable; while the coordinator is away the spool holds what it can, and when it is
//! full the gateway refuses further calls (`AUDIT_BACKLOG`) rather than make decisions
//! nobody will see. Online decisions need none of this: the coordinator audits them.
//!
//! With a spool file, every queued decision is appended to it before the decision is
//! given (one write, no fsync: it survives the gateway's crash or `kill -9`, not the
//! machine's), reloaded at start, and the file is emptied or compacted as the coordinator
//! takes its records. A second file (`<spool>.delivered`) counts the records at the head
//! of the spool file already delivered. A record delivered just before a crash may be
//! delivered again; its `decision_id` shows the duplicate.

use std::collections::VecDeque;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mandate_core::{Call, Clock as _};
use mandate_proto::v1 as pb;
use mandate_sdk::{Decision, ToolVerifier};
use prost::Message as _;
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
    file: Option<Mutex<SpoolFile>>,
}

/// The spool's file: length-delimited `OfflineDecision` records.
#[derive(Debug)]
struct SpoolFile {
    file: std::fs::File,
    /// Where the count of delivered records at the head of `file` is kept.
    delivered: std::path::PathBuf,
    /// Records delivered since the file was last rewritten.
    stale: usize,
}

impl SpoolFile {
    fn append(&mut self, d: &pb::OfflineDecision) {
        if let Err(e) = self.file.write_all(&d.encode_length_delimited_to_vec()) {
            tracing::error!(error = %e, "the decision spool file cannot be written");
        }
    }

    /// Records that the first `stale` records of the file are delivered.
    fn mark(&mut self) {
        if let Err(e) = std::fs::write(&self.delivered, self.stale.to_string()) {
            tracing::error!(error = %e, "the decision spool's delivered count cannot be written");
        }
    }

    /// Rewrites the file to hold exactly `queue`. The count is zeroed first: a crash in
    /// between delivers some records twice, never drops one.
    fn rewrite(&mut self, queue: &VecDeque<pb::OfflineDecision>) {
        self.stale = 0;
        self.mark();
        let mut all = Vec::new();
        for d in queue {
            all.extend(d.encode_length_delimited_to_vec());
        }
        let result = self
            .file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(&all));
        if let Err(e) = result {
            tracing::error!(error = %e, "the decision spool file cannot be rewritten");
        }
    }
}

impl Spool {
    /// An empty spool in memory for up to `capacity` decisions; ids start with `prefix`.
    pub(crate) fn new(capacity: usize, prefix: String) -> Spool {
        Spool {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            wake: Notify::new(),
            prefix,
            next: AtomicU64::new(0),
            shed: AtomicU64::new(0),
            file: None,
        }
    }

    /// A spool kept in `path` as well, holding the decisions a previous run left there (a
    /// torn last record, from a crash mid-write, is dropped).
    pub(crate) fn open(capacity: usize, prefix: String, path: &Path) -> std::io::Result<Spool> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let delivered = path.with_extension("delivered");
        let skip: usize = std::fs::read_to_string(&delivered)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        let mut queue = VecDeque::new();
        let mut rest = bytes.as_slice();
        let mut seen = 0;
        while !rest.is_empty() {
            match pb::OfflineDecision::decode_length_delimited(&mut rest) {
                Ok(_) if seen < skip => seen += 1,
                Ok(d) => queue.push_back(d),
                Err(_) => break,
            }
        }
        if !queue.is_empty() {
            tracing::info!(
                waiting = queue.len(),
                "offline decisions from a previous run, to deliver"
            );
        }
        let mut spool_file = SpoolFile {
            file,
            delivered,
            stale: 0,
        };
        spool_file.rewrite(&queue);
        let mut spool = Spool::new(capacity, prefix);
        spool.queue = Mutex::new(queue);
        spool.file = Some(Mutex::new(spool_file));
        Ok(spool)
    }

    fn file(&self) -> Option<std::sync::MutexGuard<'_, SpoolFile>> {
        self.file
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
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
        let record = pb::OfflineDecision {
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
        };
        if let Some(mut f) = self.file() {
            f.append(&record);
        }
        q.push_back(record);
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
            let counted = pb::OfflineDecision {
                id: format!(
                    "{}-shed-{}",
                    self.prefix,
                    self.next.fetch_add(1, Ordering::Relaxed)
                ),
                time_ms: mandate_core::SystemClock.now_ms(),
                allowed: false,
                reason: "DENIALS_COUNTED".into(),
                place: format!(
                    "{shed} refused calls over the spool's half for denials, counted, not recorded one by one"
                ),
                ..Default::default()
            };
            // At the back, in file order: the count is delivered after what waits before it.
            if let Some(mut f) = self.file() {
                f.append(&counted);
            }
            q.push_back(counted);
        }
        q.iter().take(BATCH).cloned().collect()
    }

    /// Drops the `n` oldest decisions (delivered).
    fn delivered(&self, n: usize) {
        let mut q = self.queue();
        let n = n.min(q.len());
        q.drain(..n);
        if let Some(mut f) = self.file() {
            f.stale += n;
            // Empty: start the file afresh; otherwise compact once it is mostly delivered.
            if q.is_empty() || f.stale > q.len().max(BATCH) {
                f.rewrite(&q);
            } else {
                f.mark();
            }
        }
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
    fn a_spool_file_keeps_what_was_not_delivered_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let call = Call::new("read", "r/1");
        {
            let spool = Spool::open(10, "a".into(), &path).unwrap();
            for t in 0..3 {
                assert!(spool.push("u", &call, &decision(true), t));
            }
            spool.delivered(1);
            // Dropped without a flush: the process dies here.
        }
        // A torn record at the end (a write cut short) is dropped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(&[40, 1, 2])
            .unwrap();
        let spool = Spool::open(10, "b".into(), &path).unwrap();
        let ids: Vec<String> = spool.peek().into_iter().map(|d| d.id).collect();
        assert_eq!(ids, ["a-1", "a-2"]);
        assert!(spool.push("u", &call, &decision(true), 9));
        spool.delivered(3);
        drop(spool);
        let spool = Spool::open(10, "c".into(), &path).unwrap();
        assert_eq!(spool.len(), 0, "everything delivered: nothing comes back");
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
        let counted = batch.last().unwrap();
        assert_eq!(counted.reason, "DENIALS_COUNTED");
        assert!(
            counted.place.starts_with("3 refused calls"),
            "{}",
            counted.place
        );
        assert_eq!(batch.len(), 5);
    }
}
