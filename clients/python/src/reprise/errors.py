"""Typed errors: the ones a caller catches, and the ones a handler raises to steer its outcome."""
from __future__ import annotations

from reprise.v1 import types_pb2

from ._durations import Seconds, as_seconds

MAX_SNOOZE_SECONDS = 365 * 86_400


class RepriseError(Exception):
    """Base of every error this package raises on its own account."""


# --- What a caller gets from ExecutionHandle.result() -----------------------


class ExecutionError(RepriseError):
    """The execution ended without a result. Carries the final failure and the execution."""

    def __init__(self, execution: types_pb2.Execution):
        self.execution = execution
        self.execution_id = execution.id
        self.failure_type = execution.failure.type
        self.failure_message = execution.failure.message
        state = types_pb2.ExecutionState.Name(execution.state).removeprefix("EXECUTION_STATE_")
        detail = f"{self.failure_type}: {self.failure_message}" if self.failure_type else self.failure_message
        super().__init__(f"execution {execution.id} ({execution.task}) ended {state}" + (f": {detail}" if detail else ""))


class ExecutionFailed(ExecutionError):
    """The last attempt raised, non-retryably or with no retries left."""


class ExecutionAbandoned(ExecutionError):
    """The last attempt's lease expired (its worker went away) with no retries left."""


class ExecutionTimedOut(ExecutionError):
    """The last attempt ran past its task's timeout with no retries left."""


class ExecutionCancelled(ExecutionError):
    """CancelExecution ended the execution."""


class WaitTimeout(RepriseError, TimeoutError):
    """result(timeout=...) ran out before the execution ended. The execution goes on."""


# --- What a handler raises ---------------------------------------------------


class RetryAfter(Exception):
    """Raise to ask for a specific delay before the next retry, e.g. from an HTTP Retry-After header.

    The delay replaces the policy's computed one for this retry only, and the
    retry still counts against the limit. The worker honours a `retry_after`
    attribute (seconds or a timedelta) on *any* exception, so an HTTP error
    class of your own can carry it too. `when` still decides whether the error
    is retried at all.
    """

    def __init__(self, seconds: Seconds, message: str = ""):
        self.retry_after = as_seconds(seconds, "retry_after")
        super().__init__(message or f"retry requested after {self.retry_after:g} s")


class Snooze(Exception):
    """Raise to say the attempt did no work and should run again after `seconds`.

    The attempt ends SNOOZED and the execution is due again after the delay.
    A snooze is not a failure: it uses up no retry, is allowed even for a task
    without retries, and `when` is not asked about it.
    """

    def __init__(self, seconds: Seconds, message: str = ""):
        self.delay = as_seconds(seconds, "Snooze.seconds")
        if self.delay > MAX_SNOOZE_SECONDS:
            raise ValueError(f"Snooze.seconds: at most 365 days; got {seconds!r}")
        super().__init__(message or f"snoozed for {self.delay:g} s")


class NonRetryableError(Exception):
    """Raise to fail the execution at once, whatever `when` says and however many retries remain."""


class AttemptCancelled(Exception):
    """Raised by AttemptContext.raise_if_cancelled(): this attempt must stop; its outcome is not reported."""
