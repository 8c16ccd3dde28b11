//! Who may read and change what: every permission rule of the coordinator, in one place.
//!
//! A rule is asked as an [`Ask`]: the operation with the facts about the caller's relation to
//! its object (the task's requester, whether the caller holds a link in it, ...). Facts that
//! cost a store read are closures, asked only when the role alone does not decide. Policy
//! (Cedar) decides grants, delegations and registrations on top of these rules; these rules
//! decide who may see or manage what exists.

use std::fmt;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorReason};

/// The roles the coordinator itself gives a meaning to. Other roles are free for policy
/// (`principal.role == "..."`) and carry no privilege here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Manages agents and the policy set; reads everything.
    Admin,
    /// Reads everything (tasks, approvals, the audit log, the policy set); changes nothing.
    Auditor,
    /// A person: may approve grant requests (when policy says so) and ask for break-glass.
    Human,
    /// A tool (resource server): calls `Authorize`.
    Tool,
    /// An agent that starts tasks and delegates.
    Planner,
    /// An agent registered by its parent. The only role a non-admin may assign.
    Worker,
    /// A role only policy knows.
    Other,
}

impl Role {
    /// The role of a stored role name.
    pub fn of(name: &str) -> Role {
        match name {
            "admin" => Role::Admin,
            "auditor" => Role::Auditor,
            "human" => Role::Human,
            "tool" => Role::Tool,
            "planner" => Role::Planner,
            "worker" => Role::Worker,
            _ => Role::Other,
        }
    }

    /// The stored name (`Other` has none of its own).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
            Role::Human => "human",
            Role::Tool => "tool",
            Role::Planner => "planner",
            Role::Worker => "worker",
            Role::Other => "other",
        }
    }

    /// Admins and auditors read everything.
    pub fn reads_everything(self) -> bool {
        matches!(self, Role::Admin | Role::Auditor)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fact that costs a store read, asked only when needed.
pub(crate) type Fact<'a> = &'a dyn Fn() -> Result<bool, ApiError>;

/// An operation whose permission does not depend on policy.
pub(crate) enum Ask<'a> {
    /// Query, watch, verify or export the audit log.
    ReadAuditLog,
    /// Read the policy set in force.
    ReadPolicy,
    /// Reload the policy set.
    ReloadPolicy,
    /// Add or retire a coordinator key of the service.
    ManageCoordinatorKeys,
    /// Remove audit records past their retention.
    PruneAuditLog,
    /// List tasks started by `requester`.
    ListTasks { requester: &'a str },
    /// Read a task (its intent can be sensitive).
    ReadTask {
        requester: &'a str,
        holds_a_link: Fact<'a>,
    },
    /// Read a task's delegation tree.
    ReadTree {
        requester: &'a str,
        holds_a_link: Fact<'a>,
    },
    /// Read one approval request.
    ReadApproval { requester: &'a str },
    /// Follow one approval request until it is decided.
    WaitApproval { requester: &'a str },
    /// Complete or fail a task.
    EndTask { requester: &'a str },
    /// Renew a task's grant.
    Renew { requester: &'a str },
    /// Revoke a link of a task; `holds_at_or_above`: the caller holds the link or one above.
    Revoke {
        requester: &'a str,
        holds_at_or_above: Fact<'a>,
    },
    /// Disable an agent registered by `parent`.
    DisableAgent { parent: Option<&'a str> },
    /// Register an agent below `parent` (non-admins: only their own workers).
    RegisterAgent { parent: Option<&'a str> },
    /// Give a new agent `role`.
    AssignRole { role: &'a str },
    /// Ask for break-glass access.
    BreakGlass,
    /// Report decisions made offline, for the audit log.
    ReportDecisions,
}

/// Whether the caller may do what it asks; the refusal says who may.
pub(crate) fn check(caller: &Caller, ask: Ask<'_>) -> Result<(), ApiError> {
    let role = caller.role();
    let me = caller.agent.id.as_str();
    let admin = role == Role::Admin;
    let refuse = |why: &str| Err(ApiError::forbidden(why));
    match ask {
        Ask::ReadAuditLog if !role.reads_everything() => {
            refuse("only admins and auditors may read the audit log")
        }
        Ask::ReadPolicy if !role.reads_everything() => {
            refuse("only admins and auditors may read the policy set")
        }
        Ask::ReloadPolicy if !admin => refuse("only admins may reload the policy set"),
        Ask::ManageCoordinatorKeys if !admin => {
            refuse("only admins may add or retire coordinator keys")
        }
        Ask::PruneAuditLog if !admin => refuse("only admins may prune the audit log"),
        Ask::ListTasks { requester } if !role.reads_everything() && requester != me => {
            refuse("only admins and auditors may list others' tasks")
        }
        Ask::ReadTask {
            requester,
            holds_a_link,
        } if !role.reads_everything() && requester != me && !holds_a_link()? => {
            refuse("only admins, auditors, the requester and holders in the task may read it")
        }
        Ask::ReadTree {
            requester,
            holds_a_link,
        } if !admin && requester != me && !holds_a_link()? => {
            refuse("only an admin, the requester or a holder in the tree may read it")
        }
        Ask::ReadApproval { requester } if requester != me && !sees_all_approvals(role) => {
            refuse("only the requester, approvers, admins and auditors may read a request")
        }
        Ask::WaitApproval { requester } if requester != me && !admin => {
            refuse("only the requester may wait on its request")
        }
        Ask::EndTask { requester } if !admin && requester != me => {
            refuse("only the task's requester or an admin may end it")
        }
        Ask::Renew { requester } if requester != me => {
            refuse("only the task's requester may renew its grant")
        }
        Ask::Revoke {
            requester,
            holds_at_or_above,
        } if !admin && requester != me && !holds_at_or_above()? => refuse(
            "only an admin, the task's requester or a holder at or above the link may revoke it",
        ),
        Ask::DisableAgent { parent } if !admin && parent != Some(me) => {
            refuse("only an admin or the agent's parent may disable it")
        }
        Ask::RegisterAgent { parent } if !admin && parent != Some(me) => refuse(
            "only an admin may register agents; others may register their own workers (parent_agent_id = caller)",
        ),
        // Workers are workers: only an admin assigns roles that carry privileges (admin,
        // auditor, tool, planner, or any role policy may rest on).
        Ask::AssignRole { role: new }
            if !(admin || new.is_empty() || new == Role::Worker.as_str()) =>
        {
            refuse("only an admin may assign a role other than `worker`")
        }
        Ask::BreakGlass if role != Role::Human => Err(ApiError::forbidden(
            "break-glass is for people only (agents registered with role `human`)",
        )
        .with_reason(ErrorReason::HumansOnly)),
        Ask::ReportDecisions if !(admin || role == Role::Tool) => {
            refuse("only tools report offline decisions")
        }
        _ => Ok(()),
    }
}

/// People (who may approve), admins and auditors see every approval request.
pub(crate) fn sees_all_approvals(role: Role) -> bool {
    matches!(role, Role::Admin | Role::Auditor | Role::Human)
}

#[cfg(test)]
mod tests;
