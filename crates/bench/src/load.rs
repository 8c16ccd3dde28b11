//! The load scenarios: drive a real coordinator over loopback and report throughput and
//! latency percentiles.
//!
//! Requests are prepared (signed, with fresh nonces and proofs) before the clock starts,
//! so the figures measure the coordinator and the transport, not the load generator's
//! signing. With no `--server`, the tool starts its own coordinator in a temporary
//! directory (in the same process, sharing the machine as a separate server would).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use mandate_core::{
    AgentId, Call, Capability, Chain, Clock, Invocation, Limits, LinkSpec, SigningKey, SystemClock,
};
use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use mandate_proto::v1::authorization_service_client::AuthorizationServiceClient;
use mandate_proto::v1::task_service_client::TaskServiceClient;
use mandate_sdk::{Client, Signer, ToolConfig, ToolVerifier};
use serde_json::json;
use tonic::transport::Channel;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::Target;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Scenario {
    /// Health checks: the transport's floor.
    Echo,
    /// `Authorize` of depth-3 chains with fresh proofs.
    Authorize,
    /// Durable, sealed delegations over 100 tasks.
    Delegate,
    /// 90 % authorize, 8 % delegate, 2 % revoke.
    Mixed,
    /// Revoking the root of a tree of `--descendants` links.
    RevokeCascade,
    /// A store of `--links` live links, then a real `mandate serve` on it.
    Scale,
    /// GETs straight to a Rust HTTP upstream, then the same through `mandate gateway`.
    Gateway,
    /// Rounds of `--requests` mixed requests against a `mandate serve` child process,
    /// sampling its RSS and data directory after each round.
    Soak,
    /// Three `mandate serve --advertise` on etcd: `Authorize` to the leader, then spread
    /// over all three, with each process's CPU per call.
    Several,
}

/// The scenario and its settings.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Scenario.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Requests to send (prepared in advance).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) requests: usize,
    /// Concurrent requests in flight.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Connections (HTTP/2 channels) to spread them over.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// Descendants for revoke-cascade.
    #[arg(long, default_value_t = 100_000)]
    descendants: usize,
    /// Live links for scale (written straight into a fresh store, then served).
    #[arg(long, default_value_t = 1_000_000)]
    links: usize,
    /// Scale: leave the policy set unrecorded, so the first start runs the full drift pass
    /// (the default set caps grants at 15 minutes, so it revokes every 24-hour link).
    #[arg(long)]
    unrecorded_policy: bool,
    /// Scale: then reload a policy set that decides every live link again (the default set
    /// with longer lifetimes, so nothing drifts) while an admin registers agents one after
    /// another, and report how long those changes waited meanwhile.
    #[arg(long)]
    reload: bool,
    /// Soak: rounds of `--requests` each.
    #[arg(long, default_value_t = 20)]
    pub(crate) rounds: usize,
    /// Soak: the `mandate` binary to run (default: next to this one).
    #[arg(long)]
    pub(crate) mandate_bin: Option<std::path::PathBuf>,
    /// Soak: fail when the server's RSS grows by more than this many MiB per million
    /// requests after the warm-up rounds, or the data directory by more than
    /// `--max-disk-bytes-per-request` per request after them.
    #[arg(long)]
    pub(crate) max_rss_mib_per_million: Option<f64>,
    /// Soak: see `--max-rss-mib-per-million`.
    #[arg(long)]
    pub(crate) max_disk_bytes_per_request: Option<f64>,
    /// Soak and scale: keep the server's data directory here (it must not exist) instead of a
    /// temporary one, for looking into it afterwards (`SledStore::key_stats`).
    #[arg(long)]
    pub(crate) keep_data: Option<std::path::PathBuf>,
    /// Lifetime of the tasks the scenarios start, in seconds [default: 600; soak: 60]. In a
    /// soak the server keeps no history past expiry and collects every
    /// `--gc-interval-secs`, so live state reaches a steady size (links live ≈ delegations
    /// per second × lifetime) after one lifetime.
    #[arg(long)]
    pub(crate) task_ttl_secs: Option<u64>,
    /// Soak: rounds that count as warm-up, left out of the slopes [default: a third].
    #[arg(long)]
    pub(crate) warmup_rounds: Option<usize>,
    /// Authorize: decisions per request; above 1, each request is one `AuthorizeBatch`
    /// (`--requests` counts decisions).
    #[arg(long, default_value_t = 1)]
    pub(crate) batch: usize,
    /// Soak: the server's collection interval, in seconds.
    #[arg(long, default_value_t = 5)]
    pub(crate) gc_interval_secs: u64,
}

/// One prepared request.
pub(crate) enum Op {
    Echo,
    Authorize(tonic::Request<pb::AuthorizeRequest>),
    AuthorizeBatch(tonic::Request<pb::AuthorizeBatchRequest>),
    Delegate(tonic::Request<pb::DelegateRequest>),
    Revoke(tonic::Request<pb::RevokeLinkRequest>),
}

fn signed<M: prost::Message>(
    signer: &Signer,
    method: &str,
    msg: M,
) -> anyhow::Result<tonic::Request<M>> {
    Ok(signer.request(&format!("/mandate.v1.{method}"), msg)?)
}

pub(crate) struct World {
    _server: Option<(mandate_server::Server, tempfile::TempDir)>,
    /// The etcd cluster the coordinator runs on (`--etcd-members`), stopped after it.
    _etcd: Option<mandate_etcd::test_cluster::EtcdCluster>,
    pub(crate) endpoint: String,
    admin: Client,
    pub(crate) clock: Arc<dyn Clock>,
    /// Lifetime of the tasks the scenarios start (their delegations end a tenth earlier).
    pub(crate) ttl_ms: u64,
}

pub(crate) async fn world(target: &Target) -> anyhow::Result<World> {
    if let Some(server) = &target.server {
        let admin = target.client(server).await?;
        Ok(World {
            _server: None,
            _etcd: None,
            endpoint: mandate_sdk::endpoint(server),
            admin,
            clock: Arc::new(SystemClock),
            ttl_ms: 10 * 60_000,
        })
    } else {
        let dir = tempfile::tempdir()?;
        let mut config =
            mandate_server::Config::new(([127, 0, 0, 1], 0).into(), dir.path().join("data"));
        // A load test sends far more than a person would.
        config.max_requests_per_agent = 10_000_000;
        config.quotas = mandate_server::Quotas {
            children_per_link: usize::MAX,
            links_per_task: usize::MAX,
            delegations_per_agent_per_second: u32::MAX,
            live_links_per_agent: usize::MAX,
            pending_approvals_per_agent: usize::MAX,
        };
        let etcd = match target.etcd_members {
            0 => None,
            n => {
                let cluster = mandate_etcd::test_cluster::EtcdCluster::start(n)
                    .await
                    .map_err(|e| anyhow::anyhow!(e))?;
                config.store = mandate_server::StoreChoice::Etcd(Box::new(
                    mandate_store::EtcdConfig::new(cluster.endpoints()),
                ));
                Some(cluster)
            }
        };
        let server = mandate_server::start(config).await?;
        let endpoint = format!("http://{}", server.local_addr);
        let key = mandate_core::keyfile::load_signing_key(&server.admin_key_path)?;
        let admin = Client::connect(
            endpoint.clone(),
            Signer::new(AgentId::new(server.admin_id.clone())?, key),
        )
        .await?;
        Ok(World {
            _server: Some((server, dir)),
            _etcd: etcd,
            endpoint,
            admin,
            clock: Arc::new(SystemClock),
            ttl_ms: 10 * 60_000,
        })
    }
}

pub(crate) async fn register(
    w: &mut World,
    name: &str,
    role: &str,
) -> anyhow::Result<(String, SigningKey, Signer)> {
    let key = SigningKey::generate()?;
    let id = format!("spiffe://mandate.local/bench/{name}-{:x}", w.clock.now_ms());
    w.admin
        .register_agent(pb::RegisterAgentRequest {
            agent_id: id.clone(),
            public_key: key.public_key().as_bytes().to_vec(),
            role: role.into(),
            ..Default::default()
        })
        .await?;
    let signer = Signer::new(AgentId::new(id.clone())?, key.clone());
    Ok((id, key, signer))
}

pub(crate) async fn start_task(
    client: &mut Client,
    max_depth: u32,
    ttl_ms: u64,
) -> anyhow::Result<Chain> {
    let r = client
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            capabilities: vec![tpb::Capability {
                resource: "files/*".into(),
                actions: vec!["read".into(), "write".into()],
                constraints: vec![],
            }],
            ttl_ms,
            max_depth,
            ..Default::default()
        })
        .await?;
    Ok(Chain::decode(&r.chain, &Limits::default())?)
}

/// A task started by `signer` with one capability; returns its root chain.
pub(crate) async fn start_task_on(
    w: &World,
    signer: Signer,
    resource: &str,
    actions: &[&str],
) -> anyhow::Result<Chain> {
    let mut client = Client::connect(w.endpoint.clone(), signer).await?;
    let r = client
        .start_task(pb::StartTaskRequest {
            capabilities: vec![tpb::Capability {
                resource: resource.into(),
                actions: actions.iter().map(|a| (*a).to_owned()).collect(),
                constraints: vec![],
            }],
            ttl_ms: 10 * 60_000,
            ..Default::default()
        })
        .await?;
    Ok(Chain::decode(&r.chain, &Limits::default())?)
}

pub(crate) fn spec(
    key: &SigningKey,
    id: &str,
    resource: &str,
    (now, ttl_ms): (u64, u64),
    max_depth: u32,
) -> anyhow::Result<LinkSpec> {
    Ok(LinkSpec::new(
        key.public_key(),
        id.parse()?,
        vec![Capability::new(resource, ["read"])?],
        now,
        now + ttl_ms * 9 / 10,
    )?
    .max_depth(max_depth)
    .require_seal(true))
}

/// Runs prepared ops with `concurrency` in flight over `channels`; returns latencies.
pub(crate) async fn drive(
    ops: Vec<Op>,
    channels: &[Channel],
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>, usize)> {
    let queue = Arc::new(std::sync::Mutex::new(
        ops.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let queue = Arc::clone(&queue);
        let channel = channels[w % channels.len()].clone();
        workers.spawn(async move {
            let mut health = HealthClient::new(channel.clone());
            let mut authz = AuthorizationServiceClient::new(channel.clone());
            let mut tasks = TaskServiceClient::new(channel);
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                let Some((_, op)) = next else { break };
                let t = Instant::now();
                let ok = match op {
                    Op::Echo => health.check(HealthCheckRequest::default()).await.is_ok(),
                    Op::Authorize(r) => authz
                        .authorize(r)
                        .await
                        .map(|r| r.into_inner().allowed)
                        .unwrap_or(false),
                    Op::AuthorizeBatch(r) => authz
                        .authorize_batch(r)
                        .await
                        .map(|r| r.into_inner().responses.iter().all(|d| d.allowed))
                        .unwrap_or(false),
                    Op::Delegate(r) => tasks.delegate(r).await.is_ok(),
                    Op::Revoke(r) => tasks.revoke_link(r).await.is_ok(),
                };
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
            }
            (lat, errors)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = workers.join_next().await {
        let (l, e) = r?;
        all.extend(l);
        errors += e;
    }
    Ok((start.elapsed(), all, errors))
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub(crate) fn report(
    target: &Target,
    scenario: &str,
    elapsed: Duration,
    mut lat: Vec<Duration>,
    errors: usize,
    extra: serde_json::Value,
) {
    lat.sort();
    let n = lat.len();
    let rps = n as f64 / elapsed.as_secs_f64();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let j = json!({
        "scenario": scenario,
        "requests": n,
        "errors": errors,
        "seconds": elapsed.as_secs_f64(),
        "per_second": rps,
        "p50_us": us(percentile(&lat, 0.50)),
        "p90_us": us(percentile(&lat, 0.90)),
        "p99_us": us(percentile(&lat, 0.99)),
        "max_us": us(lat.last().copied().unwrap_or_default()),
        "extra": extra,
    });
    if target.json {
        out!("{j}");
    } else {
        out!(
            "{scenario}: {n} requests in {:.2} s = {rps:.0}/s ({errors} errors); p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  max {:.0} µs",
            elapsed.as_secs_f64(),
            us(percentile(&lat, 0.50)),
            us(percentile(&lat, 0.90)),
            us(percentile(&lat, 0.99)),
            us(lat.last().copied().unwrap_or_default())
        );
        if !extra.is_null() {
            out!("  {extra}");
        }
    }
}

/// The data directory a scenario's server runs on: `keep` (which must not exist yet), or
/// `data` under `scratch`.
pub(crate) fn data_dir(
    keep: Option<&std::path::Path>,
    scratch: &tempfile::TempDir,
) -> anyhow::Result<std::path::PathBuf> {
    match keep {
        Some(d) => {
            anyhow::ensure!(
                !d.exists(),
                "`{}` exists: give a new directory",
                d.display()
            );
            Ok(d.to_path_buf())
        }
        None => Ok(scratch.path().join("data")),
    }
}

pub(crate) async fn run(a: BenchArgs, target: &Target) -> anyhow::Result<()> {
    if a.scenario == Scenario::Scale {
        return crate::scale::run(
            a.links,
            a.unrecorded_policy,
            a.reload,
            a.keep_data.as_deref(),
            target,
        )
        .await;
    }
    if a.scenario == Scenario::Soak {
        return crate::soak::run(&a, target).await;
    }
    if a.scenario == Scenario::Several {
        return crate::several::run(&a, target).await;
    }
    let mut w = world(target).await?;
    if let Some(secs) = a.task_ttl_secs {
        w.ttl_ms = secs.max(5) * 1000;
    }
    let mut channels = Vec::new();
    for _ in 0..a.connections.max(1) {
        channels.push(Channel::from_shared(w.endpoint.clone())?.connect().await?);
    }
    match a.scenario {
        Scenario::Echo => {
            let ops = (0..a.requests).map(|_| Op::Echo).collect();
            let (t, lat, e) = drive(ops, &channels, a.concurrency).await?;
            report(target, "echo", t, lat, e, serde_json::Value::Null);
        }
        Scenario::Authorize if a.batch > 1 => {
            let (asks, _, signer) = prepare_authorize_requests(&mut w, a.requests).await?;
            let mut ops = Vec::with_capacity(asks.len().div_ceil(a.batch));
            for requests in asks.chunks(a.batch) {
                let batch = pb::AuthorizeBatchRequest {
                    requests: requests.to_vec(),
                };
                ops.push(Op::AuthorizeBatch(signed(
                    &signer,
                    "AuthorizationService/AuthorizeBatch",
                    batch,
                )?));
            }
            let (t, lat, e) = drive(ops, &channels, a.concurrency).await?;
            let decisions = asks.len() as f64 / t.as_secs_f64();
            report(
                target,
                &format!(
                    "authorize in batches of {} (depth-3 chains, fresh proofs)",
                    a.batch
                ),
                t,
                lat,
                e,
                json!({ "decisions": asks.len(), "decisions_per_second": decisions.round() }),
            );
        }
        Scenario::Authorize => {
            let (ops, _) = prepare_authorize(&mut w, a.requests).await?;
            let (t, lat, e) = drive(ops, &channels, a.concurrency).await?;
            report(
                target,
                "authorize (depth-3 chains, fresh proofs)",
                t,
                lat,
                e,
                serde_json::Value::Null,
            );
        }
        Scenario::Delegate => {
            let ops = prepare_delegate(&mut w, a.requests, 100).await?;
            let (t, lat, e) = drive(ops, &channels, a.concurrency).await?;
            report(
                target,
                "delegate (durable, sealed, 100 tasks)",
                t,
                lat,
                e,
                serde_json::Value::Null,
            );
        }
        Scenario::Mixed => {
            let mixed = prepare_mixed(&mut w, a.requests).await?;
            let (t, lat, e) = drive(mixed, &channels, a.concurrency).await?;
            report(
                target,
                "mixed (90% authorize, 8% delegate, 2% revoke)",
                t,
                lat,
                e,
                serde_json::Value::Null,
            );
        }
        Scenario::RevokeCascade => revoke_cascade(&mut w, &a, target, &channels).await?,
        Scenario::Gateway => {
            crate::gateway::run(&mut w, a.requests, a.concurrency, target).await?;
        }
        Scenario::Scale | Scenario::Soak | Scenario::Several => {}
    }
    if let Some((server, _dir)) = w._server.take() {
        server.shutdown().await?;
    }
    Ok(())
}

/// `n` requests, 90 % authorize, 8 % delegate and 2 % revoke, interleaved
/// deterministically.
pub(crate) async fn prepare_mixed(w: &mut World, n: usize) -> anyhow::Result<Vec<Op>> {
    let (mut auth, _) = prepare_authorize(w, n * 90 / 100).await?;
    let deleg = prepare_delegate(w, n * 8 / 100, 50).await?;
    let revokes = prepare_revokes(w, n * 2 / 100).await?;
    auth.extend(deleg);
    auth.extend(revokes);
    let n = auth.len();
    let mut mixed: Vec<Op> = Vec::with_capacity(n);
    let mut idx: Vec<usize> = (0..n).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        idx.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let mut slots: Vec<Option<Op>> = auth.into_iter().map(Some).collect();
    for i in idx {
        if let Some(op) = slots[i].take() {
            mixed.push(op);
        }
    }
    Ok(mixed)
}

/// A depth-3 chain (coordinator → planner → worker → sub-worker) and `n` signed Authorize
/// requests from the tool, each with a fresh proof.
pub(crate) async fn prepare_authorize(w: &mut World, n: usize) -> anyhow::Result<(Vec<Op>, Chain)> {
    let (asks, chain, signer) = prepare_authorize_requests(w, n).await?;
    let mut ops = Vec::with_capacity(n);
    for msg in asks {
        ops.push(Op::Authorize(signed(
            &signer,
            "AuthorizationService/Authorize",
            msg,
        )?));
    }
    Ok((ops, chain))
}

/// A depth-3 chain (coordinator → planner → worker → sub-worker), `n` Authorize messages
/// for it, each with a fresh proof, and the tool that asks.
async fn prepare_authorize_requests(
    w: &mut World,
    n: usize,
) -> anyhow::Result<(Vec<pb::AuthorizeRequest>, Chain, Signer)> {
    let (_, pkey, psigner) = register(w, "planner", "planner").await?;
    let (wid, wkey, _) = register(w, "worker", "worker").await?;
    let (sid, skey, _) = register(w, "sub", "worker").await?;
    let (tid, _, tsigner) = register(w, "tool", "tool").await?;
    let mut planner = w.admin.as_agent(psigner);
    let root = start_task(&mut planner, 2, w.ttl_ms).await?;
    let now = w.clock.now_ms();
    let c2 = planner
        .delegate(
            &root,
            spec(&wkey, &wid, "files/data/*", (now, w.ttl_ms), 1)?,
        )
        .await?;
    let mut worker = w.admin.as_agent(Signer::new(wid.parse()?, wkey));
    let c3 = worker
        .delegate(&c2, spec(&skey, &sid, "files/data/*", (now, w.ttl_ms), 0)?)
        .await?;
    let _ = pkey;
    let chain_bytes = c3.encode();
    let mut asks = Vec::with_capacity(n);
    for i in 0..n {
        let resource = format!("files/data/{i}");
        let proof = Invocation::sign(&skey, &c3, &tid, Call::new("read", resource.clone()), now)?;
        asks.push(pb::AuthorizeRequest {
            refuse_break_glass: false,
            chain: chain_bytes.clone(),
            invocation: proof.encode(),
            action: "read".into(),
            resource,
            ..Default::default()
        });
    }
    Ok((asks, c3, tsigner))
}

/// `n` delegations spread over `tasks` tasks, each a new sealed link to one worker.
async fn prepare_delegate(w: &mut World, n: usize, tasks: usize) -> anyhow::Result<Vec<Op>> {
    let (_, pkey, psigner) = register(w, "dplanner", "planner").await?;
    let (wid, wkey, _) = register(w, "dworker", "worker").await?;
    let planner = w.admin.as_agent(psigner.clone());
    let mut starting = tokio::task::JoinSet::new();
    for _ in 0..tasks.max(1) {
        let (mut planner, ttl) = (planner.clone(), w.ttl_ms);
        starting.spawn(async move { start_task(&mut planner, 1, ttl).await });
    }
    let mut roots = Vec::new();
    while let Some(done) = starting.join_next().await {
        roots.push(done??);
    }
    let now = w.clock.now_ms();
    let mut ops = Vec::with_capacity(n);
    for i in 0..n {
        let root = &roots[i % roots.len()];
        let child = root.delegate(
            &pkey,
            spec(&wkey, &wid, &format!("files/{i}"), (now, w.ttl_ms), 0)?,
        )?;
        ops.push(Op::Delegate(signed(
            &psigner,
            "TaskService/Delegate",
            pb::DelegateRequest {
                chain: child.encode(),
                ..Default::default()
            },
        )?));
    }
    Ok(ops)
}

/// `n` revocations of fresh delegated links.
async fn prepare_revokes(w: &mut World, n: usize) -> anyhow::Result<Vec<Op>> {
    let (_, _, psigner) = register(w, "rplanner", "planner").await?;
    let (wid, wkey, _) = register(w, "rworker", "worker").await?;
    let mut planner = w.admin.as_agent(psigner.clone());
    let root = start_task(&mut planner, 1, w.ttl_ms).await?;
    let now = w.clock.now_ms();
    // The links to revoke are delegated concurrently (a soak prepares these every round).
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..n {
        let (mut planner, root) = (planner.clone(), root.clone());
        let spec = spec(&wkey, &wid, &format!("files/r{i}"), (now, w.ttl_ms), 0)?;
        pending.spawn(async move { planner.delegate(&root, spec).await });
    }
    let mut ops = Vec::with_capacity(n);
    while let Some(done) = pending.join_next().await {
        let c = done??;
        let msg = pb::RevokeLinkRequest {
            link_id: c.leaf().id().to_string(),
            reason: "bench".into(),
        };
        ops.push(Op::Revoke(signed(&psigner, "TaskService/RevokeLink", msg)?));
    }
    Ok(ops)
}

/// Builds a tree of `descendants` links under one root, subscribes a verifier, revokes the
/// root, and measures the RPC and the time until the verifier rejects a leaf chain.
async fn revoke_cascade(
    w: &mut World,
    a: &BenchArgs,
    target: &Target,
    channels: &[Channel],
) -> anyhow::Result<()> {
    let (_, pkey, psigner) = register(w, "cplanner", "planner").await?;
    let (wid, wkey, _) = register(w, "cworker", "worker").await?;
    let (tid, _, tsigner) = register(w, "ctool", "tool").await?;
    let mut planner = w.admin.as_agent(psigner.clone());
    let root = start_task(&mut planner, 1, w.ttl_ms).await?;
    let now = w.clock.now_ms();
    let build = Instant::now();
    // One leaf registered through the SDK (so we hold its sealed chain), the rest in bulk.
    let leaf = planner
        .delegate(&root, spec(&wkey, &wid, "files/leaf", (now, w.ttl_ms), 0)?)
        .await?;
    // In chunks, so that no prepared request outlives the 60 s request window.
    let mut next = 1;
    while next < a.descendants {
        let end = (next + 10_000).min(a.descendants);
        let mut ops = Vec::with_capacity(end - next);
        for i in next..end {
            let child = root.delegate(
                &pkey,
                spec(&wkey, &wid, &format!("files/{i}"), (now, w.ttl_ms), 0)?,
            )?;
            ops.push(Op::Delegate(signed(
                &psigner,
                "TaskService/Delegate",
                pb::DelegateRequest {
                    chain: child.encode(),
                    ..Default::default()
                },
            )?));
        }
        let (_, _, errors) = drive(ops, channels, a.concurrency).await?;
        anyhow::ensure!(
            errors == 0,
            "{errors} delegations failed while building the tree"
        );
        next = end;
    }
    let built = build.elapsed();
    let tool = w.admin.as_agent(tsigner);
    let verifier = ToolVerifier::connect(tool, ToolConfig::new(tid.clone())).await?;
    let call = Call::new("read", "files/leaf");
    let proof = || Invocation::sign(&wkey, &leaf, &tid, call.clone(), w.clock.now_ms());
    let before = verifier
        .authorize(&leaf.encode(), &proof()?.encode(), &call)
        .await;
    anyhow::ensure!(
        before.allowed,
        "the leaf chain was refused before revocation: {}",
        before.reason
    );
    let t = Instant::now();
    let r = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: root.root().id().to_string(),
            reason: "bench cascade".into(),
        })
        .await?;
    let rpc = t.elapsed();
    let mut rejected_after = None;
    for _ in 0..200_000 {
        if verifier.epoch() >= r.revocation_epoch {
            let d = verifier
                .authorize(&leaf.encode(), &proof()?.encode(), &call)
                .await;
            if !d.allowed {
                rejected_after = Some(t.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let rejected = rejected_after.context("the verifier never rejected the revoked chain")?;
    let j = json!({
        "scenario": "revoke-cascade",
        "descendants": a.descendants,
        "revoked": r.revoked_link_ids.len(),
        "build_seconds": built.as_secs_f64(),
        "rpc_ms": rpc.as_secs_f64() * 1e3,
        "verifier_rejects_after_ms": rejected.as_secs_f64() * 1e3,
        "verifier_rejects_after_rpc_ms": (rejected.saturating_sub(rpc)).as_secs_f64() * 1e3,
    });
    if target.json {
        out!("{j}");
    } else {
        out!(
            "revoke-cascade: {} links revoked; RPC {:.1} ms; verifier rejects {:.1} ms after the RPC returned (tree built in {:.1} s)",
            r.revoked_link_ids.len(),
            rpc.as_secs_f64() * 1e3,
            rejected.saturating_sub(rpc).as_secs_f64() * 1e3,
            built.as_secs_f64()
        );
    }
    Ok(())
}
