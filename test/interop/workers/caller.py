"""The Python caller of the cross-language interop suite (test/interop/interop.test.ts).
It uses only the Python client library.

    python caller.py --address HOST:PORT --task NAME --args JSON [--timeout S]

Submits one execution, waits through every retry, and prints one JSON line:
{"id", "states", "result"} or {"id", "states", "error": {"kind", "type", "message"}},
where "states" lists the state of every snapshot the watch delivered.
"""
from __future__ import annotations

import argparse
import json

from reprise import Client, ExecutionError, ExecutionState


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--args", default="null", help="the arguments, as JSON")
    parser.add_argument("--timeout", type=float, default=30.0)
    options = parser.parse_args()

    with Client(options.address) as client:
        handle = client.submit(options.task, json.loads(options.args))
        states = [
            ExecutionState.Name(snapshot.state).removeprefix("EXECUTION_STATE_")
            for snapshot in handle.watch(timeout=options.timeout)
        ]
        output = {"id": handle.id, "states": states}
        try:
            output["result"] = handle.result(timeout=options.timeout)
        except ExecutionError as error:
            output["error"] = {"kind": type(error).__name__, "type": error.failure_type, "message": error.failure_message}
        print(json.dumps(output, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
