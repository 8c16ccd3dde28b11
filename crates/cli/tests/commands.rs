//! Every client command of the `mandate` binary against a real coordinator, with `--json`
//! output parsed.

#![expect(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use std::process::{Command, Stdio};

use mandate_core::{AgentId, Chain, Limits, LinkSpec, SigningKey, keyfile};
use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use mandate_sdk::{Client, Signer};
use serde_json::Value;

struct World {
    _dir: tempfile::TempDir,
    server: mandate_server::Server,
    task: String,
    revoked: String,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let config = mandate_server::Config::new(([127, 0, 0, 1], 0).into(), dir.path().join("data"));
    let server = mandate_server::start(config).await.unwrap();
    let admin_key = keyfile::load_signing_key(&server.admin_key_path).unwrap();
    let endpoint = format!("http://{}", server.local_addr);
    let mut admin = Client::connect(
        endpoint.clone(),
        Signer::new(AgentId::new(server.admin_id.clone()).unwrap(), admin_key),
    )
    .await
    .unwrap();
    let planner_key = SigningKey::generate().unwrap();
    let worker_key = SigningKey::generate().unwrap();
    for (id, key) in [
        ("spiffe://mandate.local/planner", &planner_key),
        ("spiffe://mandate.local/worker", &worker_key),
    ] {
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: id.into(),
                public_key: key.public_key().as_bytes().to_vec(),
                role: "planner".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let mut planner = Client::connect(
        endpoint,
        Signer::new(
            "spiffe://mandate.local/planner".parse().unwrap(),
            planner_key,
        ),
    )
    .await
    .unwrap();
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            intent: Some(pb::Intent {
                text: "cli test".into(),
                ..Default::default()
            }),
            capabilities: vec![tpb::Capability {
                resource: "files/*".into(),
                actions: vec!["read".into()],
                constraints: vec![],
            }],
            ttl_ms: 600_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = Chain::decode(&started.chain, &Limits::default()).unwrap();
    let now = root.root().body().not_before_ms;
    let mut revoked = String::new();
    for f in ["a", "b"] {
        let spec = LinkSpec::new(
            worker_key.public_key(),
            "spiffe://mandate.local/worker".parse().unwrap(),
            vec![mandate_core::Capability::new(&format!("files/{f}"), ["read"]).unwrap()],
            now,
            now + 60_000,
        )
        .unwrap()
        .require_seal(true);
        let chain = planner.delegate(&root, spec).await.unwrap();
        revoked = chain.leaf().id().to_string();
    }
    planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: revoked.clone(),
            reason: "cli test".into(),
        })
        .await
        .unwrap();
    World {
        task: started.task.unwrap().task_id,
        revoked,
        _dir: dir,
        server,
    }
}

fn mandate(w: &World, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["--server", &w.server.local_addr.to_string()])
        .arg("--key")
        .arg(&w.server.admin_key_path)
        .args(["--agent", &w.server.admin_id])
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_tree_commands() {
    let w = world().await;
    let blocking = |args: Vec<String>| {
        let w = &w;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mandate(w, &args)
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();

    let (code, out) = tokio::task::block_in_place(|| blocking(s(&["--json", "audit", "query"])));
    assert_eq!(code, 0);
    let records = json_lines(&out);
    assert!(records.len() >= 7, "{out}");
    // Several coordinators in MANDATE_SERVER: the one that cannot be reached is passed by.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = tokio::task::block_in_place(|| {
        Command::new(env!("CARGO_BIN_EXE_mandate"))
            .env("MANDATE_SERVER", format!("{dead},{}", w.server.local_addr))
            .arg("--key")
            .arg(&w.server.admin_key_path)
            .args(["--agent", &w.server.admin_id, "--json", "audit", "query"])
            .output()
            .unwrap()
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&String::from_utf8(out.stdout).unwrap()), records);
    assert_eq!(records[0]["seq"], 1);
    let (_, out) = tokio::task::block_in_place(|| {
        blocking(s(&["--json", "audit", "query", "--link", &w.revoked]))
    });
    let by_link = json_lines(&out);
    assert_eq!(by_link.len(), 2, "sealed, then revoked: {out}");
    assert_eq!(by_link[1]["action"], "link.revoked");
    let (_, out) = tokio::task::block_in_place(|| {
        blocking(s(&[
            "--json",
            "audit",
            "query",
            "--task",
            &w.task,
            "--action",
            "delegation.",
        ]))
    });
    assert_eq!(json_lines(&out).len(), 2);
    let (_, text) =
        tokio::task::block_in_place(|| blocking(s(&["audit", "query", "--severity", "high"])));
    assert!(text.contains("agent.registered"), "{text}");

    let (code, out) =
        tokio::task::block_in_place(|| blocking(s(&["--json", "audit", "tail", "-n", "2"])));
    assert_eq!(code, 0);
    let tail = json_lines(&out);
    assert_eq!(tail.len(), 2);
    assert_eq!(
        tail[1]["seq"].as_u64(),
        records.last().unwrap()["seq"].as_u64()
    );

    let (code, out) = tokio::task::block_in_place(|| blocking(s(&["--json", "audit", "verify"])));
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["intact"], true);
    assert_eq!(
        v["checked"].as_u64(),
        records.last().unwrap()["seq"].as_u64()
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (code, out) = tokio::task::block_in_place(|| {
        blocking(s(&[
            "--json",
            "audit",
            "export",
            "--out",
            path.to_str().unwrap(),
        ]))
    });
    assert_eq!(code, 0);
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    let exported = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        summary["records"].as_u64(),
        Some(exported.lines().count() as u64)
    );
    assert_eq!(exported.lines().count(), records.len());
    // Refuses to overwrite.
    let (code, _) = tokio::task::block_in_place(|| {
        blocking(s(&["audit", "export", "--out", path.to_str().unwrap()]))
    });
    assert_eq!(code, 3);

    let (code, out) = tokio::task::block_in_place(|| blocking(s(&["--json", "tree", &w.task])));
    assert_eq!(code, 0);
    let tree: Value = serde_json::from_str(out.trim()).unwrap();
    let links = tree["links"].as_array().unwrap();
    assert_eq!(links.len(), 3);
    assert!(
        links
            .iter()
            .any(|l| l["link_id"] == w.revoked.as_str() && l["state"] == "revoked")
    );
    let (_, text) = tokio::task::block_in_place(|| blocking(s(&["tree", &w.task])));
    assert!(
        text.contains("└─") && text.contains("revoked (cli test)"),
        "{text}"
    );
    let (_, dot) =
        tokio::task::block_in_place(|| blocking(s(&["tree", &w.task, "--format", "dot"])));
    assert!(dot.starts_with("digraph") && dot.contains("->"), "{dot}");

    // Errors: an unknown task is a refusal (3), bad usage is 2.
    let (code, _) =
        tokio::task::block_in_place(|| blocking(s(&["tree", "00000000000000000000000000000000"])));
    assert_eq!(code, 3);
    let (code, _) = tokio::task::block_in_place(|| blocking(s(&["audit", "bogus"])));
    assert_eq!(code, 2);
    w.server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_tail_follows_new_records() {
    let w = world().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["--server", &w.server.local_addr.to_string()])
        .arg("--key")
        .arg(&w.server.admin_key_path)
        .args([
            "--agent",
            &w.server.admin_id,
            "--json",
            "audit",
            "tail",
            "-n",
            "0",
            "--follow",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead as _;
        std::io::BufReader::new(stdout)
            .lines()
            .next()
            .unwrap()
            .unwrap()
    });
    // A new record: register another agent.
    let admin_key = keyfile::load_signing_key(&w.server.admin_key_path).unwrap();
    let mut admin = Client::connect(
        format!("http://{}", w.server.local_addr),
        Signer::new(AgentId::new(w.server.admin_id.clone()).unwrap(), admin_key),
    )
    .await
    .unwrap();
    // The follower may not be connected yet; keep writing until it prints.
    let mut n = 0;
    while !reader.is_finished() && n < 100 {
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: format!("spiffe://mandate.local/late-{n}"),
                public_key: SigningKey::generate()
                    .unwrap()
                    .public_key()
                    .as_bytes()
                    .to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
        n += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = reader.await.unwrap();
    let rec: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(rec["action"], "agent.registered");
    child.kill().unwrap();
    let _ = child.wait();
    w.server.shutdown().await.unwrap();
}

/// Runs `mandate` as `agent` with the key in `key`, against `server`.
fn mandate_as(
    server: &mandate_server::Server,
    agent: &str,
    key: &std::path::Path,
    args: &[&str],
) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["--server", &server.local_addr.to_string()])
        .arg("--key")
        .arg(key)
        .args(["--agent", agent])
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_approval_and_break_glass_commands() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        mandate_server::Config::new(([127, 0, 0, 1], 0).into(), dir.path().join("data"));
    config.policy_dir = Some(examples.join("team"));
    let server = mandate_server::start(config).await.unwrap();
    let admin_key = keyfile::load_signing_key(&server.admin_key_path).unwrap();
    let mut admin = Client::connect(
        format!("http://{}", server.local_addr),
        Signer::new(AgentId::new(server.admin_id.clone()).unwrap(), admin_key),
    )
    .await
    .unwrap();
    let planner = "spiffe://mandate.local/planner";
    let human = "spiffe://mandate.local/human/alice";
    let mut keys = Vec::new();
    for (id, role) in [(planner, "planner"), (human, "human")] {
        let key = SigningKey::generate().unwrap();
        let path = dir.path().join(format!("{role}.key"));
        keyfile::save_signing_key(&key, &path).unwrap();
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: id.into(),
                public_key: key.public_key().as_bytes().to_vec(),
                role: role.into(),
                ..Default::default()
            })
            .await
            .unwrap();
        keys.push(path);
    }
    let (planner_key, human_key) = (&keys[0], &keys[1]);
    let admin_id = server.admin_id.clone();
    let admin_key = server.admin_key_path.clone();

    // Offline validation, the schema and the default set.
    let team = examples.join("team");
    let (code, out) = mandate_as(
        &server,
        planner,
        planner_key,
        &["--json", "policy", "validate", team.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json_lines(&out)[0]["valid"], true);
    let invalid = examples.join("invalid");
    let (code, out) = mandate_as(
        &server,
        planner,
        planner_key,
        &["--json", "policy", "validate", invalid.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("typo.cedar:8:"), "{out}");
    let (code, out) = mandate_as(&server, planner, planner_key, &["policy", "schema"]);
    assert_eq!(code, 0);
    assert!(out.contains("namespace Mandate"));
    let (code, out) = mandate_as(
        &server,
        &admin_id,
        &admin_key,
        &["--json", "policy", "show"],
    );
    assert_eq!(code, 0, "{out}");
    let shown = &json_lines(&out)[0];
    assert!(
        shown["policy_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let (code, out) = mandate_as(
        &server,
        &admin_id,
        &admin_key,
        &["--json", "policy", "reload"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        json_lines(&out)[0]["previous_policy_hash"],
        shown["policy_hash"]
    );
    // A set sent from a directory on this machine, then the server's own again.
    let sent = tempfile::tempdir().unwrap();
    std::fs::write(
        sent.path().join("default.cedar"),
        mandate_policy::DEFAULT_POLICIES,
    )
    .unwrap();
    let (code, out) = mandate_as(
        &server,
        &admin_id,
        &admin_key,
        &[
            "--json",
            "policy",
            "reload",
            "--dir",
            sent.path().to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}");
    let installed = &json_lines(&out)[0];
    assert_eq!(
        installed["policy_hash"].as_str(),
        Some(mandate_policy::PolicySet::default_set().unwrap().hash())
    );
    assert!(
        installed["source"]
            .as_str()
            .unwrap()
            .contains("files sent by"),
        "{out}"
    );
    let (code, out) = mandate_as(
        &server,
        &admin_id,
        &admin_key,
        &["--json", "policy", "reload"],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json_lines(&out)[0]["policy_hash"], shown["policy_hash"]);

    // A production grant waits for a person.
    let (code, out) = mandate_as(
        &server,
        planner,
        planner_key,
        &[
            "--json",
            "task",
            "start",
            "--cap",
            "prod/db:read",
            "--ttl",
            "10m",
            "--intent",
            "fix the index",
            "--field",
            "ticket=CHG-7",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let pending = &json_lines(&out)[0];
    assert_eq!(pending["state"], "pending_approval");
    let task = pending["task_id"].as_str().unwrap().to_owned();
    let hash = pending["approval_request_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, out) = mandate_as(&server, human, human_key, &["--json", "approvals", "list"]);
    assert_eq!(code, 0, "{out}");
    let listed = json_lines(&out);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["request_hash"], hash.as_str());
    // The requester cannot approve its own request.
    let (code, _) = mandate_as(
        &server,
        planner,
        planner_key,
        &["approve", &task, "--hash", &hash],
    );
    assert_eq!(code, 3);
    let (code, out) = mandate_as(
        &server,
        human,
        human_key,
        &[
            "--json",
            "approve",
            &task,
            "--hash",
            &hash,
            "--comment",
            "ok",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json_lines(&out)[0]["state"], "approved");
    let (code, out) = mandate_as(
        &server,
        planner,
        planner_key,
        &["--json", "approvals", "wait", &task],
    );
    assert_eq!(code, 0, "{out}");
    let chain = json_lines(&out)[0]["chain"].as_str().unwrap().to_owned();
    assert!(Chain::from_text(&chain, &Limits::default()).is_ok());

    // Break-glass for the person, refused to the planner.
    let (code, out) = mandate_as(
        &server,
        human,
        human_key,
        &[
            "--json",
            "break-glass",
            "--cap",
            "secrets/db:read",
            "--reason",
            "db down",
            "--ticket",
            "INC-9",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let bg = Chain::from_text(
        json_lines(&out)[0]["chain"].as_str().unwrap(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(bg.root().body().kind, mandate_core::LinkKind::BreakGlass);
    let (code, _) = mandate_as(
        &server,
        planner,
        planner_key,
        &[
            "break-glass",
            "--cap",
            "secrets/db:read",
            "--reason",
            "x",
            "--ticket",
            "INC-9",
        ],
    );
    assert_eq!(code, 3);
    server.shutdown().await.unwrap();
}

/// `mandate audit checkpoint` and `audit verify --checkpoint`, against the live log and
/// against exports: intact, tampered (rewritten consistently) and truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_checkpoints_catch_rewritten_and_truncated_exports() {
    let w = world().await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (code, out) = mandate(&w, &["audit", "checkpoint", "--out", &path("cp.json")]);
    assert_eq!(code, 0, "{out}");
    let cp: Value =
        serde_json::from_str(&std::fs::read_to_string(path("cp.json")).unwrap()).unwrap();
    assert_eq!(cp["format"], "mandate-audit-checkpoint/v1");
    let seq = cp["seq"].as_u64().unwrap();
    assert!(seq >= 3);
    // Never overwrites.
    let (code, _) = mandate(&w, &["audit", "checkpoint", "--out", &path("cp.json")]);
    assert_eq!(code, 3);

    let (code, out) = mandate(&w, &["audit", "verify", "--checkpoint", &path("cp.json")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("checkpoint #{seq} matches")), "{out}");

    let (code, out) = mandate(&w, &["audit", "export", "--out", &path("all.jsonl")]);
    assert_eq!(code, 0, "{out}");
    let key = w.server.coordinator_key.to_string();
    let hex_key = cp["coordinator_key"].as_str().unwrap().to_owned();
    let verify_export = |file: &str, trust: &str| {
        mandate(
            &w,
            &[
                "--json",
                "audit",
                "verify",
                "--checkpoint",
                &path("cp.json"),
                "--export",
                &path(file),
                "--trust-key",
                trust,
            ],
        )
    };
    let (code, out) = verify_export("all.jsonl", &hex_key);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json_lines(&out)[0]["intact"], true);
    // Another trusted key: refused whatever the content.
    let (code, out) = verify_export("all.jsonl", &"00".repeat(32));
    assert_eq!(code, 1, "{out} {key}");

    // Rewrite record 2 and every hash after it: the chain is consistent, the checkpoint
    // is not.
    let text = std::fs::read_to_string(path("all.jsonl")).unwrap();
    let mut records: Vec<mandate_store::AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    records[1].event.reason = "nothing to see here".into();
    for i in 1..records.len() {
        records[i].prev_hash = records[i - 1].hash.clone();
        records[i].hash =
            mandate_store::audit_hash(records[i].seq, &records[i].event, &records[i].prev_hash);
    }
    let rewritten: String = records
        .iter()
        .map(|r| mandate_store::json_line(r).unwrap() + "\n")
        .collect();
    std::fs::write(path("rewritten.jsonl"), rewritten).unwrap();
    let (code, out) = verify_export("rewritten.jsonl", &hex_key);
    assert_eq!(code, 1, "{out}");
    assert!(
        json_lines(&out)[0]["problem"]
            .as_str()
            .unwrap()
            .contains("rewritten")
    );

    // Cut after record seq - 1: truncated.
    let truncated: String = text
        .lines()
        .take(usize::try_from(seq - 1).unwrap())
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path("truncated.jsonl"), truncated).unwrap();
    let (code, out) = verify_export("truncated.jsonl", &hex_key);
    assert_eq!(code, 1, "{out}");
    assert!(
        json_lines(&out)[0]["problem"]
            .as_str()
            .unwrap()
            .contains("truncated")
    );

    // An edited record without rewriting the rest: the chain check names it.
    std::fs::write(
        path("edited.jsonl"),
        text.replacen("\"reason\":\"", "\"reason\":\"x", 1),
    )
    .unwrap();
    let (code, out) = verify_export("edited.jsonl", &hex_key);
    assert_eq!(code, 1, "{out}");

    // A forged checkpoint (its hash changed): refused before any comparison.
    let mut forged = cp.clone();
    forged["hash"] = "00".repeat(32).into();
    std::fs::write(path("forged.json"), forged.to_string()).unwrap();
    let (code, _) = mandate(
        &w,
        &["audit", "verify", "--checkpoint", &path("forged.json")],
    );
    assert_eq!(code, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_review_commands() {
    let w = world().await;
    let run = |args: &[&str]| tokio::task::block_in_place(|| mandate(&w, args));
    let json = |out: &str| -> Value {
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    };
    // files/a: the planner's root and the worker's link; files/b was revoked.
    let (code, out) = run(&["--json", "access", "who-can", "read", "files/a"]);
    assert_eq!(code, 0, "{out}");
    let mut holders: Vec<(String, usize)> = json(&out)["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["holder_agent_id"].as_str().unwrap().to_owned(),
                l["path"].as_array().unwrap().len(),
            )
        })
        .collect();
    holders.sort();
    assert_eq!(
        holders,
        [
            ("spiffe://mandate.local/planner".to_owned(), 1),
            ("spiffe://mandate.local/worker".to_owned(), 2)
        ]
    );
    let (code, out) = run(&["--json", "access", "who-can", "read", "files/b"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(json(&out)["links"].as_array().unwrap().len(), 1);
    let (code, text) = run(&["access", "who-can", "write", "files/a"]);
    assert_eq!(code, 0);
    assert!(text.contains("nobody"), "{text}");
    let (_, text) = run(&["access", "who-can", "read", "files/a"]);
    assert!(
        text.contains("spiffe://mandate.local/worker  delegation"),
        "{text}"
    );
    let (_, out) = run(&[
        "--json",
        "access",
        "live",
        "--holder",
        "spiffe://mandate.local/worker",
    ]);
    let live = json(&out);
    assert_eq!(live["links"].as_array().unwrap().len(), 1);
    assert_eq!(live["links"][0]["intent"], "cli test");

    let (code, out) = run(&["--json", "access", "report", "--window", "1h"]);
    assert_eq!(code, 0, "{out}");
    let report = json(&out);
    let worker = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["agent_id"] == "spiffe://mandate.local/worker")
        .unwrap();
    assert_eq!(worker["grants"], 2);
    let (_, csv) = run(&["access", "report", "--format", "csv"]);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("kind,name,privilege_ms,grants")
    );
    assert!(
        csv.contains("agent,\"spiffe://mandate.local/worker\",")
            && csv.contains("resource,\"files/*\","),
        "{csv}"
    );
    let (_, table) = run(&["access", "report"]);
    assert!(
        table.contains("privilege") && table.contains("files/a"),
        "{table}"
    );
    let (code, _) = run(&["access", "report", "--format", "xml"]);
    assert_ne!(code, 0);
    // The console acts with the operator's key over plain HTTP: loopback only.
    let (code, _) = run(&["console", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 2);
    w.server.shutdown().await.unwrap();
}
