"""A real coordinator per test: `node dist/server/cli.js serve` on a free
loopback port with a fresh database, stopped by PID at the end. Nothing is
built here; run `npx tsc -b` (or `npm ci`) at the repository root first."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest

from reprise import Client, Worker
from reprise.v1 import execution_service_pb2, execution_service_pb2_grpc

from _support import wait_for

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "dist" / "server" / "cli.js"
START_TIMEOUT = 20.0


class Coordinator:
    """One `reprise serve` process. restart() keeps the port and the database."""

    def __init__(self, db: Path, log: Path, extra_args: tuple[str, ...] = ()):
        self.extra_args = extra_args
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
        self.process = subprocess.Popen(
            ["node", str(CLI), "serve", "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db), *self.extra_args],
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


@pytest.fixture(scope="session")
def coordinator_cli() -> Path:
    if not CLI.exists():
        pytest.exit(f"{CLI} is missing: build the coordinator first (npm ci, or npx tsc -b, at {REPO})", returncode=2)
    return CLI


@pytest.fixture
def coordinator(coordinator_cli: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Coordinator]:
    marker = request.node.get_closest_marker("coordinator_args")
    server = Coordinator(tmp_path / "reprise.db", tmp_path / "coordinator.log", marker.args if marker else ())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def client(coordinator: Coordinator) -> Iterator[Client]:
    with Client(coordinator.address) as c:
        yield c


@pytest.fixture
def make_worker(coordinator: Coordinator) -> Iterator[Callable[..., Worker]]:
    """Builds workers with short leases and polls; each is stopped after the test."""
    workers: list[Worker] = []

    def make(**options) -> Worker:
        options.setdefault("lease_duration", 1.5)
        options.setdefault("poll_wait", 5.0)
        worker = Worker(coordinator.address, **options)
        workers.append(worker)
        return worker

    yield make
    for worker in workers:
        worker.stop(grace=2)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """A test that leaves a worker's threads running fails: every worker must be stopped."""
    before = set(threading.enumerate())
    yield
    def leaked():
        return [t for t in threading.enumerate() if t not in before and t.name.startswith("reprise-") and t.is_alive()
                and not t.name.startswith("reprise-attempt-")]
    deadline = time.monotonic() + 5
    while leaked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not leaked(), f"leaked threads: {[t.name for t in leaked()]}"
