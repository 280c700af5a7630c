"""Example caller: submits `greet`, prints each state change, then the result.

    python examples/caller.py --address 127.0.0.1:50051 --name Ada   (or set REPRISE_ADDR)
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from reprise import Client, ExecutionError, ExecutionState


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default=os.environ.get("REPRISE_ADDR", "127.0.0.1:50051"), help="coordinator host:port")
    parser.add_argument("--name", default="world")
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait for the result")
    options = parser.parse_args()

    with Client(options.address) as client:
        handle = client.submit("greet", {"name": options.name})
        print(f"submitted {handle.id}", flush=True)
        for snapshot in handle.watch(timeout=options.timeout):
            state = ExecutionState.Name(snapshot.state).removeprefix("EXECUTION_STATE_")
            print(f"  {state:<9} attempts={len(snapshot.attempts)}", flush=True)
        try:
            result = handle.result()
        except ExecutionError as error:
            print(f"failed: {error}", file=sys.stderr)
            return 1
        print(f"result: {json.dumps(result, ensure_ascii=False)}", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
