"""Coflux's retry forms and how each maps to the wire's RetryPolicy, and a
task's retry budget (the wire's RetryBudget).

The wire leaves an absent backoff to mean 0 for a limited policy but 1..60 s
for an unlimited one, so we always send the backoff we mean rather than rely
on what absence implies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

from reprise.v1 import types_pb2

from ._durations import Seconds, as_seconds, to_duration

MAX_LIMIT = 10_000
MAX_BACKOFF_SECONDS = 365 * 86_400
MAX_ELAPSED_SECONDS = 3650 * 86_400
DEFAULT_BACKOFF = (1.0, 60.0)
MAX_BUDGET_RATE = 1_000_000
MAX_BUDGET_BURST = 1_000_000

ExceptionClasses = Union[type[BaseException], tuple[type[BaseException], ...]]
When = Union[ExceptionClasses, Callable[[BaseException], object]]


@dataclass(frozen=True, init=False)
class Retries:
    """Retry a failed, abandoned or timed-out attempt, as `cf.Retries` does.

    - `limit`: how many retries may follow the first attempt; None means without limit.
    - `backoff`: (min, max) seconds. With a limit, retry k of N waits
      min + (max - min)·(k-1)/(N-1); without one, each delay is uniform random
      in [min, max]. Defaults to (1, 60).
    - `when`: an exception class, a tuple of them, or a predicate taking the
      exception. Evaluated in the worker at the raise; when it is false the
      execution fails at once without using up retries. A predicate that
      itself raises fails the attempt non-retryably too.

    Beyond Coflux, each off by default (0 or None changes nothing):

    - `coefficient`: exponential backoff, at least 1. Retry k waits
      min(max, min·coefficient^(k-1)), with or without a limit.
    - `jitter`: a fraction from 0 to 1. Each computed delay d becomes uniform
      random in [d·(1 - jitter), d], so a retry never starts later than planned.
    - `max_elapsed`: seconds. No retry is scheduled that would start later than
      this after the first attempt was due; the execution then fails as if
      the limit had been reached.
    """

    limit: int | None
    backoff: tuple[float, float]
    when: When | None
    coefficient: float
    jitter: float
    max_elapsed: float | None

    def __init__(
        self,
        limit: int | None = None,
        backoff: tuple[float, float] = DEFAULT_BACKOFF,
        when: When | None = None,
        *,
        coefficient: float = 0,
        jitter: float = 0,
        max_elapsed: Seconds | None = None,
    ):
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT:
                raise ValueError(f"Retries.limit: must be None or a whole number from 0 to {MAX_LIMIT}; got {limit!r}")
        if not isinstance(backoff, (tuple, list)) or len(backoff) != 2:
            raise ValueError(f"Retries.backoff: must be a (min, max) pair of seconds; got {backoff!r}")
        low = as_seconds(backoff[0], "Retries.backoff[0]")
        high = as_seconds(backoff[1], "Retries.backoff[1]")
        if low > high:
            raise ValueError(f"Retries.backoff: min must not exceed max; got {backoff!r}")
        if high > MAX_BACKOFF_SECONDS:
            raise ValueError(f"Retries.backoff: at most 365 days; got {backoff!r}")
        _check_when(when)
        if not _is_number(coefficient):
            raise TypeError(f"Retries.coefficient: must be a number; got {coefficient!r}")
        if not math.isfinite(coefficient) or (coefficient != 0 and coefficient < 1):
            raise ValueError(f"Retries.coefficient: must be 0 (Coflux's rule) or a finite number of at least 1; got {coefficient!r}")
        if not _is_number(jitter):
            raise TypeError(f"Retries.jitter: must be a number; got {jitter!r}")
        if not 0 <= jitter <= 1:  # NaN fails both comparisons
            raise ValueError(f"Retries.jitter: must be a fraction from 0 to 1; got {jitter!r}")
        elapsed = None
        if max_elapsed is not None:
            elapsed = as_seconds(max_elapsed, "Retries.max_elapsed")
            if elapsed > MAX_ELAPSED_SECONDS:
                raise ValueError(f"Retries.max_elapsed: at most 3650 days; got {max_elapsed!r}")
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "backoff", (low, high))
        object.__setattr__(self, "when", when)
        object.__setattr__(self, "coefficient", float(coefficient))
        object.__setattr__(self, "jitter", float(jitter))
        object.__setattr__(self, "max_elapsed", elapsed or None)


@dataclass(frozen=True, init=False)
class RetryBudget:
    """A token bucket that spreads one task's retries over time, so that a dead
    dependency does not face a retry storm. The coordinator keeps one bucket per
    task, shared by every worker.

    - `per_second`: how fast tokens accrue; more than 0.
    - `burst`: how many retries may start at once before the rate applies
      (0 means 1). Defaults to 1.

    Each retry takes a token; when none is left, the retry is deferred to when
    the next one accrues, never dropped. First attempts and snoozes take none.
    """

    per_second: float
    burst: int

    def __init__(self, per_second: float, burst: int = 1):
        if not _is_number(per_second):
            raise TypeError(f"RetryBudget.per_second: must be a number; got {per_second!r}")
        if not (0 < per_second <= MAX_BUDGET_RATE):  # NaN fails both comparisons
            raise ValueError(f"RetryBudget.per_second: must be more than 0 and at most {MAX_BUDGET_RATE}; got {per_second!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or not 0 <= burst <= MAX_BUDGET_BURST:
            raise ValueError(f"RetryBudget.burst: must be a whole number from 0 to {MAX_BUDGET_BURST}; got {burst!r}")
        object.__setattr__(self, "per_second", float(per_second))
        object.__setattr__(self, "burst", burst)

    def to_wire(self) -> types_pb2.RetryBudget:
        return types_pb2.RetryBudget(retries_per_second=self.per_second, burst=self.burst)


RetriesOption = Union[None, bool, int, Retries]


def _check_when(when: object) -> None:
    if when is None or _is_exception_class(when):
        return
    if isinstance(when, tuple):
        if all(_is_exception_class(item) for item in when):
            return
        raise TypeError(f"Retries.when: a tuple must hold only exception classes; got {when!r}")
    if not callable(when):
        raise TypeError(f"Retries.when: must be an exception class, a tuple of them, or a callable; got {when!r}")


def _is_exception_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def normalize(retries: RetriesOption) -> Retries | None:
    """The one Retries a `retries=` option means, or None for at most once."""
    if retries is None or retries is False:
        return None
    if retries is True:
        return Retries(limit=None)
    if isinstance(retries, int):
        if not 0 <= retries <= MAX_LIMIT:
            raise ValueError(f"retries: must be from 0 to {MAX_LIMIT}; got {retries}")
        # retries=N retries at once (Coflux: "immediately after the previous failure").
        return Retries(limit=retries, backoff=(0, 0)) if retries else None
    if isinstance(retries, Retries):
        return retries if retries.limit != 0 else None
    raise TypeError(f"retries: must be None, a bool, an int or a Retries; got {retries!r}")


def to_retry_policy(retries: RetriesOption) -> types_pb2.RetryPolicy | None:
    """The wire policy for a `retries=` option; None (send no policy) for at most once."""
    normalized = normalize(retries)
    if normalized is None:
        return None
    low, high = normalized.backoff
    if normalized.limit is None:
        policy = types_pb2.RetryPolicy(unlimited=True, backoff_min=to_duration(low), backoff_max=to_duration(high))
    elif low == 0 and high == 0:
        # Absent backoff already means "at once" for a limited policy; leaving it
        # out keeps the echo in Execution.retry_policy identical to what we sent.
        policy = types_pb2.RetryPolicy(limit=normalized.limit)
    else:
        policy = types_pb2.RetryPolicy(limit=normalized.limit, backoff_min=to_duration(low), backoff_max=to_duration(high))
    # Their zero values are the wire's defaults, so only what was asked for is sent.
    if normalized.coefficient:
        policy.backoff_coefficient = normalized.coefficient
    if normalized.jitter:
        policy.jitter = normalized.jitter
    if normalized.max_elapsed:
        policy.max_elapsed.CopyFrom(to_duration(normalized.max_elapsed))
    return policy


def evaluate_when(when: When | None, error: BaseException) -> tuple[bool, str | None]:
    """Whether `error` may be retried, and, if `when` itself raised, what it raised.

    A broken predicate is a bug, so it fails the attempt rather than retrying
    (Coflux retries here; our contract chooses to fail fast).
    """
    if when is None:
        return True, None
    if isinstance(when, type) or isinstance(when, tuple):
        return isinstance(error, when), None
    try:
        return bool(when(error)), None
    except Exception as broken:  # noqa: BLE001 - any failure of the predicate is reported, not raised
        return False, f"{type(broken).__name__}: {broken}"
