//! The journal's forms: chains written once per file (`MANDSEG3`), and `MANDSEG2` files
//! from before read and appended to as they are.

use super::*;
use crate::conformance::{event, varied_event};
use mandate_core::{LinkId, TaskId};

/// A decision under a chain of three links of `task`, on a resource of its own.
fn decision(task: u8, i: u64) -> AuditEvent {
    let mut e = event("invocation.authorized");
    e.time_ms = 1_800_000_000_000 + i;
    e.task = Some(TaskId::from_bytes([task; 16]));
    e.links = (0..3u8)
        .map(|n| LinkId::from_bytes([task.wrapping_add(n); 16]).to_string())
        .collect();
    e.decision = "allow".into();
    e.detail
        .insert("resource".into(), format!("files/data/{i}"));
    e
}

fn genesis() -> String {
    crate::audit::GENESIS_HASH.to_owned()
}

fn all(j: &Journal) -> Vec<AuditRecord> {
    j.read(j.first(), usize::MAX).unwrap()
}

#[test]
fn a_chain_is_written_once_per_file_and_every_record_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    // Two chains, interleaved, and records of every shape (links not in hex, no task).
    let events: Vec<AuditEvent> = (0..200u64)
        .map(|i| match i % 4 {
            0 | 1 => decision(7, i),
            2 => decision(9, i),
            _ => varied_event(i),
        })
        .collect();
    let mut written = Vec::new();
    for e in &events {
        written.extend(j.append(vec![e.clone()], false).unwrap().0);
    }
    assert_eq!(all(&j), written);
    // Read back from the file: the same records, hashes and all.
    let bytes = std::fs::read(dir.path().join(FILE)).unwrap();
    assert!(bytes.starts_with(MAGIC));
    let parsed = parse(&bytes, &dir.path().join(FILE), false).unwrap();
    assert_eq!(parsed.records, written);
    for r in &written {
        assert_eq!(
            r.hash,
            crate::records::audit_hash(r.seq, &r.event, &r.prev_hash)
        );
    }
    // A decision under a chain already written costs its index, not 69 bytes.
    let frame = |i: usize| parsed.offsets[i + 1] - parsed.offsets[i];
    let first = frame(0);
    let again = frame(4);
    assert!(first >= again + 60, "first {first} bytes, again {again}");
    // Reopened, the journal goes on with the chains it defined.
    drop(j);
    let (mut j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    let more = j.append(vec![decision(7, 1000)], false).unwrap().0;
    written.extend(more);
    assert_eq!(all(&j), written);
    let sealed = j.seal().unwrap();
    assert_eq!(crate::segments::read(&sealed).unwrap(), written);
}

#[test]
fn an_append_undone_forgets_the_chains_it_defined() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    let mut written = j.append(vec![decision(1, 0)], false).unwrap().0;
    let (_, mark) = j
        .append(vec![decision(2, 1), decision(3, 2)], true)
        .unwrap();
    j.rollback(mark).unwrap();
    assert_eq!(all(&j), written);
    // The chains of the undone records are defined again, where they now first appear.
    written.extend(
        j.append(vec![decision(3, 3), decision(1, 4)], false)
            .unwrap()
            .0,
    );
    assert_eq!(all(&j), written);
    let bytes = std::fs::read(dir.path().join(FILE)).unwrap();
    let parsed = parse(&bytes, &dir.path().join(FILE), false).unwrap();
    assert_eq!(parsed.records, written);
}

#[test]
fn a_journal_in_the_form_before_chains_is_read_and_appended_to_in_that_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    // A MANDSEG2 journal, as the store wrote it before the chain table.
    let mut bytes = MAGIC_V2.to_vec();
    bytes.extend_from_slice(&1u64.to_be_bytes());
    bytes.extend_from_slice(&hex32(&genesis()).unwrap());
    let old = crate::records::chain(
        &(0, genesis()),
        (0..20)
            .map(|i| {
                if i % 2 == 0 {
                    decision(5, i)
                } else {
                    varied_event(i)
                }
            })
            .collect(),
    );
    let mut tables = Tables::new(false);
    for r in &old {
        put_frame(&mut bytes, r, false, &mut tables);
    }
    std::fs::write(&path, &bytes).unwrap();

    let (mut j, stateful) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    assert_eq!(stateful, vec![false; 20]);
    assert_eq!(all(&j), old);
    let mut written = old.clone();
    written.extend(
        j.append(vec![decision(5, 100), varied_event(101)], false)
            .unwrap()
            .0,
    );
    assert_eq!(all(&j), written);
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(MAGIC_V2), "appended to in its own form");
    assert_eq!(parse(&bytes, &path, false).unwrap().records, written);
    // Sealed, it reads back as a segment; the next journal has the chain table.
    let sealed = j.seal().unwrap();
    assert_eq!(crate::segments::read(&sealed).unwrap(), written);
    assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
}

#[test]
fn a_chain_index_out_of_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    j.append(vec![decision(1, 0)], false).unwrap();
    drop(j);
    // A second frame naming chain 5 of a file that defines one.
    let path = dir.path().join(FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut body = vec![0u8, 0, 0];
    let mut fields = Vec::new();
    let e = decision(1, 1);
    put_varint(&mut fields, e.time_ms);
    body.extend_from_slice(&fields);
    body.extend([0u8; 5]);
    body.push(5);
    body.extend_from_slice(&[0, 0, 0]);
    body.extend_from_slice(&[0; 32]);
    bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let e = parse(&bytes, &path, false).err().unwrap();
    assert!(e.to_string().contains("chain index is out of range"), "{e}");
}

/// The body of the frame at `at`.
fn body_at(bytes: &[u8], at: u64) -> Vec<u8> {
    let at = at as usize;
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    bytes[at + 8..at + 8 + len].to_vec()
}

/// `bytes` with the frame at index `i` (of `offsets`) replaced by one around `body`.
fn with_frame(bytes: &[u8], offsets: &[u64], i: usize, body: &[u8]) -> Vec<u8> {
    let start = offsets[i] as usize;
    let end = offsets.get(i + 1).map_or(bytes.len(), |&o| o as usize);
    let mut out = bytes[..start].to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&bytes[end..]);
    out
}

/// Reads past a frame body's flags and string definitions; returns them and the reader.
fn skip_strings<'a>(body: &'a [u8], path: &Path) -> (Vec<String>, Reader<'a>) {
    let bad = |w: &str| corrupt(path, w);
    let mut r = Reader { bytes: body, at: 0 };
    r.u8().unwrap();
    let n = r.varint().unwrap();
    let strings = (0..n).map(|_| r.string(&bad).unwrap()).collect();
    (strings, r)
}

#[test]
fn a_string_defined_twice_is_refused_wherever_its_frame_is() {
    // Frames are numbered by definition order and the writer interns each string once:
    // a second definition would shift every later index away from what it names.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let (mut j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    for i in 0..3u8 {
        j.append(vec![decision(i * 10, u64::from(i))], false)
            .unwrap();
    }
    drop(j);
    let good = std::fs::read(&path).unwrap();
    let offsets = parse(&good, &path, false).unwrap().offsets;
    let (first_defs, _) = skip_strings(&body_at(&good, offsets[0]), &path);
    let known = first_defs[0].clone();
    for i in [1usize, 2] {
        let old = body_at(&good, offsets[i]);
        let (defs, rest) = skip_strings(&old, &path);
        assert!(!defs.is_empty(), "frame {i} defines strings of its own");
        // The frame defines, as its first new string, one the file defined before.
        let mut body = vec![old[0]];
        put_varint(&mut body, defs.len() as u64 + 1);
        for s in std::iter::once(&known).chain(&defs) {
            put_varint(&mut body, s.len() as u64);
            body.extend_from_slice(s.as_bytes());
        }
        body.extend_from_slice(&old[rest.at..]);
        let bytes = with_frame(&good, &offsets, i, &body);
        let e = parse(&bytes, &path, false).err().expect("refused");
        assert!(e.to_string().contains("a string is defined twice"), "{e}");
        // Opening refuses it too, the last frame included: its checksum holds and all its
        // bytes are there, so it is not a torn write to cut away.
        std::fs::write(&path, &bytes).unwrap();
        let e = Journal::open(dir.path(), 1, &genesis())
            .err()
            .expect("refused");
        assert!(e.to_string().contains("a string is defined twice"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing was cut");
    }
}

#[test]
fn a_chain_defined_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let (mut j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    for i in 0..3 {
        j.append(vec![decision(7, i)], false).unwrap();
    }
    drop(j);
    let good = std::fs::read(&path).unwrap();
    let offsets = parse(&good, &path, false).unwrap().offsets;
    // The chain as the first frame defines it.
    let first = body_at(&good, offsets[0]);
    let (_, mut r) = skip_strings(&first, &path);
    assert_eq!(r.varint(), Some(1), "the first frame defines the chain");
    let len = r.varint().unwrap() as usize;
    let chain = r.take(len).unwrap().to_vec();
    // The second frame, which refers to it, defines it again.
    let old = body_at(&good, offsets[1]);
    let (_, mut r) = skip_strings(&old, &path);
    let at = r.at;
    assert_eq!(r.varint(), Some(0), "the second frame only refers to it");
    let mut body = old[..at].to_vec();
    put_varint(&mut body, 1);
    put_varint(&mut body, chain.len() as u64);
    body.extend_from_slice(&chain);
    body.extend_from_slice(&old[r.at..]);
    let bytes = with_frame(&good, &offsets, 1, &body);
    let e = parse(&bytes, &path, false).err().expect("refused");
    assert!(e.to_string().contains("a chain is defined twice"), "{e}");
}

#[test]
fn a_record_longer_than_a_frame_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    let (mut j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    let mut written = j.append(vec![decision(1, 0)], false).unwrap().0;
    let before = std::fs::read(&path).unwrap();
    // A decision with a new chain and new strings, and a detail no frame can hold.
    let mut huge = decision(2, 1);
    huge.detail
        .insert("blob".into(), "x".repeat(MAX_FRAME as usize + 1));
    let e = j.append(vec![decision(3, 2), huge], true).err().unwrap();
    assert!(
        e.to_string().contains("more than a journal frame holds"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing was written");
    // The journal goes on where it was, its tables without what the refused call defined.
    written.extend(j.append(vec![decision(2, 3)], false).unwrap().0);
    assert_eq!(written.last().unwrap().seq, 2);
    assert_eq!(all(&j), written);
    drop(j);
    let (j, _) = Journal::open(dir.path(), 1, &genesis()).unwrap();
    assert_eq!(all(&j), written);
}
