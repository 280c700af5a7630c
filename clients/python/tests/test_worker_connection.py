"""How the worker talks to the coordinator: batched heartbeats, reconnecting, refused declarations."""
from __future__ import annotations

import threading

import grpc

import pytest

from reprise import Client, Retries, Worker
from reprise._tasks import TaskSpec
from reprise.v1.execution_service_pb2 import ListTasksRequest
from reprise.v1.types_pb2 import RetryPolicy, TaskDefinition

from _support import Coordinator, wait_for


def test_one_heartbeat_rpc_carries_every_in_flight_attempt(client, make_worker):
    worker = make_worker(concurrency=3, lease_duration=0.3)
    release = threading.Event()
    started = []

    @worker.task
    def job(args):
        started.append(args)
        release.wait(10)

    worker.start()
    # A spy, not a fault: record each Heartbeat request on its way out.
    heartbeater = worker._heartbeater
    real_heartbeat = heartbeater._heartbeat
    batches: list[int] = []

    def spy(request, **kwargs):
        batches.append(len(request.lease_tokens))
        return real_heartbeat(request, **kwargs)

    heartbeater._heartbeat = spy
    handles = [client.submit("job", n) for n in range(3)]
    wait_for(lambda: len(started) == 3, message="three attempts to run")
    seen = len(batches)
    wait_for(lambda: len(batches) >= seen + 2, message="two more heartbeats")
    assert batches[-1] == 3, f"heartbeat batch sizes: {batches}"
    release.set()
    for handle in handles:
        handle.result(timeout=10)


def test_a_worker_started_before_the_coordinator_declares_and_serves_once_it_is_up(coordinator, client, make_worker):
    coordinator.stop()
    worker = make_worker()

    @worker.task(retries=Retries(limit=1, backoff=(0.05, 0.05)))
    def late(args, ctx):
        if ctx.attempt == 1:
            raise ConnectionError("retried under the declared policy, so the declaration arrived")
        return "served"

    worker.start()  # the coordinator is down: start() does not block or fail
    coordinator.start()
    assert client.submit("late").result(timeout=20) == "served"


def test_after_a_lease_failure_the_worker_declares_its_tasks_again_so_a_replaced_coordinator_retries_them(
    coordinator, client, make_worker, tmp_path
):
    worker = make_worker()

    @worker.task(retries=Retries(limit=1, backoff=(0.05, 0.05)))
    def redeclared(args, ctx):
        if ctx.attempt == 1:
            raise ConnectionError("retried under the declared policy, so the new coordinator has it")
        return "served"

    worker.start()
    # Replace the coordinator: one on a fresh database, at the same address, knows no task.
    coordinator.stop()
    coordinator.db = tmp_path / "replacement.db"
    coordinator.start()

    def declared() -> bool:
        tasks = client._stub.ListTasks(ListTasksRequest(), timeout=5).tasks
        return any(task.name == "redeclared" and task.HasField("declaration") for task in tasks)

    wait_for(declared, timeout=20, message="the worker to declare its tasks to the new coordinator")
    assert client.submit("redeclared").result(timeout=20) == "served"


def test_start_raises_when_the_coordinator_refuses_the_declarations(coordinator, monkeypatch):
    worker = Worker(coordinator.address)

    @worker.task
    def fine():
        pass

    # Inject what our own validation never sends: a policy the coordinator must refuse.
    invalid = TaskDefinition(name="fine", retry_policy=RetryPolicy(unlimited=True, limit=3))
    monkeypatch.setattr(TaskSpec, "definition", lambda self: invalid)
    with pytest.raises(RuntimeError, match=r"DeclareTasks refused \(INVALID_ARGUMENT\)"):
        worker.start()
    worker.stop()  # a no-op: nothing was left running


@pytest.fixture
def auth_tokens(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("worker worker-secret-0123456789\ncaller caller-secret-0123456789\n")
    return path


def test_bearer_tokens_authorize_the_worker_and_the_caller(auth_tokens, coordinator_cli, tmp_path):
    server = Coordinator(tmp_path / "auth.db", tmp_path / "auth.log", ("--auth-tokens", str(auth_tokens)))
    server.start()
    worker = Worker(server.address, token="worker-secret-0123456789", lease_duration=1.5, poll_wait=5)
    try:

        @worker.task
        def secured(args):
            return args

        worker.start()
        with Client(server.address, token="caller-secret-0123456789") as client:
            assert client.submit("secured", "ok").result(timeout=10) == "ok"
        with Client(server.address) as anonymous:
            with pytest.raises(grpc.RpcError) as refused:
                anonymous.submit("secured", "no")
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        worker.stop(grace=2)
        server.stop()
