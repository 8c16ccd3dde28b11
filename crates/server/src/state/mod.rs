//! State the coordinator keeps beside the store, each part behind its own type with its own
//! invariants: agent records read through a cache ([`agents`]), the revocation feed ([`revocations`]), the quota ledger ([`quota`]), the
//! batched audit writer ([`audit`]) and group durability ([`durability`]).
//!
//! None of these decides anything: the coordinator's parts decide, then record here.

pub(crate) mod agents;
pub(crate) mod audit;
pub(crate) mod durability;
pub(crate) mod quota;
pub(crate) mod revocations;
