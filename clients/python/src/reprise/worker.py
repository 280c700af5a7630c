"""The worker: declares its tasks, long-polls for as many attempts as it has
free slots, runs each (a blocking handler on a pool thread, an async one on
the worker's event loop), and leaves heartbeats and reports to their own
batching threads."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import threading
import time
from typing import Any, Callable, TypeVar, overload

import grpc

from reprise.v1 import types_pb2, worker_service_pb2, worker_service_pb2_grpc

from . import context as ctx
from ._channel import open_channel
from ._backoff import Backoff, is_over_quota, is_transient
from ._durations import Seconds, from_timestamp, to_duration
from ._failures import failure_from_exception
from ._heartbeats import Heartbeater
from ._pool import AttemptPool
from ._inflight import Inflight
from ._loop import AttemptLoop
from ._reports import OutcomeReporter
from ._tasks import TaskSpec, make_task
from .codec import Codec
from .errors import Snooze
from .options import DEFAULT_ADDRESS, WorkerOptions
from .retries import RetriesOption, RetryBudget

log = logging.getLogger("reprise.worker")

F = TypeVar("F", bound=Callable[..., Any])

DECLARE_TIMEOUT = 10.0
# The long-poll's own deadline allows for the coordinator answering late.
POLL_SLACK = 10.0
# The coordinator's default --max-batch-size caps attempts per lease.
MAX_LEASE_BATCH = 1000


class Worker:
    """Runs the tasks registered with @worker.task. See WorkerOptions for the options."""

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        concurrency: int = 16,
        worker_id: str | None = None,
        *,
        lease_duration: float = 30.0,
        poll_wait: float = 30.0,
        codec: Codec | None = None,
        token: str | None = None,
        tls: bool | bytes = False,
    ):
        options = WorkerOptions(
            address=address, concurrency=concurrency, worker_id=worker_id, lease_duration=lease_duration, poll_wait=poll_wait, token=token, tls=tls
        )
        if codec is not None:
            options = dataclasses.replace(options, codec=codec)
        self.options = options.validated()
        self.worker_id: str = self.options.worker_id  # type: ignore[assignment]
        self._tasks: dict[str, TaskSpec] = {}
        self._inflight = Inflight()
        self._stopping = threading.Event()
        self._stop_requested = threading.Event()
        self._stop_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._fatal: BaseException | None = None
        self._poll: grpc.Future | None = None
        self._poll_lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._loop: AttemptLoop | None = None

    # --- registering tasks ----------------------------------------------------

    @overload
    def task(self, handler: F, /) -> F: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        retries: RetriesOption = None,
        timeout: Seconds | None = None,
        retry_budget: RetryBudget | None = None,
    ) -> Callable[[F], F]: ...

    def task(self, handler=None, /, *, name=None, retries=None, timeout=None, retry_budget=None):
        """Registers a handler, as `@cf.task(...)` does. The handler takes (), (args) or
        (args, ctx), where args is the decoded Submit arguments and ctx an AttemptContext.

        `retries`: None/0/False (at most once), N (N immediate retries), True
        (unlimited, 1..60 s) or a Retries. `timeout`: seconds one attempt may run.
        `retry_budget`: a RetryBudget that spreads the task's retries over time.
        """

        def register(function: F) -> F:
            if self._started:
                raise RuntimeError("task: register tasks before start()")
            spec = make_task(function, name, retries, timeout, retry_budget)
            if spec.name in self._tasks:
                raise ValueError(f"task {spec.name!r} is already registered")
            self._tasks[spec.name] = spec
            return function

        return register(handler) if handler is not None else register

    # --- lifecycle --------------------------------------------------------------

    def start(self) -> None:
        """Starts leasing in the background. Raises at once if the coordinator refuses the declarations."""
        if self._started:
            raise RuntimeError("start: the worker was already started")
        if not self._tasks:
            raise RuntimeError("start: no tasks registered; use @worker.task first")
        self._started = True
        self._channel = open_channel(self.options.address, self.options.token, self.options.tls)
        stub = worker_service_pb2_grpc.WorkerServiceStub(self._channel)
        self._stub = stub
        try:
            declared = self._declare_once(timeout=min(DECLARE_TIMEOUT, 2.0))
        except RuntimeError:
            self._channel.close()
            self._stopped = True
            raise
        self._pool = AttemptPool(self.options.concurrency)
        if any(spec.is_async for spec in self._tasks.values()):
            self._loop = AttemptLoop()
            self._loop.start()
        self._reporter = OutcomeReporter(stub.ReportOutcomes, self._inflight.settle, self._inflight.get)
        self._heartbeater = Heartbeater(stub.Heartbeat, self._inflight, self.worker_id, self.options.lease_duration / 3)
        self._lease_thread = threading.Thread(target=self._lease_loop, args=(declared,), name="reprise-lease", daemon=True)
        self._reporter.start()
        self._heartbeater.start()
        self._lease_thread.start()

    def stop(self, grace: float = 30.0) -> None:
        """Stops leasing, lets running attempts finish for up to `grace` seconds and reports them.

        Attempts still running after `grace` have their `cancelled` event set and
        are not reported: their leases run out and the coordinator treats them
        as abandoned (retried if the policy allows). Safe to call more than once.
        """
        with self._stop_lock:
            if not self._started or self._stopped:
                return
            self._stopped = True
        deadline = time.monotonic() + grace
        self._stopping.set()
        self._inflight.wake()
        with self._poll_lock:
            if self._poll is not None:
                self._poll.cancel()
        self._lease_thread.join()
        if not self._inflight.wait_idle(deadline):
            for context in self._inflight.running_contexts():
                context._stop(ctx.SHUTDOWN)
            log.warning("reprise: stop grace ran out; %d attempt(s) left to their leases", self._inflight.running)
        self._pool.close()
        if self._loop is not None:
            self._loop.close()
        # Reports may still be resending through a coordinator restart; give them what is left of the grace.
        self._reporter.close(max(deadline, time.monotonic() + 1.0))
        self._reporter.join()
        self._heartbeater.stop()
        if self._channel is not None:
            self._channel.close()

    def run(self, grace: float = 30.0) -> None:
        """start(), then block until SIGTERM/SIGINT (or request_stop()), then stop(grace)."""
        self.start()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, lambda *_: self._stop_requested.set())
        try:
            while not self._stop_requested.wait(1.0):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self.stop(grace)
        if self._fatal is not None:
            raise self._fatal

    def request_stop(self) -> None:
        """Makes run() return, as SIGTERM does. Safe from any thread or a signal handler."""
        self._stop_requested.set()

    @property
    def running(self) -> int:
        """How many handlers are running now."""
        return self._inflight.running

    # --- declaring and leasing ------------------------------------------------------

    def _declare_once(self, timeout: float) -> bool:
        request = worker_service_pb2.DeclareTasksRequest(worker_id=self.worker_id, tasks=[t.definition() for t in self._tasks.values()])
        try:
            self._stub.DeclareTasks(request, timeout=timeout)
            return True
        except grpc.RpcError as error:
            if is_transient(error):
                log.warning("reprise: coordinator at %s unavailable (%s); will retry", self.options.address, error.code().name)
                return False
            raise RuntimeError(f"DeclareTasks refused ({error.code().name}): {error.details()}") from None

    def _lease_loop(self, declared: bool) -> None:
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                if not declared:
                    declared = self._declare_once(timeout=DECLARE_TIMEOUT)
                    if not declared:
                        self._stopping.wait(backoff.next())
                        continue
                free = self._inflight.wait_for_free_slots(self.options.concurrency, self._stopping)
                if free == 0:
                    return
                attempts = self._lease(free)
            except grpc.RpcError as error:
                if self._stopping.is_set() and error.code() == grpc.StatusCode.CANCELLED:
                    return
                if is_transient(error) or is_over_quota(error):
                    log.warning("reprise: LeaseAttempts failed (%s); retrying", error.code().name)
                    # After a transient failure the coordinator may have been replaced, by
                    # one on a fresh database say: declare the tasks again before leasing.
                    declared = not is_transient(error)
                    self._stopping.wait(backoff.next())
                    continue
                self._fail(RuntimeError(f"LeaseAttempts refused ({error.code().name}): {error.details()}"))
                return
            except RuntimeError as error:
                self._fail(error)
                return
            # Only a lease resets the backoff, not a declaration: a coordinator that
            # takes the declarations but fails every lease is still backed off.
            backoff.reset()
            # Attempts that came back are ours even if stop() began meanwhile: run them so they drain.
            for leased in attempts:
                self._launch(leased)

    def _lease(self, free: int) -> list[types_pb2.LeasedAttempt]:
        request = worker_service_pb2.LeaseAttemptsRequest(
            worker_id=self.worker_id,
            tasks=list(self._tasks),
            max_attempts=min(free, MAX_LEASE_BATCH),
            wait=to_duration(self.options.poll_wait),
            lease_duration=to_duration(self.options.lease_duration),
        )
        with self._poll_lock:
            if self._stopping.is_set():
                return []
            # A future, so that stop() can end the long-poll instead of waiting it out.
            self._poll = self._stub.LeaseAttempts.future(request, timeout=self.options.poll_wait + POLL_SLACK)
        try:
            return list(self._poll.result().attempts)
        except grpc.FutureCancelledError:
            return []
        finally:
            with self._poll_lock:
                self._poll = None

    def _fail(self, error: BaseException) -> None:
        log.error("reprise: worker stopping: %s", error)
        self._fatal = error
        self._stop_requested.set()

    # --- running attempts ------------------------------------------------------------------

    def _launch(self, leased: types_pb2.LeasedAttempt) -> None:
        context = ctx.AttemptContext(
            execution_id=leased.execution_id,
            task=leased.task,
            attempt=leased.attempt,
            labels=dict(leased.labels),
            lease_token=leased.lease_token,
            timeout_at=from_timestamp(leased.timeout_at) if leased.HasField("timeout_at") else None,
        )
        self._inflight.add(context)
        if context.timeout_at is not None:
            self._heartbeater.watch_timeout()
        spec = self._tasks.get(leased.task)
        if spec is not None and spec.is_async:
            assert self._loop is not None  # start() made it, since a task is async
            self._loop.submit(lambda: self._run_async_attempt(leased, context, spec))
        else:
            self._pool.submit(lambda: self._run_attempt(leased, context, spec))

    def _run_attempt(self, leased: types_pb2.LeasedAttempt, context: ctx.AttemptContext, spec: TaskSpec | None) -> None:
        outcome = types_pb2.Outcome(lease_token=leased.lease_token)
        ctx._set_current(context)
        try:
            if spec is None:
                raise LookupError(f"this worker has no task {leased.task!r}")
            value = spec.call(self.options.codec.decode(leased.arguments), context)
            outcome.result.CopyFrom(self.options.codec.encode(value))
        except BaseException as error:  # noqa: BLE001 - every error is the attempt's outcome
            self._set_error(outcome, error, spec)
        finally:
            ctx._set_current(None)
            self._inflight.handler_done(context)
        self._finish(context, outcome)

    async def _run_async_attempt(self, leased: types_pb2.LeasedAttempt, context: ctx.AttemptContext, spec: TaskSpec) -> None:
        # Told to stop (cancelled, lost, timed out, or stop()'s grace ran out):
        # the task is cancelled as well as `ctx.cancelled` set, so an awaiting
        # handler stops at once, with CancelledError at its await.
        task = asyncio.current_task()
        assert task is not None and self._loop is not None
        loop = self._loop
        context._when_stopped(lambda: loop.call_soon(task.cancel))
        outcome = types_pb2.Outcome(lease_token=leased.lease_token)
        ctx._set_current(context)  # this task's own context: its child tasks and to_thread calls see it too
        try:
            value = await spec.call_async(self.options.codec.decode(leased.arguments), context)
            outcome.result.CopyFrom(self.options.codec.encode(value))
        except BaseException as error:  # noqa: BLE001 - every error is the attempt's outcome; a cancelled one is not reported
            self._set_error(outcome, error, spec)
        finally:
            self._inflight.handler_done(context)
        self._finish(context, outcome)

    def _set_error(self, outcome: types_pb2.Outcome, error: BaseException, spec: TaskSpec | None) -> None:
        if isinstance(error, Snooze):
            # Not a failure, so `when` has no say: the attempt did no work and asks to run later.
            outcome.snooze.SetInParent()
            outcome.snooze.delay.CopyFrom(to_duration(error.delay))
        else:
            outcome.failure.CopyFrom(failure_from_exception(error, spec.when if spec else None))

    def _finish(self, context: ctx.AttemptContext, outcome: types_pb2.Outcome) -> None:
        if context.cancel_reason is not None:
            # The coordinator has already decided this attempt (or will, when its
            # lease runs out): a report would be refused, so none is sent.
            self._inflight.settle(context.lease_token)
        elif not self._reporter.put(outcome):
            self._inflight.settle(context.lease_token)
