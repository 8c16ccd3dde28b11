//! `mandate-bench scale`: a store with N live links, then a real `mandate serve` on it:
//! on-disk size, time from start to serving, resident memory.
//!
//! The server is the `mandate` binary next to this one (`cargo build --release -p
//! mandate-cli -p mandate-bench` builds both), or the one `MANDATE_BIN` names.
//!
//! With `--etcd-members N` the store is an N-member etcd cluster on loopback (started for
//! the run, with an 8 GiB backend quota and compaction by revision) instead of sled.
//!
//! The links are real (signed by the coordinator key the server then loads, and by the
//! planner for delegations) but written straight into the store in batches of one task
//! each: building a million links through `Delegate` would measure the delegate rate, not
//! the size the coordinator copes with.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mandate_core::{
    AgentId, Capability, Chain, Clock as _, LinkKind, LinkSpec, SigningKey, SystemClock, TaskId,
    keyfile,
};
use mandate_store::{
    AgentRecord, AgentStatus, AuditEvent, Change, EtcdConfig, EtcdStore, LinkRecord, SledStore,
    Store, TaskRecord, TaskState,
};
use serde_json::json;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Target;

/// Links per task (a root and its children).
const PER_TASK: usize = 1000;

fn du(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

/// Resident memory of a process, bytes (Linux).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn agent(id: &AgentId, key: &SigningKey, role: &str, now: u64) -> AgentRecord {
    AgentRecord {
        id: id.clone(),
        public_key: key.public_key(),
        role: role.to_owned(),
        owner: "bench".to_owned(),
        labels: Default::default(),
        parent: None,
        status: AgentStatus::Active,
        created_ms: now,
        disabled_ms: 0,
        registered_by: "bench".to_owned(),
    }
}

/// Writes `links` live links (tasks of [`PER_TASK`]) into a fresh store (sled under
/// `data`, or `etcd`), and records the policy set the server will load unless
/// `unrecorded_policy`.
fn load(
    data: &Path,
    etcd: Option<EtcdConfig>,
    links: usize,
    unrecorded_policy: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data)?;
    let coordinator = SigningKey::generate()?;
    keyfile::save_signing_key(&coordinator, &data.join("coordinator.key"))?;
    let planner = SigningKey::generate()?;
    let worker = SigningKey::generate()?;
    let (pid, wid) = (
        AgentId::new("spiffe://mandate.local/scale/planner")?,
        AgentId::new("spiffe://mandate.local/scale/worker")?,
    );
    let networked = etcd.is_some();
    let store: Box<dyn Store> = match etcd {
        Some(config) => Box::new(EtcdStore::open(config)?),
        None => Box::new(SledStore::open(&data.join("store"))?),
    };
    let now = SystemClock.now_ms();
    let until = now + 24 * 3_600_000;
    // The bench's own records, labelled as such (the store does not interpret actions).
    let event = |what: &str| {
        let mut e = AuditEvent::new("bench", mandate_store::AuditAction::AgentRegistered, now);
        e.action = what.into();
        e
    };
    store.commit(Change {
        agents: vec![
            agent(&pid, &planner, "planner", now),
            agent(&wid, &worker, "worker", now),
        ],
        audit: vec![event("bench.agents")],
        ..Change::default()
    })?;
    let (pagent, wagent) = (pid.clone(), wid.clone());
    let tasks = links.div_ceil(PER_TASK);
    let started = Instant::now();
    for t in 0..tasks {
        let task = TaskId::random()?;
        let spec = LinkSpec::new(
            planner.public_key(),
            pagent.clone(),
            vec![Capability::new("files/*", ["read", "write"])?],
            now,
            until,
        )?
        .max_depth(1);
        let root = Chain::issue_root(&coordinator, task, LinkKind::Grant, spec)?;
        let record = |chain: &Chain, issuer: &str| {
            let l = chain.leaf();
            LinkRecord {
                id: l.id(),
                task,
                parent: chain
                    .links()
                    .len()
                    .checked_sub(2)
                    .map(|p| chain.links()[p].id()),
                digest: *l.digest(),
                holder: l.body().holder_agent.as_str().to_owned(),
                issuer: issuer.to_owned(),
                encoded: l.encode(),
                expires_at_ms: l.body().expires_at_ms,
                created_ms: now,
                max_uses: 0,
            }
        };
        let n = PER_TASK.min(links - t * PER_TASK);
        let mut records = vec![record(&root, "spiffe://mandate.local/coordinator")];
        for i in 1..n {
            let spec = LinkSpec::new(
                worker.public_key(),
                wagent.clone(),
                vec![Capability::new(&format!("files/{t}/{i}"), ["read"])?],
                now,
                until,
            )?;
            records.push(record(&root.delegate(&planner, spec)?, &pid));
        }
        let mut e = event("bench.links_loaded");
        e.task = Some(task);
        store.commit(Change {
            tasks: vec![TaskRecord {
                id: task,
                requester: pid.to_string(),
                intent: "scale run".into(),
                intent_fields: Default::default(),
                state: TaskState::Active,
                created_ms: now,
                deadline_ms: until,
                ended_ms: 0,
                end_reason: String::new(),
                root_link: Some(root.root().id()),
            }],
            links: records,
            audit: vec![e],
            ..Change::default()
        })?;
        if networked {
            // etcd takes what is shipped, not what is queued: keep the queue short (a
            // million links queued at once overran a 3-member cluster on 2 cores).
            store.flush()?;
        }
        if (t + 1) % 100 == 0 {
            eprintln!(
                "loaded {} links in {:.0} s",
                (t + 1) * PER_TASK,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Record the policy set the server will load (the default), as a running coordinator
    // would have: the starts below then measure a restart, not a first drift pass.
    if unrecorded_policy {
        return Ok(());
    }
    store.commit(Change {
        policy_hash: Some(mandate_policy::PolicySet::default_set()?.hash().to_owned()),
        audit: vec![event("bench.policy_recorded")],
        ..Change::default()
    })?;
    store.flush()?;
    Ok(())
}

/// Starts `mandate serve` on `data` (and `store`: `--store ...`, or nothing for sled);
/// returns the child, its address and the time until it answered a health check.
async fn serve(
    data: &Path,
    store: &[String],
) -> anyhow::Result<(std::process::Child, String, Duration)> {
    let mandate = match std::env::var_os("MANDATE_BIN") {
        Some(path) => std::path::PathBuf::from(path),
        None => std::env::current_exe()?.with_file_name("mandate"),
    };
    anyhow::ensure!(
        mandate.exists(),
        "no `mandate` binary at `{}`: build it (cargo build --release -p mandate-cli) or set MANDATE_BIN",
        mandate.display()
    );
    let started = Instant::now();
    let mut child = Command::new(&mandate)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(store)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let first =
        tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().next().transpose())
            .await??
            .context("the server printed nothing")?;
    let addr = first.rsplit(' ').next().context("no address")?.to_owned();
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    loop {
        if let Ok(channel) = endpoint.connect().await
            && HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .is_ok()
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            anyhow::bail!("the server did not answer within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((child, addr, started.elapsed()))
}

fn stop(mut child: std::process::Child) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait()?;
    Ok(())
}

/// Registers agents through `admin`, one after another, until `stop` says so; returns
/// each call's latency.
async fn probe(
    mut admin: mandate_sdk::Client,
    stop: tokio::sync::watch::Receiver<bool>,
    max: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::new();
    while !*stop.borrow() && out.len() < max {
        let key = SigningKey::generate()?;
        let t = Instant::now();
        admin
            .register_agent(mandate_proto::v1::RegisterAgentRequest {
                agent_id: format!("spiffe://mandate.local/scale/probe-{}", TaskId::random()?),
                public_key: key.public_key().as_bytes().to_vec(),
                role: "worker".into(),
                ..Default::default()
            })
            .await?;
        out.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(out)
}

/// A percentile of sorted latencies, in ms.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    crate::load::percentile(sorted, p).as_secs_f64() * 1e3
}

/// A client signing as the bootstrap admin of `data` (its key is in the data directory).
async fn admin_client(data: &Path, addr: &str) -> anyhow::Result<mandate_sdk::Client> {
    let admin_key = keyfile::load_signing_key(&data.join("admin.key"))?;
    Ok(mandate_sdk::Client::connect(
        format!("http://{addr}"),
        mandate_sdk::Signer::new(AgentId::new("spiffe://mandate.local/admin")?, admin_key),
    )
    .await?)
}

/// A reload that decides every live link again while changes go on: the reload's time and
/// the changes' latency before and during it.
async fn reload_under_changes(
    data: &Path,
    store_args: &[String],
    links: usize,
    target: &Target,
) -> anyhow::Result<()> {
    let (child, addr, _) = serve(data, store_args).await?;
    let admin = admin_client(data, &addr).await?;
    let (_, quiet) = tokio::sync::watch::channel(false);
    let mut before = probe(admin.clone(), quiet, 200).await?;
    // The default set with longer lifetimes: every link is decided again, none drifts.
    let files = [(
        "default.cedar".to_owned(),
        mandate_policy::DEFAULT_POLICIES.replace("@max_ttl(\"15m\")", "@max_ttl(\"25h\")"),
    )];
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let during = tokio::spawn(probe(admin.clone(), stop_rx, usize::MAX));
    let t = Instant::now();
    let r = admin
        .clone()
        .reload_policy(mandate_proto::v1::ReloadPolicyRequest {
            files: files.into(),
        })
        .await?;
    let reload = t.elapsed();
    let _ = stop_tx.send(true);
    let mut during = during.await??;
    stop(child)?;
    before.sort();
    during.sort();
    let j = json!({
        "scenario": "scale-reload",
        "links": links,
        "reload_ms": reload.as_millis() as u64,
        "reevaluated_links": r.reevaluated_links,
        "revoked": r.revoked_link_ids.len(),
        "changes_before": {"n": before.len(), "p50_ms": percentile(&before, 0.5), "p99_ms": percentile(&before, 0.99), "max_ms": percentile(&before, 1.0)},
        "changes_during": {"n": during.len(), "p50_ms": percentile(&during, 0.5), "p99_ms": percentile(&during, 0.99), "max_ms": percentile(&during, 1.0)},
    });
    if target.json {
        out!("{j}");
    } else {
        out!(
            "  reload deciding {} live links again ({} revoked): {:.1} s; changes meanwhile: {} (p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms); before: p50 {:.1} ms, max {:.1} ms",
            r.reevaluated_links,
            r.revoked_link_ids.len(),
            reload.as_secs_f64(),
            during.len(),
            percentile(&during, 0.5),
            percentile(&during, 0.99),
            percentile(&during, 1.0),
            percentile(&before, 0.5),
            percentile(&before, 1.0),
        );
    }
    Ok(())
}

pub(crate) async fn run(
    links: usize,
    unrecorded_policy: bool,
    reload: bool,
    keep_data: Option<&std::path::Path>,
    target: &Target,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data = crate::load::data_dir(keep_data, &dir)?;
    let cluster = match target.etcd_members {
        0 => None,
        n => Some(
            mandate_etcd::test_cluster::EtcdCluster::start_with(
                n,
                mandate_etcd::test_cluster::ClusterOptions {
                    extra_args: vec![
                        "--quota-backend-bytes=8589934592".into(),
                        "--auto-compaction-mode=revision".into(),
                        "--auto-compaction-retention=100000".into(),
                    ],
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!(e))?,
        ),
    };
    let etcd = cluster.as_ref().map(|c| EtcdConfig::new(c.endpoints()));
    let store_args: Vec<String> = match &cluster {
        Some(c) => vec!["--store".into(), c.store_url("")],
        None => Vec::new(),
    };
    let t = Instant::now();
    let d = data.clone();
    tokio::task::spawn_blocking(move || load(&d, etcd, links, unrecorded_policy)).await??;
    let load_s = t.elapsed().as_secs_f64();
    // On etcd: every member's data (each holds the whole store).
    let disk = du(&data) + cluster.as_ref().map_or(0, |c| du(c.dir()));
    let mut runs = Vec::new();
    for _ in 0..2 {
        let (child, addr, ready) = serve(&data, &store_args).await?;
        let rss_ready = rss(child.id()).unwrap_or(0);
        // One read across the store: the delegation tree of a task, as its requester sees
        // it, goes through the admin's key (read from the data directory).
        let mut admin = admin_client(&data, &addr).await?;
        let tasks = admin
            .list_tasks(mandate_proto::v1::ListTasksRequest {
                page_size: 1,
                ..Default::default()
            })
            .await?;
        let task_id = tasks
            .tasks
            .first()
            .map(|t| t.task_id.clone())
            .unwrap_or_default();
        let tree = admin
            .get_delegation_tree(mandate_proto::v1::GetDelegationTreeRequest { task_id })
            .await?;
        let rss_after = rss(child.id()).unwrap_or(0);
        // Settled: what start-up allocated and freed has gone back to the system (the
        // allocator returns freed pages after half a second).
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        let rss_settled = rss(child.id()).unwrap_or(0);
        stop(child)?;
        runs.push((ready, rss_ready, rss_after, rss_settled, tree.links.len()));
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let j = json!({
        "scenario": "scale",
        "store": if target.etcd_members == 0 { "sled".to_owned() } else { format!("etcd, {} members", target.etcd_members) },
        "links": links,
        "load_s": load_s,
        "disk_bytes": disk,
        "starts": runs.iter().map(|(ready, r0, r1, r2, n)| json!({
            "ready_ms": ready.as_millis() as u64,
            "rss_ready_bytes": r0,
            "rss_after_tree_bytes": r1,
            "rss_settled_bytes": r2,
            "tree_links": n,
        })).collect::<Vec<_>>(),
    });
    if target.json {
        out!("{j}");
    } else {
        out!(
            "scale: {links} live links written in {load_s:.0} s; {:.0} MiB on disk",
            mib(disk)
        );
        for (i, (ready, r0, r1, r2, n)) in runs.iter().enumerate() {
            out!(
                "  start {}: serving after {} ms; RSS {:.0} MiB when ready, {:.0} MiB after reading a {n}-link tree, {:.0} MiB 5 s later",
                i + 1,
                ready.as_millis(),
                mib(*r0),
                mib(*r1),
                mib(*r2)
            );
        }
    }
    if reload {
        reload_under_changes(&data, &store_args, links, target).await?;
    }
    Ok(())
}
