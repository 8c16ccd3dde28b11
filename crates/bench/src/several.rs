//! `mandate-bench several`: one service of three coordinators on etcd (`mandate serve
//! --advertise`), driven with `Authorize` twice in one run: every call to the leader
//! ("1 instance"), then calls spread over all three, two of which forward to the leader
//! ("3 instances"). Reports throughput, latency and the CPU each process spent per call
//! (from `/proc/<pid>/stat`), so the cost of a forwarding hop is measured beside the call.
//! Then it measures how soon a revocation sent to the leader reaches a verifier that
//! follows the feed through a forwarding instance. Each instance signs with its own key.

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::json;
use tonic::transport::Channel;

use crate::Target;
use crate::load::{
    BenchArgs, World, drive, prepare_authorize, register, report, spec, start_task, world,
};
use crate::soak::{Server, mandate_bin};
use mandate_core::{Call, Invocation, SigningKey};
use mandate_proto::v1 as pb;
use mandate_sdk::{Client, ToolConfig, ToolVerifier};

/// CPU seconds (user + system) a process has used, or 0 when it is gone.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces), from field 3 on.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15: 12 and 13 here. Linux counts them in
    // USER_HZ, 100 per second on every architecture it exposes to user space.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

/// The pids of the etcd members whose data lives under `dir`.
fn etcd_pids(dir: &std::path::Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// Starts a coordinator of the service; returns it and its address.
fn spawn(
    bin: &std::path::Path,
    data: &std::path::Path,
    store: &str,
) -> anyhow::Result<(Server, String)> {
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args([
            "--store",
            store,
            "--advertise",
            "auto",
            "--leader-lease",
            "2s",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start `mandate serve`")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server(child);
    let mut lines = std::io::BufReader::new(stdout).lines();
    let first = lines.next().context("the server printed nothing")??;
    std::thread::spawn(move || for _ in lines {});
    let addr = first
        .split_whitespace()
        .nth(4)
        .context("no address in the server's first line")?
        .to_owned();
    Ok((server, addr))
}

/// One phase: `requests` fresh `Authorize` calls over `channels`, with the CPU each
/// process spent meanwhile.
async fn phase(
    label: &str,
    w: &mut World,
    a: &BenchArgs,
    target: &Target,
    channels: &[Channel],
    pids: &[(String, u32)],
) -> anyhow::Result<()> {
    let (ops, _) = prepare_authorize(w, a.requests).await?;
    let before: Vec<f64> = pids.iter().map(|(_, p)| cpu_seconds(*p)).collect();
    let (elapsed, lat, errors) = drive(ops, channels, a.concurrency).await?;
    let n = lat.len().max(1) as f64;
    // CPU per call by process (etcd members summed).
    let mut per_call: std::collections::BTreeMap<&str, f64> = Default::default();
    for ((name, pid), b) in pids.iter().zip(&before) {
        *per_call.entry(name).or_default() += (cpu_seconds(*pid) - b) * 1e6 / n;
    }
    let coordinators: f64 = per_call
        .iter()
        .filter(|(k, _)| k.starts_with("coordinator"))
        .map(|(_, v)| v)
        .sum();
    let per_call: serde_json::Map<String, serde_json::Value> = per_call
        .into_iter()
        .map(|(k, v)| (k.to_owned(), json!((v * 10.0).round() / 10.0)))
        .collect();
    report(
        target,
        label,
        elapsed,
        lat,
        errors,
        json!({"cpu_us_per_call": per_call, "coordinators_cpu_us_per_call": coordinators}),
    );
    Ok(())
}

/// Waits until the coordinator at `at` answers (it is elected, or forwards to whoever is).
async fn answers(target: &Target, at: &str) -> anyhow::Result<()> {
    for _ in 0..400 {
        if let Ok(mut c) = target.client(at).await
            && c.get_trust_bundle(mandate_proto::v1::GetTrustBundleRequest {})
                .await
                .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the coordinator at {at} does not answer")
}

pub(crate) async fn run(a: &BenchArgs, target: &Target) -> anyhow::Result<()> {
    anyhow::ensure!(
        target.server.is_none(),
        "`several` starts its own coordinators (it samples their processes): drop --server"
    );
    let bin = mandate_bin(a)?;
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(target.etcd_members.max(1))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let store = cluster.store_url("bench");
    let dir = tempfile::tempdir()?;
    let first = dir.path().join("c0");
    let (leader, at_leader) = spawn(&bin, &first, &store)?;
    let admin_key = first.join("admin.key");
    // In this mode the listener answers (forwarding) before the coordinator is elected
    // and writes its keys.
    for _ in 0..400 {
        if first.join("coordinator.key").exists() && admin_key.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut servers = vec![leader];
    let mut addresses = vec![at_leader.clone()];
    // The leader answers before the others start, so it is the first one.
    let target_leader = Target {
        server: Some(at_leader.clone()),
        key: admin_key.clone(),
        agent: target.agent.clone(),
        json: target.json,
        etcd_members: 0,
    };
    answers(&target_leader, &at_leader).await?;
    let mut w = world(&target_leader).await?;
    for i in 1..3 {
        let data = dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&data)?;
        // Its own key, added through the leader before it starts.
        let key = SigningKey::generate()?;
        mandate_core::keyfile::save_signing_key(&key, &data.join("coordinator.key"))?;
        target_leader
            .client(&at_leader)
            .await?
            .add_coordinator_key(pb::AddCoordinatorKeyRequest {
                public_key: key.public_key().as_bytes().to_vec(),
                instance: format!("c{i}"),
            })
            .await?;
        let (server, at) = spawn(&bin, &data, &store)?;
        servers.push(server);
        addresses.push(at);
    }
    // Wait until the followers forward (they learn the leader from etcd).
    for at in &addresses[1..] {
        answers(&target_leader, at).await?;
    }
    let mut pids: Vec<(String, u32)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let role = if i == 0 { "leader" } else { "follower" };
            (format!("coordinator{i} ({role})"), s.0.id())
        })
        .collect();
    for pid in etcd_pids(cluster.dir()) {
        pids.push(("etcd (all members)".to_owned(), pid));
    }
    pids.push(("bench clients".to_owned(), std::process::id()));
    let connect = |at: &String| {
        let uri = format!("http://{at}");
        async move { anyhow::Ok(Channel::from_shared(uri)?.connect().await?) }
    };
    let mut to_leader = Vec::new();
    for _ in 0..a.connections.max(1) {
        to_leader.push(connect(&addresses[0]).await?);
    }
    phase(
        "several: Authorize, every call to the leader (1 instance)",
        &mut w,
        a,
        target,
        &to_leader,
        &pids,
    )
    .await?;
    let mut spread = Vec::new();
    for i in 0..a.connections.max(3) {
        spread.push(connect(&addresses[i % 3]).await?);
    }
    phase(
        "several: Authorize, calls spread over 3 (2 of 3 forwarded)",
        &mut w,
        a,
        target,
        &spread,
        &pids,
    )
    .await?;
    reach(&mut w, target, &target_leader, &addresses[2], 20).await?;
    drop(servers);
    drop(cluster);
    Ok(())
}

/// `samples` times: a task and a delegation through the leader, the root revoked through
/// the leader, and the time from the revocation's answer until a verifier that follows the
/// feed through the forwarding instance at `follower` rejects the delegated chain.
async fn reach(
    w: &mut World,
    target: &Target,
    admin: &Target,
    follower: &str,
    samples: usize,
) -> anyhow::Result<()> {
    let (_, _, psigner) = register(w, "rplanner", "planner").await?;
    let (wid, wkey, _) = register(w, "rworker", "worker").await?;
    let (tid, _, tsigner) = register(w, "rtool", "tool").await?;
    let mut planner = Client::connect(w.endpoint.clone(), psigner).await?;
    let tool = admin.client(follower).await?.as_agent(tsigner);
    let verifier = ToolVerifier::connect(tool, ToolConfig::new(tid.clone())).await?;
    let call = Call::new("read", "files/leaf");
    let mut reached = Vec::with_capacity(samples);
    for _ in 0..samples {
        let root = start_task(&mut planner, 1, w.ttl_ms).await?;
        let now = w.clock.now_ms();
        let leaf = planner
            .delegate(&root, spec(&wkey, &wid, "files/leaf", (now, w.ttl_ms), 0)?)
            .await?;
        let decide = || {
            let proof = Invocation::sign(&wkey, &leaf, &tid, call.clone(), w.clock.now_ms());
            let (verifier, chain, call) = (verifier.clone(), leaf.encode(), call.clone());
            async move {
                anyhow::Ok(
                    verifier
                        .authorize(&chain, &proof?.encode(), &call)
                        .await
                        .allowed,
                )
            }
        };
        anyhow::ensure!(
            decide().await?,
            "the chain was refused before its revocation"
        );
        let r = planner
            .revoke_link(pb::RevokeLinkRequest {
                link_id: root.root().id().to_string(),
                reason: "bench reach".into(),
            })
            .await?;
        let answered = Instant::now();
        let mut seen = None;
        while answered.elapsed() < Duration::from_secs(10) {
            if verifier.epoch() >= r.revocation_epoch && !decide().await? {
                seen = Some(answered.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        reached.push(seen.context("the verifier never rejected the revoked chain")?);
    }
    reached.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, max) = (
        ms(reached[reached.len() / 2]),
        ms(reached[reached.len() - 1]),
    );
    let j = json!({
        "scenario": "several: revocation through the leader, verifier following a forwarding instance",
        "samples": samples,
        "rejects_after_rpc_ms_p50": p50,
        "rejects_after_rpc_ms_max": max,
    });
    if target.json {
        out!("{j}");
    } else {
        out!(
            "several: a verifier following the feed through a forwarding instance rejects a chain revoked through the leader {p50:.1} ms after the RPC returned (p50 of {samples}; max {max:.1} ms)"
        );
    }
    Ok(())
}
