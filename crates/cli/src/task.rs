//! `mandate task start|show|list|complete|fail` and `mandate renew`.

use std::path::PathBuf;

use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::Outcome;
use crate::client::{Connection, time};
use crate::input::{parse_cap, parse_pairs, parse_ttl};
use crate::output::{print, print_with_chain, task_json};

/// `mandate task ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum TaskCommand {
    /// Start a task; prints the task id and the root chain.
    Start {
        /// Capability `RESOURCE:ACTION[,ACTION…]`, e.g. `files/*:read,write` (repeatable).
        #[arg(long = "cap", required = true)]
        caps: Vec<String>,
        /// Lifetime: `90s`, `5m`, `1h` or milliseconds.
        #[arg(long, default_value = "5m")]
        ttl: String,
        /// Delegation hops allowed below the root.
        #[arg(long, default_value_t = 1)]
        max_depth: u32,
        /// What the task is for.
        #[arg(long, default_value = "")]
        intent: String,
        /// Require online authorisation of every call.
        #[arg(long)]
        online: bool,
        /// Most allowed calls under the task, renewals included (implies --online).
        #[arg(long, default_value_t = 0)]
        max_uses: u32,
        /// Intent field `name=value` for policy and audit, e.g. `ticket=CHG-12` (repeatable).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Signal `name=value` for policy, e.g. `risk_score=20` (repeatable).
        #[arg(long = "signal")]
        signals: Vec<String>,
        /// When policy requires approval, wait for the decision (else print the request
        /// and return).
        #[arg(long)]
        wait: bool,
        /// Also write the chain (text form) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show one task.
    Show {
        /// Task id (hex).
        id: String,
    },
    /// List tasks.
    List {
        /// Only this requester's.
        #[arg(long, default_value = "")]
        requester: String,
    },
    /// Complete a task: its whole tree is revoked.
    Complete {
        /// Task id.
        id: String,
        /// Outcome.
        #[arg(long, default_value = "")]
        summary: String,
    },
    /// Fail a task: its whole tree is revoked.
    Fail {
        /// Task id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

pub(crate) async fn task(cmd: TaskCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    match cmd {
        TaskCommand::Start {
            caps,
            ttl,
            max_depth,
            intent,
            online,
            fields,
            signals,
            wait,
            out,
            max_uses,
        } => {
            let capabilities = caps
                .iter()
                .map(|c| parse_cap(c).map(|c| c.to_pb()))
                .collect::<anyhow::Result<_>>()?;
            let r = client
                .start_task(pb::StartTaskRequest {
                    signals: parse_pairs(&signals, "signal")?,
                    intent: Some(pb::Intent {
                        text: intent,
                        fields: parse_pairs(&fields, "field")?,
                    }),
                    capabilities,
                    ttl_ms: parse_ttl(&ttl)?,
                    max_depth,
                    require_online: online,
                    max_uses,
                })
                .await?;
            let t = r.task.unwrap_or_default();
            if !r.approval_request_hash.is_empty() {
                if wait {
                    return crate::approvals::wait(&mut client, conn, t.task_id, out.as_ref())
                        .await;
                }
                let mut j = task_json(&t);
                j["approval_request_hash"] = json!(r.approval_request_hash);
                j["policy_ids"] = json!(r.decision.map(|d| d.policy_ids).unwrap_or_default());
                print(conn.json, &j, || {
                    format!(
                        "task {} waits for approval (request hash {}).
An approver runs: mandate approve {} --hash {}
Wait with: mandate approvals wait {}",
                        t.task_id,
                        r.approval_request_hash,
                        t.task_id,
                        r.approval_request_hash,
                        t.task_id
                    )
                });
                return Ok(Outcome::Ok);
            }
            let summary = format!(
                "task {} started, deadline {}",
                t.task_id,
                time(t.deadline_ms)
            );
            print_with_chain(conn, task_json(&t), summary, &r.chain_text, out.as_deref())?;
        }
        TaskCommand::Show { id } => {
            let t = client
                .get_task(pb::GetTaskRequest { task_id: id })
                .await?
                .task
                .unwrap_or_default();
            let j = task_json(&t);
            print(conn.json, &j, || {
                format!(
                    "task {}  {}  requested by {}  deadline {}",
                    t.task_id,
                    j["state"],
                    t.requester_agent_id,
                    time(t.deadline_ms)
                )
            });
        }
        TaskCommand::List { requester } => {
            let r = client
                .list_tasks(pb::ListTasksRequest {
                    page_size: 1000,
                    requester_agent_id: requester,
                    ..Default::default()
                })
                .await?;
            if conn.json {
                out!("{}", Json::Array(r.tasks.iter().map(task_json).collect()));
            } else {
                for t in &r.tasks {
                    out!(
                        "{}  {:<10} {}",
                        t.task_id,
                        task_json(t)["state"].as_str().unwrap_or(""),
                        t.requester_agent_id
                    );
                }
            }
        }
        TaskCommand::Complete { id, summary } => {
            let r = client
                .complete_task(pb::CompleteTaskRequest {
                    task_id: id,
                    summary,
                })
                .await?;
            print_ended(
                conn,
                r.task.unwrap_or_default(),
                &r.revoked_link_ids,
                "completed",
            );
        }
        TaskCommand::Fail { id, reason } => {
            let r = client
                .fail_task(pb::FailTaskRequest {
                    task_id: id,
                    reason,
                })
                .await?;
            print_ended(
                conn,
                r.task.unwrap_or_default(),
                &r.revoked_link_ids,
                "failed",
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Prints a task that just ended and the links its end revoked.
fn print_ended(conn: &Connection, t: pb::Task, revoked: &[String], how: &str) {
    let mut j = task_json(&t);
    j["revoked_link_ids"] = json!(revoked);
    print(conn.json, &j, || {
        format!(
            "task {} {how}; revoked {} link(s)",
            t.task_id,
            revoked.len()
        )
    });
}

pub(crate) async fn renew(task: String, ttl: String, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let r = client
        .renew_grant(pb::RenewGrantRequest {
            signals: Default::default(),
            task_id: task,
            ttl_ms: parse_ttl(&ttl)?,
        })
        .await?;
    print(
        conn.json,
        &json!({ "link_id": r.link_id, "chain": r.chain_text }),
        || format!("new root link {}\n{}", r.link_id, r.chain_text),
    );
    Ok(Outcome::Ok)
}
