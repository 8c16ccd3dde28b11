//! Mandate's policy engine, on [Cedar](https://www.cedarpolicy.com).
//!
//! - [`SCHEMA`] is the contract between the coordinator and policy authors: principals
//!   (agents and humans), actions (request grant, renew, delegate, invoke, break-glass,
//!   approve, register agent), resources and the context of each action.
//! - [`PolicySet`] is a validated set of policies: loaded from `*.cedar` files (or the
//!   shipped [`DEFAULT_POLICIES`]), checked against the schema in strict mode, with
//!   obligations read from annotations and a hash that names the set in audit records. An
//!   invalid set is refused as a whole, with every problem listed.
//! - [`PolicySet::decide`] answers one [`Request`]: allowed or not, the determining
//!   policy ids, the set's hash and the obligations of the permitting policies (the
//!   tightest wins).
//!
//! Decisions fail closed: a policy that cannot be evaluated (it reads an attribute or tag
//! that is absent, or an entity that was not supplied) makes the whole decision a denial,
//! even when the failing policy is a `forbid` that Cedar alone would skip.
//!
//! docs/POLICY.md is the guide for policy authors.

mod decide;
mod load;
mod obligations;

pub use decide::{Action, AgentInfo, Request, Target, TaskInfo};
pub use load::{LoadError, PolicySet};
pub use obligations::Obligations;

/// The Cedar schema every policy set is validated against.
pub const SCHEMA: &str = include_str!("../schema/mandate.cedarschema");

/// The policy set the coordinator uses when no policy directory is configured.
pub const DEFAULT_POLICIES: &str = include_str!("../policies/default.cedar");

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is permitted.
    pub allowed: bool,
    /// Why, in words (the `@reason` of a forbidding policy when it has one).
    pub reason: String,
    /// Ids of the determining policies: the permits that allowed it, or the forbids (or
    /// failing policies) that denied it. Sorted, without duplicates.
    pub policies: Vec<String>,
    /// Hash of the policy set that decided.
    pub policy_hash: String,
    /// What the permitting policies require (empty on a denial).
    pub obligations: Obligations,
}

impl Decision {
    /// A denial that no policy decided (bad input, an unknown principal), attributed to
    /// the set `hash`.
    pub fn refused(reason: String, hash: &str) -> Decision {
        Decision {
            allowed: false,
            reason,
            policies: Vec::new(),
            policy_hash: hash.to_owned(),
            obligations: Obligations::default(),
        }
    }
}

#[cfg(test)]
mod tests;
