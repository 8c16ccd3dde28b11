//! `mandate access who-can|live|report`: the access review (docs/ACCESS.md).

use mandate_core::Call;
use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::Outcome;
use crate::client::{Connection, time};
use crate::input::{parse_args, parse_ttl};
use crate::output::print;

/// `mandate access ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AccessCommand {
    /// Every live link that permits a call right now: holder, chain, task, time left.
    WhoCan {
        /// The action, e.g. `read`.
        action: String,
        /// The resource, e.g. `files/reports/q3.pdf`.
        resource: String,
        /// A call argument `name=value` (repeatable), for constrained capabilities.
        #[arg(long = "arg")]
        args: Vec<String>,
        /// Most links to list (default 1,000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Live links, filtered.
    Live {
        /// Held by this agent (`--agent` is who you are).
        #[arg(long)]
        holder: Option<String>,
        /// With a capability whose resource pattern starts with this.
        #[arg(long)]
        resource_prefix: Option<String>,
        /// With a capability that allows this action.
        #[arg(long)]
        action: Option<String>,
        /// Of this task.
        #[arg(long)]
        task: Option<String>,
        /// Most links to list (default 1,000).
        #[arg(long, default_value_t = 0)]
        limit: u32,
    },
    /// Authority held per agent and per resource pattern over a window: privilege-time,
    /// grants, the longest continuous span, and spans long enough to be standing privilege.
    Report {
        /// The window, ending now.
        #[arg(long, default_value = "24h")]
        window: String,
        /// A continuous span longer than this is flagged as standing privilege.
        #[arg(long, default_value = "8h")]
        threshold: String,
        /// Spans at most this far apart count as one (consecutive tasks, renewals).
        #[arg(long, default_value = "5m")]
        gap: String,
        /// `table` or `csv` (`--json` for JSON).
        #[arg(long, default_value = "table")]
        format: String,
    },
}

/// A duration for people: `1h 02m`, `45s`, `0s`.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m {sec:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

fn live_json(l: &pb::LiveLink) -> Json {
    json!({
        "link_id": l.link_id,
        "holder_agent_id": l.holder_agent_id,
        "task_id": l.task_id,
        "requester": l.requester,
        "intent": l.intent,
        "path": l.path,
        "kind": l.kind,
        "not_before_ms": l.not_before_ms,
        "expires_at_ms": l.expires_at_ms,
        "remaining_ms": l.remaining_ms,
        "capabilities": l.capabilities.iter().map(|c| json!({"resource": c.resource, "actions": c.actions})).collect::<Vec<_>>(),
        "require_online": l.require_online,
    })
}

fn live_text(links: &[pb::LiveLink], truncated: bool, none: &str) -> String {
    if links.is_empty() {
        return none.to_owned();
    }
    let mut s = String::new();
    for l in links {
        let caps: Vec<String> = l
            .capabilities
            .iter()
            .map(|c| format!("{}:{}", c.resource, c.actions.join(",")))
            .collect();
        s.push_str(&format!(
            "{}  {} ({} left)\n  task {} by {}: {}\n  chain {}\n  {}{}\n",
            l.holder_agent_id,
            l.kind,
            span(l.remaining_ms),
            l.task_id,
            l.requester,
            l.intent,
            l.path.join(" > "),
            caps.join(" "),
            if l.require_online {
                "  (online only)"
            } else {
                ""
            },
        ));
    }
    if truncated {
        s.push_str("(more: raise --limit)\n");
    }
    s.trim_end().to_owned()
}

fn rows_json(rows: &[pb::Exposure], agent: bool) -> Vec<Json> {
    rows.iter()
        .map(|r| {
            json!({
                (if agent { "agent_id" } else { "resource" }): if agent { &r.agent_id } else { &r.resource },
                "privilege_ms": r.privilege_ms,
                "grants": r.grants,
                "longest_span_ms": r.longest_span_ms,
                "longest_span_start_ms": r.longest_span_start_ms,
                "standing": r.standing,
                "break_glass_ms": r.break_glass_ms,
                "break_glass_grants": r.break_glass_grants,
            })
        })
        .collect()
}

fn report_csv(r: &pb::ExposureReportResponse) -> String {
    let mut s = String::from(
        "kind,name,privilege_ms,grants,longest_span_ms,longest_span_start_ms,standing,break_glass_ms,break_glass_grants\n",
    );
    let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
    for (kind, rows) in [("agent", &r.agents), ("resource", &r.resources)] {
        for x in rows {
            let name = if kind == "agent" {
                &x.agent_id
            } else {
                &x.resource
            };
            s.push_str(&format!(
                "{kind},{},{},{},{},{},{},{},{}\n",
                quote(name),
                x.privilege_ms,
                x.grants,
                x.longest_span_ms,
                x.longest_span_start_ms,
                x.standing,
                x.break_glass_ms,
                x.break_glass_grants
            ));
        }
    }
    s.trim_end().to_owned()
}

fn report_table(r: &pb::ExposureReportResponse) -> String {
    let mut s = format!(
        "exposure {} to {} (standing: a span over {}, gaps up to {} stitched)\n",
        time(r.from_ms),
        time(r.to_ms),
        span(r.threshold_ms),
        span(r.max_gap_ms)
    );
    if r.history_from_ms > r.from_ms {
        s.push_str(&format!(
            "note: links that expired before {} are no longer kept (retain_history)\n",
            time(r.history_from_ms)
        ));
    }
    for (title, rows, agent) in [
        ("agent", &r.agents, true),
        ("resource", &r.resources, false),
    ] {
        s.push_str(&format!(
            "\n{:44} {:>10} {:>6} {:>12}  {:>12} {:>4}\n",
            title, "privilege", "grants", "longest span", "break-glass", ""
        ));
        for x in rows.iter() {
            let name = if agent { &x.agent_id } else { &x.resource };
            s.push_str(&format!(
                "{:44} {:>10} {:>6} {:>12}  {:>12} {}\n",
                name,
                span(x.privilege_ms),
                x.grants,
                span(x.longest_span_ms),
                if x.break_glass_grants > 0 {
                    format!("{} ({})", span(x.break_glass_ms), x.break_glass_grants)
                } else {
                    "-".to_owned()
                },
                if x.standing { "STANDING" } else { "" }
            ));
        }
    }
    s.trim_end().to_owned()
}

pub(crate) async fn access(cmd: AccessCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    match cmd {
        AccessCommand::WhoCan {
            action,
            resource,
            args,
            limit,
        } => {
            let mut call = Call::new(action.clone(), resource.clone());
            call.args = parse_args(&args)?;
            let r = client
                .who_can(pb::WhoCanRequest {
                    args: mandate_sdk::call_args_to_pb(&call),
                    action,
                    resource,
                    limit,
                })
                .await?;
            print(
                conn.json,
                &json!({"links": r.links.iter().map(live_json).collect::<Vec<_>>(), "truncated": r.truncated, "time_ms": r.time_ms}),
                || {
                    live_text(
                        &r.links,
                        r.truncated,
                        "nobody: no live link permits this call",
                    )
                },
            );
        }
        AccessCommand::Live {
            holder,
            resource_prefix,
            action,
            task,
            limit,
        } => {
            let r = client
                .list_live_authority(pb::ListLiveAuthorityRequest {
                    agent_id: holder.unwrap_or_default(),
                    resource_prefix: resource_prefix.unwrap_or_default(),
                    action: action.unwrap_or_default(),
                    task_id: task.unwrap_or_default(),
                    limit,
                })
                .await?;
            print(
                conn.json,
                &json!({"links": r.links.iter().map(live_json).collect::<Vec<_>>(), "truncated": r.truncated, "time_ms": r.time_ms}),
                || live_text(&r.links, r.truncated, "no live authority"),
            );
        }
        AccessCommand::Report {
            window,
            threshold,
            gap,
            format,
        } => {
            anyhow::ensure!(
                format == "table" || format == "csv",
                "--format is `table` or `csv` (or --json)"
            );
            let r = client
                .exposure_report(pb::ExposureReportRequest {
                    window_ms: parse_ttl(&window)?,
                    threshold_ms: parse_ttl(&threshold)?,
                    max_gap_ms: parse_ttl(&gap)?,
                })
                .await?;
            let j = json!({
                "from_ms": r.from_ms,
                "to_ms": r.to_ms,
                "threshold_ms": r.threshold_ms,
                "max_gap_ms": r.max_gap_ms,
                "history_from_ms": r.history_from_ms,
                "agents": rows_json(&r.agents, true),
                "resources": rows_json(&r.resources, false),
            });
            if format == "csv" && !conn.json {
                out!("{}", report_csv(&r));
            } else {
                print(conn.json, &j, || report_table(&r));
            }
        }
    }
    Ok(Outcome::Ok)
}
