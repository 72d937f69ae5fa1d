"""What both window stages share: one shard of keys driven by Bytewax's stateful_batch.

A shard feeds its events to `core.windows.KeyedWindows`, closes windows on timers (the idle
clock) and at the end of a bounded input, snapshots incrementally, and emits tagged outputs
(`core.records`): closed windows as Records grouped by output partition, late events as
dead-letter Records grouped by dead-letter partition.
"""

import time
from datetime import datetime, timedelta, timezone
from typing import Iterable, List, Optional, Tuple

from bytewax.operators import StatefulBatchLogic

from clickstream.core.aggregations import Aggregation
from clickstream.core.batches import Batch
from clickstream.core.deadletters import LATE, dead_letter
from clickstream.core.partitioner import Partitioner
from clickstream.core.records import DEAD_LETTERS, Record, Tag, dead_letter_ident
from clickstream.core.shards import dead_letter_partition
from clickstream.core.times import format_ts
from clickstream.core.windows import ClosedWindow, KeyedWindows
from clickstream.runtime.exits import stop
from clickstream.runtime.metrics import METRICS
from clickstream.runtime.progress import IDLE_CLOCK, IdleClock

MAX_TIMER_WAIT_MS = 3_600_000  # a far timer is re-checked when it fires


class WindowShard(StatefulBatchLogic):
    """One shard of keys: feeds events to KeyedWindows, closes on timers and at end of input."""

    aggregation: Aggregation
    output: Tag

    def __init__(self, width_ms: int, lateness_ms: int, bounded: bool, input_topic: str,
                 output_partitions: int, dlq_partitions: int, resume_state,
                 clock: IdleClock = IDLE_CLOCK, ttl_ms: Optional[int] = None):
        # A bounded run (backfill) closes only on event time and at its end, so its result
        # never depends on how fast it ran.
        self.windows = self._windows(width_ms, lateness_ms, bounded, ttl_ms)
        self.clock = clock
        self.input_topic = input_topic
        self.partition_of = Partitioner(output_partitions)
        self.dlq_partitions = dlq_partitions
        if resume_state is not None:
            try:
                with clock.starting(("restore", id(self))):  # a big store takes a while
                    self._restore(resume_state, clock.now_ms())
            except ValueError as exc:
                stop(f"cannot resume: {exc}; start with a new store", 2)
        self._keys_gauge = METRICS.keys.labels(self.output)
        self._expired_counter = METRICS.keys_expired.labels(self.output)
        self._keys_reported = 0
        self._expired_reported = 0
        self._report_keys()

    def _windows(self, width_ms: int, lateness_ms: int, bounded: bool,
                 ttl_ms: Optional[int]) -> KeyedWindows:
        return KeyedWindows(self.aggregation, width_ms, lateness_ms, idle_closing=not bounded,
                            ttl_ms=ttl_ms)

    def _restore(self, stored, now: int) -> None:
        self.windows.restore(stored, now)

    def _report_keys(self) -> None:
        """Move the process-wide key gauges by what this shard changed since it last did."""
        windows = self.windows
        keys = len(windows.keys)
        if keys != self._keys_reported:
            self._keys_gauge.inc(keys - self._keys_reported)
            self._keys_reported = keys
        if windows.expired != self._expired_reported:
            self._expired_counter.inc(windows.expired - self._expired_reported)
            self._expired_reported = windows.expired

    def _key_of(self, event) -> str:
        raise NotImplementedError

    def _add(self, chunks: List[list], now: int, closed: List[ClosedWindow], late: list) -> list:
        """Count the events of `chunks`; returns the stage's other outputs for them."""
        raise NotImplementedError

    def on_batch(self, chunks: List[list]) -> Tuple[Iterable, bool]:
        closed: List[ClosedWindow] = []
        late: list = []
        out: list = []
        onward = self._add(chunks, self.clock.now_ms(), closed, late)
        self._late(late, out)
        self._emit(closed, out)
        out += onward
        self._report_keys()
        return out, StatefulBatchLogic.RETAIN

    def _emit(self, closed: List[ClosedWindow], out: list) -> None:
        if closed:
            grouped(closed, self.output, self.partition_of, out)
            METRICS.windows_emitted.labels(self.output).inc(len(closed))

    def _late(self, late: list, out: list) -> None:
        """Dead-letter records for `late` [(event, the limit it missed, whether that is the
        shard's horizon)], per DLQ partition."""
        if not late:
            return
        by_partition: dict = {}
        width = self.windows.width
        ttl_s = self.windows.ttl / 1000
        for event, limit, beyond_horizon in late:
            if beyond_horizon:
                error = (f"late: ts {format_ts(event.ts)} is before the {self.output} state "
                         f"horizon {format_ts(limit)} (the shard's newest event time minus "
                         f"CLICKSTREAM_STATE_TTL_SECONDS={ttl_s:g})")
            else:
                error = (f"late: {self.output} window {format_ts(event.ts - event.ts % width)} "
                         f"of {self._key_of(event)!r} was already emitted "
                         f"(watermark {format_ts(limit)})")
            record = Record(None, dead_letter(LATE, error, self.input_topic, event.partition,
                                              event.offset, event.raw),
                            dead_letter_ident(event.partition, event.offset), None)
            partition = dead_letter_partition(event.partition, self.dlq_partitions)
            by_partition.setdefault(partition, Batch()).append(record)
        for partition, records in by_partition.items():
            out.append((DEAD_LETTERS, (partition, records)))
        METRICS.events_late.inc(len(late))

    def on_notify(self) -> Tuple[Iterable, bool]:
        out: list = []
        self._emit(self.windows.close_idle(self.clock.now_ms()), out)
        self._report_keys()
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> Tuple[Iterable, bool]:
        out: list = []
        self._emit(self.windows.close_all(), out)
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> Optional[datetime]:
        return self._timer(self.windows.next_due())

    def _timer(self, due: Optional[int]) -> Optional[datetime]:
        """The wall-clock moment of idle-clock ms `due`, None for none."""
        if due is None:
            return None
        wait_ms = min(max(due - self.clock.now_ms(), 0), MAX_TIMER_WAIT_MS)
        return datetime.now(timezone.utc) + timedelta(milliseconds=wait_ms)

    def snapshot(self):
        return self.windows.snapshot()


def grouped(closed: list, tag: Tag, partition_of: Partitioner, out: list) -> None:
    """Append `closed` [(key, start, end, state)] to `out` as (tag, (partition, [Record]))."""
    now = time.time()  # the moment they may close: for the emit-delay histogram
    by_partition: dict = {}
    idents: dict = {}  # one identity string per start, not one per record
    for key, start, end, state in closed:
        ident = idents.get(start)
        if ident is None:
            ident = idents[start] = str(start)
        record = Record(key, (start, end, state), ident, now)
        partition = partition_of(key)
        records = by_partition.get(partition)
        if records is None:
            by_partition[partition] = Batch((record,))
        else:
            records.append(record)
    for partition, records in by_partition.items():
        out.append((tag, (partition, records)))
