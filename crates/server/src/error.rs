//! Errors returned to callers: a gRPC code, a stable reason (the `ErrorInfo` reason) and a
//! message. One function ([`ApiError::into_status`]) turns them into `google.rpc.Status`.

use std::collections::HashMap;

use mandate_core::{Denial, Reason};
use mandate_store::StoreError;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt as _};

pub use mandate_proto::codec::ERROR_DOMAIN;

/// A failed call: nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ApiError {
    /// gRPC status code.
    pub code: Code,
    /// Stable reason code (`ErrorInfo.reason`).
    pub reason: String,
    /// Lowercase human-readable message.
    pub message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(code: Code, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// Bad input.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::InvalidArgument, "INVALID_ARGUMENT", message)
    }

    /// No such thing.
    pub fn not_found(what: &str, id: &str) -> ApiError {
        ApiError::new(
            Code::NotFound,
            "NOT_FOUND",
            format!("{what} `{id}` does not exist"),
        )
    }

    /// The caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(Code::PermissionDenied, "NOT_AUTHORIZED", message)
    }

    /// The same error with another reason code.
    pub fn with_reason(mut self, reason: &str) -> ApiError {
        reason.clone_into(&mut self.reason);
        self
    }

    /// The request does not fit the current state.
    pub fn precondition(reason: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(Code::FailedPrecondition, reason, message)
    }

    /// The request signature is missing or wrong.
    pub fn unauthenticated(reason: &str, message: impl Into<String>) -> ApiError {
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
        ApiError::new(code, d.reason().code(), d.to_string())
    }

    /// The gRPC status, with an `ErrorInfo` detail carrying the reason.
    pub fn into_status(self) -> tonic::Status {
        let details = ErrorDetails::with_error_info(
            self.reason,
            ERROR_DOMAIN,
            HashMap::<String, String>::new(),
        );
        tonic::Status::with_error_details(self.code, self.message, details)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        // The details (paths, engine messages) go to the log, not to the caller.
        tracing::error!(error = %e, "store failure");
        ApiError::new(
            Code::Unavailable,
            "STORE_UNAVAILABLE",
            "the store failed; the change was not made (see the coordinator's log)",
        )
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> tonic::Status {
        e.into_status()
    }
}
