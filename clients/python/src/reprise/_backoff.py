"""Reconnect backoff: 100 ms doubling to 5 s, as in the TypeScript and Go
clients, with jitter, so a fleet of workers does not hammer a coordinator that
is coming back up."""
from __future__ import annotations

import random

import grpc

# Codes after which the same request may simply be sent again. Resending is
# safe for every worker RPC: leases are fenced, so a report that repeats one
# already recorded is answered as a duplicate (accepted, changing nothing)
# rather than applied twice, and a heartbeat only extends a lease.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


def is_transient(error: grpc.RpcError) -> bool:
    return error.code() in TRANSIENT


class CallFailed(grpc.RpcError):
    """A call that failed on its way to the coordinator (unreachable, or no
    answer in time), after any resends: the call's status, with a message that
    names the call and the coordinator's address, which gRPC's own may not."""

    def __init__(self, call: str, address: str, error: grpc.RpcError):
        self._code = error.code()
        self._details = f"{call} to the coordinator at {address} failed with {self._code.name}: {error.details()}"
        super().__init__(self._details)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def is_over_quota(error: grpc.RpcError) -> bool:
    """The coordinator's per-connection quota of waiting long-polls or open
    watches is full: worth waiting for, unlike an oversized payload."""
    return error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


class Backoff:
    def __init__(self, initial: float = 0.1, maximum: float = 5.0):
        self._initial = initial
        self._maximum = maximum
        self._ceiling = initial

    def next(self) -> float:
        delay = random.uniform(self._ceiling / 2, self._ceiling)
        self._ceiling = min(self._maximum, self._ceiling * 2)
        return delay

    def reset(self) -> None:
        self._ceiling = self._initial
