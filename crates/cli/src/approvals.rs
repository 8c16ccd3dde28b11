//! Grant requests waiting for people: `mandate approvals list|show|wait`, `approve`,
//! `deny`, and emergency access, `mandate break-glass`.

use std::path::PathBuf;

use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::Outcome;
use crate::client::{Connection, time};
use crate::input::{parse_cap, parse_ttl};
use crate::output::{print, task_json, write_new};

/// `mandate approvals ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum ApprovalsCommand {
    /// List requests (approvers, admins and auditors see all; others their own).
    List {
        /// `pending`, `approved`, `denied`, `expired` or `all`.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// Show one request; the requester also gets the chain once approved.
    Show {
        /// Task id.
        task: String,
        /// Also write the chain (text form) to this file once approved.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Wait until a request is decided (the requester); prints the chain when approved.
    Wait {
        /// Task id.
        task: String,
        /// Also write the chain (text form) to this file once approved.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `mandate approve` / `mandate deny`.
#[derive(clap::Args, Debug)]
pub(crate) struct DecideArgs {
    /// Task id of the pending request.
    task: String,
    /// The request hash you reviewed (from `approvals list` or `approvals show`).
    #[arg(long)]
    hash: String,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    comment: String,
}

/// `mandate break-glass`.
#[derive(clap::Args, Debug)]
pub(crate) struct BreakGlassArgs {
    /// Capability `RESOURCE:ACTION[,ACTION…]` (repeatable).
    #[arg(long = "cap", required = true)]
    caps: Vec<String>,
    /// Lifetime (capped at one hour by default).
    #[arg(long, default_value = "30m")]
    ttl: String,
    /// Why (required).
    #[arg(long)]
    reason: String,
    /// Incident or change ticket (required).
    #[arg(long)]
    ticket: String,
    /// Also write the chain (text form) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn state_name(s: i32) -> String {
    pb::ApprovalState::try_from(s)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("APPROVAL_STATE_")
                .to_lowercase()
        })
        .unwrap_or_default()
}

fn approval_json(a: &pb::Approval) -> Json {
    json!({
        "task_id": a.task_id,
        "requester": a.requester_agent_id,
        "request_hash": a.request_hash,
        "state": state_name(a.state),
        "intent": a.intent.as_ref().map(|i| i.text.clone()).unwrap_or_default(),
        "capabilities": a.capabilities.iter().map(|c| format!("{}:{}", c.resource, c.actions.join(","))).collect::<Vec<_>>(),
        "ttl_ms": a.ttl_ms,
        "max_depth": a.max_depth,
        "create_time_ms": a.create_time_ms,
        "expire_time_ms": a.expire_time_ms,
        "decided_by": a.decided_by,
        "comment": a.comment,
        "policy_ids": a.policy_ids,
    })
}

fn approval_text(a: &pb::Approval) -> String {
    let caps: Vec<String> = a
        .capabilities
        .iter()
        .map(|c| format!("{}:{}", c.resource, c.actions.join(",")))
        .collect();
    let mut s = format!(
        "task {}  {}  requested by {}\n  intent:   {}\n  asks:     {} for {} ms, depth {}\n  hash:     {}\n  expires:  {}\n  policies: {}",
        a.task_id,
        state_name(a.state),
        a.requester_agent_id,
        a.intent
            .as_ref()
            .map(|i| i.text.as_str())
            .unwrap_or_default(),
        caps.join(" "),
        a.ttl_ms,
        a.max_depth,
        a.request_hash,
        time(a.expire_time_ms),
        a.policy_ids.join(", "),
    );
    if !a.decided_by.is_empty() {
        s.push_str(&format!(
            "\n  decided:  by {} at {}: {}",
            a.decided_by,
            time(a.decide_time_ms),
            a.comment
        ));
    }
    s
}

/// Prints a request with its task and, once approved, its chain (also to `out`).
fn show_request(
    conn: &Connection,
    approval: Option<pb::Approval>,
    task: Option<pb::Task>,
    chain_text: &str,
    out: Option<&PathBuf>,
) -> anyhow::Result<Outcome> {
    let a = approval.unwrap_or_default();
    let t = task.unwrap_or_default();
    if let (Some(out), false) = (out, chain_text.is_empty()) {
        write_new(out, chain_text)?;
    }
    let mut j = approval_json(&a);
    j["task"] = task_json(&t);
    j["chain"] = json!(chain_text);
    print(conn.json, &j, || {
        if chain_text.is_empty() {
            approval_text(&a)
        } else {
            format!("{}\n{chain_text}", approval_text(&a))
        }
    });
    Ok(
        if matches!(
            pb::ApprovalState::try_from(a.state),
            Ok(pb::ApprovalState::Denied | pb::ApprovalState::Expired)
        ) {
            Outcome::Denied
        } else {
            Outcome::Ok
        },
    )
}

pub(crate) async fn approvals(cmd: ApprovalsCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    match cmd {
        ApprovalsCommand::List { state } => {
            let state = match state.as_str() {
                "all" => pb::ApprovalState::Unspecified,
                "pending" => pb::ApprovalState::Pending,
                "approved" => pb::ApprovalState::Approved,
                "denied" => pb::ApprovalState::Denied,
                "expired" => pb::ApprovalState::Expired,
                other => anyhow::bail!(
                    "unknown state `{other}` (pending, approved, denied, expired, all)"
                ),
            };
            let mut all = Vec::new();
            let mut token = String::new();
            loop {
                let r = client
                    .list_approvals(pb::ListApprovalsRequest {
                        state: state as i32,
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?;
                all.extend(r.approvals);
                if r.next_page_token.is_empty() {
                    break;
                }
                token = r.next_page_token;
            }
            if conn.json {
                for a in &all {
                    out!("{}", approval_json(a));
                }
            } else if all.is_empty() {
                out!("no requests");
            } else {
                for a in &all {
                    out!("{}", approval_text(a));
                }
            }
            Ok(Outcome::Ok)
        }
        ApprovalsCommand::Show { task, out } => {
            let r = client
                .get_approval(pb::GetApprovalRequest { task_id: task })
                .await?;
            show_request(conn, r.approval, r.task, &r.chain_text, out.as_ref())
        }
        ApprovalsCommand::Wait { task, out } => wait(&mut client, conn, task, out.as_ref()).await,
    }
}

/// Follows `WaitApproval` until the request is decided, then prints it.
pub(crate) async fn wait(
    client: &mut mandate_sdk::Client,
    conn: &Connection,
    task: String,
    out: Option<&PathBuf>,
) -> anyhow::Result<Outcome> {
    let mut stream = client
        .wait_approval(pb::WaitApprovalRequest { task_id: task })
        .await?;
    let mut last = None;
    while let Some(m) = stream.message().await? {
        let pending = m
            .approval
            .as_ref()
            .is_some_and(|a| a.state == pb::ApprovalState::Pending as i32);
        if pending && !conn.json {
            eprintln!("waiting for approval…");
        }
        last = Some(m);
    }
    let m =
        last.ok_or_else(|| anyhow::anyhow!("the coordinator ended the wait without an answer"))?;
    show_request(conn, m.approval, m.task, &m.chain_text, out)
}

pub(crate) async fn decide(
    args: DecideArgs,
    approve: bool,
    conn: &Connection,
) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let (a, t) = if approve {
        let r = client
            .approve(pb::ApproveRequest {
                task_id: args.task,
                request_hash: args.hash,
                comment: args.comment,
            })
            .await?;
        (r.approval, r.task)
    } else {
        let r = client
            .deny(pb::DenyRequest {
                task_id: args.task,
                request_hash: args.hash,
                comment: args.comment,
            })
            .await?;
        (r.approval, r.task)
    };
    let a = a.unwrap_or_default();
    let mut j = approval_json(&a);
    j["task"] = task_json(&t.unwrap_or_default());
    print(conn.json, &j, || approval_text(&a));
    Ok(Outcome::Ok)
}

pub(crate) async fn break_glass(a: BreakGlassArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let capabilities = a
        .caps
        .iter()
        .map(|c| parse_cap(c).map(|c| c.to_pb()))
        .collect::<anyhow::Result<_>>()?;
    let r = client
        .break_glass(pb::BreakGlassRequest {
            capabilities,
            ttl_ms: parse_ttl(&a.ttl)?,
            reason: a.reason,
            ticket: a.ticket,
            ..Default::default()
        })
        .await?;
    let t = r.task.unwrap_or_default();
    if let Some(out) = &a.out {
        write_new(out, &r.chain_text)?;
    }
    let mut j = task_json(&t);
    j["chain"] = json!(r.chain_text);
    print(conn.json, &j, || {
        format!(
            "BREAK-GLASS task {} granted until {} (audited at high severity; not delegable)\n{}",
            t.task_id,
            time(t.deadline_ms),
            r.chain_text
        )
    });
    Ok(Outcome::Ok)
}
