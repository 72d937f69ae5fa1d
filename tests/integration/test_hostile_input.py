"""Poison records end to end: none stops the dataflow, each is dead-lettered with topic,
partition and offset, and every input offset is accounted for exactly once."""

import json

import pytest
from confluent_kafka import Producer

from tests.integration.checks import assert_matches, outputs
from tests.integration.kafka_io import read_topic, run_dataflow

pytestmark = pytest.mark.integration

T0 = 1767225600000


def good(user, ts, **extra):
    return json.dumps({"user_id": user, "event_type": "page_view", "url": "/p", "ts": ts, **extra}).encode()


POISON = [
    ("near the broker's 1 MiB limit, invalid JSON", b"u1", b"{" + b"x" * 1_040_000),
    ("near the limit, valid JSON, huge ignored field", b"u1", good("u1", T0 + 10, blob="y" * 1_000_000)),
    ("near the limit, url too long to emit", b"u2", good("u2", T0 + 20).replace(b'"/p"', b'"' + b"z" * 900_000 + b'"')),
    ("invalid UTF-8", b"u1", b'{"user_id":"u1","url":"\xff\xfe","event_type":"click","ts":0}'),
    ("lone surrogate as UTF-8", b"u1", b'{"user_id":"\xed\xa0\x80","url":"/","event_type":"click","ts":0}'),
    ("2,000-deep arrays", b"u1", b"[" * 2000 + b"]" * 2000),
    ("2,000-deep objects", b"u1", b'{"a":' * 2000 + b"0" + b"}" * 2000),
    ("null key and value", None, None),
    ("empty value", None, b""),
    ("binary garbage", b"\x00\x01", bytes(range(256))),
    ("NaN", b"u1", b'{"user_id":"u1","event_type":"click","url":"/","ts":NaN}'),
    ("huge integer", b"u1", b'{"user_id":"u1","event_type":"click","url":"/","ts":1' + b"0" * 400 + b"}"),
    ("a late event", b"u1", good("u1", T0 - 3_600_000)),
]


def test_poison_records_are_dead_lettered_and_every_offset_is_accounted_for(topics):
    producer = Producer({"bootstrap.servers": topics.brokers, "message.max.bytes": 1_048_000,
                         "linger.ms": 5, "enable.idempotence": True})  # keeps the order
    errors = []
    sequence = [(b"u1", good("u1", T0)), (b"u2", good("u2", T0 + 5))]
    sequence += [(key, value) for _, key, value in POISON]
    sequence += [(b"u1", good("u1", T0 + 30_000)), (b"u2", good("u2", T0 + 30_000))]
    for key, value in sequence:
        producer.produce(topics.input, value=value, key=key, partition=0,
                         on_delivery=lambda err, _msg: err and errors.append(err))
    assert producer.flush(60) == 0 and not errors, errors
    inputs = read_topic(topics.brokers, topics.input)
    assert len(inputs) == len(sequence)

    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1))
    assert result.returncode == 0, result.stderr[-3000:]
    expected = assert_matches(topics, inputs)

    users, pages, dead = outputs(topics)
    counted = sum(r["events"] for _, r in users)
    malformed = sum(d["reason"] == "malformed" for d in dead)
    late = sum(d["reason"] == "late" for d in dead)
    assert (counted, malformed, late) == (5, len(POISON) - 2, 1)
    assert counted + malformed + late == len(inputs)
    assert {(d["topic"], d["partition"]) for d in dead} == {(topics.input, 0)}
    assert sorted(d["offset"] for d in dead) == sorted(o for _, o in expected.dead)
    huge = next(d for d in dead if d["offset"] == 2)
    assert "first 262144 of 1040001 bytes" in huge["error"] and len(huge["value"]) == 262144
