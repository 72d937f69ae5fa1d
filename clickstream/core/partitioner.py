"""Kafka's default partitioner (murmur2), so a keyed record lands where a Java producer puts it.

The window stages pick each record's output partition themselves and hand the sink whole
lists per partition: routing one item per record through Bytewax cost more than the record.
Keys repeat (users, urls), so the hash is remembered per key.
"""

import struct
from typing import Dict, Optional, Tuple

from clickstream.core.memo import Memo


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner hash), as a signed 32-bit int."""
    m = 0x5BD1E995
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    blocks = length // 4
    for (k,) in struct.iter_unpack("<I", data[: blocks * 4]):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[blocks * 4:]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


class Partitioner:
    """Partition of a key on a topic of `count` partitions; None (no key) goes to partition 0."""

    MAX_REMEMBERED = 1 << 17  # keys; forgotten all at once beyond that (bounded memory)
    # One memo per partition count and bound for the whole process, not one per instance: each
    # of the 128 shards had its own, never full, so it kept every user the shard ever emitted
    # (the soak: +120 MB from the first TTL to the end, while the live keys stayed flat).
    _memos: Dict[Tuple[int, int], Memo] = {}

    def __init__(self, count: int):
        if count < 1:
            raise ValueError(f"a topic has at least one partition, got {count}")
        self.count = count
        bound = (count, self.MAX_REMEMBERED)
        known = self._memos.get(bound)
        if known is None:
            known = self._memos[bound] = Memo(lambda key: Partitioner._hash(key, count),
                                              self.MAX_REMEMBERED)
        self._known = known

    @staticmethod
    def _hash(key: str, count: int) -> int:
        return (murmur2(key.encode("utf-8", "surrogatepass")) & 0x7FFFFFFF) % count

    def __call__(self, key: Optional[str]) -> int:
        return 0 if key is None else self._known[key]
