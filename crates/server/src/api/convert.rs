//! Conversions between the generated API types and domain types.

use mandate_core::{
    Actions, Call, Capability, Condition, Constraint, LinkId, ResourcePattern, TaskId, Value,
};
use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use mandate_store::{AgentRecord, AgentStatus, TaskRecord, TaskState};

use crate::error::ApiError;

fn value_from_pb(v: Option<tpb::Value>) -> Result<Value, ApiError> {
    match v.and_then(|v| v.kind) {
        Some(tpb::value::Kind::Text(s)) => Ok(Value::Text(s)),
        Some(tpb::value::Kind::Int(i)) => Ok(Value::Int(i)),
        None => Err(ApiError::invalid("a value has no kind")),
    }
}

fn value_to_pb(v: &Value) -> tpb::Value {
    tpb::Value {
        kind: Some(match v {
            Value::Text(s) => tpb::value::Kind::Text(s.clone()),
            Value::Int(i) => tpb::value::Kind::Int(*i),
        }),
    }
}

/// A requested capability, validated.
pub(crate) fn capability_from_pb(c: tpb::Capability) -> Result<Capability, ApiError> {
    let resource =
        ResourcePattern::parse(&c.resource).map_err(|e| ApiError::invalid(e.to_string()))?;
    let actions = Actions::new(c.actions).map_err(|e| ApiError::invalid(e.to_string()))?;
    let mut constraints: Vec<Constraint> = Vec::new();
    for k in c.constraints {
        if k.arg.is_empty() || constraints.iter().any(|c| c.arg == k.arg) {
            return Err(ApiError::invalid(format!(
                "constraint argument `{}` is empty or repeated",
                k.arg
            )));
        }
        let condition = match k.kind {
            Some(tpb::constraint::Kind::Exact(v)) => Condition::Exact(value_from_pb(Some(v))?),
            Some(tpb::constraint::Kind::OneOf(set)) => Condition::one_of(
                set.values
                    .into_iter()
                    .map(|v| value_from_pb(Some(v)))
                    .collect::<Result<Vec<_>, _>>()?,
            )
            .map_err(|e| ApiError::invalid(e.to_string()))?,
            Some(tpb::constraint::Kind::Prefix(p)) => Condition::Prefix(p),
            Some(tpb::constraint::Kind::Range(r)) => {
                Condition::range(r.min, r.max).map_err(|e| ApiError::invalid(e.to_string()))?
            }
            None => {
                return Err(ApiError::invalid(format!(
                    "constraint on `{}` has no kind",
                    k.arg
                )));
            }
        };
        constraints.push(Constraint::new(k.arg, condition));
    }
    Ok(Capability {
        resource,
        actions,
        constraints,
    })
}

/// A capability as the API shows it.
pub(crate) fn capability_to_pb(c: &Capability) -> tpb::Capability {
    tpb::Capability {
        resource: c.resource.to_string(),
        actions: c.actions.to_strings(),
        constraints: c
            .constraints
            .iter()
            .map(|k| tpb::Constraint {
                arg: k.arg.clone(),
                kind: Some(match &k.condition {
                    Condition::Exact(v) => tpb::constraint::Kind::Exact(value_to_pb(v)),
                    Condition::OneOf(vs) => tpb::constraint::Kind::OneOf(tpb::ValueSet {
                        values: vs.iter().map(value_to_pb).collect(),
                    }),
                    Condition::Prefix(p) => tpb::constraint::Kind::Prefix(p.clone()),
                    Condition::Range { min, max } => tpb::constraint::Kind::Range(tpb::IntRange {
                        min: *min,
                        max: *max,
                    }),
                }),
            })
            .collect(),
    }
}

/// The call a tool describes in `Authorize`.
pub(crate) fn call_from_pb(
    action: String,
    resource: String,
    args: Vec<tpb::Argument>,
) -> Result<Call, ApiError> {
    let mut call = Call::new(action, resource);
    for a in args {
        let value = value_from_pb(a.value)?;
        if call.args.insert(a.name.clone(), value).is_some() {
            return Err(ApiError::invalid(format!(
                "argument `{}` appears twice",
                a.name
            )));
        }
    }
    Ok(call)
}

pub(crate) fn parse_task_id(s: &str) -> Result<TaskId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("`{s}` is not a task id (32 hex characters)")))
}

pub(crate) fn parse_link_id(s: &str) -> Result<LinkId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::invalid(format!("`{s}` is not a link id (32 hex characters)")))
}

pub(crate) fn agent_to_pb(a: &AgentRecord) -> pb::Agent {
    pb::Agent {
        agent_id: a.id.clone(),
        public_key: a.public_key.clone(),
        role: a.role.clone(),
        owner: a.owner.clone(),
        labels: a.labels.clone(),
        parent_agent_id: a.parent.clone().unwrap_or_default(),
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
