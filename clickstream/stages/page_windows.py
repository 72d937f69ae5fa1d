"""The page stage: per-url windows over the events the user stage found on time.

Live, a url's watermark is its own newest event time (like Kafka Streams' stream time),
applied only after it settled for PAGE_SETTLE_MS of caught-up time, because events reach
this stage through different user shards in no fixed order and a replayed backlog is read
unevenly across partitions. An event on time for its user can still find its url's window
already emitted when users' clocks are far apart; it is then dead-lettered as late for the
page (it did count for the user), never dropped silently.
Bounded, page windows stay open until the shard's state horizon passes them (its newest
event time minus the state TTL, see core/windows.py) or the input ends, so a backfill's page
metrics are exactly the on-time events grouped by url and window however users' clocks
interleave, as long as the partitions are read within the TTL of each other.
"""

from typing import List, Optional

from clickstream.core.aggregations import PAGE_TRAFFIC
from clickstream.core.records import PAGE
from clickstream.core.windows import ClosedWindow, KeyedWindows
from clickstream.stages.shard import WindowShard

# Page watermark moves wait this long on the idle clock. Any wait keeps them still while a
# backlog is replayed (the idle clock stands still then); it must exceed the idle clock's
# allowance for a partition briefly behind (IdleClock's flicker_s), or a move queued in the
# first moments of a backlog could apply. An event is late for its page only when it is
# more than the allowed lateness behind the url's newest event, so the wait adds little
# safety beyond that; it was 1,000 ms, which made busy urls' windows come out 1 s late.
PAGE_SETTLE_MS = 300


class PageShard(WindowShard):
    aggregation = PAGE_TRAFFIC
    output = PAGE

    def _windows(self, width_ms: int, lateness_ms: int, bounded: bool,
                 ttl_ms: Optional[int]) -> KeyedWindows:
        return KeyedWindows(self.aggregation, width_ms, lateness_ms, idle_closing=not bounded,
                            watermark_closing=not bounded, settle_ms=PAGE_SETTLE_MS,
                            ttl_ms=ttl_ms)

    def _key_of(self, event) -> str:
        return event.url

    def _add(self, chunks: List[list], now: int, closed: List[ClosedWindow], late: list) -> list:
        windows = self.windows
        for chunk in chunks:
            windows.add_many([event.url for event in chunk], chunk, now, closed, late)
        windows.apply_settled(now, closed)
        return []
