"""Kafka's default partitioner, as pure code: records land where a Java producer puts them."""

import pytest

from clickstream.core.partitioner import Partitioner, murmur2


# Apache Kafka's own vectors (UtilsTest.testMurmur2): records must land where a Java producer
# with the default partitioner would put them.
@pytest.mark.parametrize("data, expected", [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
])
def test_murmur2_matches_the_java_client(data, expected):
    assert murmur2(data) == expected


def test_keys_are_routed_like_the_java_default_partitioner():
    partition_of = Partitioner(50)
    assert partition_of("foobar") == (-790332482 & 0x7FFFFFFF) % 50 == 16
    assert partition_of("foobar") == 16  # remembered
    assert Partitioner(1)("foobar") == 0
    assert partition_of(None) == 0


def test_partitioner_forgets_everything_beyond_its_bound(monkeypatch):
    monkeypatch.setattr(Partitioner, "MAX_REMEMBERED", 2)
    partition_of = Partitioner(50)
    for key in ("a", "b", "c", "foobar"):
        partition_of(key)
    assert len(partition_of._known) == 2
    assert partition_of("foobar") == 16


def test_one_bound_for_the_process_per_partition_count(monkeypatch):
    # Each of the 128 window shards had a memo of its own that never filled, so together
    # they kept every key ever emitted (the soak's RSS crept while its live keys stayed flat).
    monkeypatch.setattr(Partitioner, "MAX_REMEMBERED", 3)
    shards = [Partitioner(50) for _ in range(4)]
    for i, partition_of in enumerate(shards * 5):
        assert partition_of(f"user-{i}") == Partitioner._hash(f"user-{i}", 50)
    assert len({id(p._known) for p in shards}) == 1 and len(shards[0]._known) <= 3
    assert Partitioner(7)._known is not shards[0]._known  # another count, another answer
    assert Partitioner(7)("foobar") == (-790332482 & 0x7FFFFFFF) % 7
