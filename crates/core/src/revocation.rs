//! The revocation set a verifier consults: supplied by the caller (a feed follower, the
//! coordinator's store, or a plain set in tests).

use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasher;

use crate::id::LinkId;

/// Answers whether a link id has been revoked.
///
/// Revocation cascades offline: revoking one link kills every chain that contains it,
/// because the verifier checks every link id of a chain.
pub trait RevocationSet {
    /// Whether `id` is revoked.
    fn is_revoked(&self, id: &LinkId) -> bool;
}

/// A revocation set with nothing in it.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRevocations;

impl RevocationSet for NoRevocations {
    fn is_revoked(&self, _: &LinkId) -> bool {
        false
    }
}

impl<S: BuildHasher> RevocationSet for HashSet<LinkId, S> {
    fn is_revoked(&self, id: &LinkId) -> bool {
        self.contains(id)
    }
}

impl RevocationSet for BTreeSet<LinkId> {
    fn is_revoked(&self, id: &LinkId) -> bool {
        self.contains(id)
    }
}

impl<T: RevocationSet + ?Sized> RevocationSet for &T {
    fn is_revoked(&self, id: &LinkId) -> bool {
        (**self).is_revoked(id)
    }
}

/// One entry of a [`RevocationList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevocationEntry {
    /// When the revoked link expires, Unix ms: after that plus the clock skew no verifier
    /// accepts it anyway, and the entry can be forgotten.
    pub expires_at_ms: u64,
    /// Whether a revoked ancestor covers the link for as long as it could be accepted (a
    /// chain always carries its ancestors, so feeds need not name it).
    pub implied: bool,
}

/// The live revocations a verifier or the coordinator keeps in memory, and the epoch of the
/// feed they are current at.
///
/// Entries are kept until their link is past expiry plus the clock skew verifiers allow
/// ([`RevocationList::prune`]): the one rule for forgetting a revocation, shared by the
/// coordinator and the tool-side follower.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevocationList {
    links: std::collections::HashMap<LinkId, RevocationEntry>,
    epoch: u64,
}

impl RevocationList {
    /// An empty list at `epoch`.
    pub fn new(epoch: u64) -> RevocationList {
        RevocationList {
            links: std::collections::HashMap::new(),
            epoch,
        }
    }

    /// The epoch the list is current at.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Moves the epoch forward (never back).
    pub fn advance_epoch(&mut self, epoch: u64) {
        self.epoch = self.epoch.max(epoch);
    }

    /// Adds (or updates) a revocation.
    pub fn insert(&mut self, link: LinkId, entry: RevocationEntry) {
        self.links.insert(link, entry);
    }

    /// Replaces every entry and sets the epoch, even to a lower one: a feed snapshot is the
    /// whole truth at its epoch (a follower that moved to a restored coordinator takes
    /// its state, not a mix of both).
    pub fn replace(
        &mut self,
        links: impl IntoIterator<Item = (LinkId, RevocationEntry)>,
        epoch: u64,
    ) {
        self.links = links.into_iter().collect();
        self.epoch = epoch;
    }

    /// The entry for `link`, if revoked.
    pub fn get(&self, link: &LinkId) -> Option<RevocationEntry> {
        self.links.get(link).copied()
    }

    /// Whether a verifier could still accept a link expiring at `expires_at_ms` at `now_ms`
    /// with `skew_ms` allowed: the revocation still matters.
    pub fn matters(expires_at_ms: u64, now_ms: u64, skew_ms: u64) -> bool {
        expires_at_ms.saturating_add(skew_ms) >= now_ms
    }

    /// Forgets revocations no verifier can need any more; returns how many.
    pub fn prune(&mut self, now_ms: u64, skew_ms: u64) -> usize {
        let before = self.links.len();
        self.links
            .retain(|_, r| RevocationList::matters(r.expires_at_ms, now_ms, skew_ms));
        before - self.links.len()
    }

    /// The revocations a feed publishes at `now_ms`: those not implied by a revoked
    /// ancestor and still mattering, with their expiry.
    pub fn published(&self, now_ms: u64, skew_ms: u64) -> impl Iterator<Item = (LinkId, u64)> + '_ {
        self.links
            .iter()
            .filter(move |(_, r)| {
                !r.implied && RevocationList::matters(r.expires_at_ms, now_ms, skew_ms)
            })
            .map(|(l, r)| (*l, r.expires_at_ms))
    }

    /// Every revoked link id.
    pub fn ids(&self) -> impl Iterator<Item = LinkId> + '_ {
        self.links.keys().copied()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

impl RevocationSet for RevocationList {
    fn is_revoked(&self, id: &LinkId) -> bool {
        self.links.contains_key(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> LinkId {
        LinkId::from_bytes([n; 16])
    }

    #[test]
    fn prunes_at_expiry_plus_skew_and_publishes_cut_links_only() {
        let mut list = RevocationList::new(3);
        let cut = RevocationEntry {
            expires_at_ms: 1_000,
            implied: false,
        };
        list.insert(id(1), cut);
        list.insert(
            id(2),
            RevocationEntry {
                expires_at_ms: 1_000,
                implied: true,
            },
        );
        list.insert(
            id(3),
            RevocationEntry {
                expires_at_ms: 5_000,
                implied: false,
            },
        );
        assert!(list.is_revoked(&id(2)));
        let mut published: Vec<_> = list.published(1_000, 30).collect();
        published.sort();
        assert_eq!(published, vec![(id(1), 1_000), (id(3), 5_000)]);
        // Kept until expiry plus skew, inclusive.
        assert_eq!(list.prune(1_030, 30), 0);
        assert_eq!(list.prune(1_031, 30), 2);
        assert_eq!(
            (list.len(), list.get(&id(3)).map(|r| r.expires_at_ms)),
            (1, Some(5_000))
        );
        list.advance_epoch(2);
        assert_eq!(list.epoch(), 3, "the epoch never goes back");
        list.replace([(id(9), cut)], 7);
        assert_eq!(
            (list.len(), list.epoch(), list.is_revoked(&id(3))),
            (1, 7, false)
        );
    }
}
