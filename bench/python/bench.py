"""Runs one workload of bench/METHOD.md (W1-W4) on one Python system and prints
its figures as ONE JSON line, the last line of stdout:

    <venv python> bench/python/bench.py --system reprise|celery --workload W1|W2|W3|W4 --count N
        [--reprise-address HOST:PORT] [--redis-port PORT] [--concurrency 64] [--timeout SECONDS]
        [--reprise-bulk many|submit|stub] [--reprise-handler def|async] [--samples FILE]

  W1, W2: {"perSecond": ..., "seconds": ..., "enqueueSeconds": ...}
  W3, W4: {"p50": ms, "p95": ms, "p99": ms, "p99Steady": ms, "first": ms, "max": ms, "min": ms}

It starts its own worker process and stops it by PID (SIGTERM, then SIGKILL
after 15 s). The coordinator (reprise) or redis-server (celery) is the
caller's. On any failure it exits 1 with one line on stderr; the worker's log
is kept then, and the line names it.

Reprise: the worker is reprise_worker.py (the client's Worker, concurrency 64,
its attempts on a pool of up to 64 reused threads, as the client runs them;
`--reprise-handler async` makes its handler an `async def`, awaited on the
worker's event loop instead). Each run uses its own task name,
py-<workload>-<pid>, so that runs on one coordinator never meet.
W1/W2 enqueue through the public Client, as users do. By default
(`--reprise-bulk many`) with Client.submit_many, 1,000 submissions per call,
one call after the other: one SubmitBatch each, as the Node harness's 1,000
Client.submit calls of one turn are. `--reprise-bulk submit` instead calls
Client.submit from 64 threads, which the client gathers into SubmitBatch
calls of whatever queued while the previous call was in flight.
`--reprise-bulk stub` is the runner's old path, kept for comparison: SubmitBatch
of 1,000 on the generated stub (ExecutionServiceStub) with the client's
JsonCodec, which bypasses the Client.
W3/W4 submit with Client.submit. The end of W1/W2 is confirmed as the Node
harness does, by GetExecution on the last execution the worker finished,
polled every millisecond until SUCCEEDED; then ListExecutions of the run's
task in state RUNNING and in state PENDING must both come back empty
(the Python worker reports from a separate thread, so the last handler to
finish is not necessarily the last outcome sent).

Celery: the worker is Celery's own command line on celery_app.py (see its
docstring for the settings) with `--pool threads --concurrency 64`. Threads,
because the handler does no work and there are 2 cores: 64 prefork processes
would be 64 interpreters contending for 2 cores (and ~64 x 30 MB), prefork
with 2 processes would not be concurrency 64, and gevent/eventlet need
monkey-patching and another dependency. Threads are also what Reprise's
Python worker uses, one process with 64 handler threads under one GIL.
`--without-gossip --without-mingle --without-heartbeat` leave out the worker-
to-worker events this single worker has no use for (mingle would also delay
its start). Each run claims a Redis database of its own (1-15, the first that
is empty, claimed with SET NX), uses a queue named py-<workload>-<pid>, and
deletes every key of that database when it ends; it never FLUSHALLs.
W1/W2 enqueue with `group(bench.s(...) for 1,000 items).apply_async()`, one
group after the other: the documented way to send many tasks at once. kombu's
Redis transport publishes each message with its own LPUSH on one connection
(it has no batched publish), and `chunks` is not used because it would make
each 1,000 items one message, one task and one ack, not 1,000 executions.
W3/W4 submit with `bench.apply_async(args=...)`. The end of W1/W2 is
confirmed in Redis: the queue's list and kombu's `unacked` hash (where late-
acked messages stay until their task returns and acks) are both empty,
polled every millisecond.

Timing is that of bench/src/workloads.mjs: W1/W2 from just before the first
enqueue call to the confirmed end, with the worker already running and idle;
W3 after the worker has been idle for 500 ms, submits 20 ms apart, latency =
handler start - time.time() taken just before the submit call; W4 submits 5 ms
apart, lateness = retry's handler start - (first attempt's raise + delay),
both taken in the worker. Percentiles are nearest-rank, as in common.mjs.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
BATCH = 1000
# --count at or below these is a smoke-sized run, bounded by 30 s instead of 300 s.
SMOKE = {"W1": 2000, "W2": 2000, "W3": 30, "W4": 20}
MODES = {"W1": "noop", "W2": "failonce", "W3": "latency", "W4": "failonce"}
# The retry delay each workload asks for: the smallest each system allows (0) in W2, 1 s in W4.
RETRY_DELAY = {"W1": 0.0, "W2": 0.0, "W3": 0.0, "W4": 1.0}
STOP_WAIT = 15.0
# What the workers get: this process's environment as it started (bench.py adds to its own).
START_ENV = dict(os.environ)


class BenchError(Exception):
    pass


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def left(self, what: str) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise BenchError(f"{what}: not done within the {self.seconds:g} s timeout")
        return left


def percentile(values: list[float], p: float) -> float:
    """Nearest rank, p in [0, 100] (common.mjs's percentile)."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))
    return ordered[rank]


WARMUP = 5
"""First samples that p99Steady leaves out (workloads.mjs's WARMUP)."""


def summarise(samples: list[float], expected: int, what: str) -> dict:
    """Samples in the order they were taken, as workloads.mjs's summarise."""
    if len(samples) != expected:
        raise BenchError(f"expected {expected} {what}, got {len(samples)}")
    return {
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "p99": percentile(samples, 99),
        "p99Steady": percentile(samples[WARMUP:] or samples, 99),
        "first": samples[0],
        "max": max(samples),
        "min": min(samples),
    }


class WorkerProcess:
    """A worker process with a pipe it writes JSON lines to (recorder.py)."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str):
        read_fd, write_fd = os.pipe()
        self.log = tempfile.NamedTemporaryFile(prefix=f"bench-py-{name}-", suffix=".log", delete=False)
        self.name = name
        self.process = subprocess.Popen(
            argv,
            cwd=HERE,
            env={**env, "BENCH_REPORT_FD": str(write_fd), "BENCH_PARENT_PID": str(os.getpid()), "PYTHONPATH": str(HERE), "PYTHONUNBUFFERED": "1"},
            pass_fds=(write_fd,),
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        os.close(write_fd)
        self.messages: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(read_fd,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                self.messages.put(json.loads(line))
        self.messages.put({"type": "eof"})

    def wait_for(self, kind: str, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"{what}: the {self.name} worker sent no {kind!r} within {timeout:.0f} s")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if message["type"] == kind:
                return message
            if message["type"] == "eof":
                raise BenchError(f"{what}: the {self.name} worker exited ({self.process.wait()}) before {kind!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def forget_log(self) -> None:
        self.log.close()
        os.unlink(self.log.name)


# --- Reprise ----------------------------------------------------------------------------


class RepriseSystem:
    name = "reprise"

    def __init__(self, address: str, workload: str, concurrency: int, bulk: str, handler: str, deadline: Deadline):
        # This process forks the worker while gRPC threads run; gRPC's fork handlers are not needed
        # (the child execs at once) and would only log that they were skipped.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        import grpc
        from reprise import Client, JsonCodec
        from reprise.v1 import execution_service_pb2, execution_service_pb2_grpc, types_pb2

        self.address = address
        self.workload = workload
        self.concurrency = concurrency
        self.bulk = bulk
        self.handler = handler
        self.task = f"py-{workload}-{os.getpid()}"
        self.client = Client(address)
        self.codec = JsonCodec()
        self.messages = execution_service_pb2
        self.states = types_pb2.ExecutionState
        self.channel = grpc.insecure_channel(address)
        self.stub = execution_service_pb2_grpc.ExecutionServiceStub(self.channel)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=min(10.0, deadline.left("connecting")))
        except grpc.FutureTimeoutError:
            self.close()
            raise BenchError(f"no coordinator answers at {address}") from None

    def start_worker(self, mode: str, expected: int) -> WorkerProcess:
        config = {
            "address": self.address, "task": self.task, "mode": mode, "expected": expected,
            "concurrency": self.concurrency, "retry_delay": RETRY_DELAY[self.workload], "handler": self.handler,
        }  # fmt: skip
        env = {**START_ENV, "BENCH_WORKER": json.dumps(config)}
        return WorkerProcess([sys.executable, str(HERE / "reprise_worker.py")], env, "reprise")

    def enqueue_bulk(self, count: int) -> None:
        chunks = [range(start, min(count, start + BATCH)) for start in range(0, count, BATCH)]
        if self.bulk == "many":
            for chunk in chunks:
                self.client.submit_many(self.task, ({"i": i} for i in chunk))
        elif self.bulk == "submit":
            with ThreadPoolExecutor(max_workers=64) as pool:
                for chunk in chunks:
                    list(pool.map(lambda i: self.client.submit(self.task, {"i": i}), chunk))
        else:
            for chunk in chunks:
                submissions = [self.messages.SubmitRequest(task=self.task, arguments=self.codec.encode({"i": i})) for i in chunk]
                response = self.stub.SubmitBatch(self.messages.SubmitBatchRequest(submissions=submissions), timeout=30)
                if len(response.results) != len(submissions):
                    raise BenchError(f"SubmitBatch answered {len(response.results)} of {len(submissions)}")

    def submit_one(self, args: dict) -> None:
        self.client.submit(self.task, args)

    def confirm_done(self, done: dict, deadline: Deadline) -> None:
        # Poll GetExecution on the last execution finished until SUCCEEDED...
        while self.client.execution(done["lastId"]).execution.state != self.states.EXECUTION_STATE_SUCCEEDED:
            deadline.left(f"execution {done['lastId']} SUCCEEDED")
            time.sleep(0.001)
        # ...and then make sure no execution of the run's task is still running or pending.
        for state in (self.states.EXECUTION_STATE_RUNNING, self.states.EXECUTION_STATE_PENDING):
            request = self.messages.ListExecutionsRequest(task=self.task, state=state, page_size=1)
            while self.stub.ListExecutions(request, timeout=10).executions:
                deadline.left(f"no execution of {self.task} left {self.states.Name(state)}")
                time.sleep(0.001)

    def close(self) -> None:
        self.client.close()
        self.channel.close()


# --- Celery -----------------------------------------------------------------------------


class CelerySystem:
    name = "celery"
    OWNER = "reprise-bench:owner"

    def __init__(self, redis_port: int, workload: str, concurrency: int):
        import redis

        self.workload = workload
        self.concurrency = concurrency
        self.queue = f"py-{workload}-{os.getpid()}"
        self.db = None
        for db in range(1, 16):
            with redis.Redis(host="127.0.0.1", port=redis_port, db=db) as candidate:
                owner = candidate.get(self.OWNER)
                if owner is not None and not _alive(int(owner)):
                    # Left by a bench.py that was killed before it could clean up: every key is that run's.
                    _delete_all(candidate)
        for db in range(1, 16):
            candidate = redis.Redis(host="127.0.0.1", port=redis_port, db=db)
            if candidate.set(self.OWNER, os.getpid(), nx=True):
                if candidate.dbsize() == 1:
                    self.db, self.redis = db, candidate
                    break
                candidate.delete(self.OWNER)
            candidate.close()
        if self.db is None:
            raise BenchError(f"no empty Redis database (1-15) on port {redis_port}")
        self.broker_url = f"redis://127.0.0.1:{redis_port}/{self.db}"
        os.environ["BENCH_CELERY"] = json.dumps({"broker_url": self.broker_url, "queue": self.queue, "retry_delay": RETRY_DELAY[workload]})
        import celery_app

        self.app = celery_app.app
        self.task = celery_app.bench

    def start_worker(self, mode: str, expected: int) -> WorkerProcess:
        config = {"mode": mode, "expected": expected, "retry_delay": RETRY_DELAY[self.workload]}
        env = {**START_ENV, "BENCH_CELERY": os.environ["BENCH_CELERY"], "BENCH_WORKER": json.dumps(config)}
        argv = [
            sys.executable, "-m", "celery", "-A", "celery_app", "worker",
            "--pool", "threads", "--concurrency", str(self.concurrency),
            "--queues", self.queue, "--hostname", f"{self.queue}@%h",
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        return WorkerProcess(argv, env, "celery")

    def enqueue_bulk(self, count: int) -> None:
        from celery import group

        for start in range(0, count, BATCH):
            group(self.task.s({"i": i}) for i in range(start, min(count, start + BATCH))).apply_async()

    def submit_one(self, args: dict) -> None:
        self.task.apply_async(args=(args,))

    def confirm_done(self, done: dict, deadline: Deadline) -> None:
        # Every message acknowledged: nothing waiting in the queue, nothing in kombu's unacked hash.
        while True:
            pipe = self.redis.pipeline(transaction=False)
            pipe.llen(self.queue)
            pipe.hlen("unacked")
            if pipe.execute() == [0, 0]:
                return
            deadline.left("every Celery message acknowledged")
            time.sleep(0.001)

    def close(self) -> None:
        self.app.close()
        # Only keys of the database this run claimed while it was empty.
        _delete_all(self.redis)
        self.redis.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _delete_all(client) -> None:
    """Deletes every key of one database by name (never FLUSHALL, never FLUSHDB)."""
    keys = list(client.scan_iter(count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


# --- The workloads ------------------------------------------------------------------------


def throughput(system, worker: WorkerProcess, count: int, deadline: Deadline) -> dict:
    started = time.perf_counter()
    system.enqueue_bulk(count)
    enqueued = time.perf_counter()
    done = worker.wait_for("done", deadline.left("the last completion"), "the last completion")
    system.confirm_done(done, deadline)
    ended = time.perf_counter()
    seconds = ended - started
    return {"perSecond": count / seconds, "seconds": seconds, "enqueueSeconds": enqueued - started}


def paced(system, count: int, gap: float, deadline: Deadline, with_time: bool) -> None:
    first = time.perf_counter()
    for i in range(count):
        system.submit_one({"i": i, "t": time.time()} if with_time else {"i": i})
        wait = first + (i + 1) * gap - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        deadline.left("submitting")


def describe(error: BaseException) -> str:
    """One line: a gRPC error as its code and details, anything else as its message."""
    if callable(getattr(error, "code", None)) and callable(getattr(error, "details", None)):
        text = f"{error.code().name}: {error.details()}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def run(args: argparse.Namespace) -> dict:
    timeout = args.timeout or (30.0 if args.count <= SMOKE[args.workload] else 300.0)
    deadline = Deadline(timeout)
    if args.system == "reprise":
        if not args.reprise_address:
            raise BenchError("--reprise-address is required for --system reprise")
        system = RepriseSystem(args.reprise_address, args.workload, args.concurrency, args.reprise_bulk, args.reprise_handler, deadline)
    else:
        if not args.redis_port:
            raise BenchError("--redis-port is required for --system celery")
        system = CelerySystem(args.redis_port, args.workload, args.concurrency)
    worker = None
    samples = None
    ok = False
    try:
        worker = system.start_worker(MODES[args.workload], args.count)
        worker.wait_for("ready", min(30.0, deadline.left("worker start")), "worker start")
        if args.workload in ("W1", "W2"):
            result = throughput(system, worker, args.count, deadline)
        elif args.workload == "W3":
            # Let the worker settle into its idle wait (long-poll, BRPOP).
            time.sleep(0.5)
            paced(system, args.count, 0.020, deadline, with_time=True)
            done = worker.wait_for("done", deadline.left("the last handler"), "the last handler")
            result = summarise(done["latencies"], args.count, "latencies")
            samples = done["latencies"]
        else:
            paced(system, args.count, 0.005, deadline, with_time=False)
            done = worker.wait_for("done", deadline.left("the last retry"), "the last retry")
            result = summarise(done["lateness"], args.count, "lateness samples")
            samples = done["lateness"]
        worker.stop()
        if args.samples and samples is not None:
            Path(args.samples).write_text(json.dumps(samples) + "\n")
        ok = True
        return result
    except Exception as error:
        if worker is not None:
            raise BenchError(f"{describe(error)} (worker log: {worker.log.name})") from None
        raise
    finally:
        if worker is not None:
            worker.kill()
            if ok:
                worker.forget_log()
        system.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system", required=True, choices=["reprise", "celery"])
    parser.add_argument("--workload", required=True, choices=["W1", "W2", "W3", "W4"])
    parser.add_argument("--count", required=True, type=int)
    parser.add_argument("--reprise-address")
    parser.add_argument("--redis-port", type=int)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, help="seconds for the whole run (default 30 at smoke sizes or below, else 300)")
    parser.add_argument("--samples", help="W3/W4: also write every sample (ms, in the order the worker took them) to this file as a JSON list")
    parser.add_argument(
        "--reprise-bulk", choices=["many", "submit", "stub"], default="many",
        help="W1/W2 enqueue: Client.submit_many of 1,000 (default), Client.submit from 64 threads, or SubmitBatch on the generated stub",
    )  # fmt: skip
    parser.add_argument("--reprise-handler", choices=["def", "async"], default="def", help="the Reprise worker's handler: a def (on its threads) or an async def (on its event loop)")
    args = parser.parse_args()
    # SIGTERM unwinds like an error, so that the worker is stopped and the Redis keys deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        result = run(args)
    except Exception as error:  # noqa: BLE001 - one line on stderr, whatever it was
        message = describe(error)
        print(f"bench.py {args.system} {args.workload}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
