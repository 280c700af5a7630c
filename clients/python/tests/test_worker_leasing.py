"""How the worker keeps its slots busy and its reports few: a slot frees when
its handler returns, the worker leases again while reports are still on their
way, and outcomes that finish meanwhile share the next report."""
from __future__ import annotations

import threading

from _support import wait_for


class HeldReports:
    """Injects the fault: the coordinator answers no ReportOutcomes until release().
    Records the results each report carries, as they leave."""

    def __init__(self, worker):
        self._reporter = worker._reporter
        self._real_report = self._reporter._report
        self._answer = threading.Event()
        self.reports: list[list[str]] = []
        self._reporter._report = self._report

    def _report(self, request, **kwargs):
        self.reports.append([outcome.result.data.decode() for outcome in request.outcomes])
        self._answer.wait(10)
        return self._real_report(request, **kwargs)

    def release(self) -> None:
        self._answer.set()


def start_one_slot_worker(make_worker) -> tuple[object, list[int]]:
    worker = make_worker(concurrency=1)
    ran: list[int] = []

    @worker.task
    def job(n):
        ran.append(n)
        return n

    worker.start()
    return worker, ran


def test_a_slot_frees_when_its_handler_returns_and_is_leased_again_while_its_report_is_in_flight(client, make_worker):
    worker, ran = start_one_slot_worker(make_worker)
    held = HeldReports(worker)
    handles = [client.submit("job", n) for n in range(3)]
    # One slot, and the first report is not answered: all three still run, one after the other.
    wait_for(lambda: len(ran) == 3, message="every attempt to run while the first report waits for its answer")
    assert len(held.reports) == 1 and held.reports[0][0] == "0"
    held.release()
    assert [h.result(timeout=10) for h in handles] == [0, 1, 2]


def test_outcomes_finished_while_a_report_is_in_flight_go_out_together_in_the_next_one(client, make_worker):
    worker, ran = start_one_slot_worker(make_worker)
    held = HeldReports(worker)
    handles = [client.submit("job", n) for n in range(4)]
    wait_for(lambda: len(ran) == 4, message="every attempt to run")
    held.release()
    assert [h.result(timeout=10) for h in handles] == [0, 1, 2, 3]
    # The first outcome went out at once; all that finished while it was on its way, in one more report.
    assert len(held.reports) == 2 and held.reports[0][0] == "0"
    assert [result for report in held.reports for result in report] == ["0", "1", "2", "3"]
