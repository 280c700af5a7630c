"""What a handler knows about the attempt it is running."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Mapping

from .errors import AttemptCancelled

_current = threading.local()

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
        self.cancelled.set()
        return True


def current_attempt() -> AttemptContext:
    """The context of the attempt running on this thread. Raises RuntimeError outside a handler."""
    context = getattr(_current, "context", None)
    if context is None:
        raise RuntimeError("reprise.current_attempt() called outside a task handler")
    return context


def _set_current(context: AttemptContext | None) -> None:
    _current.context = context
