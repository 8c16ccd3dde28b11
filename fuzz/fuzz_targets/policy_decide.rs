//! Policy decisions on hostile input: any principal attributes, labels, intent fields,
//! signals, resources and operations. A decision never panics, is deterministic, records
//! the set's hash, and a set whose forbid covers everything never allows, whatever the
//! permits say (forbid wins, and evaluation errors deny).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mandate_core::Capability;
use mandate_policy::{Action, AgentInfo, PolicySet, Request, Target, TaskInfo};

struct Sets {
    default: PolicySet,
    team: PolicySet,
    deny_all: PolicySet,
}

fn sets() -> &'static Sets {
    static S: OnceLock<Sets> = OnceLock::new();
    S.get_or_init(|| {
        let team_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies/team");
        Sets {
            default: PolicySet::default_set().expect("default set"),
            team: PolicySet::load_dir(&team_dir).expect("team set"),
            deny_all: PolicySet::from_sources(&[(
                "deny.cedar".to_owned(),
                "permit (principal, action, resource);\nforbid (principal, action, resource);".to_owned(),
            )])
            .expect("deny set"),
        }
    })
}

fn map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().take(8).cloned().collect()
}

fuzz_target!(|input: (
    u8,
    (String, String, Vec<(String, String)>, Option<String>),
    Vec<(String, Vec<String>)>,
    Vec<(String, String)>,
    Vec<(String, String)>,
    (u64, u32, u32, bool, u64),
)| {
    let (action, (role, owner, labels, parent), caps, fields, signals, (ttl, depth, max_depth, flag, now)) = input;
    let actions = [
        Action::RequestGrant,
        Action::Renew,
        Action::Delegate,
        Action::Invoke,
        Action::BreakGlass,
        Action::Approve,
        Action::RegisterAgent,
    ];
    let action = actions[usize::from(action) % actions.len()];
    let principal = AgentInfo {
        id: "spiffe://acme.example/p".to_owned(),
        role,
        owner,
        labels: map(&labels),
        parent,
    };
    let other = AgentInfo {
        id: "spiffe://acme.example/o".to_owned(),
        role: "worker".to_owned(),
        parent: Some(principal.id.clone()),
        ..AgentInfo::default()
    };
    let capabilities: Vec<Capability> = caps
        .iter()
        .take(4)
        .filter_map(|(r, a)| Capability::new(r, a.iter().take(4).cloned()).ok())
        .collect();
    let fields = map(&fields);
    let signals = map(&signals);
    let (resource, operation) = caps
        .first()
        .map(|(r, a)| (r.as_str(), a.first().map_or("", String::as_str)))
        .unwrap_or(("", ""));
    let target = match action {
        Action::Invoke => Target::Call { operation, resource },
        Action::Approve => Target::Task,
        Action::RegisterAgent => Target::Agent(&other),
        _ => Target::Capabilities(&capabilities),
    };
    let agents = [other.clone()];
    let mut r = Request::new(action, &principal, target, now);
    r.task = Some(TaskInfo {
        id: "00112233445566778899aabbccddeeff",
        requester: &principal.id,
        intent: "fuzz",
        fields: &fields,
    });
    r.agents = &agents;
    r.holder = Some(&other.id);
    r.tool = Some(&other.id);
    r.requester = Some(&other.id);
    r.ttl_ms = ttl;
    r.depth = depth;
    r.max_depth = max_depth;
    r.require_online = flag;
    r.break_glass = flag;
    r.reason = operation;
    r.ticket = resource;
    r.signals = &signals;
    let s = sets();
    for set in [&s.default, &s.team] {
        let a = set.decide(&r);
        let b = set.decide(&r);
        assert_eq!(a, b, "decisions are deterministic");
        assert_eq!(a.policy_hash, set.hash());
        if !a.allowed {
            assert!(a.obligations.is_empty(), "a denial carries no obligation");
        }
    }
    assert!(!s.deny_all.decide(&r).allowed, "forbid wins");
});
