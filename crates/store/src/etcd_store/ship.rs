//! Shipping: a flush packs queued changes into guarded transactions; a change larger than
//! a transaction is staged, published with a marker and applied; an open completes or
//! drops what a crash left.

use std::sync::{Arc, PoisonError};

use mandate_etcd::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    request_op, response_op,
};

use super::{Inner, NONCES, STAGED, op_size};
use crate::kv::{Ops, be, key, read_be};
use crate::{Result, StoreError, tables};

impl Inner {
    /// Ships every change queued before the call.
    pub(super) fn flush(&self) -> Result<()> {
        let _guard = self
            .flush_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let target = {
            let layer = self.kv.layer();
            if let Some(why) = &layer.conflict {
                return Err(StoreError::Conflict(why.clone()));
            }
            layer.next
        };
        let config = self.kv.etcd.config();
        let (max_ops, max_bytes) = (config.max_txn_ops.max(2), config.max_txn_bytes.max(1024));
        loop {
            // The longest run of queued changes that fits one transaction (with the head's
            // compare and write), or one change too large for any.
            let (group, expected) = {
                let layer = self.kv.layer();
                let mut group: Vec<(u64, Arc<Ops>, Option<Vec<u8>>)> = Vec::new();
                let (mut n, mut bytes) = (0, 0);
                for p in layer.queue.iter().take_while(|p| p.no < target) {
                    let fits = n + p.size.0 <= max_ops && bytes + p.size.1 <= max_bytes;
                    if !group.is_empty() && !fits {
                        break;
                    }
                    group.push((p.no, Arc::clone(&p.ops), p.head.clone()));
                    (n, bytes) = (n + p.size.0, bytes + p.size.1);
                    if !fits {
                        break;
                    }
                }
                (group, layer.shipped_head.clone())
            };
            let Some(&(last_no, _, _)) = group.last() else {
                return Ok(());
            };
            let new_head = group
                .iter()
                .rev()
                .find_map(|(_, _, h)| h.clone())
                .or_else(|| expected.clone());
            let result = if group.len() == 1 && {
                let (ops, bytes) = group[0]
                    .1
                    .iter()
                    .fold((0, 0), |(n, b), (k, v)| (n + 1, b + op_size(k, v)));
                ops > max_ops || bytes > max_bytes
            } {
                self.ship_large(
                    last_no,
                    &group[0].1,
                    expected.as_deref(),
                    max_ops,
                    max_bytes,
                )
            } else {
                let mut merged = Ops::default();
                for (_, ops, _) in &group {
                    merged.extend((**ops).clone());
                }
                self.ship(&merged, expected.as_deref())
            };
            let mut layer = self.kv.layer();
            match result {
                Ok(()) => {
                    let shipped = group.len();
                    let layer = &mut *layer;
                    for p in layer.queue.drain(..shipped) {
                        for (k, _) in p.ops.iter() {
                            // The overlay holds the key's last write; a later change
                            // still queued keeps it there.
                            if layer.overlay.get(k).is_none_or(|(no, _)| *no > last_no) {
                                continue;
                            }
                            let Some((_, v)) = layer.overlay.remove(k) else {
                                continue;
                            };
                            if k.first() == Some(&NONCES) {
                                match v {
                                    Some(v) => layer.nonces.insert(k.to_vec(), v),
                                    None => layer.nonces.remove(k),
                                };
                            } else {
                                layer.cache.put(k, v.as_deref());
                            }
                        }
                    }
                    layer.shipped_head = new_head;
                    if layer.failing.take().is_some() {
                        tracing::info!("etcd is back: the store takes changes again");
                    }
                }
                Err(StoreError::Conflict(why)) => {
                    tracing::error!(%why, "another writer moved the audit head: this store stops taking changes");
                    layer.conflict = Some(why.clone());
                    return Err(StoreError::Conflict(why));
                }
                Err(e) => {
                    if layer.failing.is_none() {
                        tracing::error!(error = %e, "etcd failed: changes are refused until it recovers");
                    }
                    layer.failing = Some(e.to_string());
                    return Err(e);
                }
            }
        }
    }

    /// The compare that guards a transaction: the audit head is still `expected`.
    pub(super) fn head_compare(&self, expected: Option<&[u8]>) -> Compare {
        let key = self.kv.etcd.full(tables::AUDIT_HEAD);
        match expected {
            Some(v) => Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Value as i32,
                key,
                target_union: Some(compare::TargetUnion::Value(v.to_vec())),
                range_end: Vec::new(),
            },
            None => Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Version as i32,
                key,
                target_union: Some(compare::TargetUnion::Version(0)),
                range_end: Vec::new(),
            },
        }
    }

    pub(super) fn request_ops<'a>(
        &self,
        ops: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) -> Vec<RequestOp> {
        ops.map(|(k, v)| {
            let key = self.kv.etcd.full(k);
            RequestOp {
                request: Some(match v {
                    Some(v) => request_op::Request::RequestPut(PutRequest {
                        key,
                        value: v.to_vec(),
                        ..PutRequest::default()
                    }),
                    None => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                        key,
                        ..DeleteRangeRequest::default()
                    }),
                }),
            }
        })
        .collect()
    }

    /// One guarded transaction. A transaction whose answer was lost may have been applied:
    /// shipped again, its compare fails, and the head it wrote tells that it did.
    pub(super) fn ship(&self, ops: &Ops, expected: Option<&[u8]>) -> Result<()> {
        let head_key = self.kv.etcd.full(tables::AUDIT_HEAD);
        let reply = self.kv.etcd.txn(TxnRequest {
            compare: vec![self.head_compare(expected)],
            success: self.request_ops(ops.iter()),
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: head_key,
                    ..RangeRequest::default()
                })),
            }],
        })?;
        if reply.succeeded {
            return Ok(());
        }
        let now = reply.responses.into_iter().find_map(|r| match r.response {
            Some(response_op::Response::ResponseRange(range)) => {
                range.kvs.into_iter().next().map(|kv| kv.value)
            }
            _ => None,
        });
        match (ops.get(tables::AUDIT_HEAD), now) {
            (Some(Some(ours)), Some(now)) if ours == now.as_slice() => Ok(()),
            _ => Err(StoreError::Conflict(
                "the audit head in etcd is not the one this coordinator wrote".into(),
            )),
        }
    }

    /// Unguarded transactions of at most `max_ops` operations and `max_bytes` each.
    pub(super) fn apply_in_parts<'a>(
        &self,
        ops: impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        max_ops: usize,
        max_bytes: usize,
    ) -> Result<()> {
        let mut part: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
        let mut bytes = 0;
        let send = |part: &mut Vec<(&[u8], Option<&[u8]>)>| -> Result<()> {
            if !part.is_empty() {
                self.kv.etcd.txn(TxnRequest {
                    compare: Vec::new(),
                    success: self.request_ops(part.drain(..)),
                    failure: Vec::new(),
                })?;
            }
            Ok(())
        };
        for (k, v) in ops {
            let size = op_size(k, v);
            if !part.is_empty() && (part.len() >= max_ops || bytes + size > max_bytes) {
                send(&mut part)?;
                bytes = 0;
            }
            part.push((k, v));
            bytes += size;
        }
        send(&mut part)
    }

    /// Stages a change too large for one transaction, publishes it with the marker, then
    /// applies it (the module's "Changes larger than a transaction").
    pub(super) fn ship_large(
        &self,
        no: u64,
        ops: &Ops,
        expected: Option<&[u8]>,
        max_ops: usize,
        max_bytes: usize,
    ) -> Result<()> {
        // A part holds writes up to half a transaction's bytes (one value can be larger:
        // it goes alone).
        let mut parts: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        for (k, v) in ops.iter() {
            if k == tables::AUDIT_HEAD {
                continue;
            }
            if !current.is_empty() && current.len() + op_size(k, v) > max_bytes / 2 {
                parts.push(std::mem::take(&mut current));
            }
            encode_op(&mut current, k, v);
        }
        if !current.is_empty() {
            parts.push(current);
        }
        let staged: Vec<(Vec<u8>, Vec<u8>)> = (0u32..)
            .zip(parts)
            .map(|(i, p)| (staging_key(no, i), p))
            .collect();
        self.apply_in_parts(
            staged
                .iter()
                .map(|(k, v)| (k.as_slice(), Some(v.as_slice()))),
            max_ops,
            max_bytes,
        )?;
        self.injected(1)?;
        let count = u32::try_from(staged.len()).unwrap_or(u32::MAX);
        let mut publish = Ops::default();
        publish.put(STAGED, [&be(no)[..], &count.to_be_bytes()].concat());
        if let Some((_, Some(head))) = ops.iter().find(|(k, _)| *k == tables::AUDIT_HEAD) {
            publish.put(tables::AUDIT_HEAD, head);
        }
        self.ship(&publish, expected)?;
        self.injected(2)?;
        self.apply_staged(no, staged.into_iter().map(|(_, v)| v), max_ops, max_bytes)
    }

    /// Fails at injection point `at` when a test asked for it.
    pub(super) fn injected(&self, at: u8) -> Result<()> {
        #[cfg(test)]
        if self.stop_large_at.load(std::sync::atomic::Ordering::SeqCst) == at {
            return Err(StoreError::Backend(format!("injected failure at {at}")));
        }
        let _ = at;
        Ok(())
    }

    /// Applies staged parts, then removes the marker and the staging.
    pub(super) fn apply_staged(
        &self,
        no: u64,
        parts: impl Iterator<Item = Vec<u8>>,
        max_ops: usize,
        max_bytes: usize,
    ) -> Result<()> {
        for part in parts {
            let writes = decode_ops(&part)?;
            self.apply_in_parts(
                writes.iter().map(|(k, v)| (k.as_slice(), v.as_deref())),
                max_ops,
                max_bytes,
            )?;
        }
        let prefix = key(b'z', &[&be(no)]);
        self.kv.etcd.txn(TxnRequest {
            compare: Vec::new(),
            success: vec![
                RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: self.kv.etcd.full(STAGED),
                            ..DeleteRangeRequest::default()
                        },
                    )),
                },
                RequestOp {
                    request: Some(request_op::Request::RequestDeleteRange(
                        DeleteRangeRequest {
                            key: self.kv.etcd.full(&prefix),
                            range_end: self.kv.etcd.full(&crate::kv::prefix_end(&prefix)),
                            ..DeleteRangeRequest::default()
                        },
                    )),
                },
            ],
            failure: Vec::new(),
        })?;
        Ok(())
    }

    /// At open: applies a large change whose marker is written, and drops staging a crash
    /// left without one.
    pub(super) fn finish_staged(&self) -> Result<()> {
        let config = self.kv.etcd.config();
        let (max_ops, max_bytes) = (config.max_txn_ops.max(2), config.max_txn_bytes.max(1024));
        let marker = self.kv.etcd.get(STAGED)?;
        // Staged parts are up to half a transaction each: a few a page.
        let staged = self.kv.etcd.all(b"z", b"{", 64, false)?;
        let complete = marker.as_deref().and_then(|m| {
            let no = read_be(m.get(..8)?);
            let count = u32::from_be_bytes(m.get(8..12)?.try_into().ok()?);
            Some((no, count))
        });
        if let Some((no, count)) = complete {
            let parts: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    let k = staging_key(no, i);
                    staged
                        .iter()
                        .find(|(s, _)| *s == k)
                        .map(|(_, v)| v.clone())
                        .ok_or_else(|| StoreError::Corrupt {
                            key: "mstaged".into(),
                            why: format!("staged part {i} of change {no} is missing"),
                        })
                })
                .collect::<Result<_>>()?;
            tracing::info!(
                parts = count,
                "applying a large change a restart interrupted"
            );
            self.apply_staged(no, parts.into_iter(), max_ops, max_bytes)?;
        }
        // Staging without a marker: the change was never published.
        let leftover: Vec<Vec<u8>> = staged
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| complete.is_none_or(|(no, _)| k.get(1..9) != Some(&be(no)[..])))
            .collect();
        if !leftover.is_empty() {
            self.apply_in_parts(
                leftover.iter().map(|k| (k.as_slice(), None)),
                max_ops,
                max_bytes,
            )?;
        }
        Ok(())
    }
}

fn staging_key(no: u64, part: u32) -> Vec<u8> {
    key(b'z', &[&be(no), &part.to_be_bytes()])
}

/// A staged write: key length (4), key, 0 (removal) or 1 and value length (4) and value.
fn encode_op(out: &mut Vec<u8>, k: &[u8], v: Option<&[u8]>) {
    out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(k);
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

fn decode_ops(mut b: &[u8]) -> Result<Vec<crate::kv::Write>> {
    let corrupt = || StoreError::Corrupt {
        key: "z".into(),
        why: "a staged part does not decode".into(),
    };
    let take = |b: &mut &[u8], n: usize| -> Result<Vec<u8>> {
        let (head, rest) = b.split_at_checked(n).ok_or_else(corrupt)?;
        *b = rest;
        Ok(head.to_vec())
    };
    let len = |v: Vec<u8>| -> Result<usize> {
        Ok(u32::from_be_bytes(v.try_into().map_err(|_| corrupt())?) as usize)
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let n = len(take(&mut b, 4)?)?;
        let k = take(&mut b, n)?;
        let v = match take(&mut b, 1)?[..] {
            [0] => None,
            [1] => {
                let n = len(take(&mut b, 4)?)?;
                Some(take(&mut b, n)?)
            }
            _ => return Err(corrupt()),
        };
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_parts_decode_to_what_was_encoded() {
        let mut b = Vec::new();
        encode_op(&mut b, b"lkey", Some(b"value"));
        encode_op(&mut b, b"x", None);
        encode_op(&mut b, b"e", Some(b""));
        assert_eq!(
            decode_ops(&b).unwrap(),
            vec![
                (b"lkey".to_vec(), Some(b"value".to_vec())),
                (b"x".to_vec(), None),
                (b"e".to_vec(), Some(Vec::new())),
            ]
        );
        assert!(decode_ops(&b[..b.len() - 1]).is_err());
        assert!(decode_ops(&[0, 0, 0, 1, b'k', 7]).is_err());
    }
}
