//! Records for the conformance suite and the backends' own tests.

use std::collections::BTreeMap;

use mandate_core::{Digest, LinkId, TaskId};

use crate::records::{AgentRecord, LinkRecord, TaskRecord};
use crate::{AgentStatus, AuditEvent, NewRevocation, Severity, TaskState};

pub(crate) fn event(action: &str) -> AuditEvent {
    // Store tests label records freely; the store does not interpret actions.
    let mut e = AuditEvent::new("spiffe://t/admin", crate::AuditAction::LinkRevoked, 1);
    e.action = action.into();
    e
}

pub(crate) fn agent(id: &str) -> AgentRecord {
    AgentRecord {
        id: id.parse().unwrap(),
        public_key: mandate_core::SigningKey::from_seed(&[7; 32]).public_key(),
        role: "planner".into(),
        owner: "team".into(),
        labels: BTreeMap::new(),
        parent: None,
        status: AgentStatus::Active,
        created_ms: 1,
        disabled_ms: 0,
        registered_by: "spiffe://t/admin".into(),
    }
}

pub(crate) fn link(id: u8, parent: Option<u8>, task: TaskId) -> LinkRecord {
    LinkRecord {
        id: LinkId::from_bytes([id; 16]),
        task,
        parent: parent.map(|p| LinkId::from_bytes([p; 16])),
        digest: Digest::of(&[&[id]]),
        holder: format!("spiffe://t/h{id}"),
        issuer: "spiffe://t/planner".into(),
        encoded: vec![1, 2, 3],
        expires_at_ms: 1000 + u64::from(id),
        created_ms: 1,
        max_uses: 0,
    }
}

pub(crate) fn approval(task: TaskId) -> crate::ApprovalRecord {
    crate::ApprovalRecord {
        task,
        requester: "spiffe://t/a".into(),
        request: vec![1, 2, 3],
        request_hash: "ab".repeat(32),
        created_ms: 10,
        expires_ms: 20,
        state: crate::ApprovalState::Pending,
        decided_by: String::new(),
        decided_ms: 0,
        comment: String::new(),
        policies: vec!["p".into()],
        policy_hash: "sha256:00".into(),
    }
}

pub(crate) fn task(id: u8) -> TaskRecord {
    TaskRecord {
        id: TaskId::from_bytes([id; 16]),
        requester: "spiffe://t/planner".into(),
        intent: "test".into(),
        intent_fields: BTreeMap::new(),
        state: TaskState::Active,
        created_ms: 1,
        deadline_ms: 2000,
        ended_ms: 0,
        end_reason: String::new(),
        root_link: Some(LinkId::from_bytes([1; 16])),
    }
}

pub(crate) fn revoke(id: u8, t: TaskId) -> NewRevocation {
    NewRevocation {
        link: LinkId::from_bytes([id; 16]),
        task: t,
        expires_at_ms: 1000 + u64::from(id),
        reason: "test".into(),
        time_ms: 5,
        implied: false,
    }
}

/// An event with enough variety to exercise the segment encoding: links (canonical and
/// not), a task, policies, detail, each severity.
pub(crate) fn varied_event(i: u64) -> AuditEvent {
    let mut e = event(if i.is_multiple_of(3) {
        "invocation.authorized"
    } else {
        "delegation.sealed"
    });
    e.time_ms = 1_000 + i * 7;
    e.task = i
        .is_multiple_of(2)
        .then(|| TaskId::from_bytes([i as u8; 16]));
    e.links = vec![
        LinkId::from_bytes([(i % 251) as u8; 16]).to_string(),
        if i.is_multiple_of(5) {
            "NOT-HEX".into()
        } else {
            "ab".repeat(16)
        },
    ];
    e.decision = ["allow", "deny", ""][(i % 3) as usize].into();
    e.reason = format!("reason {}", i % 4);
    e.policies = vec!["p1".into(), format!("p{}", i % 3)];
    e.policy_hash = "sha256:abc".into();
    e.severity = [Severity::Info, Severity::Notice, Severity::High][(i % 3) as usize];
    e.detail.insert("resource".into(), format!("files/{i}"));
    e.detail.insert("action".into(), "read".into());
    e
}

/// A link id from a number.
pub(crate) fn nth(i: u32) -> LinkId {
    let mut b = [0xAB; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    LinkId::from_bytes(b)
}

/// A set of coordinator keys with one retired key.
pub(crate) fn coordinator_keys() -> crate::CoordinatorKeys {
    crate::CoordinatorKeys {
        version: 2,
        keys: vec![crate::CoordinatorKeyRecord {
            public_key: mandate_core::SigningKey::from_seed(&[7; 32]).public_key(),
            instance: "c1:7468".into(),
            added_ms: 5,
            retired_ms: Some(9),
            trusted_until_ms: 100,
        }],
    }
}
