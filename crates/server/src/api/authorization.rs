//! `AuthorizationService`: online authorisation, the revocation feed, the trust bundle.

use crate::error::{ApiError, ErrorReason};
use crate::policies::check_signals;
use std::pin::Pin;
use std::sync::Arc;

use mandate_proto::v1 as pb;
use mandate_proto::v1::authorization_service_server::AuthorizationService;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::*;
use super::{Api, caller, ids};
use crate::coordinator::access::{self, Ask};
use crate::coordinator::{AuthorizeAsk, Coordinator, RevocationEvent, SignedBatch};
use crate::state::revocations;
use mandate_core::FeedKind;

type FeedStream = Pin<Box<dyn Stream<Item = Result<pb::WatchRevocationsResponse, Status>> + Send>>;

fn revoked_pb(links: &[(mandate_core::LinkId, u64)], epoch: u64) -> Vec<pb::RevokedLink> {
    links
        .iter()
        .map(|(l, e)| pb::RevokedLink {
            link_id: l.to_string(),
            expires_at_ms: *e,
            epoch,
        })
        .collect()
}

/// A feed message made and signed now, for one follower (snapshots, catch-up batches and
/// heartbeats; published changes are signed once, see [`published_msg`]).
fn signed_msg(
    coordinator: &Coordinator,
    kind: FeedKind,
    previous_epoch: u64,
    epoch: u64,
    links: &[(mandate_core::LinkId, u64, u64)],
) -> pb::WatchRevocationsResponse {
    let time_ms = coordinator.now();
    let pb_links = || {
        links
            .iter()
            .map(|(l, e, le)| pb::RevokedLink {
                link_id: l.to_string(),
                expires_at_ms: *e,
                epoch: *le,
            })
            .collect()
    };
    let event = match kind {
        FeedKind::Snapshot => {
            pb::watch_revocations_response::Event::Snapshot(pb::RevocationSnapshot {
                epoch,
                links: pb_links(),
            })
        }
        FeedKind::Batch => pb::watch_revocations_response::Event::Batch(pb::RevocationBatch {
            epoch,
            links: pb_links(),
        }),
        FeedKind::Heartbeat => {
            pb::watch_revocations_response::Event::Heartbeat(pb::Heartbeat { epoch, time_ms })
        }
        FeedKind::Trust => return trust_msg(coordinator, &coordinator.coordinator_keys()),
    };
    let statement = revocations::statement(
        kind,
        previous_epoch,
        epoch,
        time_ms,
        links.iter().map(|(l, e, le)| (l, *e, *le)),
    );
    let signature = coordinator.sign_feed(&statement).as_bytes().to_vec();
    pb::WatchRevocationsResponse {
        event: Some(event),
        time_ms,
        previous_epoch,
        signature,
    }
}

/// A trust update announcing `keys` (the keys trusted now), signed now.
fn trust_msg(
    coordinator: &Coordinator,
    keys: &mandate_store::CoordinatorKeys,
) -> pb::WatchRevocationsResponse {
    let time_ms = coordinator.now();
    let bundle = crate::coordinator::trust_bundle_of(keys, time_ms);
    let statement = mandate_core::trust_statement(&bundle, keys.version, time_ms);
    pb::WatchRevocationsResponse {
        event: Some(pb::watch_revocations_response::Event::Trust(
            pb::TrustUpdate {
                version: keys.version,
                keys: bundle
                    .keys()
                    .iter()
                    .map(|k| pb::TrustedKey {
                        public_key: k.key().as_bytes().to_vec(),
                        not_before_ms: k.not_before_ms(),
                        not_after_ms: k.not_after_ms(),
                        ..Default::default()
                    })
                    .collect(),
            },
        )),
        time_ms,
        previous_epoch: 0,
        signature: coordinator.sign_feed(&statement).as_bytes().to_vec(),
    }
}

fn snapshot_msg(coordinator: &Coordinator, s: &RevocationEvent) -> pb::WatchRevocationsResponse {
    let links: Vec<_> = s.links.iter().map(|(l, e)| (*l, *e, s.epoch)).collect();
    signed_msg(coordinator, FeedKind::Snapshot, 0, s.epoch, &links)
}

/// A published change, with the signature made once when it was published.
fn published_msg(b: &SignedBatch) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        event: Some(pb::watch_revocations_response::Event::Batch(
            pb::RevocationBatch {
                epoch: b.event.epoch,
                links: revoked_pb(&b.event.links, b.event.epoch),
            },
        )),
        time_ms: b.time_ms,
        previous_epoch: b.previous_epoch,
        signature: b.signature.as_bytes().to_vec(),
    }
}

/// The most decisions one `AuthorizeBatch` asks for.
const MAX_BATCH: usize = 256;

/// The answer to one `Authorize`.
fn authorize_response(o: crate::coordinator::AuthorizeOutcome) -> pb::AuthorizeResponse {
    let allowed = o.allowed();
    let (reason, detail) = match (&o.denial, &o.policy) {
        (Some(d), _) => (d.reason().code().to_owned(), d.detail().to_owned()),
        (None, _) if o.exhausted.is_some() => (
            crate::coordinator::USES_EXHAUSTED.to_owned(),
            "a link of the chain has no uses left".to_owned(),
        ),
        (None, Some(p)) if !p.allowed => (
            ErrorReason::PolicyDenied.as_str().to_owned(),
            p.reason.clone(),
        ),
        _ => (String::new(), String::new()),
    };
    pb::AuthorizeResponse {
        allowed,
        reason,
        detail,
        link_index: o
            .denial
            .as_ref()
            .and_then(|d| d.link_index())
            .or(o.exhausted)
            .and_then(|i| i32::try_from(i).ok())
            .unwrap_or(-1),
        task_id: o.task.map(|t| t.to_string()).unwrap_or_default(),
        holder_agent_id: o.holder.unwrap_or_default(),
        link_ids: ids(&o.links),
        expires_at_ms: o.expires_at_ms,
        revocation_epoch: o.epoch,
        policy_ids: o
            .policy
            .as_ref()
            .map(|p| p.policies.clone())
            .unwrap_or_default(),
        policy_hash: o
            .policy
            .as_ref()
            .map(|p| p.policy_hash.clone())
            .unwrap_or_default(),
    }
}

/// Counts an open feed stream until it ends.
struct Counted(Arc<crate::Metrics>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.follower(-1);
    }
}

#[tonic::async_trait]
impl AuthorizationService for Api {
    async fn authorize(
        &self,
        req: Request<pb::AuthorizeRequest>,
    ) -> Result<Response<pb::AuthorizeResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let call = call_from_pb(r.action, r.resource, r.args)?;
        let o = self
            .coordinator
            .authorize(
                &caller,
                &r.chain,
                &r.invocation,
                &call,
                &r.context,
                r.refuse_break_glass,
            )
            .await?;
        Ok(Response::new(authorize_response(o)))
    }

    async fn authorize_batch(
        &self,
        req: Request<pb::AuthorizeBatchRequest>,
    ) -> Result<Response<pb::AuthorizeBatchResponse>, Status> {
        let caller = caller(&req)?;
        let mut requests = req.into_inner().requests;
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return Err(ApiError::invalid(format!(
                "a batch holds 1 to {MAX_BATCH} requests, got {}",
                requests.len()
            ))
            .into_status());
        }
        // Every request's input first: a bad one refuses the batch before anything is
        // decided (and audited).
        let mut calls = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter_mut().enumerate() {
            let at = |e: ApiError| {
                ApiError {
                    message: format!("request {i}: {}", e.message),
                    ..e
                }
                .into_status()
            };
            check_signals(&r.context).map_err(at)?;
            let (action, resource, args) = (
                std::mem::take(&mut r.action),
                std::mem::take(&mut r.resource),
                std::mem::take(&mut r.args),
            );
            calls.push(call_from_pb(action, resource, args).map_err(at)?);
        }
        // Decided together: one batch of signatures, audit records sharing commits.
        let asks: Vec<AuthorizeAsk<'_>> = requests
            .iter()
            .zip(&calls)
            .map(|(r, call)| AuthorizeAsk {
                chain: &r.chain,
                invocation: &r.invocation,
                call,
                context: &r.context,
                refuse_break_glass: r.refuse_break_glass,
            })
            .collect();
        let responses = self
            .coordinator
            .authorize_batch(&caller, &asks)
            .await?
            .into_iter()
            .map(authorize_response)
            .collect();
        Ok(Response::new(pb::AuthorizeBatchResponse { responses }))
    }

    type WatchRevocationsStream = FeedStream;

    async fn watch_revocations(
        &self,
        req: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        let slot = self.streams.take(&caller(&req)?.agent.id)?;
        let after = req.get_ref().after_epoch;
        let trust_version = req.get_ref().trust_version;
        let coordinator = Arc::clone(&self.coordinator);
        // Subscribe before reading the state, so nothing falls between the two.
        let mut rx = coordinator.subscribe();
        // Trust updates only for followers that asked (and so understand them).
        let mut keys_rx = (trust_version > 0).then(|| coordinator.watch_keys());
        let snapshot = coordinator.revocation_snapshot();
        let first = if after == 0 || after > snapshot.epoch {
            snapshot_msg(&coordinator, &snapshot)
        } else {
            let links: Vec<_> = coordinator
                .revocations_after(after)?
                .into_iter()
                .filter(|r| r.epoch <= snapshot.epoch)
                .map(|r| (r.link, r.expires_at_ms, r.epoch))
                .collect();
            signed_msg(&coordinator, FeedKind::Batch, after, snapshot.epoch, &links)
        };
        let heartbeat = self.heartbeat;
        let mut stop = self.stop.clone();
        let metrics = Arc::clone(coordinator.metrics());
        let stream = async_stream(move |tx| async move {
            let _slot = slot;
            metrics.follower(1);
            let _counted = Counted(Arc::clone(&metrics));
            let mut epoch = snapshot.epoch;
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            if let Some(keys_rx) = &mut keys_rx {
                let keys = Arc::clone(&keys_rx.borrow_and_update());
                if keys.version > trust_version
                    && tx.send(Ok(trust_msg(&coordinator, &keys))).await.is_err()
                {
                    return;
                }
            }
            let mut tick = tokio::time::interval(heartbeat);
            tick.tick().await;
            loop {
                let msg = tokio::select! {
                    // Published changes before heartbeats: a heartbeat must never vouch for
                    // an epoch with a newer change already published.
                    biased;
                    ev = rx.recv() => match ev {
                        Ok(b) if b.event.epoch <= epoch => continue,
                        // A gap (cannot happen while epochs are published in order, but a
                        // follower must never be told a batch fits when it does not):
                        // start over from a fresh snapshot.
                        Ok(b) if b.previous_epoch != epoch => {
                            let s = coordinator.revocation_snapshot();
                            epoch = s.epoch;
                            snapshot_msg(&coordinator, &s)
                        }
                        Ok(b) => {
                            metrics.follower_lag(rx.len());
                            epoch = b.event.epoch;
                            published_msg(&b)
                        }
                        // Too slow to follow: start over from a fresh snapshot.
                        Err(RecvError::Lagged(_)) => {
                            metrics.resnapshot();
                            let s = coordinator.revocation_snapshot();
                            epoch = s.epoch;
                            snapshot_msg(&coordinator, &s)
                        }
                        Err(RecvError::Closed) => return,
                    },
                    changed = keys_changed(&mut keys_rx) => match changed {
                        Some(keys) => trust_msg(&coordinator, &keys),
                        None => return,
                    },
                    _ = tick.tick() => {
                        if coordinator.published_epoch() > epoch {
                            // A change is on its way through `rx`: it goes first.
                            continue;
                        }
                        signed_msg(&coordinator, FeedKind::Heartbeat, epoch, epoch, &[])
                    }
                    _ = tx.closed() => return,
                    _ = stop.changed() => return,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn get_trust_bundle(
        &self,
        req: Request<pb::GetTrustBundleRequest>,
    ) -> Result<Response<pb::GetTrustBundleResponse>, Status> {
        caller(&req)?;
        let keys = self.coordinator.coordinator_keys();
        let now = self.coordinator.now();
        Ok(Response::new(pb::GetTrustBundleResponse {
            keys: keys
                .trusted(now)
                .map(|k| pb::TrustedKey {
                    public_key: k.public_key.as_bytes().to_vec(),
                    not_before_ms: 0,
                    not_after_ms: k.trusted_until_ms,
                    instance: k.instance.clone(),
                    retired_ms: k.retired_ms.unwrap_or(0),
                })
                .collect(),
            version: keys.version,
        }))
    }

    async fn add_coordinator_key(
        &self,
        req: Request<pb::AddCoordinatorKeyRequest>,
    ) -> Result<Response<pb::AddCoordinatorKeyResponse>, Status> {
        let caller = caller(&req)?;
        access::check(&caller, Ask::ManageCoordinatorKeys)?;
        let r = req.into_inner();
        let key = coordinator_key(&r.public_key)?;
        let version = self
            .coordinator
            .add_coordinator_key(&caller, key, r.instance)
            .await?;
        Ok(Response::new(pb::AddCoordinatorKeyResponse { version }))
    }

    async fn retire_coordinator_key(
        &self,
        req: Request<pb::RetireCoordinatorKeyRequest>,
    ) -> Result<Response<pb::RetireCoordinatorKeyResponse>, Status> {
        let caller = caller(&req)?;
        access::check(&caller, Ask::ManageCoordinatorKeys)?;
        let r = req.into_inner();
        let key = coordinator_key(&r.public_key)?;
        let (version, trusted_until_ms) = self
            .coordinator
            .retire_coordinator_key(&caller, key, r.trust_for_ms)
            .await?;
        Ok(Response::new(pb::RetireCoordinatorKeyResponse {
            version,
            trusted_until_ms,
        }))
    }

    async fn report_decisions(
        &self,
        req: Request<pb::ReportDecisionsRequest>,
    ) -> Result<Response<pb::ReportDecisionsResponse>, Status> {
        let caller = caller(&req)?;
        let mut decisions = Vec::new();
        for d in req.into_inner().decisions {
            let task = if d.task_id.is_empty() {
                None
            } else {
                Some(parse_task_id(&d.task_id)?)
            };
            decisions.push(crate::coordinator::OfflineDecision {
                id: d.id,
                time_ms: d.time_ms,
                allowed: d.allowed,
                reason: d.reason,
                action: d.action,
                resource: d.resource,
                task,
                holder: d.holder_agent_id,
                place: d.place,
            });
        }
        let recorded = self
            .coordinator
            .report_decisions(&caller, decisions)
            .await?;
        Ok(Response::new(pb::ReportDecisionsResponse {
            recorded: u32::try_from(recorded).unwrap_or(u32::MAX),
        }))
    }
}

/// The next change of the coordinator keys; never, for a follower that did not ask for
/// them; `None` once the coordinator is gone.
async fn keys_changed(
    rx: &mut Option<tokio::sync::watch::Receiver<Arc<mandate_store::CoordinatorKeys>>>,
) -> Option<Arc<mandate_store::CoordinatorKeys>> {
    match rx {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(Arc::clone(&rx.borrow_and_update())),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

/// A coordinator key as a request carries it: 32 bytes.
fn coordinator_key(bytes: &[u8]) -> Result<mandate_core::PublicKey, crate::ApiError> {
    <[u8; 32]>::try_from(bytes)
        .ok()
        .and_then(|b| mandate_core::PublicKey::from_bytes(&b).ok())
        .ok_or_else(|| crate::ApiError::invalid("public_key must be a 32-byte Ed25519 public key"))
}

/// A stream fed by a task through a bounded channel; the task stops when the client goes.
fn async_stream<F, Fut>(f: F) -> FeedStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::WatchRevocationsResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
