"""A record the broker refuses is never lost silently: the dataflow stops with one line, and a
restart from the recovery store delivers it once the cause is fixed."""

import json

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import produce, run_dataflow

pytestmark = pytest.mark.integration


def set_max_message_bytes(brokers: str, topic: str, value: int) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    resource = ConfigResource("topic", topic, incremental_configs=[ConfigEntry(
        "max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def test_refused_delivery_stops_with_one_line_and_restart_delivers(topics, tmp_path):
    set_max_message_bytes(topics.brokers, topics.user, 64)  # smaller than any user record
    events = [{"user_id": f"u{i % 3}", "event_type": "click", "url": f"/x{i % 2}",
               "ts": 1767225600000 + i * 700} for i in range(30)]
    inputs = produce(topics.brokers, topics.input,
                     # keyed by user as SPEC says producers do: a user's events in one partition,
                     # so no verdict depends on how the two partitions' reads interleave
                     [(e["user_id"].encode(), json.dumps(e).encode(), i % 3 % 2)
                      for i, e in enumerate(events)])
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")

    failed = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1), *flags)
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert lines[0].startswith("clickstream: created recovery store")
    assert len(lines) == 2, failed.stderr  # the reason in one line: no traceback, no panic dump
    assert f"to {topics.user}[" in lines[1] and "Message size too large" in lines[1]

    set_max_message_bytes(topics.brokers, topics.user, 1_000_000)
    again = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1), *flags)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_matches(topics, inputs)
