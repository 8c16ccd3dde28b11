//! `Verifier::verify_invocations`: many proofs, one batch of signatures, each answered as
//! it would be alone.

use crate::testkit::*;
use crate::*;

fn invoke(c: &Chain, signer: u8, audience: &str, call: &Call) -> Invocation {
    Invocation::sign(&key(signer), c, audience, call.clone(), NOW).unwrap()
}

/// What a verification answered: the leaf holder, or the reason and link.
fn answer(r: Result<VerifiedChain<'_>, Denial>) -> Result<AgentId, (Reason, Option<usize>)> {
    r.map(|v| v.holder_agent().clone())
        .map_err(|d| (d.reason(), d.link_index()))
}

#[test]
fn each_proof_in_a_batch_gets_the_answer_it_gets_alone_in_order() {
    let (c3, c4, weak) = (chain(3), chain(4), small_order_leaf());
    let read = Call::new("read", "files/a.txt");
    let other = Call::new("read", "files/b.txt");
    let write = Call::new("write", "files/a.txt");
    let first = invoke(&c3, 3, "t", &read);
    let asks: Vec<(&Chain, Invocation, &Call)> = vec![
        (&c3, first.clone(), &read),
        (&c4, invoke(&c4, 4, "t", &read), &read),
        // Signed by the holder's parent, not the holder.
        (&c3, invoke(&c3, 2, "t", &read), &read),
        (&c3, invoke(&c3, 3, "db", &read), &read),
        (&c3, invoke(&c3, 3, "t", &read), &other),
        (&c3, invoke(&c3, 3, "t", &write), &write),
        // The first proof again: spent by the first.
        (&c3, first, &read),
        (&weak, invoke(&weak, 5, "t", &read), &read),
        (&c4, invoke(&c4, 4, "t", &other), &other),
    ];
    let asks: Vec<(&Chain, &Invocation, &Call)> =
        asks.iter().map(|(c, i, call)| (*c, i, *call)).collect();
    let (alone, _) = verifier();
    let expected: Vec<_> = asks
        .iter()
        .map(|(c, i, call)| answer(alone.verify_invocation(c, i, "t", call, &NoRevocations)))
        .collect();
    let (v, _) = verifier();
    let got: Vec<_> = v
        .verify_invocations(&asks, "t", &NoRevocations)
        .into_iter()
        .map(answer)
        .collect();
    assert_eq!(got, expected);
    let reasons: Vec<_> = got.iter().map(|r| r.as_ref().err().map(|e| e.0)).collect();
    assert_eq!(
        reasons,
        [
            None,
            None,
            Some(Reason::BadSignature),
            Some(Reason::WrongAudience),
            Some(Reason::InvocationMismatch),
            Some(Reason::NotPermitted),
            Some(Reason::Replayed),
            Some(Reason::BadSignature),
            None,
        ]
    );
}

#[test]
fn a_batch_that_verifies_together_spends_every_nonce_and_caches_the_chains() {
    let (v, _) = verifier();
    let (c2, c3) = (chain(2), chain(3));
    let calls: Vec<Call> = (0..8)
        .map(|i| Call::new("read", format!("files/{i}")))
        .collect();
    let proofs: Vec<(&Chain, Invocation, &Call)> = calls
        .iter()
        .enumerate()
        .map(|(i, call)| {
            let (c, holder) = if i % 2 == 0 { (&c2, 2) } else { (&c3, 3) };
            (c, invoke(c, holder, "t", call), call)
        })
        .collect();
    let asks: Vec<(&Chain, &Invocation, &Call)> =
        proofs.iter().map(|(c, i, call)| (*c, i, *call)).collect();
    assert!(
        v.verify_invocations(&asks, "t", &NoRevocations)
            .iter()
            .all(Result::is_ok)
    );
    for (c, i, call) in &asks {
        assert_eq!(
            answer(v.verify_invocation(c, i, "t", call, &NoRevocations)),
            Err((Reason::Replayed, None))
        );
    }
    // The chains' links are cached: a forged proof under one still fails.
    let forged = invoke(&c3, 9, "t", &calls[0]);
    assert_eq!(
        answer(v.verify_invocation(&c3, &forged, "t", &calls[0], &NoRevocations)),
        Err((Reason::BadSignature, Some(2)))
    );
}

#[test]
fn a_batch_of_one_or_none_is_answered_like_alone() {
    let (v, _) = verifier();
    assert!(v.verify_invocations(&[], "t", &NoRevocations).is_empty());
    let c = chain(1);
    let call = Call::new("read", "files/a");
    let forged = invoke(&c, 7, "t", &call);
    let got = v.verify_invocations(&[(&c, &forged, &call)], "t", &NoRevocations);
    assert_eq!(
        got.into_iter().map(answer).collect::<Vec<_>>(),
        [Err((Reason::BadSignature, Some(0)))]
    );
}
