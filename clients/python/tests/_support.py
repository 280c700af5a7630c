"""Helpers the tests share: wait on conditions, never on fixed sleeps."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import grpc
import pytest

from reprise.v1 import execution_service_pb2, execution_service_pb2_grpc

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "dist" / "server" / "cli.js"
# The single executable (dist/bin/reprise, or a copy of it) to test instead of
# `node dist/server/cli.js`. It runs with an empty environment: PATH leads
# nowhere and HOME is a fresh folder, as on a machine with nothing installed.
COORDINATOR_BIN = os.environ.get("REPRISE_COORDINATOR_BIN") or None
START_TIMEOUT = 20.0


def wait_for(condition: Callable[[], object], timeout: float = 10.0, message: str = "condition") -> object:
    """Polls `condition` until it is truthy; fails the test naming what never happened."""
    deadline = time.monotonic() + timeout
    interval = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)
        interval = min(interval * 2, 0.05)


def release_one_at_a_time(held: Callable[[], list[threading.Event]], count: int, concurrency: int) -> None:
    """Releases `count` held attempts one at a time (`held()` lists the gates
    not yet set), checking each time that the worker has refilled to exactly
    `concurrency` running attempts, never more."""
    for remaining in range(count, 0, -1):
        running = min(concurrency, remaining)
        wait_for(lambda: len(held()) == running, message=f"{running} attempts to run")
        held()[0].set()


def seconds_between(earlier, later) -> float:
    """Seconds from one protobuf Timestamp to another, to the millisecond."""
    return round((later.ToMilliseconds() - earlier.ToMilliseconds()) / 1000, 3)


class Coordinator:
    """One `reprise serve` process. restart() keeps the port and the database."""

    def __init__(self, db: Path, log: Path, extra_args: tuple[str, ...] = (), home: Path | None = None):
        self.extra_args = extra_args
        self.home = home
        self.db = db
        self.log_path = log
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")
        command = [COORDINATOR_BIN] if COORDINATOR_BIN else ["node", str(CLI)]
        env = {"PATH": "/nonexistent", "HOME": str(self.home or self.db.parent)} if COORDINATOR_BIN else None
        self.process = subprocess.Popen(
            [*command, "serve", "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db), *self.extra_args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        # The CLI prints the bound port (we ask for port 0 the first time, so no free-port race).
        match = wait_for(lambda: self._serving_line(offset), START_TIMEOUT, f"the coordinator to start (log: {self.log_path})")
        self.port = int(match.group(1))
        self._wait_ready()

    def _serving_line(self, offset: int):
        if self.process is not None and self.process.poll() is not None:
            pytest.fail(f"the coordinator exited with {self.process.returncode}:\n{self.log_path.read_text()}")
        with open(self.log_path, "rb") as log:
            log.seek(offset)
            return re.search(rb"serving on 127\.0\.0\.1:(\d+)", log.read())

    def _wait_ready(self) -> None:
        """Retries a GetExecution until the answer is anything but UNAVAILABLE."""
        with grpc.insecure_channel(self.address) as channel:
            stub = execution_service_pb2_grpc.ExecutionServiceStub(channel)

            def answers() -> bool:
                try:
                    stub.GetExecution(execution_service_pb2.GetExecutionRequest(execution_id="probe"), timeout=1)
                except grpc.RpcError as error:
                    return error.code() != grpc.StatusCode.UNAVAILABLE
                return True

            wait_for(answers, START_TIMEOUT, f"the coordinator at {self.address} to answer")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


class CallLog(grpc.UnaryUnaryClientInterceptor):
    """A spy on a client's channel: records every unary call (method name and
    request) on its way out. `hold(method)` makes the next call of that method
    wait at the interceptor, counted in flight by the client, until release()."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        self._hold: str | None = None
        self.held = threading.Event()
        self._released = threading.Event()

    def intercept_unary_unary(self, continuation, client_call_details, request):
        method = client_call_details.method.rsplit("/", 1)[-1]
        with self._lock:
            self.calls.append((method, request))
            hold = self._hold == method
            if hold:
                self._hold = None
        if hold:
            self.held.set()
            self._released.wait(30)
        return continuation(client_call_details, request)

    def hold(self, method: str) -> None:
        self._hold = method
        self.held.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def methods(self) -> list[str]:
        with self._lock:
            return [method for method, _ in self.calls]

    def sizes(self) -> list[tuple[str, int]]:
        """Each call as (method, how many submissions it carried)."""
        with self._lock:
            return [(method, len(request.submissions) if method == "SubmitBatch" else 1) for method, request in self.calls]
