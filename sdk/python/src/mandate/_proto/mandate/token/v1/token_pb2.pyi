from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LinkKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_KIND_UNSPECIFIED: _ClassVar[LinkKind]
    LINK_KIND_GRANT: _ClassVar[LinkKind]
    LINK_KIND_DELEGATION: _ClassVar[LinkKind]
    LINK_KIND_BREAK_GLASS: _ClassVar[LinkKind]
LINK_KIND_UNSPECIFIED: LinkKind
LINK_KIND_GRANT: LinkKind
LINK_KIND_DELEGATION: LinkKind
LINK_KIND_BREAK_GLASS: LinkKind

class Chain(_message.Message):
    __slots__ = ("version", "links")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    version: int
    links: _containers.RepeatedCompositeFieldContainer[Link]
    def __init__(self, version: _Optional[int] = ..., links: _Optional[_Iterable[_Union[Link, _Mapping]]] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("body", "signature", "seal")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: bytes
    seal: Seal
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., seal: _Optional[_Union[Seal, _Mapping]] = ...) -> None: ...

class Seal(_message.Message):
    __slots__ = ("key", "signature")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    signature: bytes
    def __init__(self, key: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class LinkBody(_message.Message):
    __slots__ = ("id", "parent_digest", "issuer_key", "holder_key", "holder_agent", "task_id", "capabilities", "not_before_ms", "expires_at_ms", "depth", "max_depth", "kind", "require_seal", "require_online")
    ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    ISSUER_KEY_FIELD_NUMBER: _ClassVar[int]
    HOLDER_KEY_FIELD_NUMBER: _ClassVar[int]
    HOLDER_AGENT_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_SEAL_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ONLINE_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    parent_digest: bytes
    issuer_key: bytes
    holder_key: bytes
    holder_agent: str
    task_id: bytes
    capabilities: _containers.RepeatedCompositeFieldContainer[Capability]
    not_before_ms: int
    expires_at_ms: int
    depth: int
    max_depth: int
    kind: LinkKind
    require_seal: bool
    require_online: bool
    def __init__(self, id: _Optional[bytes] = ..., parent_digest: _Optional[bytes] = ..., issuer_key: _Optional[bytes] = ..., holder_key: _Optional[bytes] = ..., holder_agent: _Optional[str] = ..., task_id: _Optional[bytes] = ..., capabilities: _Optional[_Iterable[_Union[Capability, _Mapping]]] = ..., not_before_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., depth: _Optional[int] = ..., max_depth: _Optional[int] = ..., kind: _Optional[_Union[LinkKind, str]] = ..., require_seal: _Optional[bool] = ..., require_online: _Optional[bool] = ...) -> None: ...

class Capability(_message.Message):
    __slots__ = ("resource", "actions", "constraints")
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    resource: str
    actions: _containers.RepeatedScalarFieldContainer[str]
    constraints: _containers.RepeatedCompositeFieldContainer[Constraint]
    def __init__(self, resource: _Optional[str] = ..., actions: _Optional[_Iterable[str]] = ..., constraints: _Optional[_Iterable[_Union[Constraint, _Mapping]]] = ...) -> None: ...

class Constraint(_message.Message):
    __slots__ = ("arg", "exact", "one_of", "prefix", "range")
    ARG_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    ONE_OF_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    arg: str
    exact: Value
    one_of: ValueSet
    prefix: str
    range: IntRange
    def __init__(self, arg: _Optional[str] = ..., exact: _Optional[_Union[Value, _Mapping]] = ..., one_of: _Optional[_Union[ValueSet, _Mapping]] = ..., prefix: _Optional[str] = ..., range: _Optional[_Union[IntRange, _Mapping]] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("text", "int")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INT_FIELD_NUMBER: _ClassVar[int]
    text: str
    int: int
    def __init__(self, text: _Optional[str] = ..., int: _Optional[int] = ...) -> None: ...

class ValueSet(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class IntRange(_message.Message):
    __slots__ = ("min", "max")
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    min: int
    max: int
    def __init__(self, min: _Optional[int] = ..., max: _Optional[int] = ...) -> None: ...

class Invocation(_message.Message):
    __slots__ = ("body", "signature")
    BODY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    signature: bytes
    def __init__(self, body: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class InvocationBody(_message.Message):
    __slots__ = ("chain_digest", "audience", "action", "resource", "args", "issued_at_ms", "nonce")
    CHAIN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    chain_digest: bytes
    audience: str
    action: str
    resource: str
    args: _containers.RepeatedCompositeFieldContainer[Argument]
    issued_at_ms: int
    nonce: bytes
    def __init__(self, chain_digest: _Optional[bytes] = ..., audience: _Optional[str] = ..., action: _Optional[str] = ..., resource: _Optional[str] = ..., args: _Optional[_Iterable[_Union[Argument, _Mapping]]] = ..., issued_at_ms: _Optional[int] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class Argument(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: Value
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[Value, _Mapping]] = ...) -> None: ...
