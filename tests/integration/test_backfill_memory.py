"""`make soak`: a bounded backfill of many TTLs of history runs in flat memory.

Before expiry a bounded run kept every page window open to the end of its input, so memory
grew with the input (about 1.3 GB for 1M events). Now windows behind their shard's horizon
(newest event time minus the TTL) close as the backfill goes, and keys with nothing open are
forgotten. The same input is backfilled twice, with a TTL of 10 minutes and with none, both
sampled; the outputs of the first must equal the oracle's exactly.
"""

import dataclasses
import os
import statistics
import subprocess
import sys
import time

import pytest

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import ROOT, make_topics, read_topic, start_dataflow

pytestmark = [pytest.mark.integration, pytest.mark.soak]

T0 = 1767225600000
EVENTS = int(os.environ.get("CLICKSTREAM_SOAK_BACKFILL_EVENTS", "3000000"))  # 1 ms of event time each
TTL_S = 600


def backfill(topics, ttl_s: int, tmp_path, name: str):
    """Run a bounded backfill with recovery; returns RSS samples (MiB) and its exit status."""
    env = topics.env(CLICKSTREAM_BOUNDED=1, CLICKSTREAM_STATE_TTL_SECONDS=ttl_s)
    flow = start_dataflow(env, "-r", str(tmp_path / f"store-{name}"), "-s", "5", "-b", "0",
                          log=tmp_path / f"{name}.log")
    samples = []
    while flow.poll() is None:
        try:
            with open(f"/proc/{flow.pid}/status") as f:
                samples.append(next(int(line.split()[1]) for line in f
                                    if line.startswith("VmRSS")) / 1024)
        except (OSError, StopIteration):
            pass
        time.sleep(0.5)
    return samples, flow.wait()


def test_soak_a_backfill_of_many_ttls_runs_in_flat_memory(brokers, tmp_path):
    topics = make_topics(brokers, input_partitions=4)
    done = subprocess.run(
        [sys.executable, "-m", "clickstream.generate", "--count", str(EVENTS), "--users", "300000",
         "--user-lifetime-seconds", "120", "--seed", "12", "--out-of-order-fraction", "0.05",
         "--malformed-fraction", "0.001", "--start-ms", str(T0), "--topic", topics.input,
         "--brokers", brokers], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]

    with_ttl, status = backfill(topics, TTL_S, tmp_path, "ttl")
    assert status == 0, (tmp_path / "ttl.log").read_text()[-3000:]
    inputs = read_topic(brokers, topics.input, timeout=120)
    assert len(inputs) == EVENTS
    expected = assert_matches(topics, inputs)  # nothing here is more than the TTL behind
    assert not any(d["reason"] == "late" for d in expected.dead.values())

    other = dataclasses.replace(make_topics(brokers, input_partitions=4), input=topics.input)
    without, status = backfill(other, 100_000_000, tmp_path, "no-ttl")
    assert status == 0, (tmp_path / "no-ttl.log").read_text()[-3000:]

    # The input is 50 min of event time: the first TTL is the first fifth of the run.
    def stretch(samples, start, end):
        return samples[int(len(samples) * start):max(int(len(samples) * end), 1)]

    level = statistics.median(stretch(with_ttl, 0.3, 0.5))
    after = stretch(with_ttl, 0.3, 0.95)  # the last moments emit every window still open
    print(f"backfill of {EVENTS:,} events, RSS MiB: with a {TTL_S} s TTL level {level:.0f}, "
          f"{min(after):.0f}..{max(after):.0f} after the first TTL, peak {max(with_ttl):.0f}; "
          f"without expiry {statistics.median(stretch(without, 0.3, 0.5)):.0f} at 30-50 %, "
          f"peak {max(without):.0f}")
    assert 0.85 * level <= min(after) and max(after) <= 1.15 * level
    assert max(without) > 1.3 * max(with_ttl)
