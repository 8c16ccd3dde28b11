//! `mandate-bench gateway`: the same GET requests sent straight to a small Rust HTTP
//! upstream and through `mandate gateway` in front of it (offline decisions, one cached
//! chain, a fresh proof per request, prepared before the clock starts), in one run, so the
//! gateway's cost is the difference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mandate_core::{Chain, Invocation, keyfile};
use serde_json::json;

use crate::Target;
use crate::load::{World, register, report, start_task_on};

/// A tiny HTTP API: answers every request with a short body.
async fn upstream() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |_req: http::Request<hyper::body::Incoming>| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"{\"ok\":true}"),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Sends prepared requests with `concurrency` in flight; returns the elapsed time, the
/// latencies and the count of answers other than 200.
async fn drive(
    requests: Vec<http::Request<Full<Bytes>>>,
    concurrency: usize,
) -> anyhow::Result<(Duration, Vec<Duration>, usize)> {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient<_, Full<Bytes>> = HttpClient::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let queue = Arc::clone(&queue);
        let client = client.clone();
        workers.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop();
                let Some(req) = next else { break };
                let t = Instant::now();
                let ok = match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status() == http::StatusCode::OK;
                        ok && resp.into_body().collect().await.is_ok()
                    }
                    Err(_) => false,
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

fn p50(lat: &[Duration]) -> f64 {
    let mut sorted = lat.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len() / 2)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

pub(crate) async fn run(
    w: &mut World,
    requests: usize,
    concurrency: usize,
    target: &Target,
) -> anyhow::Result<()> {
    let upstream = upstream().await?;
    let dir = tempfile::tempdir()?;
    let (gateway_id, gateway_key, _) = register(w, "gateway", "tool").await?;
    keyfile::save_signing_key(&gateway_key, &dir.path().join("gateway.key"))?;
    let (_, planner_key, planner) = register(w, "planner", "planner").await?;
    let config = format!(
        r#"
[gateway]
listen = "127.0.0.1:0"
agent = "{gateway_id}"
key = "gateway.key"
coordinator = "{coordinator}"
max_requests_per_minute = 0
max_calls_per_holder_per_minute = 0

[[upstream]]
name = "items"
url = "http://{upstream}"

[[upstream.route]]
method = "GET"
path = "/{{id}}"
action = "read"
resource = "bench/items/{{id}}"
"#,
        coordinator = w.endpoint,
    );
    let config =
        mandate_gateway::Config::parse(&config, std::path::Path::new("gateway.toml"), dir.path())?;
    let gateway = mandate_gateway::start(config).await?;
    let chain: Chain = start_task_on(w, planner, "bench/items/*", &["read"]).await?;
    let chain_text = chain.to_text();
    let now = w.clock.now_ms();
    let mut through = Vec::with_capacity(requests);
    let mut direct = Vec::with_capacity(requests);
    for i in 0..requests {
        let id = i.to_string();
        let path = format!("/items/{id}");
        let call = mandate_gateway::http_call(
            "read",
            "bench/items/{id}",
            &BTreeMap::from([("id".to_owned(), id.clone())]),
            "GET",
            &path,
            "",
            b"",
        );
        let proof = Invocation::sign(&planner_key, &chain, &gateway_id, call, now)?;
        through.push(
            http::Request::get(format!("http://{}{path}", gateway.local_addr))
                .header(mandate_gateway::HEADER_CHAIN, chain_text.as_str())
                .header(mandate_gateway::HEADER_INVOCATION, proof.to_text())
                .body(Full::new(Bytes::new()))?,
        );
        // The same request, straight to the API (with headers of the same size).
        direct.push(
            http::Request::get(format!("http://{upstream}/{id}"))
                .header("x-chain", chain_text.as_str())
                .header("x-invocation", proof.to_text())
                .body(Full::new(Bytes::new()))?,
        );
    }
    let (t_direct, lat_direct, e_direct) = drive(direct, concurrency).await?;
    let (t_gateway, lat_gateway, e_gateway) = drive(through, concurrency).await?;
    let rate = |t: Duration, n: usize| n as f64 / t.as_secs_f64();
    let extra = json!({
        "concurrency": concurrency,
        "direct_per_second": rate(t_direct, lat_direct.len()),
        "direct_p50_us": p50(&lat_direct),
        "added_p50_us": p50(&lat_gateway) - p50(&lat_direct),
        "throughput_vs_direct": rate(t_gateway, lat_gateway.len()) / rate(t_direct, lat_direct.len()),
    });
    report(
        target,
        "direct (GET to a Rust HTTP upstream)",
        t_direct,
        lat_direct,
        e_direct,
        serde_json::Value::Null,
    );
    report(
        target,
        "gateway (the same GETs through mandate gateway, offline, depth-1 chain, fresh proofs)",
        t_gateway,
        lat_gateway,
        e_gateway,
        extra,
    );
    gateway.shutdown().await;
    Ok(())
}
