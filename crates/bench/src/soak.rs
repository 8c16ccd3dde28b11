//! `mandate-bench soak`: a real `mandate serve` in a child process, driven with rounds of
//! mixed requests (90 % authorize, 8 % delegate, 2 % revoke; each round registers its own
//! agents, as a fleet of short-lived agents would), its RSS and data directory sampled
//! after every round. The verdict: RSS growth per million requests after warm-up (the
//! first third of the rounds), and disk bytes per request.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;
use tonic::transport::Channel;

use crate::Target;
use crate::load::{BenchArgs, drive, prepare_mixed, world};

/// The server child, killed when the soak ends however it ends.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .context("no VmRSS in /proc")?;
    Ok(kb * 1024)
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let num: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let den: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if den == 0.0 { 0.0 } else { num / den }
}

pub(crate) fn mandate_bin(a: &BenchArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &a.mandate_bin {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let sibling = exe.with_file_name("mandate");
    anyhow::ensure!(
        sibling.exists(),
        "no `mandate` binary next to {}: build it (cargo build --release -p mandate-cli) or pass --mandate-bin",
        exe.display()
    );
    Ok(sibling)
}

pub(crate) async fn run(a: &BenchArgs, target: &Target) -> anyhow::Result<()> {
    anyhow::ensure!(
        target.server.is_none(),
        "soak starts its own `mandate serve` (it samples that process): drop --server"
    );
    let dir = tempfile::tempdir()?;
    let data = crate::load::data_dir(a.keep_data.as_deref(), &dir)?;
    let mut child = Command::new(mandate_bin(a)?)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--retain-history", "0s", "--gc-interval"])
        .arg(format!("{}s", a.gc_interval_secs.max(1)))
        // Warnings, and each rewrite of sled's files (its sizes and how long it held
        // commits) on stderr.
        .env(
            "RUST_LOG",
            "warn,mandate_store::sled_store::generations=info",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start `mandate serve`")?;
    let pid = child.id();
    let stdout = child.stdout.take().context("no stdout")?;
    let server = Server(child);
    let first = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .context("the server printed nothing")??;
    let addr = first
        .rsplit(' ')
        .next()
        .context("no address in the server's first line")?
        .to_owned();
    let target = Target {
        server: Some(addr.clone()),
        key: data.join("admin.key"),
        agent: target.agent.clone(),
        json: target.json,
        etcd_members: 0,
    };
    let mut w = world(&target).await?;
    w.ttl_ms = a.task_ttl_secs.unwrap_or(60).max(5) * 1000;
    let mut channels = Vec::new();
    for _ in 0..a.connections.max(1) {
        channels.push(
            Channel::from_shared(format!("http://{addr}"))?
                .connect()
                .await?,
        );
    }
    let start_disk = dir_bytes(&data);
    let mut served = 0u64;
    let mut xs = Vec::new();
    let mut rss_points = Vec::new();
    let mut rates = Vec::new();
    let mut elapsed_secs = Vec::new();
    let mut disk_points = Vec::new();
    // The audit log's part of the data directory (the rest is sled's files and the keys).
    let audit_dir = data.join("store").join("audit-segments");
    if !target.json {
        out!("round  requests    req/s  errors   RSS MiB  data MiB  audit MiB");
    }
    let began = Instant::now();
    // Stopped by a signal to this process alone (`kill <pid>`), the soak still stops its
    // server: returning drops `server`, which kills the child.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let rounds = async {
        for round in 1..=a.rounds {
            let ops = prepare_mixed(&mut w, a.requests).await?;
            let n = ops.len() as u64;
            let (elapsed, _, errors) = drive(ops, &channels, a.concurrency).await?;
            served += n;
            let rss = rss_bytes(pid)?;
            let disk = dir_bytes(&data);
            let audit = dir_bytes(&audit_dir);
            let rate = n as f64 / elapsed.as_secs_f64();
            xs.push(served as f64);
            rss_points.push(rss as f64);
            disk_points.push(disk as f64);
            rates.push(rate);
            elapsed_secs.push(elapsed.as_secs_f64());
            if target.json {
                out!(
                    "{}",
                    json!({"round": round, "requests": served, "per_second": rate, "errors": errors, "rss_bytes": rss, "data_bytes": disk, "audit_bytes": audit})
                );
            } else {
                out!(
                    "{round:>5}  {served:>8}  {rate:>7.0}  {errors:>6}  {:>8.1}  {:>8.1}  {:>9.1}",
                    rss as f64 / 1048576.0,
                    disk as f64 / 1048576.0,
                    audit as f64 / 1048576.0
                );
            }
        }
        anyhow::Ok(())
    };
    tokio::select! {
        r = rounds => r?,
        _ = terminate.recv() => anyhow::bail!("soak stopped by SIGTERM (its server too)"),
        _ = tokio::signal::ctrl_c() => anyhow::bail!("soak interrupted (its server stopped)"),
    }
    let warm = a
        .warmup_rounds
        .unwrap_or(xs.len() / 3)
        .min(xs.len().saturating_sub(2));
    let rss_slope = slope(&xs[warm..], &rss_points[warm..]) * 1e6 / 1048576.0;
    let disk_per_request = (dir_bytes(&data).saturating_sub(start_disk)) as f64 / served as f64;
    // What each request adds once warmed up: the audit log grows by its records, sled's
    // files by live state and its amplification, which does not reliably settle.
    let disk_slope = slope(&xs[warm..], &disk_points[warm..]);
    let first_rate = rates[warm.min(rates.len() - 1)];
    let last_rate = rates.last().copied().unwrap_or(0.0);
    // Requests over the time spent driving them, in the rounds after warm-up.
    let mean_rate = {
        let from = warm.min(rates.len() - 1);
        let secs: f64 = elapsed_secs[from..].iter().sum();
        let before = from.checked_sub(1).map_or(0.0, |i| xs[i]);
        (served as f64 - before) / secs.max(f64::MIN_POSITIVE)
    };
    let summary = json!({
        "requests": served,
        "seconds": began.elapsed().as_secs_f64(),
        "rss_mib_final": rss_points.last().copied().unwrap_or(0.0) / 1048576.0,
        "rss_mib_per_million_after_warmup": rss_slope,
        "disk_bytes_per_request": disk_per_request,
        "disk_bytes_per_request_after_warmup": disk_slope,
        "per_second_after_warmup": mean_rate,
        "per_second_first_round_after_warmup": first_rate,
        "per_second_last_round": last_rate,
    });
    if target.json {
        out!("{summary}");
    } else {
        out!(
            "soak: {served} requests; RSS {:.1} MiB at the end, {rss_slope:+.1} MiB per million requests after warm-up; data {disk_per_request:.0} bytes per request overall, {disk_slope:.0} after warm-up; {mean_rate:.0}/s on average after warm-up, {first_rate:.0}/s in its first round, {last_rate:.0}/s in the last",
            rss_points.last().copied().unwrap_or(0.0) / 1048576.0
        );
    }
    drop(server);
    if let Some(max) = a.max_rss_mib_per_million {
        anyhow::ensure!(
            rss_slope <= max,
            "RSS grew {rss_slope:.1} MiB per million requests after warm-up (limit {max})"
        );
    }
    if let Some(max) = a.max_disk_bytes_per_request {
        anyhow::ensure!(
            disk_slope <= max,
            "the data directory grew {disk_slope:.0} bytes per request after warm-up (limit {max})"
        );
    }
    Ok(())
}
