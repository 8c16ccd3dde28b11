//! `mandate prune-audit`: removes sealed audit segments past their retention from a
//! stopped coordinator's data directory, only after writing a signed `audit.pruned`
//! record of what goes (docs/AUDIT.md, "Retention").

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mandate_core::{Clock as _, SystemClock};
use mandate_store::{AuditAction, AuditCheckpoint, AuditEvent, Change, Severity, SledStore, Store};

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
    let Some((last, hash, files)) = store.prunable(before)? else {
        return Ok(None);
    };
    let first = store.audit_start()?.0 + 1;
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
    let now = SystemClock.now_ms();
    let cp = AuditCheckpoint::sign(&key, last, &hash, now)?;
    let mut e = AuditEvent::new(
        format!("spiffe://{trust_domain}/coordinator"),
        AuditAction::AuditPruned,
        now,
    );
    e.severity = Severity::High;
    e.reason = format!("records {first}-{last} removed past their retention");
    for (k, v) in [
        ("first_removed", first.to_string()),
        ("last_removed", last.to_string()),
        ("last_removed_hash", hash),
        ("segments", files.len().to_string()),
        (
            "archived_to",
            archive.map(|d| d.display().to_string()).unwrap_or_default(),
        ),
        ("time_ms", cp.time_ms.to_string()),
        ("coordinator_key", cp.coordinator_key.clone()),
        ("signature", cp.signature.clone()),
    ] {
        e.detail.insert(k.into(), v);
    }
    let committed = store.commit(Change {
        audit: vec![e],
        ..Change::default()
    })?;
    store.flush()?;
    let files = store.prune_segments(last)?;
    Ok(Some(Pruned {
        first,
        last,
        files,
        record: committed.audit_seqs.first().copied().unwrap_or(0),
    }))
}
