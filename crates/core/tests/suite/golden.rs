//! Golden test vectors: every scenario, serialized for implementations in other languages.
//!
//! `crates/core/testdata/vectors.json` must equal what this code generates; regenerate with
//! `MANDATE_BLESS=1 cargo test -p mandate-core --test suite golden`.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mandate_core::*;
use serde_json::{Value as Json, json};

use crate::fixture::*;
use crate::scenarios;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors.json")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn call_json(call: &Call) -> Json {
    let args: serde_json::Map<String, Json> = call
        .args
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Text(s) => json!({ "text": s }),
                Value::Int(i) => json!({ "int": i }),
            };
            (k.clone(), v)
        })
        .collect();
    json!({ "action": call.action, "resource": call.resource, "args": args })
}

fn case_json(case: &Case) -> Json {
    let d = VerifierConfig::default();
    let c = case.config.verifier_config();
    let (result, reason, link) = match case.expect {
        Expect::Valid => ("VALID", Json::Null, Json::Null),
        Expect::Deny(r, l) => ("DENY", json!(r.code()), l.map_or(Json::Null, |l| json!(l))),
    };
    let mut config = serde_json::Map::new();
    if c.online != d.online {
        config.insert("online".into(), json!(c.online));
    }
    if c.accept_break_glass != d.accept_break_glass {
        config.insert("accept_break_glass".into(), json!(c.accept_break_glass));
    }
    for (name, value, default) in [
        (
            "max_token_bytes",
            c.limits.max_token_bytes,
            d.limits.max_token_bytes,
        ),
        ("max_links", c.limits.max_links, d.limits.max_links),
        (
            "max_capabilities",
            c.limits.max_capabilities,
            d.limits.max_capabilities,
        ),
        (
            "replay_cache_capacity",
            c.replay_cache_capacity,
            d.replay_cache_capacity,
        ),
    ] {
        if value != default {
            config.insert(name.into(), json!(value));
        }
    }
    json!({
        "name": case.name,
        "description": case.description,
        "now_ms": case.now_ms,
        "chain": case.text.clone().unwrap_or_else(|| format!("{CHAIN_TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(&case.chain))),
        "invocation": case.invocation.as_ref().map(|i| format!("{INVOCATION_TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(i))),
        "call": case.call.as_ref().map(call_json),
        "revoked": case.revoked.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "config": config,
        "verify_twice": case.replay,
        "expect": { "result": result, "reason": reason, "link": link },
    })
}

fn generate() -> String {
    let d = VerifierConfig::default();
    let keys: Vec<Json> = [
        ("coordinator", COORDINATOR),
        ("retired_coordinator", RETIRED_COORDINATOR),
        ("rogue_coordinator", ROGUE_COORDINATOR),
        ("planner", PLANNER),
        ("worker_a", WORKER_A),
        ("worker_b", WORKER_B),
        ("sub_worker", SUB_WORKER),
        ("mallory", MALLORY),
    ]
    .iter()
    .map(|(name, seed)| {
        json!({
            "name": name,
            "seed_hex": hex(&[*seed; 32]),
            "public_key": key(*seed).public_key().to_string(),
        })
    })
    .collect();
    let trust: Vec<Json> = trust()
        .keys()
        .iter()
        .map(|k| {
            json!({
                "public_key": k.key().to_string(),
                "not_before_ms": k.not_before_ms(),
                "not_after_ms": k.not_after_ms(),
            })
        })
        .collect();
    let doc = json!({
        "about": "Mandate token format v1 golden vectors. Verify each case's chain (and invocation, for the call, at audience `audience`) at `now_ms` with the trust bundle, the default verifier settings overridden by the case's `config`, and the case's revoked link ids. With `verify_twice`, the expectation is for the second verification. `link` is the index of the offending link (0 is the root) where the denial concerns one link. Keys are test-only: their Ed25519 seeds are published so other implementations can reproduce every signature.",
        "regenerate": "MANDATE_BLESS=1 cargo test -p mandate-core --test suite golden",
        "format_version": FORMAT_VERSION,
        "audience": AUDIENCE,
        "defaults": {
            "clock_skew_ms": d.clock_skew_ms,
            "invocation_window_ms": d.invocation_window_ms,
            "accept_break_glass": d.accept_break_glass,
            "online": d.online,
            "max_token_bytes": d.limits.max_token_bytes,
            "max_links": d.limits.max_links,
            "max_capabilities": d.limits.max_capabilities,
            "max_actions": d.limits.max_actions,
            "max_constraints": d.limits.max_constraints,
            "max_values": d.limits.max_values,
            "max_string_bytes": d.limits.max_string_bytes,
            "max_invocation_bytes": d.limits.max_invocation_bytes,
            "max_args": d.limits.max_args,
        },
        "keys": keys,
        "trust_bundle": trust,
        "cases": scenarios::all().iter().map(case_json).collect::<Vec<_>>(),
    });
    let mut text = serde_json::to_string_pretty(&sorted(doc)).unwrap();
    text.push('\n');
    text
}

/// Object keys in sorted order whatever serde_json's features: another crate in the
/// workspace (cedar-policy) turns on `preserve_order`, which would otherwise keep the
/// order of insertion.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let entries: std::collections::BTreeMap<String, serde_json::Value> =
                map.into_iter().map(|(k, v)| (k, sorted(v))).collect();
            serde_json::Value::Object(entries.into_iter().collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

#[test]
fn golden_vectors_match_the_code() {
    let generated = generate();
    if std::env::var_os("MANDATE_BLESS").is_some() {
        std::fs::write(path(), &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(path()).unwrap_or_default();
    assert!(
        committed == generated,
        "crates/core/testdata/vectors.json differs from what the code generates; if the change \
         is intended, regenerate with `MANDATE_BLESS=1 cargo test -p mandate-core --test suite golden`"
    );
}

fn text_bytes(text: &str, prefix: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text.strip_prefix(prefix).unwrap())
        .unwrap()
}

fn call_from_json(j: &Json) -> Call {
    let mut call = Call::new(
        j["action"].as_str().unwrap(),
        j["resource"].as_str().unwrap(),
    );
    for (name, v) in j["args"].as_object().unwrap() {
        let value = match (v.get("text"), v.get("int")) {
            (Some(t), None) => Value::Text(t.as_str().unwrap().into()),
            (None, Some(i)) => Value::Int(i.as_i64().unwrap()),
            _ => panic!("bad argument `{name}`"),
        };
        call = call.with_arg(name.clone(), value);
    }
    call
}

/// Reads the committed file back and checks each case's verdict from the file alone, the
/// way another implementation would.
#[test]
fn golden_vectors_verify_from_the_file() {
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(path()).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), scenarios::all().len());
    let usize_of = |c: &Json, k: &str| c.get(k).and_then(Json::as_u64).map(|v| v as usize);
    for j in cases {
        let name = j["name"].as_str().unwrap();
        let config = &j["config"];
        let case = Case {
            name: "from file",
            description: "",
            // Parsed from the text, as another implementation reads the file.
            chain: Vec::new(),
            text: Some(j["chain"].as_str().unwrap().to_owned()),
            invocation: j["invocation"]
                .as_str()
                .map(|t| text_bytes(t, INVOCATION_TEXT_PREFIX)),
            call: (!j["call"].is_null()).then(|| call_from_json(&j["call"])),
            revoked: j["revoked"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().parse().unwrap())
                .collect(),
            now_ms: j["now_ms"].as_u64().unwrap(),
            config: CaseConfig {
                online: config
                    .get("online")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
                refuse_break_glass: config.get("accept_break_glass").and_then(Json::as_bool)
                    == Some(false),
                max_token_bytes: usize_of(config, "max_token_bytes"),
                max_links: usize_of(config, "max_links"),
                max_capabilities: usize_of(config, "max_capabilities"),
                replay_cache_capacity: usize_of(config, "replay_cache_capacity"),
            },
            replay: j["verify_twice"].as_bool().unwrap(),
            expect: Expect::Valid,
        };
        let expect = &j["expect"];
        match (expect["result"].as_str().unwrap(), case.run()) {
            ("VALID", Ok(())) => {}
            ("DENY", Err(d)) => {
                assert_eq!(
                    d.reason().code(),
                    expect["reason"].as_str().unwrap(),
                    "case `{name}`"
                );
                assert_eq!(
                    d.link_index().map(|l| l as u64),
                    expect["link"].as_u64(),
                    "case `{name}`"
                );
            }
            (want, got) => panic!("case `{name}`: expected {want}, got {got:?}"),
        }
    }
}
