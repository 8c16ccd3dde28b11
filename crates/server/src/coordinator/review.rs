//! The access review: live authority (who can make a call right now, through which
//! chain) and exposure over a window (how long each agent and each resource pattern held
//! authority, how many grants, and the longest continuous span, stitched across
//! consecutive tasks and renewals: effective standing privilege).
//!
//! Admins and auditors review every task; anyone else the tasks it started. Everything is
//! read from the store: links and tasks stay there for `retain_history` after they
//! expire, and so do the revocations that cut them, which say when a link's authority
//! ended.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use mandate_core::{Call, Capability, Limits, LinkId, LinkKind, RevocationSet, TaskId};
use mandate_store::{LinkRecord, TaskRecord, TaskState};

use super::{Coordinator, corrupt_link, read};
use crate::auth::Caller;
use crate::error::ApiError;

/// A live link: not expired, not revoked, valid already, in an active task, every link
/// above it live.
#[derive(Clone, Debug)]
pub struct LiveLink {
    /// The stored link.
    pub record: LinkRecord,
    /// Its task.
    pub task: Arc<TaskRecord>,
    /// The chain's link ids, root first, ending with this link.
    pub path: Vec<LinkId>,
    /// Grant, delegation or break-glass.
    pub kind: LinkKind,
    /// When it became valid, Unix ms.
    pub not_before_ms: u64,
    /// What it permits.
    pub capabilities: Vec<Capability>,
    /// Every use is checked online.
    pub require_online: bool,
}

/// Which live links to list; `None` matches everything.
#[derive(Clone, Debug, Default)]
pub struct LiveFilter {
    /// Held by this agent.
    pub holder: Option<String>,
    /// With a capability whose resource pattern starts with this.
    pub resource_prefix: Option<String>,
    /// With a capability that allows this action.
    pub action: Option<String>,
    /// Of this task.
    pub task: Option<TaskId>,
}

/// One row of an exposure report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExposureRow {
    /// The agent or the resource pattern.
    pub key: String,
    /// Time in the window with live authority (the union of the intervals), ms.
    pub privilege_ms: u64,
    /// Links granted or delegated in the window.
    pub grants: u32,
    /// The longest continuous span in the window, with gaps up to `max_gap_ms` stitched, ms.
    pub longest_span_ms: u64,
    /// When it began, Unix ms (0 without one).
    pub longest_span_start_ms: u64,
    /// The span exceeds the threshold.
    pub standing: bool,
    /// Break-glass time held, ms (not in the figures above).
    pub break_glass_ms: u64,
    /// Break-glass grants in the window.
    pub break_glass_grants: u32,
}

/// What `ExposureReport` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExposureReport {
    /// The window, Unix ms.
    pub from_ms: u64,
    /// Its end (now), Unix ms.
    pub to_ms: u64,
    /// Per agent, most privilege first.
    pub agents: Vec<ExposureRow>,
    /// Per resource pattern, most privilege first.
    pub resources: Vec<ExposureRow>,
    /// The threshold used, ms.
    pub threshold_ms: u64,
    /// The gap used, ms.
    pub max_gap_ms: u64,
    /// Links that expired before this are no longer in the store.
    pub history_from_ms: u64,
    /// (instant, live links, agents holding them) at 48 evenly spaced instants ending now.
    pub timeline: Vec<(u64, u32, u32)>,
}

/// How many instants the report's timeline samples.
const TIMELINE_POINTS: u64 = 48;

/// Live links and distinct holders at each of [`TIMELINE_POINTS`] instants from `from`
/// (exclusive) to `to` (inclusive).
fn timeline(intervals: &[(u64, u64, &str)], from: u64, to: u64) -> Vec<(u64, u32, u32)> {
    (1..=TIMELINE_POINTS)
        .map(|i| {
            let t = from + (to - from) * i / TIMELINE_POINTS;
            let live: Vec<&str> = intervals
                .iter()
                .filter(|(s, e, _)| *s <= t && t < *e)
                .map(|(_, _, who)| *who)
                .collect();
            let agents: HashSet<&str> = live.iter().copied().collect();
            let n = |x: usize| u32::try_from(x).unwrap_or(u32::MAX);
            (t, n(live.len()), n(agents.len()))
        })
        .collect()
}

/// Intervals of authority of one row.
#[derive(Default)]
struct Held {
    spans: Vec<(u64, u64)>,
    grants: u32,
    break_glass: Vec<(u64, u64)>,
    break_glass_grants: u32,
}

/// Sorted, merged intervals, joining those at most `gap` apart.
fn merged(mut spans: Vec<(u64, u64)>, gap: u64) -> Vec<(u64, u64)> {
    spans.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(spans.len());
    for (start, end) in spans {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(gap) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

fn row(key: String, held: Held, threshold_ms: u64, max_gap_ms: u64) -> ExposureRow {
    let measure = |spans: Vec<(u64, u64)>| merged(spans, 0).iter().map(|(s, e)| e - s).sum();
    let (longest_span_start_ms, longest_span_ms) = merged(held.spans.clone(), max_gap_ms)
        .iter()
        .map(|(s, e)| (*s, e - s))
        .max_by_key(|(s, len)| (*len, std::cmp::Reverse(*s)))
        .unwrap_or_default();
    ExposureRow {
        key,
        privilege_ms: measure(held.spans),
        grants: held.grants,
        longest_span_ms,
        longest_span_start_ms,
        standing: longest_span_ms > threshold_ms,
        break_glass_ms: measure(held.break_glass),
        break_glass_grants: held.break_glass_grants,
    }
}

fn rows(held: BTreeMap<String, Held>, threshold_ms: u64, max_gap_ms: u64) -> Vec<ExposureRow> {
    let mut out: Vec<ExposureRow> = held
        .into_iter()
        .map(|(key, h)| row(key, h, threshold_ms, max_gap_ms))
        .collect();
    out.sort_by(|a, b| {
        (b.privilege_ms, b.break_glass_ms)
            .cmp(&(a.privilege_ms, a.break_glass_ms))
            .then_with(|| a.key.cmp(&b.key))
    });
    out
}

/// A stored link decoded, with its depth (roots 0).
struct Decoded {
    record: LinkRecord,
    body: mandate_core::LinkBody,
}

fn decode_all(links: Vec<LinkRecord>) -> Result<Vec<Decoded>, ApiError> {
    let limits = Limits::default();
    let mut out = links
        .into_iter()
        .map(|record| {
            let link =
                mandate_core::Link::decode(&record.encoded, &limits).map_err(corrupt_link)?;
            Ok(Decoded {
                body: link.body().clone(),
                record,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    // Parents first.
    out.sort_by_key(|d| (d.body.depth(), d.record.created_ms));
    Ok(out)
}

impl Coordinator {
    /// Calls `f` with each task the caller may review (every one for admins and
    /// auditors, its own otherwise), or only `only`, until `f` says stop.
    fn reviewed_tasks(
        &self,
        caller: &Caller,
        only: Option<&TaskId>,
        mut f: impl FnMut(TaskRecord) -> Result<bool, ApiError>,
    ) -> Result<(), ApiError> {
        let everything = caller.role().reads_everything();
        let me = caller.agent.id.as_str();
        let visible = |t: &TaskRecord| everything || t.requester == me;
        if let Some(id) = only {
            if let Some(t) = self.store.task(id)?.filter(visible) {
                f(t)?;
            }
            return Ok(());
        }
        let mut after: Option<TaskId> = None;
        loop {
            let tasks = self.store.tasks(after.as_ref(), 256)?;
            let Some(last) = tasks.last() else {
                return Ok(());
            };
            after = Some(last.id);
            for t in tasks.into_iter().filter(visible) {
                if !f(t)? {
                    return Ok(());
                }
            }
        }
    }

    /// The live links of an active task, parents first.
    fn live_of(&self, task: TaskRecord, now: u64) -> Result<Vec<LiveLink>, ApiError> {
        if task.state != TaskState::Active {
            return Ok(Vec::new());
        }
        let links = decode_all(self.store.task_links(&task.id)?)?;
        let task = Arc::new(task);
        let revoked = read(&self.revoked);
        let mut paths: HashMap<LinkId, Vec<LinkId>> = HashMap::new();
        let mut out = Vec::new();
        for d in links {
            let id = d.record.id;
            let parent_path = match d.record.parent {
                None => Some(Vec::new()),
                Some(p) => paths.get(&p).cloned(),
            };
            let Some(mut path) = parent_path else {
                continue; // a link above it is not live
            };
            if revoked.is_revoked(&id)
                || d.record.expires_at_ms <= now
                || d.body.not_before_ms > now
            {
                continue;
            }
            path.push(id);
            paths.insert(id, path.clone());
            out.push(LiveLink {
                task: Arc::clone(&task),
                path,
                kind: d.body.kind,
                not_before_ms: d.body.not_before_ms,
                capabilities: d.body.capabilities,
                require_online: d.body.require_online,
                record: d.record,
            });
        }
        Ok(out)
    }

    /// The live links the caller may review (of `only`, if given) that `keep` says to,
    /// offered parents first; soonest to expire first, at most `limit`, and whether there
    /// were more.
    fn live_where(
        &self,
        caller: &Caller,
        only: Option<&TaskId>,
        limit: usize,
        mut keep: impl FnMut(&LiveLink) -> bool,
    ) -> Result<(Vec<LiveLink>, bool), ApiError> {
        let now = self.now();
        let mut out = Vec::new();
        self.reviewed_tasks(caller, only, |task| {
            out.extend(self.live_of(task, now)?.into_iter().filter(|l| keep(l)));
            Ok(true)
        })?;
        Ok(soonest_first(out, limit))
    }

    /// Every live link the caller may review that permits `call` (and every link above it
    /// does too), soonest to expire first, at most `limit`; and whether there were more.
    pub fn who_can(
        &self,
        caller: &Caller,
        call: &Call,
        limit: usize,
    ) -> Result<(Vec<LiveLink>, bool), ApiError> {
        let mut permits: HashSet<LinkId> = HashSet::new();
        self.live_where(caller, None, limit, |l| {
            let above = l.record.parent.is_none_or(|p| permits.contains(&p));
            let ok = above && l.capabilities.iter().any(|c| c.permits(call));
            if ok {
                permits.insert(l.record.id);
            }
            ok
        })
    }

    /// The live links the caller may review that match `filter`, soonest to expire first,
    /// at most `limit`; and whether there were more.
    pub fn live_authority(
        &self,
        caller: &Caller,
        filter: &LiveFilter,
        limit: usize,
    ) -> Result<(Vec<LiveLink>, bool), ApiError> {
        self.live_where(caller, filter.task.as_ref(), limit, |l| {
            let holder = filter.holder.as_ref().is_none_or(|h| *h == l.record.holder);
            let resource = filter.resource_prefix.as_ref().is_none_or(|p| {
                l.capabilities
                    .iter()
                    .any(|c| c.resource.to_string().starts_with(p.as_str()))
            });
            let action = filter
                .action
                .as_ref()
                .is_none_or(|a| l.capabilities.iter().any(|c| c.actions.allows(a.as_str())));
            holder && resource && action
        })
    }

    /// How much authority each agent and each resource pattern held in the `window_ms`
    /// ending now (see [`ExposureRow`]), over the tasks the caller may review.
    pub fn exposure_report(
        &self,
        caller: &Caller,
        window_ms: u64,
        threshold_ms: u64,
        max_gap_ms: u64,
    ) -> Result<ExposureReport, ApiError> {
        let now = self.now();
        let from = now.saturating_sub(window_ms);
        let mut agents: BTreeMap<String, Held> = BTreeMap::new();
        let mut resources: BTreeMap<String, Held> = BTreeMap::new();
        let mut intervals: Vec<(u64, u64, String)> = Vec::new();
        self.reviewed_tasks(caller, None, |task| {
            let links = decode_all(self.store.task_links(&task.id)?)?;
            // When each link's authority ended: its expiry, its revocation or one above
            // it (a cascade ends a subtree at once), or the end of its task.
            let mut ended: HashMap<LinkId, u64> = HashMap::new();
            for d in links {
                let r = &d.record;
                let mut end = r.expires_at_ms;
                if task.ended_ms > 0 {
                    end = end.min(task.ended_ms);
                }
                if let Some(rev) = self.store.revocation(&r.id)? {
                    end = end.min(rev.time_ms);
                }
                if let Some(p) = r.parent.and_then(|p| ended.get(&p)) {
                    end = end.min(*p);
                }
                ended.insert(r.id, end);
                let start = d.body.not_before_ms.max(r.created_ms);
                let granted = (from..=now).contains(&r.created_ms);
                let (s, e) = (start.max(from), end.min(now));
                let span = (s < e).then_some((s, e));
                if span.is_none() && !granted {
                    continue;
                }
                if let Some((s, e)) = span {
                    // Live at `now` too when it outlives the window's end.
                    let e = if end > now { e.saturating_add(1) } else { e };
                    intervals.push((s, e, r.holder.clone()));
                }
                let break_glass = d.body.kind == LinkKind::BreakGlass;
                let add = |h: &mut Held| {
                    if break_glass {
                        h.break_glass.extend(span);
                        h.break_glass_grants += u32::from(granted);
                    } else {
                        h.spans.extend(span);
                        h.grants += u32::from(granted);
                    }
                };
                add(agents.entry(r.holder.clone()).or_default());
                let patterns: HashSet<String> = d
                    .body
                    .capabilities
                    .iter()
                    .map(|c| c.resource.to_string())
                    .collect();
                for p in patterns {
                    add(resources.entry(p).or_default());
                }
            }
            Ok(true)
        })?;
        let held: Vec<(u64, u64, &str)> = intervals
            .iter()
            .map(|(s, e, who)| (*s, *e, who.as_str()))
            .collect();
        Ok(ExposureReport {
            timeline: timeline(&held, from, now),
            from_ms: from,
            to_ms: now,
            agents: rows(agents, threshold_ms, max_gap_ms),
            resources: rows(resources, threshold_ms, max_gap_ms),
            threshold_ms,
            max_gap_ms,
            history_from_ms: now.saturating_sub(self.config.retain_history_ms),
        })
    }
}

fn soonest_first(mut links: Vec<LiveLink>, limit: usize) -> (Vec<LiveLink>, bool) {
    links.sort_by_key(|l| (l.record.expires_at_ms, l.record.created_ms));
    let more = links.len() > limit;
    links.truncate(limit);
    (links, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_merge_with_the_gap_and_the_union_counts_overlaps_once() {
        let held = Held {
            spans: vec![(100, 200), (150, 250), (300, 400), (1_000, 1_100)],
            grants: 4,
            break_glass: vec![(0, 50)],
            break_glass_grants: 1,
        };
        let r = row("a".into(), held, 200, 50);
        // Union: 100-250 (150) + 300-400 (100) + 1000-1100 (100).
        assert_eq!(r.privilege_ms, 350);
        // 100-250 and 300-400 are 50 apart: one span of 300; 1000-1100 is alone.
        assert_eq!((r.longest_span_start_ms, r.longest_span_ms), (100, 300));
        assert!(r.standing);
        assert_eq!((r.break_glass_ms, r.break_glass_grants), (50, 1));
        let r = row("a".into(), Held::default(), 200, 50);
        assert_eq!(
            (r.privilege_ms, r.longest_span_ms, r.standing),
            (0, 0, false)
        );
    }
}
