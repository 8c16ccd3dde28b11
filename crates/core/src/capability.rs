//! Capabilities and attenuation: what a link grants, what a call asks for, and the
//! "is this at least as narrow" relation between capabilities.
//!
//! The subset check is sound, not complete: it accepts a child capability only when it can
//! prove the child permits no call the parent does not. Anything it cannot prove narrower
//! is rejected.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Error;

/// Which resources a capability covers: one literal name, or every name starting with a
/// literal prefix (written with one final `*`; `*` alone covers everything).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourcePattern {
    /// Exactly this resource.
    Exact(String),
    /// Every resource starting with this prefix.
    Prefix(String),
}

impl ResourcePattern {
    /// Parses `docs/report.pdf` (literal) or `docs/*` (prefix). `*` may appear only once,
    /// as the last character.
    pub fn parse(s: &str) -> Result<ResourcePattern, Error> {
        if s.is_empty() {
            return Err(Error::InvalidResourcePattern(String::new()));
        }
        match s.strip_suffix('*') {
            Some(prefix) if !prefix.contains('*') => Ok(ResourcePattern::Prefix(prefix.into())),
            None if !s.contains('*') => Ok(ResourcePattern::Exact(s.into())),
            _ => Err(Error::InvalidResourcePattern(s.chars().take(64).collect())),
        }
    }

    /// Whether the concrete resource `name` is covered.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            ResourcePattern::Exact(r) => r == name,
            ResourcePattern::Prefix(p) => name.starts_with(p.as_str()),
        }
    }

    /// Whether every resource `self` covers is covered by `parent`.
    pub fn is_within(&self, parent: &ResourcePattern) -> bool {
        match (self, parent) {
            (ResourcePattern::Exact(c), p) => p.matches(c),
            (ResourcePattern::Prefix(c), ResourcePattern::Prefix(p)) => c.starts_with(p.as_str()),
            (ResourcePattern::Prefix(_), ResourcePattern::Exact(_)) => false,
        }
    }
}

impl fmt::Display for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResourcePattern::Exact(r) => f.write_str(r),
            ResourcePattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl fmt::Debug for ResourcePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{self}`")
    }
}

/// Which actions a capability covers.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Actions {
    /// Any action (`*`).
    Any,
    /// These actions (non-empty, sorted, no duplicates).
    Only(Vec<String>),
}

impl Actions {
    /// Builds an action set; `*` among them means any action.
    pub fn new<I, S>(actions: I) -> Result<Actions, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = actions.into_iter().map(Into::into).collect();
        if list.is_empty() {
            return Err(Error::Invalid {
                what: "capability",
                why: "needs at least one action".into(),
            });
        }
        if list.iter().any(|a| a == "*") {
            return Ok(Actions::Any);
        }
        if let Some(bad) = list.iter().find(|a| a.is_empty() || a.contains('*')) {
            return Err(Error::Invalid {
                what: "action",
                why: format!(
                    "`{bad}` must be non-empty and contain no `*` (use `*` alone for any)"
                ),
            });
        }
        list.sort();
        list.dedup();
        Ok(Actions::Only(list))
    }

    /// Whether `action` is covered.
    pub fn allows(&self, action: &str) -> bool {
        match self {
            Actions::Any => true,
            Actions::Only(list) => list.binary_search_by(|a| a.as_str().cmp(action)).is_ok(),
        }
    }

    /// Whether every action `self` covers is covered by `parent`.
    pub fn is_within(&self, parent: &Actions) -> bool {
        match (self, parent) {
            (_, Actions::Any) => true,
            (Actions::Any, Actions::Only(_)) => false,
            (Actions::Only(c), Actions::Only(_)) => c.iter().all(|a| parent.allows(a)),
        }
    }

    /// The actions as written on the wire.
    pub fn to_strings(&self) -> Vec<String> {
        match self {
            Actions::Any => vec!["*".into()],
            Actions::Only(list) => list.clone(),
        }
    }
}

/// A call argument value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Value {
    /// UTF-8 text.
    Text(String),
    /// A signed 64-bit integer.
    Int(i64),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Int(i) => write!(f, "{i}"),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Text(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Text(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

/// A condition on one call argument. The argument must be present for it to hold.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Condition {
    /// Equal to this value.
    Exact(Value),
    /// Equal to one of these values (non-empty, sorted, no duplicates).
    OneOf(Vec<Value>),
    /// A text value starting with this prefix.
    Prefix(String),
    /// An integer value in this inclusive range (`min <= max`).
    Range {
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
}

impl Condition {
    /// A one-of condition; rejects an empty set.
    pub fn one_of(values: impl IntoIterator<Item = Value>) -> Result<Condition, Error> {
        let mut values: Vec<Value> = values.into_iter().collect();
        if values.is_empty() {
            return Err(Error::Invalid {
                what: "constraint",
                why: "one-of needs at least one value".into(),
            });
        }
        values.sort();
        values.dedup();
        Ok(Condition::OneOf(values))
    }

    /// An integer range; rejects `min > max`.
    pub fn range(min: i64, max: i64) -> Result<Condition, Error> {
        if min > max {
            return Err(Error::Invalid {
                what: "constraint",
                why: format!("range minimum {min} is above maximum {max}"),
            });
        }
        Ok(Condition::Range { min, max })
    }

    /// Whether `value` satisfies the condition.
    pub fn holds(&self, value: &Value) -> bool {
        match (self, value) {
            (Condition::Exact(v), value) => v == value,
            (Condition::OneOf(vs), value) => vs.binary_search(value).is_ok(),
            (Condition::Prefix(p), Value::Text(s)) => s.starts_with(p.as_str()),
            (Condition::Range { min, max }, Value::Int(i)) => min <= i && i <= max,
            (Condition::Prefix(_), Value::Int(_)) | (Condition::Range { .. }, Value::Text(_)) => {
                false
            }
        }
    }

    /// Whether every value satisfying `self` satisfies `parent`.
    pub fn is_within(&self, parent: &Condition) -> bool {
        match self {
            Condition::Exact(v) => parent.holds(v),
            Condition::OneOf(vs) => vs.iter().all(|v| parent.holds(v)),
            Condition::Prefix(p) => match parent {
                Condition::Prefix(pp) => p.starts_with(pp.as_str()),
                // A prefix admits infinitely many values; no finite set or range holds them.
                _ => false,
            },
            Condition::Range { min, max } => match parent {
                Condition::Range {
                    min: pmin,
                    max: pmax,
                } => pmin <= min && max <= pmax,
                // A one-of or exact parent holds a range only if it lists every value in it.
                Condition::OneOf(vs) => {
                    let wanted = u128::try_from(i128::from(*max) - i128::from(*min) + 1)
                        .unwrap_or(u128::MAX);
                    // Count distinct values: the variant is public, so duplicates are possible.
                    let present: std::collections::BTreeSet<i64> = vs
                        .iter()
                        .filter_map(|v| match v {
                            Value::Int(i) if min <= i && i <= max => Some(*i),
                            _ => None,
                        })
                        .collect();
                    u128::try_from(present.len()).unwrap_or(0) == wanted
                }
                Condition::Exact(Value::Int(v)) => min == max && min == v,
                Condition::Exact(Value::Text(_)) | Condition::Prefix(_) => false,
            },
        }
    }
}

/// A condition on a named argument.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Constraint {
    /// Argument name.
    pub arg: String,
    /// What the argument must satisfy.
    pub condition: Condition,
}

impl Constraint {
    /// A constraint on argument `arg`.
    pub fn new(arg: impl Into<String>, condition: Condition) -> Constraint {
        Constraint {
            arg: arg.into(),
            condition,
        }
    }
}

/// A grant of actions on resources, optionally constrained on call arguments.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Capability {
    /// Covered resources.
    pub resource: ResourcePattern,
    /// Covered actions.
    pub actions: Actions,
    /// Conditions that must all hold.
    pub constraints: Vec<Constraint>,
}

impl Capability {
    /// A capability with no argument constraints. `resource` is a pattern as accepted by
    /// [`ResourcePattern::parse`].
    pub fn new<I, S>(resource: &str, actions: I) -> Result<Capability, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Ok(Capability {
            resource: ResourcePattern::parse(resource)?,
            actions: Actions::new(actions)?,
            constraints: Vec::new(),
        })
    }

    /// Adds a constraint.
    pub fn with_constraint(mut self, arg: impl Into<String>, condition: Condition) -> Capability {
        self.constraints.push(Constraint::new(arg, condition));
        self
    }

    /// Whether this capability permits `call`.
    pub fn permits(&self, call: &Call) -> bool {
        self.resource.matches(&call.resource)
            && self.actions.allows(&call.action)
            && self.constraints.iter().all(|c| {
                call.args
                    .get(&c.arg)
                    .is_some_and(|value| c.condition.holds(value))
            })
    }

    /// Whether every call `self` permits is permitted by `parent`.
    ///
    /// Each parent constraint must be matched by a child constraint on the same argument
    /// that is at least as narrow; the child may add constraints of its own.
    pub fn is_within(&self, parent: &Capability) -> bool {
        self.resource.is_within(&parent.resource)
            && self.actions.is_within(&parent.actions)
            && parent.constraints.iter().all(|p| {
                self.constraints
                    .iter()
                    .any(|c| c.arg == p.arg && c.condition.is_within(&p.condition))
            })
    }
}

/// Whether every capability in `child` is within some capability of `parent`.
pub fn is_attenuation(child: &[Capability], parent: &[Capability]) -> bool {
    child.iter().all(|c| parent.iter().any(|p| c.is_within(p)))
}

/// One concrete tool call: what an invocation proof asks for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Call {
    /// The action, e.g. `read`.
    pub action: String,
    /// The concrete resource, e.g. `docs/report.pdf` (no `*`).
    pub resource: String,
    /// Named arguments.
    pub args: BTreeMap<String, Value>,
}

impl Call {
    /// A call with no arguments.
    pub fn new(action: impl Into<String>, resource: impl Into<String>) -> Call {
        Call {
            action: action.into(),
            resource: resource.into(),
            args: BTreeMap::new(),
        }
    }

    /// Adds an argument.
    pub fn with_arg(mut self, name: impl Into<String>, value: impl Into<Value>) -> Call {
        self.args.insert(name.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests;
