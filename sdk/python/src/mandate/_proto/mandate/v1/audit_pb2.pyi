from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_SEVERITY_UNSPECIFIED: _ClassVar[AuditSeverity]
    AUDIT_SEVERITY_INFO: _ClassVar[AuditSeverity]
    AUDIT_SEVERITY_NOTICE: _ClassVar[AuditSeverity]
    AUDIT_SEVERITY_HIGH: _ClassVar[AuditSeverity]
AUDIT_SEVERITY_UNSPECIFIED: AuditSeverity
AUDIT_SEVERITY_INFO: AuditSeverity
AUDIT_SEVERITY_NOTICE: AuditSeverity
AUDIT_SEVERITY_HIGH: AuditSeverity

class AuditRecord(_message.Message):
    __slots__ = ("seq", "time_ms", "actor", "action", "task_id", "link_ids", "decision", "reason", "policy_ids", "policy_hash", "severity", "detail", "prev_hash", "hash")
    class DetailEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LINK_IDS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    POLICY_IDS_FIELD_NUMBER: _ClassVar[int]
    POLICY_HASH_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time_ms: int
    actor: str
    action: str
    task_id: str
    link_ids: _containers.RepeatedScalarFieldContainer[str]
    decision: str
    reason: str
    policy_ids: _containers.RepeatedScalarFieldContainer[str]
    policy_hash: str
    severity: AuditSeverity
    detail: _containers.ScalarMap[str, str]
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., time_ms: _Optional[int] = ..., actor: _Optional[str] = ..., action: _Optional[str] = ..., task_id: _Optional[str] = ..., link_ids: _Optional[_Iterable[str]] = ..., decision: _Optional[str] = ..., reason: _Optional[str] = ..., policy_ids: _Optional[_Iterable[str]] = ..., policy_hash: _Optional[str] = ..., severity: _Optional[_Union[AuditSeverity, str]] = ..., detail: _Optional[_Mapping[str, str]] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class AuditFilter(_message.Message):
    __slots__ = ("task_id", "agent_id", "link_id", "action_prefix", "since_ms", "until_ms", "min_severity")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_PREFIX_FIELD_NUMBER: _ClassVar[int]
    SINCE_MS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_SEVERITY_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    agent_id: str
    link_id: str
    action_prefix: str
    since_ms: int
    until_ms: int
    min_severity: AuditSeverity
    def __init__(self, task_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., link_id: _Optional[str] = ..., action_prefix: _Optional[str] = ..., since_ms: _Optional[int] = ..., until_ms: _Optional[int] = ..., min_severity: _Optional[_Union[AuditSeverity, str]] = ...) -> None: ...

class QueryAuditLogRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: AuditFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[AuditFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class QueryAuditLogResponse(_message.Message):
    __slots__ = ("records", "next_page_token", "head_seq")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    next_page_token: str
    head_seq: int
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., head_seq: _Optional[int] = ...) -> None: ...

class WatchAuditLogRequest(_message.Message):
    __slots__ = ("filter", "after_seq")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    filter: AuditFilter
    after_seq: int
    def __init__(self, filter: _Optional[_Union[AuditFilter, _Mapping]] = ..., after_seq: _Optional[int] = ...) -> None: ...

class WatchAuditLogResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: AuditRecord
    def __init__(self, record: _Optional[_Union[AuditRecord, _Mapping]] = ...) -> None: ...

class VerifyAuditLogRequest(_message.Message):
    __slots__ = ("from_seq", "to_seq")
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    TO_SEQ_FIELD_NUMBER: _ClassVar[int]
    from_seq: int
    to_seq: int
    def __init__(self, from_seq: _Optional[int] = ..., to_seq: _Optional[int] = ...) -> None: ...

class VerifyAuditLogResponse(_message.Message):
    __slots__ = ("intact", "checked", "first_broken_seq", "problem", "head_seq", "head_hash")
    INTACT_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_BROKEN_SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    HEAD_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEAD_HASH_FIELD_NUMBER: _ClassVar[int]
    intact: bool
    checked: int
    first_broken_seq: int
    problem: str
    head_seq: int
    head_hash: str
    def __init__(self, intact: _Optional[bool] = ..., checked: _Optional[int] = ..., first_broken_seq: _Optional[int] = ..., problem: _Optional[str] = ..., head_seq: _Optional[int] = ..., head_hash: _Optional[str] = ...) -> None: ...

class ExportAuditLogRequest(_message.Message):
    __slots__ = ("filter", "after_seq")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    filter: AuditFilter
    after_seq: int
    def __init__(self, filter: _Optional[_Union[AuditFilter, _Mapping]] = ..., after_seq: _Optional[int] = ...) -> None: ...

class ExportAuditLogResponse(_message.Message):
    __slots__ = ("jsonl",)
    JSONL_FIELD_NUMBER: _ClassVar[int]
    jsonl: bytes
    def __init__(self, jsonl: _Optional[bytes] = ...) -> None: ...

class CheckpointAuditLogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckpointAuditLogResponse(_message.Message):
    __slots__ = ("seq", "hash", "time_ms", "coordinator_key", "signature")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_KEY_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    hash: str
    time_ms: int
    coordinator_key: bytes
    signature: bytes
    def __init__(self, seq: _Optional[int] = ..., hash: _Optional[str] = ..., time_ms: _Optional[int] = ..., coordinator_key: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class PruneAuditLogRequest(_message.Message):
    __slots__ = ("before", "dry_run", "through", "archived_to")
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    THROUGH_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_TO_FIELD_NUMBER: _ClassVar[int]
    before: int
    dry_run: bool
    through: int
    archived_to: str
    def __init__(self, before: _Optional[int] = ..., dry_run: _Optional[bool] = ..., through: _Optional[int] = ..., archived_to: _Optional[str] = ...) -> None: ...

class PruneAuditLogResponse(_message.Message):
    __slots__ = ("prunable", "first_removed", "last_removed", "last_removed_hash", "segments", "record")
    PRUNABLE_FIELD_NUMBER: _ClassVar[int]
    FIRST_REMOVED_FIELD_NUMBER: _ClassVar[int]
    LAST_REMOVED_FIELD_NUMBER: _ClassVar[int]
    LAST_REMOVED_HASH_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    prunable: bool
    first_removed: int
    last_removed: int
    last_removed_hash: str
    segments: int
    record: int
    def __init__(self, prunable: _Optional[bool] = ..., first_removed: _Optional[int] = ..., last_removed: _Optional[int] = ..., last_removed_hash: _Optional[str] = ..., segments: _Optional[int] = ..., record: _Optional[int] = ...) -> None: ...
