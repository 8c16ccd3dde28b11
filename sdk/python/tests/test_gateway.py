"""`mandate gateway` (the Rust binary, as an operator runs it) in front of a Python HTTP
API and a Python MCP server (the `mcp` package, over streamable HTTP), called by Python
agents: the allowed call reaches the upstream with the gateway's credential and without
Mandate's tokens; a call outside the chain never does."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import pathlib
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

import pytest

import mandate
from mandate import Capability, Chain, Prefix
from tests_support import name, register


class _Api(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        _Api.seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, *_: object) -> None:
        pass


def _request(url: str, method: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, "", r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("x-mandate-reason", ""), e.read()


@contextlib.contextmanager
def _gateway(coordinator: Any, tmp_path: pathlib.Path, upstreams: str, settings: str = "") -> Iterator[tuple[str, str]]:
    """Runs `mandate gateway` with these `[[upstream]]` tables (and extra `[gateway]`
    settings); yields its base URL and its agent id."""
    admin = coordinator.admin()
    gateway_key = mandate.SigningKey.generate()
    gateway_key.save(tmp_path / "gateway.key")
    gateway_id = name("gateway")
    admin.register_agent(agent_id=gateway_id, public_key=gateway_key.public_key, role="tool")
    admin.close()
    (tmp_path / "gateway.toml").write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"
agent = "{gateway_id}"
key = "gateway.key"
coordinator = "{coordinator.address}"
{settings}
{upstreams}
"""
    )
    proc = subprocess.Popen(
        [str(coordinator.binary), "gateway", "--config", str(tmp_path / "gateway.toml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on" in first, first
        yield f"http://{first.split()[-1]}", gateway_id
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_http_api_behind_the_gateway(coordinator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    admin = coordinator.admin()
    (tmp_path / "billing.secret").write_text("s3cret\n")
    upstream = f"""
[[upstream]]
name = "billing"
url = "http://127.0.0.1:{api.server_address[1]}"
credential = {{ file = "billing.secret" }}

[[upstream.route]]
method = "GET"
path = "/invoices/{{id}}"
action = "read"
resource = "billing/invoices/{{id}}"

[[upstream.route]]
method = "POST"
path = "/refunds/{{id}}"
action = "write"
resource = "billing/refunds/{{id}}"
"""
    with _gateway(coordinator, tmp_path, upstream) as (base, gateway_id):
        planner, planner_key = register(admin, coordinator.address, "planner")
        chain = Chain.decode(
            planner.start_task(capabilities=[Capability.of("billing/invoices/*", "read")], ttl_ms=60_000).chain
        )
        call = mandate.http_call("read", "billing/invoices/{id}", {"id": "42"}, "GET", "/billing/invoices/42")
        # Headers some servers read as another method, path or client are not passed on.
        rewriting = {"x-http-method-override": "DELETE", "x-original-url": "/admin", "x-forwarded-for": "127.0.0.1"}
        headers = mandate.http_headers(chain, planner_key, gateway_id, call) | rewriting
        status, _, body = _request(f"{base}/billing/invoices/42", "GET", headers)
        assert (status, json.loads(body)) == (200, {"path": "/invoices/42"})
        assert _Api.seen[-1]["authorization"] == "Bearer s3cret"
        assert not any(k.startswith("x-mandate-") or k in rewriting for k in _Api.seen[-1])
        before = len(_Api.seen)
        refund = mandate.http_call("write", "billing/refunds/{id}", {"id": "7"}, "POST", "/billing/refunds/7", body=b"{}")
        headers = {
            mandate.gateway.HEADER_CHAIN: chain.to_text(),
            mandate.gateway.HEADER_INVOCATION: mandate.prove(chain, planner_key, gateway_id, refund, force=True).to_text(),
        }
        status, reason, _ = _request(f"{base}/billing/refunds/7", "POST", headers, b"{}")
        assert (status, reason) == (403, "NOT_PERMITTED")
        assert len(_Api.seen) == before, "a refused call reached the API"
        planner.close()
    api.shutdown()
    admin.close()


def test_a_holder_over_its_call_budget_is_refused_with_429(coordinator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    admin = coordinator.admin()
    upstream = f"""
[[upstream]]
name = "billing"
url = "http://127.0.0.1:{api.server_address[1]}"

[[upstream.route]]
method = "GET"
path = "/invoices/{{id}}"
action = "read"
resource = "billing/invoices/{{id}}"
"""
    with _gateway(coordinator, tmp_path, upstream, "max_calls_per_holder_per_minute = 2") as (base, gateway_id):
        planner, planner_key = register(admin, coordinator.address, "planner")
        chain = Chain.decode(
            planner.start_task(capabilities=[Capability.of("billing/invoices/*", "read")], ttl_ms=60_000).chain
        )
        before = len(_Api.seen)
        answers = []
        for _ in range(3):
            call = mandate.http_call("read", "billing/invoices/{id}", {"id": "42"}, "GET", "/billing/invoices/42")
            status, reason, _ = _request(f"{base}/billing/invoices/42", "GET", mandate.http_headers(chain, planner_key, gateway_id, call))
            answers.append((status, reason))
        assert answers == [(200, ""), (200, ""), (429, "RATE_LIMITED")]
        assert len(_Api.seen) == before + 2
        planner.close()
    api.shutdown()
    admin.close()


def test_offline_decisions_survive_a_killed_gateway(coordinator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With `spool_file`, decisions made while the coordinator is down are not lost when
    the gateway is killed with SIGKILL: the restarted gateway delivers them."""
    import signal
    import socket

    from conftest import start_coordinator

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{s.getsockname()[1]}"
    data = tmp_path / "data"
    coord, c = start_coordinator(coordinator.binary, data, listen)
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    procs = [coord]
    try:
        admin = c.admin()
        key = mandate.SigningKey.generate()
        key.save(tmp_path / "gateway.key")
        gateway_id = "spiffe://mandate.local/gateways/spooled"
        admin.register_agent(agent_id=gateway_id, public_key=key.public_key, role="tool")
        planner, planner_key = register(admin, c.address, "planner")
        chain = Chain.decode(
            planner.start_task(capabilities=[Capability.of("billing/invoices/*", "read")], ttl_ms=60_000).chain
        )
        planner.close()
        admin.close()
        (tmp_path / "gateway.toml").write_text(
            f"""
[gateway]
listen = "127.0.0.1:0"
agent = "{gateway_id}"
key = "gateway.key"
coordinator = "{listen}"
max_staleness_ms = 600000
spool_file = "decisions.spool"

[[upstream]]
name = "billing"
url = "http://127.0.0.1:{api.server_address[1]}"

[[upstream.route]]
method = "GET"
path = "/invoices/{{id}}"
action = "read"
resource = "billing/invoices/{{id}}"
"""
        )

        def gateway() -> tuple[subprocess.Popen[str], str]:
            proc = subprocess.Popen(
                [str(c.binary), "gateway", "--config", str(tmp_path / "gateway.toml")],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert "listening on" in first, first
            return proc, f"http://{first.split()[-1]}"

        first_gateway, base = gateway()
        coord.terminate()
        coord.wait(timeout=10)
        # The coordinator is down: the gateway decides offline and keeps the records.
        for i in range(3):
            path = f"/billing/invoices/{i}"
            call = mandate.http_call("read", "billing/invoices/{id}", {"id": str(i)}, "GET", path)
            status, _, _ = _request(base + path, "GET", mandate.http_headers(chain, planner_key, gateway_id, call))
            assert status == 200
        first_gateway.send_signal(signal.SIGKILL)
        first_gateway.wait(timeout=10)
        coord, c = start_coordinator(c.binary, data, listen)
        procs.append(coord)
        gateway()
        resources: set[str] = set()
        deadline = time.monotonic() + 20
        with c.admin() as admin:
            while len(resources) < 3 and time.monotonic() < deadline:
                log = admin.query_audit_log(
                    filter={"agent_id": gateway_id, "action_prefix": "invocation.offline_allowed"}, page_size=100
                )
                resources = {r.detail["resource"] for r in log.records}
                time.sleep(0.05)
        assert resources == {f"billing/invoices/{i}" for i in range(3)}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)
        api.shutdown()


def test_canonical_json_is_rfc_8785() -> None:
    """The same bytes the gateway hashes (crates/gateway/src/mcp.rs pins these too)."""
    value = {"\ue000": 1, "\U0001f600": 2, "b": [1, 2.5, None, True, 1e21, 1.5e-7, 100.0], "a": 'x\n"\x7f'}
    assert mandate.gateway.canonical_json(value) == (
        '{"a":"x\\n\\"\x7f","b":[1,2.5,null,true,1e+21,1.5e-7,100],"\U0001f600":2,"\ue000":1}'
    )
    rust = {
        "b": [1, 2.5, "x\n", True, None],
        "a": {"\u20ac": 1, "z": 0.000001, "\x01": 1e21},
        "c": -0.0,
        "d": 1e-7,
        "e": 100,
        "f": 123456789012345680000,
    }
    assert mandate.gateway.canonical_json(rust) == (
        '{"a":{"\\u0001":1e+21,"z":0.000001,"\u20ac":1},"b":[1,2.5,"x\\n",true,null],"c":0,"d":1e-7,"e":100,"f":123456789012345680000}'
    )


@contextlib.contextmanager
def _mcp_server(server: Any) -> Iterator[str]:
    """Serves an MCPServer over streamable HTTP on loopback; yields its endpoint URL."""
    import uvicorn

    config = uvicorn.Config(server.streamable_http_app(), host="127.0.0.1", port=0, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not web.started:
        assert time.monotonic() < deadline, "the MCP server did not start"
        time.sleep(0.01)
    port = web.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        web.should_exit = True
        thread.join(timeout=10)


def test_an_mcp_server_behind_the_gateway(coordinator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The `mcp` package's own client, through the gateway, sees only the tools its chain
    permits and runs only the permitted calls: not a tool outside the chain, an argument
    outside its constraint, arguments other than the proof's, a call without a proof, an
    ungoverned method, a replayed proof, a proof for another gateway, or any call once the
    link is revoked mid-session."""
    server_mod = pytest.importorskip("mcp.server.mcpserver")
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    import httpx2

    server = server_mod.MCPServer("files")
    ran: list[tuple[str, Any]] = []

    @server.tool()
    def read_file(path: str) -> str:
        ran.append(("read_file", path))
        return f"contents of {path}"

    @server.tool()
    def resize(path: str, factor: float, options: dict[str, Any]) -> str:
        ran.append(("resize", (path, factor, options)))
        return f"resized {path}"

    @server.tool()
    def delete_file(path: str) -> str:
        ran.append(("delete_file", path))
        return "deleted"

    admin = coordinator.admin()
    planner, planner_key = register(admin, coordinator.address, "planner")
    chain = Chain.decode(
        planner.start_task(
            capabilities=[
                Capability.of("mcp/files/read_file", "call").where("path", Prefix("reports/")),
                Capability.of("mcp/files/resize", "call"),
            ],
            ttl_ms=60_000,
        ).chain
    )

    with _mcp_server(server) as endpoint:
        upstream = f"""
[[upstream]]
name = "files"
kind = "mcp"
url = "{endpoint}"
"""
        with _gateway(coordinator, tmp_path, upstream) as (base, gateway_id):

            async def session_run() -> tuple[list[str], list[Any]]:
                http = httpx2.AsyncClient(headers={mandate.gateway.HEADER_CHAIN: chain.to_text()}, timeout=10)
                async with streamable_http_client(f"{base}/files", http_client=http) as (read, write):
                    async with ClientSession(read, write) as session:
                        await session.initialize()
                        listed = [t.name for t in (await session.list_tools()).tools]

                        async def call(name: str, arguments: dict[str, Any], proof_arguments: dict[str, Any] | None = None) -> Any:
                            proof_call = mandate.gateway.mcp_call("files", name, proof_arguments or arguments)
                            meta = mandate.gateway.mcp_meta(chain, planner_key, gateway_id, proof_call, force=True)
                            try:
                                return await session.call_tool(name, arguments, meta=meta)
                            except Exception as refused:  # the gateway's JSON-RPC error
                                return refused

                        options = {"\U0001f600": [1.5e-7, 1e21], "keep": True, "\ue000": None}
                        results = [
                            await call("read_file", {"path": "reports/q3.pdf"}),
                            await call("resize", {"path": "img/a.png", "factor": 0.25, "options": options}),
                            await call("read_file", {"path": "secrets/key"}),
                            await call("read_file", {"path": "secrets/key"}, {"path": "reports/q3.pdf"}),
                            await call("resize", {"path": "img/a.png", "factor": 0.5, "options": options}, {"path": "img/a.png", "factor": 0.25, "options": options}),
                            await call("delete_file", {"path": "reports/q3.pdf"}),
                        ]
                        for unproven in (
                            session.call_tool("read_file", {"path": "reports/q3.pdf"}),
                            session.list_resources(),
                        ):
                            try:
                                results.append(await unproven)
                            except Exception as refused:
                                results.append(refused)

                        async def send(meta: dict[str, str]) -> Any:
                            try:
                                return await session.call_tool("read_file", {"path": "reports/q3.pdf"}, meta=meta)
                            except Exception as refused:
                                return refused

                        q3 = mandate.mcp_call("files", "read_file", {"path": "reports/q3.pdf"})
                        once = mandate.mcp_meta(chain, planner_key, gateway_id, q3)
                        results.append(await send(once))
                        results.append(await send(once))  # the same proof again
                        elsewhere = mandate.mcp_meta(chain, planner_key, "spiffe://mandate.local/gateways/other", q3)
                        results.append(await send(elsewhere))
                        # Revoked mid-session: refused as soon as the feed delivers it.
                        planner.revoke_link(link_id=chain.leaf.id_hex, reason="gateway test")
                        deadline = time.monotonic() + 10
                        while True:
                            answer = await send(mandate.mcp_meta(chain, planner_key, gateway_id, q3, force=True))
                            if "REVOKED" in str(answer) or time.monotonic() > deadline:
                                break
                            await asyncio.sleep(0.01)
                        results.append(answer)
                        after = len(ran)
                        results.append(await send(mandate.mcp_meta(chain, planner_key, gateway_id, q3, force=True)))
                        assert len(ran) == after, "a call after the revocation reached the server"
                        return listed, results

            listed, results = asyncio.run(session_run())

            # The server's event stream opens only with a live chain.
            status, reason, _ = _request(f"{base}/files", "GET", {"accept": "text/event-stream"})
            assert (status, reason) == (401, "MANDATE_REQUIRED")

    assert sorted(listed) == ["read_file", "resize"]
    assert "contents of reports/q3.pdf" in str(results[0]), results[0]
    assert "resized img/a.png" in str(results[1]), results[1]
    for refused, reason in zip(results[2:8], [
        "NOT_PERMITTED",
        "INVOCATION_MISMATCH",
        "INVOCATION_MISMATCH",
        "NOT_PERMITTED",
        "MANDATE_REQUIRED",
        "METHOD_NOT_GOVERNED",
    ], strict=True):
        assert reason in str(refused), refused
    assert "contents of reports/q3.pdf" in str(results[8]), results[8]
    for refused, reason in zip(results[9:], ["REPLAYED", "WRONG_AUDIENCE", "REVOKED", "REVOKED"], strict=True):
        assert reason in str(refused), refused
    assert [name for name, _ in ran][:3] == ["read_file", "resize", "read_file"]
    for c in (admin, planner):
        c.close()


_STDIO_SERVER = '''
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("files")


def ran(line: str) -> None:
    with open(sys.argv[1], "a") as f:
        f.write(line + "\\n")


@server.tool()
def read_file(path: str) -> str:
    ran(f"read_file {path}")
    return f"contents of {path}"


@server.tool()
def delete_file(path: str) -> str:
    ran(f"delete_file {path}")
    return "deleted"


server.run("stdio")
'''


def test_a_stdio_mcp_server_behind_the_gateway(coordinator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`mandate gateway stdio -- <server>` started by the `mcp` package's stdio client in
    place of the server: the list is filtered, the allowed call runs, the others are
    refused by the gateway, and the server's stdout stays a clean MCP channel."""
    pytest.importorskip("mcp.server.mcpserver")
    import sys

    from mcp import types
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    (tmp_path / "server.py").write_text(_STDIO_SERVER)
    admin = coordinator.admin()
    planner, planner_key = register(admin, coordinator.address, "planner")
    chain = Chain.decode(
        planner.start_task(
            capabilities=[Capability.of("mcp/files/read_file", "call").where("path", Prefix("reports/"))],
            ttl_ms=60_000,
        ).chain
    )
    with _gateway(coordinator, tmp_path, "") as (_, gateway_id):
        params = StdioServerParameters(
            command=str(coordinator.binary),
            args=[
                "gateway",
                "stdio",
                "--config",
                str(tmp_path / "gateway.toml"),
                "--name",
                "files",
                "--",
                sys.executable,
                str(tmp_path / "server.py"),
                str(tmp_path / "ran.txt"),
            ],
            env={"RUST_LOG": "warn"},
        )

        async def run() -> tuple[list[str], list[Any]]:
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    listing = await session.list_tools(
                        params=types.PaginatedRequestParams(_meta={mandate.gateway.META_CHAIN: chain.to_text()})
                    )
                    results: list[Any] = []
                    for tool, args in [
                        ("read_file", {"path": "reports/q3.pdf"}),
                        ("read_file", {"path": "secrets/key"}),
                        ("delete_file", {"path": "reports/q3.pdf"}),
                    ]:
                        call = mandate.mcp_call("files", tool, args)
                        meta = mandate.mcp_meta(chain, planner_key, gateway_id, call, force=True)
                        try:
                            results.append(await session.call_tool(tool, args, meta=meta))
                        except Exception as refused:
                            results.append(refused)
                    try:
                        results.append(await session.call_tool("read_file", {"path": "reports/q3.pdf"}))
                    except Exception as refused:
                        results.append(refused)
                    return [t.name for t in listing.tools], results

        listed, results = asyncio.run(run())
    assert listed == ["read_file"]
    assert "contents of reports/q3.pdf" in str(results[0]), results[0]
    for refused, reason in zip(results[1:], ["NOT_PERMITTED", "NOT_PERMITTED", "MANDATE_REQUIRED"], strict=True):
        assert reason in str(refused), refused
    assert (tmp_path / "ran.txt").read_text() == "read_file reports/q3.pdf\n"
    for c in (admin, planner):
        c.close()
