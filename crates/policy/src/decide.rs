//! Decisions: building Cedar entities and context from a [`Request`] and evaluating it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use cedar_policy::{Context, Entities, EntityId, EntityTypeName, EntityUid};
use cedar_policy_core::ast::{self, Value};
use cedar_policy_core::entities::{Entities as CoreEntities, TCComputation};
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::CoreSchema;
use mandate_core::{Capability, ResourcePattern};

use crate::load::PolicySet;
use crate::{Decision, Obligations};

/// The Mandate action being decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Asking for the root link of a new task.
    RequestGrant,
    /// Asking for a fresh root link of a running task.
    Renew,
    /// Registering a narrower link for another agent.
    Delegate,
    /// A call checked online.
    Invoke,
    /// Emergency access for a person.
    BreakGlass,
    /// Approving or denying a pending request.
    Approve,
    /// Registering an agent.
    RegisterAgent,
}

impl Action {
    /// The Cedar action id (`Mandate::Action::"<name>"`).
    pub fn name(self) -> &'static str {
        match self {
            Action::RequestGrant => "RequestGrant",
            Action::Renew => "Renew",
            Action::Delegate => "Delegate",
            Action::Invoke => "Invoke",
            Action::BreakGlass => "BreakGlass",
            Action::Approve => "Approve",
            Action::RegisterAgent => "RegisterAgent",
        }
    }

    pub(crate) const ALL: [Action; 7] = [
        Action::RequestGrant,
        Action::Renew,
        Action::Delegate,
        Action::Invoke,
        Action::BreakGlass,
        Action::Approve,
        Action::RegisterAgent,
    ];
}

/// An agent or person as policy sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentInfo {
    /// Agent id (`spiffe://<trust domain>/<path>`).
    pub id: String,
    /// Role; `human` makes it a `Mandate::Human`.
    pub role: String,
    /// Accountable owner.
    pub owner: String,
    /// Labels, visible to policy as tags.
    pub labels: BTreeMap<String, String>,
    /// The agent that registered it as its worker.
    pub parent: Option<String>,
}

impl AgentInfo {
    /// Whether this principal is a person (`Mandate::Human`).
    pub fn is_human(&self) -> bool {
        self.role == "human"
    }

    fn uid(&self) -> EntityUid {
        uid(
            if self.is_human() {
                Type::Human
            } else {
                Type::Agent
            },
            &self.id,
        )
    }

    fn entity(&self) -> ast::Entity {
        let trust_domain = self
            .id
            .strip_prefix("spiffe://")
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        let mut attrs = vec![
            ("owner", Value::from(self.owner.as_str())),
            ("trust_domain", Value::from(trust_domain)),
        ];
        if !self.is_human() {
            attrs.push(("role", Value::from(self.role.as_str())));
            if let Some(p) = &self.parent {
                attrs.push(("parent", entity_ref(uid(Type::Agent, p))));
            }
        }
        entity(self.uid(), attrs, &self.labels)
    }
}

/// The task a decision is about.
#[derive(Clone, Copy, Debug)]
pub struct TaskInfo<'a> {
    /// Hex task id.
    pub id: &'a str,
    /// Agent id of the requester.
    pub requester: &'a str,
    /// Intent text.
    pub intent: &'a str,
    /// Intent fields, visible to policy as tags.
    pub fields: &'a BTreeMap<String, String>,
}

/// What the principal asks to act on.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Capabilities (grants, renewals, delegations, break-glass): every (resource,
    /// action) pair is one Cedar request and all of them must be permitted.
    Capabilities(&'a [Capability]),
    /// One concrete call (`Invoke`).
    Call {
        /// The action called, e.g. `read`.
        operation: &'a str,
        /// The concrete resource.
        resource: &'a str,
    },
    /// The task itself (`Approve`).
    Task,
    /// The agent being registered (`RegisterAgent`).
    Agent(&'a AgentInfo),
}

/// No signals, and no tags.
static EMPTY: BTreeMap<String, String> = BTreeMap::new();

/// One question for the policy engine. Build it with [`Request::new`] and set the fields
/// the action's context needs (docs/POLICY.md lists them).
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The action.
    pub action: Action,
    /// Who asks.
    pub principal: &'a AgentInfo,
    /// What it asks to act on.
    pub target: Target<'a>,
    /// The task (every action except `RegisterAgent`).
    pub task: Option<TaskInfo<'a>>,
    /// Other agents the policies may read: the principal's parent, the holder, the tool,
    /// the requester. A policy that reads an agent not supplied fails, which denies.
    pub agents: &'a [AgentInfo],
    /// The new holder (`Delegate`).
    pub holder: Option<&'a str>,
    /// The tool asking (`Invoke`).
    pub tool: Option<&'a str>,
    /// The requester of the task (`Approve`).
    pub requester: Option<&'a str>,
    /// Lifetime asked for, ms.
    pub ttl_ms: u64,
    /// Depth of the link (0 for a root).
    pub depth: u32,
    /// Delegation hops asked for below the root.
    pub max_depth: u32,
    /// Whether the grant asks for online checks of every call.
    pub require_online: bool,
    /// Whether the chain is a break-glass chain (`Invoke`).
    pub break_glass: bool,
    /// Why (`BreakGlass`).
    pub reason: &'a str,
    /// Ticket (`BreakGlass`).
    pub ticket: &'a str,
    /// Caller-supplied signals; `risk_score` (0 to 100) is also `context.risk_score`.
    pub signals: &'a BTreeMap<String, String>,
    /// Decision time, Unix ms.
    pub now_ms: u64,
}

impl<'a> Request<'a> {
    /// A request with every optional field empty.
    pub fn new(
        action: Action,
        principal: &'a AgentInfo,
        target: Target<'a>,
        now_ms: u64,
    ) -> Request<'a> {
        Request {
            action,
            principal,
            target,
            task: None,
            agents: &[],
            holder: None,
            tool: None,
            requester: None,
            ttl_ms: 0,
            depth: 0,
            max_depth: 0,
            require_online: false,
            break_glass: false,
            reason: "",
            ticket: "",
            signals: &EMPTY,
            now_ms,
        }
    }
}

#[derive(Clone, Copy)]
enum Type {
    Agent,
    Human,
    Task,
    Resource,
    Signals,
    Action,
}

fn type_name(t: Type) -> &'static EntityTypeName {
    static NAMES: OnceLock<Vec<EntityTypeName>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        [
            "Mandate::Agent",
            "Mandate::Human",
            "Mandate::Task",
            "Mandate::Resource",
            "Mandate::Signals",
            "Mandate::Action",
        ]
        .iter()
        .filter_map(|n| EntityTypeName::from_str(n).ok())
        .collect()
    });
    // The names are constants that parse; the index is the enum's.
    &names[t as usize]
}

fn uid(t: Type, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(type_name(t).clone(), EntityId::new(id))
}

fn action_uid(a: Action) -> &'static EntityUid {
    static UIDS: OnceLock<Vec<EntityUid>> = OnceLock::new();
    let uids = UIDS.get_or_init(|| {
        Action::ALL
            .iter()
            .map(|a| uid(Type::Action, a.name()))
            .collect()
    });
    &uids[Action::ALL.iter().position(|x| *x == a).unwrap_or(0)]
}

fn long(v: u64) -> Value {
    Value::from(i64::try_from(v).unwrap_or(i64::MAX))
}

fn entity_ref(uid: EntityUid) -> Value {
    Value::from(ast::EntityUID::from(uid))
}

/// One entity as Cedar's engine holds it, built straight from values (no expression to
/// evaluate) and without parents: no Mandate entity type has a parent type in the schema,
/// which is what lets [`entity_store`] skip the transitive-closure pass.
fn entity(
    uid: EntityUid,
    attrs: impl IntoIterator<Item = (&'static str, Value)>,
    tags: &BTreeMap<String, String>,
) -> ast::Entity {
    ast::Entity::new_with_attr_partial_value(
        uid.into(),
        attrs.into_iter().map(|(k, v)| (k.into(), v.into())),
        HashSet::new(),
        HashSet::new(),
        tags.iter()
            .map(|(k, v)| (k.as_str().into(), Value::from(v.as_str()).into())),
    )
}

fn resource_entity(name: &str) -> ast::Entity {
    let (prefix, wildcard) = match ResourcePattern::parse(name) {
        Ok(ResourcePattern::Prefix(p)) => (p, true),
        _ => (name.to_owned(), false),
    };
    entity(
        uid(Type::Resource, name),
        [
            ("name", Value::from(name)),
            ("prefix", Value::from(prefix)),
            ("wildcard", Value::from(wildcard)),
        ],
        &EMPTY,
    )
}

/// The decision's entity store. Cedar's public constructor computes the transitive closure
/// of the parent relation (about a quarter of a decision, measured in BENCHMARKS.md); every
/// entity here is built by [`entity`] without parents, so the closure is the empty relation
/// and is asserted rather than computed. An entity with a parent would make `in` answer
/// wrongly and so is refused. The entities are built with exactly the schema's attributes;
/// checking them against it costs about a third of a decision, so only debug builds (every
/// test) do it.
fn entity_store(
    entities: Vec<ast::Entity>,
    schema: &cedar_policy::Schema,
) -> Result<Entities, String> {
    // `ancestors` covers the parents and any indirect ancestors.
    if entities.iter().any(|e| e.ancestors().next().is_some()) {
        return Err("a decision's entities must not have parents".to_owned());
    }
    let core_schema = cfg!(debug_assertions).then(|| CoreSchema::new(schema.as_ref()));
    CoreEntities::new()
        .add_entities(
            entities.into_iter().map(Arc::new),
            core_schema.as_ref(),
            TCComputation::AssumeAlreadyComputed,
            Extensions::all_available(),
        )
        .map(Entities::from)
        .map_err(|e| format!("the decision's entities do not fit the schema: {e}"))
}

/// Reads `risk_score` from the signals: absent is 0; present must be 0 to 100.
fn risk_score(signals: &BTreeMap<String, String>) -> Result<u64, String> {
    match signals.get("risk_score") {
        None => Ok(0),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= 100)
            .ok_or_else(|| format!("signal risk_score `{v}` must be a whole number from 0 to 100")),
    }
}

impl PolicySet {
    /// Decides `r`. Never fails: bad input and policies that cannot be evaluated deny.
    pub fn decide(&self, r: &Request<'_>) -> Decision {
        match self.evaluate(r) {
            Ok(d) => d,
            Err(reason) => Decision::refused(reason, self.hash()),
        }
    }

    fn evaluate(&self, r: &Request<'_>) -> Result<Decision, String> {
        let risk = risk_score(r.signals)?;
        // Entities: the principal, the agents supplied, the task, the resources, signals.
        let mut entities = vec![r.principal.entity()];
        let mut seen: HashSet<&str> = HashSet::from([r.principal.id.as_str()]);
        for a in r.agents {
            if seen.insert(&a.id) {
                entities.push(a.entity());
            }
        }
        if let Target::Agent(a) = r.target
            && seen.insert(&a.id)
        {
            entities.push(a.entity());
        }
        if let Some(t) = &r.task {
            entities.push(entity(
                uid(Type::Task, t.id),
                [
                    ("requester", Value::from(t.requester)),
                    ("intent", Value::from(t.intent)),
                ],
                t.fields,
            ));
        }
        let signals = uid(Type::Signals, "request");
        entities.push(entity(signals.clone(), [], r.signals));
        // The (operation, resource) pairs to decide.
        let mut pairs: Vec<(String, EntityUid)> = Vec::new();
        let mut resources = BTreeSet::new();
        match r.target {
            Target::Capabilities(caps) => {
                if caps.is_empty() {
                    return Err("nothing was asked for".to_owned());
                }
                for c in caps {
                    let name = c.resource.to_string();
                    for op in c.actions.to_strings() {
                        pairs.push((op, uid(Type::Resource, &name)));
                    }
                    resources.insert(name);
                }
            }
            Target::Call {
                operation,
                resource,
            } => {
                pairs.push((operation.to_owned(), uid(Type::Resource, resource)));
                resources.insert(resource.to_owned());
            }
            Target::Task => {
                let t = r.task.ok_or("an approval needs its task")?;
                pairs.push((String::new(), uid(Type::Task, t.id)));
            }
            Target::Agent(a) => pairs.push((String::new(), a.uid())),
        }
        for name in &resources {
            entities.push(resource_entity(name));
        }
        // The request (principal type, context) is always checked below.
        let entities = entity_store(entities, &self.schema)?;

        let hour = (r.now_ms / 3_600_000) % 24;
        // 1970-01-01 was a Thursday; Monday is 0.
        let weekday = (r.now_ms / 86_400_000 + 3) % 7;
        let task_uid = || {
            r.task
                .map(|t| entity_ref(uid(Type::Task, t.id)))
                .ok_or_else(|| format!("{} needs its task", r.action.name()))
        };
        let agent_ref = |id: Option<&str>, what: &str| {
            id.map(|id| entity_ref(uid(Type::Agent, id)))
                .ok_or_else(|| format!("{} needs its {what}", r.action.name()))
        };

        // The principal types each action applies to (as in the schema).
        let human = r.principal.is_human();
        let fits = match r.action {
            Action::RequestGrant | Action::Renew | Action::Delegate => !human,
            Action::BreakGlass => human,
            Action::Invoke | Action::Approve | Action::RegisterAgent => true,
        };
        if !fits {
            return Err(format!(
                "the request does not fit the schema: {} is not for a {}",
                r.action.name(),
                if human { "person" } else { "agent" }
            ));
        }
        let slice = self
            .slices
            .get(&(r.action, r.principal.is_human()))
            .ok_or("no policy slice for the action")?;
        let mut allowed_by = BTreeSet::new();
        let mut obligations = Obligations::default();
        for (operation, resource) in pairs {
            // The context is built from values, not from expressions Cedar would evaluate
            // first; its shape is the action's in the schema (debug builds check it below).
            let mut ctx: Vec<(&'static str, Value)> = vec![
                ("risk_score", long(risk)),
                ("signals", entity_ref(signals.clone())),
                ("now_ms", long(r.now_ms)),
                ("hour_utc", long(hour)),
                ("weekday", long(weekday)),
            ];
            let op = ("operation", Value::from(operation.as_str()));
            match r.action {
                Action::RequestGrant | Action::Renew => ctx.extend([
                    ("task", task_uid()?),
                    op,
                    ("ttl_ms", long(r.ttl_ms)),
                    ("max_depth", long(r.max_depth.into())),
                    ("require_online", Value::from(r.require_online)),
                ]),
                Action::Delegate => ctx.extend([
                    ("task", task_uid()?),
                    op,
                    ("holder", agent_ref(r.holder, "holder")?),
                    ("ttl_ms", long(r.ttl_ms)),
                    ("depth", long(r.depth.into())),
                    ("max_depth", long(r.max_depth.into())),
                ]),
                Action::Invoke => ctx.extend([
                    ("task", task_uid()?),
                    op,
                    ("tool", agent_ref(r.tool, "tool")?),
                    ("depth", long(r.depth.into())),
                    ("break_glass", Value::from(r.break_glass)),
                ]),
                Action::BreakGlass => ctx.extend([
                    ("task", task_uid()?),
                    op,
                    ("ttl_ms", long(r.ttl_ms)),
                    ("reason", Value::from(r.reason)),
                    ("ticket", Value::from(r.ticket)),
                ]),
                Action::Approve => ctx.extend([
                    ("requester", agent_ref(r.requester, "requester")?),
                    ("ttl_ms", long(r.ttl_ms)),
                ]),
                Action::RegisterAgent => {}
            }
            let context = Context::from(ast::Context::Value(Arc::new(
                ctx.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            )));
            let request = cedar_policy::Request::new(
                r.principal.uid(),
                action_uid(r.action).clone(),
                resource.clone(),
                context,
                // Checking the request against the schema costs a fifth of a decision; the
                // context is built above with exactly the action's attributes and the
                // principal's type is checked before, so only debug builds (every test)
                // repeat it.
                cfg!(debug_assertions).then_some(&*self.schema),
            )
            .map_err(|e| format!("the request does not fit the schema: {e}"))?;
            let response = self.authorizer.is_authorized(&request, slice, &entities);
            let diagnostics = response.diagnostics();
            // Fail closed: Cedar skips a policy it cannot evaluate, which for a forbid
            // would allow; here any evaluation error denies.
            let errors: Vec<_> = diagnostics.errors().collect();
            if !errors.is_empty() {
                let ids: BTreeSet<String> = errors
                    .iter()
                    .map(|e| match e {
                        cedar_policy::AuthorizationError::PolicyEvaluationError(p) => {
                            p.policy_id().to_string()
                        }
                    })
                    .collect();
                return Ok(Decision {
                    allowed: false,
                    reason: format!(
                        "denied because a policy could not be evaluated: {}",
                        errors
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                    policies: ids.into_iter().collect(),
                    policy_hash: self.hash().to_owned(),
                    obligations: Obligations::default(),
                });
            }
            let determining: BTreeSet<String> =
                diagnostics.reason().map(ToString::to_string).collect();
            if response.decision() != cedar_policy::Decision::Allow {
                let what = if operation.is_empty() {
                    format!("`{}`", resource.id().unescaped())
                } else {
                    format!("`{operation}` on `{}`", resource.id().unescaped())
                };
                let reason = match determining.first() {
                    Some(id) => {
                        let why = self
                            .meta
                            .get(&cedar_policy::PolicyId::new(id))
                            .and_then(|m| m.reason.clone())
                            .unwrap_or_else(|| format!("forbidden by policy `{id}`"));
                        format!("{} {what}: {why}", r.action.name())
                    }
                    None => format!(
                        "no policy permits {} {what} for `{}`",
                        r.action.name(),
                        r.principal.id
                    ),
                };
                return Ok(Decision {
                    allowed: false,
                    reason,
                    policies: determining.into_iter().collect(),
                    policy_hash: self.hash().to_owned(),
                    obligations: Obligations::default(),
                });
            }
            for id in diagnostics.reason() {
                if let Some(m) = self.meta.get(id) {
                    obligations.tighten(&m.obligations);
                }
            }
            allowed_by.extend(determining);
        }
        Ok(Decision {
            allowed: true,
            reason: if obligations.is_empty() {
                "permitted".to_owned()
            } else {
                format!("permitted with obligations: {obligations}")
            },
            policies: allowed_by.into_iter().collect(),
            policy_hash: self.hash().to_owned(),
            obligations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> AgentInfo {
        AgentInfo {
            id: "spiffe://example.org/worker".to_owned(),
            role: "worker".to_owned(),
            owner: "team-a".to_owned(),
            labels: BTreeMap::from([("team".to_owned(), "payments".to_owned())]),
            parent: Some("spiffe://example.org/planner".to_owned()),
        }
    }

    #[test]
    fn the_entity_store_refuses_parents() {
        let set = PolicySet::default_set().unwrap_or_else(|e| panic!("{e}"));
        let store =
            entity_store(vec![agent().entity()], &set.schema).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.iter().count(), 1);
        // The closure is asserted, not computed: a parent would make `in` answer wrongly.
        let mut child = agent().entity();
        child.add_parent(uid(Type::Agent, "spiffe://example.org/planner").into());
        let err = entity_store(vec![child], &set.schema).err();
        assert_eq!(
            err.as_deref(),
            Some("a decision's entities must not have parents")
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    fn debug_builds_check_entities_against_the_schema() {
        let set = PolicySet::default_set().unwrap_or_else(|e| panic!("{e}"));
        // An agent without its `trust_domain` attribute does not fit the schema.
        let bad = entity(
            uid(Type::Agent, "spiffe://example.org/worker"),
            [("owner", Value::from("team-a")), ("role", Value::from("w"))],
            &EMPTY,
        );
        let err = entity_store(vec![bad], &set.schema)
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("the decision's entities do not fit the schema"),
            "{err}"
        );
    }
}
