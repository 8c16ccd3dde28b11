//! The gRPC façade: one file per `mandate.v1` service, each a thin adapter that parses
//! the request, calls the [`Coordinator`], and converts the answer. No rules live here
//! (permissions are in `coordinator::access`, everything else in the coordinator's parts)
//! and no handler reads the store for a decision.

mod access;
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
    /// Open server streams per agent.
    pub(crate) streams: Arc<StreamSlots>,
}

/// Most server streams (revocation feeds, audit watches, approval waits) one agent may
/// hold open at once.
pub(crate) const MAX_STREAMS_PER_AGENT: usize = 16;

/// Counts each agent's open server streams, so no agent can tie up the coordinator with
/// them.
#[derive(Debug, Default)]
pub(crate) struct StreamSlots {
    open: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

/// One open stream; dropping it (when the stream ends) frees the slot.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    slots: Arc<StreamSlots>,
    agent: String,
}

impl StreamSlots {
    fn open(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, usize>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A slot for `agent`, or `RESOURCE_EXHAUSTED` / `QUOTA_EXCEEDED` when it holds the
    /// most it may.
    pub(crate) fn take(self: &Arc<Self>, agent: &str) -> Result<StreamSlot, Status> {
        let mut open = self.open();
        let n = open.entry(agent.to_owned()).or_insert(0);
        if *n >= MAX_STREAMS_PER_AGENT {
            return Err(ApiError::new(
                tonic::Code::ResourceExhausted,
                ErrorReason::QuotaExceeded,
                format!(
                    "an agent may hold at most {MAX_STREAMS_PER_AGENT} open streams; close one first"
                ),
            )
            .into());
        }
        *n += 1;
        Ok(StreamSlot {
            slots: Arc::clone(self),
            agent: agent.to_owned(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open();
        if let Some(n) = open.get_mut(&self.agent) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.agent);
            }
        }
    }
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
