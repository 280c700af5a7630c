"""A real coordinator per test: `node dist/server/cli.js serve` on a free
loopback port with a fresh database, stopped by PID at the end. Nothing is
built here; run `npx tsc -b` (or `npm ci`) at the repository root first.
With REPRISE_COORDINATOR_BIN set, the single executable it names runs instead."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import grpc
import pytest

import reprise.client as client_module
from reprise import Client, Worker

from _support import CLI, COORDINATOR_BIN, REPO, CallLog, Coordinator


@pytest.fixture(scope="session")
def coordinator_cli() -> Path:
    if COORDINATOR_BIN:
        if not Path(COORDINATOR_BIN).is_file():
            pytest.exit(f"REPRISE_COORDINATOR_BIN={COORDINATOR_BIN} is not a file", returncode=2)
        return Path(COORDINATOR_BIN)
    if not CLI.exists():
        pytest.exit(f"{CLI} is missing: build the coordinator first (npm ci, or npx tsc -b, at {REPO})", returncode=2)
    return CLI


@pytest.fixture(scope="session")
def coordinator_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HOME for the single executable: one per session, so its cache of unpacked files is reused."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture
def coordinator(coordinator_cli: Path, coordinator_home: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Coordinator]:
    marker = request.node.get_closest_marker("coordinator_args")
    server = Coordinator(tmp_path / "reprise.db", tmp_path / "coordinator.log", marker.args if marker else (), coordinator_home)
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


@pytest.fixture
def call_log(monkeypatch: pytest.MonkeyPatch) -> CallLog:
    """Spies on the channel of every Client made in the test (see CallLog)."""
    log = CallLog()
    real_open_channel = client_module.open_channel
    monkeypatch.setattr(client_module, "open_channel", lambda *args: grpc.intercept_channel(real_open_channel(*args), log))
    return log
