//! Group commit: changes are applied to the store at once and made durable by a shared
//! flush. Every caller waiting when a flush starts is released by it, so N concurrent
//! writes cost one fsync, not N.

use std::sync::Arc;

use mandate_store::Store;
use tokio::sync::{mpsc, oneshot};

use crate::error::{ApiError, ErrorReason};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Most times the flusher yields to let more callers join one flush.
const MAX_GATHER_ROUNDS: usize = 16;

/// What must happen once changes are durable, run by the flush loop itself (not by the
/// callers waiting, whose calls may be cancelled).
pub(crate) trait AfterFlush: Send + Sync {
    /// Called just before a flush: a mark of what the flush will cover.
    fn mark(&self) -> u64;
    /// Called after a successful flush, before its waiters are released.
    fn durable(&self, mark: u64);
}

/// Hands out durability barriers.
#[derive(Clone, Debug)]
pub(crate) struct Flusher {
    tx: mpsc::UnboundedSender<Waiter>,
}

impl Flusher {
    /// Starts the flush loop for `store`.
    pub(crate) fn start(
        store: Arc<dyn Store>,
        after: Arc<dyn AfterFlush>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Flusher {
        let (tx, mut rx) = mpsc::unbounded_channel::<Waiter>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut waiters = vec![first];
                // Gather every caller already waiting, yielding while more keep arriving:
                // each flush writes sled's log buffer and syncs it, so fewer flushes that
                // release more callers each save CPU under load.
                // Bounded, so a steady stream of writers cannot put the flush off.
                for _ in 0..MAX_GATHER_ROUNDS {
                    let before = waiters.len();
                    while let Ok(w) = rx.try_recv() {
                        waiters.push(w);
                    }
                    if waiters.len() == before {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
                let store = Arc::clone(&store);
                let started = std::time::Instant::now();
                let mark = after.mark();
                let result = tokio::task::spawn_blocking(move || store.flush())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                match &result {
                    Ok(()) => after.durable(mark),
                    Err(e) => tracing::error!(error = %e, "flush failed"),
                }
                metrics.flushed(result.is_ok(), waiters.len(), started.elapsed());
                tracing::debug!(
                    batch = waiters.len(),
                    micros = started.elapsed().as_micros() as u64,
                    "group flush"
                );
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        });
        Flusher { tx }
    }

    /// Asks for a flush without waiting for it.
    pub(crate) fn request(&self) {
        let (tx, _) = oneshot::channel();
        let _ = self.tx.send(tx);
    }

    /// Waits until everything committed before this call is durable.
    pub(crate) async fn durable(&self) -> Result<(), ApiError> {
        let (tx, rx) = oneshot::channel();
        let unavailable = |why: String| {
            ApiError::new(
                tonic::Code::Unavailable,
                ErrorReason::StoreUnavailable,
                format!("the change may not be durable: {why}"),
            )
        };
        self.tx
            .send(tx)
            .map_err(|_| unavailable("the flusher stopped".into()))?;
        rx.await
            .map_err(|_| unavailable("the flusher stopped".into()))?
            .map_err(unavailable)
    }
}
