//! `ApprovalService`: pending grant requests, approving, denying, waiting.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use mandate_core::TaskId;
use mandate_proto::v1 as pb;
use mandate_proto::v1::approval_service_server::ApprovalService;
use mandate_store::{ApprovalRecord, ApprovalState, TaskRecord};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::convert::{parse_task_id, task_to_pb};
use super::{Api, caller, decision_to_pb, page_size};
use crate::coordinator::access::{self, Ask};
use crate::coordinator::approvals::decode_request;
use crate::error::ApiError;

fn state_to_pb(s: ApprovalState) -> pb::ApprovalState {
    match s {
        ApprovalState::Pending => pb::ApprovalState::Pending,
        ApprovalState::Approved => pb::ApprovalState::Approved,
        ApprovalState::Denied => pb::ApprovalState::Denied,
        ApprovalState::Expired => pb::ApprovalState::Expired,
    }
}

fn state_from_pb(s: i32) -> Result<Option<ApprovalState>, ApiError> {
    match pb::ApprovalState::try_from(s)
        .map_err(|_| ApiError::invalid(format!("unknown approval state {s}")))?
    {
        pb::ApprovalState::Unspecified => Ok(None),
        pb::ApprovalState::Pending => Ok(Some(ApprovalState::Pending)),
        pb::ApprovalState::Approved => Ok(Some(ApprovalState::Approved)),
        pb::ApprovalState::Denied => Ok(Some(ApprovalState::Denied)),
        pb::ApprovalState::Expired => Ok(Some(ApprovalState::Expired)),
    }
}

fn approval_to_pb(a: &ApprovalRecord) -> Result<pb::Approval, ApiError> {
    let r = decode_request(&a.request)?;
    Ok(pb::Approval {
        task_id: a.task.to_string(),
        requester_agent_id: a.requester.clone(),
        request_hash: a.request_hash.clone(),
        intent: Some(pb::Intent {
            text: r.intent,
            fields: r.intent_fields,
        }),
        capabilities: r
            .capabilities
            .iter()
            .map(mandate_core::Capability::to_pb)
            .collect(),
        ttl_ms: r.ttl_ms,
        max_depth: r.max_depth,
        state: state_to_pb(a.state).into(),
        create_time_ms: a.created_ms,
        expire_time_ms: a.expires_ms,
        decided_by: a.decided_by.clone(),
        decide_time_ms: a.decided_ms,
        comment: a.comment.clone(),
        policy_ids: a.policies.clone(),
        policy_hash: a.policy_hash.clone(),
        require_online: r.require_online,
        signals: r.signals,
    })
}

type WaitStream = Pin<Box<dyn Stream<Item = Result<pb::WaitApprovalResponse, Status>> + Send>>;

fn wait_msg(
    a: &ApprovalRecord,
    t: &TaskRecord,
    chain: Option<&mandate_core::Chain>,
    now: u64,
) -> Result<pb::WaitApprovalResponse, ApiError> {
    Ok(pb::WaitApprovalResponse {
        approval: Some(approval_to_pb(a)?),
        task: Some(task_to_pb(t, now)),
        chain: chain.map(mandate_core::Chain::encode).unwrap_or_default(),
        chain_text: chain.map(mandate_core::Chain::to_text).unwrap_or_default(),
    })
}

#[tonic::async_trait]
impl ApprovalService for Api {
    async fn list_approvals(
        &self,
        req: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let after: Option<TaskId> = (!r.page_token.is_empty())
            .then(|| parse_task_id(&r.page_token))
            .transpose()?;
        let (list, next) = self.coordinator.approvals(
            &caller,
            state_from_pb(r.state)?,
            after,
            page_size(r.page_size),
        )?;
        Ok(Response::new(pb::ListApprovalsResponse {
            approvals: list.iter().map(approval_to_pb).collect::<Result<_, _>>()?,
            next_page_token: next.map(|t| t.to_string()).unwrap_or_default(),
        }))
    }

    async fn get_approval(
        &self,
        req: Request<pb::GetApprovalRequest>,
    ) -> Result<Response<pb::GetApprovalResponse>, Status> {
        let caller = caller(&req)?;
        let id = parse_task_id(&req.get_ref().task_id)?;
        let (a, t, chain) = self.coordinator.approval(&caller, &id)?;
        let m = wait_msg(&a, &t, chain.as_ref(), self.coordinator.now())?;
        Ok(Response::new(pb::GetApprovalResponse {
            approval: m.approval,
            task: m.task,
            chain: m.chain,
            chain_text: m.chain_text,
        }))
    }

    async fn approve(
        &self,
        req: Request<pb::ApproveRequest>,
    ) -> Result<Response<pb::ApproveResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = parse_task_id(&r.task_id)?;
        let (a, issued) = self
            .coordinator
            .approve(&caller, &id, &r.request_hash, &r.comment)
            .await?;
        Ok(Response::new(pb::ApproveResponse {
            approval: Some(approval_to_pb(&a)?),
            task: Some(task_to_pb(&issued.task, self.coordinator.now())),
            decision: Some(decision_to_pb(&issued.decision)),
        }))
    }

    async fn deny(
        &self,
        req: Request<pb::DenyRequest>,
    ) -> Result<Response<pb::DenyResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let id = parse_task_id(&r.task_id)?;
        let (a, t) = self
            .coordinator
            .deny(&caller, &id, &r.request_hash, &r.comment)
            .await?;
        Ok(Response::new(pb::DenyResponse {
            approval: Some(approval_to_pb(&a)?),
            task: Some(task_to_pb(&t, self.coordinator.now())),
        }))
    }

    type WaitApprovalStream = WaitStream;

    async fn wait_approval(
        &self,
        req: Request<pb::WaitApprovalRequest>,
    ) -> Result<Response<WaitStream>, Status> {
        let caller = caller(&req)?;
        let id = parse_task_id(&req.get_ref().task_id)?;
        // Checked before the stream starts, so a refusal is a plain error.
        let (a, _, _) = self.coordinator.approval(&caller, &id)?;
        access::check(
            &caller,
            Ask::WaitApproval {
                requester: &a.requester,
            },
        )?;
        let slot = self.streams.take(&caller.agent.id)?;
        let coordinator = Arc::clone(&self.coordinator);
        let mut stop = self.stop.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            let _slot = slot;
            // Subscribe first, then read: a change in between wakes us.
            let mut changed = coordinator.watch_approvals();
            let mut last: Option<pb::WaitApprovalResponse> = None;
            loop {
                let now = coordinator.now();
                let msg = coordinator
                    .approval(&caller, &id)
                    .and_then(|(a, t, chain)| {
                        let done = a.state != ApprovalState::Pending;
                        let expires = a.expires_ms;
                        wait_msg(&a, &t, chain.as_ref(), now).map(|m| (m, done, expires))
                    });
                let (msg, done, expires) = match msg {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(e.into_status())).await;
                        return;
                    }
                };
                if last.as_ref() != Some(&msg) {
                    if tx.send(Ok(msg.clone())).await.is_err() {
                        return;
                    }
                    last = Some(msg);
                }
                if done {
                    return;
                }
                // Wake on a change, at expiry, or at shutdown.
                let until_expiry = Duration::from_millis(expires.saturating_sub(now).max(1));
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    () = tokio::time::sleep(until_expiry.min(Duration::from_secs(5))) => {}
                    _ = stop.changed() => return,
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
