//! `AccessService`: the access review (who can do what right now, exposure over a window).

use mandate_proto::v1 as pb;
use mandate_proto::v1::access_service_server::AccessService;
use tonic::{Request, Response, Status};

use super::convert::{call_from_pb, parse_task_id};
use super::{Api, caller, ids};
use crate::coordinator::{ExposureReport, ExposureRow, LiveFilter, LiveLink};

/// Most links an answer lists by default, and at most.
const DEFAULT_LIMIT: usize = 1_000;
const MAX_LIMIT: usize = 10_000;

/// Defaults of the exposure report: a day, 8 h of continuous authority, 5 min gaps.
const DEFAULT_WINDOW_MS: u64 = 24 * 3_600_000;
const DEFAULT_THRESHOLD_MS: u64 = 8 * 3_600_000;
const DEFAULT_GAP_MS: u64 = 5 * 60_000;

fn limit(n: u32) -> usize {
    match usize::try_from(n).unwrap_or(MAX_LIMIT) {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

fn or(value: u64, default: u64) -> u64 {
    if value == 0 { default } else { value }
}

fn live_to_pb(l: &LiveLink, now: u64) -> pb::LiveLink {
    pb::LiveLink {
        link_id: l.record.id.to_string(),
        holder_agent_id: l.record.holder.clone(),
        task_id: l.task.id.to_string(),
        requester: l.task.requester.clone(),
        intent: l.task.intent.clone(),
        path: ids(&l.path),
        kind: l.kind.as_str().to_owned(),
        not_before_ms: l.not_before_ms,
        expires_at_ms: l.record.expires_at_ms,
        remaining_ms: l.record.expires_at_ms.saturating_sub(now),
        capabilities: l.capabilities.iter().map(|c| c.to_pb()).collect(),
        require_online: l.require_online,
    }
}

fn row_to_pb(r: &ExposureRow, agent: bool) -> pb::Exposure {
    let (agent_id, resource) = if agent {
        (r.key.clone(), String::new())
    } else {
        (String::new(), r.key.clone())
    };
    pb::Exposure {
        agent_id,
        resource,
        privilege_ms: r.privilege_ms,
        grants: r.grants,
        longest_span_ms: r.longest_span_ms,
        longest_span_start_ms: r.longest_span_start_ms,
        standing: r.standing,
        break_glass_ms: r.break_glass_ms,
        break_glass_grants: r.break_glass_grants,
    }
}

fn report_to_pb(r: &ExposureReport) -> pb::ExposureReportResponse {
    pb::ExposureReportResponse {
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        agents: r.agents.iter().map(|x| row_to_pb(x, true)).collect(),
        resources: r.resources.iter().map(|x| row_to_pb(x, false)).collect(),
        threshold_ms: r.threshold_ms,
        max_gap_ms: r.max_gap_ms,
        history_from_ms: r.history_from_ms,
        timeline: r
            .timeline
            .iter()
            .map(|(time_ms, live_links, agents)| pb::TimelinePoint {
                time_ms: *time_ms,
                live_links: *live_links,
                agents: *agents,
            })
            .collect(),
    }
}

fn nonempty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl AccessService for Api {
    async fn who_can(
        &self,
        req: Request<pb::WhoCanRequest>,
    ) -> Result<Response<pb::WhoCanResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let call = call_from_pb(r.action, r.resource, r.args)?;
        let now = self.coordinator.now();
        let (links, truncated) = self.coordinator.who_can(&caller, &call, limit(r.limit))?;
        Ok(Response::new(pb::WhoCanResponse {
            links: links.iter().map(|l| live_to_pb(l, now)).collect(),
            truncated,
            time_ms: now,
        }))
    }

    async fn list_live_authority(
        &self,
        req: Request<pb::ListLiveAuthorityRequest>,
    ) -> Result<Response<pb::ListLiveAuthorityResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let filter = LiveFilter {
            holder: nonempty(r.agent_id),
            resource_prefix: nonempty(r.resource_prefix),
            action: nonempty(r.action),
            task: nonempty(r.task_id).map(|t| parse_task_id(&t)).transpose()?,
        };
        let now = self.coordinator.now();
        let (links, truncated) =
            self.coordinator
                .live_authority(&caller, &filter, limit(r.limit))?;
        Ok(Response::new(pb::ListLiveAuthorityResponse {
            links: links.iter().map(|l| live_to_pb(l, now)).collect(),
            truncated,
            time_ms: now,
        }))
    }

    async fn exposure_report(
        &self,
        req: Request<pb::ExposureReportRequest>,
    ) -> Result<Response<pb::ExposureReportResponse>, Status> {
        let caller = caller(&req)?;
        let r = req.into_inner();
        let report = self.coordinator.exposure_report(
            &caller,
            or(r.window_ms, DEFAULT_WINDOW_MS),
            or(r.threshold_ms, DEFAULT_THRESHOLD_MS),
            or(r.max_gap_ms, DEFAULT_GAP_MS),
        )?;
        Ok(Response::new(report_to_pb(&report)))
    }
}
