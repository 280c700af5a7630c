"""Turns what a handler raised into the wire's Failure, deciding retryability on the worker."""
from __future__ import annotations

import math
import traceback
from datetime import timedelta

from reprise.v1 import types_pb2

from ._durations import to_duration
from .errors import NonRetryableError
from .retries import MAX_BACKOFF_SECONDS, When, evaluate_when

# The coordinator refuses a whole ReportOutcomes batch when one field is over
# its limit, so an oversized message must never leave the worker.
TYPE_BYTES = 1024
MESSAGE_BYTES = 64 * 1024
STACK_BYTES = 256 * 1024


def failure_from_exception(error: BaseException, when: When | None) -> types_pb2.Failure:
    type_name = type(error).__qualname__
    message = str(error)
    if isinstance(error, NonRetryableError):
        retryable = False
    else:
        retryable, when_error = evaluate_when(when, error)
        if when_error is not None:
            message = f"{message} (and the retry condition `when` raised {when_error})"
    failure = types_pb2.Failure(
        type=_truncate(type_name, TYPE_BYTES),
        message=_truncate(message, MESSAGE_BYTES),
        stack_trace=_truncate("".join(traceback.format_exception(error)), STACK_BYTES),
        non_retryable=not retryable,
    )
    retry_after = _retry_after_seconds(error)
    if retryable and retry_after:
        failure.retry_after.CopyFrom(to_duration(retry_after))
    return failure


def _retry_after_seconds(error: BaseException) -> float | None:
    """Reads a `retry_after` attribute in seconds (or a timedelta); ignores anything unusable."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None
    return min(float(value), MAX_BACKOFF_SECONDS)


def _truncate(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= max_bytes:
        return text
    marker = "…[truncated]"
    keep = max_bytes - len(marker.encode("utf-8"))
    return encoded[:keep].decode("utf-8", errors="ignore") + marker
