"""Exactly once through crashes: SIGKILL at random moments, downtime, SIGTERM.

Each test pre-loads the input with the generator's traffic (late, out-of-order and malformed
events included), disturbs the running dataflow, finishes the job with a bounded run on the
same recovery store, and then compares every output topic with the oracle, demanding that each
(user, window), (url, window) and dead letter is there exactly once (read_committed).
"""

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import ROOT, read_topic, run_dataflow, start_dataflow, stop, wait_for

pytestmark = pytest.mark.integration

T0 = 1767225600000


def preload(topics, count, seed=3, users=400):
    result = subprocess.run(
        [sys.executable, "-m", "clickstream.generate", "--count", str(count), "--users", str(users),
         "--seed", str(seed), "--late-fraction", "0.02", "--out-of-order-fraction", "0.1",
         "--malformed-fraction", "0.01", "--start-ms", str(T0),
         "--topic", topics.input, "--brokers", topics.brokers],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    inputs = read_topic(topics.brokers, topics.input)
    assert len(inputs) == count
    return inputs


def finish(topics, flags, **env):
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1, **env), *flags, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def end_offsets(brokers, topic):
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "offsets"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    total = sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts)
    consumer.close()
    return total


def kill_repeatedly(topics, flags, kills, rng, tmp_path, low=0.5, high=4.0, downtime=0.0,
                    progress=None, after_progress=False, **env):
    """Start live, SIGKILL after a random time, `kills` times; returns the kill times.

    `after_progress`: the random time counts from the moment the run committed new output
    (a restart first replays and suppresses what the last one committed after its snapshot),
    so that every run does real work before it dies. `progress`, a list, gets the user
    topic's end offset after each kill."""
    times = []
    committed = end_offsets(topics.brokers, topics.user)
    for k in range(kills):
        log = tmp_path / f"run-{k}.log"
        flow = start_dataflow(topics.env(**env), *flags, log=log)
        if after_progress:
            wait_for(lambda: flow.poll() is not None or
                     end_offsets(topics.brokers, topics.user) > committed + 3,
                     timeout=120, interval=0.2, what=f"run {k} to commit new output")
        delay = rng.uniform(low, high)
        time.sleep(delay)
        assert flow.poll() is None, log.read_text()[-3000:]
        stop(flow, signal.SIGKILL)
        times.append(round(delay, 2))
        committed = end_offsets(topics.brokers, topics.user)
        if progress is not None:
            progress.append(committed)
        time.sleep(downtime)
    return times


def test_sigkill_at_random_moments_loses_and_duplicates_nothing(topics, tmp_path):
    seed = int(os.environ.get("CLICKSTREAM_CHAOS_SEED", "20261126"))
    inputs = preload(topics, 40000)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    # A 1 s session gap and 15 s maximum: sessions close (cut by both rules) all along the
    # run, so kills also fall between a session's emission and its commit.
    env = {"CLICKSTREAM_SESSION_GAP_SECONDS": 1, "CLICKSTREAM_SESSION_MAX_SECONDS": 15}
    times = kill_repeatedly(topics, flags, 4, random.Random(seed), tmp_path, 0.0, 1.5,
                            after_progress=True, **env)
    finish(topics, flags, **env)
    expected = assert_matches(topics, inputs, session_gap_ms=1000, session_max_ms=15_000)
    cut = sum(1 for s in expected.sessions.values() if s["duration_ms"] > 14_000)
    assert len(expected.sessions) > 1000 and cut > 10  # both rules at work
    print(f"kills after {times} s (seed {seed}); {len(expected.user)} user windows and "
          f"{len(expected.sessions)} sessions exact")


def test_downtime_longer_than_the_lateness_changes_nothing(topics, tmp_path):
    inputs = preload(topics, 30000, seed=5)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    settings = dict(CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=2)
    # Killed mid-backlog and kept down for 5 s, longer than W + L: replayed events must not
    # turn late (bytewax's EventClock would have moved its watermark across the downtime).
    kill_repeatedly(topics, flags, 2, random.Random(7), tmp_path, 1.0, 2.0, downtime=5.0, **settings)
    finish(topics, flags, **settings)
    assert_matches(topics, inputs, window_ms=1000, lateness_ms=2000)


def test_sigterm_stops_promptly_and_a_restart_loses_and_duplicates_nothing(topics, tmp_path):
    inputs = preload(topics, 30000, seed=11)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    flow = start_dataflow(topics.env(), *flags, log=tmp_path / "run.log")
    time.sleep(2.5)
    assert flow.poll() is None
    began = time.monotonic()
    status = stop(flow, signal.SIGTERM, timeout=10)
    assert time.monotonic() - began < 5
    assert status == 128 + signal.SIGTERM
    assert "stopped by SIGTERM; the next start resumes from the last snapshot" in (
        tmp_path / "run.log").read_text()
    finish(topics, flags)
    assert_matches(topics, inputs)


def test_resuming_from_an_older_snapshot_suppresses_what_kafka_already_has(topics, tmp_path):
    """The window that read-back de-duplication exists for: Kafka has committed epochs that
    the recovery store does not know of (a crash between the two commits, or a store restored
    from an older backup). Made deterministic here by restoring an older copy of the store."""
    import shutil

    inputs = preload(topics, 80000, seed=13)
    store = tmp_path / "store"
    flags = ("-r", str(store), "-s", "1", "-b", "0")
    kill_repeatedly(topics, flags, 1, random.Random(1), tmp_path, 1.2, 1.2)  # mid-backlog
    shutil.copytree(store, tmp_path / "older")
    committed_then = len(read_topic(topics.brokers, topics.user))
    flow = start_dataflow(topics.env(), *flags, log=tmp_path / "second.log")
    wait_for(lambda: len(read_topic(topics.brokers, topics.user)) > committed_then + 100,
             timeout=30, what="the second run to commit more windows")
    time.sleep(1.5)
    stop(flow, signal.SIGKILL)
    shutil.rmtree(store)
    shutil.copytree(tmp_path / "older", store)

    result = finish(topics, flags)
    assert "will not be written again" in result.stderr
    assert_matches(topics, inputs)


@pytest.mark.soak
def test_soak_thirty_kills_over_a_million_events(topics, tmp_path):
    """`make soak`: the long run of the SIGKILL test (CLICKSTREAM_SOAK_EVENTS, _KILLS to change)."""
    count = int(os.environ.get("CLICKSTREAM_SOAK_EVENTS", "1000000"))
    kills = int(os.environ.get("CLICKSTREAM_SOAK_KILLS", "30"))
    seed = int(os.environ.get("CLICKSTREAM_CHAOS_SEED", "20261126"))
    inputs = preload(topics, count, seed=seed % 1000, users=20000)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    began = time.monotonic()
    progress = []
    times = kill_repeatedly(topics, flags, kills, random.Random(seed), tmp_path, 0.0, 2.0,
                            progress=progress, after_progress=True)
    finish(topics, flags)
    expected = assert_matches(topics, inputs)
    suppressed = sum((tmp_path / f"run-{k}.log").read_text().count("will not be written again")
                     for k in range(kills))
    print(f"soak: {count} events, {kills} SIGKILLs at {times} s (seed {seed}), "
          f"{len(expected.user)} user / {len(expected.page)} page windows and "
          f"{len(expected.dead)} dead letters exactly once; {suppressed} resumes suppressed "
          f"re-emitted records; user topic end offset after each kill {progress}; "
          f"{time.monotonic() - began:.0f} s")
