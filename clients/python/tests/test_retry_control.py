"""Retry control beyond Coflux, against a real coordinator: an exponential
coefficient, jitter, `max_elapsed`, a task's retry budget, and snoozes."""
from __future__ import annotations

import asyncio

import pytest

from reprise import (
    AttemptState,
    ExecutionFailed,
    ExecutionState,
    Retries,
    RetryBudget,
    RetryRule,
    Snooze,
)

from _support import seconds_between, wait_for


def test_retries_sends_coefficient_jitter_and_max_elapsed(client, make_worker):
    worker = make_worker()

    @worker.task(retries=Retries(limit=3, backoff=(0.1, 1), coefficient=2, jitter=0.5, max_elapsed=30))
    def declared():
        return "ok"

    worker.start()
    # The execution shows the policy in effect: here, the task's declaration as the coordinator stored it.
    policy = client.submit("declared").execution.retry_policy
    assert (policy.limit, policy.backoff_coefficient, policy.jitter, policy.max_elapsed.ToMilliseconds()) == (3, 2.0, 0.5, 30_000)
    # A submission's own policy carries them too.
    own = client.submit("declared", retries=Retries(limit=2, coefficient=1.5, jitter=1, max_elapsed=0.75)).execution.retry_policy
    assert (own.limit, own.backoff_coefficient, own.jitter, own.max_elapsed.ToMilliseconds()) == (2, 1.5, 1.0, 750)


def test_a_coefficient_multiplies_each_delay_by_it_from_backoff_min(client, make_worker):
    worker = make_worker()

    @worker.task(retries=Retries(limit=3, backoff=(0.1, 10), coefficient=2))
    def flaky(args, ctx):
        if ctx.attempt <= 3:
            raise ConnectionError(f"attempt {ctx.attempt}")
        return ctx.attempt

    worker.start()
    handle = client.submit("flaky")
    assert handle.result(timeout=10) == 4
    attempts = handle.get().attempts
    # min(max, min·c^(k-1)): 0.1, 0.2, 0.4 s (Coflux's interpolation would give 0.1, 5.05, 10).
    delays = [seconds_between(done.finished_at, next_.scheduled_at) for done, next_ in zip(attempts, attempts[1:])]
    assert delays == [0.1, 0.2, 0.4]
    assert [a.retry_rule for a in attempts[:3]] == [RetryRule.RETRY_RULE_BACKOFF] * 3


def test_max_elapsed_ends_the_execution_when_the_next_retry_would_start_too_late(client, make_worker):
    worker = make_worker()

    @worker.task(retries=Retries(limit=None, backoff=(0.2, 0.2), max_elapsed=0.5))
    def always_down():
        raise ConnectionError("still down")

    worker.start()
    with pytest.raises(ExecutionFailed) as failed:
        client.submit("always_down").result(timeout=10)
    attempts = failed.value.execution.attempts
    first, last = attempts[0], attempts[-1]
    # Unlimited, yet it ended: the retry after the last failure would have started past the bound.
    assert last.retry_rule == RetryRule.RETRY_RULE_MAX_ELAPSED
    assert seconds_between(first.scheduled_at, last.finished_at) + 0.2 > 0.5
    assert [a.retry_rule for a in attempts[:-1]] == [RetryRule.RETRY_RULE_BACKOFF] * (len(attempts) - 1)
    assert all(seconds_between(first.scheduled_at, a.scheduled_at) <= 0.5 for a in attempts)
    assert failed.value.failure_type == "ConnectionError"


def test_retry_budget_is_declared_with_the_task(client, make_worker):
    worker = make_worker()

    # Two immediate retries, but the bucket holds one token and refills at one per 10 s.
    @worker.task(retries=2, retry_budget=RetryBudget(per_second=0.1, burst=1))
    def crowded(args, ctx):
        raise ConnectionError(f"attempt {ctx.attempt}")

    worker.start()
    handle = client.submit("crowded")

    def second_attempt_failed() -> bool:
        attempts = handle.get().attempts
        return len(attempts) == 2 and attempts[1].state == AttemptState.ATTEMPT_STATE_FAILED

    wait_for(second_attempt_failed, message="the second attempt to fail")
    execution = handle.execution
    first, second = execution.attempts
    # The first retry takes the only token and starts at once.
    assert first.retry_rule == RetryRule.RETRY_RULE_BACKOFF
    assert first.retry_at == first.finished_at == second.scheduled_at
    # The second finds the bucket empty: deferred until the next token accrues, 10 s after the first
    # was taken (the bucket's arithmetic rounds up to whole milliseconds, so it may be one later),
    # and not dropped: the execution waits for it.
    assert second.retry_rule == RetryRule.RETRY_RULE_BUDGET
    assert second.retry_computed_at == second.finished_at
    assert 10.0 <= seconds_between(first.finished_at, second.retry_at) <= 10.001
    assert execution.state == ExecutionState.EXECUTION_STATE_PENDING
    assert execution.next_attempt_at == second.retry_at
    handle.cancel()


def test_snooze_reports_a_snooze_that_uses_no_retry(client, make_worker):
    worker = make_worker()

    @worker.task  # at most once: a failure would end it
    def not_yet(args, ctx):
        if ctx.attempt == 1:
            raise Snooze(0.3)
        return ctx.attempt

    worker.start()
    handle = client.submit("not_yet")
    assert handle.result(timeout=10) == 2
    first, second = handle.get().attempts
    assert first.state == AttemptState.ATTEMPT_STATE_SNOOZED
    assert not first.HasField("failure")
    assert first.retry_rule == RetryRule.RETRY_RULE_SNOOZE
    assert seconds_between(first.finished_at, first.retry_at) == 0.3
    assert second.scheduled_at == first.retry_at
    assert second.state == AttemptState.ATTEMPT_STATE_SUCCEEDED


def test_a_snooze_is_not_subject_to_when(client, make_worker):
    worker = make_worker()

    # `when` accepts only ConnectionError: were Snooze judged by it, the execution would fail at once.
    @worker.task(retries=Retries(limit=1, backoff=(0.05, 0.05), when=ConnectionError))
    def picky(args, ctx):
        if ctx.attempt == 1:
            raise Snooze(0.05)
        return "ran"

    worker.start()
    handle = client.submit("picky")
    assert handle.result(timeout=10) == "ran"
    assert [a.state for a in handle.get().attempts] == [AttemptState.ATTEMPT_STATE_SNOOZED, AttemptState.ATTEMPT_STATE_SUCCEEDED]


def test_a_snooze_is_not_counted_against_the_limit_or_in_k(client, make_worker):
    worker = make_worker()

    # k counts failures only: retry 2 of this policy waits 0.3 s, retry 3 would wait 0.9 s.
    @worker.task(retries=Retries(limit=2, backoff=(0.1, 10), coefficient=3))
    def bumpy(args, ctx):
        if ctx.attempt == 2:
            raise Snooze(0.05)
        if ctx.attempt in (1, 3):
            raise ConnectionError(f"attempt {ctx.attempt}")
        return ctx.attempt

    worker.start()
    handle = client.submit("bumpy")
    # Two failures and a snooze, yet a limit of 2 still allows the fourth attempt.
    assert handle.result(timeout=10) == 4
    first, snoozed, third, _ = handle.get().attempts
    assert seconds_between(first.finished_at, snoozed.scheduled_at) == 0.1
    assert snoozed.state == AttemptState.ATTEMPT_STATE_SNOOZED
    assert third.retry_rule == RetryRule.RETRY_RULE_BACKOFF
    assert seconds_between(third.finished_at, third.retry_at) == 0.3


def test_an_async_handler_can_snooze(client, make_worker):
    worker = make_worker()

    @worker.task
    async def later(args, ctx):
        await asyncio.sleep(0)
        if ctx.attempt == 1:
            raise Snooze(0.1)
        return "awake"

    worker.start()
    handle = client.submit("later")
    assert handle.result(timeout=10) == "awake"
    first, _ = handle.get().attempts
    assert first.state == AttemptState.ATTEMPT_STATE_SNOOZED
    assert seconds_between(first.finished_at, first.retry_at) == 0.1
    assert handle.execution.state == ExecutionState.EXECUTION_STATE_SUCCEEDED
