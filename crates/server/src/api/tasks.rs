//! `TaskService`: tasks, grants, delegation, renewal, revocation and trees.

use mandate_core::TaskId;
use mandate_proto::v1 as pb;
use mandate_proto::v1::task_service_server::TaskService;
use mandate_store::{RevocationRecord, TaskState};
use tonic::{Request, Response, Status};

use super::convert::*;
use super::{Api, caller, chain_out, decision_to_pb, ids, page_size};
use crate::coordinator::access::{self, Ask};
use crate::coordinator::{Started, TaskRequest};

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
                    max_uses: r.max_uses,
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
            r.requester_agent_id = caller.agent.id.to_string();
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
            let batch = self.coordinator.tasks_after(after.as_ref(), size.max(64))?;
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
            .delegate(&caller, &r.chain, &r.signals, r.max_uses)
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
                    capabilities: b
                        .capabilities
                        .iter()
                        .map(mandate_core::Capability::to_pb)
                        .collect(),
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
