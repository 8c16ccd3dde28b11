//! The audit writer: tells followers about new records, and commits the records of
//! decisions that change no state (`Authorize`) in batches.

use std::sync::Arc;

use mandate_store::{AuditEvent, Change, Store};
use tokio::sync::{mpsc, oneshot, watch};

use crate::error::{ApiError, ErrorReason};

type Pending = (AuditEvent, oneshot::Sender<Result<(), String>>);

/// Most records in one batch.
const MAX_BATCH: usize = 1024;

/// Announces the audit head to followers and batches records that need no flush of their
/// own.
///
/// A batch is one store commit for many records instead of one per call. Each caller still
/// waits until its record is committed, so no decision is answered without its audit
/// record. Followers wake on the head (the newest sequence number) and read from the
/// store, so they never miss or reorder records.
#[derive(Debug)]
pub(crate) struct AuditWriter {
    head: watch::Sender<u64>,
    batch: mpsc::Sender<Pending>,
}

impl AuditWriter {
    /// Starts the batch writer for `store`, whose newest record is `head`.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        head: u64,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> AuditWriter {
        let (head, _) = watch::channel(head);
        let (tx, mut rx) = mpsc::channel::<Pending>(8192);
        let announce = head.clone();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                // Gather what else is queued, yielding while more keeps arriving: every
                // sled batch costs a log buffer write of its own (and a wake-up of sled's
                // I/O threads), so fewer, larger batches save CPU under load.
                loop {
                    let before = batch.len();
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                    if batch.len() == before || batch.len() >= MAX_BATCH {
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
                let actions: Vec<String> = change.audit.iter().map(|e| e.action.clone()).collect();
                let started = std::time::Instant::now();
                let result = match tokio::task::spawn_blocking(move || store.commit(change)).await {
                    Ok(Ok(c)) => {
                        metrics.committed(actions.iter().map(String::as_str), started.elapsed());
                        if let Some(&last) = c.audit_seqs.last() {
                            advance(&announce, last);
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
        AuditWriter { head, batch: tx }
    }

    /// Commits `e` with the next batch; returns once it is committed.
    pub(crate) async fn record(&self, e: AuditEvent) -> Result<(), ApiError> {
        let unavailable = |why: String| {
            ApiError::new(
                tonic::Code::Unavailable,
                ErrorReason::StoreUnavailable,
                format!("the decision could not be audited, so it is not given: {why}"),
            )
        };
        let (done, wait) = oneshot::channel();
        self.batch
            .send((e, done))
            .await
            .map_err(|_| unavailable("the audit log is not accepting records".into()))?;
        wait.await
            .map_err(|_| unavailable("the audit writer stopped".into()))?
            .map_err(unavailable)
    }

    /// Tells followers that records up to `seq` are committed.
    pub(crate) fn committed(&self, seq: u64) {
        advance(&self.head, seq);
    }

    /// Wakes when records are written; the value is the newest sequence number.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

fn advance(head: &watch::Sender<u64>, seq: u64) {
    head.send_if_modified(|h| {
        let newer = seq > *h;
        *h = (*h).max(seq);
        newer
    });
}
