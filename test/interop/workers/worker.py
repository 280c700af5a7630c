"""The Python worker of the cross-language interop suite (test/interop/interop.test.ts).
It uses only the Python client library.

    python worker.py --address HOST:PORT --worker-id ID

Tasks:
  py.echo   answers {"lang": "python", "attempt": n, "echo": <the arguments>};
  py.flaky  2 retries 0.2 s apart, for ConnectionError only; attempt 1 raises
            ConnectionError, later attempts answer like py.echo;
  handoff   2 immediate retries (the Go worker declares the same); prints that it
            started, then hangs until told to stop, so the suite can SIGKILL it
            mid-attempt.

Every attempt prints "started TASK EXECUTION_ID attempt N" on stdout first.
"""
from __future__ import annotations

import argparse

from reprise import Retries, Worker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--worker-id", required=True)
    options = parser.parse_args()

    worker = Worker(options.address, concurrency=4, worker_id=options.worker_id, lease_duration=1.0, poll_wait=5.0)

    def started(ctx) -> None:
        print(f"started {ctx.task} {ctx.execution_id} attempt {ctx.attempt}", flush=True)

    @worker.task(name="py.echo")
    def echo(args, ctx):
        started(ctx)
        return {"lang": "python", "attempt": ctx.attempt, "echo": args}

    @worker.task(name="py.flaky", retries=Retries(limit=2, backoff=(0.2, 0.2), when=ConnectionError))
    def flaky(args, ctx):
        started(ctx)
        if ctx.attempt == 1:
            raise ConnectionError("refused (simulated, attempt 1)")
        return {"lang": "python", "attempt": ctx.attempt, "echo": args}

    @worker.task(name="handoff", retries=2)
    def handoff(args, ctx):
        started(ctx)
        ctx.cancelled.wait(60)
        ctx.raise_if_cancelled()
        return {"lang": "python", "attempt": ctx.attempt, "echo": args}

    print(f"worker {options.worker_id}: serving py.echo, py.flaky, handoff", flush=True)
    worker.run(grace=5)
    print("worker: stopped", flush=True)


if __name__ == "__main__":
    main()
