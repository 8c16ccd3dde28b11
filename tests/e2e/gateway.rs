//! The gateway in front of a real HTTP upstream: allowed calls reach it with the injected
//! credential and without the chain or proof; everything else is refused with its reason
//! and never reaches it; a revocation cuts a holder off through the feed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mandate_core::{Chain, Clock as _, Invocation, ManualClock, SigningKey, SystemClock, keyfile};
use mandate_proto::v1 as pb;

use crate::harness::*;

const PLANNER: &str = "spiffe://mandate.local/gw/planner";
const GATEWAY: &str = "spiffe://mandate.local/gateways/billing";

/// What the upstream saw of one request: method, path and query, and its headers.
type Seen = Arc<Mutex<Vec<(String, http::HeaderMap)>>>;

/// A small HTTP API that records every request and answers with its path.
async fn upstream() -> (SocketAddr, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let target = req.uri().to_string();
                            record
                                .lock()
                                .unwrap()
                                .push((target.clone(), req.headers().clone()));
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::from(format!("upstream saw {target}")),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Registers the gateway's identity (role `tool`) and writes its key to `dir/gateway.key`.
async fn register_gateway(admin: &mut mandate_sdk::Client, dir: &std::path::Path) {
    let gateway_key = SigningKey::generate().unwrap();
    keyfile::save_signing_key(&gateway_key, &dir.join("gateway.key")).unwrap();
    admin
        .register_agent(pb::RegisterAgentRequest {
            agent_id: GATEWAY.into(),
            public_key: gateway_key.public_key().as_bytes().to_vec(),
            role: "tool".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Starts a gateway for `h`'s coordinator with its identity from `register_gateway` in
/// `dir`; `rest` is the rest of the file after the `[gateway]` keys it sets.
async fn start_gateway(h: &Harness, dir: &std::path::Path, rest: &str) -> mandate_gateway::Gateway {
    let config = format!(
        r#"[gateway]
listen = "127.0.0.1:0"
agent = "{GATEWAY}"
key = "gateway.key"
coordinator = "{coordinator}"
{rest}"#,
        coordinator = h.server().local_addr
    );
    let config =
        mandate_gateway::Config::parse(&config, std::path::Path::new("gateway.toml"), dir).unwrap();
    mandate_gateway::start(config).await.unwrap()
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    body: &'a [u8],
    chain: Option<&'a Chain>,
    proof: Option<&'a Invocation>,
}

impl<'a> Call<'a> {
    /// A GET without a body.
    fn get(path: &'a str, chain: Option<&'a Chain>, proof: Option<&'a Invocation>) -> Self {
        Call {
            method: "GET",
            path,
            body: b"",
            chain,
            proof,
        }
    }
}

/// Sends a request through the gateway; returns the status, the reason header and the body.
async fn send(gateway: SocketAddr, c: Call<'_>) -> (u16, String, String) {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = http::Request::builder()
        .method(c.method)
        .uri(format!("http://{gateway}{}", c.path));
    if let Some(chain) = c.chain {
        req = req.header(mandate_gateway::HEADER_CHAIN, chain.to_text());
    }
    if let Some(proof) = c.proof {
        req = req.header(mandate_gateway::HEADER_INVOCATION, proof.to_text());
    }
    let resp = client
        .request(req.body(Full::new(Bytes::copy_from_slice(c.body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let reason = resp
        .headers()
        .get(mandate_gateway::HEADER_REASON)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    (status, reason, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_forwards_only_permitted_calls_with_the_upstream_credential() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let dir = tempfile::tempdir().unwrap();
    register_gateway(&mut admin, dir.path()).await;
    let (planner_key, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    std::fs::write(dir.path().join("billing.secret"), "s3cret\n").unwrap();
    let (upstream_addr, seen) = upstream().await;
    let gateway = start_gateway(
        &h,
        dir.path(),
        &format!(
            r#"max_body_bytes = 1024
spool_file = "decisions.spool"

[[upstream]]
name = "billing"
url = "http://{upstream_addr}"
credential = {{ file = "billing.secret" }}

[[upstream.route]]
method = "GET"
path = "/invoices/{{id}}"
action = "read"
resource = "billing/invoices/{{id}}"

[[upstream.route]]
method = "POST"
path = "/refunds/{{id}}"
action = "write"
resource = "billing/refunds/{{id}}"
"#
        ),
    )
    .await;
    let gw = gateway.local_addr;

    // The planner may read invoices, and refund nothing.
    let started = planner
        .start_task(pb::StartTaskRequest {
            capabilities: vec![cap_pb("billing/invoices/*", &["read"])],
            ttl_ms: 5 * 60_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let chain = decode(&started.chain);
    let params = |id: &str| BTreeMap::from([("id".to_owned(), id.to_owned())]);
    let proof_for = |action: &str,
                     resource: &str,
                     id: &str,
                     method: &str,
                     path: &str,
                     query: &str,
                     body: &[u8],
                     audience: &str| {
        let call =
            mandate_gateway::http_call(action, resource, &params(id), method, path, query, body);
        Invocation::sign(&planner_key, &chain, audience, call, h.now()).unwrap()
    };
    let read = |id: &str| {
        proof_for(
            "read",
            "billing/invoices/{id}",
            id,
            "GET",
            &format!("/billing/invoices/{id}"),
            "",
            b"",
            GATEWAY,
        )
    };

    // Allowed: the upstream answers, having seen the credential and none of Mandate's headers.
    let proof = read("42");
    let (status, reason, body) = send(
        gw,
        Call::get("/billing/invoices/42", Some(&chain), Some(&proof)),
    )
    .await;
    assert_eq!(
        (status, reason.as_str(), body.as_str()),
        (200, "", "upstream saw /invoices/42")
    );
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let headers = &seen[0].1;
        assert_eq!(headers["authorization"], "Bearer s3cret");
        assert!(
            headers
                .keys()
                .all(|k| !k.as_str().starts_with("x-mandate-")),
            "{headers:?}"
        );
    }

    // Refused, each with its reason, and none of them reaches the upstream.
    let replay = send(
        gw,
        Call::get("/billing/invoices/42", Some(&chain), Some(&proof)),
    )
    .await;
    assert_eq!((replay.0, replay.1.as_str()), (403, "REPLAYED"));
    let other_invoice = read("43");
    let swapped = send(
        gw,
        Call::get("/billing/invoices/42", Some(&chain), Some(&other_invoice)),
    )
    .await;
    assert_eq!(
        (swapped.0, swapped.1.as_str()),
        (403, "INVOCATION_MISMATCH")
    );
    let refund = proof_for(
        "write",
        "billing/refunds/{id}",
        "7",
        "POST",
        "/billing/refunds/7",
        "",
        b"{}",
        GATEWAY,
    );
    let refused = send(
        gw,
        Call {
            method: "POST",
            path: "/billing/refunds/7",
            body: b"{}",
            chain: Some(&chain),
            proof: Some(&refund),
        },
    )
    .await;
    assert_eq!((refused.0, refused.1.as_str()), (403, "NOT_PERMITTED"));
    let elsewhere = proof_for(
        "read",
        "billing/invoices/{id}",
        "42",
        "GET",
        "/billing/invoices/42",
        "",
        b"",
        "spiffe://mandate.local/gateways/other",
    );
    let wrong = send(
        gw,
        Call::get("/billing/invoices/42", Some(&chain), Some(&elsewhere)),
    )
    .await;
    assert_eq!((wrong.0, wrong.1.as_str()), (403, "WRONG_AUDIENCE"));
    let bare = send(gw, Call::get("/billing/invoices/42", None, None)).await;
    assert_eq!((bare.0, bare.1.as_str()), (401, "MANDATE_REQUIRED"));
    let fresh = read("42");
    let big = send(
        gw,
        Call {
            method: "GET",
            path: "/billing/invoices/42",
            body: &[b'x'; 2048],
            chain: Some(&chain),
            proof: Some(&fresh),
        },
    )
    .await;
    assert_eq!((big.0, big.1.as_str()), (413, "REQUEST_TOO_LARGE"));
    let nowhere = send(
        gw,
        Call {
            method: "DELETE",
            path: "/billing/invoices/42",
            body: b"",
            chain: Some(&chain),
            proof: Some(&fresh),
        },
    )
    .await;
    assert_eq!((nowhere.0, nowhere.1.as_str()), (404, "NO_SUCH_ROUTE"));
    let garbage = send(gw, Call::get("/billing/invoices/42", Some(&chain), None)).await;
    assert_eq!(garbage.0, 401);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "a refused call reached the upstream"
    );

    // Revoking the root cuts the planner off through the feed.
    planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: chain.root().id().to_string(),
            reason: "gateway test".into(),
        })
        .await
        .unwrap();
    let mut last = (0, String::new(), String::new());
    for _ in 0..200 {
        last = send(
            gw,
            Call::get("/billing/invoices/42", Some(&chain), Some(&read("42"))),
        )
        .await;
        if last.1 == "REVOKED" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!((last.0, last.1.as_str()), (403, "REVOKED"));
    // Shutting down delivers the offline decisions still waiting: every one the verifier
    // made is in the coordinator's audit log, with the gateway as actor.
    gateway.shutdown().await;
    assert_eq!(
        std::fs::metadata(dir.path().join("decisions.spool"))
            .unwrap()
            .len(),
        0,
        "every spooled decision was delivered"
    );
    let log = admin
        .query_audit_log(pb::QueryAuditLogRequest {
            filter: Some(pb::AuditFilter {
                agent_id: GATEWAY.into(),
                action_prefix: "invocation.offline_".into(),
                ..Default::default()
            }),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let reasons: std::collections::BTreeSet<(String, String)> = log
        .records
        .iter()
        .map(|r| (r.action.clone(), r.reason.clone()))
        .collect();
    for expected in [
        ("invocation.offline_allowed", "OK"),
        ("invocation.offline_denied", "REPLAYED"),
        ("invocation.offline_denied", "INVOCATION_MISMATCH"),
        ("invocation.offline_denied", "NOT_PERMITTED"),
        ("invocation.offline_denied", "WRONG_AUDIENCE"),
        ("invocation.offline_denied", "REVOKED"),
    ] {
        assert!(
            reasons.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} missing from {reasons:?}"
        );
    }
    let allowed = log
        .records
        .iter()
        .find(|r| r.action == "invocation.offline_allowed")
        .unwrap();
    assert_eq!(allowed.detail["holder"], PLANNER);
    assert_eq!(allowed.detail["resource"], "billing/invoices/42");
    assert_eq!(allowed.task_id, chain.task().to_string());
}

/// A route marked `online = true` is decided by `Authorize`: the coordinator's Cedar
/// `Invoke` policy sees the path parameter as the signal `arg.id` and forbids one invoice,
/// which no offline check could; the allowed call is in the coordinator's audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_route_is_decided_by_the_coordinators_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policies");
    crate::policy::copy_set("team", &policy_dir);
    std::fs::write(
        policy_dir.join("sealed.cedar"),
        r#"@id("billing.sealed-invoice")
@reason("invoice 13 is sealed")
forbid (principal, action == Mandate::Action::"Invoke", resource)
when { context.signals.hasTag("arg.id") && context.signals.getTag("arg.id") == "13" };
"#,
    )
    .unwrap();
    let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
    let pd = policy_dir.clone();
    let h = Harness::start_configured(dir, clock, move |c| c.policy_dir = Some(pd)).await;
    let mut admin = h.admin.clone();
    let work = tempfile::tempdir().unwrap();
    register_gateway(&mut admin, work.path()).await;
    let (planner_key, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let (upstream_addr, seen) = upstream().await;
    let gateway = start_gateway(
        &h,
        work.path(),
        &format!(
            r#"
[[upstream]]
name = "billing"
url = "http://{upstream_addr}"

[[upstream.route]]
method = "GET"
path = "/invoices/{{id}}"
action = "read"
resource = "reports/invoices/{{id}}"
online = true
"#
        ),
    )
    .await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            intent: Some(pb::Intent {
                text: "reconcile invoices".into(),
                ..Default::default()
            }),
            capabilities: vec![cap_pb("reports/invoices/*", &["read"])],
            ttl_ms: 5 * 60_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let chain = decode(&started.chain);
    let get = |id: &str| {
        let path = format!("/billing/invoices/{id}");
        let call = mandate_gateway::http_call(
            "read",
            "reports/invoices/{id}",
            &BTreeMap::from([("id".to_owned(), id.to_owned())]),
            "GET",
            &path,
            "",
            b"",
        );
        (
            path,
            Invocation::sign(&planner_key, &chain, GATEWAY, call, h.now()).unwrap(),
        )
    };
    let (path, proof) = get("42");
    let (status, reason, _) = send(
        gateway.local_addr,
        Call::get(&path, Some(&chain), Some(&proof)),
    )
    .await;
    assert_eq!((status, reason.as_str()), (200, ""));
    let (path, proof) = get("13");
    let (status, reason, body) = send(
        gateway.local_addr,
        Call::get(&path, Some(&chain), Some(&proof)),
    )
    .await;
    assert_eq!((status, reason.as_str()), (403, "POLICY_DENIED"), "{body}");
    assert!(body.contains("invoice 13 is sealed"), "{body}");
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the refused call reached the API"
    );
    // Both decisions are in the coordinator's audit log, made by the gateway (Authorize
    // records are committed in batches: poll).
    let mut actions = Vec::new();
    for _ in 0..500 {
        let log = admin
            .query_audit_log(pb::QueryAuditLogRequest {
                filter: Some(pb::AuditFilter {
                    agent_id: GATEWAY.into(),
                    action_prefix: "invocation.".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        actions = log.records.iter().map(|r| r.action.clone()).collect();
        if actions.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        actions,
        ["invocation.authorized", "invocation.denied"],
        "the gateway's online decisions"
    );
    gateway.shutdown().await;
}

/// A small MCP server over streamable HTTP (JSON answers): `tools/list` offers
/// `read_file` and `delete_file`; `tools/call` records the call it ran. It records every
/// body it receives.
async fn mcp_upstream() -> (SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let record = Arc::clone(&record);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        let record = Arc::clone(&record);
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let msg: serde_json::Value =
                                serde_json::from_slice(&body).unwrap_or_default();
                            record.lock().unwrap().push(msg.clone());
                            let result = match msg["method"].as_str() {
                                Some("initialize") => serde_json::json!({
                                    "protocolVersion": "2025-06-18",
                                    "capabilities": {"tools": {}},
                                    "serverInfo": {"name": "files", "version": "1"}
                                }),
                                Some("tools/list") => serde_json::json!({"tools": [
                                    {"name": "read_file", "inputSchema": {"type": "object"}},
                                    {"name": "delete_file", "inputSchema": {"type": "object"}}
                                ]}),
                                Some("tools/call") => serde_json::json!({"content": [
                                    {"type": "text", "text": format!("ran {}", msg["params"]["name"])}
                                ]}),
                                _ => serde_json::json!({}),
                            };
                            let answer = serde_json::json!({"jsonrpc": "2.0", "id": msg["id"], "result": result});
                            let mut resp =
                                http::Response::new(Full::new(Bytes::from(answer.to_string())));
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A Rust agent calls an MCP server through the gateway: the list shows only the granted
/// tool, the granted call runs with Mandate's tokens removed, a call outside the chain and
/// a call whose `Mcp-Name` header disagrees with its body never reach the server, and the
/// server's event stream needs a live chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_agent_calls_an_mcp_server_through_the_gateway() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let dir = tempfile::tempdir().unwrap();
    register_gateway(&mut admin, dir.path()).await;
    let (planner_key, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let (server, seen) = mcp_upstream().await;
    let gateway = start_gateway(
        &h,
        dir.path(),
        &format!(
            r#"
[[upstream]]
name = "files"
kind = "mcp"
url = "http://{server}/mcp"
"#
        ),
    )
    .await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            capabilities: vec![cap_pb("mcp/files/read_file", &["call"])],
            ttl_ms: 5 * 60_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let chain = decode(&started.chain);
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let post = |msg: serde_json::Value, headers: Vec<(&'static str, String)>| {
        let mut req = http::Request::post(format!("http://{}/files", gateway.local_addr))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::from(msg.to_string()))).unwrap();
        let client = client.clone();
        async move {
            let resp = client.request(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        }
    };
    let call = |tool: &str, args: serde_json::Value| {
        let args = args.as_object().unwrap().clone();
        let call = mandate_gateway::mcp::mcp_call("files", tool, &args);
        let proof = Invocation::sign(&planner_key, &chain, GATEWAY, call, h.now()).unwrap();
        serde_json::json!({
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": {
                mandate_gateway::mcp::META_CHAIN: chain.to_text(),
                mandate_gateway::mcp::META_INVOCATION: proof.to_text(),
            }}
        })
    };

    let init = post(
        serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}),
        vec![],
    )
    .await;
    assert_eq!(init["result"]["serverInfo"]["name"], "files");
    let list = post(
        serde_json::json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        vec![(mandate_gateway::HEADER_CHAIN, chain.to_text())],
    )
    .await;
    assert_eq!(
        list["result"]["tools"],
        serde_json::json!([{"name": "read_file", "inputSchema": {"type": "object"}}])
    );
    let ran = post(
        call("read_file", serde_json::json!({"path": "reports/q3.pdf"})),
        vec![],
    )
    .await;
    assert_eq!(ran["result"]["content"][0]["text"], "ran \"read_file\"");
    let forwarded = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(forwarded["params"]["arguments"]["path"], "reports/q3.pdf");
    assert!(
        forwarded["params"].get("_meta").is_none(),
        "Mandate's tokens reached the server: {forwarded}"
    );
    let before = seen.lock().unwrap().len();
    let refused = post(
        call("delete_file", serde_json::json!({"path": "x"})),
        vec![],
    )
    .await;
    assert_eq!(refused["error"]["data"]["reason"], "NOT_PERMITTED");
    assert_eq!(refused["error"]["code"], -32001);
    let mismatch = post(
        call("read_file", serde_json::json!({"path": "reports/q3.pdf"})),
        vec![("mcp-name", "delete_file".to_owned())],
    )
    .await;
    assert_eq!(mismatch["error"]["data"]["reason"], "HEADER_MISMATCH");
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "a refused call reached the server"
    );
    let (status, reason, _) = send(gateway.local_addr, Call::get("/files", None, None)).await;
    assert_eq!((status, reason.as_str()), (401, "MANDATE_REQUIRED"));
    gateway.shutdown().await;
}
