//! The tool side: `MandateLayer` in front of a real tonic tool service, with
//! `ToolVerifier` following the feed: allowed, denied, revoked while connected, and a stale
//! feed (fail closed, or ask online).

use std::time::Duration;

use mandate_core::{Call, Chain, Invocation, LinkSpec, SigningKey};
use mandate_examples::files::file_store_client::FileStoreClient;
use mandate_examples::files::{ReadRequest, WriteRequest};
use mandate_examples::{FileStoreTool, serve_tool};
use mandate_proto::v1 as pb;
use mandate_sdk::{ToolConfig, ToolVerifier, WhenStale, attach};
use tonic::transport::Channel;

use crate::harness::*;

const TOOL: &str = "spiffe://mandate.local/tools/files";
const PLANNER: &str = "spiffe://mandate.local/p";
const WORKER: &str = "spiffe://mandate.local/w";

fn reason(s: &tonic::Status) -> String {
    mandate_sdk::Error::from(s.clone()).reason().to_owned()
}

struct Tool {
    client: FileStoreClient<Channel>,
    verifier: ToolVerifier,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn tool(h: &Harness, when_stale: WhenStale) -> Tool {
    let mut admin = h.admin.clone();
    let key = SigningKey::generate().unwrap();
    if admin
        .register_agent(pb::RegisterAgentRequest {
            agent_id: TOOL.into(),
            public_key: key.public_key().as_bytes().to_vec(),
            role: "tool".into(),
            ..Default::default()
        })
        .await
        .is_err()
    {
        panic!("tool registration failed");
    }
    let mut config = ToolConfig::new(TOOL);
    config.when_stale = when_stale;
    config.max_staleness = Duration::from_secs(5);
    let verifier = ToolVerifier::connect(h.client(TOOL, &key), config)
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, task) = serve_tool(
        ([127, 0, 0, 1], 0).into(),
        verifier.clone(),
        FileStoreTool::default(),
        async {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Tool {
        client: FileStoreClient::new(channel),
        verifier,
        stop,
        task,
    }
}

fn proof<T>(
    h: &Harness,
    key: &SigningKey,
    chain: &Chain,
    msg: T,
    action: &str,
    resource: &str,
) -> tonic::Request<T> {
    let inv = Invocation::sign(key, chain, TOOL, Call::new(action, resource), h.now()).unwrap();
    let mut req = tonic::Request::new(msg);
    attach(&mut req, chain, &inv).unwrap();
    req
}

async fn task_with_worker(
    h: &Harness,
    require_online: bool,
) -> (mandate_sdk::Client, Chain, SigningKey, Chain) {
    let mut admin = h.admin.clone();
    let (pkey, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            capabilities: vec![cap_pb("files/*", &["read", "write"])],
            ttl_ms: 10 * 60_000,
            max_depth: 1,
            require_online,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = decode(&started.chain);
    let (wkey, _) = h.register(&mut planner, WORKER, "worker", PLANNER).await;
    let now = h.now();
    let spec = LinkSpec::new(
        wkey.public_key(),
        WORKER.parse().unwrap(),
        vec![cap("files/docs/*", &["read"])],
        now,
        now + 5 * 60_000,
    )
    .unwrap()
    .require_seal(true)
    .require_online(require_online);
    let chain = planner.delegate(&root, spec).await.unwrap();
    let _ = pkey;
    (planner, root, wkey, chain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_allows_denies_and_cuts_off_a_revoked_worker_while_connected() {
    let h = Harness::start().await;
    let mut t = tool(&h, WhenStale::FailClosed).await;
    let (mut planner, root, wkey, chain) = task_with_worker(&h, false).await;

    // No proof at all.
    let s = t
        .client
        .read(ReadRequest {
            path: "docs/a".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (tonic::Code::PermissionDenied, "MALFORMED")
    );
    // Allowed: the worker reads within its scope (the file does not exist yet: NOT_FOUND
    // comes from the tool itself, after authorisation).
    let r = t
        .client
        .read(proof(
            &h,
            &wkey,
            &chain,
            ReadRequest {
                path: "docs/a".into(),
            },
            "read",
            "files/docs/a",
        ))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::NotFound);
    // Denied: write is not delegated.
    let s = t
        .client
        .write(proof(
            &h,
            &wkey,
            &chain,
            WriteRequest {
                path: "docs/a".into(),
                content: vec![1],
            },
            "write",
            "files/docs/a",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "NOT_PERMITTED");
    // Denied: the proof names another file than the one requested.
    let s = t
        .client
        .read(proof(
            &h,
            &wkey,
            &chain,
            ReadRequest {
                path: "docs/secret".into(),
            },
            "read",
            "files/docs/a",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "INVOCATION_MISMATCH");
    // Denied: a proof for the wrong action for this method.
    let s = t
        .client
        .read(proof(
            &h,
            &wkey,
            &chain,
            ReadRequest {
                path: "docs/a".into(),
            },
            "write",
            "files/docs/a",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "INVOCATION_MISMATCH");

    // Revoked while connected: the planner revokes its own link, the root. The feed names
    // only the root (not the worker's link it covers), and that is enough: the next call
    // is refused offline, because the worker's chain contains the root.
    let revoked = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: root.root().id().to_string(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    assert!(
        revoked
            .revoked_link_ids
            .contains(&chain.leaf().id().to_string()),
        "the response names every link cut, descendants included"
    );
    for _ in 0..400 {
        if t.verifier.epoch() >= revoked.revocation_epoch {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        t.verifier.epoch() >= revoked.revocation_epoch,
        "the feed never delivered the revocation"
    );
    let s = t
        .client
        .read(proof(
            &h,
            &wkey,
            &chain,
            ReadRequest {
                path: "docs/a".into(),
            },
            "read",
            "files/docs/a",
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "REVOKED");
    let _ = t.stop.send(());
    t.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_feed_fails_closed_or_goes_online_and_online_only_chains_always_go_online() {
    let mut h = Harness::start().await;
    let mut closed = tool(&h, WhenStale::FailClosed).await;
    let (_planner, _root, wkey, chain) = task_with_worker(&h, false).await;
    let req = proof(
        &h,
        &wkey,
        &chain,
        ReadRequest {
            path: "docs/a".into(),
        },
        "read",
        "files/docs/a",
    );
    assert_eq!(
        closed.client.read(req).await.unwrap_err().code(),
        tonic::Code::NotFound,
        "allowed while fresh"
    );

    // Online-only chains are decided by the coordinator even with a fresh feed.
    let (_p2, _r2, wkey2, online_chain) = {
        let h2 = &h;
        let mut admin = h2.admin.clone();
        let (_, mut planner) = h2
            .register(&mut admin, "spiffe://mandate.local/p2", "planner", "")
            .await;
        let started = planner
            .start_task(pb::StartTaskRequest {
                signals: Default::default(),
                capabilities: vec![cap_pb("files/*", &["read"])],
                ttl_ms: 60_000,
                max_depth: 1,
                require_online: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let root = decode(&started.chain);
        let (wkey, _) = h2
            .register(
                &mut planner,
                "spiffe://mandate.local/w2",
                "worker",
                "spiffe://mandate.local/p2",
            )
            .await;
        let now = h2.now();
        let spec = LinkSpec::new(
            wkey.public_key(),
            "spiffe://mandate.local/w2".parse().unwrap(),
            vec![cap("files/docs/*", &["read"])],
            now,
            now + 60_000,
        )
        .unwrap()
        .require_seal(true)
        .require_online(true);
        let chain = planner.delegate(&root, spec).await.unwrap();
        (planner, root, wkey, chain)
    };
    let before = h.server().coordinator().store().audit_head().unwrap().0;
    let req = proof(
        &h,
        &wkey2,
        &online_chain,
        ReadRequest {
            path: "docs/a".into(),
        },
        "read",
        "files/docs/a",
    );
    assert_eq!(
        closed.client.read(req).await.unwrap_err().code(),
        tonic::Code::NotFound,
        "allowed online"
    );
    let audit = h
        .server()
        .coordinator()
        .store()
        .audit_after(before, 10)
        .unwrap();
    assert!(
        audit
            .iter()
            .any(|r| r.event.action == "invocation.authorized"),
        "the coordinator decided"
    );

    // The coordinator goes away: no more feed. Past the staleness bound, fail closed.
    let clock = h.clock.clone();
    h.server.take().unwrap().shutdown().await.unwrap();
    clock.advance(6_000);
    let req = proof(
        &h,
        &wkey,
        &chain,
        ReadRequest {
            path: "docs/a".into(),
        },
        "read",
        "files/docs/a",
    );
    let s = closed.client.read(req).await.unwrap_err();
    assert_eq!(reason(&s), "FEED_STALE");
    let _ = closed.stop.send(());
    closed.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verifier_reconnects_after_a_coordinator_restart_and_resumes_by_epoch() {
    let h = Harness::start().await;
    let t = tool(&h, WhenStale::FailClosed).await;
    let (_planner, root, wkey, chain) = task_with_worker(&h, false).await;
    let addr = h.server().local_addr;
    let epoch_before = t.verifier.epoch();
    // Restart the coordinator on the same address.
    let Harness {
        server, dir, clock, ..
    } = h;
    server.unwrap().shutdown().await.unwrap();
    let h = Harness::start_configured(dir, clock, |c| c.listen = addr).await;
    // A revocation made after the restart reaches the verifier through its new stream: the
    // root's, which covers the worker's link (not itself on the feed).
    let r = h
        .admin
        .clone()
        .revoke_link(pb::RevokeLinkRequest {
            link_id: root.root().id().to_string(),
            reason: "after restart".into(),
        })
        .await
        .unwrap();
    assert!(r.revoked_link_ids.contains(&chain.leaf().id().to_string()));
    assert!(r.revocation_epoch > epoch_before);
    let mut applied = false;
    for _ in 0..1000 {
        if t.verifier.epoch() >= r.revocation_epoch {
            applied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(applied, "the verifier never resumed the feed");
    let call = Call::new("read", "files/docs/a");
    let inv = Invocation::sign(&wkey, &chain, TOOL, call.clone(), h.now()).unwrap();
    let d = t
        .verifier
        .authorize(&chain.encode(), &inv.encode(), &call)
        .await;
    assert_eq!(
        (d.allowed, d.reason.as_str(), d.online),
        (false, "REVOKED", false)
    );
    let _ = t.stop.send(());
    t.task.await.unwrap();
    h.server.unwrap().shutdown().await.unwrap();
}
