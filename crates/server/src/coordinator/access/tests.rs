//! Every role against every rule, with each relation the rule depends on.

use crate::error::ErrorReason;
use std::collections::BTreeMap;

use mandate_store::{AgentRecord, AgentStatus};

use super::*;

const ME: &str = "spiffe://t/me";
const OTHER: &str = "spiffe://t/other";

const ROLES: [&str; 7] = [
    "admin", "auditor", "human", "tool", "planner", "worker", "reviewer",
];

fn caller(role: &str) -> Caller {
    Caller {
        agent: AgentRecord {
            id: ME.parse().unwrap(),
            public_key: mandate_core::SigningKey::from_seed(&[1; 32]).public_key(),
            role: role.into(),
            owner: String::new(),
            labels: BTreeMap::new(),
            parent: None,
            status: AgentStatus::Active,
            created_ms: 0,
            disabled_ms: 0,
            registered_by: String::new(),
        },
        nonce: [0; 16],
        nonce_expires_ms: 0,
    }
}

fn yes() -> Result<bool, ApiError> {
    Ok(true)
}

fn no() -> Result<bool, ApiError> {
    Ok(false)
}

/// A fact the rule must not need (the role or the requester already decides).
fn never() -> Result<bool, ApiError> {
    panic!("a store fact was read although the rule did not need it")
}

/// One rule, one relation, and the roles it allows.
struct Row {
    what: &'static str,
    ask: fn(&'static str) -> Ask<'static>,
    allowed: &'static [&'static str],
}

const ALL: &[&str] = &ROLES;
const ADMIN: &[&str] = &["admin"];
const READERS: &[&str] = &["admin", "auditor"];
const NOBODY: &[&str] = &[];

fn rows() -> Vec<Row> {
    vec![
        Row {
            what: "read the audit log",
            ask: |_| Ask::ReadAuditLog,
            allowed: READERS,
        },
        Row {
            what: "read the policy set",
            ask: |_| Ask::ReadPolicy,
            allowed: READERS,
        },
        Row {
            what: "reload the policy set",
            ask: |_| Ask::ReloadPolicy,
            allowed: ADMIN,
        },
        Row {
            what: "add or retire coordinator keys",
            ask: |_| Ask::ManageCoordinatorKeys,
            allowed: ADMIN,
        },
        Row {
            what: "prune the audit log",
            ask: |_| Ask::PruneAuditLog,
            allowed: ADMIN,
        },
        Row {
            what: "list own tasks",
            ask: |_| Ask::ListTasks { requester: ME },
            allowed: ALL,
        },
        Row {
            what: "list others' tasks",
            ask: |_| Ask::ListTasks { requester: OTHER },
            allowed: READERS,
        },
        Row {
            what: "read own task",
            ask: |_| Ask::ReadTask {
                requester: ME,
                holds_a_link: &never,
            },
            allowed: ALL,
        },
        Row {
            what: "read a task one holds a link in",
            ask: |r| Ask::ReadTask {
                requester: OTHER,
                holds_a_link: if Role::of(r).reads_everything() {
                    &never
                } else {
                    &yes
                },
            },
            allowed: ALL,
        },
        Row {
            what: "read a stranger's task",
            ask: |r| Ask::ReadTask {
                requester: OTHER,
                holds_a_link: if Role::of(r).reads_everything() {
                    &never
                } else {
                    &no
                },
            },
            allowed: READERS,
        },
        Row {
            what: "read own tree",
            ask: |_| Ask::ReadTree {
                requester: ME,
                holds_a_link: &never,
            },
            allowed: ALL,
        },
        Row {
            what: "read a tree one holds a link in",
            ask: |r| Ask::ReadTree {
                requester: OTHER,
                holds_a_link: if r == "admin" { &never } else { &yes },
            },
            allowed: ALL,
        },
        Row {
            what: "read a stranger's tree",
            ask: |r| Ask::ReadTree {
                requester: OTHER,
                holds_a_link: if r == "admin" { &never } else { &no },
            },
            allowed: ADMIN,
        },
        Row {
            what: "read own approval",
            ask: |_| Ask::ReadApproval { requester: ME },
            allowed: ALL,
        },
        Row {
            what: "read another's approval",
            ask: |_| Ask::ReadApproval { requester: OTHER },
            allowed: &["admin", "auditor", "human"],
        },
        Row {
            what: "wait on own approval",
            ask: |_| Ask::WaitApproval { requester: ME },
            allowed: ALL,
        },
        Row {
            what: "wait on another's approval",
            ask: |_| Ask::WaitApproval { requester: OTHER },
            allowed: ADMIN,
        },
        Row {
            what: "end own task",
            ask: |_| Ask::EndTask { requester: ME },
            allowed: ALL,
        },
        Row {
            what: "end another's task",
            ask: |_| Ask::EndTask { requester: OTHER },
            allowed: ADMIN,
        },
        Row {
            what: "renew own grant",
            ask: |_| Ask::Renew { requester: ME },
            allowed: ALL,
        },
        Row {
            what: "renew another's grant",
            ask: |_| Ask::Renew { requester: OTHER },
            allowed: NOBODY,
        },
        Row {
            what: "revoke in own task",
            ask: |_| Ask::Revoke {
                requester: ME,
                holds_at_or_above: &never,
            },
            allowed: ALL,
        },
        Row {
            what: "revoke below a link one holds",
            ask: |r| Ask::Revoke {
                requester: OTHER,
                holds_at_or_above: if r == "admin" { &never } else { &yes },
            },
            allowed: ALL,
        },
        Row {
            what: "revoke in a stranger's tree",
            ask: |r| Ask::Revoke {
                requester: OTHER,
                holds_at_or_above: if r == "admin" { &never } else { &no },
            },
            allowed: ADMIN,
        },
        Row {
            what: "disable own worker",
            ask: |_| Ask::DisableAgent { parent: Some(ME) },
            allowed: ALL,
        },
        Row {
            what: "disable another's worker",
            ask: |_| Ask::DisableAgent {
                parent: Some(OTHER),
            },
            allowed: ADMIN,
        },
        Row {
            what: "disable a top-level agent",
            ask: |_| Ask::DisableAgent { parent: None },
            allowed: ADMIN,
        },
        Row {
            what: "register own worker",
            ask: |_| Ask::RegisterAgent { parent: Some(ME) },
            allowed: ALL,
        },
        Row {
            what: "register another's worker",
            ask: |_| Ask::RegisterAgent {
                parent: Some(OTHER),
            },
            allowed: ADMIN,
        },
        Row {
            what: "register a top-level agent",
            ask: |_| Ask::RegisterAgent { parent: None },
            allowed: ADMIN,
        },
        Row {
            what: "assign role worker",
            ask: |_| Ask::AssignRole { role: "worker" },
            allowed: ALL,
        },
        Row {
            what: "assign no role (worker)",
            ask: |_| Ask::AssignRole { role: "" },
            allowed: ALL,
        },
        Row {
            what: "assign role planner",
            ask: |_| Ask::AssignRole { role: "planner" },
            allowed: ADMIN,
        },
        Row {
            what: "assign a policy-defined role",
            ask: |_| Ask::AssignRole { role: "reviewer" },
            allowed: ADMIN,
        },
        Row {
            what: "ask for break-glass",
            ask: |_| Ask::BreakGlass,
            allowed: &["human"],
        },
        Row {
            what: "report offline decisions",
            ask: |_| Ask::ReportDecisions,
            allowed: &["admin", "tool"],
        },
    ]
}

#[test]
fn every_role_against_every_rule() {
    for row in rows() {
        for role in ROLES {
            let got = check(&caller(role), (row.ask)(role));
            let want = row.allowed.contains(&role);
            assert_eq!(got.is_ok(), want, "{role} may {}: {got:?}", row.what);
            if let Err(e) = got {
                assert_eq!(
                    e.code,
                    tonic::Code::PermissionDenied,
                    "{role}: {}",
                    row.what
                );
                let reason = if row.what == "ask for break-glass" {
                    ErrorReason::HumansOnly
                } else {
                    ErrorReason::NotAuthorized
                };
                assert_eq!(e.reason, reason, "{role}: {}", row.what);
            }
        }
    }
}

#[test]
fn approvals_are_seen_whole_by_people_admins_and_auditors() {
    let all: Vec<_> = ROLES
        .iter()
        .filter(|r| sees_all_approvals(Role::of(r)))
        .collect();
    assert_eq!(all, [&"admin", &"auditor", &"human"]);
}

#[test]
fn roles_round_trip_and_unknown_roles_carry_no_privilege() {
    for role in &ROLES[..6] {
        assert_eq!(Role::of(role).as_str(), *role);
    }
    assert_eq!(Role::of("reviewer"), Role::Other);
    assert_eq!(Role::of("Admin"), Role::Other, "roles are case-sensitive");
}
