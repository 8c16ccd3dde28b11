//! The gRPC services: thin adapters from generated types to [`Coordinator`] calls.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mandate_core::TaskId;
use mandate_proto::v1 as pb;
use mandate_proto::v1::agent_service_server::AgentService;
use mandate_proto::v1::authorization_service_server::AuthorizationService;
use mandate_proto::v1::task_service_server::TaskService;
use mandate_store::{RevocationRecord, TaskState};
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::convert::*;
use crate::coordinator::access::{self, Ask};
use crate::coordinator::{
    Coordinator, Issued, Registration, RevocationEvent, Started, TaskRequest,
};
use crate::error::ApiError;
use crate::policy::Decision;

/// Implements every `mandate.v1` service over one coordinator.
#[derive(Clone, Debug)]
pub struct Api {
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) heartbeat: Duration,
    /// Becomes true at shutdown: open feeds end so graceful shutdown can finish.
    pub(crate) stop: tokio::sync::watch::Receiver<bool>,
}

pub(crate) fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions().get::<Caller>().cloned().ok_or_else(|| {
        ApiError::unauthenticated("UNSIGNED_REQUEST", "the request is not authenticated")
            .into_status()
    })
}

const MAX_PAGE: usize = 1000;

pub(crate) fn page_size(n: u32) -> usize {
    match n {
        0 => 100,
        n => (n as usize).min(MAX_PAGE),
    }
}

pub(crate) fn decision_to_pb(d: &Decision) -> pb::Decision {
    pb::Decision {
        allowed: d.allowed,
        reason: d.reason.clone(),
        policy_ids: d.policies.clone(),
        policy_hash: d.policy_hash.clone(),
    }
}

pub(crate) fn ids(links: &[mandate_core::LinkId]) -> Vec<String> {
    links.iter().map(ToString::to_string).collect()
}

fn chain_out(issued: &Issued) -> (Vec<u8>, String) {
    (issued.chain.encode(), issued.chain.to_text())
}

#[tonic::async_trait]
impl AgentService for Api {
    async fn register_agent(
        &self,
        req: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let agent = self
            .coordinator
            .register_agent(
                &caller,
                Registration {
                    agent_id: r.agent_id,
                    public_key: r.public_key,
                    role: r.role,
                    owner: r.owner,
                    labels: r.labels,
                    parent: r.parent_agent_id,
                },
            )
            .await?;
        Ok(Response::new(pb::RegisterAgentResponse {
            agent: Some(agent_to_pb(&agent)),
        }))
    }

    async fn get_agent(
        &self,
        req: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        caller(&req)?;
        let agent = self.coordinator.agent(&req.get_ref().agent_id)?;
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent_to_pb(&agent)),
        }))
    }

    async fn list_agents(
        &self,
        req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        caller(&req)?;
        let r = req.into_inner();
        let size = page_size(r.page_size);
        let after = (!r.page_token.is_empty()).then_some(r.page_token.as_str());
        let mut agents = self
            .coordinator
            .store()
            .agents(after, size + 1)
            .map_err(ApiError::from)?;
        let next = if agents.len() > size {
            agents.truncate(size);
            agents.last().map(|a| a.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.iter().map(agent_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn disable_agent(
        &self,
        req: Request<pb::DisableAgentRequest>,
    ) -> Result<Response<pb::DisableAgentResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let (agent, revoked) = self
            .coordinator
            .disable_agent(&caller, &r.agent_id, &r.reason)
            .await?;
        Ok(Response::new(pb::DisableAgentResponse {
            agent: Some(agent_to_pb(&agent)),
            revoked_link_ids: ids(&revoked.links),
            revocation_epoch: revoked.epoch,
        }))
    }
}

#[tonic::async_trait]
impl TaskService for Api {
    async fn start_task(
        &self,
        req: Request<pb::StartTaskRequest>,
    ) -> Result<Response<pb::StartTaskResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let intent = r.intent.unwrap_or_default();
        let capabilities = r
            .capabilities
            .into_iter()
            .map(capability_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let started = self
            .coordinator
            .start_task(
                &caller,
                TaskRequest {
                    intent: intent.text,
                    intent_fields: intent.fields,
                    capabilities,
                    ttl_ms: r.ttl_ms,
                    max_depth: r.max_depth,
                    require_online: r.require_online,
                    signals: r.signals,
                },
            )
            .await?;
        let now = self.coordinator.now();
        Ok(Response::new(match started {
            Started::Granted(issued) => {
                let (chain, chain_text) = chain_out(&issued);
                pb::StartTaskResponse {
                    task: Some(task_to_pb(&issued.task, now)),
                    chain,
                    chain_text,
                    decision: Some(decision_to_pb(&issued.decision)),
                    approval_request_hash: String::new(),
                }
            }
            Started::Pending {
                task,
                approval,
                decision,
            } => pb::StartTaskResponse {
                task: Some(task_to_pb(&task, now)),
                chain: Vec::new(),
                chain_text: String::new(),
                decision: Some(decision_to_pb(&decision)),
                approval_request_hash: approval.request_hash,
            },
        }))
    }

    async fn get_task(
        &self,
        req: Request<pb::GetTaskRequest>,
    ) -> Result<Response<pb::GetTaskResponse>, Status> {
        let caller = caller(&req)?;
        let task = self
            .coordinator
            .task(&parse_task_id(&req.get_ref().task_id)?)?;
        // Intents can be sensitive: admins, auditors, the requester and holders in the tree.
        let holds_a_link = || self.coordinator.holds_link_in(&task.id, &caller.agent.id);
        access::check(
            &caller,
            Ask::ReadTask {
                requester: &task.requester,
                holds_a_link: &holds_a_link,
            },
        )?;
        Ok(Response::new(pb::GetTaskResponse {
            task: Some(task_to_pb(&task, self.coordinator.now())),
        }))
    }

    async fn list_tasks(
        &self,
        req: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        let caller = caller(&req)?;
        let mut r = req.into_inner();
        // Others' tasks are listed only for admins and auditors: the rest see their own.
        if r.requester_agent_id.is_empty() && !caller.role().reads_everything() {
            r.requester_agent_id = caller.agent.id.clone();
        }
        if !r.requester_agent_id.is_empty() {
            access::check(
                &caller,
                Ask::ListTasks {
                    requester: &r.requester_agent_id,
                },
            )?;
        }
        let size = page_size(r.page_size);
        let state = task_state_from_pb(r.state)?;
        let mut after: Option<TaskId> = (!r.page_token.is_empty())
            .then(|| parse_task_id(&r.page_token))
            .transpose()?;
        let now = self.coordinator.now();
        let mut out = Vec::new();
        let mut next = String::new();
        // Filters apply after the scan; keep reading pages until this one is full.
        'scan: loop {
            let batch = self
                .coordinator
                .store()
                .tasks(after.as_ref(), size.max(64))
                .map_err(ApiError::from)?;
            if batch.is_empty() {
                break;
            }
            for t in &batch {
                after = Some(t.id);
                let shown = task_to_pb(t, now);
                let matches = (r.requester_agent_id.is_empty()
                    || t.requester == r.requester_agent_id)
                    && state.is_none_or(|s| task_state_to_pb(s) as i32 == shown.state);
                if matches {
                    if out.len() == size {
                        next = out
                            .last()
                            .map(|t: &pb::Task| t.task_id.clone())
                            .unwrap_or_default();
                        break 'scan;
                    }
                    out.push(shown);
                }
            }
        }
        Ok(Response::new(pb::ListTasksResponse {
            tasks: out,
            next_page_token: next,
        }))
    }

    async fn complete_task(
        &self,
        req: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = parse_task_id(&r.task_id)?;
        let (task, revoked) = self
            .coordinator
            .end_task(&caller, &id, TaskState::Completed, &r.summary)
            .await?;
        Ok(Response::new(pb::CompleteTaskResponse {
            task: Some(task_to_pb(&task, self.coordinator.now())),
            revoked_link_ids: ids(&revoked.links),
            revocation_epoch: revoked.epoch,
        }))
    }

    async fn fail_task(
        &self,
        req: Request<pb::FailTaskRequest>,
    ) -> Result<Response<pb::FailTaskResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = parse_task_id(&r.task_id)?;
        let (task, revoked) = self
            .coordinator
            .end_task(&caller, &id, TaskState::Failed, &r.reason)
            .await?;
        Ok(Response::new(pb::FailTaskResponse {
            task: Some(task_to_pb(&task, self.coordinator.now())),
            revoked_link_ids: ids(&revoked.links),
            revocation_epoch: revoked.epoch,
        }))
    }

    async fn delegate(
        &self,
        req: Request<pb::DelegateRequest>,
    ) -> Result<Response<pb::DelegateResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.get_ref();
        let issued = self
            .coordinator
            .delegate(&caller, &r.chain, &r.signals)
            .await?;
        let (chain, chain_text) = chain_out(&issued);
        Ok(Response::new(pb::DelegateResponse {
            chain,
            chain_text,
            link_id: issued.chain.leaf().id().to_string(),
            decision: Some(decision_to_pb(&issued.decision)),
        }))
    }

    async fn renew_grant(
        &self,
        req: Request<pb::RenewGrantRequest>,
    ) -> Result<Response<pb::RenewGrantResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let issued = self
            .coordinator
            .renew(&caller, &parse_task_id(&r.task_id)?, r.ttl_ms, &r.signals)
            .await?;
        let (chain, chain_text) = chain_out(&issued);
        Ok(Response::new(pb::RenewGrantResponse {
            chain,
            chain_text,
            link_id: issued.chain.root().id().to_string(),
            decision: Some(decision_to_pb(&issued.decision)),
        }))
    }

    async fn revoke_link(
        &self,
        req: Request<pb::RevokeLinkRequest>,
    ) -> Result<Response<pb::RevokeLinkResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let revoked = self
            .coordinator
            .revoke(&caller, &parse_link_id(&r.link_id)?, &r.reason)
            .await?;
        Ok(Response::new(pb::RevokeLinkResponse {
            revoked_link_ids: ids(&revoked.links),
            revocation_epoch: revoked.epoch,
        }))
    }

    async fn break_glass(
        &self,
        req: Request<pb::BreakGlassRequest>,
    ) -> Result<Response<pb::BreakGlassResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let capabilities = r
            .capabilities
            .into_iter()
            .map(capability_from_pb)
            .collect::<Result<Vec<_>, _>>()?;
        let issued = self
            .coordinator
            .break_glass(
                &caller,
                capabilities,
                r.ttl_ms,
                &r.reason,
                &r.ticket,
                &r.signals,
            )
            .await?;
        let (chain, chain_text) = chain_out(&issued);
        Ok(Response::new(pb::BreakGlassResponse {
            task: Some(task_to_pb(&issued.task, self.coordinator.now())),
            chain,
            chain_text,
            decision: Some(decision_to_pb(&issued.decision)),
        }))
    }

    async fn get_delegation_tree(
        &self,
        req: Request<pb::GetDelegationTreeRequest>,
    ) -> Result<Response<pb::GetDelegationTreeResponse>, Status> {
        let caller = caller(&req)?;
        let id = parse_task_id(&req.get_ref().task_id)?;
        let (task, links) = self.coordinator.tree(&caller, &id)?;
        let now = self.coordinator.now();
        let limits = mandate_core::Limits::default();
        let nodes = links
            .into_iter()
            .filter_map(|(rec, revocation)| {
                let link = mandate_core::Link::decode(&rec.encoded, &limits).ok()?;
                let b = link.body();
                let state = match (&revocation, b.expires_at_ms <= now) {
                    (Some(_), _) => pb::LinkState::Revoked,
                    (None, true) => pb::LinkState::Expired,
                    (None, false) => pb::LinkState::Live,
                };
                Some(pb::LinkNode {
                    link_id: rec.id.to_string(),
                    parent_link_id: rec.parent.map(|p| p.to_string()).unwrap_or_default(),
                    holder_agent_id: rec.holder.clone(),
                    holder_key: b.holder.as_bytes().to_vec(),
                    issuer_agent_id: rec.issuer.clone(),
                    capabilities: b.capabilities.iter().map(capability_to_pb).collect(),
                    not_before_ms: b.not_before_ms,
                    expires_at_ms: b.expires_at_ms,
                    depth: b.depth(),
                    max_depth: b.max_depth,
                    kind: match b.kind {
                        mandate_core::LinkKind::Grant => mandate_proto::token::LinkKind::Grant,
                        mandate_core::LinkKind::Delegation => {
                            mandate_proto::token::LinkKind::Delegation
                        }
                        mandate_core::LinkKind::BreakGlass => {
                            mandate_proto::token::LinkKind::BreakGlass
                        }
                    }
                    .into(),
                    state: state.into(),
                    sealed: link.seal().is_some(),
                    revoke_reason: revocation
                        .as_ref()
                        .map(|r: &RevocationRecord| r.reason.clone())
                        .unwrap_or_default(),
                    revoke_time_ms: revocation.as_ref().map(|r| r.time_ms).unwrap_or_default(),
                    digest: rec.digest.to_string(),
                })
            })
            .collect();
        Ok(Response::new(pb::GetDelegationTreeResponse {
            task: Some(task_to_pb(&task, now)),
            links: nodes,
        }))
    }
}

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

fn snapshot_msg(s: &RevocationEvent) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        event: Some(pb::watch_revocations_response::Event::Snapshot(
            pb::RevocationSnapshot {
                epoch: s.epoch,
                links: revoked_pb(&s.links, s.epoch),
            },
        )),
    }
}

fn batch_msg(epoch: u64, links: Vec<pb::RevokedLink>) -> pb::WatchRevocationsResponse {
    pb::WatchRevocationsResponse {
        event: Some(pb::watch_revocations_response::Event::Batch(
            pb::RevocationBatch { epoch, links },
        )),
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
        let allowed = o.allowed();
        let (reason, detail) = match (&o.denial, &o.policy) {
            (Some(d), _) => (d.reason().code().to_owned(), d.detail().to_owned()),
            (None, Some(p)) if !p.allowed => ("POLICY_DENIED".to_owned(), p.reason.clone()),
            _ => (String::new(), String::new()),
        };
        Ok(Response::new(pb::AuthorizeResponse {
            allowed,
            reason,
            detail,
            link_index: o
                .denial
                .as_ref()
                .and_then(|d| d.link_index())
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
        }))
    }

    type WatchRevocationsStream = FeedStream;

    async fn watch_revocations(
        &self,
        req: Request<pb::WatchRevocationsRequest>,
    ) -> Result<Response<FeedStream>, Status> {
        caller(&req)?;
        let after = req.get_ref().after_epoch;
        let coordinator = Arc::clone(&self.coordinator);
        // Subscribe before reading the state, so nothing falls between the two.
        let mut rx = coordinator.subscribe();
        let snapshot = coordinator.revocation_snapshot();
        let first = if after == 0 || after > snapshot.epoch {
            snapshot_msg(&snapshot)
        } else {
            let links = coordinator
                .revocations_after(after)?
                .into_iter()
                .filter(|(_, _, e)| *e <= snapshot.epoch)
                .map(|(l, exp, e)| pb::RevokedLink {
                    link_id: l.to_string(),
                    expires_at_ms: exp,
                    epoch: e,
                })
                .collect();
            batch_msg(snapshot.epoch, links)
        };
        let heartbeat = self.heartbeat;
        let mut stop = self.stop.clone();
        let stream = async_stream(move |tx| async move {
            let mut epoch = snapshot.epoch;
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(heartbeat);
            tick.tick().await;
            loop {
                let msg = tokio::select! {
                    ev = rx.recv() => match ev {
                        Ok(ev) if ev.epoch <= epoch => continue,
                        Ok(ev) => {
                            epoch = ev.epoch;
                            batch_msg(ev.epoch, revoked_pb(&ev.links, ev.epoch))
                        }
                        // Too slow to follow: start over from a fresh snapshot.
                        Err(RecvError::Lagged(_)) => {
                            let s = coordinator.revocation_snapshot();
                            epoch = s.epoch;
                            snapshot_msg(&s)
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = tick.tick() => pb::WatchRevocationsResponse {
                        event: Some(pb::watch_revocations_response::Event::Heartbeat(pb::Heartbeat {
                            epoch,
                            time_ms: coordinator.now(),
                        })),
                    },
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
        let keys = self
            .coordinator
            .trust_bundle()
            .keys()
            .iter()
            .map(|k| pb::TrustedKey {
                public_key: k.key().as_bytes().to_vec(),
                not_before_ms: k.not_before_ms(),
                not_after_ms: k.not_after_ms(),
            })
            .collect();
        Ok(Response::new(pb::GetTrustBundleResponse { keys }))
    }
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
