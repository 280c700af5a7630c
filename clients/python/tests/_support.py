"""Helpers the tests share: wait on conditions, never on fixed sleeps."""
from __future__ import annotations

import time
from typing import Callable

import pytest


def wait_for(condition: Callable[[], object], timeout: float = 10.0, message: str = "condition") -> object:
    """Polls `condition` until it is truthy; fails the test naming what never happened."""
    deadline = time.monotonic() + timeout
    interval = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
        interval = min(interval * 2, 0.05)


def seconds_between(earlier, later) -> float:
    """Seconds from one protobuf Timestamp to another, to the millisecond."""
    return round((later.ToMilliseconds() - earlier.ToMilliseconds()) / 1000, 3)
