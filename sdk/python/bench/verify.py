"""Offline verification cost in Python: a depth-4 chain (root and three delegations) plus
a proof, cold (every signature checked) and cached (link signatures remembered), against
one Ed25519 verification by the same library, in the same run.

Usage: python bench/verify.py [rounds]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import mandate
from mandate import Call, Capability, Chain, Range, SigningKey, TrustBundle, TrustedKey, Verifier, VerifierConfig
from mandate.token import Link, LinkBody, LinkKind, link_digest


def root_chain(coordinator: SigningKey, holder: SigningKey, now: int) -> Chain:
    body = LinkBody(
        id=os.urandom(16),
        holder=holder.public_key,
        holder_agent="spiffe://bench.example/planner",
        capabilities=(Capability.of("files/*", "read", "write").where("size", Range(0, 1 << 20)),),
        not_before_ms=now - 60_000,
        expires_at_ms=now + 600_000,
        max_depth=3,
        kind=LinkKind.GRANT,
        require_seal=False,
        require_online=False,
        issuer=coordinator.public_key,
        task=os.urandom(16),
    )
    raw = body.to_pb().SerializeToString()
    sig = coordinator.sign(b"mandate/v1/link", raw)
    return Chain([Link(body, raw, sig, None, link_digest(raw, sig))])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    now = time.time_ns() // 1_000_000
    coordinator = SigningKey.generate()
    keys = [SigningKey.generate() for _ in range(4)]
    chain = root_chain(coordinator, keys[0], now)
    scopes = ["files/reports/*", "files/reports/q3/*", "files/reports/q3/summary.pdf"]
    for i, scope in enumerate(scopes):
        chain = mandate.delegate(
            chain, keys[i], to_key=keys[i + 1].public_key,
            to_agent=f"spiffe://bench.example/w{i}",
            capabilities=[Capability.of(scope, "read").where("size", Range(0, 65536 >> i))],
            ttl_ms=300_000, max_depth=2 - i, not_before_ms=now - 1000,
        )
    assert len(chain) == 4
    data = chain.encode()
    call = Call("read", "files/reports/q3/summary.pdf", {"size": 1024})
    trust = TrustBundle([TrustedKey(coordinator.public_key)])

    def proofs(n: int) -> list[bytes]:
        return [mandate.prove(chain, keys[3], "spiffe://bench.example/tool", call).encode() for _ in range(n)]

    def timed(fn, n: int) -> float:
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples.append((time.perf_counter() - start) / n * 1e6)
        return statistics.median(samples)

    # One Ed25519 verification, as the verifier does it (OpenSSL via cryptography).
    sk = Ed25519PrivateKey.generate()
    pk, msg = sk.public_key(), b"x" * 200
    sig = sk.sign(msg)
    one_verify = timed(lambda: pk.verify(sig, msg), rounds)

    # Cold: a fresh verifier per call (every link signature checked), decoding included.
    cold_proofs = iter(proofs(rounds * 5))

    def cold() -> None:
        v = Verifier(trust, VerifierConfig(link_cache_capacity=0))
        c = v.decode_chain(data)
        p = v.decode_invocation(next(cold_proofs))
        v.verify_invocation(c, p, "spiffe://bench.example/tool", call)

    cold_us = timed(cold, rounds)
    # Cached: one verifier, links already verified; decoding included.
    warm = Verifier(trust)
    warm_proofs = iter(proofs(rounds * 5 + 1))
    c0 = warm.decode_chain(data)
    warm.verify_invocation(c0, warm.decode_invocation(next(warm_proofs)), "spiffe://bench.example/tool", call)

    def cached() -> None:
        c = warm.decode_chain(data)
        p = warm.decode_invocation(next(warm_proofs))
        warm.verify_invocation(c, p, "spiffe://bench.example/tool", call)

    cached_us = timed(cached, rounds)
    print(f"one Ed25519 verify (cryptography/OpenSSL): {one_verify:.1f} µs")
    print(f"depth-4 chain + proof, cold:   {cold_us:.1f} µs ({cold_us / one_verify:.2f}x one verify)")
    print(f"depth-4 chain + proof, cached: {cached_us:.1f} µs ({cached_us / one_verify:.2f}x one verify)")


if __name__ == "__main__":
    main()
