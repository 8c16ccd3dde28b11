//! `mandate coordinator-keys list|add|retire`: the service's coordinator keys, the trust
//! bundle tools verify with (docs/DEPLOYMENT.md, section 7).

use mandate_core::PublicKey;
use mandate_proto::v1 as pb;
use serde_json::json;

use crate::Outcome;
use crate::client::{Connection, time};
use crate::input::parse_ttl;
use crate::output::print;

/// `mandate coordinator-keys ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum KeysCommand {
    /// The keys verifiers trust now: each with its instance and window, and the bundle's
    /// version.
    List,
    /// Add a key an instance of the service will sign with once it leads (admins). Tools
    /// following the feed learn it at once, before that instance ever signs.
    Add {
        /// The public key (unpadded base64url, as `mandate keygen` prints it; it may start
        /// with `-`).
        #[arg(allow_hyphen_values = true)]
        public_key: String,
        /// The instance that will sign with it (its advertised address).
        #[arg(long)]
        instance: String,
    },
    /// Retire a key (admins): no instance leads with it any more; verifiers trust it for
    /// `--trust-for` more. Not the key of the leading coordinator: stop that instance
    /// first.
    Retire {
        /// The public key.
        #[arg(allow_hyphen_values = true)]
        public_key: String,
        /// How long verifiers keep trusting it: at least the longest link lifetime (24 h
        /// by default) plus the clock skew; `0s` if it leaked.
        #[arg(long, default_value = "25h")]
        trust_for: String,
    },
}

pub(crate) async fn keys(cmd: KeysCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    match cmd {
        KeysCommand::List => {
            let b = client
                .get_trust_bundle(pb::GetTrustBundleRequest {})
                .await?;
            let keys: Vec<_> = b
                .keys
                .iter()
                .map(|k| {
                    let key = <[u8; 32]>::try_from(k.public_key.as_slice())
                        .ok()
                        .and_then(|b| PublicKey::from_bytes(&b).ok())
                        .map_or_else(|| "(not a key)".to_owned(), |k| k.to_string());
                    (key, k)
                })
                .collect();
            print(
                conn.json,
                &json!({
                    "version": b.version,
                    "keys": keys.iter().map(|(key, k)| json!({
                        "public_key": key,
                        "instance": k.instance,
                        "retired_ms": (k.retired_ms != 0).then_some(k.retired_ms),
                        "not_after_ms": k.not_after_ms,
                    })).collect::<Vec<_>>(),
                }),
                || {
                    let mut s = format!("coordinator keys, version {}", b.version);
                    for (key, k) in &keys {
                        let state = if k.retired_ms == 0 {
                            "active".to_owned()
                        } else {
                            format!("retired, trusted until {}", time(k.not_after_ms))
                        };
                        s.push_str(&format!("\n  {key}  {:24} {state}", k.instance));
                    }
                    s
                },
            );
        }
        KeysCommand::Add {
            public_key,
            instance,
        } => {
            let key = PublicKey::from_text(&public_key)?;
            let r = client
                .add_coordinator_key(pb::AddCoordinatorKeyRequest {
                    public_key: key.as_bytes().to_vec(),
                    instance: instance.clone(),
                })
                .await?;
            print(
                conn.json,
                &json!({"public_key": key.to_string(), "instance": instance, "version": r.version}),
                || {
                    format!(
                        "added {key} for {instance} (coordinator keys version {})",
                        r.version
                    )
                },
            );
        }
        KeysCommand::Retire {
            public_key,
            trust_for,
        } => {
            let key = PublicKey::from_text(&public_key)?;
            let r = client
                .retire_coordinator_key(pb::RetireCoordinatorKeyRequest {
                    public_key: key.as_bytes().to_vec(),
                    trust_for_ms: parse_ttl(&trust_for)?,
                })
                .await?;
            print(
                conn.json,
                &json!({"public_key": key.to_string(), "trusted_until_ms": r.trusted_until_ms, "version": r.version}),
                || {
                    format!(
                        "retired {key}: trusted until {} (coordinator keys version {})",
                        time(r.trusted_until_ms),
                        r.version
                    )
                },
            );
        }
    }
    Ok(Outcome::Ok)
}
