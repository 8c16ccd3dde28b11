//! sled's generations: where a store keeps sled, and rewriting it while commits go on.

use std::collections::BTreeMap;

use mandate_core::TaskId;

use super::audit_tests::open_sealing;
use super::generations::{Generations, LiveDb};
use super::*;
use crate::conformance::{event, task};
use crate::kv::Ops;

/// Every key and value sled holds.
fn dump(db: &sled::Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    db.iter()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// A task with a two-byte id, so tests can write thousands.
fn task_n(n: u16, intent: &str) -> crate::TaskRecord {
    let mut t = task(0);
    let mut id = [0u8; 16];
    id[..2].copy_from_slice(&n.to_be_bytes());
    t.id = TaskId::from_bytes(id);
    t.intent = intent.to_owned();
    t
}

fn put_task(s: &SledStore, n: u16, intent: &str) {
    s.commit(Change {
        tasks: vec![task_n(n, intent)],
        audit: vec![event("task.written")],
        ..Change::default()
    })
    .unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_store_keeps_sled_in_its_first_generation_with_small_log_segments() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 100);
    put_task(&s, 1, "first");
    drop(s);
    assert_eq!(
        names(dir.path()),
        ["audit-segments", "state-1", "state.current"]
    );
    let conf = std::fs::read(dir.path().join("state-1/conf")).unwrap();
    let conf = String::from_utf8_lossy(&conf);
    assert!(conf.contains("segment_size: 131072"), "{conf}");
    let s = open_sealing(dir.path(), 100);
    assert_eq!(s.task(&task_n(1, "").id).unwrap().unwrap().intent, "first");
}

#[test]
fn a_rewrite_keeps_every_key_and_record_and_gives_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 64);
    // Churn: each task rewritten many times, so sled's log holds old versions.
    for round in 0..30 {
        for n in 0..100 {
            put_task(&s, n, &format!("round {round} {}", "x".repeat(300)));
        }
    }
    s.flush().unwrap();
    let keys = dump(&s.db());
    let log = s.audit_after(0, 10_000).unwrap();
    let (before, after) = s.rewrite_state().unwrap();
    assert!(after < before, "{before} -> {after}");
    assert_eq!(dump(&s.db()), keys);
    assert_eq!(s.audit_after(0, 10_000).unwrap(), log);
    // The store goes on in the new generation, and reopens there.
    put_task(&s, 500, "after");
    drop(s);
    let s = open_sealing(dir.path(), 64);
    assert_eq!(
        s.task(&task_n(500, "").id).unwrap().unwrap().intent,
        "after"
    );
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("state.current"))
            .unwrap()
            .split_whitespace()
            .next(),
        Some("state-2")
    );
    // The replaced generation is gone once the store reopens.
    assert!(!dir.path().join("state-1").exists());
}

#[test]
fn writes_during_a_rewrite_reach_the_new_generation() {
    let dir = tempfile::tempdir().unwrap();
    let (db, generations) = Generations::open(&dir.path().join("store"), 8 << 20).unwrap();
    for i in 0..20_000u32 {
        db.insert(i.to_be_bytes(), &[1u8; 40][..]).unwrap();
    }
    let live = LiveDb::new(db);
    let lock = Mutex::new(());
    let (journal, _) =
        crate::journal::Journal::open(&dir.path().join("j"), 1, crate::GENESIS_HASH).unwrap();
    let journal = Mutex::new(journal);
    let stop = std::sync::atomic::AtomicBool::new(false);
    // A writer that overwrites, deletes and adds keys the whole time, as commits do
    // (under the commit lock); the model is what the store must hold at the end.
    let model = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut model: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || i < 3_000 {
                let mut ops = Ops::default();
                for j in 0..4 {
                    let k = ((i * 7 + j * 5_003) % 30_000).to_be_bytes().to_vec();
                    if (i + j).is_multiple_of(3) {
                        ops.delete(k.clone());
                        model.insert(k, None);
                    } else {
                        let v = (i + j).to_be_bytes().to_vec();
                        ops.put(k.clone(), v.clone());
                        model.insert(k, Some(v));
                    }
                }
                let _guard = lock.lock().unwrap();
                live.apply(ops).unwrap();
                i += 1;
            }
            model
        });
        for _ in 0..3 {
            generations.rewrite(&live, &lock, &journal).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap()
    });
    let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = (0..20_000u32)
        .map(|i| (i.to_be_bytes().to_vec(), vec![1u8; 40]))
        .collect();
    for (k, v) in model {
        match v {
            Some(v) => expected.insert(k, v),
            None => expected.remove(&k),
        };
    }
    assert_eq!(dump(&live.current()), expected);
}

#[test]
fn the_store_rewrites_sled_by_itself_when_it_has_grown() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 1_000);
    s.rewrite_above(0);
    let pointer = || std::fs::read_to_string(dir.path().join("state.current")).unwrap();
    let first = pointer();
    let mut last = 0;
    for round in 0..200 {
        last = round;
        for n in 0..50 {
            put_task(&s, n, &format!("round {round} {}", "y".repeat(500)));
        }
        s.flush().unwrap();
        if pointer() != first {
            break;
        }
    }
    // The background thread looks every half second.
    for _ in 0..100 {
        if pointer() != first {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_ne!(pointer(), first, "no rewrite happened");
    assert_eq!(
        s.task(&task_n(7, "").id).unwrap().unwrap().intent,
        format!("round {last} {}", "y".repeat(500))
    );
}

#[test]
fn a_store_written_before_generations_opens_and_moves_on_its_first_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let (new, old) = (dir.path().join("new"), dir.path().join("old"));
    let s = open_sealing(&new, 100);
    for n in 0..50 {
        put_task(&s, n, "written before generations");
    }
    s.flush().unwrap();
    let keys = dump(&s.db());
    drop(s);
    // The layout of earlier versions: sled at the top of the store directory, with
    // sled's default log segments, beside the audit log.
    {
        let top = sled::Config::new().path(&old).open().unwrap();
        for (k, v) in &keys {
            top.insert(k, v.as_slice()).unwrap();
        }
        top.flush().unwrap();
    }
    std::fs::create_dir(old.join("audit-segments")).unwrap();
    for name in names(&new.join("audit-segments")) {
        std::fs::copy(
            new.join("audit-segments").join(&name),
            old.join("audit-segments").join(&name),
        )
        .unwrap();
    }
    let s = open_sealing(&old, 100);
    assert_eq!(dump(&s.db()), keys);
    assert!(!names(&old).iter().any(|n| n.starts_with("state")));
    s.rewrite_state().unwrap();
    assert_eq!(dump(&s.db()), keys);
    put_task(&s, 60, "after");
    drop(s);
    let s = open_sealing(&old, 100);
    assert_eq!(names(&old), ["audit-segments", "state-1", "state.current"]);
    assert_eq!(s.task(&task_n(60, "").id).unwrap().unwrap().intent, "after");
    assert!(crate::verify_audit(&s, 0, 0).unwrap().intact());
}

#[test]
fn an_interrupted_rewrite_leaves_one_current_generation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 100);
    put_task(&s, 4, "kept");
    drop(s);
    // Before the switch: a half-built next generation is removed at open.
    std::fs::create_dir(dir.path().join("state-2")).unwrap();
    std::fs::write(dir.path().join("state-2/db"), b"half").unwrap();
    let s = open_sealing(dir.path(), 100);
    assert!(!dir.path().join("state-2").exists());
    assert_eq!(s.task(&task_n(4, "").id).unwrap().unwrap().intent, "kept");
    // After the switch, before the old generation was deleted: it is deleted at open.
    s.rewrite_state().unwrap();
    put_task(&s, 5, "after the switch");
    assert!(
        dir.path().join("state-1").exists(),
        "deleted while readers may use it"
    );
    drop(s);
    // A store closing deletes it; a crash left it, and the next open deletes it.
    assert!(!dir.path().join("state-1").exists());
    std::fs::create_dir(dir.path().join("state-1")).unwrap();
    std::fs::write(dir.path().join("state-1/db"), b"replaced").unwrap();
    let s = open_sealing(dir.path(), 100);
    assert!(!dir.path().join("state-1").exists());
    assert_eq!(s.task(&task_n(4, "").id).unwrap().unwrap().intent, "kept");
    assert_eq!(
        s.task(&task_n(5, "").id).unwrap().unwrap().intent,
        "after the switch"
    );
    drop(s);
    // A lost pointer is not taken for a new store: nothing is removed or opened.
    std::fs::remove_file(dir.path().join("state.current")).unwrap();
    let e = match SledStore::open(dir.path()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened a store whose pointer was lost"),
    };
    assert!(e.contains("holds state-2 but no `state.current`"), "{e}");
    assert!(dir.path().join("state-2/db").exists());
}

#[test]
fn values_larger_than_a_page_go_to_blob_files_and_survive_rewrites_and_reopens() {
    // With 128 KiB log segments sled writes a page over a quarter of that to its own file
    // (cascades' implied revocation parts and policy sets can be that large).
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let s = open_sealing(dir.path(), 100);
    s.db().insert(b"zbig", big.as_slice()).unwrap();
    put_task(&s, 1, "beside a blob");
    s.flush().unwrap();
    assert!(
        std::fs::read_dir(dir.path().join("state-1/blobs"))
            .unwrap()
            .next()
            .is_some(),
        "no blob file was written"
    );
    s.rewrite_state().unwrap();
    assert_eq!(
        s.db().get(b"zbig").unwrap().unwrap().as_ref(),
        big.as_slice()
    );
    drop(s);
    let s = open_sealing(dir.path(), 100);
    assert_eq!(
        s.db().get(b"zbig").unwrap().unwrap().as_ref(),
        big.as_slice()
    );
    assert!(
        std::fs::read_dir(dir.path().join("state-2/blobs"))
            .unwrap()
            .next()
            .is_some()
    );
    assert_eq!(
        s.task(&task_n(1, "").id).unwrap().unwrap().intent,
        "beside a blob"
    );
}

#[test]
fn a_closing_store_abandons_its_rewrite_and_keeps_the_current_generation() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_sealing(dir.path(), 100);
    for i in 0..25_000u32 {
        s.db().insert(i.to_be_bytes(), &[3u8; 20][..]).unwrap();
    }
    put_task(&s, 9, "kept");
    s.flush().unwrap();
    let keys = dump(&s.db());
    s.cancel_rewrites();
    let e = s.rewrite_state().unwrap_err().to_string();
    assert!(e.contains("closing"), "{e}");
    assert!(
        !dir.path().join("state-2").exists(),
        "the abandoned copy stayed"
    );
    assert_eq!(dump(&s.db()), keys);
    drop(s);
    let s = open_sealing(dir.path(), 100);
    assert_eq!(dump(&s.db()), keys);
}
