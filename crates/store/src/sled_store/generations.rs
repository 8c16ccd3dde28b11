//! Where sled lives in the store directory, and rewriting it while the store runs.
//!
//! sled keeps superseded page versions in its log and reclaims a log segment only when its
//! own accounting finds it at most half live, so under churn its file grows to many times
//! the live data and does not settle. The store therefore rewrites sled's live keys into a
//! fresh sled directory, a generation (`state-N/`), while commits go on, and switches to it:
//!
//! 1. under the commit lock, every write from then on is also recorded
//!    ([`LiveDb`]'s capture: the last write of each key);
//! 2. without the lock, every key of the current generation is copied into the new one
//!    (sled's iterator is not a snapshot: a key written meanwhile may be copied old or
//!    new, and its recorded write sets it right), what was recorded so far is replayed,
//!    and the new generation is written out;
//! 3. under the lock again: what was recorded since is replayed, the audit journal is
//!    synced (no change may be durable before its record), the new generation is flushed
//!    and named in `state.current` (written aside, synced, renamed, directory synced),
//!    and the handle is swapped;
//! 4. the old generation is deleted once no reader can still be using it.
//!
//! A crash before the rename leaves the old generation current (the half-built one is
//! removed at open); after it, the new one, which holds every change committed before the
//! swap. Stores written before generations keep sled at the top of the store directory
//! (with sled's default log segments) until their first rewrite.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::{backend, batch};
use crate::journal::Journal;
use crate::kv::{Kv, Ops, Visit};
use crate::{Result, StoreError};

/// The file naming the current generation and its size when it was written.
const POINTER: &str = "state.current";

/// sled's log segment size in new generations. sled keeps a write buffer of a segment's
/// size in memory per segment being filled; 128 KiB instead of sled's 512 KiB measured
/// 13-18 MiB less resident memory in the soak, and a smaller file (BENCHMARKS.md).
const SEGMENT_BYTES: usize = 128 << 10;

/// Below this size sled's files are never rewritten in the background.
pub const DEFAULT_REWRITE_FLOOR: u64 = 64 << 20;

/// sled's files are rewritten when they reach this many times the size the last rewrite
/// left (and the floor).
const REWRITE_GROWTH: u64 = 2;

/// How long a retired generation is kept after the swap, for readers that took its handle
/// just before.
const RETIRE_AFTER: Duration = Duration::from_secs(5);

/// The sled tree the store uses now, swapped by a rewrite; every write goes through
/// [`LiveDb::apply`], under the store's commit lock.
pub(super) struct LiveDb {
    db: RwLock<sled::Db>,
    /// While a rewrite copies the store: the writes applied since it began.
    capture: Mutex<Option<Ops>>,
}

impl LiveDb {
    pub(super) fn new(db: sled::Db) -> LiveDb {
        LiveDb {
            db: RwLock::new(db),
            capture: Mutex::new(None),
        }
    }

    /// The current generation's tree.
    pub(super) fn current(&self) -> sled::Db {
        self.db
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Applies `ops` atomically (the caller holds the commit lock).
    pub(super) fn apply(&self, ops: Ops) -> Result<()> {
        let db = self.current();
        let mut capture = self.capture.lock().unwrap_or_else(PoisonError::into_inner);
        match capture.as_mut() {
            Some(recorded) => {
                db.apply_batch(batch(ops.clone())).map_err(backend)?;
                recorded.extend(ops);
            }
            None => db.apply_batch(batch(ops)).map_err(backend)?,
        }
        Ok(())
    }

    /// Starts (`Some`) or stops (`None`) recording writes; returns what was recorded.
    fn record(&self, on: bool) -> Ops {
        let mut capture = self.capture.lock().unwrap_or_else(PoisonError::into_inner);
        let recorded = capture.take().unwrap_or_default();
        if on {
            *capture = Some(Ops::default());
        }
        recorded
    }
}

impl Kv for LiveDb {
    type Bytes = sled::IVec;

    fn get(&self, k: &[u8]) -> Result<Option<sled::IVec>> {
        Kv::get(&self.current(), k)
    }

    fn contains(&self, k: &[u8]) -> Result<bool> {
        Kv::contains(&self.current(), k)
    }

    fn scan(&self, start: &[u8], end: &[u8], f: &mut Visit<'_>) -> Result<()> {
        Kv::scan(&self.current(), start, end, f)
    }
}

/// Where the current generation is, and what a rewrite needs to make the next one.
pub(super) struct Generations {
    dir: PathBuf,
    cache_bytes: u64,
    /// Sizes below this are never rewritten in the background.
    floor: AtomicU64,
    /// Held for a whole rewrite: one at a time.
    state: Mutex<State>,
    /// Set when the store closes: a rewrite under way gives up (its copy is removed)
    /// rather than hold the close up.
    closing: std::sync::atomic::AtomicBool,
}

struct State {
    /// The current generation (`None`: sled at the top of the directory, as written before
    /// generations).
    current: Option<u64>,
    /// sled's size right after the last rewrite (0: not known).
    baseline: u64,
    /// Generations replaced, with when, to delete once no reader can be using them.
    retired: Vec<(Option<u64>, Instant)>,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("`{}`: {e}", path.display()))
}

fn generation_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("state-{generation}"))
}

fn open_sled(path: &Path, cache_bytes: u64, segment: Option<usize>) -> Result<sled::Db> {
    let mut config = sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None);
    if let Some(size) = segment {
        config = config.segment_size(size);
    }
    config.open().map_err(backend)
}

/// Opens the sled at `path` that this process has just closed: its file lock is released
/// once sled's I/O threads let go of the last handle, which can take a moment.
fn reopen_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let mut tries = 0;
    loop {
        match open_sled(path, cache_bytes, Some(SEGMENT_BYTES)) {
            Err(e) if tries < 200 && e.to_string().contains("lock") => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return opened,
        }
    }
}

/// Opens the current generation of the store in `dir`, which is not open anywhere, as the
/// store would (for tools that edit a closed store's files).
#[cfg(feature = "tamper")]
pub(crate) fn open_closed(dir: &Path) -> Result<sled::Db> {
    Generations::open(dir, crate::DEFAULT_CACHE_BYTES).map(|(db, _)| db)
}

/// The generation `state.current` names and the size it was written with.
fn read_pointer(dir: &Path) -> Result<Option<(u64, u64)>> {
    let path = dir.join(POINTER);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    let parsed = (|| {
        let mut words = text.split_whitespace();
        let generation = words.next()?.strip_prefix("state-")?.parse().ok()?;
        let baseline = words.next()?.parse().ok()?;
        words.next().is_none().then_some((generation, baseline))
    })();
    parsed.map(Some).ok_or_else(|| {
        StoreError::Backend(format!(
            "`{}` does not name a generation (`state-N <bytes>`): not opening",
            path.display()
        ))
    })
}

/// Names `generation` current, durably: once this returns, an open uses it.
fn write_pointer(dir: &Path, generation: u64, baseline: u64) -> Result<()> {
    let staged = dir.join(format!("{POINTER}.new"));
    let io = io_error(&staged);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&staged).map_err(&io)?;
        writeln!(f, "state-{generation} {baseline}").map_err(&io)?;
        f.sync_all().map_err(&io)?;
    }
    std::fs::rename(&staged, dir.join(POINTER)).map_err(&io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Removes generation `which` (`None`: sled's files at the top of the directory).
fn remove_generation(dir: &Path, which: Option<u64>) -> Result<()> {
    let gone = |r: std::io::Result<()>, path: &Path| match r {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    };
    if let Some(generation) = which {
        let path = generation_dir(dir, generation);
        return gone(std::fs::remove_dir_all(&path), &path);
    }
    for name in ["db", "conf"] {
        let path = dir.join(name);
        gone(std::fs::remove_file(&path), &path)?;
    }
    let blobs = dir.join("blobs");
    gone(std::fs::remove_dir_all(&blobs), &blobs)?;
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("snap."))
        {
            gone(std::fs::remove_file(&path), &path)?;
        }
    }
    Ok(())
}

/// The generations in `dir` other than `keep`.
fn other_generations(dir: &Path, keep: Option<u64>) -> Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let name = entry.file_name();
        if let Some(generation) = name
            .to_str()
            .and_then(|n| n.strip_prefix("state-"))
            .and_then(|n| n.parse::<u64>().ok())
            && Some(generation) != keep
        {
            found.push(generation);
        }
    }
    Ok(found)
}

impl Generations {
    /// Opens the current generation in `dir` (creating the first in a new store) and
    /// removes what an interrupted rewrite left: a half-built generation, or the one it
    /// replaced.
    pub(super) fn open(dir: &Path, cache_bytes: u64) -> Result<(sled::Db, Generations)> {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        let pointer = read_pointer(dir)?;
        let legacy = pointer.is_none() && dir.join("db").exists();
        let current = match pointer {
            Some((generation, _)) if !generation_dir(dir, generation).is_dir() => {
                return Err(StoreError::Backend(format!(
                    "`{}` names state-{generation}, which is missing: not opening",
                    dir.join(POINTER).display()
                )));
            }
            Some((generation, _)) => Some(generation),
            None if legacy => None,
            None => {
                // A new store, or one whose creation stopped before `state.current` was
                // written (its `state-1` holds nothing acknowledged). Any later generation
                // means the pointer was lost: nothing is removed, nothing opened.
                let found = other_generations(dir, Some(1))?;
                if let Some(generation) = found.first() {
                    return Err(StoreError::Backend(format!(
                        "`{}` holds state-{generation} but no `{POINTER}` naming the current \
                         generation: not opening",
                        dir.display()
                    )));
                }
                Some(1)
            }
        };
        // What an interrupted rewrite left: a half-built generation, or the one replaced
        // (of a store of an earlier version: sled's files at the top).
        if pointer.is_some() || legacy {
            for generation in other_generations(dir, current)? {
                remove_generation(dir, Some(generation))?;
            }
        }
        if pointer.is_some() {
            remove_generation(dir, None)?;
        }
        let db = match current {
            Some(generation) => open_sled(
                &generation_dir(dir, generation),
                cache_bytes,
                Some(SEGMENT_BYTES),
            )?,
            None => open_sled(dir, cache_bytes, None)?,
        };
        if pointer.is_none() && !legacy {
            write_pointer(dir, 1, 0)?;
        }
        let baseline = pointer.map_or(0, |(_, baseline)| baseline);
        let generations = Generations {
            dir: dir.to_owned(),
            cache_bytes,
            floor: AtomicU64::new(DEFAULT_REWRITE_FLOOR),
            closing: std::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(State {
                current,
                baseline,
                retired: Vec::new(),
            }),
        };
        Ok((db, generations))
    }

    /// Sets the size below which sled's files are never rewritten in the background.
    pub(super) fn set_floor(&self, bytes: u64) {
        self.floor.store(bytes, Ordering::Relaxed);
    }

    /// Makes a rewrite under way give up: the store is closing.
    pub(super) fn cancel(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// Deletes every retired generation: the store is closing, no reader is left.
    pub(super) fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        for (which, _) in std::mem::take(&mut state.retired) {
            if let Err(e) = remove_generation(&self.dir, which) {
                tracing::warn!(error = %e, "cannot remove a replaced generation (the next open will)");
            }
        }
    }

    /// Deletes the retired generations no reader can be using any more.
    fn remove_retired(&self, state: &mut State) -> Result<()> {
        while let Some(&(which, at)) = state.retired.first() {
            if at.elapsed() < RETIRE_AFTER {
                break;
            }
            remove_generation(&self.dir, which)?;
            state.retired.remove(0);
        }
        Ok(())
    }

    /// Deletes retired generations, and says whether sled's files have grown past the
    /// floor and twice what the last rewrite left (never while a rewrite runs).
    fn due(&self, live: &LiveDb) -> Result<bool> {
        let mut state = match self.state.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        };
        self.remove_retired(&mut state)?;
        let size = live.current().size_on_disk().map_err(backend)?;
        Ok(rewrite_due(
            size,
            state.baseline,
            self.floor.load(Ordering::Relaxed),
        ))
    }

    /// Rewrites sled's live keys into a new generation and switches to it (module doc);
    /// returns sled's size before and after.
    pub(super) fn rewrite(
        &self,
        live: &LiveDb,
        commit_lock: &Mutex<()>,
        journal: &Mutex<Journal>,
    ) -> Result<(u64, u64)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let started = Instant::now();
        let next = state.current.map_or(1, |g| g + 1);
        let path = generation_dir(&self.dir, next);
        remove_generation(&self.dir, Some(next))?;
        let old = live.current();
        let before = old.size_on_disk().map_err(backend)?;
        let locked = || commit_lock.lock().unwrap_or_else(PoisonError::into_inner);
        {
            let _guard = locked();
            live.record(true);
        }
        let copied = (|| -> Result<sled::Db> {
            let new = open_sled(&path, self.cache_bytes, Some(SEGMENT_BYTES))?;
            let mut chunk = sled::Batch::default();
            let mut n = 0usize;
            for item in old.iter() {
                let (k, v) = item.map_err(backend)?;
                chunk.insert(k, v);
                n += 1;
                if n.is_multiple_of(10_000) {
                    if self.closing.load(Ordering::Relaxed) {
                        return Err(StoreError::Backend(
                            "the store is closing: its rewrite was abandoned".into(),
                        ));
                    }
                    new.apply_batch(std::mem::take(&mut chunk))
                        .map_err(backend)?;
                }
            }
            new.apply_batch(chunk).map_err(backend)?;
            new.flush().map_err(backend)?;
            // Opened again: the copy left every page in the cache, which a running store
            // does not need (measured: resident memory stayed ~40 MiB higher after a
            // rewrite that kept them).
            drop(new);
            let new = reopen_sled(&path, self.cache_bytes)?;
            new.apply_batch(batch(live.record(true))).map_err(backend)?;
            // Written out now, so that the flush under the lock writes only what came
            // since.
            new.flush().map_err(backend)?;
            Ok(new)
        })();
        let guard = locked();
        let locked_at = Instant::now();
        let switched = copied.and_then(|new| {
            new.apply_batch(batch(live.record(false)))
                .map_err(backend)?;
            super::sync_journal(journal)?;
            new.flush().map_err(backend)?;
            let after = new.size_on_disk().map_err(backend)?;
            write_pointer(&self.dir, next, after)?;
            Ok((new, after))
        });
        let (new, after) = match switched {
            Ok(switched) => switched,
            Err(e) => {
                live.record(false);
                drop(guard);
                // A failed rewrite leaves the old generation current: the new one goes.
                let _ = remove_generation(&self.dir, Some(next));
                return Err(e);
            }
        };
        *live.db.write().unwrap_or_else(PoisonError::into_inner) = new;
        drop(guard);
        tracing::info!(
            before,
            after,
            generation = next,
            millis = started.elapsed().as_millis() as u64,
            locked_millis = locked_at.elapsed().as_millis() as u64,
            "the store's state was rewritten into a new generation"
        );
        let replaced = state.current.replace(next);
        state.retired.push((replaced, Instant::now()));
        state.baseline = after;
        Ok((before, after))
    }
}

/// What the store's background thread needs to rewrite sled when it is due, on a thread
/// of its own (a rewrite takes seconds; flushes go on meanwhile).
pub(super) struct Rewriter {
    pub(super) generations: Arc<Generations>,
    pub(super) live: Arc<LiveDb>,
    pub(super) commit_lock: Arc<Mutex<()>>,
    pub(super) journal: Arc<Mutex<Journal>>,
    pub(super) running: Option<std::thread::JoinHandle<()>>,
}

impl Rewriter {
    /// Called every round of the background thread: starts a rewrite when one is due.
    pub(super) fn tick(&mut self) {
        if self.running.as_ref().is_some_and(|t| t.is_finished()) {
            self.finish();
        }
        if self.running.is_some() {
            return;
        }
        match self.generations.due(&self.live) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether the store's state needs a rewrite");
                return;
            }
        }
        let (generations, live) = (Arc::clone(&self.generations), Arc::clone(&self.live));
        let (commit_lock, journal) = (Arc::clone(&self.commit_lock), Arc::clone(&self.journal));
        let spawned = std::thread::Builder::new()
            .name("mandate-store-rewrite".into())
            .spawn(move || {
                if let Err(e) = generations.rewrite(&live, &commit_lock, &journal)
                    && !generations.closing.load(Ordering::Relaxed)
                {
                    tracing::warn!(error = %e, "rewriting the store's state failed");
                }
            });
        match spawned {
            Ok(thread) => self.running = Some(thread),
            Err(e) => tracing::warn!(error = %e, "cannot start a rewrite of the store's state"),
        }
    }

    /// Waits for a rewrite under way to end.
    pub(super) fn finish(&mut self) {
        if let Some(thread) = self.running.take() {
            let _ = thread.join();
        }
    }
}

/// Whether sled's files at `size` bytes are due a rewrite, `baseline` being their size
/// after the last one (0: not known) and `floor` the size below which they never are.
fn rewrite_due(size: u64, baseline: u64, floor: u64) -> bool {
    size > floor && size > baseline.saturating_mul(REWRITE_GROWTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_is_due_past_the_floor_and_twice_the_last_size() {
        assert!(!rewrite_due(60 << 20, 0, 64 << 20));
        assert!(rewrite_due(65 << 20, 0, 64 << 20));
        assert!(!rewrite_due(100 << 20, 50 << 20, 64 << 20));
        assert!(rewrite_due(101 << 20, 50 << 20, 64 << 20));
        assert!(!rewrite_due(u64::MAX, u64::MAX, 0));
    }

    #[test]
    fn a_damaged_pointer_refuses_the_open() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["", "state-x 1\n", "state-1\n", "gen-1 5\n", "state-1 5 6\n"] {
            std::fs::write(dir.path().join(POINTER), text).unwrap();
            let e = read_pointer(dir.path()).unwrap_err().to_string();
            assert!(e.contains("does not name a generation"), "{text:?}: {e}");
        }
        std::fs::write(dir.path().join(POINTER), "state-7 5\n").unwrap();
        assert_eq!(read_pointer(dir.path()).unwrap(), Some((7, 5)));
        let e = match Generations::open(dir.path(), 1 << 20) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened a store whose generation is missing"),
        };
        assert!(e.contains("state-7, which is missing"), "{e}");
    }
}
