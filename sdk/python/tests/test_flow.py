"""The SDK against a real coordinator: a planner delegates to a worker (the link built and
signed in Python, sealed by the Rust coordinator), the worker proves calls, the tool
checks them online and offline, revocation reaches the offline verifier through the feed,
and every refusal carries its reason code."""

from __future__ import annotations

import os
import stat
import time
from typing import Iterator

import pytest

import mandate
from mandate import (
    Call,
    Capability,
    Chain,
    Client,
    Denial,
    Denied,
    InvalidArgument,
    KeyFileError,
    NotFound,
    Range,
    Signer,
    SigningKey,
    ToolVerifier,
    Unauthenticated,
)

from tests_support import name as _name
from tests_support import register


def _register(admin: Client, role: str, parent: Client | None = None) -> tuple[Client, SigningKey]:
    return register(admin, admin.server, role, parent)


@pytest.fixture
def team(coordinator) -> Iterator[dict]:  # type: ignore[no-untyped-def]
    admin = coordinator.admin()
    planner, planner_key = _register(admin, "planner")
    tool_client, _ = _register(admin, "tool")
    worker, worker_key = _register(admin, "worker", parent=planner)
    started = planner.start_task(
        capabilities=[Capability.of("files/*", "read", "write").where("size", Range(0, 1 << 20))],
        ttl_ms=5 * 60_000,
        max_depth=1,
        intent=mandate.client.tasks_pb2.Intent(text="python flow"),
    )
    root = Chain.decode(started.chain)
    yield {
        "admin": admin,
        "planner": planner,
        "planner_key": planner_key,
        "tool": tool_client,
        "worker": worker,
        "worker_key": worker_key,
        "root": root,
        "task_id": started.task.task_id,
    }
    for c in (admin, planner, tool_client, worker):
        c.close()


def _delegate(team: dict, *caps: Capability) -> Chain:
    child = mandate.delegate(
        team["root"],
        team["planner_key"],
        to_key=team["worker_key"].public_key,
        to_agent=team["worker"].signer.agent,
        capabilities=caps or (Capability.of("files/reports/*", "read").where("size", Range(0, 4096)),),
        ttl_ms=60_000,
    )
    return team["planner"].delegate(child)


def test_a_link_built_in_python_is_sealed_and_its_proofs_authorised(team: dict) -> None:
    chain = _delegate(team)
    assert len(chain) == 2 and chain.leaf.seal is not None, "the coordinator seals it"
    call = Call("read", "files/reports/q3.pdf", {"size": 1024})
    proof = mandate.prove(chain, team["worker_key"], team["tool"].signer.agent, call)
    r = team["tool"].authorize(chain.to_text(), proof.to_text(), call)
    assert r.allowed, r.reason
    # The same proof twice: a replay.
    again = team["tool"].authorize(chain, proof, call)
    assert (again.allowed, again.reason) == (False, "REPLAYED")
    # A proof for one call presented for another.
    fresh = mandate.prove(chain, team["worker_key"], team["tool"].signer.agent, call)
    wide = Call("read", "files/reports/q3.pdf", {"size": 8192})
    r = team["tool"].authorize(chain, fresh, wide)
    assert (r.allowed, r.reason) == (False, "INVOCATION_MISMATCH")


def test_a_batch_of_decisions_answers_each_in_order(team: dict) -> None:
    chain = _delegate(team)
    tool = team["tool"].signer.agent

    def ask(call: Call, presented: Call | None = None) -> mandate.client.authorization_pb2.AuthorizeRequest:
        proof = mandate.prove(chain, team["worker_key"], tool, call)
        return mandate.client.authorize_request(chain, proof, presented or call, None, False)

    ok = Call("read", "files/reports/a.pdf", {"size": 10})
    first = ask(ok)
    # A proof for one call presented for another; the first proof again.
    other = ask(ok, Call("read", "files/reports/b.pdf", {"size": 10}))
    answers = team["tool"].authorize_batch([first, other, first, ask(ok)])
    assert [(a.allowed, a.reason) for a in answers] == [(True, ""), (False, "INVOCATION_MISMATCH"), (False, "REPLAYED"), (True, "")]
    with pytest.raises(InvalidArgument, match="1 to 256 requests"):
        team["tool"].authorize_batch([])


def test_the_sdk_refuses_locally_what_a_verifier_would_reject(team: dict) -> None:
    with pytest.raises(Denial) as widened:
        mandate.delegate(
            team["root"],
            team["planner_key"],
            to_key=team["worker_key"].public_key,
            to_agent=team["worker"].signer.agent,
            capabilities=[Capability.of("db/*", "read")],
            ttl_ms=60_000,
        )
    assert (widened.value.reason.value, widened.value.link) == ("SCOPE_WIDENED", 1)
    chain = _delegate(team)
    with pytest.raises(Denial) as outside:
        mandate.prove(chain, team["worker_key"], "spiffe://mandate.local/t", Call("write", "files/reports/a"))
    assert (outside.value.reason.value, outside.value.link) == ("NOT_PERMITTED", 0)
    with pytest.raises(Denial) as not_holder:
        mandate.prove(chain, team["planner_key"], "spiffe://mandate.local/t", Call("read", "files/reports/a", {"size": 1}))
    assert not_holder.value.reason.value == "BAD_SIGNATURE"


def test_the_offline_verifier_follows_the_feed_and_cuts_off_a_revoked_worker(team: dict) -> None:
    chain = _delegate(team)
    call = Call("read", "files/reports/q3.pdf", {"size": 10})
    audience = team["tool"].signer.agent
    with ToolVerifier(team["tool"]) as verifier:
        d = verifier.check(chain, mandate.prove(chain, team["worker_key"], audience, call), call)
        assert d.allowed and not d.online, d
        assert d.holder == team["worker"].signer.agent
        epoch = verifier.epoch
        team["planner"].revoke_link(link_id=chain.leaf.id_hex, reason="python test")
        assert mandate.wait_for(lambda: verifier.epoch > epoch), "the feed never delivered"
        d = verifier.check(chain, mandate.prove(chain, team["worker_key"], audience, call), call)
        assert (d.allowed, d.reason, d.link) == (False, "REVOKED", 1)


def test_a_stale_feed_fails_closed_or_goes_online(team: dict) -> None:
    chain = _delegate(team)
    call = Call("read", "files/reports/a", {"size": 10})
    audience = team["tool"].signer.agent
    for when_stale in ("fail", "online"):
        later = [0]
        clock = lambda: time.time_ns() // 1_000_000 + later[0]  # noqa: E731
        verifier = ToolVerifier(team["tool"], max_staleness_ms=5_000, when_stale=when_stale, clock=clock)
        # Stop following (no more heartbeats), then let six seconds pass on its clock: the
        # feed is stale, the chain still valid.
        verifier.close()
        later[0] = 6_000
        d = verifier.check(chain, mandate.prove(chain, team["worker_key"], audience, call), call)
        if when_stale == "fail":
            assert (d.allowed, d.reason) == (False, "FEED_STALE")
        else:
            assert d.allowed and d.online, d


def test_the_tool_decorator_runs_the_function_only_for_a_permitted_call(team: dict) -> None:
    chain = _delegate(team)
    audience = team["tool"].signer.agent
    ran = []
    with ToolVerifier(team["tool"]) as verifier:

        @mandate.tool(verifier, action="read", resource=lambda path, **_: f"files/{path}")
        def read(path: str, size: int) -> str:
            ran.append(path)
            return f"{size} bytes of {path}"

        proof = mandate.prove(chain, team["worker_key"], audience, Call("read", "files/reports/q3.pdf", {"path": "reports/q3.pdf", "size": 5}))
        assert read(path="reports/q3.pdf", size=5, mandate_chain=chain.to_text(), mandate_proof=proof.to_text()) == "5 bytes of reports/q3.pdf"
        with pytest.raises(Denied) as refused:
            read(path="secrets/key", size=5, mandate_chain=chain.to_text(), mandate_proof=proof.to_text())
        assert refused.value.reason == "INVOCATION_MISMATCH"
        with pytest.raises(Denied) as missing:
            read(path="reports/q3.pdf", size=5)
        assert missing.value.reason == "MANDATE_REQUIRED"
    assert ran == ["reports/q3.pdf"]


def test_refusals_are_exceptions_with_reason_codes(team: dict) -> None:
    planner, admin = team["planner"], team["admin"]
    with pytest.raises(NotFound) as missing:
        planner.get_task(task_id="00" * 16)
    assert missing.value.reason == "NOT_FOUND"
    with pytest.raises(InvalidArgument) as bad:
        admin.register_agent(agent_id="not-an-id", public_key=SigningKey.generate().public_key, role="worker")
    assert bad.value.reason == "INVALID_ARGUMENT"
    with pytest.raises(Denied) as foreign:
        admin.register_agent(agent_id="spiffe://evil.example/x", public_key=SigningKey.generate().public_key, role="worker")
    assert foreign.value.reason == "FOREIGN_TRUST_DOMAIN"
    with pytest.raises(Denied) as other_owner:
        planner.register_agent(
            agent_id=_name("worker"),
            public_key=SigningKey.generate().public_key,
            role="worker",
            owner="someone-else",
            parent_agent_id=planner.signer.agent,
        )
    assert other_owner.value.reason == "NOT_AUTHORIZED"
    # Signed with a key that is not the agent's: nothing is allowed.
    impostor = Client(planner.server, Signer(planner.signer.agent, SigningKey.generate()))
    with pytest.raises(Unauthenticated) as forged:
        impostor.list_tasks()
    assert forged.value.reason == "BAD_REQUEST_SIGNATURE"
    impostor.close()


def test_key_files_are_refused_when_others_can_read_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "agent.key"
    key = SigningKey.generate()
    key.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.load(path).public_key == key.public_key
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError):
        SigningKey.load(path)
    assert "private" not in repr(key).lower() and len(repr(key)) < 100
    with pytest.raises(KeyFileError):
        SigningKey.from_pem("not a key")


def test_a_signer_reads_its_identity_from_the_environment(team: dict, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    worker_key: SigningKey = team["worker_key"]
    path = tmp_path / "worker.key"
    worker_key.save(path)
    monkeypatch.setenv("MANDATE_AGENT", team["worker"].signer.agent)
    monkeypatch.setenv("MANDATE_KEY", str(path))
    monkeypatch.delenv("MANDATE_KEY_PEM", raising=False)
    with Client(team["planner"].server, Signer.from_env()) as worker:
        assert worker.get_agent(agent_id=team["worker"].signer.agent).agent.role == "worker"
    monkeypatch.setenv("MANDATE_KEY_PEM", path.read_text())
    monkeypatch.delenv("MANDATE_KEY")
    assert Signer.from_env().key.public_key == worker_key.public_key
    monkeypatch.delenv("MANDATE_AGENT")
    with pytest.raises(mandate.MandateError):
        Signer.from_env()


def test_feed_messages_are_signed_and_tampered_or_replayed_ones_are_refused(team: dict) -> None:
    """The statement and signature rules agree with the Rust coordinator's (docs/PROTOCOL.md)."""
    from mandate.verify import TrustBundle, TrustedKey, feed_statement, verify_feed_statement

    bundle = team["tool"].get_trust_bundle()
    trust = TrustBundle(TrustedKey(bytes(k.public_key), k.not_before_ms, k.not_after_ms) for k in bundle.keys)

    def statement(msg, kind: str | None = None, **change: int) -> bytes:  # type: ignore[no-untyped-def]
        kind = kind or msg.WhichOneof("event")
        body = getattr(msg, msg.WhichOneof("event"))
        links = [(bytes.fromhex(l.link_id), l.expires_at_ms, l.epoch) for l in getattr(body, "links", [])]
        return feed_statement(
            kind,
            change.get("previous_epoch", msg.previous_epoch),
            change.get("epoch", body.epoch),
            change.get("time_ms", msg.time_ms),
            links[: change.get("keep", len(links))],
        )

    chain = _delegate(team)
    feed = team["tool"].watch_revocations(after_epoch=0)
    snapshot = next(feed)
    assert snapshot.WhichOneof("event") == "snapshot"
    team["planner"].revoke_link(link_id=chain.leaf.id_hex, reason="feed signature test")
    batch = next(m for m in feed if m.WhichOneof("event") == "batch")
    feed.cancel()
    assert batch.previous_epoch == snapshot.snapshot.epoch
    assert [l.link_id for l in batch.batch.links] == [chain.leaf.id_hex]
    for msg in (snapshot, batch):
        sig = bytes(msg.signature)
        assert verify_feed_statement(trust, statement(msg), msg.time_ms, sig)
        for tampered in (
            statement(msg, epoch=msg.previous_epoch + 7),
            statement(msg, previous_epoch=msg.previous_epoch + 1),
            statement(msg, time_ms=msg.time_ms + 1),
            statement(msg, kind="heartbeat"),
            statement(msg, keep=0),
        ):
            assert not verify_feed_statement(trust, tampered, msg.time_ms, sig)
        assert not verify_feed_statement(trust, statement(msg), msg.time_ms, b"")

    with ToolVerifier(team["tool"]) as verifier:
        assert verifier.epoch >= batch.batch.epoch
        heard = verifier._revoked.heard_ms
        # A replayed (genuine, older) snapshot: refused, the revocation stays, and the
        # staleness clock does not move.
        assert verifier._apply(snapshot) == "gap"
        assert bytes.fromhex(chain.leaf.id_hex) in verifier._revoked
        # A tampered batch: refused as untrusted.
        forged = type(batch)()
        forged.CopyFrom(batch)
        forged.batch.links[0].expires_at_ms += 1
        forged.previous_epoch = verifier.epoch
        assert verifier._apply(forged) == "untrusted"
        assert verifier._revoked.heard_ms == heard


def test_coordinator_keys_added_and_retired_reach_the_verifier_through_the_feed(team: dict) -> None:
    """A coordinator key added or retired through the service reaches a following verifier
    as a signed trust update (docs/PROTOCOL.md); one signed by a key the verifier does not
    trust is refused, an old one replayed is skipped."""
    from mandate.verify import FEED_DOMAIN, TrustedKey, trust_statement

    spare = SigningKey.generate()
    with ToolVerifier(team["tool"]) as verifier:
        version, keys = verifier.trust_version, len(verifier.trust.keys)
        assert version >= 1
        added = team["admin"].add_coordinator_key(public_key=spare.public_key, instance="python-spare")
        assert added.version > version
        assert mandate.wait_for(lambda: verifier.trust_version == added.version), "never announced"
        assert spare.public_key in [k.key for k in verifier.trust.keys]
        assert len(verifier.trust.keys) == keys + 1
        with pytest.raises(mandate.MandateError) as short:
            team["admin"].add_coordinator_key(public_key=b"\x01" * 31, instance="short")
        assert short.value.reason == "INVALID_ARGUMENT"

        # Forged: a key the verifier has never seen announcing a bundle of its own.
        forger = SigningKey.generate()
        own = [TrustedKey(forger.public_key)]
        from mandate._proto.mandate.v1 import authorization_pb2 as apb

        def signed(by: SigningKey, keys: list[TrustedKey], v: int, time_ms: int) -> apb.WatchRevocationsResponse:
            msg = apb.WatchRevocationsResponse(time_ms=time_ms)
            msg.trust.version = v
            for k in keys:
                msg.trust.keys.add(public_key=k.key, not_before_ms=k.not_before_ms, not_after_ms=k.not_after_ms)
            msg.signature = by.sign(FEED_DOMAIN, trust_statement(keys, v, time_ms))
            return msg

        now = int(time.time() * 1000)
        assert verifier._apply(signed(forger, own, added.version + 5, now)) == "untrusted"
        assert verifier.trust_version == added.version
        # Signed by a trusted key but altered after signing.
        msg = signed(spare, own, added.version + 5, now)
        msg.trust.version += 1
        assert verifier._apply(msg) == "untrusted"
        # Genuine but old (a replay): skipped, nothing changes.
        assert verifier._apply(signed(spare, own, version, now)) is None
        assert verifier.trust_version == added.version

        retired = team["admin"].retire_coordinator_key(public_key=spare.public_key, trust_for_ms=0)
        assert mandate.wait_for(lambda: verifier.trust_version == retired.version), "never announced"
        assert spare.public_key not in [k.key for k in verifier.trust.keys]
        with pytest.raises(mandate.MandateError) as again:
            team["admin"].add_coordinator_key(public_key=spare.public_key, instance="python-spare")
        assert again.value.reason == "KEY_RETIRED"


def test_the_access_review_names_who_can_make_a_call(team: dict) -> None:
    """`who_can`, `list_live_authority` and `exposure_report` from Python."""
    chain = _delegate(team)
    worker = team["worker"].signer.agent
    call = Call("read", "files/reports/q3.pdf", {"size": 1024})
    who = team["planner"].who_can(action=call.action, resource=call.resource, args=call.args_to_pb())
    holders = {(l.holder_agent_id, len(l.path)) for l in who.links}
    assert (worker, 2) in holders, holders
    link = next(l for l in who.links if l.holder_agent_id == worker)
    assert link.path[-1] == chain.leaf.id_hex and link.kind == "delegation"
    # Over the link's bound on `size`: the worker cannot.
    big = Call("read", "files/reports/q3.pdf", {"size": 10_000})
    who = team["planner"].who_can(action=big.action, resource=big.resource, args=big.args_to_pb())
    assert worker not in {l.holder_agent_id for l in who.links}
    live = team["admin"].list_live_authority(agent_id=worker)
    assert chain.leaf.id_hex in [l.link_id for l in live.links]
    report = team["admin"].exposure_report(window_ms=3_600_000)
    row = next(r for r in report.agents if r.agent_id == worker)
    assert row.grants >= 1 and row.privilege_ms >= 0
