//! `mandate inspect`: decode and explain a chain or an invocation proof.

use std::collections::BTreeMap;

use mandate_core::{
    Capability, Chain, Invocation, Limits, NoRevocations, PublicKey, TrustBundle, Verifier,
    VerifierConfig,
};
use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::Outcome;
use crate::client::{Connection, time};
use crate::input::text_or_file;
use crate::output::print;
use crate::tree::scope;

/// `mandate inspect`.
#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// A chain or invocation proof (text form, or a file).
    token: String,
    /// Trusted coordinator public keys (base64url). Without any, the trust bundle is
    /// fetched from the coordinator if it can be reached. (A key may start with `-`.)
    #[arg(long = "trust", allow_hyphen_values = true)]
    trust: Vec<String>,
}

pub(crate) async fn inspect(a: InspectArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let text = text_or_file(&a.token)?;
    let limits = Limits::default();
    if text.starts_with("mandate-inv1.") {
        let inv = Invocation::from_text(&text, &limits)?;
        let b = inv.body();
        let j = json!({
            "kind": "invocation",
            "chain_digest": b.chain_digest.to_string(),
            "audience": b.audience,
            "action": b.call.action,
            "resource": b.call.resource,
            "args": b.call.args.iter().map(|(k, v)| (k.clone(), json!(format!("{v:?}")))).collect::<BTreeMap<_, _>>(),
            "issued_at_ms": b.issued_at_ms,
        });
        print(conn.json, &j, || {
            format!(
                "invocation proof for `{}` on `{}` at tool {}\n  issued {}  chain {}",
                b.call.action,
                b.call.resource,
                b.audience,
                time(b.issued_at_ms),
                b.chain_digest
            )
        });
        return Ok(Outcome::Ok);
    }
    let chain = Chain::from_text(&text, &limits)?;
    let mut trust = TrustBundle::new();
    for k in &a.trust {
        trust.add(PublicKey::from_text(k)?, 0, u64::MAX)?;
    }
    if a.trust.is_empty()
        && let Ok(mut client) = conn.client().await
        && let Ok(bundle) = client.get_trust_bundle(pb::GetTrustBundleRequest {}).await
    {
        for k in bundle.keys {
            if let Ok(bytes) = <[u8; 32]>::try_from(k.public_key.as_slice()) {
                trust.add(
                    PublicKey::from_bytes(&bytes)?,
                    k.not_before_ms,
                    k.not_after_ms,
                )?;
            }
        }
    }
    let verdict = if trust.keys().is_empty() {
        json!({ "checked": false, "why": "no trust bundle: pass --trust or reach the coordinator" })
    } else {
        let verify = |online: bool| {
            Verifier::new(
                trust.clone(),
                VerifierConfig {
                    online,
                    ..VerifierConfig::default()
                },
                std::sync::Arc::new(mandate_core::SystemClock),
            )
            .verify_chain(&chain, &NoRevocations)
            .map(|_| ())
        };
        let rejected = |d: &mandate_core::Denial| json!({ "checked": true, "valid": false, "reason": d.reason().code(), "link": d.link_index(), "detail": d.detail() });
        match verify(false) {
            Ok(()) => {
                json!({ "checked": true, "valid": true, "note": "offline checks only; revocation is not known here" })
            }
            // An offline verifier refuses it; whether the rest holds is worth knowing too.
            Err(d) if d.reason() == mandate_core::Reason::OnlineRequired => match verify(true) {
                Ok(()) => {
                    let mut j = rejected(&d);
                    j["online_only"] = json!(true);
                    j
                }
                Err(other) => rejected(&other),
            },
            Err(d) => rejected(&d),
        }
    };
    let hops: Vec<Json> = chain
        .links()
        .iter()
        .map(|l| {
            let b = l.body();
            json!({
                "link_id": l.id().to_string(),
                "depth": b.depth(),
                "kind": b.kind.as_str(),
                "holder": b.holder_agent.as_str(),
                "holder_key": b.holder.to_string(),
                "scope": scope(&b.capabilities.iter().map(Capability::to_pb).collect::<Vec<_>>()),
                "not_before_ms": b.not_before_ms,
                "expires_at_ms": b.expires_at_ms,
                "max_depth": b.max_depth,
                "sealed": l.seal().is_some(),
                "require_seal": b.require_seal,
                "require_online": b.require_online,
            })
        })
        .collect();
    let j = json!({ "kind": "chain", "task_id": chain.task().to_string(), "issuer": chain.issuer().to_string(), "links": hops, "verification": verdict });
    print(conn.json, &j, || {
        let mut out = format!(
            "chain for task {} ({} link(s)), root signed by {}\n",
            chain.task(),
            chain.len(),
            chain.issuer()
        );
        for h in &hops {
            out.push_str(&format!(
                "  #{} {} {} → {}\n      {}  {} .. {}  more hops: {}{}\n",
                h["depth"],
                h["kind"].as_str().unwrap_or(""),
                h["link_id"].as_str().unwrap_or(""),
                h["holder"].as_str().unwrap_or(""),
                h["scope"].as_str().unwrap_or(""),
                time(h["not_before_ms"].as_u64().unwrap_or(0)),
                time(h["expires_at_ms"].as_u64().unwrap_or(0)),
                h["max_depth"],
                if h["sealed"] == true { "  sealed" } else { "" }
            ));
        }
        match (verdict["checked"].as_bool(), verdict["valid"].as_bool()) {
            (Some(true), Some(true)) => out.push_str("verifies offline (revocation not checked)"),
            _ if verdict["online_only"] == true => out.push_str(&format!(
                "needs online authorisation: link {} requires it, so offline verifiers refuse \
                 the chain (ONLINE_REQUIRED); every other check passes, and a tool must ask \
                 the coordinator (Authorize)",
                verdict["link"]
            )),
            (Some(true), _) => out.push_str(&format!(
                "would be REJECTED: {} at link {}: {}",
                verdict["reason"], verdict["link"], verdict["detail"]
            )),
            _ => out.push_str("not verified: no trust bundle"),
        }
        out
    });
    Ok(if verdict["valid"] == false {
        Outcome::Denied
    } else {
        Outcome::Ok
    })
}
