//! `AgentService`: register, read, list and disable agents.

use mandate_proto::v1 as pb;
use mandate_proto::v1::agent_service_server::AgentService;
use tonic::{Request, Response, Status};

use super::convert::*;
use super::{Api, caller, ids, page_size};
use crate::coordinator::Registration;

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
        let mut agents = self.coordinator.list_agents(after, size + 1)?;
        let next = if agents.len() > size {
            agents.truncate(size);
            agents.last().map(|a| a.id.to_string()).unwrap_or_default()
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
