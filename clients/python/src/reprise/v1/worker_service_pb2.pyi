import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from reprise.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeclareTasksRequest(_message.Message):
    __slots__ = ("worker_id", "tasks")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    tasks: _containers.RepeatedCompositeFieldContainer[_types_pb2.TaskDefinition]
    def __init__(self, worker_id: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[_types_pb2.TaskDefinition, _Mapping]]] = ...) -> None: ...

class DeclareTasksResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LeaseAttemptsRequest(_message.Message):
    __slots__ = ("worker_id", "tasks", "max_attempts", "wait", "lease_duration")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    max_attempts: int
    wait: _duration_pb2.Duration
    lease_duration: _duration_pb2.Duration
    def __init__(self, worker_id: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ..., max_attempts: _Optional[int] = ..., wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class LeaseAttemptsResponse(_message.Message):
    __slots__ = ("attempts",)
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[_types_pb2.LeasedAttempt]
    def __init__(self, attempts: _Optional[_Iterable[_Union[_types_pb2.LeasedAttempt, _Mapping]]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("lease_tokens", "worker_id")
    LEASE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    lease_tokens: _containers.RepeatedScalarFieldContainer[bytes]
    worker_id: str
    def __init__(self, lease_tokens: _Optional[_Iterable[bytes]] = ..., worker_id: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("cancel_requested", "lost")
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    cancel_requested: _containers.RepeatedScalarFieldContainer[bytes]
    lost: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, cancel_requested: _Optional[_Iterable[bytes]] = ..., lost: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ReportOutcomesRequest(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Outcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[_types_pb2.Outcome, _Mapping]]] = ...) -> None: ...

class ReportOutcomesResponse(_message.Message):
    __slots__ = ("receipts",)
    RECEIPTS_FIELD_NUMBER: _ClassVar[int]
    receipts: _containers.RepeatedCompositeFieldContainer[_types_pb2.OutcomeReceipt]
    def __init__(self, receipts: _Optional[_Iterable[_Union[_types_pb2.OutcomeReceipt, _Mapping]]] = ...) -> None: ...
