//! Audit retention as an operator runs it: `mandate prune-audit` on a stopped
//! coordinator's data directory, and `mandate audit prune` on a running one, on sled and
//! on etcd.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A server process, killed (and waited for) when dropped, also when a test fails.
struct Served(std::process::Child);

impl std::ops::Deref for Served {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `mandate serve` on `data` with small audit segments (and `extra` arguments);
/// returns it, its address and a signed admin client once it answers.
#[expect(clippy::unwrap_used, clippy::panic)]
async fn serve_small_segments(
    data: &std::path::Path,
    extra: &[&str],
) -> (Served, String, mandate_sdk::Client) {
    let child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--audit-segment-records",
            "8",
        ])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Served(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let addr = lines
        .next()
        .unwrap()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned();
    std::thread::spawn(move || for _ in lines {});
    let key = mandate_core::keyfile::load_signing_key(&data.join("admin.key")).unwrap();
    let signer = mandate_sdk::Signer::new(
        mandate_core::AgentId::new("spiffe://mandate.local/admin").unwrap(),
        key,
    );
    for _ in 0..200 {
        if let Ok(c) = mandate_sdk::Client::connect(format!("http://{addr}"), signer.clone()).await
        {
            return (child, addr, c);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the server never answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_audit_archives_removes_and_signs_what_it_removed() {
    use mandate_proto::v1 as pb;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, _, mut admin) = serve_small_segments(&data, &[]).await;
    for i in 0..30 {
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: format!("spiffe://mandate.local/prune/{i}"),
                public_key: mandate_core::SigningKey::generate()
                    .unwrap()
                    .public_key()
                    .as_bytes()
                    .to_vec(),
                role: "worker".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let archive = dir.path().join("archive");
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["--json", "prune-audit", "--before", "20", "--data-dir"])
        .arg(&data)
        .arg("--archive-to")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (r["first_removed"].as_u64(), r["last_removed"].as_u64()),
        (Some(1), Some(16))
    );
    let removed: Vec<std::path::PathBuf> = serde_json::from_value(r["removed"].clone()).unwrap();
    assert_eq!(removed.len(), 2);
    for f in &removed {
        assert!(!f.exists());
        assert!(
            archive.join(f.file_name().unwrap()).exists(),
            "archived first"
        );
    }
    // Served again: the log verifies from record 17 and says, signed, what went.
    let (mut child, _, mut admin) = serve_small_segments(&data, &[]).await;
    let pruned = verified_after_16_and_pruned(&mut admin).await;
    let cp = checkpoint_in(&pruned);
    assert_eq!(cp.seq, 16);
    let coordinator = mandate_core::keyfile::load_signing_key(&data.join("coordinator.key"))
        .unwrap()
        .public_key();
    assert_eq!(
        cp.verify().unwrap(),
        coordinator,
        "signed by the coordinator"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Checks that the log verifies from record 17 (records 1-16 were pruned) and returns
/// the `audit.pruned` record.
#[expect(clippy::unwrap_used)]
async fn verified_after_16_and_pruned(
    admin: &mut mandate_sdk::Client,
) -> mandate_proto::v1::AuditRecord {
    use mandate_proto::v1 as pb;
    let v = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap();
    assert!(v.intact, "{}", v.problem);
    assert_eq!(v.checked, v.head_seq - 16);
    admin
        .query_audit_log(pb::QueryAuditLogRequest {
            filter: Some(pb::AuditFilter {
                action_prefix: "audit.pruned".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .records
        .remove(0)
}

/// The signed checkpoint an `audit.pruned` record holds, of the last record removed.
#[expect(clippy::unwrap_used)]
fn checkpoint_in(pruned: &mandate_proto::v1::AuditRecord) -> mandate_store::AuditCheckpoint {
    let d = &pruned.detail;
    serde_json::from_value(serde_json::json!({
        "format": mandate_store::CHECKPOINT_FORMAT,
        "seq": d["last_removed"].parse::<u64>().unwrap(),
        "hash": d["last_removed_hash"],
        "time_ms": d["time_ms"].parse::<u64>().unwrap(),
        "coordinator_key": d["coordinator_key"],
        "signature": d["signature"],
    }))
    .unwrap()
}

/// `mandate audit prune` on a running coordinator, on sled and on etcd: a dry run changes
/// nothing; the records that go are archived first, and the archive verifies against the
/// checkpoint the signed `audit.pruned` record holds; the live log verifies from where it
/// now begins; an auditor may not prune.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_prune_on_a_running_coordinator_archives_and_signs_what_goes() {
    audit_prune_online(&[]).await;
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let store = cluster.store_url("");
    audit_prune_online(&["--store", &store]).await;
    drop(cluster);
}

#[expect(clippy::unwrap_used)]
async fn audit_prune_online(store: &[&str]) {
    use mandate_proto::v1 as pb;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, addr, mut admin) = serve_small_segments(&data, store).await;
    let auditor_key = mandate_core::SigningKey::generate().unwrap();
    for i in 0..40 {
        let key = match i {
            0 => auditor_key.clone(),
            _ => mandate_core::SigningKey::generate().unwrap(),
        };
        admin
            .register_agent(pb::RegisterAgentRequest {
                agent_id: format!("spiffe://mandate.local/prune/{i}"),
                public_key: key.public_key().as_bytes().to_vec(),
                role: if i == 0 { "auditor" } else { "worker" }.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let key = data.join("admin.key");
    let mandate = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["--json", "--server", &addr, "--key"])
            .arg(&key)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_slice::<serde_json::Value>(&out.stdout).ok();
        (out.status.success(), json, err)
    };
    // On etcd the tail is sealed by a background pass: wait for two segments to go.
    let mut plan = serde_json::Value::Null;
    for _ in 0..400 {
        let (ok, json, err) = mandate(&["audit", "prune", "--before", "20", "--dry-run"]);
        assert!(ok, "{err}");
        plan = json.unwrap();
        if plan["last_removed"] == 16 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        (
            &plan["prunable"],
            &plan["first_removed"],
            &plan["last_removed"],
            &plan["segments"]
        ),
        (&true.into(), &1.into(), &16.into(), &2.into()),
        "{plan}"
    );
    let head = admin
        .verify_audit_log(pb::VerifyAuditLogRequest::default())
        .await
        .unwrap()
        .head_seq;
    // An auditor reads the log but may not prune it.
    let mut auditor = mandate_sdk::Client::connect(
        format!("http://{addr}"),
        mandate_sdk::Signer::new(
            mandate_core::AgentId::new("spiffe://mandate.local/prune/0").unwrap(),
            auditor_key,
        ),
    )
    .await
    .unwrap();
    let refused = auditor
        .prune_audit_log(pb::PruneAuditLogRequest {
            before: 20,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.reason(), "NOT_AUTHORIZED", "{refused}");
    // Pruning exactly through a record that does not end the segments that would go:
    // refused, with its reason.
    let moved = admin
        .prune_audit_log(pb::PruneAuditLogRequest {
            before: 20,
            through: 12,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(moved.reason(), "PRUNE_RANGE_CHANGED", "{moved}");
    let archive = dir.path().join("archive.jsonl");
    let (ok, json, err) = mandate(&[
        "audit",
        "prune",
        "--before",
        "20",
        "--archive-to",
        archive.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let done = json.unwrap();
    assert_eq!(done["last_removed"], 16, "{done}");
    assert_eq!(done["record"], head + 1, "{done}");
    let archived = std::fs::read_to_string(&archive).unwrap();
    assert_eq!(archived.lines().count(), 16);
    // The live log begins at 17 and verifies from there; the record says what went,
    // signed: the archive verifies against its checkpoint.
    let pruned = verified_after_16_and_pruned(&mut admin).await;
    assert_eq!(pruned.actor, "spiffe://mandate.local/admin");
    assert_eq!(
        pruned.detail["archived_to"],
        std::path::absolute(&archive).unwrap().display().to_string()
    );
    let cp = checkpoint_in(&pruned);
    let cp_file = dir.path().join("pruned.checkpoint");
    std::fs::write(&cp_file, serde_json::to_string(&cp).unwrap()).unwrap();
    let (ok, json, err) = mandate(&[
        "audit",
        "verify",
        "--checkpoint",
        cp_file.to_str().unwrap(),
        "--export",
        archive.to_str().unwrap(),
        "--trust-key",
        &cp.coordinator_key,
    ]);
    assert!(ok, "{err} {json:?}");
    assert_eq!(json.unwrap()["intact"], true);
    // Nothing more ends before 20; an archive file is never overwritten.
    let (ok, json, _) = mandate(&["audit", "prune", "--before", "20"]);
    assert!(ok);
    assert_eq!(json.unwrap()["prunable"], false);
    child.kill().unwrap();
    child.wait().unwrap();
}
