"""The tool side: verify each call's chain and proof offline, following the coordinator's
revocation feed, with bounded staleness (fail closed, or ask `Authorize` when the feed is
too old), and a decorator for plain Python functions.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, TypeVar

from mandate.client import Client
from mandate.errors import Denied, MandateError
from mandate.token import Call, Chain, Denial, Invocation, Value
from mandate.verify import (
    TrustBundle,
    TrustedKey,
    Verifier,
    VerifierConfig,
    feed_statement,
    system_clock,
    trust_statement,
    verify_feed_statement,
)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Decision:
    """What a tool may do with one call."""

    allowed: bool
    reason: str = ""
    detail: str = ""
    link: int | None = None
    holder: str = ""
    task: str = ""
    online: bool = False


class _Revocations:
    """The followed revocation set: link id → expiry, the epoch, when last heard from."""

    def __init__(self) -> None:
        self.links: dict[bytes, int] = {}
        self.epoch = 0
        self.heard_ms = 0
        self.lock = threading.Lock()

    def __contains__(self, link_id: object) -> bool:
        return link_id in self.links


class ToolVerifier:
    """Verifies calls for one tool (the client's agent is the audience).

    `max_staleness_ms`: how old the feed may be before offline answers stop; then
    `when_stale="fail"` refuses every call and `"online"` asks the coordinator. Chains that
    require online authorisation always go online. Call :meth:`close` (or use it as a
    context manager) to stop following the feed.
    """

    def __init__(
        self,
        client: Client,
        *,
        max_staleness_ms: int = 10_000,
        when_stale: str = "fail",
        config: VerifierConfig | None = None,
        clock: Callable[[], int] = system_clock,
        ready_timeout_s: float = 10.0,
    ) -> None:
        if when_stale not in ("fail", "online"):
            raise ValueError("when_stale is `fail` or `online`")
        self.client = client
        self.audience = client.signer.agent
        self.max_staleness_ms = max_staleness_ms
        self.when_stale = when_stale
        self.clock = clock
        self._trust_version = 0
        trust = self._fetch_trust()
        self._trust = trust
        self._untrusted = False
        self.verifier = Verifier(trust, config, clock)
        self._skew = self.verifier.config.clock_skew_ms
        self._revoked = _Revocations()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._stream: Any = None
        self._thread = threading.Thread(target=self._follow, name="mandate-feed", daemon=True)
        self._thread.start()
        if not self._ready.wait(ready_timeout_s):
            self.close()
            raise MandateError("FEED_UNAVAILABLE", "the revocation feed did not answer")
        if self._untrusted:
            self.close()
            raise MandateError(
                "FEED_UNTRUSTED", "the revocation feed is not signed by a trusted coordinator key"
            )

    @property
    def trust_version(self) -> int:
        """The version of the trust bundle in use (0 from a coordinator that does not
        version it): it grows as the feed announces coordinator keys added or retired."""
        return self._trust_version

    @property
    def trust(self) -> TrustBundle:
        """The trust bundle in use."""
        return self._trust

    @property
    def epoch(self) -> int:
        """The revocation epoch applied so far."""
        return self._revoked.epoch

    def staleness_ms(self) -> int:
        """How long since the feed was last heard from."""
        return max(0, self.clock() - self._revoked.heard_ms)

    def close(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()

    def __enter__(self) -> "ToolVerifier":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _fetch_trust(self) -> TrustBundle:
        bundle = self.client.get_trust_bundle()
        trust = TrustBundle(
            TrustedKey(bytes(k.public_key), k.not_before_ms, k.not_after_ms) for k in bundle.keys
        )
        self._trust_version = bundle.version
        return trust

    def _follow(self) -> None:
        backoff = 0.1
        refresh = False
        while not self._stop.is_set():
            try:
                if refresh:
                    # Signed by a key we do not know: the coordinator may have rotated
                    # its key. Fetch the bundle again before resuming, but only over TLS:
                    # on plaintext, whoever alters the feed could answer the fetch too.
                    refresh = False
                    if getattr(self.client, "tls", False):
                        self._trust = self._fetch_trust()
                        self.verifier.trust = self._trust
                self._stream = self.client.watch_revocations(
                    after_epoch=self._revoked.epoch, trust_version=self._trust_version
                )
                for msg in self._stream:
                    refused = self._apply(msg)
                    if refused is not None:
                        if refused == "untrusted" and not self._ready.is_set():
                            self._untrusted = True
                            self._ready.set()
                            return
                        # Treated as silence: drop the stream, resume from our epoch.
                        refresh = refused == "untrusted"
                        break
                    self._ready.set()
                    backoff = 0.1
                    if self._stop.is_set():
                        return
            except MandateError:
                pass
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 5.0)

    def _apply(self, msg: Any) -> str | None:
        """Applies one feed message if its signature verifies and it follows on from our
        epoch; otherwise returns `untrusted` or `gap` and changes nothing. Staleness counts
        from the coordinator's signed time, so a replayed old message never looks fresh."""
        now = self.clock()
        r = self._revoked
        kind = msg.WhichOneof("event")
        if kind is None:
            return "untrusted"
        if kind == "trust":
            return self._apply_trust(msg, now)
        body = getattr(msg, kind)
        wire_links = list(body.links) if kind != "heartbeat" else []
        try:
            links = [(bytes.fromhex(l.link_id), l.expires_at_ms, l.epoch) for l in wire_links]
        except ValueError:
            return "untrusted"
        if any(len(l[0]) != 16 for l in links):
            return "untrusted"
        statement = feed_statement(kind, msg.previous_epoch, body.epoch, msg.time_ms, links)
        if not verify_feed_statement(self._trust, statement, msg.time_ms, bytes(msg.signature), now):
            return "untrusted"
        with r.lock:
            if kind == "snapshot":
                if body.epoch < r.epoch:
                    return "gap"  # a replayed older snapshot would forget revocations
                r.links = {l[0]: l[1] for l in links}
                r.epoch = body.epoch
            elif kind == "batch":
                if msg.previous_epoch != r.epoch:
                    return "gap"
                for l in links:
                    r.links[l[0]] = l[1]
                r.epoch = body.epoch
            elif body.epoch != r.epoch or msg.previous_epoch != r.epoch:
                return "gap"
            r.heard_ms = max(r.heard_ms, min(msg.time_ms, now))
            # Revocations matter until their link is past expiry plus the skew.
            r.links = {k: e for k, e in r.links.items() if e + self._skew >= now}
        return None

    def _apply_trust(self, msg: Any, now: int) -> str | None:
        """A trust update, signed by a key this verifier already trusts: a newer version
        replaces the bundle (coordinator keys added or retired through the service); an
        older or the same one is skipped (a replay could restore a retired key). It says
        nothing of revocations, so the feed is no fresher for it."""
        update = msg.trust
        try:
            keys = [TrustedKey(bytes(k.public_key), k.not_before_ms, k.not_after_ms) for k in update.keys]
            bundle = TrustBundle(keys)
        except ValueError:
            return "untrusted"
        statement = trust_statement(keys, update.version, msg.time_ms)
        if msg.previous_epoch != 0 or not verify_feed_statement(
            self._trust, statement, msg.time_ms, bytes(msg.signature), now
        ):
            return "untrusted"
        if update.version > self._trust_version:
            self._trust = bundle
            self.verifier.trust = bundle
            self._trust_version = update.version
        return None

    def check(self, chain: Chain | str | bytes, proof: Invocation | str | bytes, call: Call) -> Decision:
        """Whether `call` may proceed under `chain` with `proof`. Never raises for a bad
        token: a denial is a decision with its reason."""
        try:
            c = chain if isinstance(chain, Chain) else self.verifier.decode_chain(chain)
            p = proof if isinstance(proof, Invocation) else self.verifier.decode_invocation(proof)
        except Denial as d:
            return Decision(False, d.reason.value, d.detail, d.link)
        online_only = any(l.body.require_online for l in c.links)
        stale = self.staleness_ms() > self.max_staleness_ms
        if online_only or (stale and self.when_stale == "online"):
            return self._online(c, p, call)
        if stale:
            return Decision(False, "FEED_STALE", f"the revocation feed is {self.staleness_ms()} ms old")
        try:
            with self._revoked.lock:
                revoked = set(self._revoked.links)
            v = self.verifier.verify_invocation(c, p, self.audience, call, revoked)
        except Denial as d:
            return Decision(False, d.reason.value, d.detail, d.link)
        return Decision(True, holder=v.holder_agent, task=v.task.hex())

    def _online(self, chain: Chain, proof: Invocation, call: Call) -> Decision:
        try:
            r = self.client.authorize(chain, proof, call)
        except MandateError as e:
            return Decision(False, "COORDINATOR_UNAVAILABLE", f"online authorisation failed: {e}", online=True)
        return Decision(
            r.allowed,
            r.reason,
            r.detail,
            r.link_index if not r.allowed else None,
            r.holder_agent_id,
            r.task_id,
            online=True,
        )


def tool(
    verifier: ToolVerifier,
    *,
    action: str,
    resource: str | Callable[..., str],
    args: Callable[..., Mapping[str, Value]] | None = None,
    refusal: Callable[[str, str], Exception] | None = None,
) -> Callable[[F], F]:
    """Guards a function (plain or `async`): each call must carry `mandate_chain` and
    `mandate_proof` (text forms) as keyword arguments, and is checked before the function
    runs. The call checked is `action` on `resource` (a string, or a function of the
    call's keyword arguments), with `args` (by default, the keyword arguments that are text
    or integers). A refusal raises :class:`mandate.errors.Denied` with the reason code (or
    what `refusal(reason, detail)` returns: an MCP server wants its `ToolError`, whose
    message reaches the caller); the function never runs.

    The guarded function's signature gains the two keyword parameters, so frameworks that
    build a schema from it (an MCP server's `@server.tool()`) ask callers for them::

        @server.tool()
        @mandate.tool(verifier, action="call", resource="mcp/files/read_file",
                      refusal=lambda reason, detail: ToolError(f"{reason}: {detail}"))
        def read_file(path: str) -> str: ...
    """

    def refuse(reason: str, detail: str) -> Exception:
        return refusal(reason, detail) if refusal else Denied(reason, detail)

    def check(kwargs: dict[str, Any], chain: str | None, proof: str | None) -> None:
        if not chain or not proof:
            raise refuse("MANDATE_REQUIRED", "this tool needs a chain and a proof (mandate_chain, mandate_proof)")
        name = resource(**kwargs) if callable(resource) else resource
        values = dict(args(**kwargs)) if args else {
            k: v for k, v in kwargs.items() if isinstance(v, (str, int)) and not isinstance(v, bool)
        }
        decision = verifier.check(chain, proof, Call(action, name, values))
        if not decision.allowed:
            raise refuse(decision.reason, decision.detail)

    def wrap(fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def guarded_async(*pos: Any, mandate_chain: str | None = None, mandate_proof: str | None = None, **kwargs: Any) -> Any:
                check(kwargs, mandate_chain, mandate_proof)
                return await fn(*pos, **kwargs)

            guarded: Any = guarded_async
        else:

            @functools.wraps(fn)
            def guarded_sync(*pos: Any, mandate_chain: str | None = None, mandate_proof: str | None = None, **kwargs: Any) -> Any:
                check(kwargs, mandate_chain, mandate_proof)
                return fn(*pos, **kwargs)

            guarded = guarded_sync
        signature = inspect.signature(fn)
        extra = [
            inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Optional[str])
            for n in ("mandate_chain", "mandate_proof")
        ]
        params = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
        keyword = [p for p in signature.parameters.values() if p.kind == inspect.Parameter.VAR_KEYWORD]
        guarded.__signature__ = signature.replace(parameters=[*params, *extra, *keyword])
        guarded.__annotations__ = {**getattr(fn, "__annotations__", {}), "mandate_chain": Optional[str], "mandate_proof": Optional[str]}
        del guarded.__wrapped__  # frameworks must see the guarded signature, not the original
        return guarded  # type: ignore[no-any-return]

    return wrap


def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Polls `predicate` until it holds or `timeout_s` passes (for tests and scripts)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
