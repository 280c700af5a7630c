"""One Heartbeat RPC for every in-flight attempt, every third of the lease,
plus the local watch on each attempt's declared timeout."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import grpc

from reprise.v1 import worker_service_pb2

from . import context as ctx
from ._inflight import Inflight

log = logging.getLogger("reprise.worker")

# The coordinator's default --max-batch-size; more tokens go in further RPCs.
MAX_TOKENS = 1000


class Heartbeater:
    def __init__(
        self,
        heartbeat: Callable[..., worker_service_pb2.HeartbeatResponse],
        inflight: Inflight,
        worker_id: str,
        interval: float,
    ):
        self._heartbeat = heartbeat
        self._inflight = inflight
        self._worker_id = worker_id
        self._interval = interval
        self._stopping = threading.Event()
        # Set to make the loop look at the attempts' timeouts again before its next beat.
        self._woken = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reprise-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        self._thread.join()

    def watch_timeout(self) -> None:
        """Takes a new attempt's timeout into account now: it may pass long before the next beat."""
        self._woken.set()

    def _run(self) -> None:
        next_beat = time.monotonic() + self._interval
        while True:
            # Cleared before anything is read, so that a stop() or an attempt added from now on ends the wait below.
            self._woken.clear()
            if self._stopping.is_set():
                return
            # Before the beat, so an attempt past its timeout stops as timed out, not as lost.
            until_timeout = self._stop_timed_out()
            if time.monotonic() >= next_beat:
                self._beat()
                next_beat = time.monotonic() + self._interval
            wait = max(0.0, next_beat - time.monotonic())
            if until_timeout is not None:
                wait = min(wait, until_timeout)
            self._woken.wait(wait)

    def _stop_timed_out(self) -> float | None:
        """Stops running attempts past their timeout (the coordinator will say so
        only at the next beat); returns seconds until the next timeout, if any."""
        now = time.time()
        earliest: float | None = None
        for context in self._inflight.running_contexts():
            if context.timeout_at is None or context.cancel_reason is not None:
                continue
            if context.timeout_at <= now:
                if context._stop(ctx.TIMEOUT):
                    log.info("reprise: attempt %d of %s timed out; stopping it", context.attempt, context.execution_id)
            else:
                left = context.timeout_at - now
                earliest = left if earliest is None else min(earliest, left)
        return earliest

    def _beat(self) -> None:
        # Attempts already told to stop are left to the coordinator; an attempt
        # whose report is still on its way is kept alive until it lands.
        tokens = [c.lease_token for c in self._inflight.contexts() if c.cancel_reason is None]
        for start in range(0, len(tokens), MAX_TOKENS):
            request = worker_service_pb2.HeartbeatRequest(lease_tokens=tokens[start : start + MAX_TOKENS], worker_id=self._worker_id)
            try:
                response = self._heartbeat(request, timeout=self._interval)
            except grpc.RpcError as error:
                # The next beat comes within a third of the lease, so one miss costs nothing.
                log.debug("reprise: heartbeat failed (%s): %s", error.code().name, error.details())
                return
            self._stop_tokens(response.cancel_requested, ctx.CANCELLED)
            self._stop_tokens(response.lost, ctx.LOST)

    def _stop_tokens(self, tokens, reason: str) -> None:
        for token in tokens:
            context = self._inflight.get(token)
            if context is None:
                continue
            if self._inflight.is_running(context):
                if context._stop(reason):
                    log.info("reprise: attempt %d of %s %s; stopping it", context.attempt, context.execution_id, reason)
            else:
                # Finished but not yet reported: the report will be refused, so stop heartbeating it.
                context._stop(reason)
