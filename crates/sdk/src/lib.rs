//! Mandate client SDK.
//!
//! - [`Signer`] signs every request the way the coordinator requires (docs/PROTOCOL.md);
//!   [`Client`] wraps the generated gRPC clients with it (planners and workers).
//! - [`ToolVerifier`] verifies calls on the tool side, offline with the revocation feed or
//!   online; [`MandateLayer`] puts it in front of a tonic service in one line.

#![forbid(unsafe_code)]

mod endpoints;
mod layer;
mod tool;

use endpoints::{Endpoints, Signed, endpoint_and_tls};
pub use endpoints::{SILENT_COORDINATOR, channel, endpoint, servers};
pub use layer::{
    Authorized, HEADER_CHAIN, HEADER_INVOCATION, MandateLayer, MandateService, attach,
};
pub use mandate_tls::ClientTls;
pub use tool::{Decision, ToolConfig, ToolVerifier, WhenStale, call_args_to_pb};

use std::sync::Arc;

use mandate_core::{AgentId, Chain, Clock, RequestAuth, SigningKey, SystemClock};
use mandate_proto::v1 as pb;
use mandate_proto::v1::access_service_client::AccessServiceClient;
use mandate_proto::v1::agent_service_client::AgentServiceClient;
use mandate_proto::v1::approval_service_client::ApprovalServiceClient;
use mandate_proto::v1::audit_service_client::AuditServiceClient;
use mandate_proto::v1::authorization_service_client::AuthorizationServiceClient;
use mandate_proto::v1::policy_service_client::PolicyServiceClient;
use mandate_proto::v1::task_service_client::TaskServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the call; `reason` is the stable `ErrorInfo` reason when present.
    #[error("{code:?} {reason}: {message}")]
    Status {
        /// gRPC code.
        code: tonic::Code,
        /// Stable reason code (empty if the server sent none).
        reason: String,
        /// Message.
        message: String,
    },
    /// Could not connect.
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// A local token or key problem.
    #[error(transparent)]
    Core(#[from] mandate_core::Error),
    /// A token the server returned does not decode.
    #[error("the server returned an unreadable token: {0}")]
    Token(#[from] mandate_core::Denial),
    /// The TLS files could not be used, or do not fit the address.
    #[error("TLS: {0}")]
    Tls(String),
}

impl Error {
    /// The stable reason code: the server's `ErrorInfo` reason, or the token reason of a
    /// delegation refused locally (empty otherwise).
    pub fn reason(&self) -> &str {
        match self {
            Error::Status { reason, .. } => reason,
            Error::Core(mandate_core::Error::Rejected(d)) | Error::Token(d) => d.reason().code(),
            _ => "",
        }
    }

    /// The gRPC code of a server error.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Error {
        use tonic_types::StatusExt as _;
        Error::Status {
            code: s.code(),
            reason: s
                .get_details_error_info()
                .map(|i| i.reason)
                .unwrap_or_default(),
            message: s.message().to_owned(),
        }
    }
}

/// Signs requests as one agent.
#[derive(Clone)]
pub struct Signer {
    agent: AgentId,
    key: Arc<SigningKey>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Signs as `agent` with `key`, timestamped by the system clock.
    pub fn new(agent: AgentId, key: SigningKey) -> Signer {
        Signer::with_clock(agent, key, Arc::new(SystemClock))
    }

    /// Signs as `agent` with the private key in a PKCS#8 PEM file (which must not be
    /// readable by group or others), timestamped by the system clock.
    pub fn from_key_file(agent: &str, path: &std::path::Path) -> Result<Signer, Error> {
        let key = mandate_core::keyfile::load_signing_key(path)?;
        Ok(Signer::new(AgentId::new(agent)?, key))
    }

    /// Signs with timestamps from `clock`.
    pub fn with_clock(agent: AgentId, key: SigningKey, clock: Arc<dyn Clock>) -> Signer {
        Signer {
            agent,
            key: Arc::new(key),
            clock,
        }
    }

    /// The agent id.
    pub fn agent(&self) -> &AgentId {
        &self.agent
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// A request for `method` (e.g. `/mandate.v1.TaskService/StartTask`) carrying `message`,
    /// signed over the message's encoding (which is what tonic sends).
    pub fn request<M: prost::Message>(
        &self,
        method: &str,
        message: M,
    ) -> Result<tonic::Request<M>, Error> {
        let signed = self.signed(method, message)?;
        Ok(tonic::Request::from_parts(
            signed.metadata,
            tonic::Extensions::default(),
            signed.message,
        ))
    }

    fn signed<M: prost::Message>(&self, method: &str, message: M) -> Result<Signed<M>, Error> {
        let bytes = message.encode_to_vec();
        let auth = RequestAuth::sign(
            &self.key,
            self.agent.as_str(),
            method,
            &bytes,
            self.clock.now_ms(),
        )?;
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (name, value) in auth.header_values() {
            let value: MetadataValue<_> = value.parse().map_err(|_| Error::Status {
                code: tonic::Code::InvalidArgument,
                reason: "INVALID_ARGUMENT".into(),
                message: format!("cannot put `{name}` in a header"),
            })?;
            metadata.insert(name, value);
        }
        Ok(Signed { message, metadata })
    }
}

/// A signed client for every Mandate service.
#[derive(Clone, Debug)]
pub struct Client {
    signer: Signer,
    /// Whether the channel is TLS (the coordinator authenticated by its certificate).
    tls: bool,
    endpoints: Arc<Endpoints>,
}

macro_rules! call {
    ($self:ident, $client:ident, $method:ident, $path:literal, $msg:expr) => {{
        let signed = $self.signer.signed(concat!("/mandate.v1.", $path), $msg)?;
        $self
            .endpoints
            .call(|channel| {
                let request = signed.request();
                async move { $client(channel).$method(request).await }
            })
            .await
    }};
}

// A cascade can revoke hundreds of thousands of links in one change: its response and its
// feed batch are larger than tonic's 4 MiB default.
const MAX_MESSAGE: usize = 64 << 20;

fn agents(channel: Channel) -> AgentServiceClient<Channel> {
    AgentServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}
fn tasks(channel: Channel) -> TaskServiceClient<Channel> {
    TaskServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}
fn authz(channel: Channel) -> AuthorizationServiceClient<Channel> {
    AuthorizationServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}
fn approvals(channel: Channel) -> ApprovalServiceClient<Channel> {
    ApprovalServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}
fn policy(channel: Channel) -> PolicyServiceClient<Channel> {
    PolicyServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}
fn audit(channel: Channel) -> AuditServiceClient<Channel> {
    AuditServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}
fn access(channel: Channel) -> AccessServiceClient<Channel> {
    AccessServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}

impl Client {
    /// Connects to `endpoint` (e.g. `http://127.0.0.1:7468`) in plaintext.
    pub async fn connect(endpoint: String, signer: Signer) -> Result<Client, Error> {
        Client::connect_tls(&endpoint, signer, &ClientTls::default()).await
    }

    /// Connects to `server` (see [`channel`] for how TLS follows from the address and the
    /// files). `server` may name several coordinators separated by commas: the client
    /// connects to the first that answers, and a call that cannot reach the one it uses
    /// goes, as the same signed request, to the next (the others connect when first used).
    pub async fn connect_tls(
        server: &str,
        signer: Signer,
        tls: &ClientTls,
    ) -> Result<Client, Error> {
        let mut endpoints = Vec::new();
        // TLS only if every coordinator is reached over TLS.
        let mut https = true;
        for address in servers(server)? {
            let (endpoint, is_https) = endpoint_and_tls(address, tls)?;
            https &= is_https;
            endpoints.push(endpoint);
        }
        let mut channels = Vec::with_capacity(endpoints.len());
        let mut current = None;
        let mut failure = None;
        for endpoint in endpoints {
            if current.is_none() {
                match endpoint.connect().await {
                    Ok(channel) => {
                        current = Some(channels.len());
                        channels.push(channel);
                        continue;
                    }
                    Err(e) => failure = Some(e),
                }
            }
            channels.push(endpoint.connect_lazy());
        }
        let Some(current) = current else {
            return Err(
                failure.map_or_else(|| Error::Tls("no coordinator address".into()), Error::from)
            );
        };
        Ok(Client {
            signer,
            tls: https,
            endpoints: Arc::new(Endpoints {
                channels,
                current: current.into(),
            }),
        })
    }

    /// A client over an existing channel.
    pub fn with_channel(channel: Channel, signer: Signer) -> Client {
        Client {
            signer,
            tls: false,
            endpoints: Arc::new(Endpoints {
                channels: vec![channel],
                current: 0.into(),
            }),
        }
    }

    /// The same connection, signing as someone else.
    pub fn as_agent(&self, signer: Signer) -> Client {
        Client {
            signer,
            ..self.clone()
        }
    }

    /// Whether the client reached the coordinator over TLS (so what it says, the trust
    /// bundle included, comes from the server its certificate names).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// `AgentService/RegisterAgent`.
    pub async fn register_agent(
        &mut self,
        r: pb::RegisterAgentRequest,
    ) -> Result<pb::RegisterAgentResponse, Error> {
        call!(
            self,
            agents,
            register_agent,
            "AgentService/RegisterAgent",
            r
        )
    }
    /// `AgentService/GetAgent`.
    pub async fn get_agent(
        &mut self,
        r: pb::GetAgentRequest,
    ) -> Result<pb::GetAgentResponse, Error> {
        call!(self, agents, get_agent, "AgentService/GetAgent", r)
    }
    /// `AgentService/ListAgents`.
    pub async fn list_agents(
        &mut self,
        r: pb::ListAgentsRequest,
    ) -> Result<pb::ListAgentsResponse, Error> {
        call!(self, agents, list_agents, "AgentService/ListAgents", r)
    }
    /// `AgentService/DisableAgent`.
    pub async fn disable_agent(
        &mut self,
        r: pb::DisableAgentRequest,
    ) -> Result<pb::DisableAgentResponse, Error> {
        call!(self, agents, disable_agent, "AgentService/DisableAgent", r)
    }
    /// `TaskService/StartTask`.
    pub async fn start_task(
        &mut self,
        r: pb::StartTaskRequest,
    ) -> Result<pb::StartTaskResponse, Error> {
        call!(self, tasks, start_task, "TaskService/StartTask", r)
    }
    /// `TaskService/GetTask`.
    pub async fn get_task(&mut self, r: pb::GetTaskRequest) -> Result<pb::GetTaskResponse, Error> {
        call!(self, tasks, get_task, "TaskService/GetTask", r)
    }
    /// `TaskService/ListTasks`.
    pub async fn list_tasks(
        &mut self,
        r: pb::ListTasksRequest,
    ) -> Result<pb::ListTasksResponse, Error> {
        call!(self, tasks, list_tasks, "TaskService/ListTasks", r)
    }
    /// `TaskService/CompleteTask`.
    pub async fn complete_task(
        &mut self,
        r: pb::CompleteTaskRequest,
    ) -> Result<pb::CompleteTaskResponse, Error> {
        call!(self, tasks, complete_task, "TaskService/CompleteTask", r)
    }
    /// `TaskService/FailTask`.
    pub async fn fail_task(
        &mut self,
        r: pb::FailTaskRequest,
    ) -> Result<pb::FailTaskResponse, Error> {
        call!(self, tasks, fail_task, "TaskService/FailTask", r)
    }
    /// `TaskService/Delegate` with a chain whose leaf the caller already signed.
    pub async fn delegate_raw(
        &mut self,
        r: pb::DelegateRequest,
    ) -> Result<pb::DelegateResponse, Error> {
        call!(self, tasks, delegate, "TaskService/Delegate", r)
    }
    /// Signs a delegation from `chain`'s leaf (held by this client's agent) and registers
    /// it; returns the sealed chain for the new holder.
    pub async fn delegate(
        &mut self,
        chain: &Chain,
        spec: mandate_core::LinkSpec,
    ) -> Result<Chain, Error> {
        let child = chain.delegate(self.signer.key(), spec)?;
        let resp = self
            .delegate_raw(pb::DelegateRequest {
                chain: child.encode(),
                ..Default::default()
            })
            .await?;
        Ok(Chain::decode(
            &resp.chain,
            &mandate_core::Limits::default(),
        )?)
    }
    /// `TaskService/RenewGrant`.
    pub async fn renew_grant(
        &mut self,
        r: pb::RenewGrantRequest,
    ) -> Result<pb::RenewGrantResponse, Error> {
        call!(self, tasks, renew_grant, "TaskService/RenewGrant", r)
    }
    /// `TaskService/RevokeLink`.
    pub async fn revoke_link(
        &mut self,
        r: pb::RevokeLinkRequest,
    ) -> Result<pb::RevokeLinkResponse, Error> {
        call!(self, tasks, revoke_link, "TaskService/RevokeLink", r)
    }
    /// `TaskService/GetDelegationTree`.
    pub async fn get_delegation_tree(
        &mut self,
        r: pb::GetDelegationTreeRequest,
    ) -> Result<pb::GetDelegationTreeResponse, Error> {
        call!(
            self,
            tasks,
            get_delegation_tree,
            "TaskService/GetDelegationTree",
            r
        )
    }
    /// `AuthorizationService/Authorize` (the caller is the tool; its id is the audience).
    pub async fn authorize(
        &mut self,
        r: pb::AuthorizeRequest,
    ) -> Result<pb::AuthorizeResponse, Error> {
        call!(self, authz, authorize, "AuthorizationService/Authorize", r)
    }
    /// `AuthorizationService/AuthorizeBatch`: up to 256 decisions under one request
    /// signature, answered in order (each decided and audited as if asked alone).
    pub async fn authorize_batch(
        &mut self,
        r: pb::AuthorizeBatchRequest,
    ) -> Result<pb::AuthorizeBatchResponse, Error> {
        call!(
            self,
            authz,
            authorize_batch,
            "AuthorizationService/AuthorizeBatch",
            r
        )
    }
    /// `AuthorizationService/WatchRevocations`.
    pub async fn watch_revocations(
        &mut self,
        r: pb::WatchRevocationsRequest,
    ) -> Result<tonic::Streaming<pb::WatchRevocationsResponse>, Error> {
        call!(
            self,
            authz,
            watch_revocations,
            "AuthorizationService/WatchRevocations",
            r
        )
    }
    /// `AuthorizationService/GetTrustBundle`.
    pub async fn get_trust_bundle(
        &mut self,
        r: pb::GetTrustBundleRequest,
    ) -> Result<pb::GetTrustBundleResponse, Error> {
        call!(
            self,
            authz,
            get_trust_bundle,
            "AuthorizationService/GetTrustBundle",
            r
        )
    }
    /// `AuthorizationService/AddCoordinatorKey` (admins).
    pub async fn add_coordinator_key(
        &mut self,
        r: pb::AddCoordinatorKeyRequest,
    ) -> Result<pb::AddCoordinatorKeyResponse, Error> {
        call!(
            self,
            authz,
            add_coordinator_key,
            "AuthorizationService/AddCoordinatorKey",
            r
        )
    }
    /// `AuthorizationService/RetireCoordinatorKey` (admins).
    pub async fn retire_coordinator_key(
        &mut self,
        r: pb::RetireCoordinatorKeyRequest,
    ) -> Result<pb::RetireCoordinatorKeyResponse, Error> {
        call!(
            self,
            authz,
            retire_coordinator_key,
            "AuthorizationService/RetireCoordinatorKey",
            r
        )
    }
    /// `AuthorizationService/ReportDecisions` (tools: decisions made offline, for the
    /// audit log).
    pub async fn report_decisions(
        &mut self,
        r: pb::ReportDecisionsRequest,
    ) -> Result<pb::ReportDecisionsResponse, Error> {
        call!(
            self,
            authz,
            report_decisions,
            "AuthorizationService/ReportDecisions",
            r
        )
    }
    /// `TaskService/BreakGlass`.
    pub async fn break_glass(
        &mut self,
        r: pb::BreakGlassRequest,
    ) -> Result<pb::BreakGlassResponse, Error> {
        call!(self, tasks, break_glass, "TaskService/BreakGlass", r)
    }
    /// `ApprovalService/ListApprovals`.
    pub async fn list_approvals(
        &mut self,
        r: pb::ListApprovalsRequest,
    ) -> Result<pb::ListApprovalsResponse, Error> {
        call!(
            self,
            approvals,
            list_approvals,
            "ApprovalService/ListApprovals",
            r
        )
    }
    /// `ApprovalService/GetApproval`.
    pub async fn get_approval(
        &mut self,
        r: pb::GetApprovalRequest,
    ) -> Result<pb::GetApprovalResponse, Error> {
        call!(
            self,
            approvals,
            get_approval,
            "ApprovalService/GetApproval",
            r
        )
    }
    /// `ApprovalService/Approve`.
    pub async fn approve(&mut self, r: pb::ApproveRequest) -> Result<pb::ApproveResponse, Error> {
        call!(self, approvals, approve, "ApprovalService/Approve", r)
    }
    /// `ApprovalService/Deny`.
    pub async fn deny(&mut self, r: pb::DenyRequest) -> Result<pb::DenyResponse, Error> {
        call!(self, approvals, deny, "ApprovalService/Deny", r)
    }
    /// `ApprovalService/WaitApproval`.
    pub async fn wait_approval(
        &mut self,
        r: pb::WaitApprovalRequest,
    ) -> Result<tonic::Streaming<pb::WaitApprovalResponse>, Error> {
        call!(
            self,
            approvals,
            wait_approval,
            "ApprovalService/WaitApproval",
            r
        )
    }
    /// `AccessService/WhoCan`: every live link that permits a call.
    pub async fn who_can(&mut self, r: pb::WhoCanRequest) -> Result<pb::WhoCanResponse, Error> {
        call!(self, access, who_can, "AccessService/WhoCan", r)
    }
    /// `AccessService/ListLiveAuthority`.
    pub async fn list_live_authority(
        &mut self,
        r: pb::ListLiveAuthorityRequest,
    ) -> Result<pb::ListLiveAuthorityResponse, Error> {
        call!(
            self,
            access,
            list_live_authority,
            "AccessService/ListLiveAuthority",
            r
        )
    }
    /// `AccessService/ExposureReport`.
    pub async fn exposure_report(
        &mut self,
        r: pb::ExposureReportRequest,
    ) -> Result<pb::ExposureReportResponse, Error> {
        call!(
            self,
            access,
            exposure_report,
            "AccessService/ExposureReport",
            r
        )
    }
    /// `PolicyService/GetPolicy`.
    pub async fn get_policy(
        &mut self,
        r: pb::GetPolicyRequest,
    ) -> Result<pb::GetPolicyResponse, Error> {
        call!(self, policy, get_policy, "PolicyService/GetPolicy", r)
    }
    /// `PolicyService/ReloadPolicy`.
    pub async fn reload_policy(
        &mut self,
        r: pb::ReloadPolicyRequest,
    ) -> Result<pb::ReloadPolicyResponse, Error> {
        call!(self, policy, reload_policy, "PolicyService/ReloadPolicy", r)
    }
    /// `AuditService/QueryAuditLog`.
    pub async fn query_audit_log(
        &mut self,
        r: pb::QueryAuditLogRequest,
    ) -> Result<pb::QueryAuditLogResponse, Error> {
        call!(
            self,
            audit,
            query_audit_log,
            "AuditService/QueryAuditLog",
            r
        )
    }
    /// `AuditService/WatchAuditLog`.
    pub async fn watch_audit_log(
        &mut self,
        r: pb::WatchAuditLogRequest,
    ) -> Result<tonic::Streaming<pb::WatchAuditLogResponse>, Error> {
        call!(
            self,
            audit,
            watch_audit_log,
            "AuditService/WatchAuditLog",
            r
        )
    }
    /// `AuditService/VerifyAuditLog`.
    pub async fn verify_audit_log(
        &mut self,
        r: pb::VerifyAuditLogRequest,
    ) -> Result<pb::VerifyAuditLogResponse, Error> {
        call!(
            self,
            audit,
            verify_audit_log,
            "AuditService/VerifyAuditLog",
            r
        )
    }
    /// `AuditService/CheckpointAuditLog`.
    pub async fn checkpoint_audit_log(
        &mut self,
        r: pb::CheckpointAuditLogRequest,
    ) -> Result<pb::CheckpointAuditLogResponse, Error> {
        call!(
            self,
            audit,
            checkpoint_audit_log,
            "AuditService/CheckpointAuditLog",
            r
        )
    }
    /// `AuditService/PruneAuditLog`.
    pub async fn prune_audit_log(
        &mut self,
        r: pb::PruneAuditLogRequest,
    ) -> Result<pb::PruneAuditLogResponse, Error> {
        call!(
            self,
            audit,
            prune_audit_log,
            "AuditService/PruneAuditLog",
            r
        )
    }
    /// `AuditService/ExportAuditLog`.
    pub async fn export_audit_log(
        &mut self,
        r: pb::ExportAuditLogRequest,
    ) -> Result<tonic::Streaming<pb::ExportAuditLogResponse>, Error> {
        call!(
            self,
            audit,
            export_audit_log,
            "AuditService/ExportAuditLog",
            r
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_requests_carry_headers_that_verify_over_the_encoded_message() {
        let key = SigningKey::from_seed(&[5; 32]);
        let signer = Signer::new("spiffe://t/a".parse().unwrap(), key.clone());
        let msg = pb::GetAgentRequest {
            agent_id: "spiffe://t/b".into(),
        };
        let req = signer
            .request("/mandate.v1.AgentService/GetAgent", msg.clone())
            .unwrap();
        let header = |n: &str| req.metadata().get(n).and_then(|v| v.to_str().ok());
        let auth = RequestAuth::from_header_values(
            header(mandate_core::HEADER_AGENT),
            header(mandate_core::HEADER_TIMESTAMP),
            header(mandate_core::HEADER_NONCE),
            header(mandate_core::HEADER_SIGNATURE),
        )
        .unwrap();
        let bytes = prost::Message::encode_to_vec(&msg);
        assert!(auth.verify(
            &key.public_key(),
            "/mandate.v1.AgentService/GetAgent",
            &bytes
        ));
        assert!(!auth.verify(
            &key.public_key(),
            "/mandate.v1.AgentService/ListAgents",
            &bytes
        ));
        // Each request gets a fresh nonce.
        let again = signer
            .request("/mandate.v1.AgentService/GetAgent", msg)
            .unwrap();
        assert_ne!(
            again.metadata().get(mandate_core::HEADER_NONCE),
            req.metadata().get(mandate_core::HEADER_NONCE)
        );
    }

    #[test]
    fn error_reasons_come_from_error_info_and_local_rejections() {
        use tonic_types::StatusExt as _;
        let status = tonic::Status::with_error_details(
            tonic::Code::PermissionDenied,
            "no",
            tonic_types::ErrorDetails::with_error_info(
                "SCOPE_WIDENED",
                "mandate.dev",
                std::collections::HashMap::<String, String>::new(),
            ),
        );
        let e = Error::from(status);
        assert_eq!(
            (e.code(), e.reason()),
            (Some(tonic::Code::PermissionDenied), "SCOPE_WIDENED")
        );
        let local = Error::Core(mandate_core::Error::Rejected(mandate_core::Denial::new(
            mandate_core::Reason::DepthExceeded,
            "x",
        )));
        assert_eq!(local.reason(), "DEPTH_EXCEEDED");
        assert_eq!(Error::from(tonic::Status::internal("x")).reason(), "");
    }
}
