//! `mandate audit ...`: query, follow, verify and export the audit log.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use mandate_proto::v1 as pb;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;

use mandate_store::AuditCheckpoint;

use crate::Outcome;
use crate::client::{Connection, time};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum AuditCommand {
    /// Print records matching a filter.
    Query(QueryArgs),
    /// Print the newest records and, with --follow, every new one as it is written.
    Tail(TailArgs),
    /// Recompute the hash chain and report the first broken record; with --checkpoint,
    /// also check the log (or an --export file) against a signed checkpoint kept elsewhere.
    Verify(VerifyArgs),
    /// Get a checkpoint of the log signed by the coordinator, to keep somewhere the
    /// coordinator cannot write.
    Checkpoint(CheckpointArgs),
    /// Write records as JSON lines to a file.
    Export(ExportArgs),
    /// Remove the oldest records past their retention (whole sealed segments), on the
    /// running coordinator, after a signed `audit.pruned` record of what goes (admins).
    Prune(PruneArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct PruneArgs {
    /// Remove the sealed segments that end before this record.
    #[arg(long)]
    pub(crate) before: u64,
    /// First write the records that go to this file as JSON lines (refuses to overwrite;
    /// `mandate audit verify --export` reads it back), and prune only what it holds.
    #[arg(long)]
    pub(crate) archive_to: Option<PathBuf>,
    /// Say what would go; remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
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
    /// A checkpoint file (`mandate audit checkpoint --out`): the record it names must be
    /// in the log with the hash it signed.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Check this exported file (`mandate audit export`) offline instead of the live log
    /// (with --checkpoint and --trust-key: offline, nothing else vouches for the key).
    #[arg(long, requires_all = ["checkpoint", "trust_keys"])]
    export: Option<PathBuf>,
    /// A coordinator key (hex) the checkpoint must be signed by (repeatable; required with
    /// --export). Live checks also accept a key of the coordinator's trust bundle.
    #[arg(long = "trust-key")]
    trust_keys: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct CheckpointArgs {
    /// Write the checkpoint to this file (refuses to overwrite) instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
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
    if let AuditCommand::Verify(a) = &cmd
        && let Some(export) = &a.export
    {
        return verify_export(a, export, conn);
    }
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
        AuditCommand::Checkpoint(a) => {
            let r = client
                .checkpoint_audit_log(pb::CheckpointAuditLogRequest {})
                .await?;
            let cp = AuditCheckpoint::from_parts(
                r.seq,
                r.hash,
                r.time_ms,
                &r.coordinator_key,
                &r.signature,
            );
            let text = serde_json::to_string_pretty(&cp)?;
            match a.out {
                Some(path) => {
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .with_context(|| format!("cannot create `{}`", path.display()))?;
                    writeln!(file, "{text}")?;
                    file.sync_all()?;
                    out!(
                        "checkpoint of record #{} written to {}",
                        cp.seq,
                        path.display()
                    );
                }
                None => out!("{text}"),
            }
            Ok(Outcome::Ok)
        }
        AuditCommand::Verify(a) => {
            let mut matched = None;
            if let Some(path) = &a.checkpoint {
                let cp = read_checkpoint(path)?;
                let bundle = client
                    .get_trust_bundle(pb::GetTrustBundleRequest {})
                    .await?;
                let (cp_key, _) = cp.key_and_signature()?;
                let trusted = bundle.keys.iter().any(|k| {
                    k.public_key == cp_key
                        && k.not_before_ms <= cp.time_ms
                        && cp.time_ms < k.not_after_ms
                }) || a.trust_keys.contains(&cp.coordinator_key);
                if !trusted {
                    return checkpoint_result(
                        conn,
                        &cp,
                        Err(format!(
                            "signed by {}, which is not a coordinator key trusted at its time",
                            cp.coordinator_key
                        )),
                    );
                }
                let found = client
                    .query_audit_log(pb::QueryAuditLogRequest {
                        filter: None,
                        page_size: 1,
                        page_token: cp.seq.saturating_sub(1).to_string(),
                    })
                    .await?;
                let at = found.records.into_iter().next().filter(|r| r.seq == cp.seq);
                let verdict = match at {
                    _ if cp.seq == 0 => Ok(()),
                    None => Err(format!(
                        "record #{} is not in the log (head #{}): the log was truncated",
                        cp.seq, found.head_seq
                    )),
                    Some(r) if r.hash != cp.hash => Err(format!(
                        "record #{} has hash {}, the checkpoint signed {}: the log was rewritten",
                        cp.seq, r.hash, cp.hash
                    )),
                    Some(_) => Ok(()),
                };
                if verdict.is_err() {
                    return checkpoint_result(conn, &cp, verdict);
                }
                // The record matches; the chain check below ties every record up to the
                // head to it.
                matched = Some(cp);
            }
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
                        "checkpoint_seq": matched.as_ref().map(|c| c.seq),
                    })
                );
            } else if v.intact {
                out!(
                    "intact: {} records checked; head #{} {}",
                    v.checked,
                    v.head_seq,
                    v.head_hash
                );
                if let Some(cp) = &matched {
                    out!(
                        "checkpoint #{} matches (signed by {})",
                        cp.seq,
                        cp.coordinator_key
                    );
                }
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
        AuditCommand::Prune(a) => crate::prune::online(&mut client, &a, conn).await,
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

/// Reads a checkpoint file and checks its signature against the key it names.
fn read_checkpoint(path: &std::path::Path) -> anyhow::Result<AuditCheckpoint> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the checkpoint `{}`", path.display()))?;
    let cp: AuditCheckpoint = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a checkpoint", path.display()))?;
    cp.verify()
        .with_context(|| format!("checkpoint `{}`", path.display()))?;
    Ok(cp)
}

/// Prints the outcome of a checkpoint check (exit 1 when the log does not match).
fn checkpoint_result(
    conn: &Connection,
    cp: &AuditCheckpoint,
    verdict: Result<(), String>,
) -> anyhow::Result<Outcome> {
    if conn.json {
        out!(
            "{}",
            json!({
                "intact": verdict.is_ok(),
                "checkpoint_seq": cp.seq,
                "checkpoint_key": cp.coordinator_key,
                "problem": verdict.as_ref().err(),
            })
        );
    } else {
        match &verdict {
            Ok(()) => out!(
                "checkpoint #{} matches (signed by {})",
                cp.seq,
                cp.coordinator_key
            ),
            Err(problem) => out!("BROKEN against checkpoint #{}: {problem}", cp.seq),
        }
    }
    Ok(if verdict.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Denied
    })
}

/// `mandate audit verify --checkpoint CP --export FILE`: recomputes the chain of an exported
/// file offline (it must start at record 1, or the checkpoint's record must be in it) and
/// checks the checkpoint's record.
fn verify_export(
    a: &VerifyArgs,
    export: &std::path::Path,
    conn: &Connection,
) -> anyhow::Result<Outcome> {
    use std::io::BufRead as _;
    let Some(path) = &a.checkpoint else {
        anyhow::bail!("--export needs --checkpoint");
    };
    let cp = read_checkpoint(path)?;
    if !a.trust_keys.contains(&cp.coordinator_key) {
        return checkpoint_result(
            conn,
            &cp,
            Err(format!(
                "signed by {}, which is not one of the --trust-key keys",
                cp.coordinator_key
            )),
        );
    }
    let file = std::fs::File::open(export)
        .with_context(|| format!("cannot read `{}`", export.display()))?;
    let mut check: Option<mandate_store::ChainCheck> = None;
    let mut matched = cp.seq == 0;
    let mut count = 0u64;
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        let record: mandate_store::AuditRecord =
            serde_json::from_str(&line).with_context(|| {
                format!("`{}` line {}: not an audit record", export.display(), n + 1)
            })?;
        let check = check.get_or_insert_with(|| {
            mandate_store::ChainCheck::new(record.seq, record.prev_hash.clone())
        });
        if let Err((seq, problem)) = check.push(&record) {
            return checkpoint_result(conn, &cp, Err(format!("record #{seq}: {problem}")));
        }
        count += 1;
        if record.seq == cp.seq {
            if record.hash != cp.hash {
                return checkpoint_result(
                    conn,
                    &cp,
                    Err(format!(
                        "record #{} has hash {}, the checkpoint signed {}: the log was rewritten",
                        cp.seq, record.hash, cp.hash
                    )),
                );
            }
            matched = true;
        }
    }
    let first = check.as_ref().map(|c| c.next_seq() - count);
    if !matched {
        let problem = match (
            first,
            check.as_ref().map(|c| c.next_seq().saturating_sub(1)),
        ) {
            (Some(_), Some(last)) if cp.seq > last => format!(
                "the export ends at record #{last}, before the checkpoint's #{}: truncated",
                cp.seq
            ),
            (Some(first), _) => format!(
                "the export starts at record #{first}, after the checkpoint's #{}",
                cp.seq
            ),
            _ => "the export is empty".to_owned(),
        };
        return checkpoint_result(conn, &cp, Err(problem));
    }
    if first.is_some_and(|f| f > 1) && !conn.json {
        out!(
            "note: the export starts at record #{}; records before it are vouched for only by its first prev_hash",
            first.unwrap_or_default()
        );
    }
    checkpoint_result(conn, &cp, Ok(()))
}
