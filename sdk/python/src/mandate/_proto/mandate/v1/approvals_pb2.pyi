from mandate._proto.mandate.token.v1 import token_pb2 as _token_pb2
from mandate._proto.mandate.v1 import tasks_pb2 as _tasks_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApprovalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_STATE_UNSPECIFIED: _ClassVar[ApprovalState]
    APPROVAL_STATE_PENDING: _ClassVar[ApprovalState]
    APPROVAL_STATE_APPROVED: _ClassVar[ApprovalState]
    APPROVAL_STATE_DENIED: _ClassVar[ApprovalState]
    APPROVAL_STATE_EXPIRED: _ClassVar[ApprovalState]
APPROVAL_STATE_UNSPECIFIED: ApprovalState
APPROVAL_STATE_PENDING: ApprovalState
APPROVAL_STATE_APPROVED: ApprovalState
APPROVAL_STATE_DENIED: ApprovalState
APPROVAL_STATE_EXPIRED: ApprovalState

class Approval(_message.Message):
    __slots__ = ("task_id", "requester_agent_id", "request_hash", "intent", "capabilities", "ttl_ms", "max_depth", "state", "create_time_ms", "expire_time_ms", "decided_by", "decide_time_ms", "comment", "policy_ids", "policy_hash", "require_online", "signals")
    class SignalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    TTL_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_DEPTH_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ONLINE_FIELD_NUMBER: _ClassVar[int]
    SIGNALS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    requester_agent_id: str
    request_hash: str
    intent: _tasks_pb2.Intent
    capabilities: _containers.RepeatedCompositeFieldContainer[_token_pb2.Capability]
    ttl_ms: int
    max_depth: int
    state: ApprovalState
    create_time_ms: int
    expire_time_ms: int
    decided_by: str
    decide_time_ms: int
    comment: str
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    policy_hash: str
    require_online: bool
    signals: _containers.ScalarMap[str, str]
    def __init__(self, task_id: _Optional[str] = ..., requester_agent_id: _Optional[str] = ..., request_hash: _Optional[str] = ..., intent: _Optional[_Union[_tasks_pb2.Intent, _Mapping]] = ..., capabilities: _Optional[_Iterable[_Union[_token_pb2.Capability, _Mapping]]] = ..., ttl_ms: _Optional[int] = ..., max_depth: _Optional[int] = ..., state: _Optional[_Union[ApprovalState, str]] = ..., create_time_ms: _Optional[int] = ..., expire_time_ms: _Optional[int] = ..., decided_by: _Optional[str] = ..., decide_time_ms: _Optional[int] = ..., comment: _Optional[str] = ..., policy_ids: _Optional[_Iterable[str]] = ..., policy_hash: _Optional[str] = ..., require_online: _Optional[bool] = ..., signals: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListApprovalsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: ApprovalState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[ApprovalState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListApprovalsResponse(_message.Message):
    __slots__ = ("approvals", "next_page_token")
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    next_page_token: str
    def __init__(self, approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetApprovalRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class GetApprovalResponse(_message.Message):
    __slots__ = ("approval", "task", "chain", "chain_text")
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TEXT_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    task: _tasks_pb2.Task
    chain: bytes
    chain_text: str
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ..., task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ..., chain: _Optional[bytes] = ..., chain_text: _Optional[str] = ...) -> None: ...

class ApproveRequest(_message.Message):
    __slots__ = ("task_id", "request_hash", "comment")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    request_hash: str
    comment: str
    def __init__(self, task_id: _Optional[str] = ..., request_hash: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class ApproveResponse(_message.Message):
    __slots__ = ("approval", "task", "decision")
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    task: _tasks_pb2.Task
    decision: _tasks_pb2.Decision
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ..., task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ..., decision: _Optional[_Union[_tasks_pb2.Decision, _Mapping]] = ...) -> None: ...

class DenyRequest(_message.Message):
    __slots__ = ("task_id", "request_hash", "comment")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_HASH_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    request_hash: str
    comment: str
    def __init__(self, task_id: _Optional[str] = ..., request_hash: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class DenyResponse(_message.Message):
    __slots__ = ("approval", "task")
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    task: _tasks_pb2.Task
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ..., task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ...) -> None: ...

class WaitApprovalRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class WaitApprovalResponse(_message.Message):
    __slots__ = ("approval", "task", "chain", "chain_text")
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    CHAIN_TEXT_FIELD_NUMBER: _ClassVar[int]
    approval: Approval
    task: _tasks_pb2.Task
    chain: bytes
    chain_text: str
    def __init__(self, approval: _Optional[_Union[Approval, _Mapping]] = ..., task: _Optional[_Union[_tasks_pb2.Task, _Mapping]] = ..., chain: _Optional[bytes] = ..., chain_text: _Optional[str] = ...) -> None: ...
