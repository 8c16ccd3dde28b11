from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PolicySummary(_message.Message):
    __slots__ = ("policy_id", "permit", "obligations")
    POLICY_ID_FIELD_NUMBER: _ClassVar[int]
    PERMIT_FIELD_NUMBER: _ClassVar[int]
    OBLIGATIONS_FIELD_NUMBER: _ClassVar[int]
    policy_id: str
    permit: bool
    obligations: str
    def __init__(self, policy_id: _Optional[str] = ..., permit: _Optional[bool] = ..., obligations: _Optional[str] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ("policy_hash", "source", "files", "policies", "load_time_ms")
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    policy_hash: str
    source: str
    files: _containers.RepeatedScalarFieldContainer[str]
    policies: _containers.RepeatedCompositeFieldContainer[PolicySummary]
    load_time_ms: int
    def __init__(self, policy_hash: _Optional[str] = ..., source: _Optional[str] = ..., files: _Optional[_Iterable[str]] = ..., policies: _Optional[_Iterable[_Union[PolicySummary, _Mapping]]] = ..., load_time_ms: _Optional[int] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("policy",)
    POLICY_FIELD_NUMBER: _ClassVar[int]
    policy: PolicyInfo
    def __init__(self, policy: _Optional[_Union[PolicyInfo, _Mapping]] = ...) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ("files",)
    class FilesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.ScalarMap[str, str]
    def __init__(self, files: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("policy", "previous_policy_hash", "reevaluated_links", "revoked_link_ids", "revocation_epoch")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    REEVALUATED_LINKS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_LINK_IDS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    policy: PolicyInfo
    previous_policy_hash: str
    reevaluated_links: int
    revoked_link_ids: _containers.RepeatedScalarFieldContainer[str]
    revocation_epoch: int
    def __init__(self, policy: _Optional[_Union[PolicyInfo, _Mapping]] = ..., previous_policy_hash: _Optional[str] = ..., reevaluated_links: _Optional[int] = ..., revoked_link_ids: _Optional[_Iterable[str]] = ..., revocation_epoch: _Optional[int] = ...) -> None: ...
