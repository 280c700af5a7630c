"""The caller's side: submit executions and wait for them through every retry."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator, Mapping, TypeVar

import grpc

from reprise.v1 import execution_service_pb2 as service
from reprise.v1 import execution_service_pb2_grpc, types_pb2

from ._channel import open_channel
from ._backoff import Backoff, is_over_quota, is_transient
from ._durations import Seconds, as_seconds, to_duration
from .codec import Codec, JsonCodec
from .errors import ExecutionAbandoned, ExecutionCancelled, ExecutionError, ExecutionFailed, ExecutionTimedOut, WaitTimeout
from .options import DEFAULT_ADDRESS
from .retries import Retries, RetriesOption, to_retry_policy

State = types_pb2.ExecutionState
TERMINAL = frozenset(
    {
        State.EXECUTION_STATE_SUCCEEDED,
        State.EXECUTION_STATE_FAILED,
        State.EXECUTION_STATE_ABANDONED,
        State.EXECUTION_STATE_TIMED_OUT,
        State.EXECUTION_STATE_CANCELLED,
    }
)
_ERRORS: dict[int, type[ExecutionError]] = {
    State.EXECUTION_STATE_FAILED: ExecutionFailed,
    State.EXECUTION_STATE_ABANDONED: ExecutionAbandoned,
    State.EXECUTION_STATE_TIMED_OUT: ExecutionTimedOut,
    State.EXECUTION_STATE_CANCELLED: ExecutionCancelled,
}
# How long an idempotent unary call keeps retrying through a coordinator restart.
RECONNECT_TIMEOUT = 30.0

T = TypeVar("T")


def is_terminal(execution: types_pb2.Execution) -> bool:
    return execution.state in TERMINAL


class Client:
    """Submits executions and reads them. Use as a context manager, or close() it."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, codec: Codec | None = None, token: str | None = None, tls: bool | bytes = False):
        """`token`: a bearer token (`caller` or `admin`) for a coordinator run with --auth-tokens.
        `tls`: False (plaintext), True (TLS, system roots) or PEM root certificates as bytes."""
        self.address = address
        self.codec: Codec = codec or JsonCodec()
        self._channel = open_channel(address, token, tls)
        self._stub = execution_service_pb2_grpc.ExecutionServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def submit(
        self,
        task: str,
        args: Any = None,
        *,
        retries: RetriesOption = None,
        idempotency_key: str | None = None,
        delay: Seconds | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> "ExecutionHandle":
        """Creates an execution of `task` with `args` (JSON-encoded by default).

        `retries=None` (the default) lets the task's declared policy apply; any
        other value is this execution's own policy and overrides it, so
        `retries=0` means at most once whatever the task declares. A `when`
        cannot travel with a submission (workers evaluate their own), so a
        Retries with `when` is refused here.
        """
        request = service.SubmitRequest(task=task, arguments=self.codec.encode(args), idempotency_key=idempotency_key or "")
        if retries is not None:
            if isinstance(retries, Retries) and retries.when is not None:
                raise ValueError("retries: `when` is evaluated by workers and cannot be sent with a submission; declare it on the task")
            request.retry_policy.CopyFrom(to_retry_policy(retries) or types_pb2.RetryPolicy())
        if delay is not None:
            request.delay.CopyFrom(to_duration(as_seconds(delay, "delay")))
        if labels:
            request.labels.update(labels)
        # Without a key a resend could create a second execution, so only a keyed submit is retried.
        if idempotency_key:
            response = self._retrying(lambda timeout: self._stub.Submit(request, timeout=timeout, wait_for_ready=True))
        else:
            response = self._stub.Submit(request, timeout=RECONNECT_TIMEOUT, wait_for_ready=True)
        return ExecutionHandle(self, response.execution)

    def execution(self, execution_id: str) -> "ExecutionHandle":
        """A handle on an existing execution, e.g. one submitted by another process."""
        return ExecutionHandle(self, self._get(execution_id))

    def _get(self, execution_id: str) -> types_pb2.Execution:
        request = service.GetExecutionRequest(execution_id=execution_id)
        return self._retrying(lambda timeout: self._stub.GetExecution(request, timeout=timeout, wait_for_ready=True)).execution

    def _cancel(self, execution_id: str) -> types_pb2.Execution:
        request = service.CancelExecutionRequest(execution_id=execution_id)
        return self._retrying(lambda timeout: self._stub.CancelExecution(request, timeout=timeout, wait_for_ready=True)).execution

    def rerun(self, execution_id: str) -> types_pb2.Execution:
        """Runs an execution that ended FAILED, ABANDONED, TIMED_OUT or CANCELLED again; returns it, PENDING.

        It keeps its id, its attempts and its idempotency key, and its retry
        limit counts afresh. Raises grpc.RpcError with FAILED_PRECONDITION when
        it is PENDING, RUNNING or SUCCEEDED, and NOT_FOUND when there is no
        such execution. To wait for its new end: `client.execution(id).result()`.
        """
        return self._rerun(execution_id)

    def _rerun(self, execution_id: str) -> types_pb2.Execution:
        request = service.RerunExecutionRequest(execution_id=execution_id)
        # Sent once: a resend after a lost reply would find it PENDING already and be refused.
        return self._stub.RerunExecution(request, timeout=RECONNECT_TIMEOUT, wait_for_ready=True).execution

    def _retrying(self, call: Callable[[float], T]) -> T:
        """Runs an idempotent unary call, resending through transient failures for up to RECONNECT_TIMEOUT."""
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        backoff = Backoff()
        while True:
            remaining = deadline - time.monotonic()
            try:
                return call(max(remaining, 0.001))
            except grpc.RpcError as error:
                pause = backoff.next()
                if not is_transient(error) or time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)


class ExecutionHandle:
    """One execution: its latest snapshot in `.execution`, and ways to wait for, watch, cancel or re-run it."""

    def __init__(self, client: Client, execution: types_pb2.Execution):
        self._client = client
        self.id: str = execution.id
        self.execution = execution

    def __repr__(self) -> str:
        return f"ExecutionHandle({self.id!r}, {State.Name(self.execution.state)})"

    def get(self) -> types_pb2.Execution:
        """Fetches the execution now, with all its attempts."""
        self.execution = self._client._get(self.id)
        return self.execution

    def cancel(self) -> types_pb2.Execution:
        """Cancels it: a pending one never runs again; a running attempt is told to stop. Ended ones are unchanged."""
        self.execution = self._client._cancel(self.id)
        return self.execution

    def rerun(self) -> types_pb2.Execution:
        """Runs it again after it ended FAILED, ABANDONED, TIMED_OUT or CANCELLED (see Client.rerun).

        result() and watch() then follow it to its new end.
        """
        self.execution = self._client._rerun(self.id)
        return self.execution

    def watch(self, timeout: float | None = None) -> Iterator[types_pb2.Execution]:
        """Yields a snapshot now and after every change, through all retries, ending after the terminal one.

        Re-attaches by itself when the stream drops (e.g. the coordinator
        restarts); a re-attach starts with the current state, so a snapshot may
        repeat. Raises WaitTimeout if `timeout` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff()
        request = service.WatchExecutionRequest(execution_id=self.id)
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise WaitTimeout(f"execution {self.id} had not ended after {timeout} s")
            stream = self._client._stub.WatchExecution(request, timeout=remaining, wait_for_ready=True)
            try:
                for message in stream:
                    backoff.reset()
                    self.execution = message.execution
                    yield message.execution
                    if is_terminal(message.execution):
                        return
            except grpc.RpcError as error:
                if error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"execution {self.id} had not ended after {timeout} s") from None
                # Over the per-connection watch quota: wait for a slot like for a restart.
                if not (is_transient(error) or is_over_quota(error)):
                    raise
            finally:
                stream.cancel()
            pause = backoff.next()
            if deadline is not None:
                pause = min(pause, max(0.0, deadline - time.monotonic()))
            time.sleep(pause)

    def result(self, timeout: float | None = None) -> Any:
        """Waits through every retry and returns the decoded result.

        Raises ExecutionFailed, ExecutionAbandoned, ExecutionTimedOut or
        ExecutionCancelled (each carrying failure_type, failure_message and the
        execution) when it ends otherwise, and WaitTimeout after `timeout` seconds.
        """
        if not is_terminal(self.execution):
            for _ in self.watch(timeout):
                pass
        execution = self.execution
        if execution.state == State.EXECUTION_STATE_SUCCEEDED:
            return self._client.codec.decode(execution.result)
        raise _ERRORS.get(execution.state, ExecutionError)(execution)
