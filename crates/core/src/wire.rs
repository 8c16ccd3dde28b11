//! The generated wire types and their conversion to and from the domain types.
//!
//! Decoding is strict: signed bodies must be the canonical encoding of what they decode to
//! (fields in order, no unknown fields, no default values written), unknown enum values
//! and constraint kinds are rejected, and every length and count is checked against
//! [`Limits`].

use crate::capability::{Actions, Call, Capability, Condition, Constraint, ResourcePattern, Value};
use crate::crypto::{PublicKey, Signature};
use crate::id::{AgentId, Digest, LinkId, TaskId};
use crate::limits::Limits;
use crate::reason::{Denial, Reason};

/// The token wire types (`mandate.token.v1`), generated from
/// `proto/mandate/token/v1/token.proto`: the one copy every crate uses (`mandate-proto`
/// maps the package here), converted to and from the domain types only by this crate
/// ([`Capability::to_pb`], [`Capability::from_pb`], [`Call::args_to_pb`], [`Call::from_pb`]).
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/mandate.token.v1.rs"));
}

/// The only wire format version this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

fn malformed(detail: impl Into<String>) -> Denial {
    Denial::new(Reason::Malformed, detail)
}

fn limit(detail: impl Into<String>) -> Denial {
    Denial::new(Reason::LimitExceeded, detail)
}

/// Decodes a signed body and reports whether `bytes` are its canonical encoding (fields
/// in order, no unknown fields, no default values written).
///
/// Callers convert the message first, so an unknown enum value or constraint kind gets its
/// own reason, and then reject a non-canonical body with [`require_canonical`].
pub(crate) fn decode_body<M: prost::Message + Default>(
    bytes: &[u8],
    what: &str,
) -> Result<(M, bool), Denial> {
    let msg = M::decode(bytes).map_err(|_| malformed(format!("{what} does not decode")))?;
    let canonical = msg.encoded_len() == bytes.len() && msg.encode_to_vec() == bytes;
    Ok((msg, canonical))
}

pub(crate) fn require_canonical(canonical: bool, what: &str) -> Result<(), Denial> {
    if canonical {
        Ok(())
    } else {
        Err(malformed(format!(
            "{what} is not canonically encoded or has unknown fields"
        )))
    }
}

pub(crate) fn fixed<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], Denial> {
    bytes
        .try_into()
        .map_err(|_| malformed(format!("{what} must be {N} bytes, got {}", bytes.len())))
}

pub(crate) fn signature(bytes: &[u8], what: &str) -> Result<Signature, Denial> {
    fixed::<64>(bytes, what).map(Signature::from_bytes)
}

pub(crate) fn public_key(bytes: &[u8], what: &str) -> Result<PublicKey, Denial> {
    fixed::<32>(bytes, what).map(PublicKey::from_token_bytes)
}

fn string(s: String, what: &str, limits: &Limits) -> Result<String, Denial> {
    if s.len() > limits.max_string_bytes {
        return Err(limit(format!(
            "{what} is {} bytes, above the limit of {}",
            s.len(),
            limits.max_string_bytes
        )));
    }
    Ok(s)
}

fn count(n: usize, max: usize, what: &str) -> Result<(), Denial> {
    if n > max {
        return Err(limit(format!("{n} {what}, above the limit of {max}")));
    }
    Ok(())
}

pub(crate) fn agent_id(s: String) -> Result<AgentId, Denial> {
    AgentId::new(s).map_err(|e| malformed(e.to_string()))
}

pub(crate) fn link_id(bytes: &[u8]) -> Result<LinkId, Denial> {
    fixed::<16>(bytes, "link id").map(LinkId::from_bytes)
}

pub(crate) fn task_id(bytes: &[u8]) -> Result<TaskId, Denial> {
    fixed::<16>(bytes, "task id").map(TaskId::from_bytes)
}

pub(crate) fn digest(bytes: &[u8], what: &str) -> Result<Digest, Denial> {
    fixed::<32>(bytes, what).map(Digest::from_bytes)
}

pub(crate) fn value_from_pb(v: pb::Value) -> Result<Value, Denial> {
    match v.kind {
        Some(pb::value::Kind::Text(s)) => Ok(Value::Text(s)),
        Some(pb::value::Kind::Int(i)) => Ok(Value::Int(i)),
        None => Err(Denial::new(
            Reason::UnknownConstraint,
            "value has no kind or an unknown kind",
        )),
    }
}

pub(crate) fn value_to_pb(v: &Value) -> pb::Value {
    pb::Value {
        kind: Some(match v {
            Value::Text(s) => pb::value::Kind::Text(s.clone()),
            Value::Int(i) => pb::value::Kind::Int(*i),
        }),
    }
}

fn checked_value(v: pb::Value, limits: &Limits) -> Result<Value, Denial> {
    match value_from_pb(v)? {
        Value::Text(s) => string(s, "text value", limits).map(Value::Text),
        int => Ok(int),
    }
}

fn condition_from_pb(
    kind: Option<pb::constraint::Kind>,
    limits: &Limits,
) -> Result<Condition, Denial> {
    use pb::constraint::Kind;
    match kind {
        Some(Kind::Exact(v)) => Ok(Condition::Exact(checked_value(v, limits)?)),
        Some(Kind::OneOf(set)) => {
            count(
                set.values.len(),
                limits.max_values,
                "values in a one-of constraint",
            )?;
            let values = set
                .values
                .into_iter()
                .map(|v| checked_value(v, limits))
                .collect::<Result<Vec<_>, _>>()?;
            Condition::one_of(values).map_err(|e| malformed(e.to_string()))
        }
        Some(Kind::Prefix(p)) => Ok(Condition::Prefix(string(p, "prefix", limits)?)),
        Some(Kind::Range(r)) => {
            Condition::range(r.min, r.max).map_err(|e| malformed(e.to_string()))
        }
        None => Err(Denial::new(
            Reason::UnknownConstraint,
            "constraint has no kind or an unknown kind",
        )),
    }
}

fn condition_to_pb(c: &Condition) -> pb::constraint::Kind {
    use pb::constraint::Kind;
    match c {
        Condition::Exact(v) => Kind::Exact(value_to_pb(v)),
        Condition::OneOf(vs) => Kind::OneOf(pb::ValueSet {
            values: vs.iter().map(value_to_pb).collect(),
        }),
        Condition::Prefix(p) => Kind::Prefix(p.clone()),
        Condition::Range { min, max } => Kind::Range(pb::IntRange {
            min: *min,
            max: *max,
        }),
    }
}

pub(crate) fn capability_from_pb(c: pb::Capability, limits: &Limits) -> Result<Capability, Denial> {
    count(
        c.actions.len(),
        limits.max_actions,
        "actions in a capability",
    )?;
    count(
        c.constraints.len(),
        limits.max_constraints,
        "constraints in a capability",
    )?;
    let resource = string(c.resource, "resource pattern", limits)?;
    let resource = ResourcePattern::parse(&resource).map_err(|e| malformed(e.to_string()))?;
    for a in &c.actions {
        if a.len() > limits.max_string_bytes {
            return Err(limit("action name above the string limit"));
        }
    }
    let actions = Actions::new(c.actions).map_err(|e| malformed(e.to_string()))?;
    let constraints = c
        .constraints
        .into_iter()
        .map(|k| {
            let arg = string(k.arg, "argument name", limits)?;
            if arg.is_empty() {
                return Err(malformed("constraint on an empty argument name"));
            }
            Ok(Constraint::new(arg, condition_from_pb(k.kind, limits)?))
        })
        .collect::<Result<Vec<_>, Denial>>()?;
    // One constraint per argument: keeps the subset check linear in the constraints (an
    // unauthenticated chain must not buy quadratic work) and the meaning obvious.
    for (i, c) in constraints.iter().enumerate() {
        if constraints[..i].iter().any(|p| p.arg == c.arg) {
            return Err(malformed(format!(
                "two constraints on argument `{}`",
                c.arg
            )));
        }
    }
    Ok(Capability {
        resource,
        actions,
        constraints,
    })
}

pub(crate) fn capability_to_pb(c: &Capability) -> pb::Capability {
    pb::Capability {
        resource: c.resource.to_string(),
        actions: c.actions.to_strings(),
        constraints: c
            .constraints
            .iter()
            .map(|k| pb::Constraint {
                arg: k.arg.clone(),
                kind: Some(condition_to_pb(&k.condition)),
            })
            .collect(),
    }
}

pub(crate) fn call_from_pb(
    action: String,
    resource: String,
    args: Vec<pb::Argument>,
    limits: &Limits,
) -> Result<Call, Denial> {
    count(args.len(), limits.max_args, "invocation arguments")?;
    let action = string(action, "action", limits)?;
    let resource = string(resource, "resource", limits)?;
    if action.is_empty() || action.contains('*') {
        return Err(malformed(
            "invocation action must be non-empty and contain no `*`",
        ));
    }
    if resource.is_empty() || resource.contains('*') {
        return Err(malformed(
            "invocation resource must be non-empty and contain no `*`",
        ));
    }
    let mut call = Call::new(action, resource);
    for a in args {
        let name = string(a.name, "argument name", limits)?;
        let value = a
            .value
            .ok_or_else(|| malformed(format!("argument `{name}` has no value")))?;
        let value = checked_value(value, limits)?;
        if call.args.insert(name.clone(), value).is_some() {
            return Err(malformed(format!("argument `{name}` appears twice")));
        }
    }
    Ok(call)
}

pub(crate) fn args_to_pb(call: &Call) -> Vec<pb::Argument> {
    call.args
        .iter()
        .map(|(name, value)| pb::Argument {
            name: name.clone(),
            value: Some(value_to_pb(value)),
        })
        .collect()
}

pub(crate) fn check_size(len: usize, max: usize, what: &str) -> Result<(), Denial> {
    if len > max {
        return Err(Denial::new(
            Reason::TokenTooLarge,
            format!("{what} is {len} bytes, above the limit of {max}"),
        ));
    }
    Ok(())
}

impl Capability {
    /// The wire form.
    pub fn to_pb(&self) -> pb::Capability {
        capability_to_pb(self)
    }

    /// Reads the wire form with the token's rules and `limits`, as a verifier reads a
    /// link's capabilities: the same reasons (`MALFORMED`, `LIMIT_EXCEEDED`,
    /// `UNKNOWN_CONSTRAINT`) for the same defects.
    pub fn from_pb(c: pb::Capability, limits: &Limits) -> Result<Capability, Denial> {
        capability_from_pb(c, limits)
    }
}

impl Call {
    /// The call's arguments in wire form, in name order.
    pub fn args_to_pb(&self) -> Vec<pb::Argument> {
        args_to_pb(self)
    }

    /// Reads a call from its wire parts with the rules a proof's call follows: a non-empty
    /// action and resource without `*`, unique argument names, every argument with a value.
    pub fn from_pb(
        action: String,
        resource: String,
        args: Vec<pb::Argument>,
        limits: &Limits,
    ) -> Result<Call, Denial> {
        call_from_pb(action, resource, args, limits)
    }
}
