"""How far the input has come: the idle clock that closes windows of quiet keys, and the
event-time watermark that the event-time lag metric reads."""

import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict

from clickstream.core.times import NEVER

FLICKER_S = 0.25  # below the page stage's settle time (stages/page_windows.py)


class IdleClock:
    """Milliseconds of system time during which this process's input was caught up.

    Sources report per partition whether they have read everything fetched so far
    (`report`). The clock runs only while every reporting partition is caught up, so idle
    closing means "the input is really idle", never "a backlog is still being replayed",
    and a process that was down does not come back with its downtime counted as idleness.
    The clock stands still from start until the first partition reports, so restored windows
    never close in the moment before the sources have looked at their backlog; a process that
    reads no partition at all (more processes than partitions) starts it after `grace_s`.

    A source partition's report holds for `confirm_s` only: sources report on every poll, so
    when a worker is held up (building a sink, a slow commit, a long snapshot) the clock stops
    soon after, instead of counting the stall as idle time and then closing windows whose
    events are waiting unread (which made them late).

    A partition that was caught up and falls behind stops the clock only once it has stayed
    behind for `flicker_s` (0.25 s). Under steady live traffic a poll often finds a few
    messages that arrived while the worker was busy, and the next poll reads them: stopping
    the clock at each such poll lost 7 % of the idle time at 5,000 events/s, so windows of
    quiet users closed up to 2 s late (bench/live.py). A real backlog still stops it,
    `flicker_s` after it began; a partition behind since it was built gets no such allowance.

    Start-up work holds the clock too (`starting`): a source partition is lagging from the
    moment it is built until its first poll, and a sink's start (reading back what Kafka or
    the database holds beyond the snapshot) holds it. Once a restart read back so much that
    starting took over `grace_s`, the clock ran from then on although no source had polled,
    and restored windows closed early: their replayed events came out late (seen in the soak).
    """

    _STARTING = object()

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, grace_s: float = 10.0,
                 confirm_s: float = 0.5, flicker_s: float = FLICKER_S):
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._lagging: set = {self._STARTING}
        self._elapsed = 0.0
        self._last = self._started = monotonic()
        self._grace = grace_s
        self._confirm = confirm_s
        self._reported: Dict[Any, float] = {}  # source partition -> when it last reported
        self._flicker = flicker_s
        self._behind_since: Dict[Any, float] = {}  # caught up before, behind since then

    def report(self, partition: Any, caught_up: bool, confirms: bool = True) -> None:
        """`confirms=False`: a report from outside the worker (a watcher thread), which says
        nothing about whether the worker is still polling."""
        with self._lock:
            self._tick()
            self._lagging.discard(self._STARTING)
            if caught_up:
                self._lagging.discard(partition)
                self._behind_since.pop(partition, None)
            elif partition in self._reported and partition not in self._lagging:
                self._behind_since.setdefault(partition, self._last)  # it was caught up
            else:
                self._lagging.add(partition)
            if confirms:
                self._reported[partition] = self._last

    @contextmanager
    def starting(self, what: Any):
        """Hold the clock while `what` starts (a sink reading back its output)."""
        held = ("starting", what)
        with self._lock:
            self._tick()
            self._lagging.add(held)
        try:
            yield
        finally:
            with self._lock:
                self._tick()
                self._lagging.discard(held)

    def expect(self, partition: Any) -> None:
        """A source partition was built: lagging until its first report."""
        with self._lock:
            self._tick()
            self._lagging.add(partition)

    def backlog(self, partition: Any) -> bool:
        """Whether `partition` stops this clock now: behind since it was built, or for longer
        than a flicker. What a source tells the other processes at its snapshots."""
        with self._lock:
            self._tick()
            return partition in self._lagging

    def now_ms(self) -> int:
        with self._lock:
            self._tick()
            return int(self._elapsed * 1000)

    def _tick(self) -> None:
        now = self._monotonic()
        if self._STARTING in self._lagging and now - self._started >= self._grace:
            self._lagging.discard(self._STARTING)
            self._last = max(self._last, self._started + self._grace)
        behind = self._behind_since
        if not self._lagging:
            reported = self._reported
            until = min(now, min(reported.values()) + self._confirm) if reported else now
            if behind:
                until = min(until, min(behind.values()) + self._flicker)
            if until > self._last:
                self._elapsed += until - self._last
        for partition, since in list(behind.items()):
            if now - since >= self._flicker:  # a backlog, not a flicker
                del behind[partition]
                self._lagging.add(partition)
        self._last = max(self._last, now)


IDLE_CLOCK = IdleClock()


class EventTimeWatermark:
    """This process's event-time progress, for `clickstream_event_time_lag_seconds`.

    Per input partition the newest event time read; the process's watermark is the oldest of
    those minus the allowed lateness (Flink's rule for a source with several partitions).
    Read at scrape time, so the lag keeps growing when the input stalls.
    """

    def __init__(self, lateness_s: float = 0.0, clock: Callable[[], float] = time.time):
        self._newest: Dict[object, int] = {}
        self._lock = threading.Lock()
        self.lateness_s = lateness_s
        self._clock = clock

    def observe(self, partition, newest_ms: int) -> None:
        with self._lock:
            if newest_ms > self._newest.get(partition, NEVER):
                self._newest[partition] = newest_ms

    def lag_seconds(self) -> float:
        with self._lock:
            if not self._newest:
                return 0.0
            watermark_s = min(self._newest.values()) / 1000 - self.lateness_s
        return max(self._clock() - watermark_s, 0.0)
