//! Encoded sizes of links, reported by `cargo test -p mandate-core --test suite sizes --
//! --nocapture` and bounded so that a format change that bloats tokens is noticed.

use mandate_core::*;

use crate::fixture::*;

fn one_cap_delegation(agent_id: &str, sealed: bool) -> (usize, usize) {
    let opts = Opts {
        sealed,
        ..Opts::default()
    };
    let root_spec = spec(
        1,
        PLANNER,
        vec![Capability::new("files/*", ["read", "write"]).unwrap()],
        (NOW - MINUTE, NOW + 10 * MINUTE),
        3,
    )
    .require_seal(opts.sealed);
    let root = Chain::issue_root(&key(COORDINATOR), task(), LinkKind::Grant, root_spec).unwrap();
    let mut spec = spec(
        2,
        WORKER_A,
        vec![Capability::new("files/reports/*", ["read"]).unwrap()],
        (NOW - MINUTE, NOW + 5 * MINUTE),
        1,
    )
    .require_seal(sealed);
    spec.holder_agent = AgentId::new(agent_id).unwrap();
    let mut chain = root.delegate(&key(PLANNER), spec).unwrap();
    if sealed {
        chain.seal_leaf(&key(COORDINATOR));
    }
    (
        chain.leaf().encoded_len(),
        chain.encode().len() - root.encode().len(),
    )
}

#[test]
fn sizes() {
    let short = "spiffe://acme.example/w1";
    let typical = "spiffe://acme.example/agent/worker-a";
    let (short_link, _) = one_cap_delegation(short, false);
    let (typical_link, in_chain) = one_cap_delegation(typical, false);
    let (sealed_link, _) = one_cap_delegation(typical, true);
    let root = root(Opts::default());
    println!(
        "one-capability delegation link, agent id {} bytes: {short_link} bytes",
        short.len()
    );
    println!(
        "one-capability delegation link, agent id {} bytes: {typical_link} bytes ({in_chain} in a chain)",
        typical.len()
    );
    println!("the same link with a coordinator seal: {sealed_link} bytes");
    println!(
        "root link (one constrained capability): {} bytes",
        root.root().encoded_len()
    );
    println!(
        "depth-3 chain: {} bytes, text form {} characters",
        depth3(Opts::default()).encode().len(),
        depth3(Opts::default()).to_text().len()
    );
    // Fixed cost: signature 64, holder key 32, parent digest 32, id 16 = 144 bytes of
    // cryptographic material, plus framing; the rest is the agent id and the capability.
    assert!(
        typical_link <= 240,
        "a one-capability delegation link grew to {typical_link} bytes"
    );
    assert_eq!(typical_link - short_link, typical.len() - short.len());
    assert!(sealed_link <= typical_link + 110);
}
