//! A replay window kept in generations.
//!
//! Every replay cache remembers each nonce until the request or proof that carried it can
//! no longer pass its staleness check. Keeping one table plus a queue in insertion order
//! (to expire the oldest first) costs 32-48 bytes an entry beyond the table itself. Here
//! the entries go into generations, a new one every `span`: a generation is dropped whole
//! once its latest expiry has passed, so no queue is needed. Only the newest generation is
//! written; when the next one opens it is sealed into a compact, read-only form
//! ([`Sealed`]: 12.5 bytes an entry instead of the 17-39 a hash table takes at its load
//! factor), and the new one's table is sized from its count, so a steady load does not
//! regrow tables. A lookup probes every generation (about eight, a cache line or two
//! each); each entry still keeps its own expiry, so the window is exact: nothing is
//! forgotten early, and an expired entry found before its generation goes is not a
//! replay.

use std::collections::VecDeque;

use crate::fingerprint::FingerprintMap;

/// Nonce fingerprints with their expiries, in generations of `span_ms`, with a tally of
/// type `T` per generation (what the caller counts about the entries, e.g. per agent).
#[derive(Debug)]
pub struct NonceWindow<T = ()> {
    generations: VecDeque<Generation<T>>,
    span_ms: u64,
    entries: usize,
    last_sweep_ms: Option<u64>,
}

#[derive(Debug)]
struct Generation<T> {
    opened_ms: u64,
    latest_expiry_ms: u64,
    entries: Entries,
    tally: T,
}

/// A generation's fingerprints and their expiries.
#[derive(Debug)]
enum Entries {
    /// The newest generation, still written.
    Open(FingerprintMap<u64>),
    /// An older one: read only, compact.
    Sealed(Sealed),
}

impl Entries {
    fn len(&self) -> usize {
        match self {
            Entries::Open(m) => m.len(),
            Entries::Sealed(s) => s.fingerprints.len(),
        }
    }

    fn expiry(&self, fingerprint: u64) -> Option<u64> {
        match self {
            Entries::Open(m) => m.get(&fingerprint).copied(),
            Entries::Sealed(s) => s.expiry(fingerprint),
        }
    }

    /// Sealed if the entries allow it ([`Sealed::build`]), else an open table.
    fn from_pairs(pairs: impl Iterator<Item = (u64, u64)> + Clone) -> Entries {
        match Sealed::build(pairs.clone()) {
            Some(s) => Entries::Sealed(s),
            None => Entries::Open(pairs.collect()),
        }
    }

    fn seal(&mut self) {
        if let Entries::Open(m) = self
            && let Some(s) = Sealed::build(m.iter().map(|(&f, &e)| (f, e)))
        {
            *self = Entries::Sealed(s);
        }
    }

    /// Keeps the entries that expire after `now_ms`.
    fn retain_live(&mut self, now_ms: u64) {
        match self {
            Entries::Open(m) => m.retain(|_, e| *e > now_ms),
            Entries::Sealed(s) => {
                if s.iter().any(|(_, e)| e <= now_ms) {
                    *self = Entries::from_pairs(s.iter().filter(|&(_, e)| e > now_ms));
                }
            }
        }
    }
}

/// Distinct fingerprints grouped into buckets by their value scaled to the bucket count
/// (about eight to a bucket: fingerprints are uniform), each with its expiry as
/// milliseconds after the earliest one. A lookup reads one bucket's start and scans its
/// few entries; no empty slots, 12.5 bytes an entry.
#[derive(Debug)]
struct Sealed {
    /// Where each bucket starts in `fingerprints`, and the end.
    starts: Box<[u32]>,
    fingerprints: Box<[u64]>,
    /// `expiry - base_ms` of the fingerprint at the same index.
    expiry: Box<[u32]>,
    base_ms: u64,
}

impl Sealed {
    /// Groups `pairs` (distinct fingerprints, each with its expiry). `None` when they do
    /// not fit the form: more than `u32::MAX` of them, or expiries more than `u32::MAX`
    /// ms (about 49 days) apart.
    fn build(pairs: impl Iterator<Item = (u64, u64)> + Clone) -> Option<Sealed> {
        let (mut n, mut base_ms, mut last_ms) = (0usize, u64::MAX, 0u64);
        for (_, e) in pairs.clone() {
            n += 1;
            base_ms = base_ms.min(e);
            last_ms = last_ms.max(e);
        }
        if u32::try_from(n).is_err() || (n > 0 && last_ms - base_ms > u64::from(u32::MAX)) {
            return None;
        }
        let buckets = (n / 8).max(1);
        // Counts per bucket, then each bucket's start (a counting sort: no comparisons).
        let mut starts = vec![0u32; buckets + 1];
        for (f, _) in pairs.clone() {
            starts[bucket(f, buckets) + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut next: Vec<u32> = starts[..buckets].to_vec();
        let mut fingerprints = vec![0u64; n];
        let mut expiry = vec![0u32; n];
        for (f, e) in pairs {
            let slot = &mut next[bucket(f, buckets)];
            let i = *slot as usize;
            *slot += 1;
            fingerprints[i] = f;
            expiry[i] = u32::try_from(e - base_ms).ok()?;
        }
        Some(Sealed {
            starts: starts.into(),
            fingerprints: fingerprints.into(),
            expiry: expiry.into(),
            base_ms,
        })
    }

    fn expiry(&self, fingerprint: u64) -> Option<u64> {
        let b = bucket(fingerprint, self.starts.len() - 1);
        let (from, to) = (self.starts[b] as usize, self.starts[b + 1] as usize);
        self.fingerprints[from..to]
            .iter()
            .position(|&f| f == fingerprint)
            .map(|i| self.base_ms + u64::from(self.expiry[from + i]))
    }

    fn iter(&self) -> impl Iterator<Item = (u64, u64)> + Clone + '_ {
        self.fingerprints
            .iter()
            .zip(self.expiry.iter())
            .map(|(&f, &e)| (f, self.base_ms + u64::from(e)))
    }
}

/// The bucket of `fingerprint` among `buckets`: its value scaled to that range, so
/// buckets hold fingerprints in order of value.
fn bucket(fingerprint: u64, buckets: usize) -> usize {
    ((u128::from(fingerprint) * buckets as u128) >> 64) as usize
}

impl<T: Default> NonceWindow<T> {
    /// A window that opens a new generation every `span_ms` (at least 1 ms). About an
    /// eighth of the longest time an entry is kept is a good span.
    pub fn new(span_ms: u64) -> NonceWindow<T> {
        NonceWindow {
            generations: VecDeque::new(),
            span_ms: span_ms.max(1),
            entries: 0,
            last_sweep_ms: None,
        }
    }

    /// Drops the generations whose every entry has expired at `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        while self
            .generations
            .front()
            .is_some_and(|g| g.latest_expiry_ms <= now_ms)
        {
            if let Some(g) = self.generations.pop_front() {
                self.entries -= g.entries.len();
            }
        }
    }

    /// Whether `fingerprint` is held and has not expired at `now_ms`.
    pub fn seen(&self, fingerprint: u64, now_ms: u64) -> bool {
        self.generations
            .iter()
            .any(|g| g.entries.expiry(fingerprint).is_some_and(|e| e > now_ms))
    }

    /// Entries held, counting expired ones whose generation has not gone yet (at most one
    /// span's worth, or none after a [`NonceWindow::sweep`]).
    pub fn len(&self) -> usize {
        self.entries
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The tallies of the generations still held, oldest first.
    pub fn tallies(&self) -> impl Iterator<Item = &T> {
        self.generations.iter().map(|g| &g.tally)
    }

    /// Removes expired entries from every generation, at most once a second (it visits
    /// every entry); returns whether it ran. Tallies are left as they are: they count an
    /// entry until its generation goes.
    pub fn sweep(&mut self, now_ms: u64) -> bool {
        if self
            .last_sweep_ms
            .is_some_and(|last| now_ms < last.saturating_add(1000))
        {
            return false;
        }
        self.last_sweep_ms = Some(now_ms);
        for g in &mut self.generations {
            g.entries.retain_live(now_ms);
        }
        self.entries = self.generations.iter().map(|g| g.entries.len()).sum();
        true
    }

    /// Holds `fingerprint` until `expires_at_ms` (the caller checked [`NonceWindow::seen`]
    /// first) and returns the tally of the generation it went into.
    pub fn insert(&mut self, fingerprint: u64, expires_at_ms: u64, now_ms: u64) -> &mut T {
        let open_new = self
            .generations
            .back()
            .is_none_or(|g| now_ms >= g.opened_ms.saturating_add(self.span_ms));
        if open_new {
            // The last span's count is the best guess at the next one's.
            let mut size = 0;
            if let Some(g) = self.generations.back_mut() {
                g.entries.seal();
                size = g.entries.len();
            }
            self.generations.push_back(Generation {
                opened_ms: now_ms,
                latest_expiry_ms: 0,
                entries: Entries::Open(FingerprintMap::with_capacity_and_hasher(
                    size,
                    Default::default(),
                )),
                tally: T::default(),
            });
        }
        let Self {
            generations,
            entries,
            ..
        } = self;
        let newest = generations
            .back_mut()
            .unwrap_or_else(|| unreachable!("a generation was just opened if none was"));
        // Only the newest generation is written, and it is open: it was created so, and
        // sealing happens to a generation only once a newer one exists.
        let Entries::Open(open) = &mut newest.entries else {
            unreachable!("the newest generation is open")
        };
        if open.insert(fingerprint, expires_at_ms).is_none() {
            *entries += 1;
        }
        newest.latest_expiry_ms = newest.latest_expiry_ms.max(expires_at_ms);
        &mut newest.tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_seen_until_its_own_expiry_and_not_after() {
        let mut w = NonceWindow::<()>::new(10);
        w.insert(1, 100, 0);
        assert!(w.seen(1, 99));
        assert!(!w.seen(1, 100));
        assert!(!w.seen(2, 0));
    }

    #[test]
    fn generations_go_whole_once_their_latest_expiry_has_passed() {
        let mut w = NonceWindow::<u32>::new(10);
        *w.insert(1, 50, 0) += 1;
        *w.insert(2, 500, 5) += 1;
        *w.insert(3, 60, 10) += 1;
        assert_eq!(w.len(), 3);
        assert_eq!(w.tallies().copied().collect::<Vec<_>>(), [2, 1]);
        // The first generation holds an entry alive until 500: nothing goes at 100.
        w.expire(100);
        assert_eq!(w.len(), 3);
        assert!(w.seen(2, 100) && !w.seen(1, 100));
        w.expire(500);
        assert!(w.is_empty());
        assert_eq!(w.tallies().count(), 0);
    }

    #[test]
    fn a_sweep_removes_expired_entries_behind_a_live_one_at_most_once_a_second() {
        let mut w = NonceWindow::<()>::new(1000);
        w.insert(1, 5000, 0);
        w.insert(2, 10, 0);
        assert!(w.sweep(20));
        assert_eq!(w.len(), 1);
        w.insert(3, 30, 25);
        assert!(!w.sweep(900));
        assert_eq!(w.len(), 2);
        assert!(w.sweep(1020));
        assert_eq!(w.len(), 1);
        assert!(w.seen(1, 1020));
    }

    #[test]
    fn inserting_a_held_fingerprint_again_does_not_count_it_twice() {
        let mut w = NonceWindow::<()>::new(10);
        w.insert(7, 20, 0);
        w.insert(7, 40, 30);
        assert_eq!(w.len(), 2, "one per generation");
        w.insert(7, 45, 31);
        assert_eq!(w.len(), 2);
        w.expire(20);
        assert_eq!(w.len(), 1);
        assert!(w.seen(7, 39));
    }

    /// Fingerprints spread as real ones are (xorshift, fixed seed).
    fn fingerprints(n: usize, mut x: u64) -> Vec<u64> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            })
            .collect()
    }

    #[test]
    fn a_sealed_generation_answers_as_its_table_did() {
        let held = fingerprints(5000, 0x9e37_79b9_7f4a_7c15);
        // Extremes of the range land in the first and last buckets.
        let held: Vec<u64> = held.into_iter().chain([0, 1, u64::MAX]).collect();
        let pairs = held.iter().enumerate().map(|(i, &f)| (f, 1_000 + i as u64));
        let sealed = Sealed::build(pairs.clone()).expect("fits");
        assert_eq!(sealed.fingerprints.len(), held.len());
        for (f, e) in pairs {
            assert_eq!(sealed.expiry(f), Some(e));
        }
        let set: std::collections::HashSet<u64> = held.iter().copied().collect();
        for f in fingerprints(5000, 42) {
            assert_eq!(sealed.expiry(f).is_some(), set.contains(&f));
        }
        let empty = Sealed::build(std::iter::empty()).expect("fits");
        assert_eq!(empty.expiry(7), None);
    }

    #[test]
    fn older_generations_are_sealed_and_still_exact() {
        let mut w = NonceWindow::<()>::new(10);
        let first = fingerprints(100, 3);
        for (i, &f) in first.iter().enumerate() {
            w.insert(f, 1_000 + i as u64, 0);
        }
        w.insert(5, 2_000, 10);
        assert!(matches!(w.generations[0].entries, Entries::Sealed(_)));
        assert!(matches!(w.generations[1].entries, Entries::Open(_)));
        for (i, &f) in first.iter().enumerate() {
            let expiry = 1_000 + i as u64;
            assert!(w.seen(f, expiry - 1), "held until its own expiry");
            assert!(!w.seen(f, expiry), "and not after");
        }
        // A sweep drops the expired entries of a sealed generation and keeps the rest.
        assert!(w.sweep(1_050));
        assert_eq!(
            w.len(),
            50,
            "49 of the first generation (1,051-1,099) and one"
        );
        assert!(w.seen(first[51], 1_050) && !w.seen(first[50], 1_050));
        assert!(matches!(w.generations[0].entries, Entries::Sealed(_)));
        assert!(w.seen(5, 1_050));
    }

    #[test]
    fn a_generation_whose_expiries_are_too_far_apart_stays_open_and_exact() {
        let mut w = NonceWindow::<()>::new(10);
        let far = 1 + u64::from(u32::MAX) + 1;
        w.insert(1, 1, 0);
        w.insert(2, far, 0);
        w.insert(3, 50, 10);
        assert!(matches!(w.generations[0].entries, Entries::Open(_)));
        assert!(w.seen(2, far - 1) && !w.seen(2, far));
        assert!(!w.seen(1, 1));
    }
}
