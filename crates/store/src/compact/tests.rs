use super::*;

fn link() -> LinkRecord {
    LinkRecord {
        id: LinkId::from_bytes([1; 16]),
        task: TaskId::from_bytes([2; 16]),
        parent: Some(LinkId::from_bytes([3; 16])),
        digest: Digest::from_bytes([4; 32]),
        holder: "spiffe://example.org/agent/worker-7".into(),
        issuer: "spiffe://example.org/agent/planner".into(),
        encoded: (0..=255u8).cycle().take(260).collect(),
        expires_at_ms: 1_796_000_000_123,
        created_ms: 1_795_999_100_000,
        max_uses: 7,
    }
}

fn task() -> TaskRecord {
    TaskRecord {
        id: TaskId::from_bytes([5; 16]),
        requester: "spiffe://example.org/agent/planner".into(),
        intent: "rotate the staging certificates — ünïcode".into(),
        intent_fields: [
            ("ticket".into(), "OPS-12".into()),
            ("env".into(), "".into()),
        ]
        .into_iter()
        .collect(),
        state: TaskState::Completed,
        created_ms: 1,
        deadline_ms: u64::MAX,
        ended_ms: 0,
        end_reason: "done".into(),
        root_link: None,
    }
}

fn revocation() -> RevocationRecord {
    RevocationRecord {
        link: LinkId::from_bytes([6; 16]),
        task: TaskId::from_bytes([7; 16]),
        epoch: 300,
        expires_at_ms: 1_796_000_000_000,
        reason: "revoked by spiffe://example.org/agent/planner".into(),
        time_ms: 1_795_000_000_000,
        implied: true,
    }
}

fn round_trip<T: Value + PartialEq + std::fmt::Debug>(r: &T) -> Vec<u8> {
    let v = r.to_value().unwrap();
    assert_eq!(&T::from_value(b"k", &v).unwrap(), r);
    v
}

#[test]
fn records_round_trip_in_every_state() {
    let mut l = link();
    round_trip(&l);
    l.parent = None;
    l.max_uses = 0;
    l.encoded.clear();
    round_trip(&l);
    let mut t = task();
    for state in [
        TaskState::PendingApproval,
        TaskState::Active,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Revoked,
        TaskState::Expired,
        TaskState::Denied,
    ] {
        t.state = state;
        round_trip(&t);
    }
    t.root_link = Some(LinkId::from_bytes([9; 16]));
    t.intent_fields.clear();
    round_trip(&t);
    let mut v = revocation();
    round_trip(&v);
    v.implied = false;
    round_trip(&v);
}

#[test]
fn the_binary_encoding_is_far_smaller_than_json() {
    let l = link();
    let binary = l.to_value().unwrap().len();
    let json = crate::kv::encode(&l).unwrap().len();
    // Tag, ids, parent, digest, two six-byte times, the use limit; then the holder, the
    // issuer and the link, each after its length.
    assert_eq!(binary, 1 + 16 + 16 + 17 + 32 + 6 + 6 + 1 + 36 + 35 + 262);
    assert!(binary * 2 < json, "{binary} against {json}");
    let v = revocation();
    assert!(v.to_value().unwrap().len() * 2 < crate::kv::encode(&v).unwrap().len());
}

#[test]
fn records_written_as_json_before_are_still_read() {
    let l = link();
    assert_eq!(
        LinkRecord::from_value(b"k", &crate::kv::encode(&l).unwrap()).unwrap(),
        l
    );
    let t = task();
    assert_eq!(
        TaskRecord::from_value(b"k", &crate::kv::encode(&t).unwrap()).unwrap(),
        t
    );
    let v = revocation();
    assert_eq!(
        RevocationRecord::from_value(b"k", &crate::kv::encode(&v).unwrap()).unwrap(),
        v
    );
}

fn corrupt<T: Value + std::fmt::Debug>(v: &[u8]) -> String {
    match T::from_value(b"lkey", v) {
        Err(StoreError::Corrupt { key, why }) => {
            assert_eq!(key, "lkey");
            why
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn every_truncation_and_trailing_byte_is_corruption() {
    for full in [link().to_value().unwrap(), task().to_value().unwrap()] {
        for n in 0..full.len() {
            let why = if full[0] == LINK_V1 {
                corrupt::<LinkRecord>(&full[..n])
            } else {
                corrupt::<TaskRecord>(&full[..n])
            };
            assert!(why.starts_with("binary record"), "{why}");
        }
    }
    let full = revocation().to_value().unwrap();
    for n in 0..full.len() {
        corrupt::<RevocationRecord>(&full[..n]);
    }
    let mut longer = full.clone();
    longer.push(0);
    assert!(corrupt::<RevocationRecord>(&longer).contains("left over"));
}

#[test]
fn a_record_of_another_kind_or_a_bad_field_is_corruption() {
    // A task's bytes where a link is expected (a key in the wrong table).
    assert!(corrupt::<LinkRecord>(&task().to_value().unwrap()).contains("tag"));
    assert!(corrupt::<TaskRecord>(&[0x00]).contains("tag"));

    // A task state that does not exist.
    let mut t = task();
    t.intent_fields.clear();
    t.requester = "r".into();
    t.intent = "i".into();
    let mut v = t.to_value().unwrap();
    // tag, id, "r", "i", no fields: the state follows.
    let at = 1 + 16 + 2 + 2 + 1;
    assert_eq!(v[at], task_state_code(TaskState::Completed));
    v[at] = 7;
    assert!(corrupt::<TaskRecord>(&v).contains("task state"));

    // An optional id flag other than 0 or 1; an implied flag other than 0 or 1.
    let mut l = link().to_value().unwrap();
    l[33] = 2;
    assert!(corrupt::<LinkRecord>(&l).contains("optional link id"));
    let mut r = revocation().to_value().unwrap();
    let last = r.len() - 1;
    r[last] = 2;
    assert!(corrupt::<RevocationRecord>(&r).contains("implied"));

    // A string that is not UTF-8.
    let mut t = task().to_value().unwrap();
    t[1 + 16 + 1] = 0xff;
    assert!(corrupt::<TaskRecord>(&t).contains("string"));

    // A use limit above u32, a varint longer than 64 bits.
    let mut w = Writer::default();
    let l = link();
    w.byte(LINK_V1);
    w.raw(l.id.as_bytes());
    w.raw(l.task.as_bytes());
    w.opt(None);
    w.raw(l.digest.as_bytes());
    w.uint(1);
    w.uint(1);
    w.uint(u64::from(u32::MAX) + 1);
    assert!(corrupt::<LinkRecord>(&w.0).contains("use limit"));
    let mut w = Writer::default();
    w.byte(REVOCATION_V1);
    w.raw(&[0; 32]);
    w.raw(&[0xff; 10]);
    w.raw(&[0x01]);
    assert!(corrupt::<RevocationRecord>(&w.0).contains("number"));
}

#[test]
fn one_record_has_one_encoding() {
    // A number padded with a zero byte.
    let mut r = Reader {
        key: b"k",
        rest: &[0x85, 0x00],
    };
    assert!(matches!(r.uint(), Err(StoreError::Corrupt { why, .. }) if why.contains("shortest")));
    // Intent fields repeated or out of order.
    for names in [["b", "a"], ["a", "a"]] {
        let mut w = Writer::default();
        let t = task();
        w.byte(TASK_V1);
        w.raw(t.id.as_bytes());
        w.bytes(b"r");
        w.bytes(b"i");
        w.uint(2);
        for n in names {
            w.bytes(n.as_bytes());
            w.bytes(b"v");
        }
        assert!(
            corrupt::<TaskRecord>(&w.0).contains("intent field"),
            "{names:?}"
        );
    }
}

#[test]
fn varints_cover_the_whole_range() {
    for n in [
        0,
        1,
        127,
        128,
        300,
        u64::from(u32::MAX),
        u64::MAX - 1,
        u64::MAX,
    ] {
        let mut w = Writer::default();
        w.uint(n);
        let mut r = Reader {
            key: b"k",
            rest: &w.0,
        };
        assert_eq!(r.uint().unwrap(), n);
        r.end().unwrap();
    }
    // u64::MAX takes ten bytes, the last holding one bit.
    let mut w = Writer::default();
    w.uint(u64::MAX);
    assert_eq!(w.0.len(), 10);
    assert_eq!(w.0[9], 1);
}
