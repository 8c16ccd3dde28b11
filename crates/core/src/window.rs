//! A replay window kept in generations.
//!
//! Every replay cache remembers each nonce until the request or proof that carried it can
//! no longer pass its staleness check. Keeping one table plus a queue in insertion order
//! (to expire the oldest first) costs 32-48 bytes an entry beyond the table itself. Here
//! the entries go into generations, a new one every `span`: a generation is dropped whole
//! once its latest expiry has passed, so no queue is needed, and each generation's table
//! is sized from the one before it, so a steady load does not regrow tables. A lookup
//! probes every generation (about eight, a few nanoseconds each); each entry still keeps
//! its own expiry, so the window is exact: nothing is forgotten early, and an expired
//! entry found before its generation goes is not a replay.

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
    expiry: FingerprintMap<u64>,
    tally: T,
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
                self.entries -= g.expiry.len();
            }
        }
    }

    /// Whether `fingerprint` is held and has not expired at `now_ms`.
    pub fn seen(&self, fingerprint: u64, now_ms: u64) -> bool {
        self.generations
            .iter()
            .any(|g| g.expiry.get(&fingerprint).is_some_and(|&e| e > now_ms))
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
            g.expiry.retain(|_, e| *e > now_ms);
        }
        self.entries = self.generations.iter().map(|g| g.expiry.len()).sum();
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
            let size = self.generations.back().map_or(0, |g| g.expiry.len());
            self.generations.push_back(Generation {
                opened_ms: now_ms,
                latest_expiry_ms: 0,
                expiry: FingerprintMap::with_capacity_and_hasher(size, Default::default()),
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
        if newest.expiry.insert(fingerprint, expires_at_ms).is_none() {
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
}
