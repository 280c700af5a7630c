"""Attempts told to stop: cancellation, a lost lease, a timeout, and the worker's own stop()."""
from __future__ import annotations

import logging
import threading

import grpc
import pytest

from reprise import (
    AttemptState,
    ExecutionAbandoned,
    ExecutionCancelled,
    ExecutionState,
    ExecutionTimedOut,
)

from _support import release_one_at_a_time, wait_for


class Blocking:
    """A handler that reports it started and then waits on its attempt's cancelled event."""

    def __init__(self, wait: float = 15.0):
        self.wait = wait
        self.started = threading.Event()
        self.reasons: list[str | None] = []

    def __call__(self, args, ctx):
        self.started.set()
        ctx.cancelled.wait(self.wait)
        self.reasons.append(ctx.cancel_reason)
        return "finished anyway"


class Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "injected fault"


def test_cancelling_a_running_execution_sets_the_handlers_cancelled_event(client, make_worker):
    worker = make_worker(lease_duration=0.6)
    handler = Blocking()
    worker.task(name="long_job")(handler)
    worker.start()
    handle = client.submit("long_job")
    wait_for(handler.started.is_set, message="the handler to start")

    assert handle.cancel().state == ExecutionState.EXECUTION_STATE_CANCELLED
    wait_for(lambda: handler.reasons, message="the handler to see its cancelled event")
    assert handler.reasons == ["cancelled"]
    with pytest.raises(ExecutionCancelled):
        handle.result(timeout=5)
    assert handle.get().attempts[0].state == AttemptState.ATTEMPT_STATE_CANCELLED
    wait_for(lambda: worker.running == 0, message="the slot to free")


def test_a_lost_lease_stops_the_attempt_and_its_outcome_is_not_reported(client, make_worker, caplog):
    caplog.set_level(logging.INFO, logger="reprise")
    worker = make_worker(lease_duration=0.3)
    handler = Blocking()
    worker.task(name="fragile")(handler)
    worker.start()
    handle = client.submit("fragile")
    wait_for(handler.started.is_set, message="the handler to start")

    # Inject the fault: heartbeats stop reaching the coordinator until it abandons the attempt.
    heartbeater = worker._heartbeater
    real_heartbeat = heartbeater._heartbeat

    def failing_heartbeat(*args, **kwargs):
        raise Unavailable()

    heartbeater._heartbeat = failing_heartbeat
    wait_for(lambda: handle.get().state == ExecutionState.EXECUTION_STATE_ABANDONED, message="the lease to expire")
    heartbeater._heartbeat = real_heartbeat

    wait_for(lambda: handler.reasons, message="the next heartbeat to report the lease lost")
    assert handler.reasons == ["lost"]
    with pytest.raises(ExecutionAbandoned) as abandoned:
        handle.result(timeout=5)
    assert abandoned.value.failure_type == "Abandoned"
    wait_for(lambda: worker.running == 0, message="the slot to free")
    assert not [r for r in caplog.records if "refused" in r.getMessage()], "a stopped attempt must not be reported"


def test_an_attempt_past_its_timeout_is_stopped_and_ends_timed_out(client, make_worker):
    worker = make_worker(lease_duration=0.6)
    handler = Blocking()
    worker.task(name="slow", timeout=0.3)(handler)
    worker.start()
    handle = client.submit("slow")
    with pytest.raises(ExecutionTimedOut) as timed_out:
        handle.result(timeout=10)
    assert timed_out.value.failure_type == "TimedOut"
    wait_for(lambda: handler.reasons, message="the handler to be stopped")
    # Whichever notices first: the worker's own clock or the coordinator's answer at a heartbeat.
    assert handler.reasons[0] in ("timeout", "lost")


def test_a_timeout_shorter_than_the_heartbeat_interval_stops_the_attempt_at_its_timeout_with_reason_timeout(client, make_worker):
    worker = make_worker(lease_duration=30)  # a heartbeat only every 10 s
    handler = Blocking()
    worker.task(name="quick_timeout", timeout=0.5)(handler)
    worker.start()
    client.submit("quick_timeout")
    wait_for(handler.started.is_set, message="the handler to start")
    # Long before the first heartbeat could say the lease is lost.
    wait_for(lambda: handler.reasons, timeout=5, message="the handler to be stopped at its timeout")
    assert handler.reasons == ["timeout"]


def test_stop_drains_in_flight_attempts_and_reports_them_before_returning(client, make_worker):
    worker = make_worker(concurrency=2)
    release = threading.Event()
    started = []

    @worker.task
    def job(args, ctx):
        started.append(args)
        release.wait(10)
        return args * 10

    worker.start()
    handles = [client.submit("job", n) for n in (1, 2)]
    wait_for(lambda: len(started) == 2, message="both attempts to start")

    stopper = threading.Thread(target=worker.stop, kwargs={"grace": 10})
    stopper.start()
    wait_for(worker._stopping.is_set, message="stop to begin")
    late = client.submit("job", 3)
    release.set()
    stopper.join(10)
    assert not stopper.is_alive()

    # Reported before stop() returned: no waiting needed here.
    assert [h.get().state for h in handles] == [ExecutionState.EXECUTION_STATE_SUCCEEDED] * 2
    assert [h.result(timeout=1) for h in handles] == [10, 20]
    # Nothing new is leased once stop() has begun.
    assert late.get().state == ExecutionState.EXECUTION_STATE_PENDING and not late.execution.attempts


def test_an_attempt_outliving_stops_grace_is_cancelled_and_left_to_its_lease(client, make_worker):
    worker = make_worker(lease_duration=0.3)
    handler = Blocking()
    worker.task(name="stubborn")(handler)
    worker.start()
    handle = client.submit("stubborn")
    wait_for(handler.started.is_set, message="the handler to start")

    worker.stop(grace=0.2)
    wait_for(lambda: handler.reasons, message="the handler to see its cancelled event")
    assert handler.reasons == ["shutdown"]
    # Not reported: the coordinator abandons it when the lease runs out (at most once here).
    with pytest.raises(ExecutionAbandoned):
        handle.result(timeout=10)


def test_concurrency_bounds_how_many_attempts_run_at_once(client, make_worker):
    worker = make_worker(concurrency=3)
    lock = threading.Lock()
    running: list[threading.Event] = []
    peak = 0
    finished = 0

    @worker.task
    def job():
        nonlocal peak, finished
        gate = threading.Event()
        with lock:
            running.append(gate)
            peak = max(peak, len(running))
        gate.wait(10)
        with lock:
            running.remove(gate)
            finished += 1

    handles = [client.submit("job") for _ in range(9)]
    worker.start()
    def waiting() -> list[threading.Event]:
        with lock:
            return [gate for gate in running if not gate.is_set()]

    release_one_at_a_time(waiting, count=9, concurrency=3)
    wait_for(lambda: finished == 9, message="all attempts to finish")
    assert peak == 3
    for handle in handles:
        assert handle.result(timeout=5) is None


def test_attempts_run_on_at_most_concurrency_threads_which_are_reused_and_end_with_stop(client, make_worker):
    worker = make_worker(concurrency=4)
    threads: set[threading.Thread] = set()
    lock = threading.Lock()

    @worker.task
    def quick():
        with lock:
            threads.add(threading.current_thread())

    handles = [client.submit("quick") for _ in range(40)]
    worker.start()
    for handle in handles:
        assert handle.result(timeout=10) is None
    assert 1 <= len(threads) <= 4
    assert all(thread.daemon for thread in threads)
    worker.stop(grace=2)
    wait_for(lambda: not any(thread.is_alive() for thread in threads), message="the attempt threads to end")
