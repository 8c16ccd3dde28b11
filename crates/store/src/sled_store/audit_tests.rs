//! The audit log beside sled: the journal, sealing, recovery against the store's head, and
//! stores written before the journal.

use mandate_core::{LinkId, TaskId};

use super::*;
use crate::AuditEvent;
use crate::conformance::{event, task, varied_event};
use crate::kv::{be, encode, key};
use crate::tables::AuditHead;

/// Opens (or reopens) a store, waiting out the file lock a store just dropped in this
/// process may still hold while sled's threads wind down.
pub(super) fn open_sealing(dir: &Path, per: usize) -> SledStore {
    super::open_when_unlocked(
        dir,
        crate::AuditSealing {
            records_per_segment: per,
        },
    )
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("audit-segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn record(s: &SledStore, events: Vec<AuditEvent>) {
    s.commit(Change {
        audit: events,
        ..Change::default()
    })
    .unwrap();
}

/// A change that writes state (a task) with its record.
fn stateful(s: &SledStore, id: u8, action: &str) {
    s.commit(Change {
        tasks: vec![task(id)],
        audit: vec![event(action)],
        ..Change::default()
    })
    .unwrap();
}

fn journal_path(dir: &Path) -> std::path::PathBuf {
    dir.join("audit-segments").join(crate::journal::FILE)
}

#[test]
fn audit_records_move_into_sealed_segments_and_read_back_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 10);
    for i in 0..47u64 {
        record(&s, vec![varied_event(i)]);
    }
    let before = s.audit_after(0, 1000).unwrap();
    assert_eq!(before.len(), 47);
    // Four full segments sealed as the journal filled; seven records in the journal.
    assert_eq!(
        segment_files(dir.path()),
        [
            "00000000000000000001-00000000000000000010.seg",
            "00000000000000000011-00000000000000000020.seg",
            "00000000000000000021-00000000000000000030.seg",
            "00000000000000000031-00000000000000000040.seg",
            "journal",
        ]
    );
    assert_eq!(s.db().scan_prefix(b"q").count(), 0, "no record is in sled");
    // Every read path sees one log: the same records, from any starting point and page.
    for after in [0, 3, 9, 10, 11, 39, 40, 41, 46, 47] {
        for limit in [1, 4, 10, 100] {
            let got = s.audit_after(after, limit).unwrap();
            let want: Vec<_> = before
                .iter()
                .filter(|r| r.seq > after)
                .take(limit)
                .cloned()
                .collect();
            assert_eq!(got, want, "after {after} limit {limit}");
        }
    }
    let v = crate::verify_audit(&s, 0, 0).unwrap();
    assert!(v.intact(), "{:?}", v.broken);
    assert_eq!(v.checked, 47);
    // The chain continues, and survives reopening.
    record(&s, vec![event("after")]);
    drop(s);
    let s = open_sealing(dir.path(), 10);
    let all = s.audit_after(0, 1000).unwrap();
    assert_eq!(all.len(), 48);
    assert_eq!(all[..47], before[..]);
    assert_eq!(s.audit_head().unwrap().0, 48);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
}

#[test]
fn segments_are_compact() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 1000);
    for i in 0..1000u64 {
        let mut e = event("invocation.authorized");
        e.time_ms = 1_800_000_000_000 + i;
        e.task = Some(TaskId::from_bytes([7; 16]));
        e.links = (0..3u8)
            .map(|n| LinkId::from_bytes([n; 16]).to_string())
            .collect();
        e.decision = "allow".into();
        e.policies = vec!["default.invoke".into()];
        e.policy_hash = format!("sha256:{}", "ab".repeat(32));
        e.actor = "spiffe://mandate.local/tools/files".into();
        e.detail.insert("action".into(), "read".into());
        // Every resource different, as a busy tool's calls are.
        e.detail
            .insert("resource".into(), format!("files/data/{i}"));
        e.detail
            .insert("holder".into(), "spiffe://mandate.local/agents/sub".into());
        record(&s, vec![e]);
    }
    let seg = dir
        .path()
        .join("audit-segments/00000000000000000001-00000000000000001000.seg");
    let per_record = std::fs::metadata(seg).unwrap().len() / 1000;
    // An Authorize record is about 720 bytes of JSON; on disk, framed, it is a fraction,
    // its chain (a task and three links) written once for the file.
    assert!(per_record <= 100, "{per_record} bytes per record");
    // Nothing went into sled for decisions that write no state.
    assert!(s.db.get(b"maudit").unwrap().is_none());
}

#[test]
fn a_crash_between_sealing_and_the_next_journal_leaves_one_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 100);
    for i in 0..15u64 {
        record(&s, vec![varied_event(i)]);
    }
    s.flush().unwrap();
    let before = s.audit_after(0, 100).unwrap();
    drop(s);
    // Killed after the journal was renamed into a segment, before the next journal was
    // in place; and a half-created next journal.
    let segs = dir.path().join("audit-segments");
    std::fs::rename(
        journal_path(dir.path()),
        segs.join("00000000000000000001-00000000000000000015.seg"),
    )
    .unwrap();
    std::fs::write(segs.join("journal.tmp"), b"MANDSEG2 partial").unwrap();
    let s = open_sealing(dir.path(), 100);
    assert_eq!(s.audit_after(0, 100).unwrap(), before);
    assert_eq!(
        segment_files(dir.path()),
        ["00000000000000000001-00000000000000000015.seg", "journal"]
    );
    record(&s, vec![event("next")]);
    assert_eq!(s.audit_head().unwrap().0, 16);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
}

#[test]
fn a_torn_journal_tail_is_cut_and_the_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 100);
    for i in 0..5u64 {
        record(&s, vec![varied_event(i)]);
    }
    s.flush().unwrap();
    let before = s.audit_after(0, 100).unwrap();
    drop(s);
    // Half a frame at the end (a write cut short), a frame whose bytes are wrong, and
    // zeros (a power failure after the file's size grew and before its data was written).
    let path = journal_path(dir.path());
    let good = std::fs::read(&path).unwrap();
    for tail in [
        &[200u8, 0, 0, 0, 1, 2][..],
        &[4, 0, 0, 0, 9, 9, 9, 9, 1, 2, 3, 4][..],
        &[0; 300][..],
    ] {
        let mut bytes = good.clone();
        bytes.extend_from_slice(tail);
        std::fs::write(&path, &bytes).unwrap();
        let s = open_sealing(dir.path(), 100);
        assert_eq!(s.audit_after(0, 100).unwrap(), before);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good.len() as u64);
    }
    let s = open_sealing(dir.path(), 100);
    record(&s, vec![event("next")]);
    assert_eq!(s.audit_head().unwrap().0, 6);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
    drop(s);
    // Damage before the last frame is not a torn write: the store refuses to open rather
    // than cut the records after it away.
    let whole = std::fs::read(&path).unwrap();
    let offsets = crate::journal::parse(&whole, &path, false).unwrap().offsets;
    let refused = |bytes: &[u8], why: &str| {
        std::fs::write(&path, bytes).unwrap();
        let err = SledStore::open(dir.path())
            .expect_err("refused")
            .to_string();
        assert!(err.contains(why), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    };
    let mut bytes = whole.clone();
    bytes[offsets[1] as usize + 10] ^= 0xff;
    refused(&bytes, "checksum");
    // So is a whole header before the end declaring a frame longer than any the writer
    // makes (its length running past the end of the file would otherwise read as a cut
    // write, and everything after it would go).
    let mut bytes = whole;
    let at = offsets[1] as usize;
    bytes[at..at + 4].copy_from_slice(&(64u32 << 20).to_le_bytes());
    refused(&bytes, "frame too long");
}

#[test]
fn records_of_changes_that_never_reached_the_store_are_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 100);
    stateful(&s, 1, "applied");
    record(&s, vec![event("decision")]);
    // The process died after writing a change's record and before sled took the change:
    // its frame is in the journal, the change is not in sled. A decision after it too.
    {
        let mut journal = s.journal.lock().unwrap();
        journal.append(vec![event("never applied")], true).unwrap();
        journal
            .append(vec![event("later decision")], false)
            .unwrap();
    }
    s.flush().unwrap();
    assert_eq!(s.audit_head().unwrap().0, 4);
    drop(s);
    let s = open_sealing(dir.path(), 100);
    let log = s.audit_after(0, 100).unwrap();
    let actions: Vec<_> = log.iter().map(|r| r.event.action.as_str()).collect();
    // The decision after the applied change stays (it changed nothing); the record of the
    // change that never happened goes, with everything after it.
    assert_eq!(actions, ["applied", "decision"]);
    assert!(s.task(&task(1).id).unwrap().is_some());
    stateful(&s, 2, "next");
    assert_eq!(s.audit_head().unwrap().0, 3);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
    // What was written after the cut reads back from the file too (its strings are
    // defined where the file says, not where the cut frames had them).
    let log = s.audit_after(0, 100).unwrap();
    drop(s);
    let s = open_sealing(dir.path(), 100);
    assert_eq!(s.audit_after(0, 100).unwrap(), log);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
}

#[test]
fn a_journal_that_lost_synced_records_gets_a_records_lost_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 100);
    stateful(&s, 1, "first");
    s.flush().unwrap();
    let kept = std::fs::metadata(journal_path(dir.path())).unwrap().len();
    stateful(&s, 2, "second");
    stateful(&s, 3, "third");
    s.flush().unwrap();
    drop(s);
    // A power failure: sled kept changes 2 and 3, the journal lost their records.
    std::fs::OpenOptions::new()
        .write(true)
        .open(journal_path(dir.path()))
        .unwrap()
        .set_len(kept)
        .unwrap();
    let s = open_sealing(dir.path(), 100);
    let log = s.audit_after(0, 100).unwrap();
    assert_eq!(log.len(), 2);
    let lost = &log[1].event;
    assert_eq!(lost.action, "audit.records_lost");
    assert_eq!(lost.severity, crate::Severity::High);
    assert_eq!(lost.detail["lost_from"], "2");
    assert_eq!(lost.detail["lost_to"], "3");
    // The state stays; the log says what it cannot show, and its chain holds.
    assert!(s.task(&task(3).id).unwrap().is_some());
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
    drop(s);
    // Settled: a second open finds the journal and the store agree.
    let s = open_sealing(dir.path(), 100);
    assert_eq!(s.audit_after(0, 100).unwrap(), log);
}

#[test]
fn an_edited_or_missing_segment_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 10);
    for i in 0..30u64 {
        record(&s, vec![varied_event(i)]);
    }
    drop(s);
    let segs = dir.path().join("audit-segments");
    let second = segs.join("00000000000000000011-00000000000000000020.seg");
    let good = std::fs::read(&second).unwrap();
    let last_frame = *crate::journal::parse(&good, &second, false)
        .unwrap()
        .offsets
        .last()
        .unwrap() as usize;
    // One bit of record 20's hash flipped: the frame's checksum catches it.
    let mut bytes = good.clone();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&second, &bytes).unwrap();
    let s = open_sealing(dir.path(), 10);
    let err = crate::verify_audit(&s, 0, 0).unwrap_err().to_string();
    assert!(err.contains("checksum"), "{err}");
    // The same edit with the checksum fixed up: the hash chain catches it.
    let body = &mut bytes[last_frame + 8..];
    let crc = crc32fast::hash(body);
    bytes[last_frame + 4..last_frame + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&second, &bytes).unwrap();
    let v = crate::verify_audit(&s, 0, 0).unwrap();
    assert!(!v.intact());
    assert_eq!(v.broken.as_ref().unwrap().0, 20, "{:?}", v.broken);
    drop(s);
    std::fs::remove_file(&second).unwrap();
    let mut refused = None;
    for _ in 0..200 {
        match SledStore::open(dir.path()) {
            Err(e) if e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => {
                refused = Some(other.is_err());
                break;
            }
        }
    }
    assert_eq!(refused, Some(true), "a gap between segments is refused");
}

#[test]
fn a_store_written_before_the_journal_moves_its_records_into_it() {
    let dir = tempfile::tempdir().unwrap();
    // The old layout: records 1-10 sealed in a first-format segment, 11-15 in sled under
    // `q`, sled's head at 15.
    let mut records = Vec::new();
    let mut prev = crate::GENESIS_HASH.to_owned();
    for i in 0..15u64 {
        let e = varied_event(i);
        let hash = crate::audit_hash(i + 1, &e, &prev);
        records.push(AuditRecord {
            seq: i + 1,
            event: e,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
        });
    }
    crate::segments::write(&dir.path().join("audit-segments"), &records[..10]).unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        for r in &records[10..] {
            db.insert(key(b'q', &[&be(r.seq)]), encode(r).unwrap())
                .unwrap();
        }
        db.insert(
            b"maudit",
            encode(&AuditHead {
                seq: 15,
                hash: prev.clone(),
            })
            .unwrap(),
        )
        .unwrap();
        db.flush().unwrap();
    }
    let s = open_sealing(dir.path(), 100);
    assert_eq!(s.audit_after(0, 100).unwrap(), records);
    assert_eq!(s.db().scan_prefix(b"q").count(), 0);
    stateful(&s, 1, "next");
    assert_eq!(s.audit_head().unwrap().0, 16);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
    drop(s);
    let s = open_sealing(dir.path(), 100);
    assert_eq!(s.audit_after(0, 100).unwrap().len(), 16);
}

#[test]
fn compaction_keeps_every_record_and_gives_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let s = open_sealing(&path, 64);
        // Churn: records written, then superseded, so sled's log holds old versions.
        for round in 0..20u64 {
            for i in 0..50u64 {
                let mut t = task((i % 200) as u8);
                t.intent = format!("round {round} task {i} {}", "x".repeat(200));
                s.commit(Change {
                    tasks: vec![t],
                    audit: vec![varied_event(round * 50 + i)],
                    ..Change::default()
                })
                .unwrap();
            }
        }
        s.flush().unwrap();
    }
    let before = open_sealing(&path, 64);
    let stats = before.key_stats().unwrap();
    let log = before.audit_after(0, 10_000).unwrap();
    drop(before);
    let mut result = None;
    for _ in 0..200 {
        match SledStore::compact(&path) {
            Err(e) if e.to_string().contains("lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => {
                result = Some(other.unwrap());
                break;
            }
        }
    }
    let (size_before, size_after) = result.unwrap();
    assert!(size_after < size_before, "{size_before} -> {size_after}");
    let after = open_sealing(&path, 64);
    assert_eq!(after.key_stats().unwrap(), stats);
    assert_eq!(after.audit_after(0, 10_000).unwrap(), log);
    assert!(crate::verify_audit(&after, 0, 0).unwrap().intact());
    stateful(&after, 1, "after compaction");
    drop(after);
    // A crash between the two renames: the old store is put back at open.
    std::fs::rename(&path, path.with_extension("pre-compact")).unwrap();
    std::fs::create_dir(path.with_extension("compact")).unwrap();
    let recovered = open_sealing(&path, 64);
    assert_eq!(
        recovered.audit_after(0, 10_000).unwrap().len(),
        log.len() + 1
    );
    assert!(!path.with_extension("compact").exists());
    assert!(!path.with_extension("pre-compact").exists());
}

/// Rewrites the journal of the (closed) store in `dir` with `edit`, given the frames'
/// offsets; fixes up the edited frames' checksums as an attacker would.
fn edit_journal(dir: &Path, edit: impl FnOnce(&mut Vec<u8>, &[u64])) {
    let path = journal_path(dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let offsets = crate::journal::parse(&bytes, &path, false).unwrap().offsets;
    edit(&mut bytes, &offsets);
    let mut at = offsets[0] as usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&bytes[at + 8..at + 8 + len]);
        bytes[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        at += 8 + len;
    }
    std::fs::write(&path, &bytes).unwrap();
}

#[test]
fn verification_finds_edited_rehashed_and_removed_records() {
    // Each record defines its own action string, or all share one.
    let write = |dir: &Path, distinct: bool| {
        let s = open_sealing(dir, 100);
        for i in 0..5 {
            let mut e = event(if distinct {
                ["e0", "e1", "e2", "e3", "e4"][i]
            } else {
                "e"
            });
            e.time_ms = i as u64 + 1;
            record(&s, vec![e]);
        }
    };
    let find = |bytes: &[u8], from: usize, what: &[u8]| {
        from + bytes[from..]
            .windows(what.len())
            .position(|w| w == what)
            .unwrap()
    };
    // Record 3's action edited in place: its hash no longer matches.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), true);
    edit_journal(dir.path(), |bytes, offsets| {
        let at = find(bytes, offsets[2] as usize, b"e2");
        bytes[at] = b'x';
    });
    let s = open_sealing(dir.path(), 100);
    let v = crate::verify_audit(&s, 0, 0).unwrap();
    assert_eq!(v.broken.as_ref().map(|b| b.0), Some(3), "{v:?}");
    assert_eq!(v.checked, 2);
    // Re-hashed too: now record 4 no longer links to it.
    let mut edited = s.audit_after(2, 1).unwrap().remove(0);
    drop(s);
    edited.hash = crate::audit_hash(3, &edited.event, &edited.prev_hash);
    let raw = crate::segments::hex32(&edited.hash).unwrap();
    edit_journal(dir.path(), |bytes, offsets| {
        let end = offsets[3] as usize;
        bytes[end - 32..end].copy_from_slice(&raw);
    });
    let s = open_sealing(dir.path(), 100);
    assert_eq!(
        crate::verify_audit(&s, 0, 0).unwrap().broken.map(|b| b.0),
        Some(4)
    );
    drop(s);
    // A record cut out: the next one takes its number and its hash does not match.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), false);
    edit_journal(dir.path(), |bytes, offsets| {
        bytes.drain(offsets[1] as usize..offsets[2] as usize);
    });
    let s = open_sealing(dir.path(), 100);
    assert_eq!(
        crate::verify_audit(&s, 0, 0).unwrap().broken.map(|b| b.0),
        Some(2)
    );
}

#[test]
fn a_record_missing_inside_a_range_that_ends_before_the_head_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open_sealing(dir.path(), 100);
        for i in 0..6 {
            let mut e = event("e");
            e.time_ms = i + 1;
            record(&s, vec![e]);
        }
    }
    edit_journal(dir.path(), |bytes, offsets| {
        bytes.drain(offsets[2] as usize..offsets[3] as usize);
    });
    let s = open_sealing(dir.path(), 100);
    let v = crate::verify_audit(&s, 1, 4).unwrap();
    assert_eq!(v.broken.map(|b| b.0), Some(3));
}

#[test]
fn pruned_segments_go_whole_and_the_log_verifies_from_where_it_now_begins() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 10);
    for i in 0..35u64 {
        record(&s, vec![varied_event(i)]);
    }
    let all = s.audit_after(0, 100).unwrap();
    // Only whole segments that end before the record: 1-10 and 11-20 for "before 25".
    let (last, hash, files) = s.prunable(25).unwrap().unwrap();
    assert_eq!(
        (last, hash.as_str(), files.len()),
        (20, all[19].hash.as_str(), 2)
    );
    assert!(
        s.prunable(10).unwrap().is_none(),
        "no segment ends before record 10"
    );
    record(&s, vec![event("audit.pruned")]);
    assert_eq!(s.prune_segments(20).unwrap(), files);
    assert!(files.iter().all(|f| !f.exists()));
    assert_eq!(s.audit_start().unwrap(), (20, all[19].hash.clone()));
    // Reads begin after the pruned records; verification anchors on the last one's hash.
    assert_eq!(
        s.audit_after(0, 100).unwrap()[..],
        s.audit_after(20, 100).unwrap()[..]
    );
    assert_eq!(s.audit_after(0, 1).unwrap()[0], all[20]);
    let v = crate::verify_audit(&s, 0, 0).unwrap();
    assert!(v.intact(), "{:?}", v.broken);
    assert_eq!(v.checked, 16);
    // Only whole segments: through a record inside one is refused, before the first one
    // removes nothing; the chain survives reopening.
    assert!(s.prune_segments(35).is_err());
    assert!(s.prune_segments(25).unwrap().is_empty());
    assert_eq!(s.audit_start().unwrap().0, 20);
    drop(s);
    let s = open_sealing(dir.path(), 10);
    assert_eq!(s.audit_start().unwrap().0, 20);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
    record(&s, vec![event("after")]);
    assert_eq!(s.audit_head().unwrap().0, 37);
    // Every sealed segment may go: reads then begin in the journal.
    record(&s, vec![event("audit.pruned")]);
    assert_eq!(s.prune_segments(30).unwrap().len(), 1);
    assert_eq!(s.audit_after(0, 1).unwrap()[0].seq, 31);
    assert_eq!(s.audit_after(5, 100).unwrap().len(), 8);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
}

#[test]
fn a_prune_interrupted_after_recording_where_the_log_begins_finishes_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 10);
    for i in 0..25u64 {
        record(&s, vec![varied_event(i)]);
    }
    let all = s.audit_after(0, 100).unwrap();
    drop(s);
    // The marker is written, the files are still there (killed before removing them).
    crate::segments::set_pruned(&dir.path().join("audit-segments"), 10, &all[9].hash).unwrap();
    let s = open_sealing(dir.path(), 10);
    assert!(
        !segment_files(dir.path())
            .contains(&"00000000000000000001-00000000000000000010.seg".into())
    );
    assert_eq!(s.audit_after(0, 100).unwrap(), all[10..]);
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
}

#[test]
fn disk_usage_counts_sled_and_the_audit_log_apart() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 10);
    let empty = s.disk_usage().unwrap();
    let (Some(state), Some(audit)) = (empty.state, empty.audit) else {
        panic!("a sled store reports both parts: {empty:?}");
    };
    assert!(state > 0);
    // 25 records: two sealed segments and a journal of five.
    for i in 0..25u64 {
        record(&s, vec![varied_event(i)]);
    }
    let after = s.disk_usage().unwrap();
    let grown = after.audit.unwrap();
    let on_disk: u64 = std::fs::read_dir(dir.path().join("audit-segments"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(grown > audit, "{grown} after 25 records, {audit} before");
    assert_eq!(
        grown, on_disk,
        "the segments and the journal, as the files say"
    );
}
