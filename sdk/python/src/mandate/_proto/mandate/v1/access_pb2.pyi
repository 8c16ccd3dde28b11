from mandate._proto.mandate.token.v1 import token_pb2 as _token_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WhoCanRequest(_message.Message):
    __slots__ = ("action", "resource", "args", "limit")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    action: str
    resource: str
    args: _containers.RepeatedCompositeFieldContainer[_token_pb2.Argument]
    limit: int
    def __init__(self, action: _Optional[str] = ..., resource: _Optional[str] = ..., args: _Optional[_Iterable[_Union[_token_pb2.Argument, _Mapping]]] = ..., limit: _Optional[int] = ...) -> None: ...

class LiveLink(_message.Message):
    __slots__ = ("link_id", "holder_agent_id", "task_id", "requester", "intent", "path", "kind", "not_before_ms", "expires_at_ms", "remaining_ms", "capabilities", "require_online")
    LINK_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_MS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_MS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_ONLINE_FIELD_NUMBER: _ClassVar[int]
    link_id: str
    holder_agent_id: str
    task_id: str
    requester: str
    intent: str
    path: _containers.RepeatedScalarFieldContainer[str]
    kind: str
    not_before_ms: int
    expires_at_ms: int
    remaining_ms: int
    capabilities: _containers.RepeatedCompositeFieldContainer[_token_pb2.Capability]
    require_online: bool
    def __init__(self, link_id: _Optional[str] = ..., holder_agent_id: _Optional[str] = ..., task_id: _Optional[str] = ..., requester: _Optional[str] = ..., intent: _Optional[str] = ..., path: _Optional[_Iterable[str]] = ..., kind: _Optional[str] = ..., not_before_ms: _Optional[int] = ..., expires_at_ms: _Optional[int] = ..., remaining_ms: _Optional[int] = ..., capabilities: _Optional[_Iterable[_Union[_token_pb2.Capability, _Mapping]]] = ..., require_online: _Optional[bool] = ...) -> None: ...

class WhoCanResponse(_message.Message):
    __slots__ = ("links", "truncated", "time_ms")
    LINKS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[LiveLink]
    truncated: bool
    time_ms: int
    def __init__(self, links: _Optional[_Iterable[_Union[LiveLink, _Mapping]]] = ..., truncated: _Optional[bool] = ..., time_ms: _Optional[int] = ...) -> None: ...

class ListLiveAuthorityRequest(_message.Message):
    __slots__ = ("agent_id", "resource_prefix", "action", "task_id", "limit")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_PREFIX_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    resource_prefix: str
    action: str
    task_id: str
    limit: int
    def __init__(self, agent_id: _Optional[str] = ..., resource_prefix: _Optional[str] = ..., action: _Optional[str] = ..., task_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListLiveAuthorityResponse(_message.Message):
    __slots__ = ("links", "truncated", "time_ms")
    LINKS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    links: _containers.RepeatedCompositeFieldContainer[LiveLink]
    truncated: bool
    time_ms: int
    def __init__(self, links: _Optional[_Iterable[_Union[LiveLink, _Mapping]]] = ..., truncated: _Optional[bool] = ..., time_ms: _Optional[int] = ...) -> None: ...

class ExposureReportRequest(_message.Message):
    __slots__ = ("window_ms", "threshold_ms", "max_gap_ms")
    WINDOW_MS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_GAP_MS_FIELD_NUMBER: _ClassVar[int]
    window_ms: int
    threshold_ms: int
    max_gap_ms: int
    def __init__(self, window_ms: _Optional[int] = ..., threshold_ms: _Optional[int] = ..., max_gap_ms: _Optional[int] = ...) -> None: ...

class Exposure(_message.Message):
    __slots__ = ("agent_id", "resource", "privilege_ms", "grants", "longest_span_ms", "longest_span_start_ms", "standing", "break_glass_ms", "break_glass_grants")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGE_MS_FIELD_NUMBER: _ClassVar[int]
    GRANTS_FIELD_NUMBER: _ClassVar[int]
    LONGEST_SPAN_MS_FIELD_NUMBER: _ClassVar[int]
    LONGEST_SPAN_START_MS_FIELD_NUMBER: _ClassVar[int]
    STANDING_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_MS_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_GRANTS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    resource: str
    privilege_ms: int
    grants: int
    longest_span_ms: int
    longest_span_start_ms: int
    standing: bool
    break_glass_ms: int
    break_glass_grants: int
    def __init__(self, agent_id: _Optional[str] = ..., resource: _Optional[str] = ..., privilege_ms: _Optional[int] = ..., grants: _Optional[int] = ..., longest_span_ms: _Optional[int] = ..., longest_span_start_ms: _Optional[int] = ..., standing: _Optional[bool] = ..., break_glass_ms: _Optional[int] = ..., break_glass_grants: _Optional[int] = ...) -> None: ...

class ExposureReportResponse(_message.Message):
    __slots__ = ("from_ms", "to_ms", "agents", "resources", "threshold_ms", "max_gap_ms", "history_from_ms", "timeline")
    FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TO_MS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_GAP_MS_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FROM_MS_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    from_ms: int
    to_ms: int
    agents: _containers.RepeatedCompositeFieldContainer[Exposure]
    resources: _containers.RepeatedCompositeFieldContainer[Exposure]
    threshold_ms: int
    max_gap_ms: int
    history_from_ms: int
    timeline: _containers.RepeatedCompositeFieldContainer[TimelinePoint]
    def __init__(self, from_ms: _Optional[int] = ..., to_ms: _Optional[int] = ..., agents: _Optional[_Iterable[_Union[Exposure, _Mapping]]] = ..., resources: _Optional[_Iterable[_Union[Exposure, _Mapping]]] = ..., threshold_ms: _Optional[int] = ..., max_gap_ms: _Optional[int] = ..., history_from_ms: _Optional[int] = ..., timeline: _Optional[_Iterable[_Union[TimelinePoint, _Mapping]]] = ...) -> None: ...

class TimelinePoint(_message.Message):
    __slots__ = ("time_ms", "live_links", "agents")
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LIVE_LINKS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    time_ms: int
    live_links: int
    agents: int
    def __init__(self, time_ms: _Optional[int] = ..., live_links: _Optional[int] = ..., agents: _Optional[int] = ...) -> None: ...
