"""What both worker processes (reprise_worker.py, celery_app.py) do in their
handler, the same as bench/src/worker.mjs does for the Node systems, and how
they tell bench.py about it.

Modes:
  noop      every attempt succeeds at once (W1)
  failonce  the first attempt of each item raises a retryable error and the
            second succeeds (W2 with the smallest delay, W4 with 1 s)
  latency   records handler start minus the submit time carried in the
            arguments (W3)

Timestamps are time.time() (wall clock, seconds), comparable across the
processes of this machine. Messages to bench.py are JSON lines on the file
descriptor named by BENCH_REPORT_FD (a pipe bench.py made): {"type": "ready"}
once, then {"type": "done", ...} with every sample once `expected` executions
have succeeded.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import threading
import time
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Has Linux SIGKILL this process when bench.py exits, so that no worker outlives its run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # bench.py was gone before the prctl
        os._exit(1)


class TransientError(Exception):
    """The retryable error a first attempt raises on purpose."""


class Recorder:
    def __init__(self, mode: str, expected: int, retry_delay: float, report_fd: int):
        self.mode = mode
        self.expected = expected
        self.retry_delay = retry_delay
        self._fd = report_fd
        self._lock = threading.Lock()
        self._completed = 0
        self._latencies: list[float] = []
        self._failed_at: dict[int, float] = {}
        self._retry_started_at: dict[int, float] = {}

    @classmethod
    def from_environment(cls) -> "Recorder":
        die_with_parent(int(os.environ["BENCH_PARENT_PID"]))
        config = json.loads(os.environ["BENCH_WORKER"])
        return cls(config["mode"], int(config["expected"]), float(config["retry_delay"]), int(os.environ["BENCH_REPORT_FD"]))

    def work(self, args: Any, attempt: int) -> None:
        """The handler's work; `attempt` counts from 1. Raises TransientError on a first attempt in failonce mode."""
        started = time.time()
        if self.mode == "latency":
            with self._lock:
                self._latencies.append((started - args["t"]) * 1000)
        elif self.mode == "failonce":
            if attempt == 1:
                with self._lock:
                    self._failed_at[args["i"]] = time.time()
                raise TransientError(f"first attempt of {args['i']} fails on purpose")
            with self._lock:
                self._retry_started_at[args["i"]] = started

    def finished(self, execution_id: str) -> None:
        """Counts one succeeded execution; the one that makes `expected` tells bench.py, with the samples."""
        with self._lock:
            self._completed += 1
            if self._completed != self.expected:
                return
            lateness = [
                (started - (self._failed_at[i] + self.retry_delay)) * 1000
                for i, started in self._retry_started_at.items()
                if i in self._failed_at
            ]
            message = {"type": "done", "at": time.time(), "lastId": execution_id, "completed": self._completed, "latencies": list(self._latencies), "lateness": lateness}
        self.send(message)

    def send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data):]
