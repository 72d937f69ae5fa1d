"""The benchmark's input and the check on every system's output.

The input comes from our generator with a fixed seed and start, so the expected window
counts are computed from the same pure stream (`clickstream.generator`), not from any
system's output. The check compares a sample of keys (users and urls whose crc32 falls in
1/SAMPLE_EVERY) on every window that all systems must have closed: those ending at least
the lateness plus a margin before the newest event time (Quix, for one, closes windows on
event time only and never at the end of a bounded input).
"""

import zlib
from collections import Counter
from datetime import datetime
from typing import Dict, Tuple

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from clickstream.core.events import parse_timestamp
from clickstream.tools.generator import GeneratorConfig, generate

SAMPLE_EVERY = 25
MARGIN_MS = 5000

WindowCounts = Dict[Tuple[str, int], int]


def in_sample(key: str) -> bool:
    return zlib.crc32(key.encode()) % SAMPLE_EVERY == 0


def expected(config: GeneratorConfig, width_ms: int, lateness_ms: int):
    """({(user, start): events}, {(url, start): events}, cutoff) for the sampled keys; windows
    starting at or after `cutoff` are left out of the comparison."""
    users: Counter = Counter()
    pages: Counter = Counter()
    newest = None
    for message in generate(config):
        event = orjson.loads(message.value)
        ts = parse_timestamp(event["ts"])
        newest = ts if newest is None else max(newest, ts)
        start = ts - ts % width_ms
        if in_sample(event["user_id"]):
            users[(event["user_id"], start)] += 1
        if in_sample(event["url"]):
            pages[(event["url"], start)] += 1
    cutoff = newest - lateness_ms - MARGIN_MS - width_ms
    return ({k: v for k, v in users.items() if k[1] < cutoff},
            {k: v for k, v in pages.items() if k[1] < cutoff}, cutoff)


def _start_ms(value) -> int:
    if isinstance(value, int):
        return value
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def read_windows(brokers: str, topic: str, key_field: str, cutoff: int) -> Tuple[WindowCounts, int]:
    """Sampled {(key, start): events} on `topic` (read_committed), and the total record count."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "bench-check",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    open_partitions = set(partitions)
    found: WindowCounts = {}
    total = 0
    while open_partitions:
        for msg in consumer.consume(10000, 2.0):
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    open_partitions.discard(msg.partition())
                continue
            total += 1
            record = orjson.loads(msg.value())
            key = record[key_field]
            if in_sample(key):
                start = _start_ms(record["window_start"])
                if start < cutoff:
                    found[(key, start)] = found.get((key, start), 0) + record["events"]
    consumer.close()
    return found, total


def compare(want: WindowCounts, got: WindowCounts) -> str:
    """'ok (N windows)' or a one-line account of what differs."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    wrong = [k for k in want if k in got and got[k] != want[k]]
    if not (missing or extra or wrong):
        return f"ok ({len(want)} windows)"
    return (f"DIFFERS: {len(missing)} missing, {len(extra)} extra, {len(wrong)} wrong counts "
            f"of {len(want)} sampled windows")


def read_rows(dsn: str, table: str, key_field: str, cutoff: int) -> Tuple[WindowCounts, int]:
    """`read_windows` for the PostgreSQL output: sampled {(key, start): events} of `table`."""
    import psycopg

    found: WindowCounts = {}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {key_field}, (extract(epoch FROM window_start) * 1000)"
                            f"::bigint, events FROM {table}").fetchall()
    for key, start, events in rows:
        if in_sample(key) and start < cutoff:
            found[(key, start)] = found.get((key, start), 0) + events
    return found, len(rows)
