//! Errors returned to callers: a gRPC code, a stable reason (the `ErrorInfo` reason) and a
//! message. One function ([`ApiError::into_status`]) turns them into `google.rpc.Status`.

use std::collections::HashMap;

use mandate_core::{Denial, Reason};
use mandate_store::StoreError;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt as _};

pub use mandate_proto::codec::ERROR_DOMAIN;

/// Why a call failed: the stable `ErrorInfo` reason (docs/PROTOCOL.md lists them). Token
/// denials carry the token's own reason ([`Reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorReason {
    /// The request carries no valid signature headers.
    UnsignedRequest,
    /// The request's timestamp is outside the accepted window.
    StaleRequest,
    /// The caller (or a delegation's holder) is not a registered agent.
    UnknownAgent,
    /// The request signature does not verify with the agent's key.
    BadRequestSignature,
    /// The request is signed as one agent over an mTLS connection whose client
    /// certificate names another SPIFFE id.
    PeerIdentityMismatch,
    /// The agent is disabled.
    AgentDisabled,
    /// The request's nonce was seen before.
    RequestReplayed,
    /// The request message is over the size limit.
    RequestTooLarge,
    /// The agent sent too many requests in the window.
    RateLimited,
    /// The coordinator cannot take more work now.
    Overloaded,
    /// A field is malformed.
    InvalidArgument,
    /// No such agent, task or link.
    NotFound,
    /// The agent or link is already registered.
    AlreadyExists,
    /// The caller may not do this.
    NotAuthorized,
    /// Policy refused.
    PolicyDenied,
    /// Break-glass asked by an agent that is not a person.
    HumansOnly,
    /// The requester (or its worker) tried to decide its own request.
    SelfApproval,
    /// The hash quoted to approve or deny is not the pending request's.
    RequestHashMismatch,
    /// The request was already decided.
    ApprovalDecided,
    /// The request expired unanswered.
    ApprovalExpired,
    /// A reload found an invalid policy set.
    PolicyInvalid,
    /// A reload on a coordinator running the built-in set.
    NoPolicyDir,
    /// The task is not active.
    TaskNotActive,
    /// The task has already ended.
    TaskEnded,
    /// A delegation's holder key is not the key registered for its holder.
    HolderKeyMismatch,
    /// A link above a delegation is not the one the coordinator registered.
    UnregisteredLink,
    /// The agent's trust domain is neither the coordinator's nor federated.
    ForeignTrustDomain,
    /// An agent's registered key is unusable.
    AgentKeyInvalid,
    /// A quota is used up.
    QuotaExceeded,
    /// The store failed; the change was not made (or may not be durable).
    StoreUnavailable,
    /// Another writer committed first; nothing was changed: retry.
    StoreConflict,
    /// The records a prune would remove are not the ones the request named.
    PruneRangeChanged,
    /// This coordinator no longer leads the service: another one does (ask it).
    NotLeader,
    /// The coordinator key to retire is the one the leading coordinator signs with.
    KeyInUse,
    /// The coordinator key to add was retired: a retired key never comes back.
    KeyRetired,
    /// A stored link does not decode.
    CorruptLink,
    /// A stored approval request does not decode.
    CorruptApproval,
    /// The coordinator's key is unusable.
    BadKey,
    /// A bug: something that cannot happen did.
    Internal,
    /// A token check failed with this reason (docs/TOKEN.md).
    Token(Reason),
}

impl ErrorReason {
    /// The stable code, e.g. `POLICY_DENIED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorReason::UnsignedRequest => "UNSIGNED_REQUEST",
            ErrorReason::StaleRequest => "STALE_REQUEST",
            ErrorReason::UnknownAgent => "UNKNOWN_AGENT",
            ErrorReason::BadRequestSignature => "BAD_REQUEST_SIGNATURE",
            ErrorReason::PeerIdentityMismatch => "PEER_IDENTITY_MISMATCH",
            ErrorReason::AgentDisabled => "AGENT_DISABLED",
            ErrorReason::RequestReplayed => "REQUEST_REPLAYED",
            ErrorReason::RequestTooLarge => "REQUEST_TOO_LARGE",
            ErrorReason::RateLimited => "RATE_LIMITED",
            ErrorReason::Overloaded => "OVERLOADED",
            ErrorReason::InvalidArgument => "INVALID_ARGUMENT",
            ErrorReason::NotFound => "NOT_FOUND",
            ErrorReason::AlreadyExists => "ALREADY_EXISTS",
            ErrorReason::NotAuthorized => "NOT_AUTHORIZED",
            ErrorReason::PolicyDenied => "POLICY_DENIED",
            ErrorReason::HumansOnly => "HUMANS_ONLY",
            ErrorReason::SelfApproval => "SELF_APPROVAL",
            ErrorReason::RequestHashMismatch => "REQUEST_HASH_MISMATCH",
            ErrorReason::ApprovalDecided => "APPROVAL_DECIDED",
            ErrorReason::ApprovalExpired => "APPROVAL_EXPIRED",
            ErrorReason::PolicyInvalid => "POLICY_INVALID",
            ErrorReason::NoPolicyDir => "NO_POLICY_DIR",
            ErrorReason::TaskNotActive => "TASK_NOT_ACTIVE",
            ErrorReason::TaskEnded => "TASK_ENDED",
            ErrorReason::HolderKeyMismatch => "HOLDER_KEY_MISMATCH",
            ErrorReason::UnregisteredLink => "UNREGISTERED_LINK",
            ErrorReason::ForeignTrustDomain => "FOREIGN_TRUST_DOMAIN",
            ErrorReason::AgentKeyInvalid => "AGENT_KEY_INVALID",
            ErrorReason::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorReason::StoreUnavailable => "STORE_UNAVAILABLE",
            ErrorReason::StoreConflict => "STORE_CONFLICT",
            ErrorReason::PruneRangeChanged => "PRUNE_RANGE_CHANGED",
            ErrorReason::NotLeader => "NOT_LEADER",
            ErrorReason::KeyInUse => "KEY_IN_USE",
            ErrorReason::KeyRetired => "KEY_RETIRED",
            ErrorReason::CorruptLink => "CORRUPT_LINK",
            ErrorReason::CorruptApproval => "CORRUPT_APPROVAL",
            ErrorReason::BadKey => "BAD_KEY",
            ErrorReason::Internal => "INTERNAL",
            ErrorReason::Token(r) => r.code(),
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed call: nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ApiError {
    /// gRPC status code.
    pub code: Code,
    /// Stable reason code (`ErrorInfo.reason`).
    pub reason: ErrorReason,
    /// Lowercase human-readable message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(code: Code, reason: ErrorReason, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    /// Bad input.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidArgument, ErrorReason::InvalidArgument, message)
    }

    /// No such thing.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            Code::NotFound,
            ErrorReason::NotFound,
            format!("{what} `{id}` does not exist"),
        )
    }

    /// The caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::PermissionDenied, ErrorReason::NotAuthorized, message)
    }

    /// The same error with another reason code.
    pub fn with_reason(mut self, reason: ErrorReason) -> ApiError {
        self.reason = reason;
        self
    }

    /// The request does not fit the current state.
    pub fn precondition(reason: ErrorReason, message: impl Into<String>) -> ApiError {
        ApiError::new(Code::FailedPrecondition, reason, message)
    }

    /// The request signature is missing or wrong.
    pub fn unauthenticated(reason: ErrorReason, message: impl Into<String>) -> ApiError {
        ApiError::new(Code::Unauthenticated, reason, message)
    }

    /// A token check failed: shape problems are bad input, the rest is a refusal.
    pub fn denied(d: &Denial) -> ApiError {
        let code = match d.reason() {
            Reason::Malformed
            | Reason::TokenTooLarge
            | Reason::TooManyLinks
            | Reason::LimitExceeded
            | Reason::UnsupportedVersion
            | Reason::UnknownValue
            | Reason::UnknownConstraint => Code::InvalidArgument,
            _ => Code::PermissionDenied,
        };
        ApiError::new(code, ErrorReason::Token(d.reason()), d.to_string())
    }

    /// The gRPC status, with an `ErrorInfo` detail carrying the reason.
    pub fn into_status(self) -> tonic::Status {
        let details = ErrorDetails::with_error_info(
            self.reason.as_str(),
            ERROR_DOMAIN,
            HashMap::<String, String>::new(),
        );
        tonic::Status::with_error_details(self.code, self.message, details)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        if let StoreError::Conflict(why) = &e {
            tracing::info!(%why, "store conflict");
            return ApiError::new(
                Code::Aborted,
                ErrorReason::StoreConflict,
                "another coordinator changed the state first; nothing was changed: retry",
            );
        }
        // The details (paths, engine messages) go to the log, not to the caller.
        tracing::error!(error = %e, "store failure");
        ApiError::new(
            Code::Unavailable,
            ErrorReason::StoreUnavailable,
            "the store failed; the change was not made (see the coordinator's log)",
        )
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        e.into_status()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_failures_map_to_unavailable_and_conflicts_to_aborted() {
        let failed = ApiError::from(StoreError::Backend("disk full".into()));
        assert_eq!(
            (failed.code, failed.reason),
            (Code::Unavailable, ErrorReason::StoreUnavailable)
        );
        assert!(
            !failed.message.contains("disk full"),
            "engine details stay in the log"
        );
        let lost = ApiError::from(StoreError::Conflict("audit head moved".into()));
        assert_eq!(
            (lost.code, lost.reason),
            (Code::Aborted, ErrorReason::StoreConflict)
        );
        let status = lost.into_status();
        assert_eq!(status.code(), Code::Aborted);
    }

    #[test]
    fn reasons_are_screaming_snake_case_and_tokens_keep_their_codes() {
        for r in [
            ErrorReason::PolicyDenied,
            ErrorReason::StoreConflict,
            ErrorReason::Internal,
        ] {
            assert!(
                r.as_str()
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
            );
        }
        assert_eq!(ErrorReason::Token(Reason::Revoked).as_str(), "REVOKED");
    }
}
