"""What the worker logs about a failed attempt, against a real coordinator."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from reprise import ExecutionFailed, Retries

from _support import wait_for


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
