"""The caller's side: submit executions and wait for them through every retry."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterable, Iterator, Mapping, TypeVar

import grpc

from reprise.v1 import execution_service_pb2 as service
from reprise.v1 import execution_service_pb2_grpc, types_pb2

from ._channel import open_channel
from ._backoff import Backoff, CallFailed, is_over_quota, is_transient
from ._durations import Seconds, as_seconds, to_duration
from ._submits import Answer, Pending, SubmitBatcher, SubmitDeadlineExceeded
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


def _worth_resending(request: service.SubmitRequest, answer: Answer) -> bool:
    # Without a key a resend could create a second execution, so only a keyed submit is resent.
    return bool(request.idempotency_key) and isinstance(answer, grpc.RpcError) and is_transient(answer)


async def _submit_awaiting(submits: SubmitBatcher, request: service.SubmitRequest, deadline: float) -> Answer:
    """One send through the batcher, awaited: the answer wakes the loop from gRPC's thread."""
    loop = asyncio.get_running_loop()
    woken = loop.create_future()

    def wake() -> None:
        if not woken.done():
            woken.set_result(None)

    def notify() -> None:
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:  # the loop has closed; nobody is waiting any more
            pass

    pending = Pending(request, deadline, notify)
    submits.enqueue([pending])
    try:
        await asyncio.wait_for(woken, max(deadline - time.monotonic(), 0.0))
    except asyncio.TimeoutError:
        submits.settle(pending, SubmitDeadlineExceeded())
    except asyncio.CancelledError:
        # Still queued: then it is never sent. Already sent: its answer is dropped.
        submits.settle(pending, SubmitDeadlineExceeded())
        raise
    return pending.answer  # type: ignore[return-value]


class Client:
    """Submits executions and reads them. Use as a context manager, or close() it."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, codec: Codec | None = None, token: str | None = None, tls: bool | bytes = False):
        """`token`: a bearer token (`caller` or `admin`) for a coordinator run with --auth-tokens.
        `tls`: False (plaintext), True (TLS, system roots) or PEM root certificates as bytes."""
        self.address = address
        self.codec: Codec = codec or JsonCodec()
        self._channel = open_channel(address, token, tls)
        self._stub = execution_service_pb2_grpc.ExecutionServiceStub(self._channel)
        self._submits = SubmitBatcher(self._stub)

    def close(self) -> None:
        self._submits.close()
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

        Safe to call from many threads at once: a submit made while another is
        on the wire waits for it to return, then goes out with every other
        submit that queued meanwhile, as one SubmitBatch (see submit_many).

        When the coordinator cannot be reached, raises grpc.RpcError with
        UNAVAILABLE, naming its address: at once without an idempotency key;
        with one, after resending it for up to RECONNECT_TIMEOUT.
        """
        request = self._submit_request(task, args, retries, idempotency_key, delay, labels)
        [answer] = self._submit_all([request])
        return self._handle(answer)

    def submit_many(
        self,
        task: str,
        args: Iterable[Any],
        *,
        retries: RetriesOption = None,
        idempotency_keys: Iterable[str | None] | None = None,
        delay: Seconds | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> list["ExecutionHandle"]:
        """Creates one execution of `task` for each item of `args`, in SubmitBatch
        calls of up to 1,000, and returns their handles in the same order.

        `idempotency_keys`, if given, holds one key (or None) per item. Each
        submission is answered on its own: when one is refused (say its payload
        is too large), the others are still created, and the first error is
        raised once all are answered. Give keys to make sending the whole list
        again safe after an error.
        """
        items = list(args)
        keys = [None] * len(items) if idempotency_keys is None else list(idempotency_keys)
        if len(keys) != len(items):
            raise ValueError(f"idempotency_keys: one per item of args; got {len(keys)} for {len(items)}")
        requests = [self._submit_request(task, item, retries, key, delay, labels) for item, key in zip(items, keys)]
        return [self._handle(answer) for answer in self._submit_all(requests)]

    async def submit_async(
        self,
        task: str,
        args: Any = None,
        *,
        retries: RetriesOption = None,
        idempotency_key: str | None = None,
        delay: Seconds | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> "ExecutionHandle":
        """submit() for asyncio code: the same batching and resends, awaited
        without blocking the event loop (e.g. from an `async def` handler)."""
        request = self._submit_request(task, args, retries, idempotency_key, delay, labels)
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        backoff = Backoff()
        while True:
            answer = await _submit_awaiting(self._submits, request, deadline)
            pause = backoff.next()
            if not _worth_resending(request, answer) or time.monotonic() + pause >= deadline:
                return self._handle(answer)
            await asyncio.sleep(pause)

    def _submit_request(
        self,
        task: str,
        args: Any,
        retries: RetriesOption,
        idempotency_key: str | None,
        delay: Seconds | None,
        labels: Mapping[str, str] | None,
    ) -> service.SubmitRequest:
        request = service.SubmitRequest(task=task, arguments=self.codec.encode(args), idempotency_key=idempotency_key or "")
        if retries is not None:
            if isinstance(retries, Retries) and retries.when is not None:
                raise ValueError("retries: `when` is evaluated by workers and cannot be sent with a submission; declare it on the task")
            request.retry_policy.CopyFrom(to_retry_policy(retries) or types_pb2.RetryPolicy())
        if delay is not None:
            request.delay.CopyFrom(to_duration(as_seconds(delay, "delay")))
        if labels:
            request.labels.update(labels)
        return request

    def _submit_all(self, requests: list[service.SubmitRequest]) -> list[Answer]:
        """Sends every request through the batcher; resends the keyed ones that
        met a transient failure (a coordinator restart) for up to RECONNECT_TIMEOUT."""
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        answers: list[Answer] = [None] * len(requests)  # type: ignore[list-item]
        todo = list(range(len(requests)))
        backoff = Backoff()
        while True:
            for index, answer in zip(todo, self._submits.submit([requests[i] for i in todo], deadline)):
                answers[index] = answer
            todo = [i for i in todo if _worth_resending(requests[i], answers[i])]
            pause = backoff.next()
            if not todo or time.monotonic() + pause >= deadline:
                return answers
            time.sleep(pause)

    def _handle(self, answer: Answer) -> "ExecutionHandle":
        if isinstance(answer, grpc.RpcError) and is_transient(answer):
            # gRPC's own message need not say which coordinator failed to answer, nor to what.
            raise CallFailed("submit", self.address, answer) from answer
        if isinstance(answer, BaseException):
            raise answer
        return ExecutionHandle(self, answer.execution, answer.existing)

    def execution(self, execution_id: str) -> "ExecutionHandle":
        """A handle on an existing execution, e.g. one submitted by another process."""
        return ExecutionHandle(self, self._get(execution_id))

    def _get(self, execution_id: str) -> types_pb2.Execution:
        request = service.GetExecutionRequest(execution_id=execution_id)
        return self._retrying("GetExecution", lambda timeout: self._stub.GetExecution(request, timeout=timeout, wait_for_ready=True)).execution

    def _cancel(self, execution_id: str) -> types_pb2.Execution:
        request = service.CancelExecutionRequest(execution_id=execution_id)
        return self._retrying("CancelExecution", lambda timeout: self._stub.CancelExecution(request, timeout=timeout, wait_for_ready=True)).execution

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
        try:
            return self._stub.RerunExecution(request, timeout=RECONNECT_TIMEOUT, wait_for_ready=True).execution
        except grpc.RpcError as error:
            if is_transient(error):
                raise CallFailed("RerunExecution", self.address, error) from error
            raise

    def _retrying(self, name: str, call: Callable[[float], T]) -> T:
        """Runs an idempotent unary call, resending through transient failures
        for up to RECONNECT_TIMEOUT; then raises CallFailed, naming `name`."""
        deadline = time.monotonic() + RECONNECT_TIMEOUT
        backoff = Backoff()
        while True:
            remaining = deadline - time.monotonic()
            try:
                return call(max(remaining, 0.001))
            except grpc.RpcError as error:
                pause = backoff.next()
                if not is_transient(error):
                    raise
                if time.monotonic() + pause >= deadline:
                    raise CallFailed(name, self.address, error) from error
                time.sleep(pause)


class ExecutionHandle:
    """One execution: its latest snapshot in `.execution`, and ways to wait for, watch, cancel or re-run it."""

    def __init__(self, client: Client, execution: types_pb2.Execution, existing: bool = False):
        self._client = client
        self.id: str = execution.id
        self.execution = execution
        # True when submit() matched an idempotency key, so nothing was created.
        self.existing = existing

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
