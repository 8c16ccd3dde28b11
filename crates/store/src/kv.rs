//! The ordered key-value map a backend keeps Mandate's tables in, and the writes a change
//! makes to it. `tables.rs` owns the layout (which keys hold what) and every rule over
//! it, so sled and etcd store the same keys and answer the same way; a backend provides
//! reads ([`Kv`]) and applies [`Ops`] atomically.

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};

use crate::{Result, StoreError};

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// A key and what to write there (`None`: remove it).
pub(crate) type Write = (Vec<u8>, Option<Vec<u8>>);

/// What a scan calls with each entry; it returns whether to go on.
pub(crate) type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Ordered reads of a backend's map.
pub(crate) trait Kv {
    /// A value as the backend holds it.
    type Bytes: AsRef<[u8]>;
    /// The value of `k`.
    fn get(&self, k: &[u8]) -> Result<Option<Self::Bytes>>;
    /// Whether `k` is present.
    fn contains(&self, k: &[u8]) -> Result<bool> {
        Ok(self.get(k)?.is_some())
    }
    /// Whether each of `keys` is present, answered together.
    fn contains_all(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>> {
        keys.iter().map(|k| self.contains(k)).collect()
    }
    /// Calls `f` with every entry whose key is in `start..end`, in key order, until `f`
    /// returns `false`.
    fn scan(&self, start: &[u8], end: &[u8], f: &mut Visit<'_>) -> Result<()>;
}

/// A shared map reads as the map.
impl<K: Kv + ?Sized> Kv for std::sync::Arc<K> {
    type Bytes = K::Bytes;
    fn get(&self, k: &[u8]) -> Result<Option<K::Bytes>> {
        (**self).get(k)
    }
    fn contains(&self, k: &[u8]) -> Result<bool> {
        (**self).contains(k)
    }
    fn contains_all(&self, keys: &[Vec<u8>]) -> Result<Vec<bool>> {
        (**self).contains_all(keys)
    }
    fn scan(&self, start: &[u8], end: &[u8], f: &mut Visit<'_>) -> Result<()> {
        (**self).scan(start, end, f)
    }
}

/// Writes to apply together: the last write of a key wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ops(BTreeMap<Vec<u8>, Option<Vec<u8>>>);

impl Ops {
    /// Sets `k` to `v`.
    pub(crate) fn put(&mut self, k: impl Into<Vec<u8>>, v: impl Into<Vec<u8>>) {
        self.0.insert(k.into(), Some(v.into()));
    }
    /// Removes `k`.
    pub(crate) fn delete(&mut self, k: impl Into<Vec<u8>>) {
        self.0.insert(k.into(), None);
    }
    /// The write of `k`, if any (`Some(None)`: a removal).
    pub(crate) fn get(&self, k: &[u8]) -> Option<Option<&[u8]>> {
        self.0.get(k).map(Option::as_deref)
    }
    /// How many keys are written.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether there is nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The writes, in key order (`None`: a removal).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.0.iter().map(|(k, v)| (k.as_slice(), v.as_deref()))
    }
    /// Adds every write of `other`, which wins where both write a key.
    pub(crate) fn extend(&mut self, other: Ops) {
        self.0.extend(other.0);
    }
    /// The writes, in key order, owned.
    pub(crate) fn into_iter(self) -> impl Iterator<Item = (Vec<u8>, Option<Vec<u8>>)> {
        self.0.into_iter()
    }
}

/// A key: a one-byte table prefix and its parts.
pub(crate) fn key(prefix: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + parts.iter().map(|p| p.len()).sum::<usize>());
    k.push(prefix);
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

/// The first key after every key that starts with `prefix` (`prefix` must not be all
/// `0xff`, which no table prefix is).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; prefix.len() + 1]
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Backend(format!("encoding a record: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(k: &[u8], v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(k).into_owned(),
        why: e.to_string(),
    })
}

pub(crate) fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub(crate) fn read_be(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_first_key_past_the_prefix() {
        assert_eq!(prefix_end(b"c"), b"d");
        assert_eq!(prefix_end(&[b'c', 0xff]), b"d");
        assert_eq!(prefix_end(&[b'h', b'a', 0]), [b'h', b'a', 1]);
    }

    #[test]
    fn the_last_write_of_a_key_wins() {
        let mut ops = Ops::default();
        ops.put(b"a".to_vec(), b"1".to_vec());
        ops.delete(b"a".to_vec());
        ops.put(b"b".to_vec(), b"2".to_vec());
        let all: Vec<_> = ops.into_iter().collect();
        assert_eq!(
            all,
            [(b"a".to_vec(), None), (b"b".to_vec(), Some(b"2".to_vec()))]
        );
    }
}
