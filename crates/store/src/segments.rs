//! Sealed audit segments: older audit records move out of the hot store into append-only
//! files, in a compact binary form, so the store's size tracks live authority rather than
//! history. The hash chain continues across segments and the live tail unchanged: a
//! record decoded from a segment is the same [`AuditRecord`] (its hash is recomputed over
//! the same canonical JSON, docs/AUDIT.md).
//!
//! A segment file `<first>-<last>.seg` (sequence numbers, zero-padded to 20 digits) holds:
//!
//! ```text
//! "MANDSEG1" | first seq u64 | count u32 | string table | records
//! string table: count varint, then each: length varint, UTF-8 bytes
//! after the header: the first record's prev_hash, 32 bytes
//! record: time_ms varint | actor, action, decision, reason, policy_hash: string index
//!         varints | task: 0, or 1 and 16 bytes | links: count varint, each 0 and 16
//!         bytes (a canonical lower-case hex id) or 1 and a string index | policies:
//!         count varint and indexes | severity u8 | detail: count varint, then key and
//!         value indexes | hash 32 bytes (each record's prev_hash is the hash before it)
//! ```
//!
//! Strings repeated across records (actors, actions, policy hashes, detail keys and most
//! values) are stored once per segment. A segment is written to a temporary file, synced
//! and renamed into place before its records leave the store, so a crash at any point
//! leaves every record in one place or both (the store's copy is then dropped at open).

use std::collections::HashMap;

use std::path::{Path, PathBuf};

use mandate_core::TaskId;

use crate::records::{AuditEvent, AuditRecord, Severity};
use crate::{Result, StoreError};

const MAGIC: &[u8; 8] = b"MANDSEG1";

pub(crate) fn corrupt(path: &Path, why: &str) -> StoreError {
    StoreError::Backend(format!("audit segment `{}`: {why}", path.display()))
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads what [`put_varint`] wrote.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let s = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(s)
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.take(1)?.first()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// A length-prefixed UTF-8 string.
    pub(crate) fn string(&mut self, bad: &dyn Fn(&str) -> StoreError) -> Result<String> {
        let len = usize::try_from(self.varint().ok_or_else(|| bad("truncated string"))?)
            .map_err(|_| bad("string too long"))?;
        let raw = self.take(len).ok_or_else(|| bad("truncated string"))?;
        Ok(std::str::from_utf8(raw)
            .map_err(|_| bad("a string is not UTF-8"))?
            .to_owned())
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

/// Interns the strings of the records being encoded.
#[derive(Default)]
pub(crate) struct Strings {
    pub(crate) index: HashMap<String, u64>,
    pub(crate) list: Vec<String>,
}

impl Strings {
    pub(crate) fn id(&mut self, s: &str) -> u64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u64;
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// What encoding a record interns: its strings always; its task and links (its chain)
/// only in a file that has a table of them (`MANDSEG3`).
pub(crate) trait Intern {
    /// The index of `s` in the file's strings.
    fn string(&mut self, s: &str) -> u64;
    /// The index of a record's task and links in the file's chains, or `None` to write
    /// them inline.
    fn chain(&mut self, task: Option<&TaskId>, links: &[String]) -> Option<u64>;
}

impl Intern for Strings {
    fn string(&mut self, s: &str) -> u64 {
        self.id(s)
    }

    fn chain(&mut self, _: Option<&TaskId>, _: &[String]) -> Option<u64> {
        None
    }
}

/// A record's task and links, as one entry of a file's chains.
pub(crate) type ChainEntry = (Option<TaskId>, Vec<String>);

/// Reads a chain reference from an event body (journals name chains by index).
pub(crate) type ReadChain<'a> = dyn Fn(&mut Reader<'_>) -> Result<ChainEntry> + 'a;

/// The chains of a `MANDSEG3` file: a worker presents the same chain with every call, so
/// its task and links are written once per file and each record names them by index.
#[derive(Default)]
pub(crate) struct Chains {
    /// Each chain's encoding (as [`put_task_links`] writes it) and its index.
    pub(crate) index: HashMap<Vec<u8>, u64>,
    pub(crate) encoded: Vec<Vec<u8>>,
    pub(crate) list: Vec<ChainEntry>,
}

impl Chains {
    /// The index of the chain encoded as `encoded` (`entry`, decoded), added if new.
    pub(crate) fn id(&mut self, encoded: Vec<u8>, entry: impl FnOnce() -> ChainEntry) -> u64 {
        if let Some(&i) = self.index.get(&encoded) {
            return i;
        }
        let i = self.list.len() as u64;
        self.list.push(entry());
        self.encoded.push(encoded.clone());
        self.index.insert(encoded, i);
        i
    }

    /// Appends a chain read from a file, at the next index whatever it holds (a file
    /// names chains by the order it defined them in).
    pub(crate) fn push(&mut self, encoded: Vec<u8>, entry: ChainEntry) {
        let i = self.list.len() as u64;
        self.list.push(entry);
        self.encoded.push(encoded.clone());
        self.index.insert(encoded, i);
    }

    /// Forgets the chains from index `len` on (an append undone).
    pub(crate) fn truncate(&mut self, len: usize) {
        for e in self.encoded.drain(len.min(self.encoded.len())..) {
            if self.index.get(&e).is_some_and(|&i| i >= len as u64) {
                self.index.remove(&e);
            }
        }
        self.list.truncate(len);
    }
}

pub(crate) use crate::records::hex::encode as to_hex;

pub(crate) fn hex32(s: &str) -> Option<[u8; 32]> {
    hex_bytes::<32>(s)
}

/// `N` bytes from lower-case hex only: decoding writes lower case, so only that form
/// round-trips to the same string (and the same record hash).
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    crate::records::hex::decode_array(s)
}

fn severity_byte(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Notice => 1,
        Severity::High => 2,
    }
}

/// Writes a task and links inline: the task (0, or 1 and 16 bytes), then each link as 0
/// and 16 bytes (a canonical lower-case hex id) or 1 and a string index.
pub(crate) fn put_task_links(
    body: &mut Vec<u8>,
    task: Option<&TaskId>,
    links: &[String],
    strings: &mut dyn Intern,
) {
    match task {
        None => body.push(0),
        Some(t) => {
            body.push(1);
            body.extend_from_slice(t.as_bytes());
        }
    }
    put_varint(body, links.len() as u64);
    for l in links {
        match hex_bytes::<16>(l) {
            Some(raw) => {
                body.push(0);
                body.extend_from_slice(&raw);
            }
            None => {
                body.push(1);
                put_varint(body, strings.string(l));
            }
        }
    }
}

/// Reads what [`put_task_links`] wrote.
pub(crate) fn read_task_links(
    r: &mut Reader<'_>,
    string: &dyn Fn(&mut Reader<'_>) -> Result<String>,
    bad: &dyn Fn(&str) -> StoreError,
) -> Result<ChainEntry> {
    let truncated = || bad("truncated record");
    let task = match r.u8().ok_or_else(truncated)? {
        0 => None,
        1 => Some(TaskId::from_bytes(r.array().ok_or_else(truncated)?)),
        _ => return Err(bad("bad task tag")),
    };
    let n_links = r.varint().ok_or_else(truncated)?;
    let mut links = Vec::new();
    for _ in 0..n_links {
        links.push(match r.u8().ok_or_else(truncated)? {
            0 => to_hex(&r.array::<16>().ok_or_else(truncated)?),
            1 => string(r)?,
            _ => return Err(bad("bad link tag")),
        });
    }
    Ok((task, links))
}

/// Writes an event's fields (everything but its hash), strings as the indexes `tables`
/// gives, and its task and links inline or as a chain index as `tables` says.
pub(crate) fn put_event(body: &mut Vec<u8>, e: &AuditEvent, tables: &mut dyn Intern) {
    put_varint(body, e.time_ms);
    for s in [&e.actor, &e.action, &e.decision, &e.reason, &e.policy_hash] {
        put_varint(body, tables.string(s));
    }
    match tables.chain(e.task.as_ref(), &e.links) {
        Some(i) => put_varint(body, i),
        None => put_task_links(body, e.task.as_ref(), &e.links, tables),
    }
    put_varint(body, e.policies.len() as u64);
    for p in &e.policies {
        put_varint(body, tables.string(p));
    }
    body.push(severity_byte(e.severity));
    put_varint(body, e.detail.len() as u64);
    for (k, v) in &e.detail {
        put_varint(body, tables.string(k));
        put_varint(body, tables.string(v));
    }
}

/// Reads what [`put_event`] wrote; `string` resolves a string index, `chain` a chain
/// index (`None`: the task and links are inline).
pub(crate) fn read_event(
    r: &mut Reader<'_>,
    string: &dyn Fn(&mut Reader<'_>) -> Result<String>,
    chain: Option<&ReadChain<'_>>,
    bad: &dyn Fn(&str) -> StoreError,
) -> Result<AuditEvent> {
    let truncated = || bad("truncated record");
    let time_ms = r.varint().ok_or_else(truncated)?;
    let actor = string(r)?;
    let action = string(r)?;
    let decision = string(r)?;
    let reason = string(r)?;
    let policy_hash = string(r)?;
    let (task, links) = match chain {
        Some(chain) => chain(r)?,
        None => read_task_links(r, string, bad)?,
    };
    let n_policies = r.varint().ok_or_else(truncated)?;
    let mut policies = Vec::new();
    for _ in 0..n_policies {
        policies.push(string(r)?);
    }
    let severity = match r.u8().ok_or_else(truncated)? {
        0 => Severity::Info,
        1 => Severity::Notice,
        2 => Severity::High,
        _ => return Err(bad("bad severity")),
    };
    let n_detail = r.varint().ok_or_else(truncated)?;
    let mut detail = std::collections::BTreeMap::new();
    for _ in 0..n_detail {
        let k = string(r)?;
        let v = string(r)?;
        detail.insert(k, v);
    }
    Ok(AuditEvent {
        time_ms,
        actor,
        action,
        task,
        links,
        decision,
        reason,
        policies,
        policy_hash,
        severity,
        detail,
    })
}

/// Encodes consecutive records (at least one) as a segment in the first format: the
/// etcd store's sealed segments (sled's are journals renamed, `journal.rs`).
pub(crate) fn encode(records: &[AuditRecord]) -> Result<Vec<u8>> {
    let first = records
        .first()
        .ok_or_else(|| StoreError::Backend("an empty audit segment".into()))?;
    let mut strings = Strings::default();
    let mut body = Vec::with_capacity(records.len() * 160);
    let first_prev = hex32(&first.prev_hash)
        .ok_or_else(|| StoreError::Backend(format!("record {} has a malformed hash", first.seq)))?;
    let mut prev = first.prev_hash.as_str();
    for r in records {
        put_event(&mut body, &r.event, &mut strings);
        // Only a chain that links is sealed: the file keeps each record's own hash and
        // derives its prev_hash from the record before.
        if r.prev_hash != prev {
            return Err(StoreError::Backend(format!(
                "record {} does not link to the record before it: not sealed",
                r.seq
            )));
        }
        let raw = hex32(&r.hash)
            .ok_or_else(|| StoreError::Backend(format!("record {} has a malformed hash", r.seq)))?;
        body.extend_from_slice(&raw);
        prev = &r.hash;
    }
    for (i, r) in records.iter().enumerate() {
        if r.seq != first.seq + i as u64 {
            return Err(StoreError::Backend(format!(
                "record {} is out of sequence: not sealed",
                r.seq
            )));
        }
    }
    let mut out = Vec::with_capacity(body.len() + 64 + strings.list.len() * 16);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&first.seq.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(records.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(&first_prev);
    put_varint(&mut out, strings.list.len() as u64);
    for s in &strings.list {
        put_varint(&mut out, s.len() as u64);
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a segment (`path` names it in errors).
pub(crate) fn decode(bytes: &[u8], path: &Path) -> Result<Vec<AuditRecord>> {
    let bad = |why: &str| corrupt(path, why);
    let mut r = Reader { bytes, at: 0 };
    if r.take(8) != Some(&MAGIC[..]) {
        return Err(bad("not a segment (bad magic)"));
    }
    let first = u64::from_be_bytes(r.array().ok_or_else(|| bad("truncated header"))?);
    let count = u32::from_be_bytes(r.array().ok_or_else(|| bad("truncated header"))?);
    let mut prev = to_hex(&r.array::<32>().ok_or_else(|| bad("truncated header"))?);
    let n_strings = r.varint().ok_or_else(|| bad("truncated string table"))?;
    let mut strings = Vec::new();
    for _ in 0..n_strings {
        strings.push(r.string(&bad)?);
    }
    let string = |r: &mut Reader<'_>| -> Result<String> {
        let i = r.varint().ok_or_else(|| bad("truncated record"))?;
        usize::try_from(i)
            .ok()
            .and_then(|i| strings.get(i))
            .cloned()
            .ok_or_else(|| bad("a string index is out of range"))
    };
    let mut out = Vec::with_capacity(count as usize);
    for i in 0..u64::from(count) {
        let truncated = || bad("truncated record");
        let event = read_event(&mut r, &string, None, &bad)?;
        let hash = to_hex(&r.array::<32>().ok_or_else(truncated)?);
        let prev_hash = std::mem::replace(&mut prev, hash.clone());
        out.push(AuditRecord {
            seq: first + i,
            event,
            prev_hash,
            hash,
        });
    }
    if r.at != bytes.len() {
        return Err(bad("bytes after the last record"));
    }
    Ok(out)
}

/// One sealed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) path: PathBuf,
}

pub(crate) fn file_name(first: u64, last: u64) -> String {
    format!("{first:020}-{last:020}.seg")
}

/// Where the log begins after a prune: the last removed record and its hash, kept in the
/// file `pruned` beside the segments ((0, genesis) when nothing was removed).
pub(crate) fn pruned(dir: &Path) -> Result<(u64, String)> {
    let path = dir.join(PRUNED);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, &e.to_string()))?;
            match (v["last"].as_u64(), v["hash"].as_str()) {
                (Some(last), Some(hash)) if hex32(hash).is_some() => Ok((last, hash.to_owned())),
                _ => Err(corrupt(&path, "expected {\"last\": N, \"hash\": HEX}")),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((0, crate::audit::GENESIS_HASH.to_owned()))
        }
        Err(e) => Err(corrupt(&path, &e.to_string())),
    }
}

/// Records that the log now begins after record `last` (hash `hash`): written durably
/// (temporary file, sync, rename, sync of the directory) before any segment is removed.
pub(crate) fn set_pruned(dir: &Path, last: u64, hash: &str) -> Result<()> {
    let io =
        |e: std::io::Error| StoreError::Backend(format!("audit segments `{}`: {e}", dir.display()));
    let tmp = dir.join(format!("{PRUNED}.tmp"));
    let body = serde_json::json!({ "last": last, "hash": hash }).to_string();
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    std::io::Write::write_all(&mut f, body.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, dir.join(PRUNED)).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

const PRUNED: &str = "pruned";

/// The sealed segments in `dir`, in order, after record `start` (where a prune left the
/// log); leftovers of an interrupted write or prune are removed. Gaps or overlaps
/// between segments are refused.
pub(crate) fn list(dir: &Path, start: u64) -> Result<Vec<Segment>> {
    let io =
        |e: std::io::Error| StoreError::Backend(format!("audit segments `{}`: {e}", dir.display()));
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".tmp") {
            std::fs::remove_file(&path).map_err(io)?;
            continue;
        }
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        let parsed = stem
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        let Some((first, last)) = parsed.filter(|(a, b)| a <= b) else {
            return Err(corrupt(&path, "unexpected file name"));
        };
        if last <= start {
            // Pruned: the prune was interrupted after recording where the log begins.
            std::fs::remove_file(&path).map_err(io)?;
            continue;
        }
        out.push(Segment { first, last, path });
    }
    out.sort_by_key(|s| s.first);
    for w in out.windows(2) {
        if w[1].first != w[0].last + 1 {
            return Err(corrupt(
                &w[1].path,
                &format!(
                    "does not follow record {} (a segment is missing)",
                    w[0].last
                ),
            ));
        }
    }
    if out.first().is_some_and(|s| s.first != start + 1) {
        return Err(corrupt(
            &out[0].path,
            &format!("the first segment does not start at record {}", start + 1),
        ));
    }
    Ok(out)
}

/// Writes a segment of `records` into `dir` durably (temporary file, fsync, rename, fsync
/// of the directory) and returns it.
#[cfg(test)]
pub(crate) fn write(dir: &Path, records: &[AuditRecord]) -> Result<Segment> {
    let io =
        |e: std::io::Error| StoreError::Backend(format!("audit segments `{}`: {e}", dir.display()));
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Err(StoreError::Backend("an empty audit segment".into()));
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let bytes = encode(records)?;
    let path = dir.join(file_name(first.seq, last.seq));
    let tmp = dir.join(format!("{}.tmp", file_name(first.seq, last.seq)));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    std::io::Write::write_all(&mut f, &bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(Segment {
        first: first.seq,
        last: last.seq,
        path,
    })
}

/// Reads one segment.
pub(crate) fn read(segment: &Segment) -> Result<Vec<AuditRecord>> {
    let bytes = std::fs::read(&segment.path).map_err(|e| corrupt(&segment.path, &e.to_string()))?;
    let records = if crate::journal::is_journal(&bytes) {
        crate::journal::parse(&bytes, &segment.path, false)?.records
    } else {
        decode(&bytes, &segment.path)?
    };
    if records.first().map(|r| r.seq) != Some(segment.first)
        || records.last().map(|r| r.seq) != Some(segment.last)
    {
        return Err(corrupt(
            &segment.path,
            "its records are not the ones its name says",
        ));
    }
    Ok(records)
}
