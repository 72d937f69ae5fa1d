"""The local cluster supervisor's restart rule, with stand-in processes instead of Bytewax."""

import argparse
import subprocess
import sys

from clickstream.runtime import cluster
from clickstream.runtime.exits import RESTART_STATUS


def _exits(status: int, after_s: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c",
                             f"import time, os; time.sleep({after_s}); os._exit({status})"])


def test_a_restart_request_counts_even_when_another_process_fails_first_in_the_list(monkeypatch):
    # Process 0 dies of process 1's absence (status 1, like Bytewax's panicking comm thread);
    # process 1 asked for the restart. Both are gone before the supervisor polls.
    rounds = [[(1, 0.05), (RESTART_STATUS, 0.0)], [(0, 0.0), (0, 0.0)]]
    started = []

    def start(_args):
        plan = rounds[len(started)]
        started.append(plan)
        return [_exits(status, after) for status, after in plan]

    monkeypatch.setattr(cluster, "start", start)
    args = argparse.Namespace(processes=2, max_restarts=3)
    assert cluster.supervise(args) == 0
    assert len(started) == 2  # restarted once, then the bounded run finished


def test_a_plain_failure_stops_the_cluster_with_its_status(monkeypatch):
    monkeypatch.setattr(cluster, "start", lambda _args: [_exits(3), _exits(0, 5.0)])
    assert cluster.supervise(argparse.Namespace(processes=2, max_restarts=3)) == 3
