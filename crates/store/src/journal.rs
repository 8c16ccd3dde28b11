//! The audit journal: where audit records are written, outside sled. It is the open
//! segment of the log: when it holds a segment's worth of records it is synced and renamed
//! into a sealed segment (`<first>-<last>.seg`) as it is, and a new journal begins.
//!
//! ```text
//! "MANDSEG3" | first seq u64 BE | the first record's prev_hash, 32 bytes | frames
//! frame: body length u32 LE | CRC-32 of the body u32 LE | body
//! body:  flags u8 (bit 0: the record's change also wrote state to the store)
//!        | new strings: count varint, each length varint and UTF-8 bytes
//!        | new chains: count varint, each length varint and the chain's task and links
//!          (as MANDSEG1 writes them inline)
//!        | the event (as in MANDSEG1, strings as indexes into the strings defined so far,
//!          its task and links as an index into the chains defined so far)
//!        | the record's hash, 32 bytes
//! ```
//!
//! A worker presents the same chain with every call, so a decision's task and links (69
//! bytes for a chain of three) are written once per file; records name them by index.
//! `MANDSEG2` files (before the chain table: task and links inline in every record) are
//! read as they are, and a `MANDSEG2` journal is appended to in its own form.
//!
//! Ordering against the store (docs/AUDIT.md, "Where records are kept"): a commit writes
//! its frames with one `write` before it applies its change to sled, and a flush syncs the
//! journal before it flushes sled. A process crash therefore never leaves a change without
//! its record; a frame without its change (the process died between the two writes) is
//! cut at the next open, found by comparing the journal with the audit head that sled
//! stores with every change.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::records::{AuditEvent, AuditRecord};
use crate::segments::{
    ChainEntry, Chains, Intern, ReadChain, Reader, Segment, Strings, corrupt, hex32, put_event,
    put_task_links, put_varint, read_task_links, to_hex,
};
use crate::{Result, StoreError};

/// The journal's form since the chain table.
const MAGIC: &[u8; 8] = b"MANDSEG3";
/// The journal's first form: task and links inline in every record.
const MAGIC_V2: &[u8; 8] = b"MANDSEG2";
const HEADER: u64 = 8 + 8 + 32;
/// The journal's file name in the segments directory.
pub(crate) const FILE: &str = "journal";
/// Largest frame body accepted when reading (a record is a few hundred bytes).
const MAX_FRAME: u32 = 16 << 20;

/// Whether `bytes` are a journal, or a segment sealed from one (either form).
pub(crate) fn is_journal(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC) || bytes.starts_with(MAGIC_V2)
}

/// A journal's tables: its strings, and its chains (`None` in a `MANDSEG2` file).
#[derive(Default)]
pub(crate) struct Tables {
    pub(crate) strings: Strings,
    pub(crate) chains: Option<Chains>,
}

impl Tables {
    fn new(with_chains: bool) -> Tables {
        Tables {
            strings: Strings::default(),
            chains: with_chains.then(Chains::default),
        }
    }

    fn chain_count(&self) -> usize {
        self.chains.as_ref().map_or(0, |c| c.list.len())
    }
}

impl Intern for Tables {
    fn string(&mut self, s: &str) -> u64 {
        self.strings.id(s)
    }

    fn chain(&mut self, task: Option<&mandate_core::TaskId>, links: &[String]) -> Option<u64> {
        let Tables { strings, chains } = self;
        let chains = chains.as_mut()?;
        let mut encoded = Vec::with_capacity(18 + 17 * links.len());
        put_task_links(&mut encoded, task, links, strings);
        Some(chains.id(encoded, || (task.cloned(), links.to_vec())))
    }
}

/// What a parse of a segment or journal file found.
pub(crate) struct Parsed {
    pub(crate) first: u64,
    pub(crate) first_prev: [u8; 32],
    pub(crate) records: Vec<AuditRecord>,
    /// Whether each record's change wrote state.
    pub(crate) stateful: Vec<bool>,
    pub(crate) offsets: Vec<u64>,
    /// Bytes up to the end of the last whole, valid frame.
    pub(crate) end: u64,
    pub(crate) tables: Tables,
}

/// Parses `bytes`. `lenient`: stop at the first torn or corrupt frame (a journal after a
/// crash) instead of failing (a sealed segment must be whole).
pub(crate) fn parse(bytes: &[u8], path: &Path, lenient: bool) -> Result<Parsed> {
    let bad = |why: &str| corrupt(path, why);
    let mut r = Reader { bytes, at: 0 };
    let with_chains = match r.take(8) {
        Some(m) if m == MAGIC => true,
        Some(m) if m == MAGIC_V2 => false,
        _ => return Err(bad("not a segment (bad magic)")),
    };
    let first = u64::from_be_bytes(r.array().ok_or_else(|| bad("truncated header"))?);
    let first_prev: [u8; 32] = r.array().ok_or_else(|| bad("truncated header"))?;
    let mut p = Parsed {
        first,
        first_prev,
        records: Vec::new(),
        stateful: Vec::new(),
        offsets: Vec::new(),
        end: HEADER,
        tables: Tables::new(with_chains),
    };
    let mut prev = to_hex(&first_prev);
    while r.at < bytes.len() {
        let at = r.at;
        match frame(&mut r, &mut p.tables, path) {
            Ok((event, stateful, hash)) => {
                let seq = first + p.records.len() as u64;
                let hash = to_hex(&hash);
                p.records.push(AuditRecord {
                    seq,
                    event,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                });
                p.stateful.push(stateful);
                p.offsets.push(at as u64);
                p.end = r.at as u64;
            }
            // Only the last frame may be torn (a write cut short): a bad frame with whole
            // frames after it is damage, and opening stops rather than cut records away.
            Err(e) if lenient && torn_tail(bytes, at) => {
                tracing::warn!(error = %e, at, "audit journal: dropping a torn last frame");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(p)
}

/// Whether what follows `at` can be a write cut short: zeros to the end of `bytes` (the
/// file's size was extended and its data never written), or a frame that runs to the end
/// (or whose header does not fit) and is not all there with a checksum that holds. A cut
/// write leaves a prefix of what the writer wrote: never a whole, checked frame, nor a
/// whole header declaring more than any frame the writer makes; either, not parsing, is
/// damage.
fn torn_tail(bytes: &[u8], at: usize) -> bool {
    let rest = bytes.get(at..).unwrap_or_default();
    if rest.iter().all(|&b| b == 0) {
        return true;
    }
    let Some(header) = rest.get(..8) else {
        return true;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_FRAME {
        return false;
    }
    let end = 8 + len as usize;
    match rest.get(8..end) {
        None => true,
        Some(body) => end == rest.len() && (len == 0 || crc32fast::hash(body) != crc),
    }
}

/// What follows a frame's definitions: its record's event, then its hash.
fn read_record(
    b: &mut Reader<'_>,
    string: &dyn Fn(&mut Reader<'_>) -> Result<String>,
    chain: Option<&ReadChain<'_>>,
    bad: &dyn Fn(&str) -> StoreError,
) -> Result<(AuditEvent, [u8; 32])> {
    let event = crate::segments::read_event(b, string, chain, bad)?;
    let hash = b.array().ok_or_else(|| bad("truncated record"))?;
    Ok((event, hash))
}

/// One frame: its event, flag and hash. New strings and chains join `tables` only when
/// the whole frame is valid.
fn frame(
    r: &mut Reader<'_>,
    tables: &mut Tables,
    path: &Path,
) -> Result<(AuditEvent, bool, [u8; 32])> {
    let bad = |why: &str| corrupt(path, why);
    let len = u32::from_le_bytes(r.array().ok_or_else(|| bad("truncated frame"))?);
    let crc = u32::from_le_bytes(r.array().ok_or_else(|| bad("truncated frame"))?);
    if len > MAX_FRAME {
        return Err(bad("frame too long"));
    }
    let body = r.take(len as usize).ok_or_else(|| bad("truncated frame"))?;
    if crc32fast::hash(body) != crc {
        return Err(bad("frame checksum mismatch"));
    }
    let mut b = Reader { bytes: body, at: 0 };
    let flags = b.u8().ok_or_else(|| bad("truncated frame"))?;
    let n_new = b.varint().ok_or_else(|| bad("truncated frame"))?;
    let mut new = Vec::new();
    for _ in 0..n_new {
        let s = b.string(&bad)?;
        // A writer defines a string once per file; a second definition would number the
        // table differently from how the writer (and `Strings::id`) numbers it.
        if tables.strings.index.contains_key(&s) || new.contains(&s) {
            return Err(bad("a string is defined twice"));
        }
        new.push(s);
    }
    let strings = &tables.strings;
    let known = strings.list.len();
    let string = |r: &mut Reader<'_>| -> Result<String> {
        let i = usize::try_from(r.varint().ok_or_else(|| bad("truncated record"))?)
            .map_err(|_| bad("a string index is out of range"))?;
        if i < known {
            Ok(strings.list[i].clone())
        } else {
            new.get(i - known)
                .cloned()
                .ok_or_else(|| bad("a string index is out of range"))
        }
    };
    let mut new_chains: Vec<(Vec<u8>, ChainEntry)> = Vec::new();
    if tables.chains.is_some() {
        let n = b.varint().ok_or_else(|| bad("truncated frame"))?;
        for _ in 0..n {
            let len = usize::try_from(b.varint().ok_or_else(|| bad("truncated chain"))?)
                .map_err(|_| bad("chain too long"))?;
            let encoded = b.take(len).ok_or_else(|| bad("truncated chain"))?;
            let mut c = Reader {
                bytes: encoded,
                at: 0,
            };
            let entry = read_task_links(&mut c, &string, &bad)?;
            if c.at != encoded.len() {
                return Err(bad("bytes after a chain"));
            }
            let defined = tables
                .chains
                .as_ref()
                .is_some_and(|c| c.index.contains_key(encoded));
            if defined || new_chains.iter().any(|(e, _)| e == encoded) {
                return Err(bad("a chain is defined twice"));
            }
            new_chains.push((encoded.to_vec(), entry));
        }
    }
    let known_chains = tables.chain_count();
    let chains = tables.chains.as_ref();
    let chain = |r: &mut Reader<'_>| -> Result<ChainEntry> {
        let i = usize::try_from(r.varint().ok_or_else(|| bad("truncated record"))?)
            .map_err(|_| bad("a chain index is out of range"))?;
        let known = chains.and_then(|c| c.list.get(i));
        match known {
            Some(entry) => Ok(entry.clone()),
            None => i
                .checked_sub(known_chains)
                .and_then(|i| new_chains.get(i))
                .map(|(_, entry)| entry.clone())
                .ok_or_else(|| bad("a chain index is out of range")),
        }
    };
    let (event, hash) = read_record(
        &mut b,
        &string,
        chains.is_some().then_some(&chain as &ReadChain<'_>),
        &bad,
    )?;
    if b.at != body.len() {
        return Err(bad("bytes after a record in its frame"));
    }
    for s in new {
        tables.strings.id(&s);
    }
    if let Some(chains) = &mut tables.chains {
        for (encoded, entry) in new_chains {
            chains.push(encoded, entry);
        }
    }
    Ok((event, flags & 1 == 1, hash))
}

/// Appends one record's frame to `out`, interning its strings and chain.
fn put_frame(out: &mut Vec<u8>, r: &AuditRecord, stateful: bool, tables: &mut Tables) {
    let (known, known_chains) = (tables.strings.list.len(), tables.chain_count());
    let mut fields = Vec::with_capacity(160);
    put_event(&mut fields, &r.event, tables);
    let mut body = Vec::with_capacity(fields.len() + 64);
    body.push(u8::from(stateful));
    put_varint(&mut body, (tables.strings.list.len() - known) as u64);
    for s in &tables.strings.list[known..] {
        put_varint(&mut body, s.len() as u64);
        body.extend_from_slice(s.as_bytes());
    }
    if let Some(chains) = &tables.chains {
        put_varint(&mut body, (chains.encoded.len() - known_chains) as u64);
        for c in &chains.encoded[known_chains..] {
            put_varint(&mut body, c.len() as u64);
            body.extend_from_slice(c);
        }
    }
    body.extend_from_slice(&fields);
    // The hash was computed by this process over a hex string it made: it decodes.
    body.extend_from_slice(&hex32(&r.hash).unwrap_or([0; 32]));
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

fn header(first: u64, prev: &[u8; 32]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER as usize);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&first.to_be_bytes());
    h.extend_from_slice(prev);
    h
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Where an append started, to undo it.
pub(crate) struct Mark {
    records: usize,
    end: u64,
    strings: usize,
    chains: usize,
    head: (u64, String),
}

/// The open journal.
pub(crate) struct Journal {
    dir: PathBuf,
    file: File,
    first: u64,
    first_prev: [u8; 32],
    offsets: Vec<u64>,
    hashes: Vec<[u8; 32]>,
    end: u64,
    tables: Tables,
    head: (u64, String),
    /// A failed write that could not be undone: nothing more is written.
    broken: bool,
}

impl Journal {
    /// Opens the journal in `dir`, or creates an empty one whose first record is `first`
    /// after a record with hash `prev`. Returns it and, for recovery, whether each of its
    /// records' changes wrote state.
    pub(crate) fn open(dir: &Path, first: u64, prev: &str) -> Result<(Journal, Vec<bool>)> {
        let io = |e: std::io::Error| {
            StoreError::Backend(format!("audit journal in `{}`: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(FILE);
        if !path.exists() {
            let prev = hex32(prev)
                .ok_or_else(|| StoreError::Backend("the audit head has a malformed hash".into()))?;
            let tmp = dir.join(format!("{FILE}.tmp"));
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&header(first, &prev)).map_err(io)?;
            f.sync_all().map_err(io)?;
            drop(f);
            std::fs::rename(&tmp, &path).map_err(io)?;
            sync_dir(dir).map_err(io)?;
        }
        let bytes = std::fs::read(&path).map_err(io)?;
        let p = parse(&bytes, &path, true)?;
        if p.first != first {
            return Err(corrupt(
                &path,
                &format!(
                    "starts at record {} where record {first} was expected",
                    p.first
                ),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        if p.end < bytes.len() as u64 {
            file.set_len(p.end).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let head = p.records.last().map_or_else(
            || (first - 1, to_hex(&p.first_prev)),
            |r| (r.seq, r.hash.clone()),
        );
        let hashes = p
            .records
            .iter()
            .map(|r| hex32(&r.hash).unwrap_or([0; 32]))
            .collect();
        Ok((
            Journal {
                dir: dir.to_path_buf(),
                file,
                first,
                first_prev: p.first_prev,
                offsets: p.offsets,
                hashes,
                end: p.end,
                tables: p.tables,
                head,
                broken: false,
            },
            p.stateful,
        ))
    }

    /// The newest record's sequence number and hash.
    pub(crate) fn head(&self) -> (u64, &str) {
        (self.head.0, &self.head.1)
    }

    /// The first sequence number the journal holds (or will hold).
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Records in the journal.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Bytes in the journal file.
    pub(crate) fn bytes(&self) -> u64 {
        self.end
    }

    fn mark(&self) -> Mark {
        Mark {
            records: self.offsets.len(),
            end: self.end,
            strings: self.tables.strings.list.len(),
            chains: self.tables.chain_count(),
            head: self.head.clone(),
        }
    }

    /// Undoes everything appended since `mark` (a change that could not be applied).
    pub(crate) fn rollback(&mut self, mark: Mark) -> Result<()> {
        self.offsets.truncate(mark.records);
        self.hashes.truncate(mark.records);
        for s in self.tables.strings.list.drain(mark.strings..) {
            self.tables.strings.index.remove(&s);
        }
        if let Some(chains) = &mut self.tables.chains {
            chains.truncate(mark.chains);
        }
        self.head = mark.head;
        self.end = mark.end;
        if let Err(e) = self.file.set_len(mark.end) {
            self.broken = true;
            return Err(StoreError::Backend(format!(
                "audit journal: cannot undo a write ({e}); no more records are written"
            )));
        }
        Ok(())
    }

    /// Appends records for `events`, chained from the head, with one write. Returns them
    /// and a mark to undo the append with.
    pub(crate) fn append(
        &mut self,
        events: Vec<AuditEvent>,
        stateful: bool,
    ) -> Result<(Vec<AuditRecord>, Mark)> {
        let records = crate::records::chain(&self.head, events);
        let mark = self.write(&records, stateful)?;
        Ok((records, mark))
    }

    /// Appends records written elsewhere (a store's records from before the journal),
    /// which must continue the chain.
    pub(crate) fn append_records(&mut self, records: &[AuditRecord]) -> Result<()> {
        let (mut seq, mut prev) = self.head.clone();
        for r in records {
            seq += 1;
            if r.seq != seq || r.prev_hash != prev {
                return Err(StoreError::Backend(format!(
                    "audit record {} does not continue the journal at {}",
                    r.seq, self.head.0
                )));
            }
            prev.clone_from(&r.hash);
        }
        self.write(records, true).map(|_| ())
    }

    fn write(&mut self, records: &[AuditRecord], stateful: bool) -> Result<Mark> {
        if self.broken {
            return Err(StoreError::Backend(
                "audit journal: an earlier write or seal failed and could not be undone; reopen the store".into(),
            ));
        }
        let mark = self.mark();
        let mut buf = Vec::with_capacity(records.len() * 192);
        let mut offsets = Vec::with_capacity(records.len());
        for r in records {
            let at = buf.len();
            offsets.push(self.end + at as u64);
            put_frame(&mut buf, r, stateful, &mut self.tables);
            // A frame the reader would refuse is never written.
            let body = buf.len() - at - 8;
            if body > MAX_FRAME as usize {
                self.rollback(mark)?;
                return Err(StoreError::Backend(format!(
                    "audit record {} takes {body} bytes, more than a journal frame holds ({MAX_FRAME})",
                    r.seq
                )));
            }
        }
        if let Err(e) = self.file.write_all_at(&buf, self.end) {
            let _ = self.rollback(mark);
            return Err(StoreError::Backend(format!("audit journal: {e}")));
        }
        self.end += buf.len() as u64;
        self.offsets.extend(offsets);
        self.hashes
            .extend(records.iter().map(|r| hex32(&r.hash).unwrap_or([0; 32])));
        if let Some(last) = records.last() {
            self.head = (last.seq, last.hash.clone());
        }
        Ok(mark)
    }

    /// Drops the records after `seq` (their changes never reached the store), and reads
    /// the journal back: the string table must be the one the remaining frames define.
    pub(crate) fn truncate_after(&mut self, seq: u64) -> Result<usize> {
        let keep = usize::try_from(seq.saturating_sub(self.first - 1)).unwrap_or(usize::MAX);
        if keep >= self.offsets.len() {
            return Ok(0);
        }
        let dropped = self.offsets.len() - keep;
        self.file
            .set_len(self.offsets[keep])
            .and_then(|()| self.file.sync_all())
            .map_err(|e| StoreError::Backend(format!("audit journal: {e}")))?;
        let prev = to_hex(&self.first_prev);
        let (reopened, _) = Journal::open(&self.dir, self.first, &prev)?;
        *self = reopened;
        Ok(dropped)
    }

    /// A handle to sync the journal with outside its lock.
    pub(crate) fn sync_handle(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|e| StoreError::Backend(format!("audit journal: {e}")))
    }

    /// Records `from..` (at most `limit`) from the journal.
    pub(crate) fn read(&self, from: u64, limit: usize) -> Result<Vec<AuditRecord>> {
        let path = self.dir.join(FILE);
        let start = usize::try_from(from.saturating_sub(self.first)).unwrap_or(usize::MAX);
        if start >= self.offsets.len() || limit == 0 {
            return Ok(Vec::new());
        }
        let stop = (start + limit).min(self.offsets.len());
        let begin = self.offsets[start];
        let end = self.offsets.get(stop).copied().unwrap_or(self.end);
        let mut bytes = vec![0; usize::try_from(end - begin).unwrap_or(0)];
        self.file
            .read_exact_at(&mut bytes, begin)
            .map_err(|e| corrupt(&path, &e.to_string()))?;
        let mut prev = if start == 0 {
            to_hex(&self.first_prev)
        } else {
            to_hex(&self.hashes[start - 1])
        };
        let mut r = Reader {
            bytes: &bytes,
            at: 0,
        };
        let mut out = Vec::with_capacity(stop - start);
        for i in start..stop {
            let (event, hash) = frame_with(&mut r, &self.tables, &path)?;
            let hash = to_hex(&hash);
            out.push(AuditRecord {
                seq: self.first + i as u64,
                event,
                prev_hash: std::mem::replace(&mut prev, hash.clone()),
                hash,
            });
        }
        Ok(out)
    }

    /// Seals the journal into a segment (the caller made every record in it durable,
    /// in the journal and in the store) and starts a new one.
    pub(crate) fn seal(&mut self) -> Result<Segment> {
        let io = |e: std::io::Error| StoreError::Backend(format!("sealing the audit journal: {e}"));
        let (last, hash) = self.head.clone();
        self.file.sync_all().map_err(io)?;
        let segment = Segment {
            first: self.first,
            last,
            path: self.dir.join(crate::segments::file_name(self.first, last)),
        };
        std::fs::rename(self.dir.join(FILE), &segment.path).map_err(io)?;
        // From here the handle points into the sealed segment: until a new journal is
        // open, nothing more may be written through it.
        self.broken = true;
        sync_dir(&self.dir).map_err(io)?;
        let (next, _) = Journal::open(&self.dir, last + 1, &hash)?;
        *self = next;
        Ok(segment)
    }
}

/// One frame read back from the open journal, whose tables already hold every string and
/// chain the frame defines (the tables only grow).
fn frame_with(r: &mut Reader<'_>, tables: &Tables, path: &Path) -> Result<(AuditEvent, [u8; 32])> {
    let bad = |why: &str| corrupt(path, why);
    let len = u32::from_le_bytes(r.array().ok_or_else(|| bad("truncated frame"))?);
    let _crc = u32::from_le_bytes(r.array().ok_or_else(|| bad("truncated frame"))?);
    let body = r.take(len as usize).ok_or_else(|| bad("truncated frame"))?;
    let mut b = Reader { bytes: body, at: 0 };
    b.u8().ok_or_else(|| bad("truncated frame"))?;
    let skip_defined = |b: &mut Reader<'_>| -> Result<()> {
        let n = b.varint().ok_or_else(|| bad("truncated frame"))?;
        for _ in 0..n {
            let len = usize::try_from(b.varint().ok_or_else(|| bad("truncated frame"))?)
                .map_err(|_| bad("entry too long"))?;
            b.take(len).ok_or_else(|| bad("truncated frame"))?;
        }
        Ok(())
    };
    skip_defined(&mut b)?;
    if tables.chains.is_some() {
        skip_defined(&mut b)?;
    }
    let list = &tables.strings.list;
    let string = |r: &mut Reader<'_>| -> Result<String> {
        let i = r.varint().ok_or_else(|| bad("truncated record"))?;
        usize::try_from(i)
            .ok()
            .and_then(|i| list.get(i))
            .cloned()
            .ok_or_else(|| bad("a string index is out of range"))
    };
    let chains = tables.chains.as_ref();
    let chain = |r: &mut Reader<'_>| -> Result<ChainEntry> {
        let i = r.varint().ok_or_else(|| bad("truncated record"))?;
        usize::try_from(i)
            .ok()
            .and_then(|i| chains.and_then(|c| c.list.get(i)))
            .cloned()
            .ok_or_else(|| bad("a chain index is out of range"))
    };
    read_record(
        &mut b,
        &string,
        chains.is_some().then_some(&chain as &ReadChain<'_>),
        &bad,
    )
}

/// Rewrites the journal file at `path` with `records` (and whether each one's change wrote
/// state), keeping its header: for `crate::tamper` only.
#[cfg(feature = "tamper")]
pub(crate) fn rewrite(
    path: &Path,
    first_prev: &[u8; 32],
    records: &[(AuditRecord, bool)],
) -> Result<()> {
    let first = records.first().map_or(1, |(r, _)| r.seq);
    let mut bytes = header(first, first_prev);
    let mut tables = Tables::new(true);
    for (r, stateful) in records {
        put_frame(&mut bytes, r, *stateful, &mut tables);
    }
    std::fs::write(path, bytes).map_err(|e| StoreError::Backend(format!("audit journal: {e}")))
}

#[cfg(test)]
mod tests;
