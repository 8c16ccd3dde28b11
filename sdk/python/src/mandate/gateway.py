"""Calling an HTTP API or an MCP server through `mandate gateway` (docs/GATEWAY.md): the
call a request stands for, which the proof must name exactly, and the headers (or MCP
`_meta` keys) that carry chain and proof."""

from __future__ import annotations

import hashlib
import json
import math
from decimal import Decimal
from typing import Any, Mapping

from mandate.holder import prove
from mandate.keys import SigningKey
from mandate.token import Call, Chain

HEADER_CHAIN = "x-mandate-chain"
HEADER_INVOCATION = "x-mandate-invocation"
META_CHAIN = "mandate.dev/chain"
META_INVOCATION = "mandate.dev/invocation"
ARGUMENTS_DIGEST = "mcp.arguments_sha256"


def http_call(
    action: str,
    resource: str,
    params: Mapping[str, str],
    method: str,
    path: str,
    query: str = "",
    body: bytes = b"",
) -> Call:
    """The call the gateway checks for a request: the route's `action`, its `resource`
    template with the path parameters filled in, and as arguments the path parameters
    (text) and `http.method`, `http.path` (as sent to the gateway), `http.query` (raw, or
    empty) and `http.body_sha256` (lowercase hex)."""
    for k, v in params.items():
        resource = resource.replace("{" + k + "}", v)
    args: dict[str, str | int] = {k: str(v) for k, v in params.items()}
    args.update(
        {
            "http.method": method.upper(),
            "http.path": path,
            "http.query": query,
            "http.body_sha256": hashlib.sha256(body).hexdigest(),
        }
    )
    return Call(action, resource, args)


def http_headers(chain: Chain, holder: SigningKey, gateway: str, call: Call) -> dict[str, str]:
    """The two headers for one request through the gateway whose agent id is `gateway`:
    the chain and a fresh proof for `call`."""
    return {
        HEADER_CHAIN: chain.to_text(),
        HEADER_INVOCATION: prove(chain, holder, gateway, call).to_text(),
    }


def canonical_json(value: Any) -> str:
    """RFC 8785 (JCS): no whitespace, object keys sorted by UTF-16 code units, strings
    escaped only as JSON requires, numbers as ECMAScript prints them."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return str(value)
        return _es_number(float(value))
    if isinstance(value, float):
        return _es_number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, Mapping):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical_json(value[k]) for k in keys) + "}"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def _es_number(f: float) -> str:
    if not math.isfinite(f):
        raise ValueError("JSON has no NaN or infinity")
    if f == 0:
        return "0"
    sign = "-" if f < 0 else ""
    # repr gives the shortest digits that round-trip; Decimal splits them exactly.
    d = Decimal(repr(abs(f))).normalize().as_tuple()
    digits = "".join(map(str, d.digits))
    n = len(digits) + int(d.exponent)  # value = 0.digits * 10^n
    k = len(digits)
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        e = n - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + body


def mcp_call(upstream: str, tool: str, arguments: Mapping[str, Any] | None = None) -> Call:
    """The call the gateway checks for `tools/call` of `tool` on the MCP upstream named
    `upstream`: `call` on `mcp/<upstream>/<tool>`, with every top-level argument that is
    text or a 64-bit integer as an argument, and `mcp.arguments_sha256`: lowercase hex
    SHA-256 of the canonical JSON (RFC 8785) of the whole arguments object."""
    arguments = dict(arguments or {})
    args: dict[str, str | int] = {}
    for k, v in arguments.items():
        if isinstance(v, str):
            args[k] = v
        elif isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63:
            args[k] = v
    args[ARGUMENTS_DIGEST] = hashlib.sha256(canonical_json(arguments).encode()).hexdigest()
    return Call("call", f"mcp/{upstream}/{tool}", args)


def mcp_meta(chain: Chain, holder: SigningKey, gateway: str, call: Call, force: bool = False) -> dict[str, str]:
    """The `_meta` entries for one `tools/call` through the gateway (MCP clients set them
    per call; the headers work too): the chain and a fresh proof for `call`. `force` as for
    `prove`."""
    return {
        META_CHAIN: chain.to_text(),
        META_INVOCATION: prove(chain, holder, gateway, call, force=force).to_text(),
    }
