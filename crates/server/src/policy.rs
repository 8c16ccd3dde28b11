//! Policy decisions behind a trait, and the bounded built-in engine that serves until a
//! Cedar engine replaces it.

use mandate_core::Capability;

/// Who asks, with the attributes policy may use.
#[derive(Clone, Debug)]
pub struct Principal<'a> {
    /// Agent id.
    pub id: &'a str,
    /// Role.
    pub role: &'a str,
}

/// A request for a root grant (start or renew).
#[derive(Clone, Debug)]
pub struct GrantRequest<'a> {
    /// The requester.
    pub principal: Principal<'a>,
    /// Requested capabilities.
    pub capabilities: &'a [Capability],
    /// Requested lifetime, ms.
    pub ttl_ms: u64,
    /// Requested delegation depth below the root.
    pub max_depth: u32,
    /// Intent text.
    pub intent: &'a str,
}

/// A request to register a delegation.
#[derive(Clone, Debug)]
pub struct DelegationRequest<'a> {
    /// The delegator.
    pub principal: Principal<'a>,
    /// The new holder.
    pub holder: Principal<'a>,
    /// The new link's capabilities (already checked to be within the parent's).
    pub capabilities: &'a [Capability],
    /// The new link's lifetime, ms.
    pub ttl_ms: u64,
    /// The new link's depth.
    pub depth: u32,
}

/// A policy decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Granted or not.
    pub allowed: bool,
    /// Why.
    pub reason: String,
    /// Longest lifetime allowed, ms (obligation; the tightest applies).
    pub max_ttl_ms: u64,
    /// Deepest delegation allowed below the root (obligation).
    pub max_depth: u32,
    /// Determining policy ids.
    pub policies: Vec<String>,
    /// Hash of the policy set.
    pub policy_hash: String,
}

/// Decides grants and delegations. Implementations must be fast (called on every request)
/// and deterministic for a given policy set.
pub trait PolicyEngine: Send + Sync + 'static {
    /// Decides a root grant.
    fn decide_grant(&self, request: &GrantRequest<'_>) -> Decision;
    /// Decides a delegation.
    fn decide_delegation(&self, request: &DelegationRequest<'_>) -> Decision;
}

/// The bounded built-in engine: grants anything asked by an active agent for at most
/// `max_ttl_ms` and `max_depth` hops; delegations are bounded the same way (narrowing is
/// enforced by the token rules).
#[derive(Clone, Debug)]
pub struct BuiltinPolicy {
    /// Longest grant or delegation lifetime, ms.
    pub max_ttl_ms: u64,
    /// Deepest delegation below a root.
    pub max_depth: u32,
}

impl Default for BuiltinPolicy {
    fn default() -> BuiltinPolicy {
        BuiltinPolicy {
            max_ttl_ms: 15 * 60 * 1000,
            max_depth: 3,
        }
    }
}

const BUILTIN_HASH: &str = "builtin-v1";

impl PolicyEngine for BuiltinPolicy {
    fn decide_grant(&self, r: &GrantRequest<'_>) -> Decision {
        let allowed = !r.capabilities.is_empty() && r.principal.role != "tool";
        Decision {
            allowed,
            reason: if allowed {
                format!("granted for at most {} s", self.max_ttl_ms / 1000)
            } else if r.capabilities.is_empty() {
                "no capability requested".into()
            } else {
                "tools receive no grants".into()
            },
            max_ttl_ms: self.max_ttl_ms,
            max_depth: self.max_depth,
            policies: vec!["builtin.grant-bounded".into()],
            policy_hash: BUILTIN_HASH.into(),
        }
    }

    fn decide_delegation(&self, r: &DelegationRequest<'_>) -> Decision {
        let allowed = r.depth <= self.max_depth;
        Decision {
            allowed,
            reason: if allowed {
                "delegation narrows its parent".into()
            } else {
                format!("delegation deeper than {} hops", self.max_depth)
            },
            max_ttl_ms: self.max_ttl_ms,
            max_depth: self.max_depth,
            policies: vec!["builtin.delegation-bounded".into()],
            policy_hash: BUILTIN_HASH.into(),
        }
    }
}
