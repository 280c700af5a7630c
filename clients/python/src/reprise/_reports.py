"""Batched outcome reports: everything finished since the last ReportOutcomes goes in the next one."""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import Callable

import grpc

from reprise.v1 import types_pb2, worker_service_pb2

from ._backoff import Backoff, is_transient
from ._durations import from_duration, from_timestamp
from .context import AttemptContext

log = logging.getLogger("reprise.worker")

# The coordinator's default --max-batch-size; larger batches are INVALID_ARGUMENT.
MAX_BATCH = 1000
RPC_TIMEOUT = 10.0
# What a duplicate receipt says of the decision: the coordinator does not repeat it.
ALREADY_RECORDED = "already recorded by an earlier report whose reply was lost"


class OutcomeReporter:
    """Sends outcomes until each has a receipt. Resends through a coordinator
    restart (a result must not be lost because the coordinator blinked), and
    calls `settled(token)` once the coordinator accepted or refused it. A
    resend of an outcome that was recorded before its reply was lost is
    accepted as a duplicate, so it counts as recorded.
    `attempt_of(token)` names the attempt in the log line of a failure or a snooze."""

    def __init__(
        self,
        report: Callable[..., worker_service_pb2.ReportOutcomesResponse],
        settled: Callable[[bytes], None],
        attempt_of: Callable[[bytes], AttemptContext | None],
    ):
        self._report = report
        self._settled = settled
        self._attempt_of = attempt_of
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
                # A duplicate is accepted: an earlier send of this batch was
                # recorded and only its reply was lost.
                if not receipt.accepted:
                    log.warning("reprise: coordinator refused an outcome: %s", receipt.reason)
                elif outcome.HasField("failure"):
                    log_failed_attempt(self._attempt_of(outcome.lease_token), outcome.failure, receipt)
                elif outcome.HasField("snooze"):
                    log_snoozed_attempt(self._attempt_of(outcome.lease_token), outcome.snooze, receipt)
                elif receipt.duplicate:
                    context = self._attempt_of(outcome.lease_token)
                    log.debug("reprise: the result of %s was already recorded by an earlier report", _name(context))
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


def log_failed_attempt(context: AttemptContext | None, failure: types_pb2.Failure, receipt: types_pb2.OutcomeReceipt) -> None:
    """Logs an accepted failure at INFO with what the coordinator decided: a
    retry and when it may start, or none. The same facts are on the record
    (`extra`), for handlers that write structured logs. A duplicate receipt
    does not repeat the decision, so `will_retry` is then None."""
    task, execution_id, attempt = _facts(context)
    next_attempt_at = _next_attempt_at(receipt) if receipt.will_retry else None
    if receipt.duplicate:
        decision = ALREADY_RECORDED
    elif not receipt.will_retry:
        decision = "no retry, the execution has failed"
    elif next_attempt_at is None:
        decision = "retry scheduled"
    else:
        decision = f"retry at {_when(next_attempt_at)}"
    log.info(
        "reprise: %s[%s] attempt %d failed with %s: %s; %s",
        task, execution_id, attempt, failure.type, failure.message, decision,
        extra={
            "task": task,
            "execution_id": execution_id,
            "attempt": attempt,
            "error_type": failure.type,
            "error_message": failure.message,
            "will_retry": None if receipt.duplicate else receipt.will_retry,
            "next_attempt_at": next_attempt_at,
            "duplicate": receipt.duplicate,
        },
    )


def log_snoozed_attempt(context: AttemptContext | None, snooze: types_pb2.Snooze, receipt: types_pb2.OutcomeReceipt) -> None:
    """Logs an accepted snooze at INFO with when the execution is due again;
    the same facts are on the record (`extra`)."""
    task, execution_id, attempt = _facts(context)
    next_attempt_at = None if receipt.duplicate else _next_attempt_at(receipt)
    if receipt.duplicate:
        decision = ALREADY_RECORDED
    elif next_attempt_at is None:
        decision = "due again"
    else:
        decision = f"due again at {_when(next_attempt_at)}"
    log.info(
        "reprise: %s[%s] attempt %d snoozed for %g s; %s",
        task, execution_id, attempt, from_duration(snooze.delay), decision,
        extra={
            "task": task,
            "execution_id": execution_id,
            "attempt": attempt,
            "snooze_delay": from_duration(snooze.delay),
            "next_attempt_at": next_attempt_at,
            "duplicate": receipt.duplicate,
        },
    )


def _facts(context: AttemptContext | None) -> tuple[str, str, int]:
    return (context.task, context.execution_id, context.attempt) if context else ("?", "?", 0)


def _name(context: AttemptContext | None) -> str:
    task, execution_id, attempt = _facts(context)
    return f"{task}[{execution_id}] attempt {attempt}"


def _next_attempt_at(receipt: types_pb2.OutcomeReceipt) -> datetime | None:
    if not receipt.HasField("next_attempt_at"):
        return None
    return datetime.fromtimestamp(from_timestamp(receipt.next_attempt_at), timezone.utc)


def _when(moment: datetime) -> str:
    seconds = max(0.0, moment.timestamp() - time.time())
    return f"{moment.isoformat(timespec='milliseconds')} (in {seconds:.1f} s)"
