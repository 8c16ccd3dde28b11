"""`mandate gateway` (the Rust binary, as an operator runs it) in front of a Python HTTP
API, called by a Python agent with mandate.http_headers: the allowed call reaches the API
with the gateway's credential and without Mandate's headers; a call outside the chain
never does."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import urllib.error
import urllib.request

import mandate
from mandate import Capability, Chain
from tests_support import register


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


def test_an_http_api_behind_the_gateway(coordinator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    admin = coordinator.admin()
    gateway_key = mandate.SigningKey.generate()
    gateway_key.save(tmp_path / "gateway.key")
    gateway_id = f"spiffe://mandate.local/gateways/py-{id(gateway_key)}"
    admin.register_agent(agent_id=gateway_id, public_key=gateway_key.public_key, role="tool")
    (tmp_path / "billing.secret").write_text("s3cret\n")
    (tmp_path / "gateway.toml").write_text(
        f"""
[gateway]
listen = "127.0.0.1:0"
agent = "{gateway_id}"
key = "gateway.key"
coordinator = "{coordinator.address}"

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
        base = f"http://{first.split()[-1]}"
        planner, planner_key = register(admin, coordinator.address, "planner")
        chain = Chain.decode(
            planner.start_task(capabilities=[Capability.of("billing/invoices/*", "read")], ttl_ms=60_000).chain
        )
        call = mandate.http_call("read", "billing/invoices/{id}", {"id": "42"}, "GET", "/billing/invoices/42")
        status, _, body = _request(f"{base}/billing/invoices/42", "GET", mandate.http_headers(chain, planner_key, gateway_id, call))
        assert (status, json.loads(body)) == (200, {"path": "/invoices/42"})
        assert _Api.seen[-1]["authorization"] == "Bearer s3cret"
        assert not any(k.startswith("x-mandate-") for k in _Api.seen[-1])
        before = len(_Api.seen)
        refund = mandate.http_call("write", "billing/refunds/{id}", {"id": "7"}, "POST", "/billing/refunds/7", body=b"{}")
        headers = {
            mandate.gateway.HEADER_CHAIN: chain.to_text(),
            mandate.gateway.HEADER_INVOCATION: mandate.prove(chain, planner_key, gateway_id, refund, force=True).to_text(),
        }
        status, reason, _ = _request(f"{base}/billing/refunds/7", "POST", headers, b"{}")
        assert (status, reason) == (403, "NOT_PERMITTED")
        assert len(_Api.seen) == before, "a refused call reached the API"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        api.shutdown()
        admin.close()
