"""Event-time alignment of the input partitions one process reads (Flink's watermark alignment).

Why: a page shard's clock is the newest event time it has seen, from every input partition,
and an event more than the state TTL behind it is late (SPEC: key state expiry). Reading a
backlog, partitions advance in event time at the speed they are read, not together: with
uneven partitions (a few heavy users) a 16-hour backfill of 1M events had one partition hours
ahead of another, and 46 % of all events were dead-lettered as behind the page horizon.

The rule: a partition with a backlog may hand on an event only while its time is at most
`drift_ms` ahead of the position of every *other* partition that still has a backlog. A
partition's position is the time of the event it is holding back, if any, else the newest
event time it handed on. A partition with a backlog but no position yet (built, not polled)
holds every other one back until its first poll shows where it starts: else whichever polled
first ran ahead unchecked (seen in the test of it). Partitions without a backlog (caught up,
finished) hold nobody back, as in Flink's idleness.

Why no deadlock: the partition with the smallest position may always go on (its held event is
at its own position, at most every other position), so some partition always moves.
Why `drift_ms` = TTL / 2 (see `drift_for`): an event handed on by a partition is at most its
own disorder behind that partition's position, and no shard's clock is more than `drift_ms`
ahead of it, so it meets the horizon only if it is TTL / 2 out of order within its partition.
Live, at the end of the log, nothing is held: every partition is caught up.

Only the partitions of one process are aligned; processes of a cluster read their own
partitions at their own pace (the README says so).
"""

import threading
from typing import Any, Dict, Optional

from clickstream.core.times import NEVER


def drift_for(state_ttl_ms: int) -> int:
    return state_ttl_ms // 2


class Alignment:
    """Positions of this process's input partitions, shared by their sources (all workers)."""

    def __init__(self, drift_ms: Optional[int] = None):
        self.drift_ms = drift_ms  # None: not configured yet (the first source sets it)
        self._lock = threading.Lock()
        self._position: Dict[Any, Optional[int]] = {}  # partitions with a backlog: position

    def configure(self, drift_ms: int) -> None:
        with self._lock:
            self.drift_ms = drift_ms

    def report(self, partition: Any, position: Optional[int], backlog: bool) -> None:
        """The partition's position (None: none yet) and whether it has a backlog."""
        with self._lock:
            if backlog:
                self._position[partition] = position
            else:
                self._position.pop(partition, None)

    def limit(self, partition: Any) -> Optional[int]:
        """The newest event time `partition` may hand on now; None: no limit."""
        with self._lock:
            others = [p for key, p in self._position.items() if key != partition]
            if not others or self.drift_ms is None:
                return None
            if None in others:
                return NEVER  # one has not shown where it starts: wait for it
            return min(others) + self.drift_ms

    def forget(self, partition: Any) -> None:
        self.report(partition, None, False)


ALIGNMENT = Alignment()
