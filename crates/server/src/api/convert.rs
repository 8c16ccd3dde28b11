//! Conversions between the generated API types and domain types.

use mandate_core::{Call, Capability, Limits, LinkId, TaskId};
use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use mandate_store::{AgentRecord, AgentStatus, TaskRecord, TaskState};

use crate::error::ApiError;

/// A requested capability, read with the token's rules (mandate-core's conversion).
pub(crate) fn capability_from_pb(c: tpb::Capability) -> Result<Capability, ApiError> {
    Capability::from_pb(c, &Limits::default()).map_err(|d| ApiError::invalid(d.detail()))
}

/// The call a tool describes in `Authorize`, read with the rules of a proof's call.
pub(crate) fn call_from_pb(
    action: String,
    resource: String,
    args: Vec<tpb::Argument>,
) -> Result<Call, ApiError> {
    Call::from_pb(action, resource, args, &Limits::default())
        .map_err(|d| ApiError::invalid(d.detail()))
}

/// Parses a task id and names it on the request's span.
pub(crate) fn parse_task_id(s: &str) -> Result<TaskId, ApiError> {
    let id: TaskId = s
        .parse()
        .map_err(|_| ApiError::invalid(format!("`{s}` is not a task id (32 hex characters)")))?;
    tracing::Span::current().record("task", tracing::field::display(&id));
    Ok(id)
}

/// Parses a link id and names it on the request's span.
pub(crate) fn parse_link_id(s: &str) -> Result<LinkId, ApiError> {
    let id: LinkId = s
        .parse()
        .map_err(|_| ApiError::invalid(format!("`{s}` is not a link id (32 hex characters)")))?;
    tracing::Span::current().record("link", tracing::field::display(&id));
    Ok(id)
}

pub(crate) fn agent_to_pb(a: &AgentRecord) -> pb::Agent {
    pb::Agent {
        agent_id: a.id.to_string(),
        public_key: a.public_key.as_bytes().to_vec(),
        role: a.role.clone(),
        owner: a.owner.clone(),
        labels: a.labels.clone(),
        parent_agent_id: a.parent.as_deref().unwrap_or_default().to_owned(),
        status: match a.status {
            AgentStatus::Active => pb::AgentStatus::Active,
            AgentStatus::Disabled => pb::AgentStatus::Disabled,
        }
        .into(),
        create_time_ms: a.created_ms,
        disable_time_ms: a.disabled_ms,
        registered_by: a.registered_by.clone(),
    }
}

pub(crate) fn task_state_to_pb(s: TaskState) -> pb::TaskState {
    match s {
        TaskState::PendingApproval => pb::TaskState::PendingApproval,
        TaskState::Active => pb::TaskState::Active,
        TaskState::Completed => pb::TaskState::Completed,
        TaskState::Failed => pb::TaskState::Failed,
        TaskState::Revoked => pb::TaskState::Revoked,
        TaskState::Expired => pb::TaskState::Expired,
        TaskState::Denied => pb::TaskState::Denied,
    }
}

pub(crate) fn task_state_from_pb(s: i32) -> Result<Option<TaskState>, ApiError> {
    Ok(
        match pb::TaskState::try_from(s)
            .map_err(|_| ApiError::invalid(format!("unknown task state {s}")))?
        {
            pb::TaskState::Unspecified => None,
            pb::TaskState::PendingApproval => Some(TaskState::PendingApproval),
            pb::TaskState::Denied => Some(TaskState::Denied),
            pb::TaskState::Active => Some(TaskState::Active),
            pb::TaskState::Completed => Some(TaskState::Completed),
            pb::TaskState::Failed => Some(TaskState::Failed),
            pb::TaskState::Revoked => Some(TaskState::Revoked),
            pb::TaskState::Expired => Some(TaskState::Expired),
        },
    )
}

/// A task as the API shows it; an active task past its deadline shows as expired.
pub(crate) fn task_to_pb(t: &TaskRecord, now_ms: u64) -> pb::Task {
    let state = if t.state == TaskState::Active && now_ms >= t.deadline_ms {
        TaskState::Expired
    } else {
        t.state
    };
    pb::Task {
        task_id: t.id.to_string(),
        requester_agent_id: t.requester.clone(),
        intent: Some(pb::Intent {
            text: t.intent.clone(),
            fields: t.intent_fields.clone(),
        }),
        state: task_state_to_pb(state).into(),
        create_time_ms: t.created_ms,
        deadline_ms: t.deadline_ms,
        end_time_ms: t.ended_ms,
        end_reason: t.end_reason.clone(),
        root_link_id: t.root_link.map(|l| l.to_string()).unwrap_or_default(),
    }
}
