"""The README's examples: each example worker (blocking and async) and the caller serve one submission through one retry to success."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("worker_script", ["worker.py", "async_worker.py"])
def test_example_worker_and_caller_serve_a_submission_through_one_retry_to_success(coordinator, worker_script):
    env = {**os.environ, "REPRISE_ADDR": coordinator.address, "PYTHONUNBUFFERED": "1"}
    worker = subprocess.Popen(
        [sys.executable, str(EXAMPLES / worker_script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        caller = subprocess.run(
            [sys.executable, str(EXAMPLES / "caller.py"), "--address", coordinator.address, "--name", "Ada", "--timeout", "20"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        os.kill(worker.pid, signal.SIGTERM)
        worker_output, _ = worker.communicate(timeout=15)
    assert caller.returncode == 0, caller.stderr
    result_line = [line for line in caller.stdout.splitlines() if line.startswith("result: ")]
    assert json.loads(result_line[0].removeprefix("result: ")) == {"greeting": "Hello, Ada!", "attempt": 2}
    assert "greet: attempt 1" in worker_output and "greet: attempt 2" in worker_output
    assert worker.returncode == 0, worker_output
    assert "worker: stopped" in worker_output
