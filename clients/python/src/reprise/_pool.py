"""The threads a worker runs its blocking (`def`) attempts on: started as
they are needed, at most `size`, and reused. Starting a thread for each
attempt cost more than a quick handler (about 0.2 ms, with the lease loop
waiting on each start).

The threads are daemon threads, as the worker's were: a handler still running
after stop()'s grace never keeps the process from exiting.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

Job = Callable[[], None]

log = logging.getLogger("reprise")


class AttemptPool:
    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._idle = 0
        self._closed = False

    def submit(self, job: Job) -> None:
        """Runs `job` on an idle thread, or on a new one while fewer than `size` run."""
        number = 0
        with self._lock:
            if self._closed:
                raise RuntimeError("the attempt pool is closed")
            if self._idle > 0:
                self._idle -= 1
            elif self._started < self._size:
                self._started += 1
                number = self._started
        self._jobs.put(job)
        if number:
            threading.Thread(target=self._run, name=f"reprise-attempt-{number}", daemon=True).start()

    def close(self) -> None:
        """Ends every thread once it has finished its job; idle ones at once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._started
        for _ in range(threads):
            self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:  # noqa: BLE001 - a job's own errors are its outcome; this is a bug, kept from killing the thread
                log.exception("reprise: running an attempt failed")
            with self._lock:
                self._idle += 1
