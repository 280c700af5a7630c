"""Example worker: `greet` fails its first attempt with a retryable error and
succeeds on the second, after a short backoff.

    python examples/worker.py --address 127.0.0.1:50051   (or set REPRISE_ADDR)

Stop it with Ctrl-C or SIGTERM: it finishes what it is running, then exits.
"""
from __future__ import annotations

import argparse
import logging
import os

from reprise import Retries, Worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("REPRISE_ADDR", "127.0.0.1:50051"), help="coordinator host:port")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    worker = Worker(options.address, concurrency=4)

    # Up to 3 retries, 1 s then 1.5 s then 2 s apart, but only for errors that
    # look transient: anything else fails the execution at once.
    @worker.task(retries=Retries(limit=3, backoff=(1, 2), when=(ConnectionError, TimeoutError)))
    def greet(args, ctx):
        print(f"greet: attempt {ctx.attempt} of execution {ctx.execution_id}", flush=True)
        if ctx.attempt == 1:
            raise ConnectionError("the first attempt always fails, to show a retry")
        return {"greeting": f"Hello, {args['name']}!", "attempt": ctx.attempt}

    print(f"worker: serving 'greet' from {options.address}", flush=True)
    worker.run()
    print("worker: stopped", flush=True)


if __name__ == "__main__":
    main()
