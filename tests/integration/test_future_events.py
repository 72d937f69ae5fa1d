"""An event time far ahead of its Kafka record's timestamp is malformed and moves no clock
(SPEC, Windows: CLICKSTREAM_MAX_FUTURE_SECONDS), with real record timestamps."""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from confluent_kafka import Producer

from tests.integration.checks import outputs
from tests.integration.kafka_io import run_dataflow

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
FAR = 4070908800000  # 2099-01-01T00:00:00.000Z


def iso(ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def test_a_far_future_event_is_dead_lettered_and_the_next_one_is_on_time(topics):
    # Now, to the second: brokers refuse record timestamps far from their own clock.
    record_ts = int(time.time()) * 1000
    start = record_ts - 30_000 - record_ts % 5000  # a window start, half a minute back
    values = [{"user_id": "u1", "event_type": "page_view", "url": "/a", "ts": start},
              {"user_id": "u1", "event_type": "page_view", "url": "/far", "ts": FAR},
              {"user_id": "u1", "event_type": "click", "url": "/b", "ts": start + 1000}]
    producer = Producer({"bootstrap.servers": topics.brokers, "enable.idempotence": True})
    errors = []
    for value in values:
        producer.produce(topics.input, json.dumps(value).encode(), b"u1", partition=0,
                         timestamp=record_ts, on_delivery=lambda err, _m: err and errors.append(err))
    assert producer.flush(30) == 0 and not errors, errors

    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1))
    assert result.returncode == 0, result.stderr[-3000:]

    users, pages, dead = outputs(topics)
    assert [(d["reason"], d["offset"], d["error"]) for d in dead] == [(
        "malformed", 1, f"ts 2099-01-01T00:00:00.000Z is more than 3600 s ahead of its Kafka "
                        f"record's timestamp {iso(record_ts)} (CLICKSTREAM_MAX_FUTURE_SECONDS)")]
    # Had the far event moved u1's clock, the third event would have been late.
    assert [(r["user_id"], r["window_start"], r["events"], r["clicks"]) for _, r in users] == [
        ("u1", iso(start), 2, 1)]
    assert sorted((r["url"], r["events"]) for _, r in pages) == [("/a", 1), ("/b", 1)]
