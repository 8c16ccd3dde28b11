"""Interop in both directions through the Rust CLI: a chain built in Python (the link
signed here, sealed by the coordinator) verifies offline in mandate-core (`mandate
inspect`); a delegation built by the Rust CLI verifies offline in Python, with a Python
proof, and the Rust coordinator authorises it."""

from __future__ import annotations

import base64
import json
import subprocess

import mandate
from mandate import Call, Capability, Chain, TrustBundle, TrustedKey, Verifier
from tests_support import register


def _cli(coordinator, agent: str, key_path: str, *args: str) -> dict:  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [str(coordinator.binary), "--server", coordinator.address, "--agent", agent, "--key", key_path, "--json", *args],
        capture_output=True,
        text=True,
    )
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_chains_cross_between_python_and_rust(coordinator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    admin = coordinator.admin()
    planner, planner_key = register(admin, coordinator.address, "planner")
    tool, _ = register(admin, coordinator.address, "tool")
    worker, worker_key = register(admin, coordinator.address, "worker", parent=planner)
    key_file = tmp_path / "planner.key"
    planner_key.save(key_file)
    root = Chain.decode(
        planner.start_task(capabilities=[Capability.of("files/*", "read")], ttl_ms=120_000, max_depth=1).chain
    )
    bundle = planner.get_trust_bundle()
    coordinator_key = bytes(bundle.keys[0].public_key)
    b64 = base64.urlsafe_b64encode(coordinator_key).rstrip(b"=").decode()

    # Python → Rust: the link built and signed here verifies in mandate-core.
    python_built = planner.delegate(
        mandate.delegate(root, planner_key, to_key=worker_key.public_key, to_agent=worker.signer.agent,
                         capabilities=[Capability.of("files/a", "read")], ttl_ms=60_000)
    )
    seen = _cli(coordinator, planner.signer.agent, str(key_file), "inspect", python_built.to_text(), "--trust", b64)
    assert seen["verification"]["valid"] is True, seen
    assert [l["link_id"] for l in seen["links"]] == [l.id_hex for l in python_built.links]

    # Rust → Python: a delegation made by the Rust CLI verifies here, with a Python proof.
    root_file = tmp_path / "root.chain"
    root_file.write_text(root.to_text() + "\n")
    made = _cli(
        coordinator, planner.signer.agent, str(key_file),
        "delegate", "--chain", str(root_file), "--to", worker.signer.agent,
        "--cap", "files/reports/*:read", "--ttl", "1m",
    )
    rust_built = Chain.from_text(made["chain"])
    assert rust_built.leaf.seal is not None
    verifier = Verifier(TrustBundle([TrustedKey(coordinator_key)]))
    call = Call("read", "files/reports/q3.pdf")
    proof = mandate.prove(rust_built, worker_key, tool.signer.agent, call)
    verified = verifier.verify_invocation(rust_built, proof, tool.signer.agent, call)
    assert verified.holder_agent == worker.signer.agent
    assert tool.authorize(rust_built, mandate.prove(rust_built, worker_key, tool.signer.agent, call), call).allowed
    for c in (admin, planner, tool, worker):
        c.close()
