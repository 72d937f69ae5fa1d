"""Shards of users and urls (Flink's key groups), and where a dead letter goes.

The shard count is fixed, so the recovery state keeps its layout whatever the number of
workers or processes, while each shard holds many keys and is handed whole batches, which
keeps the Python cost per event low.
"""

import zlib

from clickstream.core.memo import Memo

SHARDS = 64  # part of the recovery store's layout: changing it needs a fresh store
USER_SHARD_KEYS = tuple(f"u{i:02d}" for i in range(SHARDS))
PAGE_SHARD_KEYS = tuple(f"p{i:02d}" for i in range(SHARDS))


def shard_of(text: str) -> int:
    """Stable across processes and runs (unlike hash())."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % SHARDS


# url -> page shard key, remembered: crc32 per event showed up in profiles.
PAGE_SHARD_OF = Memo(lambda url: PAGE_SHARD_KEYS[shard_of(url)], 1 << 20)


def dead_letter_partition(input_partition: int, dead_letter_partitions: int) -> int:
    """SPEC: a dead letter goes to partition `input partition % dead-letter partitions`."""
    return input_partition % dead_letter_partitions
