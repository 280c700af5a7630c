"""What the worker logs about a reported attempt, against a real coordinator:
failures, snoozes, outcomes recorded before their reply was lost, and refusals."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

import grpc
import pytest

from reprise import AttemptState, ExecutionCancelled, ExecutionFailed, ExecutionState, Retries, Snooze

from _support import wait_for


class Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "injected fault"


def lose_the_first_reply(worker) -> list:
    """Injects the fault: the first ReportOutcomes reaches the coordinator and is
    recorded, but its reply is lost, so the worker sends the batch again.
    Returns the receipts of every reply that does arrive."""
    reporter = worker._reporter
    real_report = reporter._report
    receipts: list = []
    lost = threading.Event()

    def report(request, **kwargs):
        response = real_report(request, **kwargs)
        if not lost.is_set():
            lost.set()
            raise Unavailable()
        receipts.extend(response.receipts)
        return response

    reporter._report = report
    return receipts


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "reprise.worker" and "refused" in r.getMessage()]


def failed_attempt_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "reprise.worker" and hasattr(r, "error_type")]


def test_a_failed_attempt_and_its_scheduled_retry_are_logged_at_info(client, make_worker, caplog):
    caplog.set_level(logging.INFO, logger="reprise.worker")
    worker = make_worker()

    @worker.task(retries=Retries(limit=2, backoff=(0.3, 0.6)))
    def flaky(args, ctx):
        if ctx.attempt == 1:
            raise ConnectionError("connection reset")
        return "ok"

    worker.start()
    handle = client.submit("flaky")
    assert handle.result(timeout=10) == "ok"
    records = wait_for(lambda: failed_attempt_records(caplog), message="the failed attempt's log record")
    (record,) = records
    first, second = handle.get().attempts
    assert record.levelno == logging.INFO
    assert (record.task, record.execution_id, record.attempt) == ("flaky", handle.id, 1)
    assert (record.error_type, record.error_message, record.will_retry) == ("ConnectionError", "connection reset", True)
    # The coordinator's next_attempt_at is when attempt 2 was scheduled, to the millisecond.
    assert record.next_attempt_at == datetime.fromtimestamp(second.scheduled_at.ToMilliseconds() / 1000, timezone.utc)
    message = record.getMessage()
    assert message.startswith(f"reprise: flaky[{handle.id}] attempt 1 failed with ConnectionError: connection reset; retry at ")
    assert record.next_attempt_at.isoformat(timespec="milliseconds") in message
    assert first.failure.type == "ConnectionError"


def test_a_failed_attempt_without_a_retry_is_logged_at_info_saying_so(client, make_worker, caplog):
    caplog.set_level(logging.INFO, logger="reprise.worker")
    worker = make_worker()

    @worker.task(retries=Retries(limit=3, when=ConnectionError))
    def strict():
        raise ValueError("not a connection problem")

    worker.start()
    handle = client.submit("strict")
    with pytest.raises(ExecutionFailed):
        handle.result(timeout=10)
    (record,) = wait_for(lambda: failed_attempt_records(caplog), message="the failed attempt's log record")
    assert record.levelno == logging.INFO
    assert (record.task, record.execution_id, record.attempt, record.error_type) == ("strict", handle.id, 1, "ValueError")
    assert record.will_retry is False and record.next_attempt_at is None
    assert record.getMessage().endswith("attempt 1 failed with ValueError: not a connection problem; no retry, the execution has failed")


def test_a_snooze_is_logged_at_info_with_when_the_execution_is_due_again(client, make_worker, caplog):
    caplog.set_level(logging.INFO, logger="reprise.worker")
    worker = make_worker()

    @worker.task
    def napper(args, ctx):
        if ctx.attempt == 1:
            raise Snooze(0.25)
        return "awake"

    worker.start()
    handle = client.submit("napper")
    assert handle.result(timeout=10) == "awake"
    (record,) = wait_for(lambda: [r for r in caplog.records if hasattr(r, "snooze_delay")], message="the snooze's log record")
    _, second = handle.get().attempts
    assert record.levelno == logging.INFO
    assert (record.task, record.execution_id, record.attempt, record.snooze_delay) == ("napper", handle.id, 1, 0.25)
    assert record.next_attempt_at == datetime.fromtimestamp(second.scheduled_at.ToMilliseconds() / 1000, timezone.utc)
    assert record.getMessage().startswith(f"reprise: napper[{handle.id}] attempt 1 snoozed for 0.25 s; due again at ")
    assert not failed_attempt_records(caplog), "a snooze is not a failure"


def test_a_duplicate_receipt_is_not_logged_as_a_refusal(client, make_worker, caplog):
    caplog.set_level(logging.DEBUG, logger="reprise.worker")
    worker = make_worker()

    @worker.task
    def once():
        return "recorded once"

    worker.start()
    receipts = lose_the_first_reply(worker)
    handle = client.submit("once")
    assert handle.result(timeout=10) == "recorded once"
    (receipt,) = wait_for(lambda: receipts, message="the resent report's receipt")
    assert receipt.accepted and receipt.duplicate
    # Treated as recorded: the attempt is settled (its heartbeats stop) and nothing is refused.
    wait_for(lambda: not worker._inflight.contexts(), message="the attempt to be settled")
    assert not refusals(caplog)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [a.state for a in handle.get().attempts] == [AttemptState.ATTEMPT_STATE_SUCCEEDED]


def test_a_failure_recorded_before_its_reply_was_lost_is_not_logged_as_the_end(client, make_worker, caplog):
    caplog.set_level(logging.INFO, logger="reprise.worker")
    worker = make_worker()

    @worker.task(retries=Retries(limit=1, backoff=(0.05, 0.05)))
    def flaky(args, ctx):
        if ctx.attempt == 1:
            raise ConnectionError("connection reset")
        return "ok"

    worker.start()
    receipts = lose_the_first_reply(worker)
    handle = client.submit("flaky")
    assert handle.result(timeout=10) == "ok"
    wait_for(lambda: receipts and receipts[0].duplicate, message="the resent failure's duplicate receipt")
    (record,) = wait_for(lambda: failed_attempt_records(caplog), message="the failed attempt's log record")
    # The duplicate receipt does not repeat the decision, so the log must not claim "no retry".
    assert record.duplicate is True and record.will_retry is None and record.next_attempt_at is None
    assert record.getMessage().endswith(
        "attempt 1 failed with ConnectionError: connection reset; already recorded by an earlier report whose reply was lost"
    )
    assert not refusals(caplog)
    assert [a.state for a in handle.get().attempts] == [AttemptState.ATTEMPT_STATE_FAILED, AttemptState.ATTEMPT_STATE_SUCCEEDED]


def test_a_refused_receipt_is_still_logged_as_a_warning(client, make_worker, caplog):
    caplog.set_level(logging.INFO, logger="reprise.worker")
    worker = make_worker(lease_duration=5)
    started, release = threading.Event(), threading.Event()

    @worker.task
    def unaware():
        started.set()
        release.wait(10)
        return "too late"

    worker.start()
    # Inject the fault: heartbeats fail, so the worker never hears of the cancellation and reports anyway.
    def failing_heartbeat(*args, **kwargs):
        raise Unavailable()

    worker._heartbeater._heartbeat = failing_heartbeat
    handle = client.submit("unaware")
    wait_for(started.is_set, message="the handler to start")
    assert handle.cancel().state == ExecutionState.EXECUTION_STATE_CANCELLED
    release.set()
    (record,) = wait_for(lambda: refusals(caplog), message="the refusal's log record")
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "reprise: coordinator refused an outcome: the execution was cancelled"
    with pytest.raises(ExecutionCancelled):
        handle.result(timeout=5)
