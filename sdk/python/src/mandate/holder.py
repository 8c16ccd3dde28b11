"""The holder's side of a chain: delegating a narrower link to a worker (the delegator
signs it; the coordinator registers and seals it through `Delegate`) and proving one call
to a tool."""

from __future__ import annotations

import os
import time
from typing import Sequence

from mandate._proto.mandate.token.v1 import token_pb2 as pb
from mandate.keys import SigningKey
from mandate.token import (
    NONCE_LEN,
    Call,
    Capability,
    Chain,
    Denial,
    Invocation,
    Link,
    LinkBody,
    LinkKind,
    Reason,
    check_agent_id,
    link_digest,
)
from mandate.verify import _check_child


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def delegate(
    chain: Chain,
    holder: SigningKey,
    *,
    to_key: bytes,
    to_agent: str,
    capabilities: Sequence[Capability],
    ttl_ms: int,
    max_depth: int = 0,
    not_before_ms: int | None = None,
    link_id: bytes | None = None,
) -> Chain:
    """`chain` with one more link, signed by `holder` (who must hold its leaf), for the
    agent `to_agent` with key `to_key`. The window starts now (or at the leaf's start, if
    later) and ends `ttl_ms` later, never after the leaf's end; the seal and online
    requirements are the leaf's. Anything a verifier would reject as a widening raises
    :class:`Denial` here. The coordinator seals the link: pass the result to
    :meth:`Client.delegate`.
    """
    leaf = chain.leaf
    if holder.public_key != leaf.body.holder:
        raise ValueError("the signing key is not the leaf holder's key")
    if len(to_key) != 32:
        raise ValueError("the new holder's key is 32 bytes")
    start = max(_now_ms() if not_before_ms is None else not_before_ms, leaf.body.not_before_ms)
    body = LinkBody(
        id=link_id or os.urandom(16),
        holder=bytes(to_key),
        holder_agent=check_agent_id(to_agent),
        capabilities=tuple(capabilities),
        not_before_ms=start,
        expires_at_ms=min(start + ttl_ms, leaf.body.expires_at_ms),
        max_depth=max_depth,
        kind=LinkKind.DELEGATION,
        require_seal=leaf.body.require_seal,
        require_online=leaf.body.require_online,
        parent=leaf.digest,
        depth=leaf.body.depth + 1,
    )
    body_bytes = body.to_pb().SerializeToString()
    signature = holder.sign(b"mandate/v1/link", body_bytes)
    child = Link(body, body_bytes, signature, None, link_digest(body_bytes, signature))
    _check_child(leaf, child, len(chain), True)
    return Chain([*chain.links, child])


def prove(
    chain: Chain,
    holder: SigningKey,
    audience: str,
    call: Call,
    *,
    issued_at_ms: int | None = None,
    nonce: bytes | None = None,
    force: bool = False,
) -> Invocation:
    """A proof, signed by the leaf holder, for one `call` at the tool `audience`. Refuses
    (raises :class:`Denial` with the tool's reason) a call the chain does not permit or a
    key that does not hold the leaf; `force=True` signs it anyway (to test how a tool
    refuses)."""
    if force:
        pass
    elif holder.public_key != chain.leaf.body.holder:
        raise Denial(
            Reason.BAD_SIGNATURE,
            "your key is not the key the chain's leaf was issued to",
            len(chain) - 1,
        )
    else:
        chain.check_permits(call)
    nonce = nonce if nonce is not None else os.urandom(NONCE_LEN)
    if len(nonce) != NONCE_LEN:
        raise ValueError("a nonce is 16 bytes")
    issued = _now_ms() if issued_at_ms is None else issued_at_ms
    body = pb.InvocationBody(
        chain_digest=chain.leaf.digest,
        audience=audience,
        action=call.action,
        resource=call.resource,
        args=call.args_to_pb(),
        issued_at_ms=issued,
        nonce=nonce,
    )
    body_bytes = body.SerializeToString()
    signature = holder.sign(b"mandate/v1/invocation", body_bytes)
    return Invocation(chain.leaf.digest, audience, call, issued, nonce, body_bytes, signature)
