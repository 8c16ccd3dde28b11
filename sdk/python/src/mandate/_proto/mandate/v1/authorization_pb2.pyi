from mandate._proto.mandate.token.v1 import token_pb2 as _token_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthorizeRequest(_message.Message):
    __slots__ = ("chain", "invocation", "action", "resource", "args", "context", "refuse_break_glass")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    INVOCATION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    REFUSE_BREAK_GLASS_FIELD_NUMBER: _ClassVar[int]
    chain: bytes
    invocation: bytes
    action: str
    resource: str
    args: _containers.RepeatedCompositeFieldContainer[_token_pb2.Argument]
    context: _containers.ScalarMap[str, str]
    refuse_break_glass: bool
    def __init__(self, chain: _Optional[bytes] = ..., invocation: _Optional[bytes] = ..., action: _Optional[str] = ..., resource: _Optional[str] = ..., args: _Optional[_Iterable[_Union[_token_pb2.Argument, _Mapping]]] = ..., context: _Optional[_Mapping[str, str]] = ..., refuse_break_glass: _Optional[bool] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("allowed", "reason", "detail", "link_index", "task_id", "holder_agent_id", "link_ids", "expires_at_ms", "revocation_epoch", "policy_ids", "policy_hash")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    LINK_INDEX_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LINK_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    detail: str
    link_index: int
    task_id: str
    holder_agent_id: str
    link_ids: _containers.RepeatedScalarFieldContainer[str]
    expires_at_ms: int
    revocation_epoch: int
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    policy_hash: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., link_index: _Optional[int] = ..., task_id: _Optional[str] = ..., holder_agent_id: _Optional[str] = ..., link_ids: _Optional[_Iterable[str]] = ..., expires_at_ms: _Optional[int] = ..., revocation_epoch: _Optional[int] = ..., policy_ids: _Optional[_Iterable[str]] = ..., policy_hash: _Optional[str] = ...) -> None: ...

class AuthorizeBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AuthorizeRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AuthorizeRequest, _Mapping]]] = ...) -> None: ...

class AuthorizeBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[AuthorizeResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[AuthorizeResponse, _Mapping]]] = ...) -> None: ...

class RevokedLink(_message.Message):
    __slots__ = ("link_id", "expires_at_ms", "epoch")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    expires_at_ms: int
    epoch: int
    def __init__(self, link_id: _Optional[str] = ..., expires_at_ms: _Optional[int] = ..., epoch: _Optional[int] = ...) -> None: ...

class RevocationSnapshot(_message.Message):
    __slots__ = ("epoch", "links")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    links: _containers.RepeatedCompositeFieldContainer[RevokedLink]
    def __init__(self, epoch: _Optional[int] = ..., links: _Optional[_Iterable[_Union[RevokedLink, _Mapping]]] = ...) -> None: ...

class RevocationBatch(_message.Message):
    __slots__ = ("epoch", "links")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    links: _containers.RepeatedCompositeFieldContainer[RevokedLink]
    def __init__(self, epoch: _Optional[int] = ..., links: _Optional[_Iterable[_Union[RevokedLink, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("epoch", "time_ms")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    time_ms: int
    def __init__(self, epoch: _Optional[int] = ..., time_ms: _Optional[int] = ...) -> None: ...

class WatchRevocationsRequest(_message.Message):
    __slots__ = ("after_epoch", "trust_version")
    AFTER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    TRUST_VERSION_FIELD_NUMBER: _ClassVar[int]
    after_epoch: int
    trust_version: int
    def __init__(self, after_epoch: _Optional[int] = ..., trust_version: _Optional[int] = ...) -> None: ...

class WatchRevocationsResponse(_message.Message):
    __slots__ = ("snapshot", "batch", "heartbeat", "trust", "time_ms", "previous_epoch", "signature")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    TRUST_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    snapshot: RevocationSnapshot
    batch: RevocationBatch
    heartbeat: Heartbeat
    trust: TrustUpdate
    time_ms: int
    previous_epoch: int
    signature: bytes
    def __init__(self, snapshot: _Optional[_Union[RevocationSnapshot, _Mapping]] = ..., batch: _Optional[_Union[RevocationBatch, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., trust: _Optional[_Union[TrustUpdate, _Mapping]] = ..., time_ms: _Optional[int] = ..., previous_epoch: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class TrustUpdate(_message.Message):
    __slots__ = ("version", "keys")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    version: int
    keys: _containers.RepeatedCompositeFieldContainer[TrustedKey]
    def __init__(self, version: _Optional[int] = ..., keys: _Optional[_Iterable[_Union[TrustedKey, _Mapping]]] = ...) -> None: ...

class GetTrustBundleRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrustedKey(_message.Message):
    __slots__ = ("public_key", "not_before_ms", "not_after_ms", "instance", "retired_ms")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    RETIRED_MS_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    not_before_ms: int
    not_after_ms: int
    instance: str
    retired_ms: int
    def __init__(self, public_key: _Optional[bytes] = ..., not_before_ms: _Optional[int] = ..., not_after_ms: _Optional[int] = ..., instance: _Optional[str] = ..., retired_ms: _Optional[int] = ...) -> None: ...

class GetTrustBundleResponse(_message.Message):
    __slots__ = ("keys", "version")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[TrustedKey]
    version: int
    def __init__(self, keys: _Optional[_Iterable[_Union[TrustedKey, _Mapping]]] = ..., version: _Optional[int] = ...) -> None: ...

class AddCoordinatorKeyRequest(_message.Message):
    __slots__ = ("public_key", "instance")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    instance: str
    def __init__(self, public_key: _Optional[bytes] = ..., instance: _Optional[str] = ...) -> None: ...

class AddCoordinatorKeyResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class RetireCoordinatorKeyRequest(_message.Message):
    __slots__ = ("public_key", "trust_for_ms")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    TRUST_FOR_MS_FIELD_NUMBER: _ClassVar[int]
    public_key: bytes
    trust_for_ms: int
    def __init__(self, public_key: _Optional[bytes] = ..., trust_for_ms: _Optional[int] = ...) -> None: ...

class RetireCoordinatorKeyResponse(_message.Message):
    __slots__ = ("version", "trusted_until_ms")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    version: int
    trusted_until_ms: int
    def __init__(self, version: _Optional[int] = ..., trusted_until_ms: _Optional[int] = ...) -> None: ...

class OfflineDecision(_message.Message):
    __slots__ = ("id", "time_ms", "allowed", "reason", "action", "resource", "task_id", "holder_agent_id", "place")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PLACE_FIELD_NUMBER: _ClassVar[int]
    id: str
    time_ms: int
    allowed: bool
    reason: str
    action: str
    resource: str
    task_id: str
    holder_agent_id: str
    place: str
    def __init__(self, id: _Optional[str] = ..., time_ms: _Optional[int] = ..., allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., action: _Optional[str] = ..., resource: _Optional[str] = ..., task_id: _Optional[str] = ..., holder_agent_id: _Optional[str] = ..., place: _Optional[str] = ...) -> None: ...

class ReportDecisionsRequest(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[OfflineDecision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[OfflineDecision, _Mapping]]] = ...) -> None: ...

class ReportDecisionsResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: int
    def __init__(self, recorded: _Optional[int] = ...) -> None: ...
