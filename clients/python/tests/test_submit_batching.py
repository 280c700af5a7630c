"""Micro-batched submits: concurrent Client.submit calls share SubmitBatch calls,
and each caller still gets its own answer, error, idempotency answer and deadline.
Calls are counted on the wire with a spy on the client's channel (CallLog)."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

import reprise.client as client_module
from reprise import Client, ExecutionState
from reprise.v1 import execution_service_pb2

from _support import wait_for


def queued(client: Client) -> int:
    """How many submits wait for the call in flight (the test's signal that they have arrived)."""
    with client._submits._lock:
        return len(client._submits._queue)


def keys_sent(calls) -> list[str]:
    """The idempotency key of every submission in `calls` (CallLog.calls), in order."""
    return [
        key for method, request in calls
        for key in ([s.idempotency_key for s in request.submissions] if method == "SubmitBatch" else [request.idempotency_key])
    ]


def submit_while_one_is_held(client: Client, call_log, submits: list) -> tuple[object, list]:
    """Holds a lone Submit in flight, makes `submits` (callables) from threads of
    their own until all have queued, then lets the held call return. Returns the
    held submit's handle and each callable's handle or error, in order."""
    call_log.hold("Submit")
    first: dict = {}
    held = threading.Thread(target=lambda: first.update(handle=client.submit("batched", {"n": "first"})))
    held.start()
    wait_for(call_log.held.is_set, message="the first submit to be in flight")
    answers: list = [None] * len(submits)

    def run(index: int) -> None:
        try:
            answers[index] = submits[index]()
        except Exception as error:  # noqa: BLE001 - each caller's own error is what the test checks
            answers[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(submits))]
    for thread in threads:
        thread.start()
    wait_for(lambda: queued(client) == len(submits), message=f"{len(submits)} submits to queue behind the call in flight")
    call_log.release()
    for thread in [held, *threads]:
        thread.join(30)
    return first["handle"], answers


def test_a_lone_submit_goes_out_at_once_as_a_plain_submit(coordinator, call_log):
    with Client(coordinator.address) as client:
        handles = [client.submit("alone", n) for n in range(3)]
    assert call_log.methods() == ["Submit"] * 3
    assert len({h.id for h in handles}) == 3


def test_submits_made_while_a_call_is_in_flight_go_out_as_one_submit_batch(coordinator, call_log):
    with Client(coordinator.address) as client:
        submits = [lambda n=n: client.submit("batched", {"n": n}) for n in range(5)]
        first, handles = submit_while_one_is_held(client, call_log, submits)
        assert call_log.sizes() == [("Submit", 1), ("SubmitBatch", 5)]
        # Each caller has its own execution, with its own arguments.
        assert len({first.id, *(h.id for h in handles)}) == 6
        for n, handle in enumerate(handles):
            assert client.codec.decode(handle.get().arguments) == {"n": n}
            assert handle.execution.state == ExecutionState.EXECUTION_STATE_PENDING


def test_a_refused_batch_is_resent_one_submission_at_a_time(coordinator, call_log):
    with Client(coordinator.address) as client:
        # A task name with a space is INVALID_ARGUMENT, which refuses the whole SubmitBatch.
        tasks = ["good", "bad name", "good", "good"]
        submits = [lambda t=t, n=n: client.submit(t, n) for n, t in enumerate(tasks)]
        _, answers = submit_while_one_is_held(client, call_log, submits)
    assert call_log.sizes() == [("Submit", 1), ("SubmitBatch", 4)] + [("Submit", 1)] * 4
    refused = answers[1]
    assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task" in refused.details()
    # The others were created, each with its own execution.
    created = [answers[i] for i in (0, 2, 3)]
    assert all(not isinstance(a, Exception) for a in created), answers
    assert len({a.id for a in created}) == 3


@pytest.mark.coordinator_args("--max-batch-size", "2")
def test_a_batch_over_the_coordinators_max_batch_size_falls_back_to_single_submits(coordinator, call_log):
    with Client(coordinator.address) as client:
        handles = client.submit_many("small_batches", [1, 2, 3])
    assert call_log.sizes() == [("SubmitBatch", 3)] + [("Submit", 1)] * 3
    assert [client.codec.decode(h.execution.arguments) for h in handles] == [1, 2, 3]


def test_submit_many_sends_at_most_1000_submissions_per_call_and_keeps_their_order(coordinator, call_log):
    with Client(coordinator.address) as client:
        handles = client.submit_many("bulk", range(2500))
    assert sorted(call_log.sizes()) == [("SubmitBatch", 500), ("SubmitBatch", 1000), ("SubmitBatch", 1000)]
    assert [client.codec.decode(h.execution.arguments) for h in handles] == list(range(2500))
    assert len({h.id for h in handles}) == 2500


def test_each_submit_in_a_batch_gets_its_own_idempotency_answer(coordinator, call_log):
    with Client(coordinator.address) as client:
        earlier = client.submit("keyed", "earlier", idempotency_key="k-existing")
        call_log.calls.clear()
        submits = [
            lambda: client.submit("keyed", "repeat", idempotency_key="k-existing"),
            lambda: client.submit("keyed", "new-1", idempotency_key="k-new"),
            lambda: client.submit("keyed", "new-2", idempotency_key="k-new"),
            lambda: client.submit("keyed", "unkeyed"),
        ]
        _, answers = submit_while_one_is_held(client, call_log, submits)
    assert [size for _, size in call_log.sizes()] == [1, 4]
    repeat, new_1, new_2, unkeyed = answers
    assert repeat.id == earlier.id and client.codec.decode(repeat.execution.arguments) == "earlier"
    # Two submits with one key in the same batch: one execution, created by the first.
    assert new_1.id == new_2.id and client.codec.decode(new_2.execution.arguments) == "new-1"
    assert unkeyed.id not in (earlier.id, new_1.id)
    assert [a.existing for a in answers] == [True, False, True, False]


def test_a_submit_that_outlives_its_deadline_while_queued_fails_alone_and_is_never_sent(coordinator, call_log, monkeypatch):
    with Client(coordinator.address) as client:
        call_log.hold("Submit")
        first: dict = {}
        held = threading.Thread(target=lambda: first.update(handle=client.submit("deadline", "first")))
        held.start()
        wait_for(call_log.held.is_set, message="the first submit to be in flight")
        # Only submits made from now on have this short deadline.
        monkeypatch.setattr(client_module, "RECONNECT_TIMEOUT", 0.3)
        with pytest.raises(grpc.RpcError) as late:
            client.submit("deadline", "queued")
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        call_log.release()
        held.join(10)
        assert first["handle"].execution.state == ExecutionState.EXECUTION_STATE_PENDING
        assert call_log.sizes() == [("Submit", 1)]
        listed = client._stub.ListExecutions(execution_service_pb2.ListExecutionsRequest(task="deadline"), timeout=10)
    assert [e.id for e in listed.executions] == [first["handle"].id]


class Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE

    def details(self):
        return "injected fault"


def test_after_a_transient_failure_only_keyed_submits_are_resent(coordinator, call_log, monkeypatch):
    with Client(coordinator.address) as client:
        # Inject the fault: the first SubmitBatch fails with UNAVAILABLE before it reaches the wire.
        batcher = client._submits
        real_send_batch = batcher._send_batch
        failed = []

        def send_batch(batch):
            if failed:
                return real_send_batch(batch)
            failed.extend(pending.request.idempotency_key for pending in batch)
            for pending in batch:
                batcher.settle(pending, Unavailable())
            batcher._call_ended()

        monkeypatch.setattr(batcher, "_send_batch", send_batch)
        submits = [
            lambda: client.submit("resent", "a", idempotency_key="resent-a"),
            lambda: client.submit("resent", "b", idempotency_key="resent-b"),
            lambda: client.submit("resent", "c"),
        ]
        _, answers = submit_while_one_is_held(client, call_log, submits)
    keyed_a, keyed_b, unkeyed = answers
    assert sorted(failed) == ["", "resent-a", "resent-b"]
    assert isinstance(unkeyed, grpc.RpcError) and unkeyed.code() == grpc.StatusCode.UNAVAILABLE
    assert client.codec.decode(keyed_a.execution.arguments) == "a" and client.codec.decode(keyed_b.execution.arguments) == "b"
    # After the held Submit, only the keyed two went out again (alone or together, as their backoffs fell).
    assert sorted(keys_sent(call_log.calls[1:])) == ["resent-a", "resent-b"]


def test_keyed_submits_made_while_the_coordinator_is_down_are_sent_once_it_is_back(coordinator, call_log):
    with Client(coordinator.address) as client:
        client.submit("warmup")
        coordinator.stop()
        keys = {f"down-{n}" for n in range(4)}
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(client.submit, "down", n, idempotency_key=f"down-{n}") for n in range(4)]
            wait_for(lambda: set(keys_sent(call_log.calls)) >= keys, message="each submit to fail while the coordinator is down")
            coordinator.start()
            handles = [future.result(timeout=30) for future in futures]
    assert [client.codec.decode(h.execution.arguments) for h in handles] == [0, 1, 2, 3]


def test_submit_many_answers_each_item_and_raises_the_first_error_after_all_are_answered(coordinator, call_log):
    with Client(coordinator.address) as client:
        with pytest.raises(grpc.RpcError) as refused:
            client.submit_many("many", [1, 2, 3], idempotency_keys=["m-1", "x" * 300, "m-3"])
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The valid ones were created: sending the list again returns them, creating nothing.
        again = client.submit_many("many", [1, 3], idempotency_keys=["m-1", "m-3"])
    assert call_log.sizes()[:4] == [("SubmitBatch", 3), ("Submit", 1), ("Submit", 1), ("Submit", 1)]
    assert [client.codec.decode(h.execution.arguments) for h in again] == [1, 3]
    assert call_log.sizes()[4:] == [("SubmitBatch", 2)]
    with Client(coordinator.address) as other:
        listed = other._stub.ListExecutions(execution_service_pb2.ListExecutionsRequest(task="many"), timeout=10)
    assert len(listed.executions) == 2


def test_submit_many_wants_one_idempotency_key_per_item(client):
    with pytest.raises(ValueError, match="idempotency_keys: one per item"):
        client.submit_many("many", [1, 2], idempotency_keys=["only-one"])


def test_a_submit_after_close_raises_and_sends_nothing(coordinator, call_log):
    client = Client(coordinator.address)
    client.close()
    with pytest.raises(ValueError, match="closed"):
        client.submit("closed")
    assert call_log.methods() == []


def test_submit_async_shares_a_submit_batch_with_the_clients_other_submits(coordinator, call_log):
    with Client(coordinator.address) as client:
        submits = [lambda n=n: asyncio.run(client.submit_async("awaited", n)) for n in range(4)]
        _, handles = submit_while_one_is_held(client, call_log, submits)
    assert call_log.sizes() == [("Submit", 1), ("SubmitBatch", 4)]
    assert [client.codec.decode(h.execution.arguments) for h in handles] == [0, 1, 2, 3]


def test_submit_async_does_not_block_the_event_loop_while_it_waits(coordinator):
    async def main(client: Client) -> tuple[list, int]:
        ticks = 0
        ticking = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                if ticks == 20:
                    ticking.set()
                await asyncio.sleep(0.005)

        ticker_task = asyncio.create_task(ticker())
        # Down: the submits are resent until the coordinator is back, and the loop must go on meanwhile.
        coordinator.stop()
        submits = asyncio.gather(*(client.submit_async("awaited", n, idempotency_key=f"a-{n}") for n in range(5)))
        await ticking.wait()
        await asyncio.to_thread(coordinator.start)
        handles = await submits
        ticker_task.cancel()
        return handles, ticks

    with Client(coordinator.address) as client:
        client.submit("warmup")
        handles, ticks = asyncio.run(main(client))
    assert ticks >= 20
    assert [client.codec.decode(h.execution.arguments) for h in handles] == [0, 1, 2, 3, 4]
