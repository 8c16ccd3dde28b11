//! The gRPC façade: one file per `mandate.v1` service, each a thin adapter that parses
//! the request, calls the [`Coordinator`], and converts the answer. No rules live here
//! (permissions are in `coordinator::access`, everything else in the coordinator's parts)
//! and no handler reads the store for a decision.

mod agents;
mod approvals;
mod audit;
mod authorization;
pub(crate) mod convert;
mod policy;
mod tasks;

use std::sync::Arc;
use std::time::Duration;

use mandate_proto::v1 as pb;
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::coordinator::{Coordinator, Issued};
use crate::error::{ApiError, ErrorReason};
use crate::policies::Decision;

/// Implements every `mandate.v1` service over one coordinator.
#[derive(Clone, Debug)]
pub struct Api {
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) heartbeat: Duration,
    /// Becomes true at shutdown: open feeds end so graceful shutdown can finish.
    pub(crate) stop: tokio::sync::watch::Receiver<bool>,
}

pub(crate) fn caller<T>(req: &Request<T>) -> Result<Caller, Status> {
    req.extensions().get::<Caller>().cloned().ok_or_else(|| {
        ApiError::unauthenticated(
            ErrorReason::UnsignedRequest,
            "the request is not authenticated",
        )
        .into_status()
    })
}

const MAX_PAGE: usize = 1000;

pub(crate) fn page_size(n: u32) -> usize {
    match n {
        0 => 100,
        n => (n as usize).min(MAX_PAGE),
    }
}

pub(crate) fn decision_to_pb(d: &Decision) -> pb::Decision {
    pb::Decision {
        allowed: d.allowed,
        reason: d.reason.clone(),
        policy_ids: d.policies.clone(),
        policy_hash: d.policy_hash.clone(),
    }
}

pub(crate) fn ids(links: &[mandate_core::LinkId]) -> Vec<String> {
    links.iter().map(ToString::to_string).collect()
}

fn chain_out(issued: &Issued) -> (Vec<u8>, String) {
    (issued.chain.encode(), issued.chain.to_text())
}
