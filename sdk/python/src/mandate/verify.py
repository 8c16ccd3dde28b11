"""Offline verification of chains and invocation proofs, in docs/TOKEN.md's order.

The same verdicts as `mandate-core` on every golden vector (tests/test_vectors.py runs
them all). A verifier keeps a bounded cache of links whose signatures it has checked and a
bounded replay cache of proof nonces; it is safe to share between threads.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Collection, Iterable, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mandate import _ed25519
from mandate.token import (
    Call,
    Chain,
    Denial,
    Invocation,
    Limits,
    Link,
    LinkKind,
    Reason,
    is_attenuation,
)

LINK_DOMAIN = b"mandate/v1/link\x00"
SEAL_DOMAIN = b"mandate/v1/seal\x00"
INVOCATION_DOMAIN = b"mandate/v1/invocation\x00"


def system_clock() -> int:
    """Unix milliseconds."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class TrustedKey:
    """A coordinator key a verifier trusts from `not_before_ms` (inclusive) to
    `not_after_ms` (exclusive), on the verifier's clock, with no skew allowance."""

    key: bytes
    not_before_ms: int = 0
    not_after_ms: int = 2**64 - 1

    def active(self, now_ms: int) -> bool:
        return self.not_before_ms <= now_ms < self.not_after_ms


class TrustBundle:
    """The coordinator keys a verifier trusts (several at once, for rotation)."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        self.keys = list(keys)
        for k in self.keys:
            if len(k.key) != 32 or not _ed25519.usable_key(k.key):
                raise ValueError("a trusted key must be a usable Ed25519 public key")
            if k.not_before_ms >= k.not_after_ms:
                raise ValueError("a trusted key's window must not be empty")

    def lookup(self, key: bytes, now_ms: int) -> str:
        """`active`, `inactive` (known, outside its window) or `unknown`."""
        known = False
        for k in self.keys:
            if k.key == key:
                if k.active(now_ms):
                    return "active"
                known = True
        return "inactive" if known else "unknown"


class RevocationSet(Protocol):
    """Answers whether a link id (16 bytes) is revoked."""

    def __contains__(self, link_id: object) -> bool: ...


@dataclass
class VerifierConfig:
    """How a verifier behaves; the defaults are the product's."""

    limits: Limits = field(default_factory=Limits)
    clock_skew_ms: int = 30_000
    invocation_window_ms: int = 60_000
    accept_break_glass: bool = True
    max_break_glass_ms: int = 3_600_000
    online: bool = False
    link_cache_capacity: int = 16_384
    replay_cache_capacity: int = 1 << 20
    chain_cache_capacity: int = 4096
    """Decoded chains kept by their exact bytes or text (a tool sees the same chain on
    every call of a task), up to 8 KiB each; 0 disables it."""


def _verify(key: bytes, message: bytes, signature: bytes) -> bool:
    """Strict Ed25519: a usable key, a canonical large-order `R`, then the equation (and
    `S < L`) by OpenSSL."""
    if not _ed25519.usable_key(key) or not _ed25519.r_is_canonical_large_order(signature):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


FEED_DOMAIN = b"mandate/v1/revocations"
_FEED_KINDS = {"snapshot": 1, "batch": 2, "heartbeat": 3, "trust": 4}


def feed_statement(
    kind: str, previous_epoch: int, epoch: int, time_ms: int, links: Iterable[tuple[bytes, int, int]]
) -> bytes:
    """The statement a revocation feed message's signature covers (docs/PROTOCOL.md):
    kind, previous epoch, epoch, time, link count and the SHA-256 of the links (each
    16-byte id, expiry and epoch), fixed-width big-endian."""
    h = hashlib.sha256()
    count = 0
    for link_id, expires_at_ms, link_epoch in links:
        h.update(link_id + expires_at_ms.to_bytes(8, "big") + link_epoch.to_bytes(8, "big"))
        count += 1
    return (
        bytes([_FEED_KINDS[kind]])
        + previous_epoch.to_bytes(8, "big")
        + epoch.to_bytes(8, "big")
        + time_ms.to_bytes(8, "big")
        + count.to_bytes(4, "big")
        + h.digest()
    )


def trust_statement(keys: Iterable[TrustedKey], version: int, time_ms: int) -> bytes:
    """The statement a trust update's signature covers (docs/PROTOCOL.md): kind 4, previous
    epoch 0, the bundle's version in place of the epoch, the time, the key count and the
    SHA-256 of the keys in order (each 32-byte key, `not_before_ms`, `not_after_ms`)."""
    h = hashlib.sha256()
    count = 0
    for k in keys:
        h.update(k.key + k.not_before_ms.to_bytes(8, "big") + k.not_after_ms.to_bytes(8, "big"))
        count += 1
    return (
        bytes([_FEED_KINDS["trust"]])
        + (0).to_bytes(8, "big")
        + version.to_bytes(8, "big")
        + time_ms.to_bytes(8, "big")
        + count.to_bytes(4, "big")
        + h.digest()
    )


def verify_feed_statement(
    trust: TrustBundle, statement: bytes, time_ms: int, signature: bytes, now_ms: int | None = None
) -> bool:
    """Whether `signature` is by a coordinator key trusted at `time_ms` (and at `now_ms`,
    when given: a key past its window cannot sign back-dated statements) over `statement`."""
    message = FEED_DOMAIN + b"\x00" + statement
    now = time_ms if now_ms is None else now_ms
    return len(signature) == 64 and any(
        k.active(time_ms) and k.active(now) and _verify(k.key, message, signature) for k in trust.keys
    )


class _Lru:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: OrderedDict[object, object] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: object) -> object | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: object, value: object) -> None:
        if self.capacity == 0:
            return
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)


class _ReplayCache:
    """Nonces until they expire; refuses (rather than forgets) when full of live ones."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.expiry: dict[tuple[bytes, bytes], int] = {}
        self.lock = threading.Lock()

    def check_and_insert(self, key: tuple[bytes, bytes], expires_ms: int, now_ms: int) -> str:
        with self.lock:
            seen = self.expiry.get(key)
            if seen is not None and seen > now_ms:
                return "replayed"
            if len(self.expiry) >= self.capacity:
                self.expiry = {k: e for k, e in self.expiry.items() if e > now_ms}
                if len(self.expiry) >= self.capacity:
                    return "full"
            self.expiry[key] = expires_ms
            return "fresh"


class VerifiedChain:
    """A chain that passed verification."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    @property
    def holder_agent(self) -> str:
        return self.chain.leaf.body.holder_agent

    @property
    def task(self) -> bytes:
        return self.chain.task

    @property
    def expires_at_ms(self) -> int:
        return min(l.body.expires_at_ms for l in self.chain.links)

    @property
    def is_break_glass(self) -> bool:
        return self.chain.root.body.kind == LinkKind.BREAK_GLASS

    @property
    def link_ids(self) -> list[bytes]:
        return [l.id for l in self.chain.links]


def _check_child(parent: Link, child: Link, index: int, allow_unsealed: bool) -> None:
    p, c = parent.body, child.body

    def deny(reason: Reason, detail: str) -> Denial:
        return Denial(reason, detail, index)

    if c.parent != parent.digest:
        raise deny(Reason.PARENT_MISMATCH, "parent digest does not match the previous link")
    if p.kind == LinkKind.BREAK_GLASS:
        raise deny(Reason.BREAK_GLASS_DELEGATED, "a break-glass link cannot be delegated")
    if c.depth != p.depth + 1:
        raise deny(Reason.DEPTH_MISMATCH, "depth is not the parent's depth plus one")
    if p.max_depth == 0:
        raise deny(Reason.DEPTH_EXCEEDED, "the parent allows no further delegation")
    if c.max_depth >= p.max_depth:
        raise deny(Reason.DEPTH_EXCEEDED, "remaining depth must be below the parent's")
    if c.not_before_ms < p.not_before_ms or c.expires_at_ms > p.expires_at_ms:
        raise deny(Reason.WINDOW_WIDENED, "validity window is not inside the parent's")
    if (p.require_seal and not c.require_seal) or (p.require_online and not c.require_online):
        raise deny(Reason.SCOPE_WIDENED, "drops a seal or online requirement the parent imposes")
    if not is_attenuation(c.capabilities, p.capabilities):
        raise deny(Reason.SCOPE_WIDENED, "a capability is not within the parent's capabilities")
    if p.require_seal and child.seal is None and not allow_unsealed:
        raise deny(Reason.SEAL_MISSING, "the parent requires sealed delegations")


class Verifier:
    """Verifies chains and proofs offline with a trust bundle.

    `clock` returns Unix milliseconds (the system clock by default; tests pass their own).
    """

    def __init__(
        self,
        trust: TrustBundle,
        config: VerifierConfig | None = None,
        clock: Callable[[], int] = system_clock,
    ) -> None:
        self.trust = trust
        self.config = config or VerifierConfig()
        self.clock = clock
        self._links = _Lru(self.config.link_cache_capacity)
        self._nonces = _ReplayCache(self.config.replay_cache_capacity)
        self._chains = _Lru(self.config.chain_cache_capacity)
        # Leaf digests of chains whose links passed every check against their parents:
        # those checks depend on nothing but the links, which the leaf digest fixes.
        self._structure = _Lru(self.config.link_cache_capacity)

    def decode_chain(self, token: str | bytes) -> Chain:
        """Decodes a chain (text or binary), reusing an earlier decode of the same input."""
        cached = self._chains.get(token)
        if isinstance(cached, Chain):
            return cached
        chain = Chain.parse(token, self.config.limits)
        # Bounded in bytes as well as entries: only chains of usual size are kept.
        if len(token) <= 8192:
            self._chains.put(token, chain)
        return chain

    def decode_invocation(self, proof: str | bytes) -> Invocation:
        return Invocation.parse(proof, self.config.limits)

    def verify_chain(self, chain: Chain, revoked: Collection[bytes] = ()) -> VerifiedChain:
        """Steps 2 to 7 for a chain on its own. Raises :class:`Denial`."""
        sigs, unusable = self._check_chain(chain, revoked, self.clock())
        self._finish(chain, sigs, unusable)
        return VerifiedChain(chain)

    def verify_invocation(
        self,
        chain: Chain,
        invocation: Invocation,
        audience: str,
        call: Call,
        revoked: Collection[bytes] = (),
    ) -> VerifiedChain:
        """Steps 2 to 8 for a proof of `call` at the tool `audience`; spends the nonce."""
        now = self.clock()
        sigs, unusable = self._check_chain(chain, revoked, now)
        if invocation.audience != audience:
            raise Denial(Reason.WRONG_AUDIENCE, f"proof is for `{invocation.audience}`, not `{audience}`")
        if invocation.chain_digest != chain.leaf.digest:
            raise Denial(Reason.CHAIN_MISMATCH, "proof was made for another chain")
        skew, window = self.config.clock_skew_ms, self.config.invocation_window_ms
        if invocation.issued_at_ms > now + skew:
            raise Denial(Reason.INVOCATION_STALE, "proof is issued in the future")
        valid_until = invocation.issued_at_ms + window + skew
        if now > valid_until:
            raise Denial(Reason.INVOCATION_STALE, "proof is older than the invocation window")
        if not invocation.call.same_as(call):
            raise Denial(
                Reason.INVOCATION_MISMATCH,
                "proof is for a different action, resource or arguments than the call",
            )
        chain.check_permits(call)
        leaf = len(chain) - 1
        if unusable is None:
            sigs.append(("inv", leaf, chain.leaf.body.holder, INVOCATION_DOMAIN + invocation.body_bytes, invocation.signature))
        self._finish(chain, sigs, unusable)
        verdict = self._nonces.check_and_insert(
            (chain.leaf.body.holder, invocation.nonce), valid_until + 1, now
        )
        if verdict == "replayed":
            raise Denial(Reason.REPLAYED, "proof nonce was used before")
        if verdict == "full":
            raise Denial(Reason.REPLAY_CACHE_FULL, "too many live invocations to check for replay")
        return VerifiedChain(chain)

    # Steps 2 to 5, and the signatures step 7 will check, in chain order.
    def _check_chain(
        self, chain: Chain, revoked: Collection[bytes], now: int
    ) -> tuple[list[tuple[str, int, bytes, bytes, bytes]], Denial | None]:
        links = chain.links
        if len(links) > self.config.limits.max_links:
            raise Denial(Reason.TOO_MANY_LINKS, f"{len(links)} links, above the limit of {self.config.limits.max_links}")
        state = self.trust.lookup(chain.issuer, now)
        if state == "inactive":
            raise Denial(Reason.ROOT_KEY_INACTIVE, "root issuer key is trusted, but not at this time", 0)
        if state == "unknown":
            raise Denial(Reason.UNTRUSTED_ROOT, "root issuer key is not trusted", 0)
        last = len(links) - 1
        known = self._structure.get(chain.leaf.digest) is not None
        for i in range(1, len(links)):
            if not known:
                _check_child(links[i - 1], links[i], i, False)
            seal = links[i].seal
            if seal is not None and self.trust.lookup(seal.key, now) != "active":
                raise Denial(Reason.BAD_SEAL, "seal key is not trusted at this time", i)
        root = chain.root.body
        if root.kind == LinkKind.BREAK_GLASS:
            if not self.config.accept_break_glass:
                raise Denial(Reason.BREAK_GLASS_REFUSED, "this verifier refuses break-glass access", 0)
            if root.expires_at_ms - root.not_before_ms > self.config.max_break_glass_ms:
                raise Denial(Reason.BREAK_GLASS_REFUSED, "break-glass window is longer than this verifier accepts", 0)
        if not self.config.online:
            for i, l in enumerate(links):
                if l.body.require_online:
                    raise Denial(Reason.ONLINE_REQUIRED, "invocations under this chain must be authorised online", i)
        chain.check_time(now, self.config.clock_skew_ms)
        for i, l in enumerate(links):
            if l.id in revoked:
                raise Denial(Reason.REVOKED, f"link {l.id_hex} is revoked", i)
        sigs: list[tuple[str, int, bytes, bytes, bytes]] = []
        unusable: Denial | None = None
        for i, l in enumerate(links):
            cached = self._links.get(l.digest)
            if cached is None or (l.seal is not None and cached != l.seal):
                if cached is None:
                    issuer = chain.issuer if i == 0 else links[i - 1].body.holder
                    if i > 0 and not _ed25519.usable_key(issuer):
                        unusable = Denial(Reason.BAD_SIGNATURE, "signed by a holder key that is not a valid public key", i)
                        break
                    sigs.append(("link", i, issuer, LINK_DOMAIN + l.body_bytes, l.signature))
                if l.seal is not None:
                    sigs.append(("seal", i, l.seal.key, SEAL_DOMAIN + l.digest, l.seal.signature))
        if unusable is None and not _ed25519.usable_key(chain.leaf.body.holder):
            unusable = Denial(Reason.BAD_SIGNATURE, "the leaf holder key is not a valid public key", last)
        return sigs, unusable

    def _finish(
        self,
        chain: Chain,
        sigs: list[tuple[str, int, bytes, bytes, bytes]],
        unusable: Denial | None,
    ) -> None:
        """Step 7: every signature in chain order; the first failure is named."""
        for kind, i, key, message, signature in sigs:
            if not _verify(key, message, signature):
                if kind == "seal":
                    raise Denial(Reason.BAD_SEAL, "seal signature does not verify", i)
                if kind == "inv":
                    raise Denial(Reason.BAD_SIGNATURE, "invocation is not signed by the leaf holder", i)
                raise Denial(Reason.BAD_SIGNATURE, "link signature does not verify", i)
        if unusable is not None:
            raise unusable
        for l in chain.links:
            self._links.put(l.digest, l.seal if l.seal is not None else True)
        self._structure.put(chain.leaf.digest, True)
