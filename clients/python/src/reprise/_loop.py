"""The event loop a worker runs its `async def` handlers on: one loop, on one
thread of its own, for the worker's whole life. A loop per attempt (asyncio.run
on a pool thread) cost a loop's setup and teardown each time, and kept
handlers from sharing anything bound to a loop, such as an HTTP session.

The worker bounds how many attempts run, async and blocking ones together;
this loop only runs what it is given. Like the attempt threads, its thread is
a daemon: a handler that ignores its cancellation never keeps the process
from exiting.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Callable, Coroutine

log = logging.getLogger("reprise")


class AttemptLoop:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task] = set()  # the loop keeps only weak references to its tasks
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="reprise-attempt-loop", daemon=True)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def start(self) -> None:
        self._thread.start()

    def submit(self, coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Runs `coroutine()` as a task of the loop. Safe from any thread."""
        self._loop.call_soon_threadsafe(self._start_task, coroutine)

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Runs `callback` on the loop's thread, if the loop still runs. Safe from any thread."""
        try:
            self._loop.call_soon_threadsafe(callback)
        except RuntimeError:  # the loop has closed: there is nothing left to act on
            pass

    def close(self) -> None:
        """Ends the loop and its thread once the tasks it runs are done; at once when none are."""
        self.call_soon(self._close)

    def _start_task(self, coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = self._loop.create_task(coroutine())
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("reprise: running an async attempt failed", exc_info=task.exception())
        if self._closing and not self._tasks:
            self._loop.stop()

    def _close(self) -> None:
        self._closing = True
        if not self._tasks:
            self._loop.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            # Threads that handlers started with asyncio.to_thread end with the loop.
            self._loop.run_until_complete(self._loop.shutdown_default_executor())
        finally:
            self._loop.close()
