//! Several coordinators on one etcd (`mandate serve --advertise`): one leads, the others
//! forward every call to it; losing the leader (SIGKILL, SIGSTOP) loses nothing
//! acknowledged, stops nobody for longer than a lease, and a stopped leader that resumes
//! answers nothing with what it knew.

use std::time::{SystemTime, UNIX_EPOCH};

use mandate_core::{Call, Invocation};

use super::*;

const ADMIN: &str = "spiffe://mandate.local/admin";
const PLANNER: &str = "spiffe://mandate.local/ha/planner";
const WORKER: &str = "spiffe://mandate.local/ha/worker";
const TOOL: &str = "spiffe://mandate.local/ha/tool";

/// Flags for each coordinator: elected through etcd, a 2 s lease.
const HA: [&str; 4] = ["--advertise", "auto", "--leader-lease", "2s"];

/// The admin key a coordinator on `data` writes once it is elected (polled for 10 s;
/// `None`: never elected).
async fn elected_admin_key(data: &Path) -> Option<SigningKey> {
    for _ in 0..1000 {
        if let Ok(k) = keyfile::load_signing_key(&data.join("admin.key")) {
            return Some(k);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// `n` coordinators on `store`, each with its data directory under `dir` and its own
/// coordinator key; the first leads (it is up and answering before the others start) and
/// the others' keys are added through it before they start. Returns the admin's key too.
async fn coordinators(dir: &Path, store: &str, n: usize) -> (Vec<Server>, Vec<String>, SigningKey) {
    let first = dir.join("c0");
    let (server, at) = spawn_with(&first, store, &HA);
    let admin_key = elected_admin_key(&first).await.unwrap();
    let mut leader = client(&at, ADMIN, &admin_key).await.unwrap();
    assert!(answers(&mut leader).await, "the first coordinator leads");
    let (mut servers, mut addresses) = (vec![server], vec![at]);
    for i in 1..n {
        let data = dir.join(format!("c{i}"));
        std::fs::create_dir_all(&data).unwrap();
        let key = SigningKey::generate().unwrap();
        keyfile::save_signing_key(&key, &data.join("coordinator.key")).unwrap();
        leader
            .add_coordinator_key(pb::AddCoordinatorKeyRequest {
                public_key: key.public_key().as_bytes().to_vec(),
                instance: format!("c{i}"),
            })
            .await
            .unwrap();
        let (server, at) = spawn_with(&data, store, &HA);
        servers.push(server);
        addresses.push(at);
    }
    (servers, addresses, admin_key)
}

/// Sends `signal` (`STOP`, `CONT`) to a coordinator's process.
fn signal(server: &Server, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(server.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The tool asks `tool`'s coordinator whether the worker may read `files/report`.
async fn authorize(
    tool: &mut Client,
    chain: &Chain,
    proof: &Invocation,
) -> Result<pb::AuthorizeResponse, mandate_sdk::Error> {
    tool.authorize(pb::AuthorizeRequest {
        chain: chain.encode(),
        invocation: proof.encode(),
        action: "read".into(),
        resource: "files/report".into(),
        ..Default::default()
    })
    .await
}

fn proof(worker: &SigningKey, chain: &Chain) -> Invocation {
    Invocation::sign(
        worker,
        chain,
        TOOL,
        Call::new("read", "files/report"),
        now_ms(),
    )
    .unwrap()
}

/// A task for `files/*` started through `planner`: its root chain.
async fn start(planner: &mut Client) -> Chain {
    let r = planner.start_task(files_task()).await.unwrap();
    Chain::decode(&r.chain, &Limits::default()).unwrap()
}

/// A link to the worker for `files/report`, delegated under `root` through `planner`.
async fn delegate(planner: &mut Client, root: &Chain, worker: &SigningKey) -> Chain {
    let now = root.root().body().not_before_ms;
    let spec = LinkSpec::new(
        worker.public_key(),
        WORKER.parse().unwrap(),
        vec![Capability::new("files/report", ["read"]).unwrap()],
        now,
        now + 5 * 60_000,
    )
    .unwrap()
    .require_seal(true);
    planner.delegate(root, spec).await.unwrap()
}

/// Three coordinators on a 3-member etcd are one service: a grant on A, a delegation on
/// B, an `Authorize` on C; the same proof through A is refused as replayed; a revocation
/// signed once and sent to A, then again to C, is taken once; the feed followed through C
/// carries it; the next `Authorize` on C is denied. Then the leader is stopped (SIGSTOP):
/// another is elected once its lease ends and serves; resumed, the old leader answers
/// nothing (it refuses with `NOT_LEADER` or has exited), not even a check of a link
/// revoked since it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_coordinators_are_one_service_and_a_stopped_leader_answers_nothing() {
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, at, admin_key) =
        coordinators(dir.path(), &cluster.store_url("three"), 3).await;
    let (a, b, c) = (&at[0], &at[1], &at[2]);
    let mut admin_c = client(c, ADMIN, &admin_key).await.unwrap();
    assert!(
        answers(&mut admin_c).await,
        "C never forwarded to the leader"
    );
    let [planner_key, worker_key, tool_key] = [(); 3].map(|()| SigningKey::generate().unwrap());
    register(
        &mut admin_c,
        [
            (PLANNER, &planner_key, "planner"),
            (WORKER, &worker_key, "worker"),
            (TOOL, &tool_key, "tool"),
        ],
    )
    .await;

    // A grant through A, the delegation through B.
    let root = start(&mut client(a, PLANNER, &planner_key).await.unwrap()).await;
    let chain = delegate(
        &mut client(b, PLANNER, &planner_key).await.unwrap(),
        &root,
        &worker_key,
    )
    .await;

    // Authorize through C; the same proof through A is a replay.
    let mut tool_c = client(c, TOOL, &tool_key).await.unwrap();
    let mut tool_a = client(a, TOOL, &tool_key).await.unwrap();
    let first = proof(&worker_key, &chain);
    let allowed = authorize(&mut tool_c, &chain, &first).await.unwrap();
    assert!(allowed.allowed, "{} {}", allowed.reason, allowed.detail);
    let replayed = authorize(&mut tool_a, &chain, &first).await.unwrap();
    assert_eq!(
        (replayed.allowed, replayed.reason.as_str()),
        (false, "REPLAYED")
    );

    // The feed, followed through C.
    let mut feed = admin_c
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    let Some(pb::watch_revocations_response::Event::Snapshot(snapshot)) =
        feed.message().await.unwrap().unwrap().event
    else {
        panic!("the feed did not start with a snapshot");
    };

    // One signed revocation, sent to A and then again to C: taken once.
    let link_id = chain.leaf().id().to_string();
    let revoke = Signer::new(AgentId::new(PLANNER).unwrap(), planner_key.clone())
        .request(
            "/mandate.v1.TaskService/RevokeLink",
            pb::RevokeLinkRequest {
                link_id: link_id.clone(),
                reason: "split flow".into(),
            },
        )
        .unwrap();
    let (metadata, _, message) = revoke.into_parts();
    let again = || {
        tonic::Request::from_parts(
            metadata.clone(),
            tonic::Extensions::default(),
            message.clone(),
        )
    };
    let raw = |to: &str| {
        let to = to.to_owned();
        async move {
            pb::task_service_client::TaskServiceClient::new(
                tonic::transport::Channel::from_shared(to)
                    .unwrap()
                    .connect()
                    .await
                    .unwrap(),
            )
        }
    };
    raw(a).await.revoke_link(again()).await.unwrap();
    let twice = mandate_sdk::Error::from(raw(c).await.revoke_link(again()).await.unwrap_err());
    assert_eq!(twice.reason(), "REQUEST_REPLAYED", "{twice}");
    let batch = loop {
        let m = feed.message().await.unwrap().unwrap();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = m.event {
            break b;
        }
    };
    assert_eq!(batch.links.len(), 1);
    assert_eq!(batch.links[0].link_id, link_id);
    assert!(batch.links[0].epoch > snapshot.epoch);
    let denied = authorize(&mut tool_c, &chain, &proof(&worker_key, &chain))
        .await
        .unwrap();
    assert_eq!((denied.allowed, denied.reason.as_str()), (false, "REVOKED"));

    // The leader stops. B or C is elected once its lease ends; calls forwarded to the
    // stopped leader fail within the forwarder's silence limit and clients move on.
    let mut tool_bc = client(&format!("{b},{c}"), TOOL, &tool_key).await.unwrap();
    let mut planner_bc = client(&format!("{b},{c}"), PLANNER, &planner_key)
        .await
        .unwrap();
    signal(&servers[0], "STOP");
    let mut admin_bc = client(&format!("{b},{c}"), ADMIN, &admin_key)
        .await
        .unwrap();
    assert!(
        answers(&mut admin_bc).await,
        "nobody took over from the stopped leader"
    );
    let second_root = start(&mut planner_bc).await;
    let second = delegate(&mut planner_bc, &second_root, &worker_key).await;
    let allowed = authorize(&mut tool_bc, &second, &proof(&worker_key, &second))
        .await
        .unwrap();
    assert!(allowed.allowed, "{} {}", allowed.reason, allowed.detail);
    planner_bc
        .revoke_link(pb::RevokeLinkRequest {
            link_id: second.leaf().id().to_string(),
            reason: "while the old leader is stopped".into(),
        })
        .await
        .unwrap();

    // Resumed, the old leader answers nothing: not the revoked link, not anything.
    signal(&servers[0], "CONT");
    match authorize(&mut tool_a, &second, &proof(&worker_key, &second)).await {
        Ok(r) => panic!("the deposed leader answered: {r:?}"),
        Err(e) => assert!(
            matches!(e.reason(), "NOT_LEADER" | ""),
            "unexpected refusal: {e}"
        ),
    }
    let mut exited = None;
    for _ in 0..400 {
        exited = servers[0].0.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        exited.is_some_and(|s| !s.success()),
        "the deposed leader did not stop: {exited:?}"
    );
    let denied = authorize(&mut tool_bc, &second, &proof(&worker_key, &second))
        .await
        .unwrap();
    assert_eq!((denied.allowed, denied.reason.as_str()), (false, "REVOKED"));
    let v = admin_bc
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact, "audit chain broken: {}", v.problem);
    drop(servers);
    drop(cluster);
}

/// Two coordinators sharing a 3-member etcd: the second forwards to the first, which
/// leads; the leader is killed with SIGKILL under load; once its lease ends the second
/// is elected and serves; clients given both addresses carry on; everything acknowledged
/// through either is there and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_takes_over_when_the_leader_is_killed() {
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, at, admin_key) = coordinators(dir.path(), &cluster.store_url("ha"), 2).await;
    let both = format!("{},{}", at[0], at[1]);

    // Through the follower: forwarded to the leader (once it knows which one leads).
    let mut through_b = client(&at[1], ADMIN, &admin_key).await.unwrap();
    assert!(
        answers(&mut through_b).await,
        "the second coordinator never forwarded to the leader"
    );
    let planner_key = SigningKey::generate().unwrap();
    let worker_key = SigningKey::generate().unwrap();
    register(
        &mut through_b,
        [
            (PLANNER, &planner_key, "planner"),
            (WORKER, &worker_key, "worker"),
        ],
    )
    .await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let planner = client(&both, PLANNER, &planner_key).await.unwrap();
        workers.spawn(work(
            planner,
            (WORKER.to_owned(), worker_key.clone()),
            Arc::clone(&acked),
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    servers[0].kill().unwrap(); // SIGKILL
    servers[0].wait().unwrap();
    while workers.join_next().await.is_some() {}
    let before = acked.lock().unwrap().clone();
    assert!(
        before.links.values().map(BTreeSet::len).sum::<usize>() > 0,
        "nothing was acknowledged before the kill"
    );

    // The follower is elected once the lease ends, and serves what was acknowledged.
    let mut admin = client(&both, ADMIN, &admin_key).await.unwrap();
    assert!(answers(&mut admin).await, "the follower never took over");
    check(&mut admin, &before).await;
    // And takes new work.
    let planner = client(&both, PLANNER, &planner_key).await.unwrap();
    let more = Arc::new(Mutex::new(before));
    let run = tokio::spawn(work(
        planner,
        (WORKER.to_owned(), worker_key.clone()),
        Arc::clone(&more),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    run.abort();
    let _ = run.await;
    let after = more.lock().unwrap().clone();
    check(&mut admin, &after).await;
    drop(servers);
    drop(cluster);
}

/// Each coordinator signs with its own key, and tools learn the service's keys from the
/// feed: a tool following the feed through C (over plaintext, so it never fetches the
/// bundle again) learns the keys added through A and B; the leader A is killed; its
/// successor seals with its own key, which the tool already trusts (the feed, now from the
/// new leader, goes on too). A's key is then retired at once (it leaked, say) with the
/// command an operator runs: the tool drops it and refuses A's chains, the new ones still
/// verify. The leader's own key cannot be retired, a retired key cannot come back, and the
/// audit log has every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_coordinator_signs_with_its_own_key_and_tools_learn_keys_from_the_feed() {
    use mandate_sdk::{ToolConfig, ToolVerifier};
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let store = cluster.store_url("keys");
    let first = dir.path().join("c0");
    let (a_server, a) = spawn_with(&first, &store, &HA);
    let admin_key = elected_admin_key(&first).await.unwrap();
    let a_key = keyfile::load_signing_key(&first.join("coordinator.key"))
        .unwrap()
        .public_key();
    let mut admin_a = client(&a, ADMIN, &admin_key).await.unwrap();
    assert!(answers(&mut admin_a).await);
    let (planner_key, worker_key, tool_key) = (
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
        SigningKey::generate().unwrap(),
    );
    register(
        &mut admin_a,
        [
            (PLANNER, &planner_key, "planner"),
            (WORKER, &worker_key, "worker"),
            (TOOL, &tool_key, "tool"),
        ],
    )
    .await;
    // B and C, each with a key of its own; C's is added before the tool connects, B's
    // after (through the command line, through B itself: forwarded to A).
    let (b_data, c_data) = (dir.path().join("c1"), dir.path().join("c2"));
    let mut keys = Vec::new();
    for data in [&b_data, &c_data] {
        std::fs::create_dir_all(data).unwrap();
        let key = SigningKey::generate().unwrap();
        keyfile::save_signing_key(&key, &data.join("coordinator.key")).unwrap();
        keys.push(key.public_key());
    }
    let (b_key, c_key) = (keys[0], keys[1]);
    let version = admin_a
        .add_coordinator_key(pb::AddCoordinatorKeyRequest {
            public_key: c_key.as_bytes().to_vec(),
            instance: "c".into(),
        })
        .await
        .unwrap()
        .version;
    let (b_server, b) = spawn_with(&b_data, &store, &HA);
    let (c_server, c) = spawn_with(&c_data, &store, &HA);
    let mut servers = vec![a_server, b_server, c_server];
    let mut tool = client(&c, TOOL, &tool_key).await.unwrap();
    assert!(answers(&mut tool).await, "C never forwarded to the leader");
    let verifier = ToolVerifier::connect(tool, ToolConfig::new(TOOL))
        .await
        .unwrap();
    assert_eq!(verifier.trust_version(), version);
    assert_eq!(verifier.trust_bundle().keys().len(), 2);
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["--server", &b, "--agent", ADMIN, "--key"])
            .arg(first.join("admin.key"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = cli(&[
        "--json",
        "coordinator-keys",
        "add",
        &b_key.to_string(),
        "--instance",
        "b",
    ]);
    assert_eq!(code, Some(0), "{out}");
    // The tool hears of it on the feed.
    let mut learned = false;
    for _ in 0..400 {
        if verifier.trust_version() > version {
            learned = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(learned, "the feed never announced the key added");
    assert_eq!(verifier.trust_bundle().keys().len(), 3);

    // A chain A sealed, verified by the tool offline.
    let call = Call::new("read", "files/report");
    let mut planner = client(&a, PLANNER, &planner_key).await.unwrap();
    let root_a = start(&mut planner).await;
    let chain_a = delegate(&mut planner, &root_a, &worker_key).await;
    let offline = |chain: &Chain| {
        let (chain, proof) = (chain.encode(), proof(&worker_key, chain).encode());
        let (verifier, call) = (verifier.clone(), call.clone());
        async move { verifier.authorize(&chain, &proof, &call).await }
    };
    let d = offline(&chain_a).await;
    assert!(d.allowed && !d.online, "{d:?}");
    // The leader's own key cannot be retired.
    let err = admin_a
        .retire_coordinator_key(pb::RetireCoordinatorKeyRequest {
            public_key: a_key.as_bytes().to_vec(),
            trust_for_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "KEY_IN_USE");

    // A dies; B or C leads, signing with its own key.
    servers[0].kill().unwrap(); // SIGKILL
    servers[0].wait().unwrap();
    let both = format!("{b},{c}");
    let mut admin = client(&both, ADMIN, &admin_key).await.unwrap();
    assert!(answers(&mut admin).await, "nobody took over");
    let mut planner = client(&both, PLANNER, &planner_key).await.unwrap();
    let root_new = start(&mut planner).await;
    let chain_new = delegate(&mut planner, &root_new, &worker_key).await;
    let only_a = mandate_core::Verifier::new(
        mandate_core::TrustBundle::new()
            .with_key(a_key, 0, u64::MAX)
            .unwrap(),
        mandate_core::VerifierConfig::default(),
        Arc::new(mandate_core::SystemClock),
    );
    let not_a = only_a
        .verify_chain(&chain_new, &mandate_core::NoRevocations)
        .unwrap_err();
    assert_eq!(not_a.reason().code(), "UNTRUSTED_ROOT", "sealed by A's key");
    let d = offline(&chain_new).await;
    assert!(
        d.allowed && !d.online,
        "the tool trusts the new leader's key: {d:?}"
    );

    // A's key leaked: retired at once, with the command line.
    let (code, out) = cli(&[
        "--json",
        "coordinator-keys",
        "retire",
        &a_key.to_string(),
        "--trust-for",
        "0s",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let retired: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let retired_version = retired["version"].as_u64().unwrap();
    let mut dropped = false;
    for _ in 0..400 {
        if verifier.trust_version() >= retired_version {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(dropped, "the feed never announced the retirement");
    let d = offline(&chain_a).await;
    assert!(!d.allowed, "a chain sealed by a retired key: {d:?}");
    assert_eq!(d.reason, "UNTRUSTED_ROOT");
    assert!(offline(&chain_new).await.allowed);
    // Listed without it; it never comes back.
    let (code, out) = cli(&["--json", "coordinator-keys", "list"]);
    assert_eq!(code, Some(0), "{out}");
    let listed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let listed: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["public_key"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [c_key.to_string(), b_key.to_string()]);
    let err = admin
        .add_coordinator_key(pb::AddCoordinatorKeyRequest {
            public_key: a_key.as_bytes().to_vec(),
            instance: "a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "KEY_RETIRED");
    let mut changes = Vec::new();
    let page = admin
        .query_audit_log(pb::QueryAuditLogRequest {
            filter: Some(pb::AuditFilter {
                action_prefix: "coordinator_key.".into(),
                ..Default::default()
            }),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap();
    for r in page.records {
        changes.push((r.action, r.detail["public_key"].clone()));
    }
    assert_eq!(
        changes,
        [
            ("coordinator_key.added".to_owned(), a_key.to_string()),
            ("coordinator_key.added".to_owned(), c_key.to_string()),
            ("coordinator_key.added".to_owned(), b_key.to_string()),
            ("coordinator_key.retired".to_owned(), a_key.to_string()),
        ]
    );
    drop(verifier);
    drop(servers);
    drop(cluster);
}

/// A policy set sent through one coordinator is the service's: the drift revocations it
/// causes reach a feed followed through another, and a coordinator elected later serves
/// that set (recorded in the store), not its own directory's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_set_sent_through_one_coordinator_is_the_service_set() {
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let (mut servers, at, admin_key) =
        coordinators(dir.path(), &cluster.store_url("policy"), 2).await;
    let both = format!("{},{}", at[0], at[1]);
    let mut admin_b = client(&at[1], ADMIN, &admin_key).await.unwrap();
    assert!(
        answers(&mut admin_b).await,
        "B never forwarded to the leader"
    );
    let [planner_key, worker_key] = [(); 2].map(|()| SigningKey::generate().unwrap());
    register(
        &mut admin_b,
        [
            (PLANNER, &planner_key, "planner"),
            (WORKER, &worker_key, "worker"),
        ],
    )
    .await;
    let mut planner = client(&both, PLANNER, &planner_key).await.unwrap();
    let root = start(&mut planner).await;
    let link = delegate(&mut planner, &root, &worker_key).await;

    let mut admin_a = client(&at[0], ADMIN, &admin_key).await.unwrap();
    let mut feed = admin_a
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap();
    feed.message().await.unwrap().unwrap();
    let files = std::collections::BTreeMap::from([
        (
            "default.cedar".to_owned(),
            mandate_policy::DEFAULT_POLICIES.to_owned(),
        ),
        (
            "no-worker.cedar".to_owned(),
            format!(
                "@id(\"ha.no-worker\")\nforbid (principal, action == Mandate::Action::\"Delegate\", resource)\nwhen {{ context.holder == Mandate::Agent::\"{WORKER}\" }};\n"
            ),
        ),
    ]);
    let reloaded = admin_b
        .reload_policy(pb::ReloadPolicyRequest { files })
        .await
        .unwrap();
    let link_id = link.leaf().id().to_string();
    assert_eq!(reloaded.revoked_link_ids, std::slice::from_ref(&link_id));
    let hash = reloaded.policy.unwrap().policy_hash;
    let batch = loop {
        let m = feed.message().await.unwrap().unwrap();
        if let Some(pb::watch_revocations_response::Event::Batch(b)) = m.event {
            break b;
        }
    };
    assert_eq!(
        batch.links.iter().map(|l| &l.link_id).collect::<Vec<_>>(),
        [&link_id]
    );

    // A bad file name is refused before anything is decided.
    let refused = admin_b
        .reload_policy(pb::ReloadPolicyRequest {
            files: [("../x.cedar".to_owned(), String::new())].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.reason(), "POLICY_INVALID", "{refused}");

    // The leader dies; B, started without a policy directory, serves the set sent.
    servers[0].kill().unwrap();
    servers[0].wait().unwrap();
    let mut admin = client(&both, ADMIN, &admin_key).await.unwrap();
    assert!(answers(&mut admin).await, "B never took over");
    let policy = admin
        .get_policy(pb::GetPolicyRequest {})
        .await
        .unwrap()
        .policy
        .unwrap();
    assert_eq!(policy.policy_hash, hash);
    assert!(policy.source.contains("store"), "source: {}", policy.source);
    let root = start(&mut planner).await;
    let now = root.root().body().not_before_ms;
    let spec = LinkSpec::new(
        worker_key.public_key(),
        WORKER.parse().unwrap(),
        vec![Capability::new("files/report", ["read"]).unwrap()],
        now,
        now + 60_000,
    )
    .unwrap()
    .require_seal(true);
    let denied = planner.delegate(&root, spec).await.unwrap_err();
    assert_eq!(denied.reason(), "POLICY_DENIED", "{denied}");
    drop(servers);
    drop(cluster);
}

/// A coordinator started while etcd is out of reach keeps listening, campaigns again,
/// and leads once etcd is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_started_without_etcd_leads_once_etcd_is_back() {
    let mut cluster = mandate_etcd::test_cluster::EtcdCluster::start(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = cluster.store_url("late");
    cluster.kill(0);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("c0");
    let (mut server, at) = spawn_with(&data, &store, &HA);
    // Its first campaigns fail at once (nothing listens on etcd's port); it stays up.
    for _ in 0..40 {
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "the coordinator exited while etcd was away"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(!data.join("admin.key").exists(), "it led without etcd");
    cluster.restart(0).await.unwrap();
    let key = elected_admin_key(&data).await.unwrap();
    let mut admin = client(&at, ADMIN, &key).await.unwrap();
    assert!(answers(&mut admin).await, "elected but not serving");
    drop(server);
    drop(cluster);
}

/// Two coordinators over TLS: the follower serves the same certificate and forwards to
/// the leader over TLS, checking the leader's certificate against `--peer-ca`; a client
/// trusting the CA works through either, and through the follower once it has taken over
/// from the killed leader. SIGHUP reloads a follower's certificate and does not end it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_over_tls() {
    use mandate_tls::ClientTls;
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = cluster.store_url("tls");
    let dir = tempfile::tempdir().unwrap();
    let pki = mandate_tls::test_pki::TestPki::new(dir.path(), "ha-ca").unwrap();
    let cert = pki.issue("coordinator", None).unwrap();
    let ca = pki.ca_path();
    let mut args: Vec<&str> = HA.to_vec();
    args.extend([
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
        "--peer-ca",
        ca.to_str().unwrap(),
    ]);
    let (data_a, data_b) = (dir.path().join("a"), dir.path().join("b"));
    let (mut a, at_a) = spawn_with(&data_a, &store, &args);
    let admin_key = elected_admin_key(&data_a).await.unwrap();
    std::fs::create_dir_all(&data_b).unwrap();
    for f in ["coordinator.key", "admin.key"] {
        std::fs::copy(data_a.join(f), data_b.join(f)).unwrap();
    }
    let (mut b, at_b) = spawn_with(&data_b, &store, &args);
    let bare = |at: &str| at.trim_start_matches("http://").to_owned();
    let trusting = ClientTls {
        ca: Some(ca.clone()),
        ..ClientTls::default()
    };
    let signer = || Signer::new(AgentId::new(ADMIN).unwrap(), admin_key.clone());
    let mut through_b = Client::connect_tls(&bare(&at_b), signer(), &trusting)
        .await
        .unwrap();
    assert!(
        answers(&mut through_b).await,
        "the follower never forwarded to the leader over TLS"
    );
    // SIGHUP (a certificate reload on every instance) leaves the follower serving.
    signal(&b, "HUP");
    assert!(answers(&mut through_b).await, "the follower died of SIGHUP");
    assert!(
        b.0.try_wait().unwrap().is_none(),
        "the follower exited on SIGHUP"
    );
    // Plaintext gets nothing from either.
    let mut plain = Client::connect(format!("http://{}", bare(&at_b)), signer())
        .await
        .unwrap();
    assert!(
        plain
            .get_trust_bundle(pb::GetTrustBundleRequest {})
            .await
            .is_err()
    );
    // The leader dies; the follower takes over, over TLS.
    a.kill().unwrap();
    a.wait().unwrap();
    let mut both = Client::connect_tls(
        &format!("{},{}", bare(&at_a), bare(&at_b)),
        signer(),
        &trusting,
    )
    .await
    .unwrap();
    assert!(answers(&mut both).await, "the follower never took over");
    drop(cluster);
}
