"""The broker goes away mid-run: stopped for 20 s (60 s in `make soak`), and once killed hard. The dataflow waits
and carries on, or stops with one clear line; either way a restart finishes exactly once."""

import signal
import time

import pytest

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import make_topics, start_dataflow, stop
from tests.integration.test_exactly_once import finish, preload

pytestmark = pytest.mark.integration

OUTAGE_S = float(__import__("os").environ.get("CLICKSTREAM_OUTAGE_SECONDS", "20"))


def test_broker_stopped_for_a_while_then_killed_hard(own_broker, tmp_path):
    outage_then_hard_kill(own_broker, tmp_path, OUTAGE_S)


@pytest.mark.soak
def test_soak_broker_stopped_for_a_minute_then_killed_hard(own_broker, tmp_path):
    outage_then_hard_kill(own_broker, tmp_path, 60)


def outage_then_hard_kill(own_broker, tmp_path, outage_s: float):
    broker = own_broker(19292)
    topics = make_topics(broker.address)
    inputs = preload(topics, 100000, seed=17)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    runs = []

    def ensure_running():
        if not runs or runs[-1].poll() is not None:
            runs.append(start_dataflow(topics.env(), *flags, log=tmp_path / f"run-{len(runs)}.log"))

    ensure_running()
    time.sleep(2.5)  # mid-backlog
    broker.down()
    time.sleep(outage_s)
    broker.up()
    time.sleep(5)
    outcomes = [runs[-1].poll()]
    ensure_running()
    time.sleep(3)
    broker.kill()  # no clean shutdown: the broker recovers its log on start
    broker.up()
    time.sleep(5)
    outcomes.append(runs[-1].poll())
    ensure_running()
    time.sleep(2)
    for run in runs:
        if run.poll() is None:
            stop(run, signal.SIGKILL)
    # Whoever stopped on its own did so with one clear line, not a traceback.
    for i, run in enumerate(runs[:-1]):
        text = (tmp_path / f"run-{i}.log").read_text()
        assert "Traceback" not in text and "panicked" not in text, text[-3000:]
        assert [line for line in text.splitlines() if line.startswith("clickstream: ")], text[-3000:]
    print(f"dataflow exit statuses after the outage and after the hard kill: {outcomes}")
    finish(topics, flags)
    assert_matches(topics, inputs)
