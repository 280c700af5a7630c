"""One Reprise worker process, started by bench.py: the Python client's Worker
at concurrency 64 with one sync task, as a user writes it (README: `Worker(address,
concurrency=...)`, `@worker.task(name=..., retries=Retries(...))`, start/stop).

Configuration comes from the environment: BENCH_WORKER (JSON: address, task,
mode, expected, concurrency, retry_delay) and BENCH_REPORT_FD (see recorder.py).
SIGTERM or SIGINT stops it with `worker.stop(grace=5)`.
"""
from __future__ import annotations

import json
import os
import signal
import threading

from reprise import Retries, Worker

from recorder import Recorder


def main() -> None:
    config = json.loads(os.environ["BENCH_WORKER"])
    recorder = Recorder.from_environment()
    retries = None
    if config["mode"] == "failonce":
        # W2: Retries(limit=1, backoff=(0, 0)), the smallest delay; W4: (1, 1).
        delay = float(config["retry_delay"])
        retries = Retries(limit=1, backoff=(delay, delay))
    worker = Worker(config["address"], concurrency=int(config["concurrency"]))

    @worker.task(name=config["task"], retries=retries)
    def bench(args, ctx):
        recorder.work(args, ctx.attempt)
        recorder.finished(ctx.execution_id)
        return None

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    worker.start()  # declares the task (raises if refused), then long-polls in the background
    recorder.send({"type": "ready"})
    while not stop.wait(1.0):
        pass
    worker.stop(grace=5)


if __name__ == "__main__":
    main()
