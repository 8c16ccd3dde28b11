//! `PolicyService`: the policy set in force, and reloads.

use std::sync::Arc;

use mandate_proto::v1 as pb;
use mandate_proto::v1::policy_service_server::PolicyService;
use tonic::{Request, Response, Status};

use super::{Api, caller, ids};
use crate::coordinator::access::{self, Ask};
use crate::policies::LoadedPolicy;

fn policy_to_pb(p: &LoadedPolicy) -> pb::PolicyInfo {
    pb::PolicyInfo {
        policy_hash: p.set.hash().to_owned(),
        source: p.source.clone(),
        files: p.set.files().to_vec(),
        policies: p
            .set
            .policies()
            .into_iter()
            .map(|(id, permit, o)| pb::PolicySummary {
                policy_id: id,
                permit,
                obligations: o.to_string(),
            })
            .collect(),
        load_time_ms: p.loaded_ms,
    }
}

#[tonic::async_trait]
impl PolicyService for Api {
    async fn get_policy(
        &self,
        req: Request<pb::GetPolicyRequest>,
    ) -> Result<Response<pb::GetPolicyResponse>, Status> {
        access::check(&caller(&req)?, Ask::ReadPolicy)?;
        Ok(Response::new(pb::GetPolicyResponse {
            policy: Some(policy_to_pb(&self.coordinator.policies().current())),
        }))
    }

    async fn reload_policy(
        &self,
        req: Request<pb::ReloadPolicyRequest>,
    ) -> Result<Response<pb::ReloadPolicyResponse>, Status> {
        let caller = caller(&req)?;
        access::check(&caller, Ask::ReloadPolicy)?;
        let files = req.into_inner().files.into_iter().collect();
        // The reload runs to its end even if the caller goes away (a deadline, a dropped
        // connection): it installs the set before its drift pass, and stopping between the
        // two would leave the set in force without the revocations of what it denies.
        let coordinator = Arc::clone(&self.coordinator);
        let r = tokio::spawn(async move { coordinator.reload_policy(Some(&caller), files).await })
            .await
            .map_err(|e| {
                crate::ApiError::new(
                    tonic::Code::Internal,
                    crate::ErrorReason::Internal,
                    format!("the reload stopped: {e}"),
                )
            })??;
        Ok(Response::new(pb::ReloadPolicyResponse {
            policy: Some(policy_to_pb(&r.policy)),
            previous_policy_hash: r.previous_hash,
            reevaluated_links: u32::try_from(r.reevaluated).unwrap_or(u32::MAX),
            revoked_link_ids: ids(&r.revoked.links),
            revocation_epoch: r.revoked.epoch,
        }))
    }
}
