"""User sessions on the real broker, against the oracle (tests/integration/oracle.py: a
sort-and-split of each user's on-time events) and against the generator's own visit model.

Every other integration test checks the sessions too (`assert_matches`, SPEC's gap of 30 min:
all of them close at the end of the bounded finish). Those that close sessions while the
dataflow runs, so that crashes fall between a session's emission and its commit, use a 1 s gap:
test_exactly_once.py's SIGKILLs and test_postgres_output.py's; idle closing live is in
test_recovery_and_live.py and test_cluster.py.
"""

import pytest

from clickstream.core.partitioner import Partitioner
from clickstream.tools.generator import GeneratorConfig, generate
from clickstream.tools.visits import expected_sessions, session_summary
from tests.integration.checks import assert_matches
from tests.integration.kafka_io import produce
from tests.integration.test_exactly_once import T0, finish

pytestmark = pytest.mark.integration


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
