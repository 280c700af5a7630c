"""Seconds (as Coflux writes them) to and from the wire's Duration and Timestamp.

The coordinator rounds every duration to whole milliseconds, so we round here
too: what we send is exactly what it will store and echo back.
"""
from __future__ import annotations

from datetime import timedelta

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

Seconds = float | int | timedelta


def as_seconds(value: Seconds, name: str) -> float:
    """Reads a number of seconds or a timedelta; rejects negatives, naming the option."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{name}: must be a number of seconds or a timedelta; got {value!r}")
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{name}: must not be negative; got {value!r}")
    return seconds


def to_duration(seconds: float) -> Duration:
    duration = Duration()
    duration.FromMilliseconds(round(seconds * 1000))
    return duration


def from_duration(duration: Duration) -> float:
    return duration.ToMilliseconds() / 1000


def from_timestamp(timestamp: Timestamp) -> float:
    """Seconds since the epoch, comparable with time.time()."""
    return timestamp.seconds + timestamp.nanos / 1e9
