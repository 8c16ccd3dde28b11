//! Prometheus metrics scraped by a real Prometheus (Debian's `prometheus` package, which
//! `.ci/setup` installs): a coordinator with `metrics_listen`, some traffic, then Prometheus'
//! own query API must return the series with the values the traffic implies.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use mandate_proto::v1 as pb;

use crate::harness::{Harness, cap_pb};

async fn get(url: &str) -> Option<(u16, String)> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let response = client.get(url.parse().ok()?).await.ok()?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Kills the Prometheus it started when the test ends, however it ends.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn start_prometheus(dir: &std::path::Path, target: SocketAddr) -> (Prometheus, u16) {
    let binary = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "the metrics test scrapes with a real Prometheus: install Debian's `prometheus` \
             package (`.ci/setup` does: apt-get install prometheus)",
        );
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: mandate\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Prometheus(child), port)
}

/// Polls Prometheus' query API until `query` returns one sample satisfying `ok`.
async fn query_until(port: u16, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    let mut last = String::new();
    for _ in 0..400 {
        if let Some((200, body)) = get(&url).await {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if let Some(value) = v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                && ok(value)
            {
                return value;
            }
            last = body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("Prometheus never answered `{query}` as expected; last answer: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let h = Harness::start_configured(dir, clock, |c| {
        c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let target = h.server().metrics_addr.unwrap();

    // Traffic: a planner with a live task (one live link), a refused call, an Authorize
    // denial, and a feed follower.
    let mut admin = h.admin.clone();
    let (_, mut planner) = h
        .register(&mut admin, "spiffe://mandate.local/planner", "planner", "")
        .await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            capabilities: vec![cap_pb("files/reports/*", &["read"])],
            ttl_ms: 600_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        planner
            .register_agent(pb::RegisterAgentRequest::default())
            .await
            .is_err()
    );
    let (_, mut tool) = h
        .register(&mut admin, "spiffe://mandate.local/tool", "tool", "")
        .await;
    let denied = tool
        .authorize(pb::AuthorizeRequest {
            chain: started.chain.clone(),
            invocation: b"not a proof".to_vec(),
            action: "read".into(),
            resource: "files/reports/a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!denied.allowed);
    let _feed = tool
        .watch_revocations(pb::WatchRevocationsRequest {
            after_epoch: 0,
            ..Default::default()
        })
        .await
        .unwrap();

    // The exposition itself.
    let (status, text) = get(&format!("http://{target}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    assert!(text.contains("grpc_server_handled_total{grpc_service=\"mandate.v1.TaskService\",grpc_method=\"StartTask\",grpc_code=\"OK\"} 1"), "{text}");
    assert_eq!(get(&format!("http://{target}/other")).await.unwrap().0, 404);
    // Every bounded in-memory structure reports its size.
    for structure in [
        "request_nonces",
        "prepared_keys",
        "quota_rate_buckets",
        "revocations",
        "verified_links",
        "invocation_nonces",
    ] {
        assert!(
            text.contains(&format!(
                "mandate_memory_entries{{structure=\"{structure}\"}}"
            )),
            "{structure}: {text}"
        );
    }
    // The signed requests above are in the replay window.
    assert!(!text.contains("mandate_memory_entries{structure=\"request_nonces\"} 0\n"));
    // What the store keeps on disk, by part: sled's files and the audit log (the journal
    // holds the records of the calls above).
    for part in ["state", "audit"] {
        let prefix = format!("mandate_store_disk_bytes{{part=\"{part}\"}} ");
        let bytes: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("{part}: {text}"))
            .parse()
            .unwrap();
        assert!(bytes > 0.0, "{part}: {bytes}");
    }

    let prom_dir = tempfile::tempdir().unwrap();
    let (_prometheus, port) = start_prometheus(prom_dir.path(), target);
    assert_eq!(
        query_until(port, "up{job=\"mandate\"}", |v| v == 1.0).await,
        1.0
    );
    query_until(
        port,
        "grpc_server_handled_total{grpc_method=\"StartTask\",grpc_code=\"OK\"}",
        |v| v == 1.0,
    )
    .await;
    query_until(
        port,
        "sum(grpc_server_handled_total{grpc_method=\"RegisterAgent\",grpc_code!=\"OK\"})",
        |v| v == 1.0,
    )
    .await;
    query_until(
        port,
        "mandate_authorize_decisions_total{decision=\"deny\",reason=\"MALFORMED\"}",
        |v| v == 1.0,
    )
    .await;
    query_until(port, "mandate_links_live", |v| v == 1.0).await;
    query_until(port, "mandate_tasks_active", |v| v == 1.0).await;
    query_until(port, "mandate_agents{status=\"active\"}", |v| v == 3.0).await;
    let remaining = query_until(port, "mandate_link_longest_remaining_seconds", |v| v > 0.0).await;
    assert!(remaining <= 600.0, "{remaining}");
    query_until(port, "mandate_feed_followers", |v| v == 1.0).await;
    query_until(port, "mandate_store_flush_seconds_count", |v| v >= 1.0).await;
    query_until(port, "mandate_store_disk_bytes{part=\"audit\"}", |v| {
        v > 0.0
    })
    .await;
    query_until(
        port,
        "grpc_server_handling_seconds_count{grpc_method=\"Authorize\"}",
        |v| v == 1.0,
    )
    .await;
    query_until(port, "mandate_store_flush_group_size_count", |v| v >= 1.0).await;
}
