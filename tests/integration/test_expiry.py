"""Key state expiry on the real broker, against the oracle that knows the horizon rule.

Every user sits in one user shard and the input on one partition, so the shard's clock moves in
input order and the outcome is exact (events of several user shards reach a page shard in no
fixed order within a batch; the page side of the rule is tested in tests/stages and tests/core).
"""

import json
import zlib

import pytest

from tests.integration.checks import assert_matches, outputs
from tests.integration.kafka_io import make_topics, produce, read_topic, run_dataflow

pytestmark = pytest.mark.integration

T0 = 1767225600000
W, L, TTL = 5000, 2000, 20000


def users_of_one_shard(count: int):
    names = (f"user-{i}" for i in range(10_000))
    first = next(names)
    shard = zlib.crc32(first.encode()) % 64
    return [first] + [n for n in names if zlib.crc32(n.encode()) % 64 == shard][:count - 1]


def backfill(topics, items, ttl_s: int):
    """Produce `items` (key, value, partition), run a bounded dataflow over them with W, L and a
    TTL of `ttl_s`; returns the input as read back."""
    produce(topics.brokers, topics.input, items)
    inputs = read_topic(topics.brokers, topics.input)
    assert len(inputs) == len(items)
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1, CLICKSTREAM_WINDOW_SECONDS=W // 1000,
                                     CLICKSTREAM_ALLOWED_LATENESS_SECONDS=L // 1000,
                                     CLICKSTREAM_STATE_TTL_SECONDS=ttl_s))
    assert result.returncode == 0, result.stderr[-3000:]
    return inputs


def test_keys_expire_and_return_exactly_as_the_oracle_says(brokers):
    topics = make_topics(brokers, input_partitions=1)
    main, a, b, c = users_of_one_shard(4)
    timeline = [(a, 0), (a, 1000), (b, 3000), (c, 6000), (b, 8000), (c, 9000)]
    timeline += [(main, t) for t in range(10_000, 40_001, 2000)]  # the shard's clock: 40 s
    timeline += [
        (a, 2000),    # a was forgotten; its emitted window [0, 5) is behind the horizon: late
        (b, 21_000),  # forgotten too, back 1 s after the horizon (20 s): a new window
        (c, 20_000),  # exactly at the horizon: on time
        (c, 19_999),  # 1 ms behind it: late
        (a, 40_000),  # a new window for a is fine
    ]
    timeline += [(main, t) for t in range(42_000, 80_001, 2000)]  # the horizon: 60 s
    timeline += [(b, 72_000), (b, 64_000)]  # b on time, then late by its own watermark only
    inputs = backfill(topics, [
        (user.encode(), json.dumps({"user_id": user, "event_type": "page_view",
                                    "url": f"/p{i % 3}", "ts": T0 + t}).encode(), 0)
        for i, (user, t) in enumerate(timeline)], ttl_s=20)
    expected = assert_matches(topics, inputs, W, L, ttl_ms=TTL)

    # What the oracle says, spelled out: three late events, two of them by the horizon.
    _, _, dead = outputs(topics)
    late = {d["offset"]: d["error"] for d in dead if d["reason"] == "late"}
    offset = {(user, t): i for i, (user, t) in enumerate(timeline)}
    assert set(late) == {offset[(a, 2000)], offset[(c, 19_999)], offset[(b, 64_000)]}
    assert "before the user state horizon 2026-01-01T00:00:20.000Z" in late[offset[(a, 2000)]]
    assert "window 2026-01-01T00:01:00.000Z of" in late[offset[(b, 64_000)]]
    assert expected.user[(a, "2026-01-01T00:00:40.000Z")]["events"] == 1
    assert expected.user[(b, "2026-01-01T00:00:20.000Z")]["events"] == 1
    assert expected.user[(c, "2026-01-01T00:00:20.000Z")]["events"] == 1
    assert expected.user[(a, "2026-01-01T00:00:00.000Z")]["events"] == 2


def test_a_backfill_of_uneven_partitions_keeps_them_aligned_so_nothing_meets_the_horizon(brokers):
    """One partition holds 30,000 events over a minute, the other 30 over the same minute.
    Read at the same speed in messages, the sparse one runs the page shards' clocks up to a
    minute ahead of the dense one, and with a TTL of 30 s the dense one's events would be
    dead-lettered as behind the page horizon (the visits bench lost 46 % of its events so).
    Aligned (runtime.alignment: at most TTL / 2 apart), no event is late: the outputs equal the
    oracle's without a horizon. The dense users share a user shard, so their events reach the
    page shards in input order (through several user shards a batch's order is not kept)."""
    topics = make_topics(brokers, input_partitions=2)
    dense = users_of_one_shard(40)
    items = []
    for i in range(30_000):
        user = dense[i % 40]
        items.append((user.encode(), json.dumps({"user_id": user, "event_type": "page_view",
                                                 "url": f"/p{i % 3}", "ts": T0 + i * 2}).encode(), 0))
    for i in range(30):
        items.append((b"sparse", json.dumps({"user_id": "sparse", "event_type": "click",
                                             "url": f"/p{i % 3}", "ts": T0 + i * 2000}).encode(), 1))
    inputs = backfill(topics, items, ttl_s=30)
    expected = assert_matches(topics, inputs, W, L)  # the oracle without any horizon
    _, _, dead = outputs(topics)
    assert dead == []
    assert sum(r["events"] for r in expected.page.values()) == len(items)
