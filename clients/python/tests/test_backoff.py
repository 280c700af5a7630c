"""The reconnect backoff every retry loop of the client and the worker uses."""
from __future__ import annotations

import random

from reprise._backoff import Backoff


def test_the_reconnect_backoff_starts_at_100_ms_and_doubles_to_5_s(monkeypatch):
    bounds: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        bounds.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", uniform)
    backoff = Backoff()
    delays = [backoff.next() for _ in range(8)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    # Each delay is random in the upper half of its step, so that a fleet does not come back in step.
    assert all(low == high / 2 for low, high in bounds)
    backoff.reset()
    assert backoff.next() == 0.1
