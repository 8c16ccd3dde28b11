from mandate._proto.mandate.token.v1 import token_pb2 as _token_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_PENDING_APPROVAL: _ClassVar[TaskState]
    TASK_STATE_ACTIVE: _ClassVar[TaskState]
    TASK_STATE_COMPLETED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_REVOKED: _ClassVar[TaskState]
    TASK_STATE_EXPIRED: _ClassVar[TaskState]
    TASK_STATE_DENIED: _ClassVar[TaskState]

class LinkState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINK_STATE_UNSPECIFIED: _ClassVar[LinkState]
    LINK_STATE_LIVE: _ClassVar[LinkState]
    LINK_STATE_REVOKED: _ClassVar[LinkState]
    LINK_STATE_EXPIRED: _ClassVar[LinkState]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_PENDING_APPROVAL: TaskState
TASK_STATE_ACTIVE: TaskState
TASK_STATE_COMPLETED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_REVOKED: TaskState
TASK_STATE_EXPIRED: TaskState
TASK_STATE_DENIED: TaskState
LINK_STATE_UNSPECIFIED: LinkState
LINK_STATE_LIVE: LinkState
LINK_STATE_REVOKED: LinkState
LINK_STATE_EXPIRED: LinkState

class Intent(_message.Message):
    __slots__ = ("text", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    text: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, text: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("task_id", "requester_agent_id", "intent", "state", "create_time_ms", "deadline_ms", "end_time_ms", "end_reason", "root_link_id")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    END_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    END_REASON_FIELD_NUMBER: _ClassVar[int]
    ROOT_LINK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    requester_agent_id: str
    intent: Intent
    state: TaskState
    create_time_ms: int
    deadline_ms: int
    end_time_ms: int
    end_reason: str
    root_link_id: str
    def __init__(self, task_id: _Optional[str] = ..., requester_agent_id: _Optional[str] = ..., intent: _Optional[_Union[Intent, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., create_time_ms: _Optional[int] = ..., deadline_ms: _Optional[int] = ..., end_time_ms: _Optional[int] = ..., end_reason: _Optional[str] = ..., root_link_id: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("allowed", "reason", "policy_ids", "policy_hash")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    reason: str
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    policy_hash: str
    def __init__(self, allowed: _Optional[bool] = ..., reason: _Optional[str] = ..., policy_ids: _Optional[_Iterable[str]] = ..., policy_hash: _Optional[str] = ...) -> None: ...

class LinkNode(_message.Message):
    __slots__ = ("link_id", "parent_link_id", "holder_agent_id", "holder_key", "issuer_agent_id", "capabilities", "not_before_ms", "expires_at_ms", "depth", "max_depth", "kind", "state", "sealed", "revoke_reason", "revoke_time_ms", "digest")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    PARENT_LINK_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_KEY_FIELD_NUMBER: _ClassVar[int]
    ISSUER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    REVOKE_REASON_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    parent_link_id: str
    holder_agent_id: str
    holder_key: bytes
    issuer_agent_id: str
    capabilities: _containers.RepeatedCompositeFieldContainer[_token_pb2.Capability]
    not_before_ms: int
    expires_at_ms: int
    depth: int
    max_depth: int
    kind: _token_pb2.LinkKind
    state: LinkState
    sealed: bool
    revoke_reason: str
    revoke_time_ms: int
    digest: str
    def __init__(self, link_id: _Optional[str] = ..., parent_link_id: _Optional[str] = ..., holder_agent_id: _Optional[str] = ..., holder_key: _Optional[bytes] = ..., issuer_agent_id: _Optional[str] = ..., capabilities: _Optional[_Iterable[_Union[_token_pb2.Capability, _Mapping]]] = ..., not_before_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., depth: _Optional[int] = ..., max_depth: _Optional[int] = ..., kind: _Optional[_Union[_token_pb2.LinkKind, str]] = ..., state: _Optional[_Union[LinkState, str]] = ..., sealed: _Optional[bool] = ..., revoke_reason: _Optional[str] = ..., revoke_time_ms: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...

class StartTaskRequest(_message.Message):
    __slots__ = ("intent", "capabilities", "ttl_ms", "max_depth", "require_online", "signals", "max_uses")
    class SignalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ONLINE_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    intent: Intent
    capabilities: _containers.RepeatedCompositeFieldContainer[_token_pb2.Capability]
    ttl_ms: int
    max_depth: int
    require_online: bool
    signals: _containers.ScalarMap[str, str]
    max_uses: int
    def __init__(self, intent: _Optional[_Union[Intent, _Mapping]] = ..., capabilities: _Optional[_Iterable[_Union[_token_pb2.Capability, _Mapping]]] = ..., ttl_ms: _Optional[int] = ..., max_depth: _Optional[int] = ..., require_online: _Optional[bool] = ..., signals: _Optional[_Mapping[str, str]] = ..., max_uses: _Optional[int] = ...) -> None: ...

class StartTaskResponse(_message.Message):
    __slots__ = ("task", "chain", "chain_text", "decision", "approval_request_hash")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TEXT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    task: Task
    chain: bytes
    chain_text: str
    decision: Decision
    approval_request_hash: str
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., chain: _Optional[bytes] = ..., chain_text: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ..., approval_request_hash: _Optional[str] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: Task
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "requester_agent_id", "state")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    requester_agent_id: str
    state: TaskState
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., requester_agent_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CompleteTaskRequest(_message.Message):
    __slots__ = ("task_id", "summary")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    summary: str
    def __init__(self, task_id: _Optional[str] = ..., summary: _Optional[str] = ...) -> None: ...

class CompleteTaskResponse(_message.Message):
    __slots__ = ("task", "revoked_link_ids", "revocation_epoch")
    TASK_FIELD_NUMBER: _ClassVar[int]
    REVOKED_LINK_IDS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    task: Task
    revoked_link_ids: _containers.RepeatedScalarFieldContainer[str]
    revocation_epoch: int
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., revoked_link_ids: _Optional[_Iterable[str]] = ..., revocation_epoch: _Optional[int] = ...) -> None: ...

class FailTaskRequest(_message.Message):
    __slots__ = ("task_id", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FailTaskResponse(_message.Message):
    __slots__ = ("task", "revoked_link_ids", "revocation_epoch")
    TASK_FIELD_NUMBER: _ClassVar[int]
    REVOKED_LINK_IDS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    task: Task
    revoked_link_ids: _containers.RepeatedScalarFieldContainer[str]
    revocation_epoch: int
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., revoked_link_ids: _Optional[_Iterable[str]] = ..., revocation_epoch: _Optional[int] = ...) -> None: ...

class DelegateRequest(_message.Message):
    __slots__ = ("chain", "signals", "max_uses")
    class SignalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    chain: bytes
    signals: _containers.ScalarMap[str, str]
    max_uses: int
    def __init__(self, chain: _Optional[bytes] = ..., signals: _Optional[_Mapping[str, str]] = ..., max_uses: _Optional[int] = ...) -> None: ...

class DelegateResponse(_message.Message):
    __slots__ = ("chain", "chain_text", "link_id", "decision")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TEXT_FIELD_NUMBER: _ClassVar[int]
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    chain: bytes
    chain_text: str
    link_id: str
    decision: Decision
    def __init__(self, chain: _Optional[bytes] = ..., chain_text: _Optional[str] = ..., link_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class RenewGrantRequest(_message.Message):
    __slots__ = ("task_id", "ttl_ms", "signals")
    class SignalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    ttl_ms: int
    signals: _containers.ScalarMap[str, str]
    def __init__(self, task_id: _Optional[str] = ..., ttl_ms: _Optional[int] = ..., signals: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RenewGrantResponse(_message.Message):
    __slots__ = ("chain", "chain_text", "link_id", "decision")
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TEXT_FIELD_NUMBER: _ClassVar[int]
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    chain: bytes
    chain_text: str
    link_id: str
    decision: Decision
    def __init__(self, chain: _Optional[bytes] = ..., chain_text: _Optional[str] = ..., link_id: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...

class RevokeLinkRequest(_message.Message):
    __slots__ = ("link_id", "reason")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    reason: str
    def __init__(self, link_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RevokeLinkResponse(_message.Message):
    __slots__ = ("revoked_link_ids", "revocation_epoch")
    REVOKED_LINK_IDS_FIELD_NUMBER: _ClassVar[int]
    REVOCATION_EPOCH_FIELD_NUMBER: _ClassVar[int]
    revoked_link_ids: _containers.RepeatedScalarFieldContainer[str]
    revocation_epoch: int
    def __init__(self, revoked_link_ids: _Optional[_Iterable[str]] = ..., revocation_epoch: _Optional[int] = ...) -> None: ...

class GetDelegationTreeRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetDelegationTreeResponse(_message.Message):
    __slots__ = ("task", "links")
    TASK_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    task: Task
    links: _containers.RepeatedCompositeFieldContainer[LinkNode]
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., links: _Optional[_Iterable[_Union[LinkNode, _Mapping]]] = ...) -> None: ...

class BreakGlassRequest(_message.Message):
    __slots__ = ("capabilities", "ttl_ms", "reason", "ticket", "signals")
    class SignalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    capabilities: _containers.RepeatedCompositeFieldContainer[_token_pb2.Capability]
    ttl_ms: int
    reason: str
    ticket: str
    signals: _containers.ScalarMap[str, str]
    def __init__(self, capabilities: _Optional[_Iterable[_Union[_token_pb2.Capability, _Mapping]]] = ..., ttl_ms: _Optional[int] = ..., reason: _Optional[str] = ..., ticket: _Optional[str] = ..., signals: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BreakGlassResponse(_message.Message):
    __slots__ = ("task", "chain", "chain_text", "decision")
    TASK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TEXT_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    task: Task
    chain: bytes
    chain_text: str
    decision: Decision
    def __init__(self, task: _Optional[_Union[Task, _Mapping]] = ..., chain: _Optional[bytes] = ..., chain_text: _Optional[str] = ..., decision: _Optional[_Union[Decision, _Mapping]] = ...) -> None: ...
