"""Mandate for Python: just-in-time, task-scoped authority for AI agents.

Planners and workers talk to the coordinator with :class:`Client` (requests signed by a
:class:`Signer`); workers prove calls with :func:`prove`; tools verify chains and proofs
offline with :class:`Verifier` (or :class:`ToolVerifier`, which follows the revocation
feed) or online with :meth:`Client.authorize`.
"""

from mandate.aio import AsyncClient
from mandate.client import Client, Signer
from mandate.errors import (
    Aborted,
    AlreadyExists,
    Denied,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    KeyFileError,
    MandateError,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from mandate.holder import delegate, prove
from mandate.keys import SigningKey
from mandate.token import (
    CHAIN_TEXT_PREFIX,
    INVOCATION_TEXT_PREFIX,
    Call,
    Capability,
    Chain,
    Denial,
    Exact,
    Invocation,
    Limits,
    Link,
    LinkBody,
    LinkKind,
    OneOf,
    Prefix,
    Range,
    Reason,
    Resource,
    Seal,
)
from mandate.gateway import http_call, http_headers, mcp_call, mcp_meta
from mandate.guard import Decision, ToolVerifier, tool, wait_for
from mandate.verify import TrustBundle, TrustedKey, VerifiedChain, Verifier, VerifierConfig

__all__ = [
    "Aborted",
    "AsyncClient",
    "AlreadyExists",
    "CHAIN_TEXT_PREFIX",
    "Client",
    "Decision",
    "Denied",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "KeyFileError",
    "MandateError",
    "NotFound",
    "ResourceExhausted",
    "Signer",
    "SigningKey",
    "ToolVerifier",
    "Unauthenticated",
    "Unavailable",
    "delegate",
    "http_call",
    "http_headers",
    "mcp_call",
    "mcp_meta",
    "prove",
    "tool",
    "wait_for",
    "INVOCATION_TEXT_PREFIX",
    "Call",
    "Capability",
    "Chain",
    "Denial",
    "Exact",
    "Invocation",
    "Limits",
    "Link",
    "LinkBody",
    "LinkKind",
    "OneOf",
    "Prefix",
    "Range",
    "Reason",
    "Resource",
    "Seal",
    "TrustBundle",
    "TrustedKey",
    "VerifiedChain",
    "Verifier",
    "VerifierConfig",
]
