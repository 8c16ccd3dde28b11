"""Both clients cover every RPC of every `mandate.v1` service, and the asyncio client works
end to end."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket

import grpc
import pytest

import mandate
from mandate import AsyncClient, Capability, Chain, Client, MandateError, Signer, SigningKey
from mandate._proto.mandate.v1 import (
    access_pb2,
    agents_pb2,
    approvals_pb2,
    audit_pb2,
    authorization_pb2,
    policy_pb2,
    tasks_pb2,
)
from mandate.client import RPCS


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_rpc_has_a_method_on_both_clients() -> None:
    paths = set()
    for module in (access_pb2, agents_pb2, approvals_pb2, audit_pb2, authorization_pb2, policy_pb2, tasks_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                paths.add(f"/{service.full_name}/{m.name}")
    assert {p for p, *_ in RPCS.values()} == paths
    for name, (path, request, response, stream) in RPCS.items():
        sync = getattr(Client, name)
        source = inspect.getsource(sync)
        assert path in source and request.__name__ in source and response.__name__ in source, name
        assert ("_stream(" in source) == stream, name
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)) != stream, name
        expected = _snake(path.rsplit("/", 1)[1])
        assert name in (expected, f"{expected}_raw"), name


def test_the_async_client_starts_a_task_and_delegates(coordinator) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        admin_sync = coordinator.admin()
        key, worker_key = SigningKey.generate(), SigningKey.generate()
        agent = f"spiffe://mandate.local/aio/planner-{id(key)}"
        admin_sync.register_agent(agent_id=agent, public_key=key.public_key, role="planner")
        async with AsyncClient(coordinator.address, Signer(agent, key)) as planner:
            await planner.register_agent(
                agent_id=f"{agent}/w", public_key=worker_key.public_key, role="worker", parent_agent_id=agent
            )
            started = await planner.start_task(capabilities=[Capability.of("docs/*", "read")], ttl_ms=60_000, max_depth=1)
            root = Chain.decode(started.chain)
            child = mandate.delegate(
                root, key, to_key=worker_key.public_key, to_agent=f"{agent}/w",
                capabilities=[Capability.of("docs/a", "read")], ttl_ms=30_000,
            )
            sealed = await planner.delegate(child)
            assert sealed.leaf.seal is not None
            feed = planner.watch_revocations(after_epoch=0)
            first = await feed.__anext__()
            assert first.WhichOneof("event") == "snapshot"
            await feed.aclose()
            with_missing = None
            try:
                await planner.get_task(task_id="00" * 16)
            except mandate.NotFound as e:
                with_missing = e.reason
            assert with_missing == "NOT_FOUND"
        admin_sync.close()

    asyncio.run(run())


def _dead_address() -> str:
    """A loopback address nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_both_clients_move_past_a_coordinator_that_cannot_be_reached(coordinator) -> None:  # type: ignore[no-untyped-def]
    signer = Signer.from_key_file("spiffe://mandate.local/admin", coordinator.data / "admin.key")
    servers = f"{_dead_address()}, {coordinator.address}"
    with Client(servers, signer) as c:
        assert c.get_trust_bundle().keys
        assert c.channel is c.channels[1], "it stays on the one that answered"
        # A stream moves on too, before its first message.
        c._current = 0
        assert b"".join(chunk.jsonl for chunk in c.export_audit_log(after_seq=0))
        assert c.channel is c.channels[1]

    async def run() -> None:
        async with AsyncClient(servers, signer) as a:
            assert (await a.get_trust_bundle()).keys
            a._current = 0
            chunks = [chunk async for chunk in a.export_audit_log(after_seq=0)]
            assert chunks

    asyncio.run(run())
    # None reachable: the call fails with UNAVAILABLE and no reason from a coordinator.
    with Client(f"{_dead_address()},{_dead_address()}", signer, timeout=10) as c:
        with pytest.raises(MandateError) as failed:
            c.get_trust_bundle()
        assert failed.value.code == grpc.StatusCode.UNAVAILABLE and failed.value.reason == ""
    with pytest.raises(MandateError, match="no coordinator address"):
        Client(" , ", signer)
