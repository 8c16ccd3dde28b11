//! Bad input gets a clear status and changes nothing: unsigned, badly signed, stale and
//! replayed requests, unknown agents, malformed fields and oversized chains.

use mandate_core::{RequestAuth, SigningKey};
use mandate_proto::v1 as pb;
use mandate_proto::v1::agent_service_client::AgentServiceClient;
use mandate_proto::v1::task_service_client::TaskServiceClient;

use crate::harness::*;

/// A fingerprint of everything a mutation could touch.
fn state(h: &Harness) -> (usize, usize, u64, usize) {
    let s = h.server().coordinator().store();
    (
        s.agents(None, 10_000).unwrap().len(),
        s.tasks(None, 10_000).unwrap().len(),
        s.epoch().unwrap(),
        s.audit_after(0, 100_000).unwrap().len(),
    )
}

fn reason(s: &tonic::Status) -> String {
    mandate_sdk::Error::from(s.clone()).reason().to_owned()
}

fn register_req(id: &str) -> pb::RegisterAgentRequest {
    pb::RegisterAgentRequest {
        agent_id: id.into(),
        public_key: SigningKey::generate()
            .unwrap()
            .public_key()
            .as_bytes()
            .to_vec(),
        role: "worker".into(),
        ..Default::default()
    }
}

const METHOD: &str = "/mandate.v1.AgentService/RegisterAgent";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let before = state(&h);
    let mut raw = AgentServiceClient::new(h.channel.clone());
    let admin_key = mandate_core::keyfile::load_signing_key(&h.server().admin_key_path).unwrap();
    let admin_id = h.server().admin_id.clone();

    // No signature at all.
    let s = raw
        .register_agent(register_req("spiffe://mandate.local/x"))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (tonic::Code::Unauthenticated, "UNSIGNED_REQUEST")
    );

    let signed = |key: &SigningKey, agent: &str, msg: &pb::RegisterAgentRequest, ts: u64| {
        let auth =
            RequestAuth::sign(key, agent, METHOD, &prost::Message::encode_to_vec(msg), ts).unwrap();
        let mut req = tonic::Request::new(msg.clone());
        for (k, v) in auth.header_values() {
            req.metadata_mut().insert(k, v.parse().unwrap());
        }
        req
    };
    let msg = register_req("spiffe://mandate.local/x");
    // Signed by the wrong key.
    let s = raw
        .register_agent(signed(
            &SigningKey::generate().unwrap(),
            &admin_id,
            &msg,
            h.now(),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (tonic::Code::Unauthenticated, "BAD_REQUEST_SIGNATURE")
    );
    // Signed over different bytes (the message was changed after signing).
    let mut req = signed(&admin_key, &admin_id, &msg, h.now());
    req.get_mut().role = "admin".into();
    let s = raw.register_agent(req).await.unwrap_err();
    assert_eq!(reason(&s), "BAD_REQUEST_SIGNATURE");
    // Stale and future timestamps.
    let s = raw
        .register_agent(signed(&admin_key, &admin_id, &msg, h.now() - 61_000))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "STALE_REQUEST");
    let s = raw
        .register_agent(signed(&admin_key, &admin_id, &msg, h.now() + 31_000))
        .await
        .unwrap_err();
    assert_eq!(reason(&s), "STALE_REQUEST");
    // An agent nobody registered.
    let stranger = SigningKey::generate().unwrap();
    let s = raw
        .register_agent(signed(
            &stranger,
            "spiffe://mandate.local/nobody",
            &msg,
            h.now(),
        ))
        .await
        .unwrap_err();
    // Indistinguishable from a registered agent with a wrong signature: ids cannot be
    // enumerated.
    assert_eq!(reason(&s), "BAD_REQUEST_SIGNATURE");
    let forged = raw
        .register_agent(signed(&stranger, &admin_id, &msg, h.now()))
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s), s.message()),
        (forged.code(), reason(&forged), forged.message())
    );
    assert_eq!(state(&h), before, "refused requests changed state");

    // A replayed request: the same signed bytes twice; only the first counts.
    let first = signed(&admin_key, &admin_id, &msg, h.now());
    let metadata = first.metadata().clone();
    raw.register_agent(first).await.unwrap();
    let mut again = tonic::Request::new(msg.clone());
    *again.metadata_mut() = metadata;
    let s = raw.register_agent(again).await.unwrap_err();
    assert_eq!(reason(&s), "REQUEST_REPLAYED");
    let after = state(&h);
    assert_eq!(after.0, before.0 + 1, "exactly one registration");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_fields_and_oversized_chains_are_refused_and_change_nothing() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (_, mut planner) = h
        .register(&mut admin, "spiffe://mandate.local/p", "planner", "")
        .await;
    let before = state(&h);

    for (bad, why) in [
        (register_req("not-a-spiffe-id"), "agent id"),
        (
            pb::RegisterAgentRequest {
                public_key: vec![1; 31],
                ..register_req("spiffe://mandate.local/short-key")
            },
            "key length",
        ),
        (
            pb::RegisterAgentRequest {
                public_key: {
                    let mut k = vec![0; 32];
                    k[0] = 1;
                    k
                },
                ..register_req("spiffe://mandate.local/weak-key")
            },
            "weak key",
        ),
    ] {
        let e = admin.register_agent(bad).await.unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{why}: {e}");
    }
    let e = admin
        .register_agent(register_req("spiffe://mandate.local/p"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::AlreadyExists));
    // A non-admin registering someone else's worker.
    let e = planner
        .register_agent(register_req("spiffe://mandate.local/stray"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
    // ... or its own worker with a privileged role, or the coordinator's reserved name.
    let with = |id: &str, role: &str| pb::RegisterAgentRequest {
        role: role.into(),
        parent_agent_id: "spiffe://mandate.local/p".into(),
        ..register_req(id)
    };
    for role in ["auditor", "admin", "tool", "planner"] {
        let e = planner
            .register_agent(with("spiffe://mandate.local/p-w", role))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::PermissionDenied), "{role}");
    }
    let e = planner
        .register_agent(with("spiffe://mandate.local/coordinator", "worker"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));
    let e = admin
        .register_agent(register_req("spiffe://mandate.local/coordinator"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::PermissionDenied));

    let e = admin
        .get_task(pb::GetTaskRequest {
            task_id: "zz".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument));
    let e = admin
        .get_task(pb::GetTaskRequest {
            task_id: "00".repeat(16),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
    let e = admin
        .get_agent(pb::GetAgentRequest {
            agent_id: "spiffe://mandate.local/none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound));
    let e = admin
        .revoke_link(pb::RevokeLinkRequest {
            link_id: "ab".repeat(16),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(tonic::Code::NotFound));

    // Tasks: no capabilities, a bad resource pattern, zero TTL.
    for (caps, ttl) in [
        (vec![], 1000),
        (vec![cap_pb("a*b", &["read"])], 1000),
        (vec![cap_pb("a", &["read"])], 0),
    ] {
        let e = planner
            .start_task(pb::StartTaskRequest {
                signals: Default::default(),
                capabilities: caps,
                ttl_ms: ttl,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
    }

    // Delegate with garbage, with an oversized chain, with an empty chain.
    let e = planner
        .delegate_raw(pb::DelegateRequest {
            signals: Default::default(),
            chain: vec![0xff; 40],
            max_uses: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Some(tonic::Code::InvalidArgument), "MALFORMED")
    );
    let e = planner
        .delegate_raw(pb::DelegateRequest {
            signals: Default::default(),
            chain: vec![0; 70_000],
            max_uses: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "TOKEN_TOO_LARGE");
    // Above the server's message limit, refused before it is even parsed.
    let e = planner
        .delegate_raw(pb::DelegateRequest {
            signals: Default::default(),
            chain: vec![0; 300_000],
            max_uses: 0,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.code(),
            Some(tonic::Code::ResourceExhausted | tonic::Code::OutOfRange)
        ),
        "{e}"
    );

    // Malformed protobuf on the wire: correctly signed bytes that are not a message.
    let key = planner.signer().key().clone();
    let bytes = vec![0x0a, 0xff, 0xff];
    let auth = RequestAuth::sign(
        &key,
        "spiffe://mandate.local/p",
        "/mandate.v1.TaskService/GetTask",
        &bytes,
        h.now(),
    )
    .unwrap();
    let mut raw = TaskServiceClient::new(h.channel.clone());
    // Send raw bytes by encoding a message whose encoding equals them is impossible, so
    // check the decoder through a field with an invalid enum instead.
    let mut req = tonic::Request::new(pb::ListTasksRequest {
        state: 99,
        ..Default::default()
    });
    let auth2 = RequestAuth::sign(
        &key,
        "spiffe://mandate.local/p",
        "/mandate.v1.TaskService/ListTasks",
        &prost::Message::encode_to_vec(req.get_ref()),
        h.now(),
    )
    .unwrap();
    for (k, v) in auth2.header_values() {
        req.metadata_mut().insert(k, v.parse().unwrap());
    }
    let s = raw.list_tasks(req).await.unwrap_err();
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    let _ = auth;

    let after = state(&h);
    assert_eq!(
        (after.0, after.1, after.2),
        (before.0, before.1, before.2),
        "bad input changed state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replays_of_one_signed_request_succeed_exactly_once() {
    let h = Harness::start().await;
    let admin_key = mandate_core::keyfile::load_signing_key(&h.server().admin_key_path).unwrap();
    let admin_id = h.server().admin_id.clone();
    let msg = register_req("spiffe://mandate.local/once");
    let auth = RequestAuth::sign(
        &admin_key,
        &admin_id,
        METHOD,
        &prost::Message::encode_to_vec(&msg),
        h.now(),
    )
    .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let mut raw = AgentServiceClient::new(h.channel.clone());
        let msg = msg.clone();
        let auth = auth.clone();
        tasks.spawn(async move {
            let mut req = tonic::Request::new(msg);
            for (k, v) in auth.header_values() {
                req.metadata_mut().insert(k, v.parse().unwrap());
            }
            raw.register_agent(req).await
        });
    }
    let mut ok = 0;
    let mut replayed = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(s) if reason(&s) == "REQUEST_REPLAYED" => replayed += 1,
            Err(s) => panic!("unexpected refusal: {s:?}"),
        }
    }
    assert_eq!((ok, replayed), (1, 15));
}

/// Concurrent delegations are admitted in groups (one commit for many) with the outcome
/// of admitting them one at a time: every link registered once, each duplicate refused as
/// already registered, one audit record each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_delegations_and_duplicates_are_each_admitted_exactly_once() {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (pkey, mut planner) = h
        .register(&mut admin, "spiffe://mandate.local/group-p", "planner", "")
        .await;
    let (wkey, _) = h
        .register(&mut admin, "spiffe://mandate.local/group-w", "worker", "")
        .await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            capabilities: vec![cap_pb("g/*", &["r"])],
            ttl_ms: 60_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = decode(&started.chain);
    let now = h.now();
    const LINKS: usize = 24;
    let mut tasks = tokio::task::JoinSet::new();
    let mut ids = Vec::new();
    for i in 0..LINKS {
        let spec = mandate_core::LinkSpec::new(
            wkey.public_key(),
            "spiffe://mandate.local/group-w".parse().unwrap(),
            vec![cap(&format!("g/{i}"), &["r"])],
            now,
            now + 30_000,
        )
        .unwrap()
        .require_seal(true);
        let child = root.delegate(&pkey, spec).unwrap();
        ids.push(child.leaf().id().to_string());
        // Each link twice, in separately signed requests.
        for _ in 0..2 {
            let mut c = h.client("spiffe://mandate.local/group-p", &pkey);
            let chain = child.encode();
            tasks.spawn(async move {
                c.delegate_raw(pb::DelegateRequest {
                    chain,
                    signals: Default::default(),
                    max_uses: 0,
                })
                .await
            });
        }
    }
    let mut registered = std::collections::HashMap::new();
    let mut duplicates = 0;
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(resp) => {
                let leaf = decode(&resp.chain).leaf().id().to_string();
                *registered.entry(leaf).or_insert(0) += 1;
            }
            Err(e) if e.reason() == "ALREADY_EXISTS" => duplicates += 1,
            Err(e) => panic!("unexpected refusal: {e:?}"),
        }
    }
    assert_eq!(duplicates, LINKS);
    assert_eq!(registered.len(), LINKS);
    assert!(registered.values().all(|n| *n == 1), "{registered:?}");
    let tree = planner
        .get_delegation_tree(pb::GetDelegationTreeRequest {
            task_id: root.task().to_string(),
        })
        .await
        .unwrap();
    assert_eq!(tree.links.len(), 1 + LINKS);
    let audit = h.audit();
    for id in &ids {
        let sealed = audit
            .iter()
            .filter(|r| r.event.action == "delegation.sealed" && r.event.links[0] == *id)
            .count();
        assert_eq!(sealed, 1, "one record of the delegation of {id}");
    }
    for pair in audit.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_planner_is_throttled_without_starving_others() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let h = Harness::start_configured(dir, clock, |c| {
        c.quotas = mandate_server::Quotas {
            children_per_link: 3,
            links_per_task: 100,
            delegations_per_agent_per_second: 5,
            live_links_per_agent: 100,
            pending_approvals_per_agent: 100,
        };
    })
    .await;
    let mut admin = h.admin.clone();
    let delegate_n = |h: &Harness,
                      planner_id: &'static str,
                      planner_key: SigningKey,
                      worker: (String, SigningKey),
                      root: mandate_core::Chain,
                      i: usize| {
        let mut c = h.client(planner_id, &planner_key);
        let now = h.now();
        async move {
            let spec = mandate_core::LinkSpec::new(
                worker.1.public_key(),
                worker.0.parse().unwrap(),
                vec![cap(&format!("x/{i}"), &["r"])],
                now,
                now + 30_000,
            )
            .unwrap()
            .require_seal(true);
            c.delegate(&root, spec).await
        }
    };
    let (pkey, mut planner) = h
        .register(&mut admin, "spiffe://mandate.local/runaway", "planner", "")
        .await;
    let (okey, mut other) = h
        .register(&mut admin, "spiffe://mandate.local/other", "planner", "")
        .await;
    let (wkey, _) = h
        .register(&mut admin, "spiffe://mandate.local/w", "worker", "")
        .await;
    let start = |c: &mut mandate_sdk::Client| {
        let mut c = c.clone();
        async move {
            decode(
                &c.start_task(pb::StartTaskRequest {
                    signals: Default::default(),
                    capabilities: vec![cap_pb("x/*", &["r"])],
                    ttl_ms: 60_000,
                    max_depth: 1,
                    ..Default::default()
                })
                .await
                .unwrap()
                .chain,
            )
        }
    };
    let root = start(&mut planner).await;
    let worker = ("spiffe://mandate.local/w".to_string(), wkey);
    // Three children of one link, then the fourth is refused.
    for i in 0..3 {
        delegate_n(
            &h,
            "spiffe://mandate.local/runaway",
            pkey.clone(),
            worker.clone(),
            root.clone(),
            i,
        )
        .await
        .unwrap();
    }
    let e = delegate_n(
        &h,
        "spiffe://mandate.local/runaway",
        pkey.clone(),
        worker.clone(),
        root.clone(),
        3,
    )
    .await
    .unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        (Some(tonic::Code::ResourceExhausted), "QUOTA_EXCEEDED"),
        "{e}"
    );
    // Five per second: two more under a second root use the bucket up (5 in all)...
    let root2 = start(&mut planner).await;
    for i in 0..2 {
        delegate_n(
            &h,
            "spiffe://mandate.local/runaway",
            pkey.clone(),
            worker.clone(),
            root2.clone(),
            10 + i,
        )
        .await
        .unwrap();
    }
    let e = delegate_n(
        &h,
        "spiffe://mandate.local/runaway",
        pkey.clone(),
        worker.clone(),
        root2.clone(),
        20,
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "QUOTA_EXCEEDED");
    // ...while another planner is not affected.
    let root3 = start(&mut other).await;
    delegate_n(
        &h,
        "spiffe://mandate.local/other",
        okey.clone(),
        worker.clone(),
        root3.clone(),
        30,
    )
    .await
    .unwrap();
    // A second later the runaway may delegate again.
    h.clock.advance(1_000);
    delegate_n(
        &h,
        "spiffe://mandate.local/runaway",
        pkey,
        worker,
        root2,
        21,
    )
    .await
    .unwrap();
}

/// One agent cannot create an unbounded number of live links: the quota counts the roots
/// granted to it and the delegations it issued (revoked and expired ones stop counting
/// after the next collection pass), and delegating to an agent does not use up that
/// agent's quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_links_per_agent_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let h = Harness::start_configured(dir, clock, |c| {
        c.quotas.live_links_per_agent = 3;
    })
    .await;
    let mut admin = h.admin.clone();
    let (_, mut planner) = h
        .register(&mut admin, "spiffe://mandate.local/p", "planner", "")
        .await;
    let (wkey, mut w1) = h
        .register(&mut admin, "spiffe://mandate.local/w1", "worker", "")
        .await;
    let (w2key, _) = h
        .register(&mut admin, "spiffe://mandate.local/w2", "worker", "")
        .await;
    let task = |c: &mut mandate_sdk::Client| {
        let mut c = c.clone();
        async move {
            c.start_task(pb::StartTaskRequest {
                capabilities: vec![cap_pb("x/*", &["r"])],
                ttl_ms: 60_000,
                max_depth: 1,
                ..Default::default()
            })
            .await
        }
    };
    // The planner's root is its first live link.
    let root = decode(&task(&mut planner).await.unwrap().chain);
    let delegator = planner.clone();
    let give = |to: &'static str, key: &SigningKey, i: usize| {
        let now = h.now();
        let spec = mandate_core::LinkSpec::new(
            key.public_key(),
            to.parse().unwrap(),
            vec![cap(&format!("x/{i}"), &["r"])],
            now,
            now + 30_000,
        )
        .unwrap()
        .require_seal(true);
        let mut c = delegator.clone();
        let root = root.clone();
        async move { c.delegate(&root, spec).await }
    };
    let first = give("spiffe://mandate.local/w1", &wkey, 0).await.unwrap();
    give("spiffe://mandate.local/w2", &w2key, 1).await.unwrap();
    let e = give("spiffe://mandate.local/w1", &wkey, 2)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "QUOTA_EXCEEDED", "{e}");
    assert!(e.to_string().contains("live links"), "{e}");
    let e = task(&mut planner).await.unwrap_err();
    assert_eq!(e.reason(), "QUOTA_EXCEEDED", "{e}");
    // The holders' own quotas are untouched by what they were handed.
    for _ in 0..3 {
        task(&mut w1).await.unwrap();
    }
    // A revoked link stops counting after the next collection pass.
    planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: first.leaf().id().to_string(),
            reason: "done with it".into(),
        })
        .await
        .unwrap();
    h.server().collect_garbage().await.unwrap();
    give("spiffe://mandate.local/w1", &wkey, 3).await.unwrap();
}

/// Sends pre-encoded bytes as the request message (for bodies no message type encodes to)
/// and ignores the answer's body.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;

struct IgnoreDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ();
    type Encoder = RawEncoder;
    type Decoder = IgnoreDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> IgnoreDecoder {
        IgnoreDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for IgnoreDecoder {
    type Item = ();
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<()>, tonic::Status> {
        let n = bytes::Buf::remaining(buf);
        bytes::Buf::advance(buf, n);
        Ok(Some(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_body_that_does_not_decode_is_invalid_argument() {
    let h = Harness::start().await;
    let before = state(&h);
    let admin_key = mandate_core::keyfile::load_signing_key(&h.server().admin_key_path).unwrap();
    let method = "/mandate.v1.AgentService/RegisterAgent";
    // Field 1 (`agent_id`) announces 100 bytes and carries one.
    let body = vec![0x0a, 100, b'x'];
    let auth = RequestAuth::sign(&admin_key, &h.server().admin_id, method, &body, h.now()).unwrap();
    let mut req = tonic::Request::new(body);
    for (k, v) in auth.header_values() {
        req.metadata_mut().insert(k, v.parse().unwrap());
    }
    let mut grpc = tonic::client::Grpc::new(h.channel.clone());
    grpc.ready().await.unwrap();
    let s = grpc
        .unary(
            req,
            tonic::codegen::http::uri::PathAndQuery::from_static(method),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (s.code(), reason(&s).as_str()),
        (tonic::Code::InvalidArgument, "INVALID_ARGUMENT"),
        "{s:?}"
    );
    assert!(s.message().contains("does not decode"), "{}", s.message());
    assert_eq!(state(&h), before, "an undecodable request changed state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_of_a_foreign_trust_domain_are_refused_unless_federated() {
    let dir = tempfile::tempdir().unwrap();
    let clock = std::sync::Arc::new(mandate_core::ManualClock::new(mandate_core::Clock::now_ms(
        &mandate_core::SystemClock,
    )));
    let h = Harness::start_configured(dir, clock, |c| {
        c.federated_trust_domains = vec!["partner.example".into()];
    })
    .await;
    let before = state(&h);
    let mut admin = h.admin.clone();
    let s = admin
        .register_agent(register_req("spiffe://evil.example/agents/planner"))
        .await
        .unwrap_err();
    assert_eq!(s.reason(), "FOREIGN_TRUST_DOMAIN", "{s}");
    assert_eq!(state(&h), before, "a refused registration changed state");

    // A federated domain is accepted, and its planner can start a task.
    let id = "spiffe://partner.example/agents/planner";
    let (_, mut planner) = h.register(&mut admin, id, "planner", "").await;
    planner
        .start_task(pb::StartTaskRequest {
            intent: Some(pb::Intent::default()),
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 60_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
}
