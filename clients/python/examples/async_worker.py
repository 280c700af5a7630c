"""Example worker with an `async def` handler: the same `greet` as worker.py
(its first attempt fails with a retryable error, the second succeeds), awaited
on the worker's one event loop, next to a blocking handler on its threads.

    python examples/async_worker.py --address 127.0.0.1:50051   (or set REPRISE_ADDR)

Stop it with Ctrl-C or SIGTERM: it finishes what it is running, then exits.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time

from reprise import Retries, Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("REPRISE_ADDR", "127.0.0.1:50051"), help="coordinator host:port")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    # At most 16 attempts at once, async and blocking ones together.
    worker = Worker(options.address, concurrency=16)

    @worker.task(retries=Retries(limit=3, backoff=(1, 2), when=(ConnectionError, TimeoutError)))
    async def greet(args, ctx):
        print(f"greet: attempt {ctx.attempt} of execution {ctx.execution_id}", flush=True)
        await asyncio.sleep(0.05)  # stands for awaited I/O: other attempts run meanwhile
        if ctx.attempt == 1:
            raise ConnectionError("the first attempt always fails, to show a retry")
        return {"greeting": f"Hello, {args['name']}!", "attempt": ctx.attempt}

    # A plain `def` handler may block: it runs on one of the worker's threads, not on the loop.
    @worker.task
    def resize(args):
        time.sleep(0.05)  # stands for blocking work
        return {"resized": args}

    print(f"worker: serving 'greet' (async) and 'resize' from {options.address}", flush=True)
    worker.run()
    print("worker: stopped", flush=True)


if __name__ == "__main__":
    main()
