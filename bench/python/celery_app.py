"""The Celery side of the Python benchmark: one app and one task, as a user
writes them, imported both by bench.py (the caller) and by the worker that
bench.py starts with Celery's own command line:

    python -m celery -A celery_app worker --pool threads --concurrency 64 \
        --queues <queue> --loglevel WARNING --without-gossip --without-mingle --without-heartbeat

Configuration comes from the environment: BENCH_CELERY (JSON: broker_url,
queue, retry_delay), and in the worker also BENCH_WORKER and BENCH_REPORT_FD
(see recorder.py).

Settings, and why:
- Redis broker only: no result backend (`task_ignore_result`). The worker
  counts completions itself, and bench.py confirms the end in Redis: the
  queue is empty and kombu's `unacked` hash is empty, i.e. every message has
  been acknowledged.
- `task_acks_late=True`: a message is acknowledged (removed from `unacked`)
  after its task returns, the setting closest to Reprise, where an attempt
  ends only when its outcome is reported.
- `worker_prefetch_multiplier=4`, Celery's default, stated so that it is
  visible: with 64 threads the worker holds up to 256 reserved messages.
  Reprise's worker leases at most as many attempts as it has free slots (64).
- The retry goes through `self.retry(exc=..., countdown=...)` with
  `max_retries=1`: countdown 0 (W2) publishes the retry without an ETA, so it
  goes straight back to the queue; countdown 1 (W4) publishes it with an ETA
  of now + 1 s, which the worker holds in memory until it is due.
- The pool is `threads` (see bench.py's Celery docstring).
"""
from __future__ import annotations

import json
import os

from celery import Celery, signals

from recorder import Recorder

_config = json.loads(os.environ["BENCH_CELERY"])
RETRY_DELAY = float(_config["retry_delay"])

app = Celery("bench", broker=_config["broker_url"])
app.conf.update(
    task_default_queue=_config["queue"],
    task_acks_late=True,
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    worker_redirect_stdouts=False,
)

# Only in the worker process: bench.py imports this module too, to send tasks.
recorder = Recorder.from_environment() if "BENCH_REPORT_FD" in os.environ else None


@app.task(bind=True, name="bench", max_retries=1)
def bench(self, args):
    try:
        recorder.work(args, self.request.retries + 1)
    except Exception as error:
        # The retry as the issue asks for it: self.retry with a countdown.
        raise self.retry(exc=error, countdown=RETRY_DELAY)
    recorder.finished(self.request.id)


@signals.worker_ready.connect
def _ready(**_):
    if recorder is not None:
        recorder.send({"type": "ready"})
