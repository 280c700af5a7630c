"""`async def` handlers: one long-lived event loop per worker, bounded by the
worker's concurrency, and stopped (cancellation, lost lease, timeout, stop())
as blocking handlers are, with their task cancelled too."""
from __future__ import annotations

import asyncio
import threading

import pytest

from reprise import AttemptState, ExecutionAbandoned, ExecutionCancelled, ExecutionState, ExecutionTimedOut, current_attempt

from _support import release_one_at_a_time, wait_for


def loop_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "reprise-attempt-loop"]


def test_async_handlers_share_one_event_loop_and_respect_concurrency(client, make_worker):
    worker = make_worker(concurrency=3)
    lock = threading.Lock()
    gates: list[threading.Event] = []
    loops: set[int] = set()
    threads: set[str] = set()
    peak = 0

    @worker.task
    async def job(n):
        nonlocal peak
        gate = threading.Event()
        with lock:
            gates.append(gate)
            peak = max(peak, sum(not g.is_set() for g in gates))
            loops.add(id(asyncio.get_running_loop()))
            threads.add(threading.current_thread().name)
        while not gate.is_set():
            await asyncio.sleep(0.002)
        return n

    handles = [client.submit("job", n) for n in range(9)]
    worker.start()

    def waiting() -> list[threading.Event]:
        with lock:
            return [g for g in gates if not g.is_set()]

    release_one_at_a_time(waiting, count=9, concurrency=3)
    assert [h.result(timeout=10) for h in handles] == list(range(9))
    assert peak == 3
    assert len(loops) == 1, "every attempt must run on the same event loop"
    assert threads == {"reprise-attempt-loop"}


def test_blocking_handlers_run_on_pool_threads_while_async_ones_run_on_the_loop_thread(client, make_worker):
    worker = make_worker(concurrency=4)
    seen: dict[str, set[str]] = {"blocking": set(), "awaiting": set()}

    @worker.task
    def blocking():
        seen["blocking"].add(threading.current_thread().name)

    @worker.task
    async def awaiting():
        seen["awaiting"].add(threading.current_thread().name)

    worker.start()
    handles = [client.submit(task) for task in ["blocking", "awaiting"] * 4]
    for handle in handles:
        handle.result(timeout=10)
    assert seen["awaiting"] == {"reprise-attempt-loop"}
    assert seen["blocking"] and all(name.startswith("reprise-attempt-") and name != "reprise-attempt-loop" for name in seen["blocking"])


def test_a_worker_without_async_handlers_starts_no_event_loop(client, make_worker):
    worker = make_worker()

    @worker.task
    def plain():
        return "done"

    worker.start()
    assert client.submit("plain").result(timeout=10) == "done"
    assert worker._loop is None and not loop_threads()


def test_current_attempt_in_concurrent_async_handlers_is_each_ones_own(client, make_worker):
    worker = make_worker(concurrency=4)
    both_running = threading.Barrier(2, timeout=10)

    @worker.task
    async def whoami(args, ctx):
        await asyncio.to_thread(both_running.wait)  # both attempts are on the loop at once
        in_child_task = await asyncio.create_task(_current_execution_id())
        in_thread = await asyncio.to_thread(lambda: current_attempt().execution_id)
        return [current_attempt() is ctx, in_child_task == ctx.execution_id, in_thread == ctx.execution_id]

    worker.start()
    handles = [client.submit("whoami") for _ in range(2)]
    assert [h.result(timeout=10) for h in handles] == [[True, True, True]] * 2


async def _current_execution_id() -> str:
    await asyncio.sleep(0)
    return current_attempt().execution_id


def test_an_async_handler_that_raises_is_retried_like_a_blocking_one(client, make_worker):
    worker = make_worker()

    @worker.task(retries=1)
    async def flaky(args, ctx):
        await asyncio.sleep(0)
        if ctx.attempt == 1:
            raise ConnectionError("first attempt")
        return ctx.attempt

    worker.start()
    handle = client.submit("flaky")
    assert handle.result(timeout=10) == 2
    first = handle.get().attempts[0]
    assert (first.state, first.failure.type) == (AttemptState.ATTEMPT_STATE_FAILED, "ConnectionError")


class Awaiting:
    """An async handler that reports it started, then awaits until its task is cancelled."""

    def __init__(self):
        self.started = threading.Event()
        self.reasons: list[str | None] = []

    async def __call__(self, args, ctx):
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.reasons.append(ctx.cancel_reason)
            raise
        return "not cancelled"


def test_cancelling_a_running_execution_cancels_an_async_handlers_task(client, make_worker):
    worker = make_worker(lease_duration=0.6)
    handler = Awaiting()
    worker.task(name="long_wait")(handler)
    worker.start()
    handle = client.submit("long_wait")
    wait_for(handler.started.is_set, message="the handler to start")
    handle.cancel()
    wait_for(lambda: handler.reasons, message="the handler's task to be cancelled")
    assert handler.reasons == ["cancelled"]
    with pytest.raises(ExecutionCancelled):
        handle.result(timeout=5)
    wait_for(lambda: worker.running == 0, message="the slot to free")


def test_an_async_attempt_past_its_timeout_is_cancelled_and_ends_timed_out(client, make_worker):
    worker = make_worker(lease_duration=0.6)
    handler = Awaiting()
    worker.task(name="slow_wait", timeout=0.3)(handler)
    worker.start()
    handle = client.submit("slow_wait")
    with pytest.raises(ExecutionTimedOut):
        handle.result(timeout=10)
    wait_for(lambda: handler.reasons, message="the handler's task to be cancelled")
    # Whichever notices first: the worker's own clock or the coordinator's answer at a heartbeat.
    assert handler.reasons[0] in ("timeout", "lost")
    wait_for(lambda: worker.running == 0, message="the slot to free")


def test_an_async_attempt_with_a_timeout_shorter_than_the_heartbeat_interval_is_cancelled_at_its_timeout(client, make_worker):
    worker = make_worker(lease_duration=30)  # a heartbeat only every 10 s
    handler = Awaiting()
    worker.task(name="quick_timeout_wait", timeout=0.5)(handler)
    worker.start()
    client.submit("quick_timeout_wait")
    wait_for(handler.started.is_set, message="the handler to start")
    # Long before the first heartbeat could say the lease is lost.
    wait_for(lambda: handler.reasons, timeout=5, message="the handler's task to be cancelled at its timeout")
    assert handler.reasons == ["timeout"]


def test_a_long_async_attempt_keeps_its_lease_through_heartbeats(client, make_worker):
    worker = make_worker(lease_duration=0.3)

    @worker.task
    async def longer_than_the_lease():
        await asyncio.sleep(1.0)
        return "kept"

    worker.start()
    handle = client.submit("longer_than_the_lease")
    assert handle.result(timeout=10) == "kept"
    assert len(handle.get().attempts) == 1


def test_stop_drains_async_attempts_reports_them_and_ends_the_loop_thread(client, make_worker):
    worker = make_worker(concurrency=2)
    release = threading.Event()
    started = []

    @worker.task
    async def job(n):
        started.append(n)
        while not release.is_set():
            await asyncio.sleep(0.005)
        return n * 10

    worker.start()
    handles = [client.submit("job", n) for n in (1, 2)]
    wait_for(lambda: len(started) == 2, message="both attempts to start")
    stopper = threading.Thread(target=worker.stop, kwargs={"grace": 10})
    stopper.start()
    wait_for(worker._stopping.is_set, message="stop to begin")
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()
    # Reported before stop() returned.
    assert [h.get().state for h in handles] == [ExecutionState.EXECUTION_STATE_SUCCEEDED] * 2
    wait_for(lambda: not loop_threads(), message="the loop thread to end")


def test_an_async_attempt_outliving_stops_grace_is_cancelled_and_the_loop_thread_ends(client, make_worker):
    worker = make_worker(lease_duration=0.3)
    handler = Awaiting()
    worker.task(name="stubborn_wait")(handler)
    worker.start()
    handle = client.submit("stubborn_wait")
    wait_for(handler.started.is_set, message="the handler to start")
    worker.stop(grace=0.2)
    wait_for(lambda: handler.reasons, message="the handler's task to be cancelled")
    assert handler.reasons == ["shutdown"]
    wait_for(lambda: not loop_threads(), message="the loop thread to end")
    # Not reported: left to its lease, so abandoned (at most once here).
    with pytest.raises(ExecutionAbandoned):
        handle.result(timeout=10)
