"""A recovery store written by the previous version resumes on the real broker, exactly once."""

import json
import shutil

import pytest

from tests.fixtures.store_v2_input import (messages, offsets_of, recreate_topics, store_of,
                                          topics_env, topics_of)
from tests.integration.checks import (PAGE_FIELDS, SESSION_FIELDS, USER_FIELDS,
                                      windows_by_identity)
from tests.integration.kafka_io import read_topic, run_dataflow
from tests.integration.oracle import expected_outputs

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_a_previous_versions_store_resumes_to_the_oracles_output(brokers, tmp_path, version):
    recreate_topics(brokers, version)
    TOPICS = topics_of(version)
    store = tmp_path / "store"
    shutil.copytree(store_of(version), store)
    done = run_dataflow(dict(topics_env(brokers, version), CLICKSTREAM_BOUNDED="1"),
                        "-r", str(store), "-s", "1", "-b", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    expected = expected_outputs(offsets_of(messages()), TOPICS["input"], 5000, 10000)
    users = [(m.key, json.loads(m.value)) for m in read_topic(brokers, TOPICS["user"])]
    pages = [(m.key, json.loads(m.value)) for m in read_topic(brokers, TOPICS["page"])]
    # Every window was open in the store; the input was read to its end before it was made,
    # and the one malformed message was dead-lettered then (to the old run's topic).
    assert windows_by_identity(users, USER_FIELDS, "user_id", True) == expected.user
    assert windows_by_identity(pages, PAGE_FIELDS, "url", True) == expected.page
    assert read_topic(brokers, TOPICS["dlq"]) == []
    sessions = [(m.key, json.loads(m.value)) for m in read_topic(brokers, TOPICS["sessions"])]
    if version >= 5:
        # Its sessions were open in the store (one per user, the events span 7 s).
        assert len(expected.sessions) == 3
        assert windows_by_identity(sessions, SESSION_FIELDS, "user_id", True,
                                   "session_start") == expected.sessions
        return
    # The stores before 5 predate sessions: a user's sessions start with the events read after
    # the upgrade (none here), and the new output's history starts at the upgrade (origin.json).
    assert sessions == []
    assert TOPICS["sessions"] in json.loads((store / "origin.json").read_text())
