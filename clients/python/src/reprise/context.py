"""What a handler knows about the attempt it is running."""
from __future__ import annotations

import contextvars
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Mapping

from .errors import AttemptCancelled

# A context variable rather than a thread-local: the async handlers of one
# worker share its event loop thread, and each task sees its own attempt.
_current: contextvars.ContextVar["AttemptContext | None"] = contextvars.ContextVar("reprise_current_attempt", default=None)
log = logging.getLogger("reprise.worker")

# Why an attempt was told to stop. Its outcome is then never reported: the
# coordinator has already decided (or, for "shutdown", will decide when the
# lease runs out) what happens next.
CANCELLED = "cancelled"  # CancelExecution: the execution ended CANCELLED
LOST = "lost"  # the lease is no longer current: expired, timed out or already decided
TIMEOUT = "timeout"  # the task's declared timeout passed
SHUTDOWN = "shutdown"  # Worker.stop() ran past its grace period


@dataclass
class AttemptContext:
    """Per-attempt facts, plus a `cancelled` event the handler should watch in long work."""

    execution_id: str
    task: str
    attempt: int
    labels: Mapping[str, str]
    lease_token: bytes = field(repr=False)
    timeout_at: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    _reason: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _on_stop: list[Callable[[], None]] = field(default_factory=list, repr=False)

    @property
    def cancel_reason(self) -> str | None:
        """None while the attempt may go on, else one of "cancelled", "lost", "timeout", "shutdown"."""
        return self._reason

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise AttemptCancelled(f"attempt {self.attempt} of {self.execution_id} must stop: {self._reason}")

    def _stop(self, reason: str) -> bool:
        """Marks the attempt stopped; the first reason wins. True if this call stopped it."""
        with self._lock:
            if self._reason is not None:
                return False
            self._reason = reason
            on_stop, self._on_stop = self._on_stop, []
        self.cancelled.set()
        for callback in on_stop:
            _call(callback)
        return True

    def _when_stopped(self, callback: Callable[[], None]) -> None:
        """Calls `callback` when the attempt is told to stop; at once if it already was."""
        with self._lock:
            if self._reason is None:
                self._on_stop.append(callback)
                return
        _call(callback)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # noqa: BLE001 - one failing hook must not keep the others from running
        log.exception("reprise: stopping an attempt failed")


def current_attempt() -> AttemptContext:
    """The context of the attempt running on this thread, or in this asyncio task
    (and the tasks and threads it starts). Raises RuntimeError outside a handler."""
    context = _current.get()
    if context is None:
        raise RuntimeError("reprise.current_attempt() called outside a task handler")
    return context


def _set_current(context: AttemptContext | None) -> None:
    _current.set(context)
