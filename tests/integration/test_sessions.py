"""User sessions on the real broker, against the oracle (tests/integration/oracle.py: a
sort-and-split of each user's on-time events) and against the generator's own visit model.

Every other integration test checks the sessions too (`assert_matches`, SPEC's gap of 30 min:
all of them close at the end of the bounded finish); these make sessions close while the
dataflow runs, so that crashes fall between a session's emission and its commit.
"""

import os
import random

import pytest

from tests.integration.checks import assert_matches
from tests.integration.test_exactly_once import finish, kill_repeatedly, preload

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
