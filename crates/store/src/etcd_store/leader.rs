//! Leadership of one service among several coordinators sharing an etcd (#19): the key
//! `mleader` under the prefix, created under a lease and kept alive while its holder runs.
//! The holder is the one coordinator that writes; its store is opened with the key's
//! create revision as a fence ([`EtcdConfig::fence`]), so once the lease ends (the process
//! paused, partitioned or killed) etcd refuses every write it still attempts, and the
//! next holder starts from what etcd holds.
//!
//! The holder may also act on its own state only while it knows the lease is alive:
//! [`EtcdLeadership::holds`] is true until one lease time after the last keep-alive it
//! sent was answered (measured on this machine's monotonic clock from when it was sent, so
//! it ends no later than etcd's expiry). A process resumed after a pause sees at once that
//! it no longer holds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mandate_etcd::etcdserverpb::{
    Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest, compare, request_op, response_op,
};

use super::client::{Etcd, EtcdConfig, LEADER};
use crate::{Result, StoreError};

/// This coordinator's hold on the leader key. Dropping it stops the keep-alives and
/// releases the key (revokes the lease) so another coordinator takes over at once.
pub struct EtcdLeadership {
    shared: Arc<Shared>,
    revision: i64,
    keeper: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

struct Shared {
    etcd: Etcd,
    lease: i64,
    ttl: Duration,
    /// Since `origin`, in ms: until when this coordinator knows the lease is alive.
    valid_until_ms: AtomicU64,
    origin: Instant,
}

impl std::fmt::Debug for EtcdLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdLeadership")
            .field("lease", &self.shared.lease)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl EtcdLeadership {
    /// Campaigns for the leader key with `holder` as its value (how others reach this
    /// coordinator) and a lease of `ttl` (whole seconds, at least 2: etcd's minimum),
    /// until it holds it or `waiting` says to give up. `waiting` is told who holds the key
    /// after every attempt that failed (and again every 50 ms while it waits a third of
    /// `ttl` for the next); `Ok(None)` when it gave up.
    pub fn campaign(
        config: EtcdConfig,
        holder: &str,
        ttl: Duration,
        mut waiting: impl FnMut(Option<&str>) -> bool,
    ) -> Result<Option<EtcdLeadership>> {
        let ttl = Duration::from_secs(ttl.as_secs().max(2));
        let etcd = Etcd::connect(EtcdConfig {
            fence: None,
            ..config
        })?;
        let key = etcd.full(LEADER);
        loop {
            let sent = Instant::now();
            let grant = etcd.run_lease("lease grant", move |mut lease| async move {
                lease
                    .lease_grant(LeaseGrantRequest {
                        ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
                        id: 0,
                    })
                    .await
                    .map(tonic::Response::into_inner)
            })?;
            if !grant.error.is_empty() {
                return Err(StoreError::Backend(format!(
                    "etcd refused a lease: {}",
                    grant.error
                )));
            }
            let reply = etcd.txn(TxnRequest {
                compare: vec![Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Create as i32,
                    key: key.clone(),
                    target_union: Some(compare::TargetUnion::CreateRevision(0)),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone(),
                        value: holder.as_bytes().to_vec(),
                        lease: grant.id,
                        ..PutRequest::default()
                    })),
                }],
                failure: vec![RequestOp {
                    request: Some(request_op::Request::RequestRange(RangeRequest {
                        key: key.clone(),
                        ..RangeRequest::default()
                    })),
                }],
            })?;
            if reply.succeeded {
                let revision = reply.header.map_or(0, |h| h.revision);
                let origin = Instant::now();
                let shared = Arc::new(Shared {
                    etcd,
                    lease: grant.id,
                    ttl,
                    valid_until_ms: AtomicU64::new(0),
                    origin,
                });
                shared.extend(sent, ttl);
                let keeper = keep_alive(Arc::clone(&shared))?;
                tracing::info!(
                    lease = grant.id,
                    revision,
                    "this coordinator leads the service"
                );
                return Ok(Some(EtcdLeadership {
                    shared,
                    revision,
                    keeper: Some(keeper),
                }));
            }
            // Someone holds it: let the unused lease go, and look again later.
            let held_by = reply.responses.iter().find_map(|r| match &r.response {
                Some(response_op::Response::ResponseRange(range)) => range
                    .kvs
                    .first()
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
                _ => None,
            });
            let id = grant.id;
            let _ = etcd.run_lease("lease revoke", move |mut lease| async move {
                lease
                    .lease_revoke(LeaseRevokeRequest { id })
                    .await
                    .map(|_| ())
            });
            let wait = ttl / 3;
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if waiting(held_by.as_deref()) {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(50).min(wait));
            }
        }
    }

    /// Who holds the leader key now (its holder value), if anyone.
    pub fn holder(config: EtcdConfig) -> Result<Option<String>> {
        let etcd = Etcd::connect(EtcdConfig {
            fence: None,
            ..config
        })?;
        Ok(etcd
            .get(LEADER)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The fence: the leader key's create revision, for [`EtcdConfig::fence`].
    pub fn fence(&self) -> i64 {
        self.revision
    }

    /// Whether this coordinator still knows its lease to be alive.
    pub fn holds(&self) -> bool {
        self.shared.holds()
    }

    /// Gives the leadership up now: the lease is revoked (another coordinator can take
    /// over at once) and [`EtcdLeadership::holds`] is false from here on.
    pub fn resign(&self) {
        self.shared.end();
        let id = self.shared.lease;
        let _ = self
            .shared
            .etcd
            .run_lease("lease revoke", move |mut lease| async move {
                lease
                    .lease_revoke(LeaseRevokeRequest { id })
                    .await
                    .map(|_| ())
            });
    }

    /// Stops keeping the lease alive without releasing it, as a paused process would:
    /// the key stays until etcd expires the lease. For tests.
    pub fn stop_keeping_alive(&mut self) {
        if let Some((stop, thread)) = self.keeper.take() {
            drop(stop);
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn holds(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        now < self.valid_until_ms.load(Ordering::Acquire)
    }

    /// The lease is alive for `ttl` from `sent`, the time the request that said so left.
    fn extend(&self, sent: Instant, ttl: Duration) {
        let until = sent.saturating_duration_since(self.origin) + ttl;
        let until = u64::try_from(until.as_millis()).unwrap_or(u64::MAX);
        self.valid_until_ms.fetch_max(until, Ordering::AcqRel);
    }

    fn end(&self) {
        self.valid_until_ms.store(0, Ordering::Release);
    }

    /// One keep-alive; false when etcd says the lease is gone.
    fn keep_alive_once(&self) -> Result<bool> {
        let id = self.lease;
        let sent = Instant::now();
        let ttl = self
            .etcd
            .run_lease("lease keep-alive", move |mut lease| async move {
                let mut answers = lease
                    .lease_keep_alive(tokio_stream::iter([LeaseKeepAliveRequest { id }]))
                    .await?
                    .into_inner();
                Ok(answers.message().await?.map_or(0, |a| a.ttl))
            })?;
        if ttl <= 0 {
            return Ok(false);
        }
        self.extend(sent, Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
        Ok(true)
    }
}

/// Keeps the lease alive every third of its time until stopped or lost.
fn keep_alive(
    shared: Arc<Shared>,
) -> Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let every = shared.ttl / 3;
    let thread = std::thread::Builder::new()
        .name("mandate-etcd-lease".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                match shared.keep_alive_once() {
                    Ok(true) => {}
                    Ok(false) => {
                        shared.end();
                        tracing::error!("the leader lease ended: this coordinator no longer leads");
                        return;
                    }
                    // Retried at the next tick; `holds` runs out meanwhile if etcd stays away.
                    Err(e) => tracing::warn!(error = %e, "keeping the leader lease alive failed"),
                }
            }
        })
        .map_err(|e| StoreError::Backend(format!("cannot start the lease keeper: {e}")))?;
    Ok((stop, thread))
}

impl Drop for EtcdLeadership {
    fn drop(&mut self) {
        self.stop_keeping_alive();
        if self.shared.holds() {
            // Released now rather than at expiry, so another coordinator takes over at once.
            self.resign();
        }
    }
}
