"""`Authorize` round trips from Python, one in flight, proofs prepared in advance (compare
with `mandate-bench authorize --concurrency 1 --connections 1` against the same server).

Usage: python bench/authorize.py ADDRESS ADMIN_KEY_FILE [requests]
"""

from __future__ import annotations

import statistics
import sys
import time

import mandate
from mandate import Call, Capability, Chain, Client, Signer, SigningKey


def main() -> None:
    address, admin_key = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    admin = Client(address, Signer.from_key_file("spiffe://mandate.local/admin", admin_key))
    suffix = format(time.time_ns(), "x")
    keys = {r: SigningKey.generate() for r in ("planner", "tool")}
    ids = {r: f"spiffe://mandate.local/pybench/{r}-{suffix}" for r in keys}
    for r in keys:
        admin.register_agent(agent_id=ids[r], public_key=keys[r].public_key, role=r)
    planner = Client(address, Signer(ids["planner"], keys["planner"]))
    tool = Client(address, Signer(ids["tool"], keys["tool"]))
    chain = Chain.decode(
        planner.start_task(capabilities=[Capability.of("files/*", "read")], ttl_ms=10 * 60_000).chain
    )
    call = Call("read", "files/a")
    proofs = [mandate.prove(chain, keys["planner"], ids["tool"], call) for _ in range(n)]
    latencies = []
    start = time.perf_counter()
    for p in proofs:
        t = time.perf_counter()
        r = tool.authorize(chain, p, call)
        latencies.append(time.perf_counter() - t)
        assert r.allowed, r.reason
    elapsed = time.perf_counter() - start
    latencies.sort()
    us = lambda s: s * 1e6  # noqa: E731
    print(
        f"python authorize: {n} in {elapsed:.2f} s = {n / elapsed:.0f}/s; "
        f"p50 {us(statistics.median(latencies)):.0f} µs  p99 {us(latencies[int(n * 0.99) - 1]):.0f} µs"
    )


if __name__ == "__main__":
    main()
