"""The load generator's traffic (skew, sessions, disorder, late and malformed shares) through
the whole service, checked against the oracle: data the window code was not written against."""

import re
import subprocess
import sys

import pytest

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import ROOT, read_topic, run_dataflow

pytestmark = pytest.mark.integration


def test_generated_traffic_matches_the_oracle_exactly(topics):
    generate = subprocess.run(
        [sys.executable, "-m", "clickstream.generate", "--count", "20000", "--users", "300",
         "--seed", "7", "--late-fraction", "0.03", "--out-of-order-fraction", "0.1",
         "--malformed-fraction", "0.02", "--start-ms", "1767225600000",
         "--topic", topics.input, "--brokers", topics.brokers],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert generate.returncode == 0, generate.stderr
    inputs = read_topic(topics.brokers, topics.input)
    assert len(inputs) == 20000

    # A local producer queue of 50 records: the sinks hit BufferError all the time and must
    # wait for deliveries instead of failing or dropping.
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1,
                                     CLICKSTREAM_KAFKA_QUEUE_BUFFERING_MAX_MESSAGES=50),
                          "-w", "2", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    expected = assert_matches(topics, inputs)
    kinds = dict(re.findall(r"(valid|out_of_order|late|malformed)=(\d+)", generate.stderr.splitlines()[-1]))
    reasons = [r["reason"] for r in expected.dead.values()]
    assert reasons.count("malformed") == int(kinds["malformed"]) > 300
    # every event the generator made late is late; nothing it sent on time is
    assert reasons.count("late") == int(kinds["late"]) > 450
    on_time = sum(r["events"] for r in expected.user.values())
    assert on_time + len(reasons) == 20000
    assert on_time == sum(r["events"] for r in expected.page.values())
