//! Stable reason codes and the [`Denial`] value every failed check returns.

use std::fmt;

/// Why a token, link or invocation was rejected.
///
/// The string form ([`Reason::code`]) is stable: it appears on the wire (as the `ErrorInfo`
/// reason of the coordinator's errors), in audit records and in the golden test vectors.
/// New codes may be added; existing codes never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// The encoded token or invocation is larger than the configured limit.
    TokenTooLarge,
    /// The chain has more links than the configured depth limit.
    TooManyLinks,
    /// A link or invocation has more capabilities, actions, constraints, values or
    /// arguments, or longer strings, than the configured limits.
    LimitExceeded,
    /// The bytes do not decode, or a field has the wrong length, a missing value or a
    /// value that is not allowed at its position in the chain.
    Malformed,
    /// The wire format version is not one this verifier knows.
    UnsupportedVersion,
    /// An enum field holds a value this verifier does not know.
    UnknownValue,
    /// A constraint has no kind or a kind this verifier does not know.
    UnknownConstraint,
    /// The root link's issuer key is not in the trust bundle.
    UntrustedRoot,
    /// The root link's issuer key is trusted, but not at this time.
    RootKeyInactive,
    /// A link's parent digest does not match the link before it (reordered, spliced or
    /// truncated chain).
    ParentMismatch,
    /// A link's depth is not its parent's depth plus one.
    DepthMismatch,
    /// A link was delegated below a parent with no remaining depth, or without lowering
    /// the remaining depth.
    DepthExceeded,
    /// A link's validity window is not inside its parent's.
    WindowWidened,
    /// A link grants something its parent does not, or drops a restriction its parent
    /// imposes (seal or online requirement).
    ScopeWidened,
    /// A break-glass link was delegated.
    BreakGlassDelegated,
    /// A link that must be sealed carries no coordinator seal.
    SealMissing,
    /// A seal's key is not trusted or its signature does not verify.
    BadSeal,
    /// A link is not valid yet.
    NotYetValid,
    /// A link has expired.
    LinkExpired,
    /// A link of the chain has been revoked.
    Revoked,
    /// A link or invocation signature does not verify.
    BadSignature,
    /// The chain requires online authorisation and this verifier is offline.
    OnlineRequired,
    /// The chain is break-glass and this verifier refuses break-glass access.
    BreakGlassRefused,
    /// The invocation is addressed to another tool.
    WrongAudience,
    /// The invocation was made for a different chain.
    ChainMismatch,
    /// The invocation was issued outside the accepted time window.
    InvocationStale,
    /// The invocation nonce has been seen before within the window.
    Replayed,
    /// The replay cache is full of live nonces; the invocation cannot be checked for
    /// replay and is refused.
    ReplayCacheFull,
    /// The invocation describes a different call than the one being made.
    InvocationMismatch,
    /// The chain does not permit the requested action, resource or arguments.
    NotPermitted,
}

impl Reason {
    /// Every reason, in declaration order.
    pub const ALL: &'static [Reason] = &[
        Reason::TokenTooLarge,
        Reason::TooManyLinks,
        Reason::LimitExceeded,
        Reason::Malformed,
        Reason::UnsupportedVersion,
        Reason::UnknownValue,
        Reason::UnknownConstraint,
        Reason::UntrustedRoot,
        Reason::RootKeyInactive,
        Reason::ParentMismatch,
        Reason::DepthMismatch,
        Reason::DepthExceeded,
        Reason::WindowWidened,
        Reason::ScopeWidened,
        Reason::BreakGlassDelegated,
        Reason::SealMissing,
        Reason::BadSeal,
        Reason::NotYetValid,
        Reason::LinkExpired,
        Reason::Revoked,
        Reason::BadSignature,
        Reason::OnlineRequired,
        Reason::BreakGlassRefused,
        Reason::WrongAudience,
        Reason::ChainMismatch,
        Reason::InvocationStale,
        Reason::Replayed,
        Reason::ReplayCacheFull,
        Reason::InvocationMismatch,
        Reason::NotPermitted,
    ];

    /// The stable code, e.g. `LINK_EXPIRED`.
    pub const fn code(self) -> &'static str {
        match self {
            Reason::TokenTooLarge => "TOKEN_TOO_LARGE",
            Reason::TooManyLinks => "TOO_MANY_LINKS",
            Reason::LimitExceeded => "LIMIT_EXCEEDED",
            Reason::Malformed => "MALFORMED",
            Reason::UnsupportedVersion => "UNSUPPORTED_VERSION",
            Reason::UnknownValue => "UNKNOWN_VALUE",
            Reason::UnknownConstraint => "UNKNOWN_CONSTRAINT",
            Reason::UntrustedRoot => "UNTRUSTED_ROOT",
            Reason::RootKeyInactive => "ROOT_KEY_INACTIVE",
            Reason::ParentMismatch => "PARENT_MISMATCH",
            Reason::DepthMismatch => "DEPTH_MISMATCH",
            Reason::DepthExceeded => "DEPTH_EXCEEDED",
            Reason::WindowWidened => "WINDOW_WIDENED",
            Reason::ScopeWidened => "SCOPE_WIDENED",
            Reason::BreakGlassDelegated => "BREAK_GLASS_DELEGATED",
            Reason::SealMissing => "SEAL_MISSING",
            Reason::BadSeal => "BAD_SEAL",
            Reason::NotYetValid => "NOT_YET_VALID",
            Reason::LinkExpired => "LINK_EXPIRED",
            Reason::Revoked => "REVOKED",
            Reason::BadSignature => "BAD_SIGNATURE",
            Reason::OnlineRequired => "ONLINE_REQUIRED",
            Reason::BreakGlassRefused => "BREAK_GLASS_REFUSED",
            Reason::WrongAudience => "WRONG_AUDIENCE",
            Reason::ChainMismatch => "CHAIN_MISMATCH",
            Reason::InvocationStale => "INVOCATION_STALE",
            Reason::Replayed => "REPLAYED",
            Reason::ReplayCacheFull => "REPLAY_CACHE_FULL",
            Reason::InvocationMismatch => "INVOCATION_MISMATCH",
            Reason::NotPermitted => "NOT_PERMITTED",
        }
    }

    /// Parses a stable code back into a reason.
    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.iter().copied().find(|r| r.code() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A rejected token, link or invocation: the reason, which link it concerns (if any) and a
/// short human explanation.
///
/// A denial is an expected outcome, not a program error. Its text never contains key
/// material or whole tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    reason: Reason,
    link: Option<usize>,
    detail: String,
}

impl Denial {
    /// A denial not tied to one link.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Denial {
        Denial {
            reason,
            link: None,
            detail: detail.into(),
        }
    }

    /// A denial concerning the link at `index` (0 is the root).
    pub fn at(reason: Reason, index: usize, detail: impl Into<String>) -> Denial {
        Denial {
            reason,
            link: Some(index),
            detail: detail.into(),
        }
    }

    /// The stable reason.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// Index of the offending link in the chain, when the denial concerns one link.
    pub fn link_index(&self) -> Option<usize> {
        self.link
    }

    /// Human-readable detail (lowercase, no final period).
    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub(crate) fn with_link(mut self, index: usize) -> Denial {
        self.link = Some(index);
        self
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.link {
            Some(i) => write!(f, "{} at link {}: {}", self.reason, i, self.detail),
            None => write!(f, "{}: {}", self.reason, self.detail),
        }
    }
}

impl std::error::Error for Denial {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &r in Reason::ALL {
            assert!(seen.insert(r.code()), "duplicate code {}", r.code());
            assert_eq!(Reason::from_code(r.code()), Some(r));
            assert!(
                r.code().chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "code {} is not SCREAMING_SNAKE_CASE",
                r.code()
            );
        }
        assert_eq!(Reason::from_code("NOPE"), None);
    }

    #[test]
    fn display_names_link_and_reason() {
        let d = Denial::at(Reason::LinkExpired, 2, "expired at 5");
        assert_eq!(d.to_string(), "LINK_EXPIRED at link 2: expired at 5");
        assert_eq!(
            Denial::new(Reason::Malformed, "bad").to_string(),
            "MALFORMED: bad"
        );
    }
}
