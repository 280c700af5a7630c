"""The caller's side: payloads, watching through retries, idempotency, re-runs, and a coordinator restart."""
from __future__ import annotations

import asyncio
import threading
import time

import grpc
import pytest

import reprise.client as client_module
from reprise import AttemptState, Client, ExecutionFailed, ExecutionState, Retries, WaitTimeout

from _support import wait_for

State = ExecutionState


def test_json_arguments_and_results_round_trip_unchanged(client, make_worker):
    worker = make_worker()

    @worker.task
    def echo(args):
        return {"got": args}

    worker.start()
    args = {"name": "Zoë ☃", "numbers": [1, 2.5, -3, None, True], "nested": {"empty": [], "obj": {}}}
    handle = client.submit("echo", args)
    assert handle.execution.arguments.content_type == "application/json"
    assert handle.result(timeout=10) == {"got": args}
    assert handle.execution.result.content_type == "application/json"


def test_a_handler_without_parameters_is_called_without_arguments(client, make_worker):
    worker = make_worker()

    @worker.task(name="no-args")
    def constant():
        return 42

    worker.start()
    assert client.submit("no-args").result(timeout=10) == 42


def test_watch_streams_every_state_through_retries_and_ends_after_the_terminal_one(client, make_worker):
    worker = make_worker()

    @worker.task(retries=Retries(limit=1, backoff=(0.2, 0.2)))
    def flaky(args, ctx):
        if ctx.attempt == 1:
            raise ConnectionError("once")
        return "ok"

    handle = client.submit("flaky")
    watch = handle.watch(timeout=10)
    snapshots = [next(watch)]  # attached before any worker runs it
    worker.start()
    snapshots.extend(watch)
    states = [s.state for s in snapshots]
    assert states[0] == State.EXECUTION_STATE_PENDING and states[-1] == State.EXECUTION_STATE_SUCCEEDED
    # A PENDING snapshot after the failed first attempt shows the retry waiting.
    assert any(s.state == State.EXECUTION_STATE_PENDING and len(s.attempts) == 1 and s.HasField("next_attempt_at") for s in snapshots)
    assert states.count(State.EXECUTION_STATE_RUNNING) == 2


def test_result_with_a_timeout_raises_wait_timeout_and_the_execution_goes_on(client):
    handle = client.submit("nobody_serves_this")
    with pytest.raises(WaitTimeout):
        handle.result(timeout=0.3)
    assert handle.get().state == State.EXECUTION_STATE_PENDING


def test_a_repeated_idempotency_key_returns_the_existing_execution_and_says_so(client):
    first = client.submit("t", {"a": 1}, idempotency_key="order-17", labels={"team": "ops"})
    again = client.submit("t", {"a": 2}, idempotency_key="order-17")
    assert again.id == first.id
    assert (first.existing, again.existing) == (False, True)
    assert client.execution(first.id).execution.labels == {"team": "ops"}


def test_delay_and_labels_reach_the_worker(client, make_worker):
    worker = make_worker()
    seen = {}

    @worker.task
    def labelled(args, ctx):
        seen.update(ctx.labels)
        return ctx.execution_id

    worker.start()
    handle = client.submit("labelled", delay=0.2, labels={"tenant": "acme"})
    assert handle.result(timeout=10) == handle.id
    assert seen == {"tenant": "acme"}
    execution = handle.execution
    assert execution.attempts[0].scheduled_at.ToMilliseconds() - execution.created_at.ToMilliseconds() == 200


def test_a_coordinator_restart_loses_no_result_and_leaves_no_waiter_hanging(coordinator, make_worker):
    worker = make_worker(lease_duration=5)
    release = threading.Event()
    started = threading.Event()

    @worker.task
    def survives(args):
        started.set()
        release.wait(20)
        return "after restart"

    worker.start()
    with Client(coordinator.address) as client:
        handle = client.submit("survives")
        wait_for(started.is_set, message="the attempt to start")
        outcome = {}
        waiter = threading.Thread(target=lambda: outcome.update(value=handle.result(timeout=30)))
        waiter.start()
        wait_for(lambda: handle.execution.state == State.EXECUTION_STATE_RUNNING, message="the waiter to attach")

        # The result is finished while the coordinator is down: it must be resent, not lost.
        coordinator.stop()
        release.set()
        wait_for(lambda: worker.running == 0, message="the handler to finish")
        coordinator.start()
        waiter.join(30)
        assert not waiter.is_alive()
        assert outcome == {"value": "after restart"}
        assert len(handle.get().attempts) == 1


def test_a_submit_while_the_coordinator_is_unreachable_fails_at_once_with_unavailable_naming_its_address(coordinator):
    coordinator.stop()
    with Client(coordinator.address) as client:
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            client.submit("unreachable")
        assert time.monotonic() - began < 5, "without a key, a submit is not resent, so it must not wait either"
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"submit to the coordinator at {coordinator.address} failed" in failed.value.details()
    assert str(failed.value) == failed.value.details()


def test_a_keyed_submit_while_the_coordinator_is_unreachable_is_resent_then_fails_with_unavailable_naming_its_address(
    coordinator, call_log, monkeypatch
):
    monkeypatch.setattr(client_module, "RECONNECT_TIMEOUT", 1.0)
    coordinator.stop()
    with Client(coordinator.address) as client:
        with pytest.raises(grpc.RpcError) as failed:
            client.submit("unreachable", idempotency_key="resent")
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert f"submit to the coordinator at {coordinator.address} failed" in failed.value.details()
    assert call_log.methods().count("Submit") > 1, "a keyed submit is resent until its time is up"


def test_get_cancel_and_rerun_while_the_coordinator_is_unreachable_fail_naming_the_call_and_its_address(coordinator, monkeypatch):
    monkeypatch.setattr(client_module, "RECONNECT_TIMEOUT", 1.0)
    with Client(coordinator.address) as client:
        handle = client.submit("soon_unreachable")
        coordinator.stop()
        for call, name in [(handle.get, "GetExecution"), (handle.cancel, "CancelExecution"), (handle.rerun, "RerunExecution")]:
            with pytest.raises(grpc.RpcError) as failed:
                call()
            assert failed.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), name
            assert failed.value.details().startswith(f"{name} to the coordinator at {coordinator.address} failed with "), failed.value.details()


def test_an_async_handler_is_awaited_and_its_result_reported(client, make_worker):
    worker = make_worker()

    @worker.task
    async def doubled(args):
        await asyncio.sleep(0)
        return args * 2

    worker.start()
    assert client.submit("doubled", 21).result(timeout=10) == 42


@pytest.mark.coordinator_args("--max-watches-per-connection", "1")
def test_a_wait_over_the_watch_quota_backs_off_until_a_watch_slot_frees(client, make_worker):
    blocker = client.submit("nobody_serves_this")
    first_watch = blocker.watch()
    next(first_watch)  # holds the connection's only watch slot
    worker = make_worker()

    @worker.task
    def quick():
        return "served"

    worker.start()
    handle = client.submit("quick")
    outcome = {}
    waiter = threading.Thread(target=lambda: outcome.update(value=handle.result(timeout=20)))
    waiter.start()
    probe = client.execution(handle.id)  # a separate handle, so the waiter's snapshot is its own
    wait_for(lambda: probe.get().state == State.EXECUTION_STATE_SUCCEEDED, message="the execution to succeed")
    assert waiter.is_alive(), "result() must wait for a watch slot, not fail"
    first_watch.close()  # frees the slot
    waiter.join(20)
    assert outcome == {"value": "served"}


def test_rerun_runs_a_failed_execution_again(client, make_worker):
    worker = make_worker()

    @worker.task  # at most once
    def fragile(args, ctx):
        if ctx.attempt == 1:
            raise ValueError("first run fails")
        return ctx.attempt

    worker.start()
    handle = client.submit("fragile", idempotency_key="run-1")
    with pytest.raises(ExecutionFailed):
        handle.result(timeout=10)

    rerun = client.rerun(handle.id)
    assert (rerun.id, rerun.state) == (handle.id, State.EXECUTION_STATE_PENDING)
    assert not rerun.HasField("failure") and not rerun.HasField("finished_at")
    # The same execution, its first attempt kept, runs to a new end.
    assert client.execution(handle.id).result(timeout=10) == 2
    execution = handle.get()
    assert [(a.number, a.state) for a in execution.attempts] == [
        (1, AttemptState.ATTEMPT_STATE_FAILED),
        (2, AttemptState.ATTEMPT_STATE_SUCCEEDED),
    ]
    assert execution.idempotency_key == "run-1"


def test_a_rerun_counts_the_retry_limit_afresh(client, make_worker):
    worker = make_worker()

    @worker.task(retries=1)
    def twice_down(args, ctx):
        if ctx.attempt <= 3:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return ctx.attempt

    worker.start()
    handle = client.submit("twice_down")
    with pytest.raises(ExecutionFailed):
        handle.result(timeout=10)
    assert len(handle.execution.attempts) == 2  # the limit of 1 is used up
    handle.rerun()
    # One retry is allowed again: attempt 3 fails, attempt 4 succeeds.
    assert handle.result(timeout=10) == 4


def test_handle_rerun_runs_a_cancelled_execution_and_result_follows_it(client, make_worker):
    handle = client.submit("parked")
    assert handle.cancel().state == State.EXECUTION_STATE_CANCELLED

    assert handle.rerun().state == State.EXECUTION_STATE_PENDING
    assert handle.execution.state == State.EXECUTION_STATE_PENDING
    worker = make_worker()

    @worker.task
    def parked():
        return "ran after the re-run"

    worker.start()
    assert handle.result(timeout=10) == "ran after the re-run"


def test_rerun_of_a_succeeded_execution_is_refused_with_failed_precondition(client, make_worker):
    worker = make_worker()

    @worker.task
    def fine():
        return "done"

    worker.start()
    handle = client.submit("fine")
    assert handle.result(timeout=10) == "done"
    with pytest.raises(grpc.RpcError) as refused:
        client.rerun(handle.id)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(handle.get().attempts) == 1
