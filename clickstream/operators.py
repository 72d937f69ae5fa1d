"""Bytewax glue for the windows: keyed shards, timers, snapshots and tagged outputs.

Keys are *shards* of users (and of urls), Flink's key groups: the shard count is fixed, so the
recovery state keeps its layout whatever the number of workers or processes, while each shard
holds many users and is handed whole batches, which keeps the Python cost per event low. The
window rules themselves live in `clickstream/windows.py`.

Both stages emit `(tag, payload)` values, one per output partition per batch, records being
(key, value, identity, closed_at) for the sink, grouped by the Kafka partition they go to (see
`clickstream.partitioner`). value: JSON bytes for dead letters, (start, end, state) of a closed
window otherwise (the sink renders it); closed_at: when a window closed, None for dead letters.
- user stage: ("user", (partition, [record])), ("page_in", (page_shard, [Event])),
  ("dlq", (partition, [record]))
- page stage: ("page", (partition, [record])), ("dlq", (partition, [record]))
A dead letter goes to the dead-letter partition `input partition % dead-letter partitions`.
"""

import gc
import time
import zlib
from datetime import datetime, timedelta, timezone
from typing import Iterable, List, Optional, Tuple

from bytewax.operators import StatefulBatchLogic

from clickstream.deadletters import LATE, dead_letter
from clickstream.metrics import METRICS
from clickstream.partitioner import Partitioner
from clickstream.windows import (
    IDLE_CLOCK,
    Aggregation,
    ClosedWindow,
    IdleClock,
    KeyedWindows,
    PageTraffic,
    UserEngagement,
    format_ts,
)

SHARDS = 64  # part of the recovery store's layout: changing it needs a fresh store
USER_SHARD_KEYS = tuple(f"u{i:02d}" for i in range(SHARDS))
PAGE_SHARD_KEYS = tuple(f"p{i:02d}" for i in range(SHARDS))
DLQ_KEY = "dlq"
PAGE_SETTLE_MS = 1000  # see KeyedWindows: page watermarks wait this long on the idle clock

USER, PAGE, PAGE_IN, DLQ = "user", "page", "page_in", "dlq"


def tune_gc() -> None:
    """Make the cyclic garbage collector rare: window state is millions of small lists and sets
    that live for seconds, and with the default thresholds the collector walked them over and
    over, about half of the per-event time of a backfill. Our state holds no reference cycles
    (it is freed by reference counting), so little is left for the collector to find.
    Objects from start-up are moved out of its sight for good (gc.freeze)."""
    gc.set_threshold(GC_THRESHOLDS[0], GC_THRESHOLDS[1], GC_THRESHOLDS[2])
    gc.freeze()


# Python's defaults are (700, 10, 10). A batch of 5,000 events keeps tens of thousands of
# objects alive for a moment; a first threshold above that makes young collections rare
# (1M-event backfill: 92 collections and 2.6 s at 50,000, 7 and 0.6 s at 100,000).
GC_THRESHOLDS = (100_000, 50, 100)


def shard_of(text: str) -> int:
    """Stable across processes and runs (unlike hash())."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % SHARDS


class _WindowShard(StatefulBatchLogic):
    """One shard of keys: feeds events to KeyedWindows, closes on timers and at end of input."""

    aggregation: Aggregation
    output: str

    def __init__(self, width_ms: int, lateness_ms: int, bounded: bool, input_topic: str,
                 output_partitions: int, dlq_partitions: int, resume_state,
                 clock: IdleClock = IDLE_CLOCK):
        # A bounded run (backfill) closes only on event time and at its end, so its result
        # never depends on how fast it ran.
        self.windows = self._windows(width_ms, lateness_ms, bounded)
        self.clock = clock
        self.input_topic = input_topic
        self.partition_of = Partitioner(output_partitions)
        self.dlq_partitions = dlq_partitions
        if resume_state is not None:
            try:
                self.windows.restore(resume_state, clock.now_ms())
            except ValueError as exc:
                from clickstream.kafka import stop  # imports this module
                stop(f"cannot resume: {exc}; start with a new store", 2)

    def _emit(self, closed: List[ClosedWindow], out: list) -> None:
        if not closed:
            return
        partition_of = self.partition_of
        now = time.time()  # the moment the windows may close: for the emit-delay histogram
        by_partition: dict = {}
        idents: dict = {}  # one identity string per window start, not one per record
        for key, start, end, state in closed:
            ident = idents.get(start)
            if ident is None:
                ident = idents[start] = str(start)
            # The JSON is made by the sink right before it produces: a million records of a
            # window closing for a million users at once then cost their state, nothing more.
            record = (key, (start, end, state), ident, now)
            partition = partition_of(key)
            records = by_partition.get(partition)
            if records is None:
                by_partition[partition] = [record]
            else:
                records.append(record)
        for partition, records in by_partition.items():
            out.append((self.output, (partition, records)))
        METRICS.windows_emitted.labels(self.output).inc(len(closed))

    def _late(self, late: list, out: list) -> None:
        """Dead-letter records for `late` [(event, its key's watermark then)], per DLQ partition."""
        if not late:
            return
        by_partition: dict = {}
        width = self.windows.width
        for event, watermark in late:
            error = (f"late: {self.output} window {format_ts(event.ts - event.ts % width)} of "
                     f"{self._key_of(event)!r} was already emitted "
                     f"(watermark {format_ts(watermark)})")
            record = (None, dead_letter(LATE, error, self.input_topic, event.partition,
                                        event.offset, event.raw),
                      f"{event.partition}:{event.offset}", None)
            by_partition.setdefault(event.partition % self.dlq_partitions, []).append(record)
        for partition, records in by_partition.items():
            out.append((DLQ, (partition, records)))
        METRICS.events_late.inc(len(late))

    def _windows(self, width_ms: int, lateness_ms: int, bounded: bool) -> KeyedWindows:
        return KeyedWindows(self.aggregation, width_ms, lateness_ms, idle_closing=not bounded)

    def _key_of(self, event) -> str:
        raise NotImplementedError

    def on_notify(self) -> Tuple[Iterable, bool]:
        out: list = []
        self._emit(self.windows.close_idle(self.clock.now_ms()), out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> Tuple[Iterable, bool]:
        out: list = []
        self._emit(self.windows.close_all(), out)
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> Optional[datetime]:
        due = self.windows.next_due()
        if due is None:
            return None
        wait_ms = min(max(due - self.clock.now_ms(), 0), 3_600_000)  # re-checked when it fires
        return datetime.now(timezone.utc) + timedelta(milliseconds=wait_ms)

    def snapshot(self):
        return self.windows.snapshot()


class UserShard(_WindowShard):
    """Per-user windows; lateness is decided here, once per event (SPEC: per user)."""

    aggregation = UserEngagement()
    output = USER

    def _key_of(self, event) -> str:
        return event.user_id

    def on_batch(self, chunks: List[list]) -> Tuple[Iterable, bool]:
        windows = self.windows
        now = self.clock.now_ms()
        closed: List[ClosedWindow] = []
        out: list = []
        late: list = []
        to_pages: dict = {}
        page_shard = _PAGE_SHARDS.get
        for chunk in chunks:
            windows.add_many([event.user_id for event in chunk], chunk, now, closed, late)
            if late:
                late_ones = {id(event) for event, _ in late}
                chunk = [event for event in chunk if id(event) not in late_ones]
            for event in chunk:
                url = event.url
                shard = page_shard(url)
                if shard is None:
                    shard = _page_shard(url)
                bucket = to_pages.get(shard)
                if bucket is None:
                    to_pages[shard] = [event]
                else:
                    bucket.append(event)
        self._late(late, out)
        self._emit(closed, out)
        for shard, events in to_pages.items():
            out.append((PAGE_IN, (shard, events)))
        return out, StatefulBatchLogic.RETAIN


_PAGE_SHARDS: dict = {}  # url -> page shard key, remembered (crc32 per event showed up)


def _page_shard(url: str) -> str:
    if len(_PAGE_SHARDS) >= 1 << 20:
        _PAGE_SHARDS.clear()
    shard = _PAGE_SHARDS[url] = PAGE_SHARD_KEYS[shard_of(url)]
    return shard


class PageShard(_WindowShard):
    """Per-url windows over the events the user stage found on time.

    Live, a url's watermark is its own newest event time (like Kafka Streams' stream time),
    applied only after it settled for PAGE_SETTLE_MS of caught-up time, because events reach
    this stage through different user shards in no fixed order and a replayed backlog is read
    unevenly across partitions. An event on time for its user can still find its url's
    window already emitted when users' clocks are far apart; it is then dead-lettered as late
    for the page (it did count for the user), never dropped silently.
    Bounded, page windows stay open to the end of the input, so a backfill's page metrics are
    exactly the on-time events grouped by url and window, however users' clocks interleave.
    """

    aggregation = PageTraffic()
    output = PAGE

    def _windows(self, width_ms: int, lateness_ms: int, bounded: bool) -> KeyedWindows:
        return KeyedWindows(self.aggregation, width_ms, lateness_ms, idle_closing=not bounded,
                            watermark_closing=not bounded, settle_ms=PAGE_SETTLE_MS)

    def _key_of(self, event) -> str:
        return event.url

    def on_batch(self, chunks: List[list]) -> Tuple[Iterable, bool]:
        windows = self.windows
        now = self.clock.now_ms()
        closed: List[ClosedWindow] = []
        out: list = []
        late: list = []
        for chunk in chunks:
            windows.add_many([event.url for event in chunk], chunk, now, closed, late)
        self._late(late, out)
        windows.apply_settled(now, closed)
        self._emit(closed, out)
        return out, StatefulBatchLogic.RETAIN
