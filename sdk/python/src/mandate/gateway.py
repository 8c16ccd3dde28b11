"""Calling an HTTP API through `mandate gateway` (docs/GATEWAY.md): the call a request
stands for, which the proof must name exactly, and the headers that carry chain and proof."""

from __future__ import annotations

import hashlib
from typing import Mapping

from mandate.holder import prove
from mandate.keys import SigningKey
from mandate.token import Call, Chain

HEADER_CHAIN = "x-mandate-chain"
HEADER_INVOCATION = "x-mandate-invocation"


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
