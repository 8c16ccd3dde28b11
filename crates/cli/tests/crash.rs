//! Crash consistency: the real `mandate serve`, driven by several clients (tasks,
//! delegations, revocations), killed with SIGKILL at a random moment, restarted on the same
//! data directory; everything acknowledged must be there, nothing half-written may show
//! (a link without its audit record or the reverse), the audit chain must verify (across
//! sealed segments: the server seals every 16 records here, so kills land during sealing;
//! on sled, its files are rewritten whenever they double, so kills land during rewrites
//! too) and revoked links must stay revoked.
//!
//! It runs on sled and again on a 3-member etcd cluster.
//!
//! `MANDATE_CRASH_CYCLES` sets the number of kill cycles (CI runs a few; use hundreds for
//! a long run).

#![expect(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mandate_core::{AgentId, Capability, Chain, Limits, LinkSpec, SigningKey, keyfile};
use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use mandate_sdk::{Client, Signer};

#[path = "crash/several.rs"]
mod several;

/// The server process, killed when dropped (a failing assertion must not leave it running).
struct Server(Child);

impl Server {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(data: &Path, store: &str) -> (Server, String) {
    spawn_with(data, store, &[])
}

fn spawn_with(data: &Path, store: &str, extra: &[&str]) -> (Server, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--store", store])
        .args(extra)
        .env("RUST_LOG", "error")
        // Small segments, so that kills land during sealing too.
        .env("MANDATE_AUDIT_SEGMENT_RECORDS", "16")
        // sled rewritten whenever its files double, so that kills land during rewrites.
        .env("MANDATE_STORE_REWRITE_MIB", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // "mandate coordinator listening on ADDR[ (...)]"
    let first = lines.next().unwrap().unwrap();
    let addr = first.split_whitespace().nth(4).unwrap().to_owned();
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Server(child), format!("http://{addr}"))
}

/// What the clients were told succeeded.
#[derive(Clone, Default)]
struct Acked {
    /// task id → link ids acknowledged in it.
    links: HashMap<String, BTreeSet<String>>,
    revoked: BTreeSet<String>,
}

async fn client(endpoint: &str, id: &str, key: &SigningKey) -> Option<Client> {
    for _ in 0..200 {
        if let Ok(c) = Client::connect(
            endpoint.to_owned(),
            Signer::new(AgentId::new(id).unwrap(), key.clone()),
        )
        .await
        {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Registers `agents` (id, key, role) through `admin`.
async fn register<const N: usize>(admin: &mut Client, agents: [(&str, &SigningKey, &str); N]) {
    for (id, key, role) in agents {
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: id.into(),
                public_key: key.public_key().as_bytes().to_vec(),
                role: role.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

/// Whether a coordinator answers through `client` within 15 s (polled).
async fn answers(client: &mut Client) -> bool {
    for _ in 0..600 {
        if client
            .get_trust_bundle(pb::GetTrustBundleRequest {})
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A task for reading `files/*` for ten minutes, delegating one level down.
fn files_task() -> pb::StartTaskRequest {
    pb::StartTaskRequest {
        capabilities: vec![tpb::Capability {
            resource: "files/*".into(),
            actions: vec!["read".into()],
            constraints: vec![],
        }],
        ttl_ms: 10 * 60_000,
        max_depth: 1,
        ..Default::default()
    }
}

/// One client: start a task, delegate and revoke until the server dies.
async fn work(mut planner: Client, worker: (String, SigningKey), acked: Arc<Mutex<Acked>>) {
    let Ok(r) = planner.start_task(files_task()).await else {
        return;
    };
    let task = r.task.unwrap().task_id;
    let root = Chain::decode(&r.chain, &Limits::default()).unwrap();
    acked
        .lock()
        .unwrap()
        .links
        .entry(task.clone())
        .or_default()
        .insert(root.root().id().to_string());
    let now = root.root().body().not_before_ms;
    for i in 0.. {
        let spec = LinkSpec::new(
            worker.1.public_key(),
            worker.0.parse().unwrap(),
            vec![Capability::new(&format!("files/{i}"), ["read"]).unwrap()],
            now,
            now + 5 * 60_000,
        )
        .unwrap()
        .require_seal(true);
        let Ok(chain) = planner.delegate(&root, spec).await else {
            return;
        };
        let id = chain.leaf().id().to_string();
        acked
            .lock()
            .unwrap()
            .links
            .entry(task.clone())
            .or_default()
            .insert(id.clone());
        if i % 3 == 0 {
            let Ok(_) = planner
                .revoke_link(pb::RevokeLinkRequest {
                    link_id: id.clone(),
                    reason: "crash test".into(),
                })
                .await
            else {
                return;
            };
            acked.lock().unwrap().revoked.insert(id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_dash_nine() {
    kill_cycles("sled").await;
}

/// The same on a 3-member etcd cluster on loopback: a commit acknowledged is in etcd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_dash_nine_on_etcd() {
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    kill_cycles(&cluster.store_url("crash")).await;
    // The kills landed while audit records were being sealed into segments, too.
    let mut kv =
        mandate_etcd::etcdserverpb::kv_client::KvClient::connect(cluster.endpoints()[0].clone())
            .await
            .unwrap();
    let sealed = kv
        .range(mandate_etcd::etcdserverpb::RangeRequest {
            key: b"crash/Q".to_vec(),
            range_end: b"crash/R".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .count;
    assert!(sealed > 0, "no audit segment was sealed during the run");
    drop(cluster);
}

async fn kill_cycles(store: &str) {
    let cycles: u32 = std::env::var("MANDATE_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let planner_key = SigningKey::generate().unwrap();
    let worker_key = SigningKey::generate().unwrap();
    let planner_id = "spiffe://mandate.local/crash/planner";
    let worker_id = "spiffe://mandate.local/crash/worker";
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for cycle in 0..cycles {
        let (mut child, endpoint) = spawn(&data, store);
        let admin_key = keyfile::load_signing_key(&data.join("admin.key")).unwrap();
        let mut admin = client(&endpoint, "spiffe://mandate.local/admin", &admin_key)
            .await
            .unwrap();
        let snapshot = acked.lock().unwrap().clone();
        check(&mut admin, &snapshot).await;
        if cycle == 0 {
            register(
                &mut admin,
                [
                    (planner_id, &planner_key, "planner"),
                    (worker_id, &worker_key, "worker"),
                ],
            )
            .await;
        }
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let planner = client(&endpoint, planner_id, &planner_key).await.unwrap();
            workers.spawn(work(
                planner,
                (worker_id.to_owned(), worker_key.clone()),
                Arc::clone(&acked),
            ));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Past the store's first background round (every 500 ms) at times, where a
        // rewrite of sled's files may be under way.
        tokio::time::sleep(Duration::from_millis(100 + seed % 1400)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        while workers.join_next().await.is_some() {}
    }
    // A last start to check the final state.
    let (mut child, endpoint) = spawn(&data, store);
    let admin_key = keyfile::load_signing_key(&data.join("admin.key")).unwrap();
    let mut admin = client(&endpoint, "spiffe://mandate.local/admin", &admin_key)
        .await
        .unwrap();
    let acked = acked.lock().unwrap().clone();
    let total: usize = acked.links.values().map(BTreeSet::len).sum();
    assert!(
        total > 0,
        "nothing was acknowledged: the test did not exercise anything"
    );
    check(&mut admin, &acked).await;
    if store == "sled" {
        // The kills landed while audit records were being sealed into segments, too.
        let segments = std::fs::read_dir(data.join("store/audit-segments"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(segments > 0, "no audit segment was sealed during the run");
        // ... and while sled's files were being rewritten into new generations.
        let current = std::fs::read_to_string(data.join("store/state.current")).unwrap();
        assert!(
            !current.starts_with("state-1 "),
            "sled was never rewritten: {current}"
        );
    }
    eprintln!(
        "{cycles} kill cycles survived; {total} acknowledged links and {} revocations checked",
        acked.revoked.len()
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Everything acknowledged is there; links and their audit records match one to one;
/// revoked links are revoked; the audit chain verifies.
async fn check(admin: &mut Client, acked: &Acked) {
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(
        v.intact,
        "audit chain broken at #{}: {}",
        v.first_broken_seq, v.problem
    );
    let mut audited: BTreeSet<String> = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = admin
            .query_audit_log(pb::QueryAuditLogRequest {
                filter: Some(pb::AuditFilter::default()),
                page_size: 1000,
                page_token: token,
            })
            .await
            .unwrap();
        for r in &page.records {
            if r.action == "grant.issued" || r.action == "delegation.sealed" {
                audited.insert(r.link_ids[0].clone());
            }
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut in_trees: BTreeSet<String> = BTreeSet::new();
    let tasks = admin
        .list_tasks(pb::ListTasksRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    for t in &tasks.tasks {
        let tree = admin
            .get_delegation_tree(pb::GetDelegationTreeRequest {
                task_id: t.task_id.clone(),
            })
            .await
            .unwrap();
        for l in &tree.links {
            in_trees.insert(l.link_id.clone());
            if acked.revoked.contains(&l.link_id) {
                assert_eq!(
                    l.state,
                    pb::LinkState::Revoked as i32,
                    "revocation of {} lost",
                    l.link_id
                );
            }
        }
    }
    for (task, links) in &acked.links {
        for l in links {
            assert!(
                in_trees.contains(l),
                "acknowledged link {l} of task {task} lost"
            );
        }
    }
    assert_eq!(
        in_trees, audited,
        "links and their audit records differ (half-written state)"
    );
}
