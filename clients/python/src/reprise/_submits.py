"""Micro-batched submits, for callers on many threads (and coroutines).

A submit made while no call is in flight goes out at once, as a plain Submit,
so a lone caller waits for nothing. Submits made while a call is in flight
queue up and go out together, as one SubmitBatch, when it returns: the
pattern of the worker's reports. SubmitBatch is all or nothing, so when a
batch is refused for its content each submission is sent again alone and gets
its own answer, as the TypeScript client does.

Calls are grpc futures and finish in their done-callbacks, so that no caller's
thread is tied to anyone else's call: each waits only for its own answer, up
to its own deadline.

Calls are not wait_for_ready: while the coordinator cannot be reached, a
submit fails at once with UNAVAILABLE instead of waiting out its deadline, and
Client resends those that carry an idempotency key.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Sequence, Union

import grpc

from reprise.v1 import execution_service_pb2 as service

# The coordinator's default --max-batch-size. A smaller configured limit makes
# batches fail with INVALID_ARGUMENT, and so fall back to single submits.
MAX_BATCH = 1000
# Codes that mean "this batch's content was refused", not "the call failed".
REFUSED = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNIMPLEMENTED})

Answer = Union[service.SubmitResponse, BaseException]


class SubmitDeadlineExceeded(grpc.RpcError):
    """A submit's own deadline passed while it queued or its call was in flight,
    as a unary call's deadline would."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"

    def __str__(self) -> str:
        return "submit: Deadline Exceeded"


class Pending:
    """One submission: its request, its caller's deadline, and once settled its answer."""

    __slots__ = ("request", "deadline", "answer", "_notify")

    def __init__(self, request: service.SubmitRequest, deadline: float, notify: Callable[[], None]):
        self.request = request
        self.deadline = deadline  # time.monotonic()
        self.answer: Answer | None = None
        self._notify = notify


class SubmitBatcher:
    """One client's submits: sent at once while no call is in flight, else
    queued for the batch that goes out when the calls in flight have returned."""

    def __init__(self, stub) -> None:
        self._stub = stub
        self._lock = threading.Lock()
        self._queue: list[Pending] = []
        self._in_flight = 0
        self._closed = False

    def submit(self, requests: Sequence[service.SubmitRequest], deadline: float) -> list[Answer]:
        """Sends `requests` and waits for each answer: a SubmitResponse, or the
        error of its call (SubmitDeadlineExceeded once the monotonic `deadline` passes)."""
        if len(requests) == 1 and self._claim_idle():
            return [self._submit_inline(requests[0], deadline)]
        latch = _Latch(len(requests))
        pendings = [Pending(request, deadline, latch.count_down) for request in requests]
        self.enqueue(pendings)
        if not latch.wait(deadline - time.monotonic()):
            for pending in pendings:
                self.settle(pending, SubmitDeadlineExceeded())
        return [pending.answer for pending in pendings]  # type: ignore[misc]

    def _claim_idle(self) -> bool:
        """Counts a call in flight when none is, so that the caller may send its own."""
        with self._lock:
            if self._closed:
                raise ValueError("the client is closed")
            if self._in_flight:
                return False
            self._in_flight = 1
            return True

    def _submit_inline(self, request: service.SubmitRequest, deadline: float) -> Answer:
        # A lone submit on the caller's own thread, as a blocking call: a
        # future would cost it a hand-off from gRPC's thread and back.
        try:
            return self._stub.Submit(request, timeout=max(deadline - time.monotonic(), 0.001))
        except BaseException as error:  # noqa: BLE001 - the call's error is its caller's answer
            return error
        finally:
            self._call_ended()

    def enqueue(self, pendings: Sequence[Pending]) -> None:
        with self._lock:
            if self._closed:
                raise ValueError("the client is closed")
            self._queue.extend(pendings)
            batches = [] if self._in_flight else self._take()
        self._send(batches)

    def settle(self, pending: Pending, answer: Answer) -> None:
        """Gives `pending` its answer, unless it has one already. A submit that
        is settled while it queues (its caller gave up) is never sent."""
        with self._lock:
            if pending.answer is not None:
                return
            pending.answer = answer
        pending._notify()

    def close(self) -> None:
        """Refuses new submits and fails queued ones; calls in flight end when the channel closes."""
        with self._lock:
            self._closed = True
            queued, self._queue = self._queue, []
        for pending in queued:
            self.settle(pending, ValueError("the client is closed"))

    # --- sending ---------------------------------------------------------------------

    def _take(self) -> list[list[Pending]]:
        """Empties the queue into batches of at most MAX_BATCH, counted in flight. Holds the lock."""
        queued = [pending for pending in self._queue if pending.answer is None]
        self._queue = []
        batches = [queued[start : start + MAX_BATCH] for start in range(0, len(queued), MAX_BATCH)]
        self._in_flight += len(batches)
        return batches

    def _send(self, batches: list[list[Pending]]) -> None:
        for batch in batches:
            if len(batch) == 1:
                self._send_alone(batch[0])
            else:
                self._send_batch(batch)

    def _send_alone(self, pending: Pending) -> None:
        def done(call: grpc.Future) -> None:
            self.settle(pending, _answer(call))
            self._call_ended()

        self._call(self._stub.Submit, pending.request, pending.deadline, done, [pending])

    def _send_batch(self, batch: list[Pending]) -> None:
        def done(call: grpc.Future) -> None:
            try:
                results = list(call.result().results)
            except grpc.RpcError as error:
                if error.code() in REFUSED:
                    self._resend_alone(batch)
                else:
                    for pending in batch:
                        self.settle(pending, error)
                self._call_ended()
                return
            except BaseException as error:  # noqa: BLE001 - a cancelled call (the client closed)
                results = [error] * len(batch)  # type: ignore[list-item]
            if len(results) != len(batch):
                results = [_Malformed(f"SubmitBatch answered {len(results)} of {len(batch)} submissions")] * len(batch)  # type: ignore[list-item]
            for pending, result in zip(batch, results):
                self.settle(pending, result)
            self._call_ended()

        request = service.SubmitBatchRequest(submissions=[pending.request for pending in batch])
        self._call(self._stub.SubmitBatch, request, max(pending.deadline for pending in batch), done, batch)

    def _resend_alone(self, batch: list[Pending]) -> None:
        # Counted in flight before the batch's own call ends, so that nothing
        # queued meanwhile goes out until every single answer is in.
        waiting = [pending for pending in batch if pending.answer is None]
        with self._lock:
            self._in_flight += len(waiting)
        for pending in waiting:
            self._send_alone(pending)

    def _call(self, method, request, deadline: float, done: Callable[[grpc.Future], None], batch: list[Pending]) -> None:
        try:
            call = method.future(request, timeout=max(deadline - time.monotonic(), 0.001))
        except BaseException as error:  # noqa: BLE001 - e.g. ValueError from a closed channel: each caller's answer
            for pending in batch:
                self.settle(pending, error)
            self._call_ended()
            return
        # Runs at once when the call has already ended, else on gRPC's thread.
        call.add_done_callback(done)

    def _call_ended(self) -> None:
        with self._lock:
            self._in_flight -= 1
            batches = self._take() if self._in_flight == 0 and self._queue and not self._closed else []
        self._send(batches)


def _answer(call: grpc.Future) -> Answer:
    try:
        return call.result()
    except BaseException as error:  # noqa: BLE001 - the call's error is its caller's answer
        return error


class _Malformed(grpc.RpcError):
    def __init__(self, message: str):
        super().__init__(message)
        self._message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def details(self) -> str:
        return self._message


class _Latch:
    """Counts answers down to zero; wait() returns True once all are in."""

    def __init__(self, count: int):
        self._count = count
        self._done = threading.Event()
        self._lock = threading.Lock()
        if count == 0:
            self._done.set()

    def count_down(self) -> None:
        with self._lock:
            self._count -= 1
            if self._count == 0:
                self._done.set()

    def wait(self, timeout: float) -> bool:
        return self._done.wait(max(timeout, 0.0))
