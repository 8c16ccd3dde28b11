//! Reading command-line input: tokens given as text or files, lifetimes, capabilities,
//! `name=value` arguments and pairs.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use mandate_core::{Capability, Chain, Limits, Value};

pub(crate) fn text_or_file(s: &str) -> anyhow::Result<String> {
    if s.starts_with("mandate1.") || s.starts_with("mandate-inv1.") {
        return Ok(s.to_owned());
    }
    Ok(std::fs::read_to_string(s)
        .with_context(|| format!("`{s}` is neither a token nor a readable file"))?
        .trim()
        .to_owned())
}

pub(crate) fn read_chain(s: &str) -> anyhow::Result<Chain> {
    Ok(Chain::from_text(&text_or_file(s)?, &Limits::default())?)
}

pub(crate) fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a duration (e.g. 90s, 5m, 1h)"))?;
    Ok(match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => bail!("unknown duration unit in `{s}` (ms, s, m, h)"),
    })
}

pub(crate) fn parse_cap(s: &str) -> anyhow::Result<Capability> {
    let (resource, actions) = s
        .rsplit_once(':')
        .with_context(|| format!("capability `{s}` must be RESOURCE:ACTION[,ACTION…]"))?;
    Ok(Capability::new(resource, actions.split(','))?)
}

pub(crate) fn parse_args(args: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    args.iter()
        .map(|a| {
            let (k, v) = a
                .split_once('=')
                .with_context(|| format!("argument `{a}` must be name=value"))?;
            let value = v
                .parse::<i64>()
                .map_or_else(|_| Value::Text(v.to_owned()), Value::Int);
            Ok((k.to_owned(), value))
        })
        .collect()
}

/// `name=value` pairs (`what` names the flag in errors).
pub(crate) fn parse_pairs(
    pairs: &[String],
    what: &str,
) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{what} `{p}` must be name=value"))
        })
        .collect()
}
