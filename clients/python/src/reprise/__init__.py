"""Reprise's Python client: Coflux-style workers and callers for the Reprise retry coordinator.

    worker = Worker("127.0.0.1:50051")

    @worker.task(retries=Retries(limit=3, backoff=(1, 30), when=ConnectionError))
    def fetch(args, ctx): ...

    worker.run()

    with Client("127.0.0.1:50051") as client:
        print(client.submit("fetch", {"url": "..."}).result())
"""
from .client import Client, ExecutionHandle, is_terminal
from .codec import Codec, JsonCodec
from .context import AttemptContext, current_attempt
from .errors import (
    AttemptCancelled,
    ExecutionAbandoned,
    ExecutionCancelled,
    ExecutionError,
    ExecutionFailed,
    ExecutionTimedOut,
    NonRetryableError,
    RepriseError,
    RetryAfter,
    Snooze,
    WaitTimeout,
)
from .retries import Retries, RetryBudget, to_retry_policy
from .v1.types_pb2 import AttemptState, Execution, ExecutionState, RetryRule
from .worker import Worker

__all__ = [
    "AttemptCancelled",
    "AttemptContext",
    "AttemptState",
    "Client",
    "Codec",
    "Execution",
    "ExecutionAbandoned",
    "ExecutionCancelled",
    "ExecutionError",
    "ExecutionFailed",
    "ExecutionHandle",
    "ExecutionState",
    "ExecutionTimedOut",
    "JsonCodec",
    "NonRetryableError",
    "RepriseError",
    "Retries",
    "RetryAfter",
    "RetryBudget",
    "RetryRule",
    "Snooze",
    "WaitTimeout",
    "Worker",
    "current_attempt",
    "is_terminal",
    "to_retry_policy",
]
