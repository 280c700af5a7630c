"""Batched outcome reports: everything finished since the last ReportOutcomes goes in the next one."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import grpc

from reprise.v1 import types_pb2, worker_service_pb2

from ._backoff import Backoff, is_transient

log = logging.getLogger("reprise.worker")

# The coordinator's default --max-batch-size; larger batches are INVALID_ARGUMENT.
MAX_BATCH = 1000
RPC_TIMEOUT = 10.0


class OutcomeReporter:
    """Sends outcomes until each has a receipt. Resends through a coordinator
    restart (a result must not be lost because the coordinator blinked), and
    calls `settled(token)` once the coordinator accepted or refused it."""

    def __init__(self, report: Callable[..., worker_service_pb2.ReportOutcomesResponse], settled: Callable[[bytes], None]):
        self._report = report
        self._settled = settled
        self._changed = threading.Condition()
        self._queue: list[types_pb2.Outcome] = []
        self._closing = False
        self._give_up_at = float("inf")
        self._thread = threading.Thread(target=self._run, name="reprise-reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, outcome: types_pb2.Outcome) -> bool:
        with self._changed:
            if self._closing:
                return False
            self._queue.append(outcome)
            self._changed.notify_all()
            return True

    def close(self, give_up_at: float) -> None:
        """Stops accepting outcomes; keeps resending queued ones until the monotonic `give_up_at`."""
        with self._changed:
            self._closing = True
            self._give_up_at = give_up_at
            self._changed.notify_all()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        backoff = Backoff()
        while True:
            with self._changed:
                while not self._queue and not self._closing:
                    self._changed.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            self._send(batch, backoff)

    def _send(self, batch: list[types_pb2.Outcome], backoff: Backoff) -> None:
        while True:
            try:
                response = self._report(worker_service_pb2.ReportOutcomesRequest(outcomes=batch), timeout=RPC_TIMEOUT)
            except grpc.RpcError as error:
                if is_transient(error):
                    if not self._pause(backoff.next()):
                        log.warning("reprise: dropping %d unreported outcome(s) at shutdown: %s", len(batch), error.details())
                        self._settle_all(batch)
                        return
                    continue
                self._send_rejected(batch, error, backoff)
                return
            backoff.reset()
            for outcome, receipt in zip(batch, response.receipts):
                if not receipt.accepted:
                    log.warning("reprise: coordinator refused an outcome: %s", receipt.reason)
                self._settled(outcome.lease_token)
            return

    def _send_rejected(self, batch: list[types_pb2.Outcome], error: grpc.RpcError, backoff: Backoff) -> None:
        # One bad outcome fails the whole RPC; resend one by one so the others still land.
        if len(batch) > 1:
            for outcome in batch:
                self._send([outcome], backoff)
            return
        outcome = batch[0]
        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and outcome.HasField("result"):
            # Retrying cannot shrink the result, so the attempt fails for good.
            too_large = types_pb2.Failure(type="ResultTooLarge", message=error.details() or "", non_retryable=True)
            self._send([types_pb2.Outcome(lease_token=outcome.lease_token, failure=too_large)], backoff)
            return
        log.error("reprise: coordinator rejected an outcome report (%s): %s", error.code().name, error.details())
        self._settle_all(batch)

    def _pause(self, seconds: float) -> bool:
        """Waits before a resend; False when shutdown has run out of time for it."""
        with self._changed:
            if time.monotonic() + seconds > self._give_up_at:
                return False
            self._changed.wait(seconds)
            return time.monotonic() < self._give_up_at

    def _settle_all(self, batch: list[types_pb2.Outcome]) -> None:
        for outcome in batch:
            self._settled(outcome.lease_token)
