import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetryRule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RETRY_RULE_UNSPECIFIED: _ClassVar[RetryRule]
    RETRY_RULE_BACKOFF: _ClassVar[RetryRule]
    RETRY_RULE_RETRY_AFTER: _ClassVar[RetryRule]
    RETRY_RULE_SNOOZE: _ClassVar[RetryRule]
    RETRY_RULE_BUDGET: _ClassVar[RetryRule]
    RETRY_RULE_MAX_ELAPSED: _ClassVar[RetryRule]
    RETRY_RULE_LIMIT: _ClassVar[RetryRule]
    RETRY_RULE_NON_RETRYABLE: _ClassVar[RetryRule]

class ExecutionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_STATE_UNSPECIFIED: _ClassVar[ExecutionState]
    EXECUTION_STATE_PENDING: _ClassVar[ExecutionState]
    EXECUTION_STATE_RUNNING: _ClassVar[ExecutionState]
    EXECUTION_STATE_SUCCEEDED: _ClassVar[ExecutionState]
    EXECUTION_STATE_FAILED: _ClassVar[ExecutionState]
    EXECUTION_STATE_ABANDONED: _ClassVar[ExecutionState]
    EXECUTION_STATE_TIMED_OUT: _ClassVar[ExecutionState]
    EXECUTION_STATE_CANCELLED: _ClassVar[ExecutionState]

class AttemptState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ATTEMPT_STATE_UNSPECIFIED: _ClassVar[AttemptState]
    ATTEMPT_STATE_RUNNING: _ClassVar[AttemptState]
    ATTEMPT_STATE_SUCCEEDED: _ClassVar[AttemptState]
    ATTEMPT_STATE_FAILED: _ClassVar[AttemptState]
    ATTEMPT_STATE_ABANDONED: _ClassVar[AttemptState]
    ATTEMPT_STATE_TIMED_OUT: _ClassVar[AttemptState]
    ATTEMPT_STATE_CANCELLED: _ClassVar[AttemptState]
    ATTEMPT_STATE_SNOOZED: _ClassVar[AttemptState]
RETRY_RULE_UNSPECIFIED: RetryRule
RETRY_RULE_BACKOFF: RetryRule
RETRY_RULE_RETRY_AFTER: RetryRule
RETRY_RULE_SNOOZE: RetryRule
RETRY_RULE_BUDGET: RetryRule
RETRY_RULE_MAX_ELAPSED: RetryRule
RETRY_RULE_LIMIT: RetryRule
RETRY_RULE_NON_RETRYABLE: RetryRule
EXECUTION_STATE_UNSPECIFIED: ExecutionState
EXECUTION_STATE_PENDING: ExecutionState
EXECUTION_STATE_RUNNING: ExecutionState
EXECUTION_STATE_SUCCEEDED: ExecutionState
EXECUTION_STATE_FAILED: ExecutionState
EXECUTION_STATE_ABANDONED: ExecutionState
EXECUTION_STATE_TIMED_OUT: ExecutionState
EXECUTION_STATE_CANCELLED: ExecutionState
ATTEMPT_STATE_UNSPECIFIED: AttemptState
ATTEMPT_STATE_RUNNING: AttemptState
ATTEMPT_STATE_SUCCEEDED: AttemptState
ATTEMPT_STATE_FAILED: AttemptState
ATTEMPT_STATE_ABANDONED: AttemptState
ATTEMPT_STATE_TIMED_OUT: AttemptState
ATTEMPT_STATE_CANCELLED: AttemptState
ATTEMPT_STATE_SNOOZED: AttemptState

class RetryPolicy(_message.Message):
    __slots__ = ("limit", "unlimited", "backoff_min", "backoff_max", "backoff_coefficient", "jitter", "max_elapsed")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    UNLIMITED_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MIN_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MAX_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    MAX_ELAPSED_FIELD_NUMBER: _ClassVar[int]
    limit: int
    unlimited: bool
    backoff_min: _duration_pb2.Duration
    backoff_max: _duration_pb2.Duration
    backoff_coefficient: float
    jitter: float
    max_elapsed: _duration_pb2.Duration
    def __init__(self, limit: _Optional[int] = ..., unlimited: _Optional[bool] = ..., backoff_min: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_max: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_coefficient: _Optional[float] = ..., jitter: _Optional[float] = ..., max_elapsed: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RetryBudget(_message.Message):
    __slots__ = ("retries_per_second", "burst")
    RETRIES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    retries_per_second: float
    burst: int
    def __init__(self, retries_per_second: _Optional[float] = ..., burst: _Optional[int] = ...) -> None: ...

class TaskDefinition(_message.Message):
    __slots__ = ("name", "retry_policy", "timeout", "retry_budget")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    retry_policy: RetryPolicy
    timeout: _duration_pb2.Duration
    retry_budget: RetryBudget
    def __init__(self, name: _Optional[str] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_budget: _Optional[_Union[RetryBudget, _Mapping]] = ...) -> None: ...

class Payload(_message.Message):
    __slots__ = ("data", "content_type")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("type", "message", "stack_trace", "non_retryable", "retry_after")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STACK_TRACE_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    stack_trace: str
    non_retryable: bool
    retry_after: _duration_pb2.Duration
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., stack_trace: _Optional[str] = ..., non_retryable: _Optional[bool] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("number", "state", "worker_id", "scheduled_at", "started_at", "finished_at", "failure", "retry_policy", "lease_expires_at", "retry_rule", "retry_at", "retry_computed_at")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    RETRY_RULE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AT_FIELD_NUMBER: _ClassVar[int]
    RETRY_COMPUTED_AT_FIELD_NUMBER: _ClassVar[int]
    number: int
    state: AttemptState
    worker_id: str
    scheduled_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    failure: Failure
    retry_policy: RetryPolicy
    lease_expires_at: _timestamp_pb2.Timestamp
    retry_rule: RetryRule
    retry_at: _timestamp_pb2.Timestamp
    retry_computed_at: _timestamp_pb2.Timestamp
    def __init__(self, number: _Optional[int] = ..., state: _Optional[_Union[AttemptState, str]] = ..., worker_id: _Optional[str] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_rule: _Optional[_Union[RetryRule, str]] = ..., retry_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_computed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Execution(_message.Message):
    __slots__ = ("id", "task", "state", "arguments", "retry_policy", "attempts", "result", "failure", "next_attempt_at", "created_at", "finished_at", "idempotency_key", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    task: str
    state: ExecutionState
    arguments: Payload
    retry_policy: RetryPolicy
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    result: Payload
    failure: Failure
    next_attempt_at: _timestamp_pb2.Timestamp
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    idempotency_key: str
    labels: _containers.ScalarMap[str, str]
    def __init__(self, id: _Optional[str] = ..., task: _Optional[str] = ..., state: _Optional[_Union[ExecutionState, str]] = ..., arguments: _Optional[_Union[Payload, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., result: _Optional[_Union[Payload, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class LeasedAttempt(_message.Message):
    __slots__ = ("execution_id", "task", "attempt", "lease_token", "lease_expires_at", "arguments", "timeout_at", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_AT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    task: str
    attempt: int
    lease_token: bytes
    lease_expires_at: _timestamp_pb2.Timestamp
    arguments: Payload
    timeout_at: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    def __init__(self, execution_id: _Optional[str] = ..., task: _Optional[str] = ..., attempt: _Optional[int] = ..., lease_token: _Optional[bytes] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., arguments: _Optional[_Union[Payload, _Mapping]] = ..., timeout_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Outcome(_message.Message):
    __slots__ = ("lease_token", "result", "failure", "snooze")
    LEASE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SNOOZE_FIELD_NUMBER: _ClassVar[int]
    lease_token: bytes
    result: Payload
    failure: Failure
    snooze: Snooze
    def __init__(self, lease_token: _Optional[bytes] = ..., result: _Optional[_Union[Payload, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., snooze: _Optional[_Union[Snooze, _Mapping]] = ...) -> None: ...

class Snooze(_message.Message):
    __slots__ = ("delay",)
    DELAY_FIELD_NUMBER: _ClassVar[int]
    delay: _duration_pb2.Duration
    def __init__(self, delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class OutcomeReceipt(_message.Message):
    __slots__ = ("accepted", "reason", "will_retry", "next_attempt_at", "duplicate")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    will_retry: bool
    next_attempt_at: _timestamp_pb2.Timestamp
    duplicate: bool
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., will_retry: _Optional[bool] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class TaskSummary(_message.Message):
    __slots__ = ("name", "declaration", "declared_by", "declared_at", "executions", "due", "workers", "worker_last_seen_at", "no_worker", "failures_last_hour", "retries_last_hour", "frequent_failures")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DECLARATION_FIELD_NUMBER: _ClassVar[int]
    DECLARED_BY_FIELD_NUMBER: _ClassVar[int]
    DECLARED_AT_FIELD_NUMBER: _ClassVar[int]
    EXECUTIONS_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    WORKER_LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    NO_WORKER_FIELD_NUMBER: _ClassVar[int]
    FAILURES_LAST_HOUR_FIELD_NUMBER: _ClassVar[int]
    RETRIES_LAST_HOUR_FIELD_NUMBER: _ClassVar[int]
    FREQUENT_FAILURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    declaration: TaskDefinition
    declared_by: str
    declared_at: _timestamp_pb2.Timestamp
    executions: _containers.RepeatedCompositeFieldContainer[StateCount]
    due: int
    workers: int
    worker_last_seen_at: _timestamp_pb2.Timestamp
    no_worker: bool
    failures_last_hour: int
    retries_last_hour: int
    frequent_failures: _containers.RepeatedCompositeFieldContainer[FailureTypeCount]
    def __init__(self, name: _Optional[str] = ..., declaration: _Optional[_Union[TaskDefinition, _Mapping]] = ..., declared_by: _Optional[str] = ..., declared_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., executions: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., due: _Optional[int] = ..., workers: _Optional[int] = ..., worker_last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., no_worker: _Optional[bool] = ..., failures_last_hour: _Optional[int] = ..., retries_last_hour: _Optional[int] = ..., frequent_failures: _Optional[_Iterable[_Union[FailureTypeCount, _Mapping]]] = ...) -> None: ...

class FailureTypeCount(_message.Message):
    __slots__ = ("type", "count")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    type: str
    count: int
    def __init__(self, type: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: ExecutionState
    count: int
    def __init__(self, state: _Optional[_Union[ExecutionState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("id", "tasks", "last_seen_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    tasks: _containers.RepeatedScalarFieldContainer[str]
    last_seen_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tasks: _Optional[_Iterable[str]] = ..., last_seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
