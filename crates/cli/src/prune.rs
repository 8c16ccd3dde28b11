//! Audit retention: `mandate audit prune` asks a running coordinator (any store) to
//! remove the sealed segments past their retention, archiving their records first when
//! asked; `mandate prune-audit` does it in a stopped sled coordinator's data directory.
//! Either writes a signed `audit.pruned` record of what goes first (docs/AUDIT.md,
//! "Retention").

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mandate_core::{Clock as _, SystemClock};
use mandate_store::{AuditCheckpoint, Change, SledStore, Store, pruned_event};

/// What a prune did.
pub(crate) struct Pruned {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) record: u64,
}

/// Removes the whole sealed segments that end before record `before`, copying them to
/// `archive` first when given. The `audit.pruned` record (with a checkpoint of the last
/// removed record, signed by the coordinator key) is durable before any file goes.
pub(crate) fn prune(
    data_dir: &Path,
    trust_domain: &str,
    before: u64,
    archive: Option<&Path>,
) -> anyhow::Result<Option<Pruned>> {
    let store_dir = data_dir.join("store");
    anyhow::ensure!(
        store_dir.exists(),
        "no store in `{}`: is this a data directory?",
        data_dir.display()
    );
    let key = mandate_core::keyfile::load_signing_key(&data_dir.join("coordinator.key"))
        .context("the coordinator key signs the record of what is removed")?;
    let store = SledStore::open(&store_dir).map_err(|e| {
        anyhow::anyhow!("{e} (the coordinator must be stopped: it holds the store's lock)")
    })?;
    let Some((plan, files)) = store.prune_plan(before)? else {
        return Ok(None);
    };
    if let Some(dir) = archive {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
        for f in &files {
            let to = dir.join(f.file_name().context("a segment without a name")?);
            std::fs::copy(f, &to).with_context(|| format!("archiving to `{}`", to.display()))?;
            std::fs::File::open(&to)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("syncing `{}`", to.display()))?;
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing `{}`", dir.display()))?;
    }
    let cp = AuditCheckpoint::sign(&key, plan.last, &plan.last_hash, SystemClock.now_ms())?;
    let archived_to = archive.map(|d| d.display().to_string()).unwrap_or_default();
    let e = pruned_event(
        format!("spiffe://{trust_domain}/coordinator"),
        &plan,
        &cp,
        &archived_to,
    );
    let committed = store.prune_audit(
        plan.last,
        Change {
            audit: vec![e],
            ..Change::default()
        },
    )?;
    Ok(Some(Pruned {
        first: plan.first,
        last: plan.last,
        files,
        record: committed.audit_seqs.first().copied().unwrap_or(0),
    }))
}

/// `mandate audit prune`: asks what would go, archives those records as JSON lines when
/// asked (every one, in order, or nothing is removed), then removes exactly them.
pub(crate) async fn online(
    client: &mut mandate_sdk::Client,
    a: &crate::audit::PruneArgs,
    conn: &crate::client::Connection,
) -> anyhow::Result<crate::Outcome> {
    use mandate_proto::v1 as pb;
    let plan = client
        .prune_audit_log(pb::PruneAuditLogRequest {
            before: a.before,
            dry_run: true,
            ..Default::default()
        })
        .await?;
    let done = if !plan.prunable || a.dry_run {
        plan
    } else {
        let archived_to = match &a.archive_to {
            Some(path) => {
                archive(client, path, plan.first_removed, plan.last_removed).await?;
                std::path::absolute(path)
                    .unwrap_or_else(|_| path.to_path_buf())
                    .display()
                    .to_string()
            }
            None => String::new(),
        };
        client
            .prune_audit_log(pb::PruneAuditLogRequest {
                before: a.before,
                through: plan.last_removed,
                archived_to,
                dry_run: false,
            })
            .await?
    };
    if conn.json {
        out!(
            "{}",
            serde_json::json!({
                "prunable": done.prunable,
                "dry_run": a.dry_run,
                "first_removed": done.first_removed,
                "last_removed": done.last_removed,
                "last_removed_hash": done.last_removed_hash,
                "segments": done.segments,
                "record": done.record,
            })
        );
    } else if !done.prunable {
        out!(
            "nothing to prune: no sealed segment ends before record {}",
            a.before
        );
    } else if a.dry_run {
        out!(
            "would remove records {}-{} ({} sealed segments)",
            done.first_removed,
            done.last_removed,
            done.segments
        );
    } else {
        out!(
            "records {}-{} removed ({} sealed segments); audit.pruned is record {}",
            done.first_removed,
            done.last_removed,
            done.segments,
            done.record
        );
    }
    Ok(crate::Outcome::Ok)
}

/// Writes records `first..=last` to a new file at `path` as JSON lines and syncs it;
/// fails unless every one of them, and nothing else, was written.
async fn archive(
    client: &mut mandate_sdk::Client,
    path: &Path,
    first: u64,
    last: u64,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    use tokio_stream::StreamExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    let mut stream = client
        .export_audit_log(mandate_proto::v1::ExportAuditLogRequest {
            filter: Some(Default::default()),
            after_seq: first - 1,
        })
        .await?;
    let mut next = first;
    'chunks: while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        for line in chunk.jsonl.split_inclusive(|b| *b == b'\n') {
            #[derive(serde::Deserialize)]
            struct Seq {
                seq: u64,
            }
            let seq = serde_json::from_slice::<Seq>(line)
                .context("the export sent a line that is not a record")?
                .seq;
            if seq > last {
                break 'chunks;
            }
            anyhow::ensure!(
                seq == next,
                "the export skipped from record {} to {seq}: nothing was removed",
                next.saturating_sub(1)
            );
            file.write_all(line)?;
            next += 1;
        }
    }
    anyhow::ensure!(
        next == last + 1,
        "the export ended at record {}, before {last}: nothing was removed",
        next - 1
    );
    file.sync_all()?;
    Ok(())
}
