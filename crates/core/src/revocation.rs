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
