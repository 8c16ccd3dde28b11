//! `mandate audit ...`: query, follow, verify and export the audit log.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use mandate_proto::v1 as pb;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

use crate::Outcome;
use crate::client::{Connection, time};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Print records matching a filter.
    Query(QueryArgs),
    /// Print the newest records and, with --follow, every new one as it is written.
    Tail(TailArgs),
    /// Recompute the hash chain and report the first broken record.
    Verify(VerifyArgs),
    /// Write records as JSON lines to a file.
    Export(ExportArgs),
}

#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct FilterArgs {
    /// Only this task (hex id).
    #[arg(long)]
    task: Option<String>,
    /// Only records where this agent acted or is named.
    #[arg(long)]
    agent_id: Option<String>,
    /// Only records naming this link (hex id).
    #[arg(long)]
    link: Option<String>,
    /// Only actions starting with this (e.g. `link.` or `grant.issued`).
    #[arg(long)]
    action: Option<String>,
    /// Only records at or after this time (Unix ms).
    #[arg(long)]
    since: Option<u64>,
    /// Only records before this time (Unix ms).
    #[arg(long)]
    until: Option<u64>,
    /// Only records of at least this severity: info, notice or high.
    #[arg(long)]
    severity: Option<String>,
}

impl FilterArgs {
    fn to_pb(&self) -> anyhow::Result<pb::AuditFilter> {
        let min_severity = match self.severity.as_deref() {
            None => pb::AuditSeverity::Unspecified,
            Some("info") => pb::AuditSeverity::Info,
            Some("notice") => pb::AuditSeverity::Notice,
            Some("high") => pb::AuditSeverity::High,
            Some(other) => anyhow::bail!("unknown severity `{other}` (info, notice or high)"),
        };
        Ok(pb::AuditFilter {
            task_id: self.task.clone().unwrap_or_default(),
            agent_id: self.agent_id.clone().unwrap_or_default(),
            link_id: self.link.clone().unwrap_or_default(),
            action_prefix: self.action.clone().unwrap_or_default(),
            since_ms: self.since.unwrap_or(0),
            until_ms: self.until.unwrap_or(0),
            min_severity: min_severity.into(),
        })
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Most records to print.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Start after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
}

#[derive(clap::Args, Debug)]
pub(crate) struct TailArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// How many of the newest records to print first.
    #[arg(short = 'n', long, default_value_t = 10)]
    lines: u64,
    /// Keep printing new records as they are written.
    #[arg(short, long)]
    follow: bool,
}

#[derive(clap::Args, Debug)]
pub(crate) struct VerifyArgs {
    /// First sequence number to check.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Last sequence number to check (0: the head).
    #[arg(long, default_value_t = 0)]
    to: u64,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// File to write (refuses to overwrite).
    #[arg(long)]
    out: PathBuf,
    /// Start after this sequence number.
    #[arg(long, default_value_t = 0)]
    after: u64,
}

fn severity(s: i32) -> &'static str {
    match pb::AuditSeverity::try_from(s) {
        Ok(pb::AuditSeverity::Info) => "info",
        Ok(pb::AuditSeverity::Notice) => "notice",
        Ok(pb::AuditSeverity::High) => "high",
        _ => "unknown",
    }
}

pub(crate) fn record_json(r: &pb::AuditRecord) -> Value {
    json!({
        "seq": r.seq,
        "time_ms": r.time_ms,
        "actor": r.actor,
        "action": r.action,
        "task_id": r.task_id,
        "link_ids": r.link_ids,
        "decision": r.decision,
        "reason": r.reason,
        "policy_ids": r.policy_ids,
        "policy_hash": r.policy_hash,
        "severity": severity(r.severity),
        "detail": r.detail,
        "prev_hash": r.prev_hash,
        "hash": r.hash,
    })
}

fn print_record(r: &pb::AuditRecord, as_json: bool) {
    let mut out = std::io::stdout().lock();
    if as_json {
        let line = mandate_store::json_line(&record_json(r)).unwrap_or_default();
        let _ = writeln!(out, "{line}");
        return;
    }
    let links = match r.link_ids.len() {
        0 => String::new(),
        1 => format!(" link {}", r.link_ids[0]),
        n => format!(" {n} links"),
    };
    let task = if r.task_id.is_empty() {
        String::new()
    } else {
        format!(" task {}", r.task_id)
    };
    let decision = if r.decision.is_empty() {
        String::new()
    } else {
        format!(" [{}]", r.decision)
    };
    let reason = if r.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", r.reason)
    };
    let _ = writeln!(
        out,
        "#{:<6} {} {:<6} {:<22} by {}{task}{links}{decision}{reason}",
        r.seq,
        time(r.time_ms),
        severity(r.severity),
        r.action,
        r.actor
    );
}

pub(crate) async fn run(cmd: AuditCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    match cmd {
        AuditCommand::Query(a) => {
            let filter = a.filter.to_pb()?;
            let mut token = if a.after > 0 {
                a.after.to_string()
            } else {
                String::new()
            };
            let mut printed = 0;
            while printed < a.limit {
                let page = client
                    .query_audit_log(pb::QueryAuditLogRequest {
                        filter: Some(filter.clone()),
                        page_size: u32::try_from((a.limit - printed).min(1000)).unwrap_or(1000),
                        page_token: token,
                    })
                    .await?;
                for r in &page.records {
                    print_record(r, conn.json);
                }
                printed += page.records.len();
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            Ok(Outcome::Ok)
        }
        AuditCommand::Tail(a) => {
            let head = client
                .query_audit_log(pb::QueryAuditLogRequest {
                    page_size: 1,
                    ..Default::default()
                })
                .await?
                .head_seq;
            let after = head.saturating_sub(a.lines);
            let filter = a.filter.to_pb()?;
            if a.follow {
                let mut stream = client
                    .watch_audit_log(pb::WatchAuditLogRequest {
                        filter: Some(filter),
                        after_seq: after,
                    })
                    .await?;
                while let Some(msg) = stream.next().await {
                    if let Some(r) = msg?.record {
                        print_record(&r, conn.json);
                    }
                }
            } else {
                let page = client
                    .query_audit_log(pb::QueryAuditLogRequest {
                        filter: Some(filter),
                        page_size: 1000,
                        page_token: after.to_string(),
                    })
                    .await?;
                for r in &page.records {
                    print_record(r, conn.json);
                }
            }
            Ok(Outcome::Ok)
        }
        AuditCommand::Verify(a) => {
            let v = client
                .verify_audit_log(pb::VerifyAuditLogRequest {
                    from_seq: a.from,
                    to_seq: a.to,
                })
                .await?;
            if conn.json {
                out!(
                    "{}",
                    json!({
                        "intact": v.intact,
                        "checked": v.checked,
                        "first_broken_seq": if v.intact { Value::Null } else { json!(v.first_broken_seq) },
                        "problem": v.problem,
                        "head_seq": v.head_seq,
                        "head_hash": v.head_hash,
                    })
                );
            } else if v.intact {
                out!(
                    "intact: {} records checked; head #{} {}",
                    v.checked,
                    v.head_seq,
                    v.head_hash
                );
            } else {
                out!(
                    "BROKEN at record #{}: {} ({} records before it verified)",
                    v.first_broken_seq,
                    v.problem,
                    v.checked
                );
            }
            Ok(if v.intact {
                Outcome::Ok
            } else {
                Outcome::Denied
            })
        }
        AuditCommand::Export(a) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&a.out)
                .with_context(|| format!("cannot create `{}`", a.out.display()))?;
            let mut stream = client
                .export_audit_log(pb::ExportAuditLogRequest {
                    filter: Some(a.filter.to_pb()?),
                    after_seq: a.after,
                })
                .await?;
            let mut lines = 0usize;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                lines += chunk.jsonl.iter().filter(|b| **b == b'\n').count();
                file.write_all(&chunk.jsonl)?;
            }
            file.sync_all()?;
            if conn.json {
                out!(
                    "{}",
                    json!({ "records": lines, "path": a.out.display().to_string() })
                );
            } else {
                out!("wrote {lines} records to {}", a.out.display());
            }
            Ok(Outcome::Ok)
        }
    }
}
