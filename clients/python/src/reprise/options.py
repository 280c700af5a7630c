"""Every worker option, its default and its validation, in one place."""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field

from ._durations import as_seconds
from .codec import Codec, JsonCodec

DEFAULT_ADDRESS = "127.0.0.1:50051"


@dataclass(frozen=True)
class WorkerOptions:
    """
    - address: the coordinator's host:port.
    - concurrency: the most attempts run at once, blocking and async handlers
      together (a `def` handler on a thread each, `async def` ones on one event loop).
    - worker_id: shown on each attempt, for operators; defaults to host-pid-random.
    - lease_duration: seconds each lease lasts without a heartbeat (0.1 .. 3600).
      Heartbeats go every third of it, so a crashed worker's attempts are
      retried after at most this long.
    - poll_wait: seconds one LeaseAttempts long-poll waits for work (0.05 .. 60).
    - codec: how arguments and results are encoded; JSON by default.
    - token: a bearer token (a `worker` or `admin` one) when the coordinator runs with --auth-tokens.
    - tls: False (plaintext), True (TLS, system roots) or PEM root certificates as bytes.
    """

    address: str = DEFAULT_ADDRESS
    concurrency: int = 16
    worker_id: str | None = None
    lease_duration: float = 30.0
    poll_wait: float = 30.0
    codec: Codec = field(default_factory=JsonCodec)
    token: str | None = field(default=None, repr=False)
    tls: bool | bytes = False

    def validated(self) -> "WorkerOptions":
        if not isinstance(self.address, str) or ":" not in self.address:
            raise ValueError(f"address: must be host:port, e.g. {DEFAULT_ADDRESS}; got {self.address!r}")
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or not 1 <= self.concurrency <= 1000:
            raise ValueError(f"concurrency: must be a whole number from 1 to 1000; got {self.concurrency!r}")
        worker_id = self.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if not 1 <= len(worker_id.encode("utf-8")) <= 256:
            raise ValueError(f"worker_id: must be 1 to 256 bytes; got {worker_id!r}")
        lease = as_seconds(self.lease_duration, "lease_duration")
        if not 0.1 <= lease <= 3600:
            raise ValueError(f"lease_duration: must be from 0.1 to 3600 seconds; got {self.lease_duration!r}")
        wait = as_seconds(self.poll_wait, "poll_wait")
        if not 0.05 <= wait <= 60:
            raise ValueError(f"poll_wait: must be from 0.05 to 60 seconds; got {self.poll_wait!r}")
        return WorkerOptions(self.address, self.concurrency, worker_id, lease, wait, self.codec, self.token, self.tls)
