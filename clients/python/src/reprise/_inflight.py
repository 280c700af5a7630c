"""The worker's attempts from lease until their outcome is settled, and its free slots.

An attempt stays here after its handler returns, until the coordinator has
answered its report, so that heartbeats keep its lease alive while a report
waits out a coordinator restart.
"""
from __future__ import annotations

import threading
import time

from .context import AttemptContext


class Inflight:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._attempts: dict[bytes, AttemptContext] = {}
        self._running: set[bytes] = set()

    @property
    def running(self) -> int:
        with self._changed:
            return len(self._running)

    def add(self, context: AttemptContext) -> None:
        with self._changed:
            self._attempts[context.lease_token] = context
            self._running.add(context.lease_token)

    def handler_done(self, context: AttemptContext) -> None:
        with self._changed:
            self._running.discard(context.lease_token)
            self._changed.notify_all()

    def is_running(self, context: AttemptContext) -> bool:
        with self._changed:
            return context.lease_token in self._running

    def settle(self, token: bytes) -> None:
        with self._changed:
            self._attempts.pop(token, None)
            self._changed.notify_all()

    def get(self, token: bytes) -> AttemptContext | None:
        with self._changed:
            return self._attempts.get(token)

    def contexts(self) -> list[AttemptContext]:
        with self._changed:
            return list(self._attempts.values())

    def running_contexts(self) -> list[AttemptContext]:
        with self._changed:
            return [self._attempts[token] for token in self._running if token in self._attempts]

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for_free_slots(self, concurrency: int, stopping: threading.Event) -> int:
        """Blocks until a slot is free; returns how many, or 0 once `stopping` is set (after wake())."""
        with self._changed:
            while not stopping.is_set():
                free = concurrency - len(self._running)
                if free > 0:
                    return free
                self._changed.wait()
            return 0

    def wait_idle(self, deadline: float) -> bool:
        """Waits until no handler runs, or the monotonic deadline passes. True if idle."""
        return self._wait(lambda: not self._running, deadline)

    def wait_settled(self, deadline: float) -> bool:
        """Waits until every attempt's outcome is settled, or the monotonic deadline passes."""
        return self._wait(lambda: not self._attempts, deadline)

    def _wait(self, done, deadline: float) -> bool:
        with self._changed:
            while True:
                remaining = deadline - time.monotonic()
                if done() or remaining <= 0:
                    return done()
                self._changed.wait(remaining)
