//! Stored records. Links, tasks and revocations, one per link, task or cut and so most of
//! a store, are stored in a compact binary encoding (`compact.rs`; read from JSON where
//! written before it); the others as JSON (readable with any tool, stable field order)
//! with hex for ids and keys. The serde forms below are that JSON.

use std::collections::BTreeMap;

use mandate_core::{AgentId, Digest, LinkId, PublicKey, TaskId};
use serde::{Deserialize, Serialize};

/// Serde helpers for hex-encoded ids and byte strings.
pub(crate) mod hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn encode(bytes: &[u8]) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            s.push(char::from(DIGITS[usize::from(b >> 4)]));
            s.push(char::from(DIGITS[usize::from(b & 15)]));
        }
        s
    }

    /// Exactly `N` bytes from hex (either case; no signs or other characters).
    pub(crate) fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
        let b = s.as_bytes();
        if b.len() != 2 * N {
            return None;
        }
        let digit = |c: u8| {
            char::from(c)
                .to_digit(16)
                .and_then(|d| u8::try_from(d).ok())
        };
        let mut out = [0u8; N];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(out)
    }

    pub(crate) fn decode(s: &str) -> Option<Vec<u8>> {
        if !s.len().is_multiple_of(2) || !s.is_ascii() {
            return None;
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
            .collect()
    }

    pub(crate) mod bytes {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&encode(v))
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            let s = String::deserialize(d)?;
            decode(&s).ok_or_else(|| D::Error::custom("invalid hex"))
        }
    }

    macro_rules! id_module {
        ($name:ident, $ty:ty) => {
            pub(crate) mod $name {
                use super::*;
                pub(crate) fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_str(&v.to_string())
                }
                pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                    d: D,
                ) -> Result<$ty, D::Error> {
                    String::deserialize(d)?.parse().map_err(D::Error::custom)
                }
            }
        };
    }
    id_module!(link_id, mandate_core::LinkId);
    id_module!(task_id, mandate_core::TaskId);
    id_module!(digest, mandate_core::Digest);
    id_module!(agent_id, mandate_core::AgentId);

    /// A public key as the hex of its 32 bytes (how agent keys were always stored); the
    /// point is checked when read.
    pub(crate) mod public_key {
        use super::*;
        pub(crate) fn serialize<S: Serializer>(
            v: &mandate_core::PublicKey,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            s.serialize_str(&encode(v.as_bytes()))
        }
        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<mandate_core::PublicKey, D::Error> {
            let bytes = decode(&String::deserialize(d)?)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| D::Error::custom("a public key is 32 bytes of hex"))?;
            mandate_core::PublicKey::from_bytes(&bytes).map_err(D::Error::custom)
        }
    }

    macro_rules! opt_id_module {
        ($name:ident, $ty:ty) => {
            pub(crate) mod $name {
                use super::*;
                pub(crate) fn serialize<S: Serializer>(
                    v: &Option<$ty>,
                    s: S,
                ) -> Result<S::Ok, S::Error> {
                    match v {
                        Some(id) => s.serialize_some(&id.to_string()),
                        None => s.serialize_none(),
                    }
                }
                pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
                    d: D,
                ) -> Result<Option<$ty>, D::Error> {
                    Option::<String>::deserialize(d)?
                        .map(|s| s.parse().map_err(D::Error::custom))
                        .transpose()
                }
            }
        };
    }
    opt_id_module!(opt_link_id, mandate_core::LinkId);
    opt_id_module!(opt_task_id, mandate_core::TaskId);
    opt_id_module!(opt_agent_id, mandate_core::AgentId);
}

pub(crate) use hex::encode as hex_encode;

/// Whether an agent may act.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May sign requests, hold and issue links.
    Active,
    /// Disabled; its links were revoked.
    Disabled,
}

/// A registered agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Agent id (`spiffe://…`).
    #[serde(with = "hex::agent_id")]
    pub id: AgentId,
    /// Ed25519 public key (checked when the record is read).
    #[serde(with = "hex::public_key")]
    pub public_key: PublicKey,
    /// Role for policy.
    pub role: String,
    /// Accountable owner.
    pub owner: String,
    /// Attributes for policy.
    pub labels: BTreeMap<String, String>,
    /// The agent that registered this one as its worker.
    #[serde(with = "hex::opt_agent_id")]
    pub parent: Option<AgentId>,
    /// Active or disabled.
    pub status: AgentStatus,
    /// Registration time, Unix ms.
    pub created_ms: u64,
    /// Disable time, Unix ms (0 while active).
    pub disabled_ms: u64,
    /// Who registered it.
    pub registered_by: String,
}

/// Lifecycle of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for approval.
    PendingApproval,
    /// Live.
    Active,
    /// Completed; tree revoked.
    Completed,
    /// Failed; tree revoked.
    Failed,
    /// Revoked.
    Revoked,
    /// Deadline passed, or its approval expired.
    Expired,
    /// Its grant request was denied by an approver.
    Denied,
}

impl TaskState {
    /// Whether the task has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, TaskState::PendingApproval | TaskState::Active)
    }
}

/// Where a pending grant request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for an approver.
    Pending,
    /// Approved; the grant was issued.
    Approved,
    /// Denied by an approver (or by policy at approval time).
    Denied,
    /// Nobody decided before it expired.
    Expired,
}

/// A grant request that policy sent for approval. One per task, keyed by the task id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The task waiting for the grant.
    #[serde(with = "hex::task_id")]
    pub task: TaskId,
    /// Who asked.
    pub requester: String,
    /// The request exactly as received (encoded by the coordinator); the grant is issued
    /// from these bytes.
    #[serde(with = "hex::bytes")]
    pub request: Vec<u8>,
    /// Hex SHA-256 binding an approval to this exact request.
    pub request_hash: String,
    /// When it was asked, Unix ms.
    pub created_ms: u64,
    /// When it expires if nobody decides, Unix ms.
    pub expires_ms: u64,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who approved or denied it.
    pub decided_by: String,
    /// When, Unix ms (0 while pending).
    pub decided_ms: u64,
    /// The approver's comment.
    pub comment: String,
    /// The policies that required approval.
    pub policies: Vec<String>,
    /// The policy set that required it.
    pub policy_hash: String,
}

/// A task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task id.
    #[serde(with = "hex::task_id")]
    pub id: TaskId,
    /// The requester (holder of the root link).
    pub requester: String,
    /// Intent text.
    pub intent: String,
    /// Structured intent fields.
    pub intent_fields: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: TaskState,
    /// Start time, Unix ms.
    pub created_ms: u64,
    /// Hard deadline, Unix ms.
    pub deadline_ms: u64,
    /// End time, Unix ms (0 while live).
    pub ended_ms: u64,
    /// Why it ended.
    pub end_reason: String,
    /// The current root link.
    #[serde(with = "hex::opt_link_id")]
    pub root_link: Option<LinkId>,
}

/// A link registered in the delegation tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRecord {
    /// Link id.
    #[serde(with = "hex::link_id")]
    pub id: LinkId,
    /// The task.
    #[serde(with = "hex::task_id")]
    pub task: TaskId,
    /// Parent link (none for a root).
    #[serde(with = "hex::opt_link_id")]
    pub parent: Option<LinkId>,
    /// Link digest.
    #[serde(with = "hex::digest")]
    pub digest: Digest,
    /// Holder's agent id.
    pub holder: String,
    /// Issuer's agent id (the coordinator's name for roots).
    pub issuer: String,
    /// The encoded link (`mandate.token.v1.Link`), sealed where sealed.
    #[serde(with = "hex::bytes")]
    pub encoded: Vec<u8>,
    /// Expiry, Unix ms.
    pub expires_at_ms: u64,
    /// Registration time, Unix ms.
    pub created_ms: u64,
    /// Most allowed `Authorize` uses (0: no limit). A use-limited link requires online
    /// checks, so the coordinator sees every use.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_uses: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A link to revoke, as part of a [`Change`](crate::Change).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRevocation {
    /// The link.
    pub link: LinkId,
    /// Its task.
    pub task: TaskId,
    /// Its expiry: the revocation can be forgotten after it.
    pub expires_at_ms: u64,
    /// Why.
    pub reason: String,
    /// When, Unix ms.
    pub time_ms: u64,
    /// Revoked because an ancestor is revoked in the same change (or was before). A verifier
    /// rejects every chain that contains a revoked link, so the ancestor's revocation already
    /// covers this one: the revocation feed leaves it out.
    pub implied: bool,
}

/// A revoked link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationRecord {
    /// The link.
    #[serde(with = "hex::link_id")]
    pub link: LinkId,
    /// Its task.
    #[serde(with = "hex::task_id")]
    pub task: TaskId,
    /// Epoch of the revocation.
    pub epoch: u64,
    /// When the link would have expired.
    pub expires_at_ms: u64,
    /// Why.
    pub reason: String,
    /// When, Unix ms.
    pub time_ms: u64,
    /// Covered by a revoked ancestor (see [`NewRevocation::implied`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub implied: bool,
}

/// One signing key of the coordinators of a service, as the trust bundle lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorKeyRecord {
    /// The public key.
    #[serde(with = "hex::public_key")]
    pub public_key: PublicKey,
    /// The instance that signs with it (its advertised address, or `coordinator` for a
    /// single one). Informational.
    pub instance: String,
    /// When it was added, Unix ms.
    pub added_ms: u64,
    /// When it was retired, Unix ms; `None` while active (an instance may lead with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired_ms: Option<u64>,
    /// Until when verifiers trust it (exclusive), Unix ms: `u64::MAX` while active; once
    /// retired, long enough for every link it sealed to expire (or at once, if it leaked).
    pub trusted_until_ms: u64,
}

/// The coordinator keys of a service: what the trust bundle is made of. Every change of
/// it has a higher `version`, so a verifier told of it can refuse an older one (a replay
/// that would restore a retired key).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorKeys {
    /// Increases with every change (1 for the first set recorded).
    pub version: u64,
    /// The keys, oldest first.
    pub keys: Vec<CoordinatorKeyRecord>,
}

impl CoordinatorKeys {
    /// The record of `key`, if the set has it.
    pub fn get(&self, key: &PublicKey) -> Option<&CoordinatorKeyRecord> {
        self.keys.iter().find(|k| k.public_key == *key)
    }

    /// Whether `key` is in the set and not retired: an instance may lead with it.
    pub fn is_active(&self, key: &PublicKey) -> bool {
        self.get(key).is_some_and(|k| k.retired_ms.is_none())
    }

    /// The keys still trusted at `now_ms`.
    pub fn trusted(&self, now_ms: u64) -> impl Iterator<Item = &CoordinatorKeyRecord> {
        self.keys
            .iter()
            .filter(move |k| k.trusted_until_ms > now_ms)
    }

    /// The next version of the set: `self` with the keys trusted at `now_ms` only.
    pub fn next(&self, now_ms: u64) -> CoordinatorKeys {
        CoordinatorKeys {
            version: self.version.saturating_add(1),
            keys: self.trusted(now_ms).cloned().collect(),
        }
    }
}

/// How much an audit record matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Routine.
    Info,
    /// Denials, revocations.
    Notice,
    /// Break-glass, policy drift, disabling.
    High,
}

/// What an audit record is about. Records store it as its name (`grant.issued`, ...):
/// docs/AUDIT.md lists them; the names never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditAction {
    /// An admin or a parent registered an agent (or the admin at first start).
    AgentRegistered,
    /// Policy refused a registration by a non-admin.
    AgentRegistrationDenied,
    /// An agent was disabled, with every link revoked with it.
    AgentDisabled,
    /// `StartTask` was granted.
    GrantIssued,
    /// `StartTask` was refused.
    GrantDenied,
    /// `RenewGrant` issued a new root.
    GrantRenewed,
    /// `RenewGrant` was refused.
    GrantRenewalDenied,
    /// `Delegate` admitted and sealed a link.
    DelegationSealed,
    /// `Delegate` was refused.
    DelegationDenied,
    /// `RevokeLink` revoked a link and its subtree.
    LinkRevoked,
    /// A task was completed; its tree was revoked.
    TaskCompleted,
    /// A task failed; its tree was revoked.
    TaskFailed,
    /// `Authorize` allowed a call.
    InvocationAuthorized,
    /// `Authorize` denied a call.
    InvocationDenied,
    /// A tool reported a call it allowed offline.
    InvocationOfflineAllowed,
    /// A tool reported a call it refused offline.
    InvocationOfflineDenied,
    /// Policy required approval for a grant.
    ApprovalRequested,
    /// An approver approved a grant request.
    ApprovalApproved,
    /// An approver denied a grant request (or policy did at approval time).
    ApprovalDenied,
    /// An approver the `Approve` policy does not permit tried.
    ApprovalRefused,
    /// Nobody decided a grant request in time.
    ApprovalExpired,
    /// Break-glass access was granted.
    BreakGlassGranted,
    /// Break-glass access was refused.
    BreakGlassDenied,
    /// The first policy set a store records.
    PolicyLoaded,
    /// A new policy set was installed.
    PolicyReloaded,
    /// An invalid policy set was refused.
    PolicyReloadRefused,
    /// A live link the new policy set denies was revoked.
    PolicyDriftRevoked,
    /// The coordinator signed a checkpoint of the log (the record before this one).
    AuditCheckpoint,
    /// At open, the audit journal ended before the head the store recorded: records lost
    /// to a power failure before they were synced (detail: `lost_from`, `lost_to`,
    /// `lost_head_hash`).
    AuditRecordsLost,
    /// Sealed segments past their retention were removed (detail: `first_removed`,
    /// `last_removed`, `last_removed_hash`, `segments`, `archived_to`, and a checkpoint of
    /// the last removed record: `coordinator_key`, `signature`, `time_ms`).
    AuditPruned,
    /// A coordinator key was added to the trust bundle (detail: `public_key`, `instance`,
    /// `keys_version`); also the first key a store records.
    CoordinatorKeyAdded,
    /// A coordinator key was retired (detail: `public_key`, `instance`,
    /// `trusted_until_ms`, `keys_version`).
    CoordinatorKeyRetired,
}

impl AuditAction {
    /// Every action, in declaration order.
    pub const ALL: &'static [AuditAction] = &[
        AuditAction::AgentRegistered,
        AuditAction::AgentRegistrationDenied,
        AuditAction::AgentDisabled,
        AuditAction::GrantIssued,
        AuditAction::GrantDenied,
        AuditAction::GrantRenewed,
        AuditAction::GrantRenewalDenied,
        AuditAction::DelegationSealed,
        AuditAction::DelegationDenied,
        AuditAction::LinkRevoked,
        AuditAction::TaskCompleted,
        AuditAction::TaskFailed,
        AuditAction::InvocationAuthorized,
        AuditAction::InvocationDenied,
        AuditAction::InvocationOfflineAllowed,
        AuditAction::InvocationOfflineDenied,
        AuditAction::ApprovalRequested,
        AuditAction::ApprovalApproved,
        AuditAction::ApprovalDenied,
        AuditAction::ApprovalRefused,
        AuditAction::ApprovalExpired,
        AuditAction::BreakGlassGranted,
        AuditAction::BreakGlassDenied,
        AuditAction::PolicyLoaded,
        AuditAction::PolicyReloaded,
        AuditAction::PolicyReloadRefused,
        AuditAction::PolicyDriftRevoked,
        AuditAction::AuditCheckpoint,
        AuditAction::AuditRecordsLost,
        AuditAction::AuditPruned,
        AuditAction::CoordinatorKeyAdded,
        AuditAction::CoordinatorKeyRetired,
    ];

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::AgentRegistered => "agent.registered",
            AuditAction::AgentRegistrationDenied => "agent.registration_denied",
            AuditAction::AgentDisabled => "agent.disabled",
            AuditAction::GrantIssued => "grant.issued",
            AuditAction::GrantDenied => "grant.denied",
            AuditAction::GrantRenewed => "grant.renewed",
            AuditAction::GrantRenewalDenied => "grant.renewal_denied",
            AuditAction::DelegationSealed => "delegation.sealed",
            AuditAction::DelegationDenied => "delegation.denied",
            AuditAction::LinkRevoked => "link.revoked",
            AuditAction::TaskCompleted => "task.completed",
            AuditAction::TaskFailed => "task.failed",
            AuditAction::InvocationAuthorized => "invocation.authorized",
            AuditAction::InvocationDenied => "invocation.denied",
            AuditAction::InvocationOfflineAllowed => "invocation.offline_allowed",
            AuditAction::InvocationOfflineDenied => "invocation.offline_denied",
            AuditAction::ApprovalRequested => "approval.requested",
            AuditAction::ApprovalApproved => "approval.approved",
            AuditAction::ApprovalDenied => "approval.denied",
            AuditAction::ApprovalRefused => "approval.refused",
            AuditAction::ApprovalExpired => "approval.expired",
            AuditAction::BreakGlassGranted => "breakglass.granted",
            AuditAction::BreakGlassDenied => "breakglass.denied",
            AuditAction::PolicyLoaded => "policy.loaded",
            AuditAction::PolicyReloaded => "policy.reloaded",
            AuditAction::PolicyReloadRefused => "policy.reload_refused",
            AuditAction::PolicyDriftRevoked => "policy.drift_revoked",
            AuditAction::AuditCheckpoint => "audit.checkpoint",
            AuditAction::AuditRecordsLost => "audit.records_lost",
            AuditAction::AuditPruned => "audit.pruned",
            AuditAction::CoordinatorKeyAdded => "coordinator_key.added",
            AuditAction::CoordinatorKeyRetired => "coordinator_key.retired",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision an audit record states. Records store it as `allow`, `deny`, `pending`, or
/// nothing for records of changes that decide nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Allowed.
    Allow,
    /// Refused.
    Deny,
    /// Waiting for a person (approval).
    Pending,
}

impl Verdict {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::Pending => "pending",
        }
    }

    /// `Allow` when `allowed`, else `Deny`.
    pub const fn of(allowed: bool) -> Verdict {
        if allowed {
            Verdict::Allow
        } else {
            Verdict::Deny
        }
    }
}

/// What happened, as submitted with a change. The store adds sequence and hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When, Unix ms.
    pub time_ms: u64,
    /// Who (agent id).
    pub actor: String,
    /// What ([`AuditAction`]), e.g. `grant.issued`, `link.revoked`.
    pub action: String,
    /// Under which task.
    #[serde(with = "hex::opt_task_id")]
    pub task: Option<TaskId>,
    /// Which links (hex ids); a cascade names every revoked link.
    pub links: Vec<String>,
    /// `allow`, `deny`, `pending` ([`Verdict`]) or empty.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// Determining policy ids.
    pub policies: Vec<String>,
    /// Hash of the policy set in force.
    pub policy_hash: String,
    /// How much it matters.
    pub severity: Severity,
    /// More context (intent, agents, counts). Never keys, signatures or tokens.
    pub detail: BTreeMap<String, String>,
}

impl AuditEvent {
    /// An event with only its time, actor and action set (informational, no task, links,
    /// decision or policy); the caller fills in the rest.
    pub fn new(actor: impl Into<String>, action: AuditAction, time_ms: u64) -> AuditEvent {
        AuditEvent {
            time_ms,
            actor: actor.into(),
            action: action.as_str().to_owned(),
            task: None,
            links: Vec::new(),
            decision: String::new(),
            reason: String::new(),
            policies: Vec::new(),
            policy_hash: String::new(),
            severity: Severity::Info,
            detail: BTreeMap::new(),
        }
    }
}

impl AuditEvent {
    /// Sets the action.
    pub fn set_action(&mut self, action: AuditAction) {
        self.action = action.as_str().to_owned();
    }

    /// Sets the decision.
    pub fn set_verdict(&mut self, verdict: Verdict) {
        self.decision = verdict.as_str().to_owned();
    }
}

/// An audit record: an event with its place in the hash chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number, from 1.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: AuditEvent,
    /// Hash of the previous record (zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this record's canonical JSON without `hash`.
    pub hash: String,
}

/// Serialises `value` as one line of a JSON-lines stream: serde_json's compact form, with
/// U+2028 and U+2029 written as the escapes `\u2028` and `\u2029`. JSON allows them raw,
/// but line-splitting functions in several languages (Python's `str.splitlines`,
/// JavaScript's line terminators) end a line at them and would cut a record in two. The
/// escapes parse back to the same characters, so a reader recomputes the same hash.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let line = serde_json::to_string(value)?;
    // serde_json writes structure in ASCII: these characters only occur inside strings.
    Ok(if line.contains(['\u{2028}', '\u{2029}']) {
        line.replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029")
    } else {
        line
    })
}

/// Computes a record's hash: SHA-256 of the previous hash (hex), a newline, and the
/// canonical JSON of `{seq, event…}`.
pub fn audit_hash(seq: u64, event: &AuditEvent, prev_hash: &str) -> String {
    #[derive(Serialize)]
    struct Hashed<'a> {
        seq: u64,
        #[serde(flatten)]
        event: &'a AuditEvent,
    }
    let body = serde_json::to_vec(&Hashed { seq, event }).unwrap_or_default();
    hex_encode(Digest::of(&[prev_hash.as_bytes(), b"\n", &body]).as_bytes())
}

/// The records `events` become when appended after the record `head` (sequence and hash):
/// numbered on, each hashed over the one before.
pub(crate) fn chain(head: &(u64, String), events: Vec<AuditEvent>) -> Vec<AuditRecord> {
    let (mut seq, mut prev) = head.clone();
    events
        .into_iter()
        .map(|event| {
            seq += 1;
            let hash = audit_hash(seq, &event, &prev);
            let prev_hash = std::mem::replace(&mut prev, hash.clone());
            AuditRecord {
                seq,
                event,
                prev_hash,
                hash,
            }
        })
        .collect()
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// Agent records are stored as they always were (id as text, key as hex): typed fields
    /// must not change what a store already holds.
    #[test]
    fn agent_records_keep_their_stored_form() {
        let key = mandate_core::SigningKey::from_seed(&[7; 32]).public_key();
        let record = AgentRecord {
            id: "spiffe://t/w".parse().unwrap(),
            public_key: key,
            role: "worker".into(),
            owner: "team".into(),
            labels: BTreeMap::new(),
            parent: Some("spiffe://t/p".parse().unwrap()),
            status: AgentStatus::Active,
            created_ms: 1,
            disabled_ms: 0,
            registered_by: "spiffe://t/p".into(),
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["id"], "spiffe://t/w");
        assert_eq!(json["parent"], "spiffe://t/p");
        assert_eq!(json["public_key"], hex_encode(key.as_bytes()));
        let back: AgentRecord = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, record);
        // A stored key that is not a usable point is a corrupt record, not an agent.
        let mut bad = json;
        bad["public_key"] = serde_json::Value::String("00".repeat(32));
        assert!(serde_json::from_value::<AgentRecord>(bad).is_err());
    }
}
