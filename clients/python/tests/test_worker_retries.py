"""The worker against a real coordinator: retries, `when`, requested delays and typed errors."""
from __future__ import annotations

import pytest

from reprise import AttemptState, ExecutionFailed, ExecutionState, NonRetryableError, Retries, RetryAfter

from _support import seconds_between

FAST = (0.05, 0.1)


class HttpError(Exception):
    def __init__(self, status_code: int):
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


def test_a_retryable_failure_is_retried_after_its_backoff_then_succeeds(client, make_worker):
    worker = make_worker()

    @worker.task(retries=Retries(limit=2, backoff=(0.2, 0.4)))
    def flaky(args, ctx):
        if ctx.attempt == 1:
            raise ConnectionError("first attempt fails")
        return {"attempt": ctx.attempt}

    worker.start()
    handle = client.submit("flaky")
    assert handle.result(timeout=10) == {"attempt": 2}
    first, second = handle.get().attempts
    assert first.state == AttemptState.ATTEMPT_STATE_FAILED and first.failure.type == "ConnectionError"
    assert not first.failure.non_retryable
    assert second.state == AttemptState.ATTEMPT_STATE_SUCCEEDED
    # Retry 1 of 2 waits backoff_min, counted from when the failure was recorded.
    assert seconds_between(first.finished_at, second.scheduled_at) == 0.2


@pytest.mark.parametrize(
    "when, error",
    [
        (ConnectionError, ValueError("not a connection problem")),
        ((ConnectionError, TimeoutError), KeyError("missing")),
        (lambda e: getattr(e, "status_code", 0) >= 500, HttpError(404)),
    ],
    ids=["class", "tuple", "callable"],
)
def test_when_rejecting_the_error_fails_after_one_attempt_without_using_retries(client, make_worker, when, error):
    worker = make_worker()

    @worker.task(retries=Retries(limit=5, backoff=FAST, when=when))
    def call_api():
        raise error

    worker.start()
    handle = client.submit("call_api")
    with pytest.raises(ExecutionFailed) as failed:
        handle.result(timeout=10)
    execution = failed.value.execution
    assert execution.state == ExecutionState.EXECUTION_STATE_FAILED
    assert len(execution.attempts) == 1
    assert execution.failure.non_retryable
    assert failed.value.failure_type == type(error).__qualname__


@pytest.mark.parametrize(
    "when, error",
    [
        ((ConnectionError, TimeoutError), TimeoutError("slow")),
        (lambda e: getattr(e, "status_code", 0) >= 500, HttpError(503)),
    ],
    ids=["tuple", "callable"],
)
def test_when_accepting_the_error_retries(client, make_worker, when, error):
    worker = make_worker()

    @worker.task(retries=Retries(limit=5, backoff=FAST, when=when))
    def call_api(args, ctx):
        if ctx.attempt == 1:
            raise error
        return "ok"

    worker.start()
    handle = client.submit("call_api")
    assert handle.result(timeout=10) == "ok"
    assert len(handle.execution.attempts) == 2


def test_a_raising_when_fails_non_retryably_with_both_messages(client, make_worker):
    worker = make_worker()

    def broken_predicate(error):
        raise AttributeError("predicate is broken")

    @worker.task(retries=Retries(limit=5, backoff=FAST, when=broken_predicate))
    def call_api():
        raise ConnectionError("upstream refused")

    worker.start()
    with pytest.raises(ExecutionFailed) as failed:
        client.submit("call_api").result(timeout=10)
    assert len(failed.value.execution.attempts) == 1
    assert failed.value.execution.failure.non_retryable
    assert "upstream refused" in failed.value.failure_message
    assert "predicate is broken" in failed.value.failure_message


def test_non_retryable_error_ends_the_execution_with_retries_left(client, make_worker):
    worker = make_worker()

    @worker.task(retries=3)
    def charge():
        raise NonRetryableError("card declined")

    worker.start()
    with pytest.raises(ExecutionFailed) as failed:
        client.submit("charge").result(timeout=10)
    assert len(failed.value.execution.attempts) == 1
    assert failed.value.failure_message == "card declined"


def test_a_requested_retry_delay_is_sent_as_retry_after_and_replaces_the_backoff(client, make_worker):
    worker = make_worker()

    @worker.task(retries=2)  # immediate retries, unless the handler asks otherwise
    def rate_limited(args, ctx):
        if ctx.attempt == 1:
            raise RetryAfter(0.3, "429 Too Many Requests")
        return "done"

    worker.start()
    handle = client.submit("rate_limited")
    assert handle.result(timeout=10) == "done"
    first, second = handle.get().attempts
    assert first.failure.retry_after.ToMilliseconds() == 300
    assert seconds_between(first.finished_at, second.scheduled_at) == 0.3


def test_at_most_once_task_fails_on_its_first_error_with_a_typed_error(client, make_worker):
    worker = make_worker()

    @worker.task
    def once():
        raise ValueError("boom")

    worker.start()
    with pytest.raises(ExecutionFailed) as failed:
        client.submit("once").result(timeout=10)
    assert (failed.value.failure_type, failed.value.failure_message) == ("ValueError", "boom")
    assert len(failed.value.execution.attempts) == 1
    assert "ValueError: boom" in failed.value.execution.failure.stack_trace


def test_a_submits_own_retries_override_the_declared_policy_even_zero(client, make_worker):
    worker = make_worker()

    @worker.task(retries=3)
    def flaky():
        raise ConnectionError("down")

    worker.start()
    with pytest.raises(ExecutionFailed) as failed:
        client.submit("flaky", retries=0).result(timeout=10)
    assert len(failed.value.execution.attempts) == 1
    with pytest.raises(ExecutionFailed) as failed:
        client.submit("flaky", retries=1).result(timeout=10)
    assert len(failed.value.execution.attempts) == 2


def test_unlimited_retries_keep_going_until_success(client, make_worker):
    worker = make_worker()

    @worker.task(retries=Retries(limit=None, backoff=FAST))
    def eventually(args, ctx):
        if ctx.attempt < 4:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return ctx.attempt

    worker.start()
    handle = client.submit("eventually")
    assert handle.result(timeout=10) == 4
    assert handle.execution.retry_policy.unlimited
