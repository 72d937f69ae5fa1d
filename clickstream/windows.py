"""Event-time tumbling windows as pure code: assignment, aggregates, lateness and closing.

Nothing here knows about Bytewax or Kafka, so every rule of SPEC's Windows section is tested
table-driven without a broker (tests/test_windows.py); `clickstream/operators.py` only drives it.

Semantics, per key (a user, or a url):
- window of an event: [floor(ts/W)*W, floor(ts/W)*W + W), aligned to the Unix epoch.
- watermark of the key: newest event time seen for that key minus the allowed lateness L; it
  only moves forward. A window closes (is emitted, once) when the watermark reaches its end,
  i.e. when an event at least L past the window's end has been seen for that key.
- idle: the watermark also moves with the *idle clock* (milliseconds during which the input
  was caught up, see `IdleClock`) elapsed since the key's last event, as if event time kept
  flowing; so a user who stops clicking still gets their windows emitted, about W + L after
  their last event, but a backlog being replayed never closes windows early.
- late: an event whose window has already closed for its key (its window end is at or behind
  the key's watermark). It changes nothing and is reported to the caller.
- close_all(): end of a bounded input emits every open window.

Aggregations follow the initialize / agg / result shape: state is a small list, mutated in place.
"""

import heapq
import pickle
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Tuple

NO_WATERMARK = -(2**62)
SNAPSHOT_FORMAT = 2  # of KeyedWindows.snapshot(); restore() refuses any other


def window_start(ts_ms: int, width_ms: int) -> int:
    """Start of the epoch-aligned window holding ts (Python's % floors, so negatives work)."""
    return ts_ms - ts_ms % width_ms


def format_ts(ms: int) -> str:
    """RFC 3339 UTC with milliseconds and Z, e.g. 2026-01-01T00:00:05.000Z."""
    seconds, millis = divmod(ms, 1000)
    prefix = _SECOND_PREFIXES.get(seconds)
    if prefix is None:
        if len(_SECOND_PREFIXES) >= 1 << 16:
            _SECOND_PREFIXES.clear()
        prefix = _SECOND_PREFIXES[seconds] = _format_second(seconds)
    return f"{prefix}{millis:03d}Z"


# Output times cluster in few seconds (window bounds, events of the same moments), so the
# calendar work is done once per second: formatting was a tenth of a backfill's time.
_SECOND_PREFIXES: Dict[int, str] = {}


def _format_second(seconds: int) -> str:
    """'YYYY-MM-DDTHH:MM:SS.' of a second since the epoch."""
    days, secs = divmod(seconds, 86400)
    year, month, day = _civil_from_days(days)
    hour, rem = divmod(secs, 3600)
    minute, second = divmod(rem, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}."


def _civil_from_days(days: int) -> Tuple[int, int, int]:
    # Howard Hinnant's days-to-civil algorithm: exact for the proleptic Gregorian calendar.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, day


class Aggregation:
    """initialize() -> state; agg(state, event) mutates it; result(key, start, end, state) -> dict."""

    def initialize(self) -> list:
        raise NotImplementedError

    def agg(self, state: list, event) -> None:
        raise NotImplementedError

    def result(self, key: str, start: int, end: int, state: list) -> dict:
        raise NotImplementedError


class UserEngagement(Aggregation):
    """Per user and window: events, page_views, clicks, unique_pages, sessions, first/last time.

    Most user windows see one url and one session, so a distinct set starts as the single
    value itself (None, then a str) and becomes a set only at a second distinct value: two
    empty sets were 430 of the ~1,200 bytes a user with one open window cost."""

    def initialize(self) -> list:
        # events, page_views, clicks, urls, sessions, first_ts, last_ts
        return [0, 0, 0, None, None, None, None]

    def agg(self, state: list, event) -> None:
        state[0] += 1
        kind = event.event_type
        if kind == "page_view":
            state[1] += 1
        elif kind == "click":
            state[2] += 1
        state[3] = _with_distinct(state[3], event.url)
        if event.session_id:
            state[4] = _with_distinct(state[4], event.session_id)
        ts = event.ts
        if state[5] is None or ts < state[5]:
            state[5] = ts
        if state[6] is None or ts > state[6]:
            state[6] = ts

    def result(self, key: str, start: int, end: int, state: list) -> dict:
        return {
            "user_id": key,
            "window_start": format_ts(start),
            "window_end": format_ts(end),
            "events": state[0],
            "page_views": state[1],
            "clicks": state[2],
            "unique_pages": _distinct(state[3]),
            "sessions": _distinct(state[4]),
            "first_event_ts": format_ts(state[5]),
            "last_event_ts": format_ts(state[6]),
        }


def _with_distinct(values, value):
    """`values` (None, one str, or a set) with `value` added; a set only from a second value."""
    if values is None:
        return value
    if values.__class__ is str:
        return values if values == value else {values, value}
    values.add(value)
    return values


def _distinct(values) -> int:
    """Size of a distinct set kept as None, one str, or a set."""
    if values is None:
        return 0
    return 1 if values.__class__ is str else len(values)


class PageTraffic(Aggregation):
    """Per url and window: views (page_view events), events, unique_users."""

    def initialize(self) -> list:
        return [0, 0, set()]

    def agg(self, state: list, event) -> None:
        if event.event_type == "page_view":
            state[0] += 1
        state[1] += 1
        state[2].add(event.user_id)

    def result(self, key: str, start: int, end: int, state: list) -> dict:
        return {
            "url": key,
            "window_start": format_ts(start),
            "window_end": format_ts(end),
            "views": state[0],
            "events": state[1],
            "unique_users": len(state[2]),
        }


class ClosedWindow(NamedTuple):
    key: str
    start: int
    end: int
    state: list


class _KeyState:
    __slots__ = ("max_ts", "watermark", "windows", "idle_since", "due")

    def __init__(self, idle_since: int):
        self.max_ts = NO_WATERMARK
        self.watermark = NO_WATERMARK  # windows ending at or before this are closed
        self.windows: Dict[int, list] = {}
        self.idle_since = idle_since  # idle-clock ms of the key's last event
        self.due: Optional[int] = None  # the key's live entry in the idle heap, if any


class KeyedWindows:
    """Open windows of many keys (one shard of users or urls) with lateness and idle closing.

    `settle_ms` > 0 makes watermark moves wait that long on the idle clock before they apply
    (and idle closes never come sooner than that after a key's last event). The page stage
    uses it: its events reach it through many user shards in no fixed order, and a replayed
    backlog can be read faster from one partition than from another; since the idle clock
    stands still until the input is caught up, moves apply only once every partition has
    been read to its end and the events still in flight have arrived.
    `watermark_closing=False` keeps windows open until idle closing or close_all().
    """

    def __init__(self, aggregation: Aggregation, width_ms: int, lateness_ms: int,
                 idle_closing: bool = True, watermark_closing: bool = True, settle_ms: int = 0):
        if width_ms <= 0 or lateness_ms < 0 or settle_ms < 0:
            raise ValueError("window width must be > 0, lateness and settle time >= 0")
        self.aggregation = aggregation
        self.width = width_ms
        self.lateness = lateness_ms
        self.idle_closing = idle_closing
        self.watermark_closing = watermark_closing
        self.settle = settle_ms
        self.keys: Dict[str, _KeyState] = {}
        # The same window states again, grouped by window start, for incremental snapshots:
        # only the groups touched since the last snapshot are pickled again (see snapshot()).
        self._starts: Dict[int, Dict[str, list]] = {}
        self._dirty: set = set()  # window starts changed since the last snapshot
        self._blobs: Dict[int, bytes] = {}  # window start -> its pickled group, as of then
        self._idle_heap: List[Tuple[int, str]] = []  # (idle-clock ms when due, key), lazy
        self._pending: Deque[Tuple[int, str, int]] = deque()  # (recorded at, key, watermark)

    def add(self, key: str, event, now: int, closed: List[ClosedWindow]) -> bool:
        """Count `event` (with `.ts`) for `key`; append windows it closes to `closed`.

        Returns False when the event is late (its window already closed), True otherwise.
        `now` is the idle clock in ms.
        """
        late: list = []
        self.add_many((key,), (event,), now, closed, late)
        return not late

    def add_many(self, keys, events, now: int, closed: List[ClosedWindow], late: list) -> None:
        """`add` for a batch: keys[i] is the key of events[i]. Late events are appended to
        `late` as (event, the key's watermark then). One loop with everything it touches in
        local variables: this is the per-event cost of the whole service."""
        states = self.keys
        width, lateness, settle = self.width, self.lateness, self.settle
        initialize, agg = self.aggregation.initialize, self.aggregation.agg
        starts, mark_dirty = self._starts, self._dirty.add
        watermark_closing, idle_closing = self.watermark_closing, self.idle_closing
        for key, event in zip(keys, events):
            ks = states.get(key)
            if ks is None:
                ks = states[key] = _KeyState(now)
            ts = event.ts
            start = ts - ts % width
            if start + width <= ks.watermark:
                late.append((event, ks.watermark))
                continue
            windows = ks.windows
            state = windows.get(start)
            if state is None:
                state = windows[start] = initialize()
                group = starts.get(start)
                if group is None:
                    starts[start] = {key: state}
                else:
                    group[key] = state
            mark_dirty(start)
            agg(state, event)
            ks.idle_since = now
            if ts > ks.max_ts:
                ks.max_ts = ts
                if watermark_closing and ts - lateness > ks.watermark:
                    if settle:
                        self._pending.append((now, key, ts - lateness))
                    else:
                        self._advance(key, ks, ts - lateness, closed)
            if idle_closing and windows:
                # A newer watermark or an older window can make the key due sooner than its entry.
                due = self._due_at(ks)
                if ks.due is None or due < ks.due:
                    self._schedule(key, ks, due)

    def apply_settled(self, now: int, closed: List[ClosedWindow]) -> None:
        """Apply the watermark moves that have waited `settle_ms` on the idle clock."""
        pending = self._pending
        limit = now - self.settle
        while pending and pending[0][0] <= limit:
            _, key, watermark = pending.popleft()
            ks = self.keys[key]
            if watermark > ks.watermark:
                self._advance(key, ks, watermark, closed)

    def _advance(self, key: str, ks: _KeyState, watermark: int, closed: List[ClosedWindow]) -> None:
        ks.watermark = watermark
        windows = ks.windows
        if not windows:
            return
        width = self.width
        limit = watermark - width
        if min(windows) > limit:  # the common case: nothing to close (min() runs in C)
            return
        due = [start for start in windows if start <= limit]
        if due:
            due.sort()
            starts, dirty = self._starts, self._dirty
            for start in due:
                closed.append(ClosedWindow(key, start, start + width, windows.pop(start)))
                group = starts[start]
                del group[key]
                if not group:
                    del starts[start]
                dirty.add(start)

    def _due_at(self, ks: _KeyState) -> int:
        """Idle-clock ms at which the key's earliest open window closes if nothing arrives."""
        earliest_end = min(ks.windows) + self.width
        return ks.idle_since + max(self.settle, earliest_end - self._watermark_of(ks))

    def _watermark_of(self, ks: _KeyState) -> int:
        # Includes a move that is still settling.
        return max(ks.watermark, ks.max_ts - self.lateness)

    def _schedule(self, key: str, ks: _KeyState, due: Optional[int] = None) -> None:
        ks.due = self._due_at(ks) if due is None else due
        heap = self._idle_heap
        heapq.heappush(heap, (ks.due, key))
        if len(heap) > 4 * len(self.keys) + 1024:
            # Superseded entries pile up while a backlog is replayed (the idle clock stands
            # still); keep only each key's live one.
            keys = self.keys
            self._idle_heap = [(d, k) for d, k in heap if keys[k].due == d]
            heapq.heapify(self._idle_heap)

    def next_due(self) -> Optional[int]:
        """Idle-clock ms of the next idle close or settled watermark move, or None."""
        due = self._idle_heap[0][0] if self._idle_heap else None
        if self._pending:
            settled = self._pending[0][0] + self.settle
            due = settled if due is None else min(due, settled)
        return due

    def close_idle(self, now: int) -> List[ClosedWindow]:
        """Close what the idle clock `now` allows: settled watermark moves, then idle keys."""
        closed: List[ClosedWindow] = []
        self.apply_settled(now, closed)
        heap = self._idle_heap
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            ks = self.keys.get(key)
            if ks is None or ks.due != due:
                continue  # superseded by a newer entry for the same key
            ks.due = None
            if not ks.windows:
                continue
            if self._due_at(ks) <= now:
                # As if event time had kept flowing while the key was idle.
                self._advance(key, ks, self._watermark_of(ks) + (now - ks.idle_since), closed)
                ks.idle_since = now
            if ks.windows:
                self._schedule(key, ks)
        return closed

    def close_all(self) -> List[ClosedWindow]:
        """End of input: emit every open window, oldest first per key."""
        closed: List[ClosedWindow] = []
        self._pending.clear()
        for key, ks in self.keys.items():
            if ks.windows:
                last_end = max(ks.windows) + self.width
                self._advance(key, ks, max(self._watermark_of(ks), last_end), closed)
        self._idle_heap.clear()
        for ks in self.keys.values():
            ks.due = None
        return closed

    # Recovery. Pickling every open window each epoch made snapshots cost O(state) per epoch,
    # most of the run time of a long backfill (bounded page windows stay open to the end).
    # So window states are pickled per window start and a group is pickled again only when
    # one of its windows changed; the snapshot is immutable bytes, never mutated later.
    def snapshot(self) -> tuple:
        blobs, starts = self._blobs, self._starts
        for start in self._dirty:
            group = starts.get(start)
            if group:
                blobs[start] = pickle.dumps(group, pickle.HIGHEST_PROTOCOL)
            else:
                blobs.pop(start, None)
        self._dirty.clear()
        marks = {key: (ks.max_ts, ks.watermark) for key, ks in self.keys.items()}
        return (SNAPSHOT_FORMAT, pickle.dumps(marks, pickle.HIGHEST_PROTOCOL), dict(blobs))

    def restore(self, snapshot: tuple, now: int) -> None:
        """Load a snapshot; idle time restarts from `now` (downtime never counts as idle)."""
        self.keys.clear()
        self._idle_heap.clear()
        self._starts.clear()
        self._dirty.clear()
        self._blobs.clear()
        if not (isinstance(snapshot, tuple) and len(snapshot) == 3
                and snapshot[0] == SNAPSHOT_FORMAT):
            raise ValueError(f"the recovery store holds window state of another format than "
                             f"{SNAPSHOT_FORMAT} (made by another version of clickstream)")
        _, marks, blobs = snapshot
        for key, (max_ts, watermark) in pickle.loads(marks).items():
            ks = self.keys[key] = _KeyState(now)
            ks.max_ts = max_ts
            ks.watermark = watermark
        for start, blob in blobs.items():
            group = self._starts[start] = pickle.loads(blob)
            self._blobs[start] = blob
            for key, state in group.items():
                self.keys[key].windows[start] = state
        if self.idle_closing:
            for key, ks in self.keys.items():
                if ks.windows:
                    self._schedule(key, ks)

    def contents(self) -> Dict[str, tuple]:
        """{key: (max_ts, watermark, {start: state})}: a plain view for tests and tools."""
        return {key: (ks.max_ts, ks.watermark, dict(ks.windows)) for key, ks in self.keys.items()}


class IdleClock:
    """Milliseconds of system time during which this process's input was caught up.

    Sources report per partition whether they have read everything fetched so far
    (`report`). The clock runs only while every reporting partition is caught up, so idle
    closing means "the input is really idle", never "a backlog is still being replayed",
    and a process that was down does not come back with its downtime counted as idleness.
    The clock stands still from start until the first partition reports, so restored windows
    never close in the moment before the sources have looked at their backlog; a process that
    reads no partition at all (more processes than partitions) starts it after `grace_s`.
    """

    _STARTING = object()

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, grace_s: float = 10.0):
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._lagging: set = {self._STARTING}
        self._elapsed = 0.0
        self._last = self._started = monotonic()
        self._grace = grace_s

    def report(self, partition: Any, caught_up: bool) -> None:
        with self._lock:
            self._tick()
            self._lagging.discard(self._STARTING)
            if caught_up:
                self._lagging.discard(partition)
            else:
                self._lagging.add(partition)

    def now_ms(self) -> int:
        with self._lock:
            self._tick()
            return int(self._elapsed * 1000)

    def _tick(self) -> None:
        now = self._monotonic()
        if self._STARTING in self._lagging and now - self._started >= self._grace:
            self._lagging.discard(self._STARTING)
            self._last = max(self._last, self._started + self._grace)
        if not self._lagging:
            self._elapsed += now - self._last
        self._last = now


IDLE_CLOCK = IdleClock()
