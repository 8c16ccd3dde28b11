"""The Mandate token, format version 1 (docs/TOKEN.md): capabilities, links, chains and
invocation proofs; strict decoding with the reasons and order `mandate-core` uses, and
building (issuing is the coordinator's; delegating and proving are the holders').

Decoding only says "well formed": trust, time, revocation, attenuation and signatures are
the :class:`mandate.Verifier`'s.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence, Union

from google.protobuf.message import DecodeError

from mandate._proto.mandate.token.v1 import token_pb2 as pb

FORMAT_VERSION = 1
CHAIN_TEXT_PREFIX = "mandate1."
INVOCATION_TEXT_PREFIX = "mandate-inv1."
NONCE_LEN = 16
MAX_AGENT_ID_LEN = 255


class Reason(str, enum.Enum):
    """Stable reason codes (docs/TOKEN.md). The value is the code."""

    TOKEN_TOO_LARGE = "TOKEN_TOO_LARGE"
    TOO_MANY_LINKS = "TOO_MANY_LINKS"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    MALFORMED = "MALFORMED"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    UNKNOWN_VALUE = "UNKNOWN_VALUE"
    UNKNOWN_CONSTRAINT = "UNKNOWN_CONSTRAINT"
    UNTRUSTED_ROOT = "UNTRUSTED_ROOT"
    ROOT_KEY_INACTIVE = "ROOT_KEY_INACTIVE"
    PARENT_MISMATCH = "PARENT_MISMATCH"
    DEPTH_MISMATCH = "DEPTH_MISMATCH"
    DEPTH_EXCEEDED = "DEPTH_EXCEEDED"
    WINDOW_WIDENED = "WINDOW_WIDENED"
    SCOPE_WIDENED = "SCOPE_WIDENED"
    BREAK_GLASS_DELEGATED = "BREAK_GLASS_DELEGATED"
    SEAL_MISSING = "SEAL_MISSING"
    BAD_SEAL = "BAD_SEAL"
    NOT_YET_VALID = "NOT_YET_VALID"
    LINK_EXPIRED = "LINK_EXPIRED"
    REVOKED = "REVOKED"
    BAD_SIGNATURE = "BAD_SIGNATURE"
    ONLINE_REQUIRED = "ONLINE_REQUIRED"
    BREAK_GLASS_REFUSED = "BREAK_GLASS_REFUSED"
    WRONG_AUDIENCE = "WRONG_AUDIENCE"
    CHAIN_MISMATCH = "CHAIN_MISMATCH"
    INVOCATION_STALE = "INVOCATION_STALE"
    REPLAYED = "REPLAYED"
    REPLAY_CACHE_FULL = "REPLAY_CACHE_FULL"
    INVOCATION_MISMATCH = "INVOCATION_MISMATCH"
    NOT_PERMITTED = "NOT_PERMITTED"


class Denial(Exception):
    """A token, link or proof was refused: the reason, the link it concerns (0 is the
    root; None when it concerns no single link) and a short explanation."""

    def __init__(self, reason: Reason, detail: str, link: int | None = None) -> None:
        super().__init__(f"{reason.value}{'' if link is None else f' at link {link}'}: {detail}")
        self.reason = reason
        self.detail = detail
        self.link = link

    def at(self, link: int) -> "Denial":
        """The same denial, concerning link `link`."""
        return Denial(self.reason, self.detail, link)


def _malformed(detail: str) -> Denial:
    return Denial(Reason.MALFORMED, detail)


def _limit(detail: str) -> Denial:
    return Denial(Reason.LIMIT_EXCEEDED, detail)


@dataclass(frozen=True)
class Limits:
    """Shape limits, applied before anything else (the defaults are the product's)."""

    max_token_bytes: int = 64 * 1024
    max_links: int = 16
    max_capabilities: int = 16
    max_actions: int = 16
    max_constraints: int = 8
    max_values: int = 64
    max_string_bytes: int = 1024
    max_invocation_bytes: int = 16 * 1024
    max_args: int = 32


# ---- Values, conditions, capabilities, calls ----

Value = Union[str, int]
"""A call argument value: text (`str`) or a signed 64-bit integer (`int`). `True` and
`False` are not values."""


def _value_key(v: Value) -> tuple[int, object]:
    # Text sorts before integers, as in mandate-core.
    return (0, v) if isinstance(v, str) else (1, v)


def _same(a: Value, b: Value) -> bool:
    return type(a) is type(b) and a == b


def _check_value(v: object) -> Value:
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise TypeError(f"a value is a str or an int, not {type(v).__name__}")
    if isinstance(v, int) and not -(2**63) <= v < 2**63:
        raise ValueError(f"integer {v} is outside 64 bits")
    return v


@dataclass(frozen=True)
class Exact:
    """The argument equals `value`."""

    value: Value

    def holds(self, v: Value) -> bool:
        return _same(self.value, v)


@dataclass(frozen=True)
class OneOf:
    """The argument equals one of `values` (a non-empty set)."""

    values: tuple[Value, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("one-of needs at least one value")

    def holds(self, v: Value) -> bool:
        return any(_same(x, v) for x in self.values)


@dataclass(frozen=True)
class Prefix:
    """The argument is text starting with `prefix`."""

    prefix: str

    def holds(self, v: Value) -> bool:
        return isinstance(v, str) and v.encode().startswith(self.prefix.encode())


@dataclass(frozen=True)
class Range:
    """The argument is an integer in `[min, max]`."""

    min: int
    max: int

    def __post_init__(self) -> None:
        if self.min > self.max:
            raise ValueError(f"range minimum {self.min} is above maximum {self.max}")

    def holds(self, v: Value) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and self.min <= v <= self.max


Condition = Union[Exact, OneOf, Prefix, Range]


def condition_within(child: Condition, parent: Condition) -> bool:
    """Whether every value `child` admits, `parent` admits (TOKEN.md's table)."""
    if isinstance(child, Exact):
        return parent.holds(child.value)
    if isinstance(child, OneOf):
        return all(parent.holds(v) for v in child.values)
    if isinstance(child, Prefix):
        return isinstance(parent, Prefix) and child.prefix.encode().startswith(
            parent.prefix.encode()
        )
    # A range.
    if isinstance(parent, Range):
        return parent.min <= child.min and child.max <= parent.max
    if isinstance(parent, OneOf):
        present = {v for v in parent.values if isinstance(v, int) and child.min <= v <= child.max}
        return len(present) == child.max - child.min + 1
    if isinstance(parent, Exact):
        return isinstance(parent.value, int) and child.min == child.max == parent.value
    return False


@dataclass(frozen=True)
class Resource:
    """A literal resource name, or every name starting with `prefix` (written `prefix*`)."""

    text: str
    is_prefix: bool

    @staticmethod
    def parse(s: str) -> "Resource":
        if not s:
            raise ValueError("a resource pattern is not empty")
        if s.endswith("*") and "*" not in s[:-1]:
            return Resource(s[:-1], True)
        if "*" not in s:
            return Resource(s, False)
        raise ValueError(f"invalid resource pattern `{s[:64]}`: `*` is allowed only once, as the last character")

    def matches(self, name: str) -> bool:
        return name.encode().startswith(self.text.encode()) if self.is_prefix else name == self.text

    def within(self, parent: "Resource") -> bool:
        if not self.is_prefix:
            return parent.matches(self.text)
        return parent.is_prefix and self.text.encode().startswith(parent.text.encode())

    def __str__(self) -> str:
        return self.text + ("*" if self.is_prefix else "")


@dataclass(frozen=True)
class Capability:
    """Actions on resources, with conditions on named call arguments.

    Build with :meth:`Capability.of` and chain :meth:`where`::

        Capability.of("files/reports/*", "read").where("size", Range(0, 65536))
    """

    resource: Resource
    actions: frozenset[str] | None  # None: any action (`*`)
    constraints: tuple[tuple[str, Condition], ...] = ()

    @staticmethod
    def of(resource: str, *actions: str) -> "Capability":
        if not actions:
            raise ValueError("a capability needs at least one action")
        if "*" in actions:
            acts = None
        else:
            for a in actions:
                if not a or "*" in a:
                    raise ValueError(f"action `{a}` must be non-empty and contain no `*` (use `*` alone for any)")
            acts = frozenset(actions)
        return Capability(Resource.parse(resource), acts)

    def where(self, arg: str, condition: Condition) -> "Capability":
        """This capability with one more constraint (one per argument)."""
        if not arg:
            raise ValueError("a constraint names an argument")
        if any(a == arg for a, _ in self.constraints):
            raise ValueError(f"two constraints on argument `{arg}`")
        return Capability(self.resource, self.actions, self.constraints + ((arg, condition),))

    def allows(self, action: str) -> bool:
        return self.actions is None or action in self.actions

    def permits(self, call: "Call") -> bool:
        return (
            self.resource.matches(call.resource)
            and self.allows(call.action)
            and all(arg in call.args and c.holds(call.args[arg]) for arg, c in self.constraints)
        )

    def within(self, parent: "Capability") -> bool:
        if not self.resource.within(parent.resource):
            return False
        if parent.actions is not None and (self.actions is None or not self.actions <= parent.actions):
            return False
        return all(
            any(a == pa and condition_within(c, pc) for a, c in self.constraints)
            for pa, pc in parent.constraints
        )

    def to_pb(self) -> pb.Capability:
        out = pb.Capability(
            resource=str(self.resource),
            actions=["*"] if self.actions is None else sorted(self.actions),
        )
        for arg, c in self.constraints:
            k = out.constraints.add(arg=arg)
            if isinstance(c, Exact):
                k.exact.CopyFrom(_value_to_pb(c.value))
            elif isinstance(c, OneOf):
                k.one_of.values.extend(_value_to_pb(v) for v in sorted(set(c.values), key=_value_key))
            elif isinstance(c, Prefix):
                k.prefix = c.prefix
            else:
                k.range.min, k.range.max = c.min, c.max
        return out


def is_attenuation(child: Sequence[Capability], parent: Sequence[Capability]) -> bool:
    """Whether every child capability is within some parent capability."""
    return all(any(c.within(p) for p in parent) for c in child)


@dataclass(frozen=True)
class Call:
    """One concrete call: an action on a resource with named arguments."""

    action: str
    resource: str
    args: Mapping[str, Value] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", {k: _check_value(v) for k, v in dict(self.args).items()})

    def same_as(self, other: "Call") -> bool:
        """Byte-equal action and resource, and the same arguments (names, types, values)."""
        return (
            self.action == other.action
            and self.resource == other.resource
            and self.args.keys() == other.args.keys()
            and all(_same(v, other.args[k]) for k, v in self.args.items())
        )

    def args_to_pb(self) -> list[pb.Argument]:
        return [pb.Argument(name=k, value=_value_to_pb(self.args[k])) for k in sorted(self.args)]


def _value_to_pb(v: Value) -> pb.Value:
    return pb.Value(text=v) if isinstance(v, str) else pb.Value(int=v)


# ---- Strict decoding helpers ----


def _decode(cls: type, data: bytes, what: str) -> tuple[object, bool]:
    """Decodes `data` and says whether it is the canonical encoding of what it decodes to
    (fields in order, no defaults written, no unknown fields)."""
    msg = cls()
    try:
        msg.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:  # upb raises DecodeError
        raise _malformed(f"{what} does not decode") from e
    canonical = _canonical(msg, data)
    return msg, canonical


def _canonical(msg: object, data: bytes) -> bool:
    clean = type(msg)()
    clean.CopyFrom(msg)
    clean.DiscardUnknownFields()
    return clean.SerializeToString(deterministic=True) == data


def _require_canonical(canonical: bool, what: str) -> None:
    if not canonical:
        raise _malformed(f"{what} is not canonically encoded or has unknown fields")


def _fixed(data: bytes, n: int, what: str) -> bytes:
    if len(data) != n:
        raise _malformed(f"{what} must be {n} bytes, got {len(data)}")
    return bytes(data)


def _string(s: str, what: str, limits: Limits) -> str:
    n = len(s.encode())
    if n > limits.max_string_bytes:
        raise _limit(f"{what} is {n} bytes, above the limit of {limits.max_string_bytes}")
    return s


def _count(n: int, most: int, what: str) -> None:
    if n > most:
        raise _limit(f"{n} {what}, above the limit of {most}")


def check_agent_id(s: str) -> str:
    """Validates a workload identity, `spiffe://<trust-domain>/<path>`; returns it."""
    if len(s.encode()) > MAX_AGENT_ID_LEN:
        raise ValueError(f"invalid agent id `{s[:64]}`: longer than {MAX_AGENT_ID_LEN} bytes")
    if not s.startswith("spiffe://"):
        raise ValueError(f"invalid agent id `{s[:64]}`: must start with spiffe://")
    rest = s[len("spiffe://"):]
    domain, _, path = rest.partition("/")
    ok_domain = domain and all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in domain)
    segments = path.split("/") if path else []
    ok_path = bool(segments) and all(
        seg and seg not in (".", "..")
        and all(c.isascii() and (c.isalnum() or c in "._-") for c in seg)
        for seg in segments
    )
    if not ok_domain or not ok_path:
        raise ValueError(f"invalid agent id `{s[:64]}`: must be spiffe://<trust-domain>/<path>")
    return s


def _value_from_pb(v: pb.Value, limits: Limits) -> Value:
    kind = v.WhichOneof("kind")
    if kind == "text":
        return _string(v.text, "text value", limits)
    if kind == "int":
        return int(v.int)
    raise Denial(Reason.UNKNOWN_CONSTRAINT, "value has no kind or an unknown kind")


def _condition_from_pb(k: pb.Constraint, limits: Limits) -> Condition:
    kind = k.WhichOneof("kind")
    if kind == "exact":
        return Exact(_value_from_pb(k.exact, limits))
    if kind == "one_of":
        _count(len(k.one_of.values), limits.max_values, "values in a one-of constraint")
        values = tuple(_value_from_pb(v, limits) for v in k.one_of.values)
        if not values:
            raise _malformed("one-of needs at least one value")
        return OneOf(values)
    if kind == "prefix":
        return Prefix(_string(k.prefix, "prefix", limits))
    if kind == "range":
        if k.range.min > k.range.max:
            raise _malformed(f"range minimum {k.range.min} is above maximum {k.range.max}")
        return Range(k.range.min, k.range.max)
    raise Denial(Reason.UNKNOWN_CONSTRAINT, "constraint has no kind or an unknown kind")


def capability_from_pb(c: pb.Capability, limits: Limits = Limits()) -> Capability:
    """Reads a capability with the token's rules (the reasons a verifier gives)."""
    _count(len(c.actions), limits.max_actions, "actions in a capability")
    _count(len(c.constraints), limits.max_constraints, "constraints in a capability")
    resource = _string(c.resource, "resource pattern", limits)
    try:
        pattern = Resource.parse(resource)
    except ValueError as e:
        raise _malformed(str(e)) from None
    for a in c.actions:
        if len(a.encode()) > limits.max_string_bytes:
            raise _limit("action name above the string limit")
    if not c.actions:
        raise _malformed("invalid capability: needs at least one action")
    if "*" in c.actions:
        actions = None
    else:
        bad = next((a for a in c.actions if not a or "*" in a), None)
        if bad is not None:
            raise _malformed(f"invalid action: `{bad}` must be non-empty and contain no `*`")
        actions = frozenset(c.actions)
    constraints: list[tuple[str, Condition]] = []
    for k in c.constraints:
        arg = _string(k.arg, "argument name", limits)
        if not arg:
            raise _malformed("constraint on an empty argument name")
        constraints.append((arg, _condition_from_pb(k, limits)))
    seen: set[str] = set()
    for arg, _ in constraints:
        if arg in seen:
            raise _malformed(f"two constraints on argument `{arg}`")
        seen.add(arg)
    return Capability(pattern, actions, tuple(constraints))


def _call_from_pb(action: str, resource: str, args: Iterable[pb.Argument], limits: Limits) -> Call:
    args = list(args)
    _count(len(args), limits.max_args, "invocation arguments")
    _string(action, "action", limits)
    _string(resource, "resource", limits)
    if not action or "*" in action:
        raise _malformed("invocation action must be non-empty and contain no `*`")
    if not resource or "*" in resource:
        raise _malformed("invocation resource must be non-empty and contain no `*`")
    values: dict[str, Value] = {}
    for a in args:
        name = _string(a.name, "argument name", limits)
        if not a.HasField("value"):
            raise _malformed(f"argument `{name}` has no value")
        value = _value_from_pb(a.value, limits)
        if name in values:
            raise _malformed(f"argument `{name}` appears twice")
        values[name] = value
    return Call(action, resource, values)


def _check_size(n: int, most: int, what: str) -> None:
    if n > most:
        raise Denial(Reason.TOKEN_TOO_LARGE, f"{what} is {n} bytes, above the limit of {most}")


_TEXT_WHITESPACE = " \t\n\r"


def _text_to_bytes(text: str, prefix: str, most: int) -> bytes:
    body = text.strip(_TEXT_WHITESPACE)
    if not body.startswith(prefix):
        raise _malformed(f"text form must start with `{prefix}`")
    body = body[len(prefix):]
    _check_size(len(body.encode()) * 3 // 4, most, "token")
    if any(c not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" for c in body):
        raise _malformed("text form is not unpadded base64url")
    if len(body) % 4 == 1:
        raise _malformed("text form is not unpadded base64url")
    data = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    # Canonical: the unused low bits of the last character are zero.
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode() != body:
        raise _malformed("text form is not unpadded base64url")
    return data


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _digest(*parts: bytes) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()


def link_digest(body: bytes, signature: bytes) -> bytes:
    """SHA-256(body || signature): how parents, seals and proofs name a link."""
    return _digest(body, signature)


# ---- Links and chains ----


class LinkKind(enum.IntEnum):
    """What a link is."""

    GRANT = 1
    DELEGATION = 2
    BREAK_GLASS = 3


@dataclass(frozen=True)
class LinkBody:
    """The signed content of a link. `issuer` and `task` are set at the root only; `parent`
    (a digest) and a depth above 0 below it."""

    id: bytes
    holder: bytes
    holder_agent: str
    capabilities: tuple[Capability, ...]
    not_before_ms: int
    expires_at_ms: int
    max_depth: int
    kind: LinkKind
    require_seal: bool
    require_online: bool
    parent: bytes | None = None
    depth: int = 0
    issuer: bytes | None = None
    task: bytes | None = None

    @property
    def is_root(self) -> bool:
        return self.parent is None

    def to_pb(self) -> pb.LinkBody:
        return pb.LinkBody(
            id=self.id,
            parent_digest=self.parent or b"",
            issuer_key=self.issuer or b"",
            holder_key=self.holder,
            holder_agent=self.holder_agent,
            task_id=self.task or b"",
            capabilities=[c.to_pb() for c in self.capabilities],
            not_before_ms=self.not_before_ms,
            expires_at_ms=self.expires_at_ms,
            depth=self.depth,
            max_depth=self.max_depth,
            kind=int(self.kind),
            require_seal=self.require_seal,
            require_online=self.require_online,
        )


def _body_from_pb(b: pb.LinkBody, limits: Limits) -> LinkBody:
    _count(len(b.capabilities), limits.max_capabilities, "capabilities")
    if not b.capabilities:
        raise _malformed("link grants no capability")
    if b.kind == 0:
        raise _malformed("link kind is unspecified")
    if b.kind not in (1, 2, 3):
        raise Denial(Reason.UNKNOWN_VALUE, f"unknown link kind {b.kind}")
    kind = LinkKind(b.kind)
    parent = issuer = task = None
    if not b.parent_digest:
        if b.depth != 0:
            raise _malformed("root link must have depth 0")
        if kind == LinkKind.DELEGATION:
            raise _malformed("root link must be a grant or break-glass")
        issuer = _fixed(b.issuer_key, 32, "root issuer key")
        task = _fixed(b.task_id, 16, "task id")
    else:
        if b.issuer_key or b.task_id:
            raise _malformed("only the root link carries an issuer key and a task id")
        if kind != LinkKind.DELEGATION:
            raise _malformed("a link below the root must be a delegation")
        if b.depth == 0:
            raise _malformed("a link below the root must have depth above 0")
        parent = _fixed(b.parent_digest, 32, "parent digest")
    if b.not_before_ms >= b.expires_at_ms:
        raise _malformed("link window is empty: not_before is not before expires_at")
    capabilities = tuple(capability_from_pb(c, limits) for c in b.capabilities)
    link_id = _fixed(b.id, 16, "link id")
    holder = _fixed(b.holder_key, 32, "holder key")
    try:
        agent = check_agent_id(b.holder_agent)
    except ValueError as e:
        raise _malformed(str(e)) from None
    return LinkBody(
        id=link_id,
        holder=holder,
        holder_agent=agent,
        capabilities=capabilities,
        not_before_ms=b.not_before_ms,
        expires_at_ms=b.expires_at_ms,
        max_depth=b.max_depth,
        kind=kind,
        require_seal=b.require_seal,
        require_online=b.require_online,
        parent=parent,
        depth=b.depth,
        issuer=issuer,
        task=task,
    )


@dataclass(frozen=True)
class Seal:
    """A coordinator's countersignature over a link digest."""

    key: bytes
    signature: bytes


@dataclass(frozen=True)
class Link:
    """One signed hop: the body, the exact bytes signed, the issuer's signature, a seal."""

    body: LinkBody
    body_bytes: bytes
    signature: bytes
    seal: Seal | None
    digest: bytes

    @property
    def id(self) -> bytes:
        return self.body.id

    @property
    def id_hex(self) -> str:
        return self.body.id.hex()

    def to_pb(self) -> pb.Link:
        out = pb.Link(body=self.body_bytes, signature=self.signature)
        if self.seal is not None:
            out.seal.key, out.seal.signature = self.seal.key, self.seal.signature
        return out


def _link_from_pb(link: pb.Link, limits: Limits) -> Link:
    signature = _fixed(link.signature, 64, "link signature")
    seal = None
    if link.HasField("seal"):
        seal = Seal(_fixed(link.seal.key, 32, "seal key"), _fixed(link.seal.signature, 64, "seal signature"))
    body_pb, canonical = _decode(pb.LinkBody, link.body, "link body")
    body = _body_from_pb(body_pb, limits)  # type: ignore[arg-type]
    _require_canonical(canonical, "link body")
    if seal is not None and body.is_root:
        raise _malformed("the root link cannot carry a seal")
    return Link(body, bytes(link.body), signature, seal, link_digest(link.body, signature))


class Chain:
    """A decoded, not yet verified chain (root first). Holding one means only that the
    bytes are well formed."""

    def __init__(self, links: list[Link]) -> None:
        self.links = links

    @staticmethod
    def decode(data: bytes, limits: Limits = Limits()) -> "Chain":
        """Decodes the binary form, with size and shape limits first (TOKEN.md step 1)."""
        _check_size(len(data), limits.max_token_bytes, "token")
        chain, canonical = _decode(pb.Chain, data, "token")
        if chain.version != FORMAT_VERSION:  # type: ignore[attr-defined]
            raise Denial(Reason.UNSUPPORTED_VERSION, f"token format version {chain.version} is not supported")  # type: ignore[attr-defined]
        if len(chain.links) > limits.max_links:  # type: ignore[attr-defined]
            raise Denial(Reason.TOO_MANY_LINKS, f"{len(chain.links)} links, above the limit of {limits.max_links}")  # type: ignore[attr-defined]
        links = []
        for i, l in enumerate(chain.links):  # type: ignore[attr-defined]
            try:
                links.append(_link_from_pb(l, limits))
            except Denial as d:
                raise d.at(i) from None
        _require_canonical(canonical, "token")
        return Chain._checked(links)

    @staticmethod
    def _checked(links: list[Link]) -> "Chain":
        if not links:
            raise _malformed("chain has no links")
        if not links[0].body.is_root:
            raise Denial(Reason.PARENT_MISMATCH, "chain does not start with a root link", 0)
        for i, l in enumerate(links[1:], start=1):
            if l.body.is_root:
                raise Denial(Reason.PARENT_MISMATCH, "a root link appears below the root", i)
        for i, l in enumerate(links[1:], start=1):
            if any(e.id == l.id for e in links[:i]):
                raise Denial(Reason.MALFORMED, "two links of the chain share one link id", i)
        return Chain(links)

    @staticmethod
    def from_text(text: str, limits: Limits = Limits()) -> "Chain":
        """Parses `mandate1.` + unpadded base64url (surrounding ASCII whitespace ignored)."""
        return Chain.decode(_text_to_bytes(text, CHAIN_TEXT_PREFIX, limits.max_token_bytes), limits)

    @staticmethod
    def parse(token: str | bytes, limits: Limits = Limits()) -> "Chain":
        """The text form (`str`, or `bytes` that start with `mandate1.`, as a chain file
        holds it) or the binary form (other `bytes`)."""
        if isinstance(token, bytes) and _is_text(token, CHAIN_TEXT_PREFIX):
            token = token.decode("latin-1")
        return Chain.from_text(token, limits) if isinstance(token, str) else Chain.decode(token, limits)

    def encode(self) -> bytes:
        return pb.Chain(version=FORMAT_VERSION, links=[l.to_pb() for l in self.links]).SerializeToString()

    def to_text(self) -> str:
        return CHAIN_TEXT_PREFIX + _b64(self.encode())

    @property
    def root(self) -> Link:
        return self.links[0]

    @property
    def leaf(self) -> Link:
        return self.links[-1]

    @property
    def task(self) -> bytes:
        task = self.root.body.task
        assert task is not None
        return task

    @property
    def issuer(self) -> bytes:
        issuer = self.root.body.issuer
        assert issuer is not None
        return issuer

    def __len__(self) -> int:
        return len(self.links)

    def check_time(self, now_ms: int, skew_ms: int) -> None:
        """Step 4: every link's window holds `now_ms`, with `skew_ms` allowed."""
        for i, l in enumerate(self.links):
            if now_ms + skew_ms < l.body.not_before_ms:
                raise Denial(Reason.NOT_YET_VALID, "link is not valid yet", i)
            if now_ms >= l.body.expires_at_ms + skew_ms:
                raise Denial(Reason.LINK_EXPIRED, "link has expired", i)

    def check_permits(self, call: Call) -> None:
        """Every link permits `call`; NOT_PERMITTED at the first that does not."""
        for i, l in enumerate(self.links):
            if not any(c.permits(call) for c in l.body.capabilities):
                raise Denial(Reason.NOT_PERMITTED, f"`{call.action}` on `{call.resource}` is not permitted", i)

    def describe(self) -> list[dict[str, object]]:
        """Each link as a dict, for display."""
        return [
            {
                "link_id": l.id_hex,
                "depth": l.body.depth,
                "kind": l.body.kind.name.lower().replace("_", "-"),
                "holder": l.body.holder_agent,
                "capabilities": [f"{c.resource}:{','.join(sorted(c.actions)) if c.actions else '*'}" for c in l.body.capabilities],
                "not_before_ms": l.body.not_before_ms,
                "expires_at_ms": l.body.expires_at_ms,
                "max_depth": l.body.max_depth,
                "sealed": l.seal is not None,
                "require_seal": l.body.require_seal,
                "require_online": l.body.require_online,
            }
            for l in self.links
        ]


# ---- Invocation proofs ----


@dataclass(frozen=True)
class Invocation:
    """A holder's signed proof for one call, at one tool (`audience`)."""

    chain_digest: bytes
    audience: str
    call: Call
    issued_at_ms: int
    nonce: bytes
    body_bytes: bytes
    signature: bytes

    @staticmethod
    def decode(data: bytes, limits: Limits = Limits()) -> "Invocation":
        _check_size(len(data), limits.max_invocation_bytes, "invocation")
        inv, envelope_canonical = _decode(pb.Invocation, data, "invocation")
        _require_canonical(envelope_canonical, "invocation")
        signature = _fixed(inv.signature, 64, "invocation signature")  # type: ignore[attr-defined]
        body, canonical = _decode(pb.InvocationBody, inv.body, "invocation body")  # type: ignore[attr-defined]
        nonce = _fixed(body.nonce, NONCE_LEN, "invocation nonce")  # type: ignore[attr-defined]
        digest = _fixed(body.chain_digest, 32, "invocation chain digest")  # type: ignore[attr-defined]
        audience = body.audience  # type: ignore[attr-defined]
        if not audience or len(audience.encode()) > limits.max_string_bytes:
            raise _malformed("invocation audience must be non-empty and within the string limit")
        call = _call_from_pb(body.action, body.resource, body.args, limits)  # type: ignore[attr-defined]
        _require_canonical(canonical, "invocation body")
        return Invocation(digest, audience, call, body.issued_at_ms, nonce, bytes(inv.body), signature)  # type: ignore[attr-defined]

    @staticmethod
    def from_text(text: str, limits: Limits = Limits()) -> "Invocation":
        return Invocation.decode(
            _text_to_bytes(text, INVOCATION_TEXT_PREFIX, limits.max_invocation_bytes), limits
        )

    @staticmethod
    def parse(proof: str | bytes, limits: Limits = Limits()) -> "Invocation":
        """The text form (`str`, or `bytes` that start with `mandate-inv1.`) or the binary
        form (other `bytes`)."""
        if isinstance(proof, bytes) and _is_text(proof, INVOCATION_TEXT_PREFIX):
            proof = proof.decode("latin-1")
        return Invocation.from_text(proof, limits) if isinstance(proof, str) else Invocation.decode(proof, limits)

    def encode(self) -> bytes:
        return pb.Invocation(body=self.body_bytes, signature=self.signature).SerializeToString()

    def to_text(self) -> str:
        return INVOCATION_TEXT_PREFIX + _b64(self.encode())


def _is_text(data: bytes, prefix: str) -> bool:
    """Whether `data` is a text form (the binary forms start with a protobuf tag, never
    with a letter of the prefix)."""
    return data.lstrip(b" \t\r\n").startswith(prefix.encode())


def random_id() -> bytes:
    """16 random bytes (a link id or a nonce)."""
    return os.urandom(16)
