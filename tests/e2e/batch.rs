//! `AuthorizeBatch`: many decisions under one request signature, each decided and audited
//! as if it came alone, answered in order; bad input refuses the whole batch before
//! anything is decided.

use mandate_core::{Call, Chain, Invocation, LinkSpec, SigningKey};
use mandate_proto::v1 as pb;
use mandate_sdk::Client;

use crate::harness::*;

const PLANNER: &str = "spiffe://mandate.local/batch/planner";
const WORKER: &str = "spiffe://mandate.local/batch/worker";
const TOOL: &str = "spiffe://mandate.local/batch/tool";

struct Setup {
    h: Harness,
    tool: Client,
    worker_key: SigningKey,
    chain: Chain,
}

/// A worker holding `files/data/*` (read) two links below the coordinator, and a tool.
async fn setup() -> Setup {
    let h = Harness::start().await;
    let mut admin = h.admin.clone();
    let (_, mut planner) = h.register(&mut admin, PLANNER, "planner", "").await;
    let (_, tool) = h.register(&mut admin, TOOL, "tool", "").await;
    let (worker_key, _) = h.register(&mut planner, WORKER, "worker", PLANNER).await;
    let started = planner
        .start_task(pb::StartTaskRequest {
            capabilities: vec![cap_pb("files/*", &["read"])],
            ttl_ms: 60_000,
            max_depth: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let now = h.now();
    let spec = LinkSpec::new(
        worker_key.public_key(),
        WORKER.parse().unwrap(),
        vec![cap("files/data/*", &["read"])],
        now,
        now + 30_000,
    )
    .unwrap()
    .require_seal(true);
    let chain = planner
        .delegate(&decode(&started.chain), spec)
        .await
        .unwrap();
    Setup {
        h,
        tool,
        worker_key,
        chain,
    }
}

impl Setup {
    /// A request for `action` on `resource`, with a fresh proof from the worker.
    fn ask(&self, action: &str, resource: &str) -> pb::AuthorizeRequest {
        let call = Call::new(action, resource);
        let proof =
            Invocation::sign(&self.worker_key, &self.chain, TOOL, call, self.h.now()).unwrap();
        pb::AuthorizeRequest {
            chain: self.chain.encode(),
            invocation: proof.encode(),
            action: action.into(),
            resource: resource.into(),
            ..Default::default()
        }
    }

    fn decisions(&self) -> Vec<mandate_store::AuditRecord> {
        self.h
            .audit()
            .into_iter()
            .filter(|r| r.event.action.starts_with("invocation."))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_come_back_in_order_each_audited_as_if_asked_alone() {
    let mut s = setup().await;
    let allowed = s.ask("read", "files/data/1");
    let mut tampered = s.ask("read", "files/data/2");
    let last = tampered.invocation.len() - 1;
    tampered.invocation[last] ^= 1;
    let requests = vec![
        allowed.clone(),
        s.ask("read", "files/secret/1"),
        s.ask("write", "files/data/3"),
        // The same proof again: its nonce was used by the first.
        allowed,
        tampered,
        s.ask("read", "files/data/4"),
    ];
    let before = s.decisions().len();
    let r = s
        .tool
        .authorize_batch(pb::AuthorizeBatchRequest { requests })
        .await
        .unwrap();
    let got: Vec<(bool, &str)> = r
        .responses
        .iter()
        .map(|d| (d.allowed, d.reason.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (true, ""),
            (false, "NOT_PERMITTED"),
            (false, "NOT_PERMITTED"),
            (false, "REPLAYED"),
            (false, "BAD_SIGNATURE"),
            (true, ""),
        ],
        "{:?}",
        r.responses
    );
    assert_eq!(r.responses[0].holder_agent_id, WORKER);
    assert_eq!(r.responses[5].link_ids.len(), 2);
    // One audit record per decision, with its verdict and reason.
    let audited = s.decisions();
    assert_eq!(audited.len() - before, 6);
    let mut verdicts: Vec<(String, String)> = audited[before..]
        .iter()
        .map(|r| (r.event.decision.clone(), r.event.reason.clone()))
        .collect();
    verdicts.sort();
    let mut expected: Vec<(String, String)> = got
        .iter()
        .map(|(ok, reason)| {
            let verdict = if *ok { "allow" } else { "deny" };
            (verdict.to_owned(), (*reason).to_owned())
        })
        .collect();
    expected.sort();
    assert_eq!(verdicts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_refuses_the_whole_batch_and_decides_nothing() {
    let mut s = setup().await;
    let first = s.ask("read", "files/data/1");
    let mut bad = s.ask("read", "files/data/2");
    bad.context = (0..40).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let before = s.decisions().len();
    let e = s
        .tool
        .authorize_batch(pb::AuthorizeBatchRequest {
            requests: vec![first.clone(), bad],
        })
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "INVALID_ARGUMENT", "{e}");
    assert!(e.to_string().contains("request 1:"), "{e}");
    assert_eq!(s.decisions().len(), before, "nothing was decided");
    // The first request's proof was not used: it is good alone.
    let r = s.tool.authorize(first).await.unwrap();
    assert!(r.allowed, "{} {}", r.reason, r.detail);

    for n in [0, 257] {
        let requests = (0..n)
            .map(|i| s.ask("read", &format!("files/data/{i}")))
            .collect();
        let e = s
            .tool
            .authorize_batch(pb::AuthorizeBatchRequest { requests })
            .await
            .unwrap_err();
        assert_eq!(e.reason(), "INVALID_ARGUMENT", "{e}");
        assert!(e.to_string().contains("1 to 256 requests"), "{e}");
    }
    assert_eq!(s.decisions().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_verified_in_several_chunks_answers_every_request_in_order() {
    let mut s = setup().await;
    let mut requests: Vec<pb::AuthorizeRequest> = (0..70)
        .map(|i| s.ask("read", &format!("files/data/{i}")))
        .collect();
    // The same proof again, verified in a later chunk than the first.
    requests[40] = requests[3].clone();
    let r = s
        .tool
        .authorize_batch(pb::AuthorizeBatchRequest { requests })
        .await
        .unwrap();
    assert_eq!(r.responses.len(), 70);
    for (i, d) in r.responses.iter().enumerate() {
        if i == 40 {
            assert_eq!((d.allowed, d.reason.as_str()), (false, "REPLAYED"));
        } else {
            assert!(d.allowed, "{i}: {} {}", d.reason, d.detail);
        }
    }
}
