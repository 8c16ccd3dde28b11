//! The feed messages a tool's follower applies: each checked against the trust bundle it
//! holds and where it is (its revocation epoch and trust version) before anything changes.

use mandate_core::{LinkId, PublicKey, RevocationEntry, TrustBundle};
use mandate_proto::v1 as pb;

/// The keys of a trust bundle or trust update, in order.
pub(super) fn trust_bundle(keys: &[pb::TrustedKey]) -> Result<TrustBundle, &'static str> {
    let mut trust = TrustBundle::new();
    for k in keys {
        let bytes: [u8; 32] = k
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| "a trusted key is not 32 bytes")?;
        let key = PublicKey::from_bytes(&bytes).map_err(|_| "a trusted key is not a key")?;
        trust
            .add(key, k.not_before_ms, k.not_after_ms)
            .map_err(|_| "a trusted key is unusable or its window empty")?;
    }
    Ok(trust)
}

/// A feed message checked and ready to apply.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FeedUpdate {
    /// Replace the set.
    Replace(Vec<(LinkId, RevocationEntry)>, u64),
    /// Add to the set and move to the epoch.
    Add(Vec<(LinkId, RevocationEntry)>, u64),
    /// Nothing changed.
    Current,
    /// Replace the trust bundle, now at this version.
    Trust(TrustBundle, u64),
    /// A trust update the follower already has (or an older one): skipped.
    KnownTrust,
}

/// Why a feed message was not applied. Either way the follower treats it as silence,
/// drops the stream and resumes from its own epoch.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum FeedRefusal {
    /// The signature is missing or is not a trusted coordinator key's over the message
    /// (or a link id does not parse, which the signature then cannot cover).
    Untrusted,
    /// A batch or heartbeat for another epoch than the follower's (something in between
    /// was lost), or a snapshot older than what the follower has (a replay).
    Gap,
}

/// Checks one feed message against the trust bundle and the follower's epoch.
pub(super) fn check_feed_message(
    msg: &pb::WatchRevocationsResponse,
    trust: &TrustBundle,
    (epoch, trust_version): (u64, u64),
    now_ms: u64,
) -> Result<FeedUpdate, FeedRefusal> {
    use mandate_core::{FeedKind, FeedLinks};
    let (kind, to_epoch, links) = match &msg.event {
        // Signed by a key the follower trusts; only a newer version replaces its bundle
        // (an older one replayed could restore a retired key).
        Some(pb::watch_revocations_response::Event::Trust(t)) => {
            let bundle = trust_bundle(&t.keys).map_err(|_| FeedRefusal::Untrusted)?;
            let statement = mandate_core::trust_statement(&bundle, t.version, msg.time_ms);
            if msg.previous_epoch != 0 || !statement.verify(trust, &msg.signature, now_ms) {
                return Err(FeedRefusal::Untrusted);
            }
            return Ok(if t.version > trust_version {
                FeedUpdate::Trust(bundle, t.version)
            } else {
                FeedUpdate::KnownTrust
            });
        }
        Some(pb::watch_revocations_response::Event::Snapshot(s)) => {
            (FeedKind::Snapshot, s.epoch, &s.links[..])
        }
        Some(pb::watch_revocations_response::Event::Batch(b)) => {
            (FeedKind::Batch, b.epoch, &b.links[..])
        }
        Some(pb::watch_revocations_response::Event::Heartbeat(h)) => {
            (FeedKind::Heartbeat, h.epoch, &[][..])
        }
        None => return Err(FeedRefusal::Untrusted),
    };
    let mut parsed = Vec::with_capacity(links.len());
    let mut digest = FeedLinks::new();
    for l in links {
        let id = l
            .link_id
            .parse::<LinkId>()
            .map_err(|_| FeedRefusal::Untrusted)?;
        digest.push(&id, l.expires_at_ms, l.epoch);
        parsed.push((
            id,
            RevocationEntry {
                expires_at_ms: l.expires_at_ms,
                implied: false,
            },
        ));
    }
    let statement = digest.statement(kind, msg.previous_epoch, to_epoch, msg.time_ms);
    if !statement.verify(trust, &msg.signature, now_ms) {
        return Err(FeedRefusal::Untrusted);
    }
    match kind {
        // An older snapshot is a replay (epochs only grow): applying it would forget
        // revocations made since.
        FeedKind::Snapshot if to_epoch >= epoch => Ok(FeedUpdate::Replace(parsed, to_epoch)),
        FeedKind::Batch if msg.previous_epoch == epoch => Ok(FeedUpdate::Add(parsed, to_epoch)),
        FeedKind::Heartbeat if to_epoch == epoch && msg.previous_epoch == epoch => {
            Ok(FeedUpdate::Current)
        }
        FeedKind::Snapshot | FeedKind::Batch | FeedKind::Heartbeat | FeedKind::Trust => {
            Err(FeedRefusal::Gap)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_core::{FeedKind, FeedLinks, SigningKey};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn link(n: u8) -> LinkId {
        LinkId::from_bytes([n; 16])
    }

    /// A message as the coordinator makes it, signed with `key`.
    fn message(
        key: &SigningKey,
        kind: FeedKind,
        previous_epoch: u64,
        epoch: u64,
        time_ms: u64,
        links: &[(LinkId, u64)],
    ) -> pb::WatchRevocationsResponse {
        let mut digest = FeedLinks::new();
        for (l, e) in links {
            digest.push(l, *e, epoch);
        }
        let signature = digest
            .statement(kind, previous_epoch, epoch, time_ms)
            .sign(key)
            .as_bytes()
            .to_vec();
        let pb_links = links
            .iter()
            .map(|(l, e)| pb::RevokedLink {
                link_id: l.to_string(),
                expires_at_ms: *e,
                epoch,
            })
            .collect();
        use pb::watch_revocations_response::Event;
        let event = match kind {
            FeedKind::Snapshot => Event::Snapshot(pb::RevocationSnapshot {
                epoch,
                links: pb_links,
            }),
            FeedKind::Batch => Event::Batch(pb::RevocationBatch {
                epoch,
                links: pb_links,
            }),
            FeedKind::Heartbeat => Event::Heartbeat(pb::Heartbeat { epoch, time_ms }),
            FeedKind::Trust => unreachable!("trust updates are made by trust_message"),
        };
        pb::WatchRevocationsResponse {
            event: Some(event),
            time_ms,
            previous_epoch,
            signature,
        }
    }

    #[test]
    fn feed_messages_apply_only_when_signed_and_in_sequence() -> TestResult {
        let key = SigningKey::generate()?;
        let trust = TrustBundle::new().with_key(key.public_key(), 0, 1_000_000)?;
        let batch = message(&key, FeedKind::Batch, 7, 8, 500, &[(link(1), 900)]);
        assert!(matches!(
            check_feed_message(&batch, &trust, (7, 1), 600),
            Ok(FeedUpdate::Add(ref l, 8)) if l.len() == 1 && l[0].0 == link(1)
        ));
        // Applied on top of another epoch: something was lost in between.
        assert_eq!(
            check_feed_message(&batch, &trust, (6, 1), 600),
            Err(FeedRefusal::Gap)
        );
        let beat = message(&key, FeedKind::Heartbeat, 8, 8, 600, &[]);
        assert_eq!(
            check_feed_message(&beat, &trust, (8, 1), 600),
            Ok(FeedUpdate::Current)
        );
        // A heartbeat for a later epoch than the follower's: it missed a batch.
        assert_eq!(
            check_feed_message(&beat, &trust, (7, 1), 600),
            Err(FeedRefusal::Gap)
        );
        let snap = message(&key, FeedKind::Snapshot, 0, 9, 700, &[(link(2), 900)]);
        assert!(matches!(
            check_feed_message(&snap, &trust, (3, 1), 600),
            Ok(FeedUpdate::Replace(_, 9))
        ));
        // Replayed to a follower that is further on: it would forget revocations.
        assert_eq!(
            check_feed_message(&snap, &trust, (10, 1), 600),
            Err(FeedRefusal::Gap)
        );
        Ok(())
    }

    #[test]
    fn tampered_unsigned_or_foreign_feed_messages_are_refused() -> TestResult {
        let key = SigningKey::generate()?;
        let other = SigningKey::generate()?;
        let trust = TrustBundle::new().with_key(key.public_key(), 0, 1_000_000)?;
        let good = message(&key, FeedKind::Batch, 7, 8, 500, &[(link(1), 900)]);
        let mut tampered = Vec::new();
        // A link dropped, its id or expiry changed, the epochs or the time moved, the
        // kind changed, the signature removed or made by another key.
        let mut m = good.clone();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = &mut m.event {
            b.links.clear();
        }
        tampered.push(m);
        let mut m = good.clone();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = &mut m.event {
            b.links[0].link_id = link(3).to_string();
        }
        tampered.push(m);
        let mut m = good.clone();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = &mut m.event {
            b.links[0].expires_at_ms = 1;
        }
        tampered.push(m);
        let mut m = good.clone();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = &mut m.event {
            b.links[0].link_id = "not hex".into();
        }
        tampered.push(m);
        tampered.push(pb::WatchRevocationsResponse {
            time_ms: 99_999,
            ..good.clone()
        });
        tampered.push(pb::WatchRevocationsResponse {
            previous_epoch: 6,
            ..good.clone()
        });
        let mut m = good.clone();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = &mut m.event {
            b.epoch = 9;
        }
        tampered.push(m);
        let mut m = good.clone();
        m.event = Some(pb::watch_revocations_response::Event::Snapshot(
            pb::RevocationSnapshot {
                epoch: 8,
                links: match &good.event {
                    Some(pb::watch_revocations_response::Event::Batch(b)) => b.links.clone(),
                    _ => Vec::new(),
                },
            },
        ));
        tampered.push(m);
        tampered.push(pb::WatchRevocationsResponse {
            signature: Vec::new(),
            ..good.clone()
        });
        tampered.push(message(
            &other,
            FeedKind::Batch,
            7,
            8,
            500,
            &[(link(1), 900)],
        ));
        tampered.push(pb::WatchRevocationsResponse {
            event: None,
            ..good.clone()
        });
        for (i, m) in tampered.iter().enumerate() {
            assert_eq!(
                check_feed_message(m, &trust, (7, 1), 600),
                Err(FeedRefusal::Untrusted),
                "case {i}"
            );
        }
        // Signed at a time the key is not trusted.
        let late = message(&key, FeedKind::Heartbeat, 7, 7, 1_000_000, &[]);
        assert_eq!(
            check_feed_message(&late, &trust, (7, 1), 600),
            Err(FeedRefusal::Untrusted)
        );
        Ok(())
    }

    /// A trust update as the coordinator makes it, signed with `key`.
    fn trust_message(
        key: &SigningKey,
        bundle: &TrustBundle,
        version: u64,
        time_ms: u64,
    ) -> pb::WatchRevocationsResponse {
        let signature = mandate_core::trust_statement(bundle, version, time_ms)
            .sign(key)
            .as_bytes()
            .to_vec();
        pb::WatchRevocationsResponse {
            event: Some(pb::watch_revocations_response::Event::Trust(
                pb::TrustUpdate {
                    version,
                    keys: bundle
                        .keys()
                        .iter()
                        .map(|k| pb::TrustedKey {
                            public_key: k.key().as_bytes().to_vec(),
                            not_before_ms: k.not_before_ms(),
                            not_after_ms: k.not_after_ms(),
                            ..Default::default()
                        })
                        .collect(),
                },
            )),
            time_ms,
            previous_epoch: 0,
            signature,
        }
    }

    #[test]
    fn trust_updates_apply_only_when_newer_and_signed_by_a_trusted_key() -> TestResult {
        let key = SigningKey::generate()?;
        let other = SigningKey::generate()?;
        let trust = TrustBundle::new().with_key(key.public_key(), 0, u64::MAX)?;
        let bundle = trust.clone().with_key(other.public_key(), 0, 5_000)?;
        let update = trust_message(&key, &bundle, 2, 500);
        assert_eq!(
            check_feed_message(&update, &trust, (7, 1), 600),
            Ok(FeedUpdate::Trust(bundle.clone(), 2))
        );
        // One the follower has, or an older one (a replay that would restore a key).
        for held in [2, 3] {
            assert_eq!(
                check_feed_message(&update, &trust, (7, held), 600),
                Ok(FeedUpdate::KnownTrust)
            );
        }
        // Announced by a key the follower does not trust (the new key itself, say).
        assert_eq!(
            check_feed_message(&trust_message(&other, &bundle, 2, 500), &trust, (7, 1), 600),
            Err(FeedRefusal::Untrusted)
        );
        // Altered: a window, a key left out, the version, the time, the epoch field.
        let mut tampered = Vec::new();
        let set = |f: &dyn Fn(&mut pb::TrustUpdate)| {
            let mut m = update.clone();
            if let Some(pb::watch_revocations_response::Event::Trust(t)) = &mut m.event {
                f(t);
            }
            m
        };
        tampered.push(set(&|t| t.keys[1].not_after_ms = u64::MAX));
        tampered.push(set(&|t| {
            t.keys.pop();
        }));
        tampered.push(set(&|t| t.version = 9));
        tampered.push(set(&|t| t.keys[0].public_key = vec![1; 32]));
        tampered.push(pb::WatchRevocationsResponse {
            time_ms: 501,
            ..update.clone()
        });
        tampered.push(pb::WatchRevocationsResponse {
            previous_epoch: 1,
            ..update.clone()
        });
        for (i, m) in tampered.iter().enumerate() {
            assert_eq!(
                check_feed_message(m, &trust, (7, 1), 600),
                Err(FeedRefusal::Untrusted),
                "case {i}"
            );
        }
        Ok(())
    }
}
