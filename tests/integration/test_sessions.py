"""User sessions on the real broker, against the oracle (tests/integration/oracle.py: a
sort-and-split of each user's on-time events) and against the generator's own visit model.

Every other integration test checks the sessions too (`assert_matches`, SPEC's gap of 30 min:
all of them close at the end of the bounded finish); these make sessions close while the
dataflow runs, so that crashes fall between a session's emission and its commit.
"""

import os
import random

import pytest

from clickstream.core.partitioner import Partitioner
from clickstream.tools.generator import GeneratorConfig, generate
from clickstream.tools.visits import expected_sessions, session_summary
from tests.integration.checks import assert_matches
from tests.integration.kafka_io import produce
from tests.integration.test_exactly_once import T0, finish, kill_repeatedly, preload

pytestmark = pytest.mark.integration

GAP_S, MAX_S = 1, 15  # the generator's users click every ~0.4 s: sessions cut by both rules


def test_sessions_through_sigkills_are_exact_and_once(topics, tmp_path):
    seed = int(os.environ.get("CLICKSTREAM_CHAOS_SEED", "20261130"))
    inputs = preload(topics, 30000)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    env = {"CLICKSTREAM_SESSION_GAP_SECONDS": GAP_S, "CLICKSTREAM_SESSION_MAX_SECONDS": MAX_S}
    times = kill_repeatedly(topics, flags, 3, random.Random(seed), tmp_path, 0.0, 1.5,
                            after_progress=True, **env)
    finish(topics, flags, **env)
    expected = assert_matches(topics, inputs, session_gap_ms=GAP_S * 1000,
                              session_max_ms=MAX_S * 1000)
    cut = sum(1 for s in expected.sessions.values() if s["duration_ms"] > MAX_S * 1000 - 1000)
    assert len(expected.sessions) > 1000 and cut > 10  # both rules at work
    print(f"kills after {times} s (seed {seed}); {len(expected.sessions)} sessions exact")


def test_visits_traffic_gives_the_sessions_of_the_generators_own_model(topics):
    """People with visits, pauses shorter and longer than SPEC's 30 min gap, bounces,
    purchases and bots (the generator's visits mode), with late, out-of-order and malformed
    messages: the sessions equal both the oracle's and those the generator's model planned
    (clickstream/tools/visits.py), which never looks at the service's code or output."""
    config = GeneratorConfig(count=12000, users=3000, rate=4, seed=5, visits=True,
                             late_fraction=0.01, out_of_order_fraction=0.05,
                             malformed_fraction=0.01, start_ms=T0, bot_share=0.001)
    partition_of = Partitioner(2)
    inputs = produce(topics.brokers, topics.input, [
        (m.key, m.value, partition_of(m.key.decode()) if m.key else 0) for m in generate(config)])
    finish(topics, ())
    expected = assert_matches(topics, inputs)
    planned = {(s["user_id"], s["session_start"]): s for s in expected_sessions(config)}
    assert expected.sessions == planned
    summary = session_summary(config)
    assert summary.bounces > 100 and summary.conversions > 10 and summary.bot_sessions > 0
    assert len(planned) == summary.sessions
