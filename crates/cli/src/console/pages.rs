//! The console's pages: plain server-rendered HTML, every value escaped.

use std::fmt::Write as _;

use mandate_proto::v1 as pb;

use super::graph;
use crate::client::time;

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Never a raw line break: a row travels as one server-sent event line.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a path segment or query value (ids go into URLs this way, whatever
/// they hold).
pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// What every page knows: who is operating, whether actions are allowed, the form token.
pub(crate) struct Frame<'a> {
    pub(crate) operator: &'a str,
    pub(crate) read_only: bool,
    pub(crate) csrf: &'a str,
    pub(crate) server: &'a str,
}

impl Frame<'_> {
    /// A form posting to `action` with the CSRF token, or nothing in read-only mode.
    fn form(&self, action: &str, class: &str, fields: &str, button: &str) -> String {
        if self.read_only {
            return String::new();
        }
        format!(
            r#"<form method="post" action="{}" class="{class}"><input type="hidden" name="csrf" value="{}">{fields}<button type="submit">{}</button></form>"#,
            esc(action),
            esc(self.csrf),
            esc(button)
        )
    }
}

/// The page around `body`.
pub(crate) fn page(frame: &Frame<'_>, title: &str, notice: Option<&str>, body: &str) -> String {
    let nav = [
        ("/tasks", "Tasks"),
        ("/agents", "Agents"),
        ("/approvals", "Approvals"),
        ("/audit", "Audit log"),
        ("/access", "Access review"),
    ]
    .iter()
    .map(|(href, name)| format!(r#"<a href="{href}">{name}</a>"#))
    .collect::<String>();
    let mode = if frame.read_only { " · read-only" } else { "" };
    let notice = notice
        .map(|n| format!(r#"<p class="notice">{}</p>"#, esc(n)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} · Mandate</title><link rel="stylesheet" href="/console.css"><script src="/console.js" defer></script></head><body><header><strong>Mandate</strong><nav>{nav}</nav><span class="who">{op} on {server}{mode}</span></header><main><h1>{title}</h1>{notice}{body}</main></body></html>"#,
        title = esc(title),
        op = esc(frame.operator),
        server = esc(frame.server),
    )
}

fn intent(i: Option<&pb::Intent>) -> String {
    i.map(|i| i.text.clone()).unwrap_or_default()
}

fn caps(c: &[mandate_core::pb::Capability]) -> String {
    c.iter()
        .map(|c| format!("{}: {}", c.resource, c.actions.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn task_state(s: i32) -> &'static str {
    match pb::TaskState::try_from(s) {
        Ok(pb::TaskState::Active) => "active",
        Ok(pb::TaskState::Completed) => "completed",
        Ok(pb::TaskState::Failed) => "failed",
        Ok(pb::TaskState::PendingApproval) => "pending approval",
        Ok(pb::TaskState::Revoked) => "revoked",
        Ok(pb::TaskState::Expired) => "expired",
        _ => "unknown",
    }
}

/// Live tasks, newest first.
pub(crate) fn tasks(tasks: &[pb::Task]) -> String {
    let mut s = String::from(
        "<table><thead><tr><th>Task</th><th>Requester</th><th>Intent</th><th>State</th><th>Started</th><th>Deadline</th></tr></thead><tbody>",
    );
    for t in tasks {
        let _ = write!(
            s,
            r#"<tr class="task {state}"><td><a href="/tasks/{id}">{short}</a></td><td>{req}</td><td>{intent}</td><td>{state}</td><td>{start}</td><td>{end}</td></tr>"#,
            id = esc(&urlencode(&t.task_id)),
            short = esc(t.task_id.get(..12).unwrap_or(&t.task_id)),
            req = esc(&t.requester_agent_id),
            intent = esc(&intent(t.intent.as_ref())),
            state = task_state(t.state),
            start = time(t.create_time_ms),
            end = time(t.deadline_ms),
        );
    }
    if tasks.is_empty() {
        s.push_str(r#"<tr><td colspan="6">No live task.</td></tr>"#);
    }
    s.push_str("</tbody></table>");
    s
}

/// One task: its tree drawn, then every link with its actions.
pub(crate) fn tree(frame: &Frame<'_>, t: &pb::GetDelegationTreeResponse) -> String {
    let task = t.task.clone().unwrap_or_default();
    let mut s = format!(
        r#"<p>Requested by <b>{}</b>: {} · <span class="state">{}</span> · deadline {}</p>"#,
        esc(&task.requester_agent_id),
        esc(&intent(task.intent.as_ref())),
        task_state(task.state),
        time(task.deadline_ms)
    );
    if task.state == pb::TaskState::Active as i32 {
        let base = format!("/tasks/{}", urlencode(&task.task_id));
        s.push_str(&frame.form(&format!("{base}/complete"), "inline", "", "Complete task"));
        s.push_str(&frame.form(
            &format!("{base}/fail"),
            "inline",
            r#"<input name="reason" placeholder="why" required>"#,
            "Fail task",
        ));
    }
    s.push_str(r#"<div class="graph">"#);
    s.push_str(&graph::tree(&t.links));
    s.push_str("</div><table><thead><tr><th>Link</th><th>Holder</th><th>Capabilities</th><th>State</th><th>Expires</th><th></th></tr></thead><tbody>");
    for l in &t.links {
        let state = graph::state_name(l.state);
        let revoke = if state == "live" {
            frame.form(
                &format!(
                    "/links/{}/revoke?task={}",
                    urlencode(&l.link_id),
                    urlencode(&task.task_id)
                ),
                "inline",
                r#"<input name="reason" placeholder="reason" value="revoked from the console">"#,
                "Revoke",
            )
        } else if !l.revoke_reason.is_empty() {
            esc(&l.revoke_reason)
        } else {
            String::new()
        };
        let _ = write!(
            s,
            r#"<tr id="link-{id}" class="link {state}"><td class="indent d{depth}">{short}</td><td>{holder}</td><td>{caps}</td><td>{state}</td><td>{exp}</td><td>{revoke}</td></tr>"#,
            id = esc(&l.link_id),
            short = esc(l.link_id.get(..12).unwrap_or(&l.link_id)),
            depth = l.depth.min(15),
            holder = esc(&l.holder_agent_id),
            caps = esc(&caps(&l.capabilities)),
            exp = time(l.expires_at_ms),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// Registered agents.
pub(crate) fn agents(agents: &[pb::Agent]) -> String {
    let mut s = String::from(
        "<table><thead><tr><th>Agent</th><th>Role</th><th>Owner</th><th>Parent</th><th>Status</th><th>Registered</th></tr></thead><tbody>",
    );
    for a in agents {
        let status = if a.status == pb::AgentStatus::Disabled as i32 {
            "disabled"
        } else {
            "active"
        };
        let _ = write!(
            s,
            r#"<tr class="agent {status}"><td>{id}</td><td>{role}</td><td>{owner}</td><td>{parent}</td><td>{status}</td><td>{at}</td></tr>"#,
            id = esc(&a.agent_id),
            role = esc(&a.role),
            owner = esc(&a.owner),
            parent = esc(&a.parent_agent_id),
            at = time(a.create_time_ms),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// Grant requests waiting for a decision, with approve and deny.
pub(crate) fn approvals(frame: &Frame<'_>, pending: &[pb::Approval]) -> String {
    if pending.is_empty() {
        return "<p>No request is waiting for approval.</p>".into();
    }
    let mut s = String::from(
        "<table><thead><tr><th>Task</th><th>Requester</th><th>Intent</th><th>Asks for</th><th>Expires</th><th>Request hash</th><th></th></tr></thead><tbody>",
    );
    for a in pending {
        let fields = format!(
            r#"<input type="hidden" name="request_hash" value="{}"><input name="comment" placeholder="comment">"#,
            esc(&a.request_hash)
        );
        let actions = format!(
            "{}{}",
            frame.form(
                &format!("/approvals/{}/approve", urlencode(&a.task_id)),
                "inline approve",
                &fields,
                "Approve"
            ),
            frame.form(
                &format!("/approvals/{}/deny", urlencode(&a.task_id)),
                "inline deny",
                &fields,
                "Deny"
            )
        );
        let _ = write!(
            s,
            r#"<tr class="approval" data-task="{id}"><td>{short}</td><td>{req}</td><td>{intent}</td><td>{caps} for {ttl}s</td><td>{exp}</td><td><code>{hash}</code></td><td>{actions}</td></tr>"#,
            id = esc(&a.task_id),
            short = esc(a.task_id.get(..12).unwrap_or(&a.task_id)),
            req = esc(&a.requester_agent_id),
            intent = esc(&intent(a.intent.as_ref())),
            caps = esc(&caps(&a.capabilities)),
            ttl = a.ttl_ms / 1000,
            exp = time(a.expire_time_ms),
            hash = esc(a.request_hash.get(..16).unwrap_or(&a.request_hash)),
        );
    }
    s.push_str("</tbody></table>");
    s
}

/// One audit record as a table row (also what the live stream appends).
pub(crate) fn audit_row(r: &pb::AuditRecord) -> String {
    let severity = match pb::AuditSeverity::try_from(r.severity) {
        Ok(pb::AuditSeverity::High) => "high",
        Ok(pb::AuditSeverity::Notice) => "notice",
        _ => "info",
    };
    format!(
        r#"<tr class="record {severity}"><td>{seq}</td><td>{at}</td><td>{actor}</td><td>{action}</td><td>{decision}</td><td>{task}</td><td>{reason}</td></tr>"#,
        seq = r.seq,
        at = time(r.time_ms),
        actor = esc(&r.actor),
        action = esc(&r.action),
        decision = esc(&r.decision),
        task = esc(r.task_id.get(..12).unwrap_or(&r.task_id)),
        reason = esc(&r.reason),
    )
}

/// The audit log: filters, the newest records, and a live stream appended below.
pub(crate) fn audit(filter: &pb::AuditFilter, query: &str, records: &[pb::AuditRecord]) -> String {
    let mut s = format!(
        r#"<form method="get" action="/audit" class="filters"><input name="action" placeholder="action prefix" value="{}"><input name="agent" placeholder="agent" value="{}"><input name="task" placeholder="task" value="{}"><select name="severity"><option value="">any severity</option><option value="notice"{}>notice and above</option><option value="high"{}>high</option></select><button type="submit">Filter</button></form><table><thead><tr><th>#</th><th>Time</th><th>Actor</th><th>Action</th><th>Decision</th><th>Task</th><th>Reason</th></tr></thead><tbody id="audit" data-stream="/audit/stream?{}">"#,
        esc(&filter.action_prefix),
        esc(&filter.agent_id),
        esc(&filter.task_id),
        if filter.min_severity == pb::AuditSeverity::Notice as i32 {
            " selected"
        } else {
            ""
        },
        if filter.min_severity == pb::AuditSeverity::High as i32 {
            " selected"
        } else {
            ""
        },
        esc(query),
    );
    for r in records {
        s.push_str(&audit_row(r));
    }
    s.push_str(r#"</tbody></table><p class="small" id="live">Following new records…</p>"#);
    s
}

/// The access review: who can, and the exposure report with its chart.
pub(crate) fn access(
    who: Option<(&str, &str, &pb::WhoCanResponse)>,
    report: &pb::ExposureReportResponse,
    window: &str,
) -> String {
    let (action, resource) = who.map_or(("", ""), |(a, r, _)| (a, r));
    let mut s = format!(
        r#"<h2>Who can do it right now</h2><form method="get" action="/access" class="filters"><input name="action" placeholder="action" value="{}" required><input name="resource" placeholder="resource" value="{}" required><input type="hidden" name="window" value="{}"><button type="submit">Who can?</button></form>"#,
        esc(action),
        esc(resource),
        esc(window)
    );
    if let Some((_, _, w)) = who {
        if w.links.is_empty() {
            s.push_str(r#"<p class="nobody">Nobody: no live link permits this call.</p>"#);
        } else {
            s.push_str("<table><thead><tr><th>Holder</th><th>Kind</th><th>Task</th><th>Chain</th><th>Time left</th></tr></thead><tbody>");
            for l in &w.links {
                let _ = write!(
                    s,
                    r#"<tr class="who"><td>{}</td><td>{}</td><td><a href="/tasks/{}">{}</a> {}</td><td>{}</td><td>{}s</td></tr>"#,
                    esc(&l.holder_agent_id),
                    esc(&l.kind),
                    esc(&urlencode(&l.task_id)),
                    esc(l.task_id.get(..12).unwrap_or(&l.task_id)),
                    esc(&l.intent),
                    esc(&l
                        .path
                        .iter()
                        .map(|p| p.get(..8).unwrap_or(p))
                        .collect::<Vec<_>>()
                        .join(" › ")),
                    l.remaining_ms / 1000
                );
            }
            s.push_str("</tbody></table>");
        }
    }
    let _ = write!(
        s,
        r#"<h2>Exposure, {} to {}</h2><form method="get" action="/access" class="filters"><select name="window">{}</select><button type="submit">Report</button></form><p class="small">Live links (bars) and agents holding authority (line) over the window.</p><div class="graph">{}</div>"#,
        time(report.from_ms),
        time(report.to_ms),
        ["1h", "6h", "24h"]
            .iter()
            .map(|w| format!(
                r#"<option value="{w}"{}>last {w}</option>"#,
                if *w == window { " selected" } else { "" }
            ))
            .collect::<String>(),
        graph::timeline(&report.timeline)
    );
    for (title, rows, agent) in [
        ("Agents", &report.agents, true),
        ("Resource patterns", &report.resources, false),
    ] {
        let _ = write!(
            s,
            "<h3>{title}</h3><table class=\"exposure\"><thead><tr><th>{}</th><th>Privilege</th><th>Grants</th><th>Longest span</th><th>Break-glass</th><th></th></tr></thead><tbody>",
            if agent { "Agent" } else { "Resource" }
        );
        for r in rows.iter() {
            let _ = write!(
                s,
                r#"<tr class="{cls}"><td>{name}</td><td>{p}</td><td>{g}</td><td>{span}</td><td>{bg}</td><td>{flag}</td></tr>"#,
                cls = if r.standing { "standing" } else { "" },
                name = esc(if agent { &r.agent_id } else { &r.resource }),
                p = minutes(r.privilege_ms),
                g = r.grants,
                span = minutes(r.longest_span_ms),
                bg = if r.break_glass_grants > 0 {
                    format!("{} ({})", minutes(r.break_glass_ms), r.break_glass_grants)
                } else {
                    "-".into()
                },
                flag = if r.standing { "standing privilege" } else { "" },
            );
        }
        s.push_str("</tbody></table>");
    }
    s
}

fn minutes(ms: u64) -> String {
    let m = ms / 60_000;
    if m >= 60 {
        format!("{}h {:02}m", m / 60, m % 60)
    } else {
        format!("{m}m {:02}s", (ms / 1000) % 60)
    }
}

/// The stylesheet (served from the binary).
pub(crate) const CSS: &str = r#"
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{display:flex;gap:1.5em;align-items:center;padding:.7em 1.2em;background:#1d2733;color:#fff}
header nav a{color:#cfe3ff;margin-right:1em;text-decoration:none}
header .who{margin-left:auto;font-size:12px;color:#aab}
main{padding:1em 1.5em}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0 1.5em}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef1f4;font-weight:600}
tr.revoked td,tr.expired td{color:#8a8f96}
tr.revoked td:nth-child(4){color:#b3261e;font-weight:600}
tr.standing td{background:#fff4e5}
tr.record.high td{background:#fdecea}
td.d1{padding-left:1.8em}td.d2{padding-left:3em}td.d3{padding-left:4.2em}td.d4{padding-left:5.4em}td.d5,td.d6,td.d7,td.d8,td.d9,td.d10,td.d11,td.d12,td.d13,td.d14,td.d15{padding-left:6.6em}
form.inline{display:inline-block;margin-right:.3em}
form.filters{margin:.5em 0}
input,select,button{font:inherit;padding:.25em .5em}
button{cursor:pointer}
.notice{background:#e7f4e8;border:1px solid #9ccc9f;padding:.5em .8em}
.small{font-size:12px;fill:#555;color:#555}
.graph{overflow:auto;background:#fff;border:1px solid #e3e6ea;padding:.5em;margin:.5em 0 1em}
svg .edge{fill:none;stroke:#8a94a3;stroke-width:1.5}
svg .node rect{fill:#e8f1fd;stroke:#2f6fbf;stroke-width:1.5}
svg .node.revoked rect{fill:#fdecea;stroke:#b3261e;stroke-dasharray:5 3}
svg .node.expired rect{fill:#f0f0f0;stroke:#999;stroke-dasharray:2 3}
svg text{font:13px system-ui,sans-serif;fill:#1d2733}
svg .bar{fill:#9cc1ee}
svg .agents{fill:none;stroke:#b3261e;stroke-width:2}
svg .axis{stroke:#999}
"#;

/// The script: appends records from the audit stream (server-sent events) as they come.
pub(crate) const JS: &str = r#"
document.addEventListener('DOMContentLoaded', () => {
  const body = document.getElementById('audit');
  if (!body || !window.EventSource) return;
  let last = 0;
  body.querySelectorAll('tr.record td:first-child').forEach(td => { last = Math.max(last, +td.textContent); });
  const source = new EventSource(body.dataset.stream + '&after=' + last);
  source.onmessage = e => {
    const t = document.createElement('tbody');
    t.innerHTML = e.data;
    const row = t.firstElementChild;
    if (row) body.appendChild(row);
  };
  source.onerror = () => { const l = document.getElementById('live'); if (l) l.textContent = 'Stream interrupted; reload to follow again.'; };
});
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_quotes_and_line_breaks() {
        // A line break would end a server-sent event's data line.
        assert_eq!(
            esc("<a href=\"x\">'&'</a>\r\nevent: z"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;&#13;&#10;event: z"
        );
        assert_eq!(urlencode("ab/..?x=1#"), "ab%2F..%3Fx%3D1%23");
    }
}
