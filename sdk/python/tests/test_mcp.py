"""A Python MCP server (the `mcp` package's MCPServer) gates its own tools with the
decorator: the chain and proof come as tool arguments, the call checked is `call` on
`mcp/<server>/<tool>` with the tool's arguments, and a refused call never runs."""

from __future__ import annotations

import asyncio

import pytest

import mandate
from mandate import Call, Capability, Chain, Prefix, ToolVerifier

mcp = pytest.importorskip("mcp.server.mcpserver")
ToolError = pytest.importorskip("mcp.server.mcpserver.exceptions").ToolError


def test_an_mcp_server_runs_a_tool_only_for_a_permitted_call(coordinator) -> None:  # type: ignore[no-untyped-def]
    from tests_support import register

    admin = coordinator.admin()
    planner, planner_key = register(admin, coordinator.address, "planner")
    tool_client, _ = register(admin, coordinator.address, "tool")
    root = Chain.decode(
        planner.start_task(
            capabilities=[Capability.of("mcp/files/*", "call").where("path", Prefix("reports/"))],
            ttl_ms=60_000,
        ).chain
    )
    audience = tool_client.signer.agent
    server = mcp.MCPServer("files")
    ran: list[str] = []

    with ToolVerifier(tool_client) as verifier:

        @server.tool()
        @mandate.tool(
            verifier,
            action="call",
            resource="mcp/files/read_file",
            refusal=lambda reason, detail: ToolError(f"{reason}: {detail}"),
        )
        async def read_file(path: str) -> str:
            ran.append(path)
            return f"contents of {path}"

        def call(path: str, proof_path: str | None = None) -> object:
            proof = mandate.prove(
                root, planner_key, audience, Call("call", "mcp/files/read_file", {"path": proof_path or path}), force=True
            )
            return asyncio.run(
                server.call_tool(
                    "read_file",
                    {"path": path, "mandate_chain": root.to_text(), "mandate_proof": proof.to_text()},
                )
            )

        allowed = call("reports/q3.pdf")
        assert "contents of reports/q3.pdf" in str(allowed), allowed
        with pytest.raises(ToolError, match="NOT_PERMITTED"):
            call("secrets/key")
        with pytest.raises(ToolError, match="INVOCATION_MISMATCH"):
            call("secrets/key", proof_path="reports/q3.pdf")
        with pytest.raises(ToolError, match="MANDATE_REQUIRED"):
            asyncio.run(server.call_tool("read_file", {"path": "reports/q3.pdf"}))
        schema = asyncio.run(server.list_tools())
        params = str(schema)
        assert "mandate_chain" in params and "mandate_proof" in params
    assert ran == ["reports/q3.pdf"]
    for c in (admin, planner, tool_client):
        c.close()
