"""Every golden vector of mandate-core (crates/core/testdata/vectors.json): the Python
verifier reaches the same verdict, reason and link index."""

from __future__ import annotations

import json
import pathlib

import pytest

from mandate import Call, Denial, Limits, TrustBundle, TrustedKey, Verifier, VerifierConfig

VECTORS = pathlib.Path(__file__).resolve().parents[3] / "crates" / "core" / "testdata" / "vectors.json"
DOC = json.loads(VECTORS.read_text())


def _b64(s: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _verifier(case: dict) -> Verifier:
    d, c = DOC["defaults"], case["config"]
    limits = Limits(
        max_token_bytes=c.get("max_token_bytes", d["max_token_bytes"]),
        max_links=c.get("max_links", d["max_links"]),
        max_capabilities=c.get("max_capabilities", d["max_capabilities"]),
        max_actions=d["max_actions"],
        max_constraints=d["max_constraints"],
        max_values=d["max_values"],
        max_string_bytes=d["max_string_bytes"],
        max_invocation_bytes=d["max_invocation_bytes"],
        max_args=d["max_args"],
    )
    config = VerifierConfig(
        limits=limits,
        clock_skew_ms=d["clock_skew_ms"],
        invocation_window_ms=d["invocation_window_ms"],
        accept_break_glass=c.get("accept_break_glass", d["accept_break_glass"]),
        online=c.get("online", d["online"]),
        replay_cache_capacity=c.get("replay_cache_capacity", 1 << 20),
    )
    trust = TrustBundle(
        TrustedKey(_b64(k["public_key"]), k["not_before_ms"], k["not_after_ms"])
        for k in DOC["trust_bundle"]
    )
    now = case["now_ms"]
    return Verifier(trust, config, clock=lambda: now)


def _call(j: dict) -> Call:
    args = {k: (v["text"] if "text" in v else v["int"]) for k, v in j["args"].items()}
    return Call(j["action"], j["resource"], args)


def _run(case: dict) -> None:
    verifier = _verifier(case)
    revoked = {bytes.fromhex(r) for r in case["revoked"]}

    def once() -> None:
        chain = verifier.decode_chain(case["chain"])
        if case["invocation"] is not None:
            proof = verifier.decode_invocation(case["invocation"])
            verifier.verify_invocation(chain, proof, DOC["audience"], _call(case["call"]), revoked)
        else:
            verifier.verify_chain(chain, revoked)

    if case["verify_twice"]:
        once()
    once()


@pytest.mark.parametrize("case", DOC["cases"], ids=[c["name"] for c in DOC["cases"]])
def test_golden_vector(case: dict) -> None:
    expect = case["expect"]
    try:
        _run(case)
    except Denial as d:
        assert expect["result"] == "DENY", f"denied {d}, expected valid"
        assert (d.reason.value, d.link) == (expect["reason"], expect["link"]), str(d)
    else:
        assert expect["result"] == "VALID", f"accepted, expected {expect['reason']} at {expect['link']}"


def test_every_vector_is_here() -> None:
    assert len(DOC["cases"]) >= 120


def test_parse_takes_either_form_and_text_read_as_bytes() -> None:
    """A chain file read in binary mode holds the text form: `parse` takes it."""
    from mandate import Chain, Invocation

    case = next(c for c in DOC["cases"] if c["expect"]["result"] == "VALID" and c["invocation"])
    chain = Chain.parse(case["chain"])
    text = chain.to_text().encode()
    for form in (chain.encode(), text, b"\n " + text + b"\r\n"):
        assert Chain.parse(form).encode() == chain.encode()
    proof = Invocation.parse(case["invocation"])
    for form in (proof.encode(), proof.to_text().encode()):
        assert Invocation.parse(form).encode() == proof.encode()
