//! `mandate delegate` and `mandate revoke`: growing and cutting a delegation tree.

use std::path::PathBuf;

use anyhow::Context as _;
use mandate_core::{AgentId, LinkSpec, PublicKey};
use mandate_proto::v1 as pb;
use serde_json::json;

use crate::Outcome;
use crate::client::Connection;
use crate::input::{parse_cap, parse_ttl, read_chain};
use crate::output::{print, print_with_chain};

/// `mandate delegate`.
#[derive(clap::Args, Debug)]
pub(crate) struct DelegateArgs {
    /// Your chain (text form, or a file holding it); you must hold its leaf.
    #[arg(long)]
    chain: String,
    /// The new holder's agent id (registered).
    #[arg(long)]
    to: String,
    /// Capability for the new holder, `RESOURCE:ACTION[,ACTION…]` (repeatable).
    #[arg(long = "cap", required = true)]
    caps: Vec<String>,
    /// Lifetime (never beyond your own link).
    #[arg(long, default_value = "2m")]
    ttl: String,
    /// Hops the new holder may delegate further.
    #[arg(long, default_value_t = 0)]
    max_depth: u32,
    /// Write the new holder's chain (text form) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(crate) async fn delegate(a: DelegateArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let chain = read_chain(&a.chain)?;
    let holder = client
        .get_agent(pb::GetAgentRequest {
            agent_id: a.to.clone(),
        })
        .await?
        .agent
        .unwrap_or_default();
    let key: [u8; 32] = holder
        .public_key
        .as_slice()
        .try_into()
        .context("the holder's registered key is not 32 bytes")?;
    let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
    let leaf = chain.leaf().body();
    let expires = now
        .saturating_add(parse_ttl(&a.ttl)?)
        .min(leaf.expires_at_ms);
    let caps = a
        .caps
        .iter()
        .map(|c| parse_cap(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = LinkSpec::new(
        PublicKey::from_bytes(&key)?,
        AgentId::new(a.to.clone())?,
        caps,
        now.max(leaf.not_before_ms),
        expires,
    )?
    .max_depth(a.max_depth)
    .require_seal(leaf.require_seal)
    .require_online(leaf.require_online);
    let sealed = client.delegate(&chain, spec).await?;
    let j = json!({ "link_id": sealed.leaf().id().to_string(), "holder": a.to });
    let summary = format!("delegated link {} to {}", sealed.leaf().id(), a.to);
    print_with_chain(conn, j, summary, &sealed.to_text(), a.out.as_deref())?;
    Ok(Outcome::Ok)
}

pub(crate) async fn revoke(
    link: String,
    reason: String,
    conn: &Connection,
) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let r = client
        .revoke_link(pb::RevokeLinkRequest {
            link_id: link.clone(),
            reason,
        })
        .await?;
    print(
        conn.json,
        &json!({ "revoked_link_ids": r.revoked_link_ids, "revocation_epoch": r.revocation_epoch }),
        || {
            format!(
                "revoked {} link(s) (epoch {})",
                r.revoked_link_ids.len(),
                r.revocation_epoch
            )
        },
    );
    Ok(Outcome::Ok)
}
