"""Exactly once through restarts that come while windows closed on the idle clock are being
committed: a deterministic reproduction at a fault point, and a restart storm.

Kafka may hold such a window's record before the snapshot that records its closing is
durable; the resumed run closes the window again only after W + L of caught-up time and may
itself be stopped before that (see clickstream/io/sink_state.py for the invariant).
"""

import json
import os
import random
import signal
import subprocess
import threading
import time

import pytest

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import (ROOT, make_topics, produce, read_topic, run_dataflow,
                                        start_dataflow, stop)

pytestmark = pytest.mark.integration

T0 = 1767225600000
FAULT_STATUS = 97  # clickstream.runtime.faults


def event(user: str, ts: int, url: str) -> bytes:
    return json.dumps({"user_id": user, "event_type": "page_view", "url": url, "ts": ts}).encode()


def finish(topics, flags, **env):
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1, **env), *flags, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_an_idle_closed_window_committed_before_its_snapshot_survives_a_second_restart(
        brokers, tmp_path):
    """Run 1 commits user a's window, closed on the idle clock, and dies at the fault point
    before the snapshot of that epoch is persisted. Run 2 resumes with the window open; it
    writes other windows over several snapshots, which move the partition's read-back offset
    past a's record, and is killed before its idle clock closes a's window again (W + L =
    16 s). Run 3 must still not write a's window a second time."""
    topics = make_topics(brokers, input_partitions=1)  # users a, b and urls /a, /c: partition 0
    settings = dict(CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=15,
                    CLICKSTREAM_PARTITION_CHECK_SECONDS=0)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    inputs = produce(brokers, topics.input, [(b"a", event("a", T0 + 100, "/a"), 0)])

    first = start_dataflow(topics.env(CLICKSTREAM_FAULT_POINT="after-commit", **settings), *flags,
                           log=tmp_path / "run-1.log")
    assert first.wait(90) == FAULT_STATUS, (tmp_path / "run-1.log").read_text()[-3000:]
    assert [json.loads(m.value)["user_id"] for m in read_topic(brokers, topics.user)] == ["a"] or \
        [json.loads(m.value)["url"] for m in read_topic(brokers, topics.page)] == ["/a"]

    began = time.monotonic()
    second = start_dataflow(topics.env(**settings), *flags, log=tmp_path / "run-2.log")
    for group in range(5):  # from the second on, each closes user b's windows of the one before
        inputs += produce(brokers, topics.input, [
            (b"b", event("b", T0 + (20 + 16 * group + i) * 1000, "/c"), 0) for i in range(3)])
        time.sleep(1.3)
    time.sleep(1.5)
    assert time.monotonic() - began < 14, "run 2 ran long enough to close a's window again"
    assert second.poll() is None, (tmp_path / "run-2.log").read_text()[-3000:]
    stop(second, signal.SIGKILL)

    finish(topics, flags, **settings)
    assert_matches(topics, inputs, window_ms=1000, lateness_ms=15000)


class Cohorts(threading.Thread):
    """Users arrive in cohorts, a cohort a second, each user with a few clicks on its
    cohort's pages within a second of event time, and never comes back: every window closes
    on the idle clock. Event time follows the wall clock."""

    def __init__(self, topics, users_per_cohort: int = 20):
        super().__init__(daemon=True)
        self.topics = topics
        self.users = users_per_cohort
        self.stopping = threading.Event()
        self.messages = []
        self.rng = random.Random(5)

    def run(self):
        cohort = 0
        start = time.time()
        while not self.stopping.is_set():
            base = T0 + int((time.time() - start) * 1000)
            items = []
            for u in range(self.users):
                user = f"c{cohort}-u{u}"
                for click in range(self.rng.randint(1, 4)):
                    url = f"/c{cohort}/p{self.rng.randint(0, 3)}"
                    items.append((user.encode(), event(user, base + click * 150, url),
                                  self.rng.randint(0, 1)))
            self.messages += produce(self.topics.brokers, self.topics.input, items)
            cohort += 1
            self.stopping.wait(1.0)


def storm(topics, tmp_path, kills: int, rng: random.Random, low: float, high: float):
    """SIGKILL the live dataflow every uniform(low, high) s, restarting it at once."""
    settings = dict(CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=1,
                    CLICKSTREAM_PARTITION_CHECK_SECONDS=0)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    cohorts = Cohorts(topics)
    cohorts.start()
    delays = []
    try:
        for k in range(kills):
            flow = start_dataflow(topics.env(**settings), *flags, log=tmp_path / "run.log")
            delays.append(round(rng.uniform(low, high), 2))
            time.sleep(delays[-1])
            assert flow.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            stop(flow, signal.SIGKILL)
    finally:
        cohorts.stopping.set()
        cohorts.join()
    finish(topics, flags, **settings)
    expected = assert_matches(topics, cohorts.messages, window_ms=1000, lateness_ms=1000)
    return delays, expected


def console_consumer(brokers: str, topic: str) -> list:
    """Kafka's own Java console consumer, read_committed: (key, value) of every record."""
    libs = ROOT / ".local" / "kafka" / "libs"
    result = subprocess.run(
        ["java", "-cp", f"{libs}/*", "org.apache.kafka.tools.consumer.ConsoleConsumer",
         "--bootstrap-server", brokers, "--topic", topic, "--from-beginning",
         "--isolation-level", "read_committed", "--timeout-ms", "8000",
         "--property", "print.key=true", "--property", "key.separator=\t"],
        capture_output=True, text=True, timeout=120)
    # Its own log lines share stdout (it ends by logging the time-out); records are key TAB JSON.
    records = [line.split("\t", 1) for line in result.stdout.splitlines() if "\t{" in line]
    assert records, result.stdout[-2000:] + result.stderr[-2000:]
    return sorted(tuple(record) for record in records)


def test_a_restart_storm_while_idle_closes_are_committed(topics, tmp_path):
    seed = int(os.environ.get("CLICKSTREAM_CHAOS_SEED", "20261129"))
    delays, expected = storm(topics, tmp_path, 6, random.Random(seed), 1.0, 8.0)
    print(f"storm: kills after {delays} s (seed {seed}); {len(expected.user)} user and "
          f"{len(expected.page)} page windows exactly once")
    # The same outputs as Kafka's own Java consumer reads them, read_committed.
    for topic in (topics.user, topics.page):
        ours = sorted((m.key.decode(), m.value.decode()) for m in read_topic(topics.brokers, topic))
        assert console_consumer(topics.brokers, topic) == ours


@pytest.mark.soak
def test_soak_a_hundred_kills_while_idle_closes_are_committed(topics, tmp_path):
    kills = int(os.environ.get("CLICKSTREAM_SOAK_KILLS", "100"))
    seed = int(os.environ.get("CLICKSTREAM_CHAOS_SEED", "20261129"))
    delays, expected = storm(topics, tmp_path, kills, random.Random(seed), 1.0, 8.0)
    print(f"storm soak: {kills} SIGKILLs (seed {seed}), {len(expected.user)} user and "
          f"{len(expected.page)} page windows exactly once")


def test_a_slow_start_does_not_count_as_idle_time(topics, tmp_path):
    """A restart that reads back much (the soak: 38,000 records, 34 s) once let the idle
    clock run from 10 s after the process began, before any source had polled: restored
    windows then closed on that time and their replayed events came out late. Here the first
    sink partition takes 16 s to start; the output must still equal the oracle's."""
    from tests.integration.test_exactly_once import kill_repeatedly, preload

    inputs = preload(topics, 60000, seed=17, users=3000)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    kill_repeatedly(topics, flags, 1, random.Random(3), tmp_path, 1.0, 1.5, after_progress=True)
    slow = start_dataflow(topics.env(CLICKSTREAM_FAULT_POINT="slow-sink-start",
                                     CLICKSTREAM_FAULT_SLEEP_SECONDS=16), *flags,
                          log=tmp_path / "slow.log")
    time.sleep(26)
    assert slow.poll() is None, (tmp_path / "slow.log").read_text()[-3000:]
    stop(slow, signal.SIGKILL)
    finish(topics, flags)
    assert_matches(topics, inputs)
