//! `mandate prove` (the worker's side of a call) and `mandate authorize` (the tool's).

use mandate_core::{Call, Chain, Invocation, Limits, SigningKey, VerifierConfig, keyfile};
use mandate_proto::v1 as pb;
use serde_json::json;

use crate::Outcome;
use crate::client::Connection;
use crate::input::{parse_args, parse_pairs, read_chain, text_or_file};
use crate::output::print;

/// `mandate prove`.
#[derive(clap::Args, Debug)]
pub(crate) struct ProveArgs {
    /// Your chain (text form, or a file holding it); you must hold its leaf.
    #[arg(long)]
    chain: String,
    /// The tool's agent id.
    #[arg(long)]
    audience: String,
    /// The action.
    #[arg(long)]
    action: String,
    /// The concrete resource.
    #[arg(long)]
    resource: String,
    /// Arguments `name=value` (integers are sent as integers; repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
    /// Sign the proof even if a tool would reject it (to test how tools refuse).
    #[arg(long)]
    force: bool,
}

/// `mandate authorize`.
#[derive(clap::Args, Debug)]
pub(crate) struct AuthorizeArgs {
    /// The caller's chain (text form, or a file).
    #[arg(long)]
    chain: String,
    /// The caller's invocation proof (text form, or a file).
    #[arg(long)]
    invocation: String,
    /// The action about to be performed.
    #[arg(long)]
    action: String,
    /// The concrete resource.
    #[arg(long)]
    resource: String,
    /// Arguments `name=value` (repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
    /// Context `name=value` for the Cedar `Invoke` decision, e.g. `risk_score=60`
    /// (repeatable).
    #[arg(long = "context")]
    context: Vec<String>,
    /// Refuse break-glass chains.
    #[arg(long)]
    refuse_break_glass: bool,
}

/// The checks a tool would make of a proof that `key` signs for `call` under `chain` and
/// that need no trust bundle, in the tool's order: time (step 4), the call within every
/// link (step 6), the signer holding the leaf (step 7).
fn would_accept(
    key: &SigningKey,
    chain: &Chain,
    call: &Call,
    now: u64,
) -> Result<(), mandate_core::Denial> {
    chain.check_time(now, VerifierConfig::default().clock_skew_ms)?;
    chain.check_permits(call)?;
    if key.public_key() != chain.leaf().body().holder {
        return Err(mandate_core::Denial::at(
            mandate_core::Reason::BadSignature,
            chain.len() - 1,
            "your key is not the key the chain's leaf was issued to",
        ));
    }
    Ok(())
}

pub(crate) fn prove(a: &ProveArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let key = keyfile::load_signing_key(&conn.key)?;
    let chain = read_chain(&a.chain)?;
    let mut call = Call::new(a.action.clone(), a.resource.clone());
    call.args = parse_args(&a.args)?;
    let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
    if !a.force
        && let Err(d) = would_accept(&key, &chain, &call, now)
    {
        print(
            conn.json,
            &json!({ "refused": true, "reason": d.reason().code(), "link": d.link_index(), "detail": d.detail() }),
            || {
                format!(
                    "refused: a tool would reject this proof with {d}\n\
                     (--force signs it anyway, to test how a tool refuses)"
                )
            },
        );
        return Ok(Outcome::Denied);
    }
    let proof = Invocation::sign(&key, &chain, &a.audience, call, now)?;
    print(conn.json, &json!({ "invocation": proof.to_text() }), || {
        proof.to_text()
    });
    Ok(Outcome::Ok)
}

pub(crate) async fn authorize(a: AuthorizeArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let chain = read_chain(&a.chain)?;
    let proof = Invocation::from_text(&text_or_file(&a.invocation)?, &Limits::default())?;
    let mut call = Call::new(a.action.clone(), a.resource.clone());
    call.args = parse_args(&a.args)?;
    let args = mandate_sdk::call_args_to_pb(&call);
    let r = client
        .authorize(pb::AuthorizeRequest {
            refuse_break_glass: a.refuse_break_glass,
            chain: chain.encode(),
            invocation: proof.encode(),
            action: a.action,
            resource: a.resource,
            args,
            context: parse_pairs(&a.context, "context")?,
        })
        .await?;
    print(
        conn.json,
        &json!({ "allowed": r.allowed, "reason": r.reason, "detail": r.detail, "link_index": r.link_index, "holder": r.holder_agent_id, "task_id": r.task_id }),
        || {
            if r.allowed {
                format!("allowed: {} under task {}", r.holder_agent_id, r.task_id)
            } else {
                format!("denied: {} ({})", r.reason, r.detail)
            }
        },
    );
    Ok(if r.allowed {
        Outcome::Ok
    } else {
        Outcome::Denied
    })
}
