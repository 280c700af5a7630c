"""Each Coflux `retries=` form, and each retry control beyond Coflux, maps to
the wire message the contract gives it (no server needed)."""
from __future__ import annotations

import math
from datetime import timedelta

import pytest

from reprise import NonRetryableError, Retries, RetryAfter, RetryBudget, Snooze, Worker, to_retry_policy
from reprise._failures import failure_from_exception
from reprise._tasks import make_task
from reprise.retries import evaluate_when
from reprise.v1.types_pb2 import RetryPolicy


def ms(policy: RetryPolicy) -> tuple[int, int]:
    return policy.backoff_min.ToMilliseconds(), policy.backoff_max.ToMilliseconds()


@pytest.mark.parametrize("retries", [None, 0, False, Retries(limit=0)])
def test_no_retries_sends_no_policy_at_most_once(retries):
    assert to_retry_policy(retries) is None


def test_retries_n_is_limit_n_with_immediate_retries():
    policy = to_retry_policy(2)
    assert policy.limit == 2 and not policy.unlimited
    assert not policy.HasField("backoff_min") and not policy.HasField("backoff_max")


def test_retries_true_is_unlimited_with_explicit_1_to_60_seconds():
    policy = to_retry_policy(True)
    assert policy.unlimited and policy.limit == 0
    assert ms(policy) == (1000, 60000)


def test_retries_limit_n_without_backoff_interpolates_over_1_to_60_seconds():
    policy = to_retry_policy(Retries(limit=3))
    assert (policy.limit, policy.unlimited, ms(policy)) == (3, False, (1000, 60000))


def test_retries_limit_5_backoff_300_600_is_sent_as_given():
    policy = to_retry_policy(Retries(limit=5, backoff=(300, 600)))
    assert (policy.limit, policy.unlimited, ms(policy)) == (5, False, (300_000, 600_000))


def test_retries_limit_none_with_backoff_is_unlimited_random_in_that_range():
    policy = to_retry_policy(Retries(limit=None, backoff=(10, 300)))
    assert (policy.limit, policy.unlimited, ms(policy)) == (0, True, (10_000, 300_000))


def test_fractional_backoff_seconds_round_to_whole_milliseconds():
    assert ms(to_retry_policy(Retries(limit=2, backoff=(0.05, 0.1004)))) == (50, 100)


def test_retries_sends_coefficient_jitter_and_max_elapsed_when_set():
    policy = to_retry_policy(Retries(limit=4, backoff=(0.5, 30), coefficient=2, jitter=0.25, max_elapsed=timedelta(minutes=2)))
    assert (policy.limit, ms(policy)) == (4, (500, 30_000))
    assert (policy.backoff_coefficient, policy.jitter, policy.max_elapsed.ToMilliseconds()) == (2.0, 0.25, 120_000)
    unlimited = to_retry_policy(Retries(limit=None, backoff=(1, 5), coefficient=1.5, max_elapsed=0.0004 + 60))
    assert (unlimited.unlimited, unlimited.backoff_coefficient, unlimited.max_elapsed.ToMilliseconds()) == (True, 1.5, 60_000)
    # An immediate-retry policy keeps its bare form and gains only what was asked for.
    assert to_retry_policy(Retries(limit=2, backoff=(0, 0), jitter=1)) == RetryPolicy(limit=2, jitter=1.0)


@pytest.mark.parametrize("extras", [{}, {"coefficient": 0, "jitter": 0, "max_elapsed": 0}, {"max_elapsed": None}])
def test_zero_or_none_coefficient_jitter_and_max_elapsed_change_nothing(extras):
    assert to_retry_policy(Retries(limit=3, backoff=(1, 2), **extras)) == to_retry_policy(Retries(limit=3, backoff=(1, 2)))
    policy = to_retry_policy(Retries(limit=3, backoff=(1, 2), **extras))
    assert policy.backoff_coefficient == 0 and policy.jitter == 0 and not policy.HasField("max_elapsed")


def test_a_coefficient_of_exactly_1_is_allowed_and_sent():
    assert to_retry_policy(Retries(limit=1, coefficient=1)).backoff_coefficient == 1.0


def test_a_task_declares_its_retry_budget_with_its_definition():
    definition = make_task(lambda: None, "budgeted", 3, None, RetryBudget(per_second=2.5, burst=10)).definition()
    assert (definition.retry_budget.retries_per_second, definition.retry_budget.burst) == (2.5, 10)
    assert definition.retry_policy.limit == 3
    assert not make_task(lambda: None, "unbudgeted", 3, None).definition().HasField("retry_budget")
    # burst 0 is the wire's "1"; it is sent as given.
    assert RetryBudget(per_second=1, burst=0).to_wire().burst == 0


def test_a_retry_budget_that_is_not_a_retry_budget_is_refused_naming_the_task():
    worker = Worker("127.0.0.1:1")
    with pytest.raises(TypeError, match=r"^task sloppy: retry_budget must be None or a RetryBudget"):
        worker.task(name="sloppy", retry_budget={"per_second": 1})(lambda: None)


def test_snooze_carries_its_delay_in_seconds():
    assert Snooze(0.25).delay == 0.25
    assert Snooze(timedelta(minutes=1)).delay == 60
    assert Snooze(0).delay == 0


def test_when_does_not_travel_on_the_wire():
    policy = to_retry_policy(Retries(limit=3, when=(ConnectionError, TimeoutError)))
    assert policy == RetryPolicy(limit=3, backoff_min=policy.backoff_min, backoff_max=policy.backoff_max)


@pytest.mark.parametrize(
    "make, option",
    [
        (lambda: Retries(limit=-1), "Retries.limit"),
        (lambda: Retries(limit=10_001), "Retries.limit"),
        (lambda: Retries(limit=2, backoff=(5, 1)), "Retries.backoff"),
        (lambda: Retries(limit=2, backoff=(-1, 1)), "Retries.backoff[0]"),
        (lambda: Retries(limit=2, when="ConnectionError"), "Retries.when"),
        (lambda: Retries(limit=2, when=(ConnectionError, "x")), "Retries.when"),
        (lambda: to_retry_policy(-3), "retries"),
        (lambda: to_retry_policy("yes"), "retries"),
        (lambda: Retries(limit=2, coefficient=0.5), "Retries.coefficient"),
        (lambda: Retries(limit=2, coefficient=-2), "Retries.coefficient"),
        (lambda: Retries(limit=2, coefficient=math.inf), "Retries.coefficient"),
        (lambda: Retries(limit=2, coefficient=math.nan), "Retries.coefficient"),
        (lambda: Retries(limit=2, coefficient="2"), "Retries.coefficient"),
        (lambda: Retries(limit=2, coefficient=True), "Retries.coefficient"),
        (lambda: Retries(limit=2, jitter=-0.1), "Retries.jitter"),
        (lambda: Retries(limit=2, jitter=1.01), "Retries.jitter"),
        (lambda: Retries(limit=2, jitter=math.nan), "Retries.jitter"),
        (lambda: Retries(limit=2, jitter="half"), "Retries.jitter"),
        (lambda: Retries(limit=2, max_elapsed=-1), "Retries.max_elapsed"),
        (lambda: Retries(limit=2, max_elapsed=math.inf), "Retries.max_elapsed"),
        (lambda: Retries(limit=2, max_elapsed=math.nan), "Retries.max_elapsed"),
        (lambda: Retries(limit=2, max_elapsed=3651 * 86_400), "Retries.max_elapsed"),
        (lambda: Retries(limit=2, max_elapsed="1h"), "Retries.max_elapsed"),
        (lambda: RetryBudget(per_second=0), "RetryBudget.per_second"),
        (lambda: RetryBudget(per_second=-1), "RetryBudget.per_second"),
        (lambda: RetryBudget(per_second=math.inf), "RetryBudget.per_second"),
        (lambda: RetryBudget(per_second=math.nan), "RetryBudget.per_second"),
        (lambda: RetryBudget(per_second="fast"), "RetryBudget.per_second"),
        (lambda: RetryBudget(per_second=1, burst=-1), "RetryBudget.burst"),
        (lambda: RetryBudget(per_second=1, burst=2.5), "RetryBudget.burst"),
        (lambda: RetryBudget(per_second=1, burst=True), "RetryBudget.burst"),
        (lambda: Snooze(-1), "Snooze.seconds"),
        (lambda: Snooze(366 * 86_400), "Snooze.seconds"),
        (lambda: Snooze("soon"), "Snooze.seconds"),
    ],
)
def test_invalid_retry_options_are_refused_naming_the_option(make, option):
    with pytest.raises((ValueError, TypeError)) as raised:
        make()
    assert str(raised.value).startswith(option + ":")


class HttpError(Exception):
    def __init__(self, status_code: int):
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


@pytest.mark.parametrize(
    "when, error, retryable",
    [
        (None, ValueError("x"), True),
        (ConnectionError, ConnectionRefusedError("subclass"), True),
        (ConnectionError, ValueError("x"), False),
        ((ConnectionError, TimeoutError), TimeoutError("t"), True),
        ((ConnectionError, TimeoutError), KeyError("k"), False),
        (lambda e: getattr(e, "status_code", 0) >= 500, HttpError(503), True),
        (lambda e: getattr(e, "status_code", 0) >= 500, HttpError(404), False),
    ],
)
def test_when_decides_retryability_by_class_tuple_or_callable(when, error, retryable):
    assert evaluate_when(when, error) == (retryable, None)


def test_a_raising_when_is_non_retryable_and_keeps_both_messages():
    def broken(error):
        raise KeyError("predicate bug")

    failure = failure_from_exception(ValueError("handler error"), broken)
    assert failure.non_retryable
    assert "handler error" in failure.message and "predicate bug" in failure.message


def test_non_retryable_error_fails_at_once_whatever_when_says():
    assert failure_from_exception(NonRetryableError("no"), None).non_retryable


def test_retry_after_on_any_exception_becomes_failure_retry_after():
    class RateLimited(Exception):
        retry_after = 2.5

    assert failure_from_exception(RetryAfter(0.3), None).retry_after.ToMilliseconds() == 300
    assert failure_from_exception(RateLimited(), None).retry_after.ToMilliseconds() == 2500
    assert not failure_from_exception(ValueError(), None).HasField("retry_after")


def test_oversized_failure_messages_are_truncated_below_the_wire_limits():
    failure = failure_from_exception(ValueError("é" * 100_000), None)
    assert len(failure.message.encode()) <= 64 * 1024
    assert failure.type == "ValueError"
