"""One Reprise worker process, started by bench.py: the Python client's Worker
at concurrency 64 with one task, as a user writes it (README: `Worker(address,
concurrency=...)`, `@worker.task(name=..., retries=Retries(...))`, start/stop):
a plain `def` by default, run on the worker's threads, or with handler "async"
an `async def`, awaited on the worker's event loop.

Configuration comes from the environment: BENCH_WORKER (JSON: address, task,
mode, expected, concurrency, retry_delay, handler) and BENCH_REPORT_FD (see recorder.py).
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

    def bench(args, ctx):
        recorder.work(args, ctx.attempt)
        recorder.finished(ctx.execution_id)
        return None

    async def bench_async(args, ctx):
        return bench(args, ctx)

    handler = bench_async if config.get("handler") == "async" else bench
    worker.task(name=config["task"], retries=retries)(handler)

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
