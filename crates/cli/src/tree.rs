//! `mandate tree TASK`: the delegation tree of a task in the terminal, as JSON, or as a
//! Graphviz graph.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use serde_json::{Value, json};

use crate::Outcome;
use crate::client::{Connection, time};

#[derive(clap::Args, Debug)]
pub(crate) struct TreeArgs {
    /// The task (hex id).
    task: String,
    /// Output format: text or dot (Graphviz). `--json` prints JSON.
    #[arg(long, default_value = "text")]
    format: String,
}

fn state(s: i32) -> &'static str {
    match pb::LinkState::try_from(s) {
        Ok(pb::LinkState::Live) => "live",
        Ok(pb::LinkState::Revoked) => "revoked",
        Ok(pb::LinkState::Expired) => "expired",
        _ => "unknown",
    }
}

fn task_state(s: i32) -> &'static str {
    match pb::TaskState::try_from(s) {
        Ok(pb::TaskState::PendingApproval) => "pending approval",
        Ok(pb::TaskState::Active) => "active",
        Ok(pb::TaskState::Completed) => "completed",
        Ok(pb::TaskState::Failed) => "failed",
        Ok(pb::TaskState::Revoked) => "revoked",
        Ok(pb::TaskState::Expired) => "expired",
        _ => "unknown",
    }
}

/// `files/* read,write size∈[0,10]` style summary of capabilities.
pub(crate) fn scope(caps: &[tpb::Capability]) -> String {
    caps.iter()
        .map(|c| {
            let mut s = format!("{} {}", c.resource, c.actions.join(","));
            for k in &c.constraints {
                let cond = match &k.kind {
                    Some(tpb::constraint::Kind::Exact(v)) => format!("={}", value(v)),
                    Some(tpb::constraint::Kind::OneOf(vs)) => {
                        format!(
                            "∈{{{}}}",
                            vs.values.iter().map(value).collect::<Vec<_>>().join(",")
                        )
                    }
                    Some(tpb::constraint::Kind::Prefix(p)) => format!(" starts with {p:?}"),
                    Some(tpb::constraint::Kind::Range(r)) => format!("∈[{},{}]", r.min, r.max),
                    None => "?".into(),
                };
                let _ = write!(s, " {}{cond}", k.arg);
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn value(v: &tpb::Value) -> String {
    match &v.kind {
        Some(tpb::value::Kind::Text(t)) => format!("{t:?}"),
        Some(tpb::value::Kind::Int(i)) => i.to_string(),
        None => "?".into(),
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn node_json(l: &pb::LinkNode) -> Value {
    json!({
        "link_id": l.link_id,
        "parent_link_id": l.parent_link_id,
        "holder": l.holder_agent_id,
        "issuer": l.issuer_agent_id,
        "scope": scope(&l.capabilities),
        "not_before_ms": l.not_before_ms,
        "expires_at_ms": l.expires_at_ms,
        "depth": l.depth,
        "max_depth": l.max_depth,
        "state": state(l.state),
        "sealed": l.sealed,
        "revoke_reason": l.revoke_reason,
        "digest": l.digest,
    })
}

fn render_text(task: &pb::Task, links: &[pb::LinkNode]) -> String {
    let mut children: BTreeMap<&str, Vec<&pb::LinkNode>> = BTreeMap::new();
    for l in links {
        children
            .entry(l.parent_link_id.as_str())
            .or_default()
            .push(l);
    }
    let mut out = format!(
        "task {} ({}) requested by {}, deadline {}\n",
        task.task_id,
        task_state(task.state),
        task.requester_agent_id,
        time(task.deadline_ms)
    );
    if let Some(i) = &task.intent
        && !i.text.is_empty()
    {
        let _ = writeln!(out, "intent: {}", i.text);
    }
    fn walk(
        out: &mut String,
        children: &BTreeMap<&str, Vec<&pb::LinkNode>>,
        parent: &str,
        prefix: &str,
    ) {
        let Some(kids) = children.get(parent) else {
            return;
        };
        for (i, l) in kids.iter().enumerate() {
            let last = i + 1 == kids.len();
            let mut line = format!(
                "{prefix}{} {} {}  {}  until {}  {}",
                if last { "└─" } else { "├─" },
                short(&l.link_id),
                l.holder_agent_id,
                scope(&l.capabilities),
                time(l.expires_at_ms),
                state(l.state)
            );
            if !l.revoke_reason.is_empty() {
                let _ = write!(line, " ({})", l.revoke_reason);
            }
            let _ = writeln!(out, "{line}");
            let next = format!("{prefix}{}", if last { "   " } else { "│  " });
            walk(out, children, &l.link_id, &next);
        }
    }
    walk(&mut out, &children, "", "");
    out
}

fn render_dot(task: &pb::Task, links: &[pb::LinkNode]) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = format!(
        "digraph \"task {}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n",
        task.task_id
    );
    for l in links {
        let color = match state(l.state) {
            "live" => "darkgreen",
            "revoked" => "red",
            _ => "gray",
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\\n{}\\n{}\", color={color}];",
            l.link_id,
            short(&l.link_id),
            esc(&l.holder_agent_id),
            esc(&scope(&l.capabilities)),
            state(l.state)
        );
        if !l.parent_link_id.is_empty() {
            let _ = writeln!(out, "  \"{}\" -> \"{}\";", l.parent_link_id, l.link_id);
        }
    }
    out.push_str("}\n");
    out
}

pub(crate) async fn run(args: TreeArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let resp = client
        .get_delegation_tree(pb::GetDelegationTreeRequest { task_id: args.task })
        .await?;
    let task = resp.task.unwrap_or_default();
    if conn.json {
        out!(
            "{}",
            json!({
                "task_id": task.task_id,
                "state": task_state(task.state),
                "requester": task.requester_agent_id,
                "deadline_ms": task.deadline_ms,
                "links": resp.links.iter().map(node_json).collect::<Vec<_>>(),
            })
        );
        return Ok(Outcome::Ok);
    }
    match args.format.as_str() {
        "text" => out_raw!("{}", render_text(&task, &resp.links)),
        "dot" => out_raw!("{}", render_dot(&task, &resp.links)),
        other => anyhow::bail!("unknown format `{other}` (text or dot)"),
    }
    Ok(Outcome::Ok)
}
