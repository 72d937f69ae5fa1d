"""Event-time tumbling windows of many keys as pure code: assignment, lateness and closing.

Nothing here knows about Bytewax or Kafka, so every rule of SPEC's Windows section is tested
table-driven without a broker (tests/core/test_windows.py); the stages only drive it.

Semantics, per key (a user, or a url):
- window of an event: [floor(ts/W)*W, floor(ts/W)*W + W), aligned to the Unix epoch.
- watermark of the key: newest event time seen for that key minus the allowed lateness L; it
  only moves forward. A window closes (is emitted, once) when the watermark reaches its end,
  i.e. when an event at least L past the window's end has been seen for that key.
- idle: the watermark also moves with the *idle clock* (milliseconds during which the input
  was caught up, see `clickstream.runtime.progress`) elapsed since the key's last event, as if
  event time kept flowing; so a user who stops clicking still gets their windows emitted,
  about W + L after their last event, but a backlog being replayed never closes windows early.
- late: an event whose window has already closed for its key (its window end is at or behind
  the key's watermark). It changes nothing and is reported to the caller.
- close_all(): end of a bounded input emits every open window.

Expiry (SPEC: key state expires), with the TTL T >= W + L and the shard's clock C = the newest
event time the shard has seen (it only moves forward), horizon H = C - T:
- an event with ts < H is late, whatever its key's state (checked before the key's own rule);
- a window ending at or before H is closed (also in a bounded run, so a backfill's state stays
  within T of event time), since no event that is not late can fall into it;
- a key with no open window whose watermark and last window end are both at or before H is
  forgotten (`_forget`).
Why forgetting changes nothing but memory: after it, an event e of that key is either late by
the first rule, or has ts >= H' >= H (the horizon only grows) >= the old watermark and >= the
end of every window the key ever had. So e falls into a window the key never had, hence never
emitted, and no old watermark could have made e late: the forgotten key's state and a fresh
key's state treat e, and everything after it, identically (idle closing aside: it moves from
max(old watermark, newest - L), so a fresh key's first idle close may come up to L later).
Lateness thus stays per key within T: one key far ahead makes another key's event late only
when it is more than T behind.
(tests/core/test_expiry.py checks this against a model that never forgets.)
"""

import heapq
import pickle
from array import array
from bisect import insort
from collections import deque
from dataclasses import dataclass
from typing import ClassVar, Deque, Dict, List, NamedTuple, Optional, Tuple

from clickstream.core.aggregations import Aggregation
from clickstream.core.blobs import is_packed, pack, unpack
from clickstream.core.dues import bound, compact
from clickstream.core.times import NEVER


@dataclass(frozen=True)
class WindowsSnapshot:
    """What the recovery store keeps of one KeyedWindows: immutable, versioned.

    `marks` pickles ([key], int64 array of max_ts, watermark per key) of the keys not
    forgotten (a dict of tuples cost 100 MB while pickling a million keys); `groups` maps each
    window start to the pickled {key: state} of the windows open at that start (a group is
    pickled again only when one of its windows changed); `clock` is the shard's newest event
    time. Groups are `blobs.pack`ed since version 5; version 4 held them as bare pickles (read
    as they are, packed at the next snapshot). Version 3 had no clock and its marks were
    {key: (max_ts, watermark)}, version 2 was the tuple (2, marks, groups) of the same: both
    migrate with the clock they implied, the newest max_ts of their keys (they never forgot a
    key)."""

    VERSION: ClassVar[int] = 5
    marks: bytes
    groups: Dict[int, bytes]
    clock: Optional[int] = None  # None only in a version 3 snapshot, as unpickled
    version: int = VERSION

    @classmethod
    def load(cls, stored) -> "WindowsSnapshot":
        """The snapshot of any version this code knows, migrated; ValueError for anything else."""
        if isinstance(stored, cls) and stored.version in (4, cls.VERSION):
            return stored
        if isinstance(stored, cls) and stored.version == 3:
            return cls._from_dict_marks(stored.marks, stored.groups)
        if isinstance(stored, tuple) and len(stored) == 3 and stored[0] == 2:
            return cls._from_dict_marks(stored[1], stored[2])
        found = f"version {stored.version}" if isinstance(stored, cls) else type(stored).__name__
        raise ValueError(f"the recovery store holds window state of a format this version of "
                         f"clickstream cannot read ({found}; it reads 2 to {cls.VERSION})")


    @classmethod
    def _from_dict_marks(cls, marks: bytes, groups: Dict[int, bytes]) -> "WindowsSnapshot":
        old = pickle.loads(marks)
        clock = max((max_ts for max_ts, _ in old.values()), default=NEVER)
        return cls(pack_marks(old.keys(), [t for pair in old.values() for t in pair]), groups,
                   clock)


def pack_marks(keys, times) -> bytes:
    """The snapshot's marks: keys in order, then max_ts and watermark of each, as int64."""
    return pickle.dumps((list(keys), array("q", times).tobytes()), pickle.HIGHEST_PROTOCOL)


def unpack_marks(marks: bytes):
    """(key, max_ts, watermark) of each key in packed `marks`."""
    keys, raw = pickle.loads(marks)
    times = array("q")
    times.frombytes(raw)
    return zip(keys, times[0::2], times[1::2])


class ClosedWindow(NamedTuple):
    key: str
    start: int
    end: int
    state: list


class _KeyState:
    """What a key has beyond its window states, which live only in the group of their window
    start (KeyedWindows._starts): a dict per key cost ~200 bytes each, a fifth of the memory
    of a million users with one open window. The key's `open` windows start at `first`, at
    `last` and at some of the multiples of W in between, found by stepping through the groups
    (a key's open windows span a few W: the watermark or the horizon closes older ones)."""

    __slots__ = ("max_ts", "watermark", "idle_since", "due", "first", "last", "open", "move")

    def __init__(self, idle_since: int):
        self.max_ts = NEVER
        self.watermark = NEVER  # windows ending at or before this are closed
        self.idle_since = idle_since  # idle-clock ms of the key's last event
        self.due: Optional[int] = None  # the key's live entry in the idle heap, if any
        self.first = 0  # the oldest and newest open window start (when open > 0)
        self.last = 0
        self.open = 0  # open windows
        self.move: Optional[list] = None  # the key's newest entry in KeyedWindows._pending


class KeyedWindows:
    """Open windows of many keys (one shard of users or urls) with lateness and idle closing.

    `settle_ms` > 0 makes watermark moves wait that long on the idle clock before they apply
    (and idle closes never come sooner than that after a key's last event). The page stage
    uses it: its events reach it through many user shards in no fixed order, and a replayed
    backlog can be read faster from one partition than from another; since the idle clock
    stands still until the input is caught up, moves apply only once every partition has
    been read to its end and the events still in flight have arrived.
    `watermark_closing=False` keeps windows open until idle closing, the horizon or close_all().
    `ttl_ms` is the expiry TTL (see the module's docstring); None never forgets.
    """

    def __init__(self, aggregation: Aggregation, width_ms: int, lateness_ms: int,
                 idle_closing: bool = True, watermark_closing: bool = True, settle_ms: int = 0,
                 ttl_ms: Optional[int] = None):
        if width_ms <= 0 or lateness_ms < 0 or settle_ms < 0:
            raise ValueError("window width must be > 0, lateness and settle time >= 0")
        if ttl_ms is not None and ttl_ms < width_ms + lateness_ms:
            raise ValueError("the state TTL must be at least window width + allowed lateness")
        self.aggregation = aggregation
        self.width = width_ms
        self.lateness = lateness_ms
        self.idle_closing = idle_closing
        self.watermark_closing = watermark_closing
        self.settle = settle_ms
        self.keys: Dict[str, _KeyState] = {}
        # The window states, grouped by window start: {start: {key: state}}. Snapshots are
        # incremental: only the groups touched since the last one are pickled again.
        self._starts: Dict[int, Dict[str, list]] = {}
        self._dirty: set = set()  # window starts changed since the last snapshot
        self._blobs: Dict[int, bytes] = {}  # window start -> its pickled group, as of then
        self._idle_heap: List[Tuple[int, str]] = []  # (idle-clock ms when due, key), lazy
        # Settling watermark moves, [recorded at, key, watermark], at most one per key and
        # idle-clock ms: while a backlog is replayed the clock stands still and nothing settles,
        # and one entry per event grew by 1.3 million per hour of the soak's event time.
        self._pending: Deque[list] = deque()
        # Expiry. The horizon is `clock - ttl`; NEVER - (2**62) stays far below any event time.
        self.ttl = 2**62 if ttl_ms is None else ttl_ms
        self.clock = NEVER  # the shard's newest event time
        self.expired = 0  # keys forgotten so far (a counter for the metrics)
        self._open_starts: List[int] = []  # heap of window starts in _starts (lazy: may repeat)
        # Keys without open windows, bucketed by the W-aligned time from which the horizon
        # may forget them; `_bucket_ends` is the sorted list of bucket keys (a few per TTL).
        self._idle_keys: Dict[int, List[str]] = {}
        self._bucket_ends: List[int] = []
        # Keys something else still needs (the user sessions: `core.sessions`) are never
        # forgotten; `release` retires them when it is done with them.
        self.pinned: Dict[str, object] = {}
        self.defer_expiry = False  # True: the caller pins the batch's keys, then calls expire()

    def add_many(self, keys, events, now: int, closed: List[ClosedWindow], late: list) -> None:
        """Count events[i] (with `.ts`) for keys[i] at idle-clock ms `now`; windows they close
        go to `closed`, late events to `late` as (event, the limit it missed, True when that
        is the shard's horizon rather than the key's watermark). One loop with everything it
        touches in local variables: the per-event cost of the service."""
        states = self.keys
        width, lateness, settle = self.width, self.lateness, self.settle
        initialize, agg = self.aggregation.initialize, self.aggregation.agg
        starts, mark_dirty = self._starts, self._dirty.add
        watermark_closing, idle_closing = self.watermark_closing, self.idle_closing
        clock, ttl = self.clock, self.ttl
        horizon = clock - ttl
        for key, event in zip(keys, events):
            ts = event.ts
            if ts < horizon:
                late.append((event, horizon, True))
                continue
            if ts > clock:
                clock = ts
                horizon = clock - ttl
            ks = states.get(key)
            if ks is None:
                ks = states[key] = _KeyState(now)
            start = ts - ts % width
            if start + width <= ks.watermark:
                late.append((event, ks.watermark, False))
                continue
            group = starts.get(start)
            if group is None:
                state = initialize()
                starts[start] = {key: state}
                heapq.heappush(self._open_starts, start)
                self._opened(ks, start)
            else:
                state = group.get(key)
                if state is None:
                    state = group[key] = initialize()
                    self._opened(ks, start)
            mark_dirty(start)
            agg(state, event)
            ks.idle_since = now
            if ts > ks.max_ts:
                ks.max_ts = ts
                if watermark_closing and ts - lateness > ks.watermark:
                    if settle:
                        move = ks.move
                        if move is not None and move[0] == now:
                            move[2] = ts - lateness  # settles with the queued one, at once
                        else:
                            move = ks.move = [now, key, ts - lateness]
                            self._pending.append(move)
                    else:
                        self._advance(key, ks, ts - lateness, closed)
            if idle_closing and ks.open:
                # A newer watermark or an older window can make the key due sooner than its entry.
                due = self._due_at(ks)
                if ks.due is None or due < ks.due:
                    self._schedule(key, ks, due)
        if clock != self.clock:
            self.clock = clock
            if not self.defer_expiry:
                self._expire(closed)

    def expire(self, closed: List[ClosedWindow]) -> None:
        """What add_many does after its events unless `defer_expiry`: see `_expire`."""
        self._expire(closed)

    def _expire(self, closed: List[ClosedWindow]) -> None:
        """Close the windows the horizon has passed, then forget the keys it allows."""
        horizon = self.clock - self.ttl
        width, keys, heap = self.width, self.keys, self._open_starts
        while heap and heap[0] + width <= horizon:
            start = heapq.heappop(heap)
            group = self._starts.pop(start, None)
            if not group:
                continue  # emptied by watermarks already (or a repeated entry)
            self._dirty.add(start)
            for key in sorted(group):
                closed.append(ClosedWindow(key, start, start + width, group[key]))
                self._closed(key, keys[key], start)
        ends, buckets = self._bucket_ends, self._idle_keys
        while ends and ends[0] <= horizon:
            for key in buckets.pop(ends.pop(0)):
                ks = keys.get(key)
                if ks is None or ks.open or key in self.pinned:
                    continue  # forgotten already, open again or pinned (retired again later)
                if self._forget_from(ks) <= horizon:
                    del keys[key]
                    self.expired += 1
                else:
                    self._retire(key, ks)  # an idle close moved its watermark further

    @staticmethod
    def _opened(ks: "_KeyState", start: int) -> None:
        if ks.open:
            if start < ks.first:
                ks.first = start
            elif start > ks.last:
                ks.last = start
        else:
            ks.first = ks.last = start
        ks.open += 1

    def _closed(self, key: str, ks: "_KeyState", start: int) -> None:
        """The key's window at `start` left its group: keep first/last/open true."""
        ks.open -= 1
        if not ks.open:
            self._retire(key, ks)
        elif start == ks.first:
            starts, width = self._starts, self.width
            at = start + width
            while key not in starts.get(at, ()):
                at += width
            ks.first = at
        elif start == ks.last:
            starts, width = self._starts, self.width
            at = start - width
            while key not in starts.get(at, ()):
                at -= width
            ks.last = at

    def _forget_from(self, ks: "_KeyState") -> int:
        """The horizon at which a key without open windows may be forgotten."""
        last_end = ks.max_ts - ks.max_ts % self.width + self.width
        return max(last_end, ks.watermark)

    def _retire(self, key: str, ks: "_KeyState") -> None:
        """Note a key whose last open window just closed, under the bucket it may leave in."""
        at = self._forget_from(ks)
        at += -at % self.width  # W-aligned: a few buckets per TTL, not one per key
        bucket = self._idle_keys.get(at)
        if bucket is None:
            self._idle_keys[at] = [key]
            insort(self._bucket_ends, at)
        else:
            bucket.append(key)

    def release(self, key: str) -> None:
        """A pinned key is no longer needed: it may be forgotten once it has no open window."""
        ks = self.keys.get(key)
        if ks is not None and not ks.open:
            self._retire(key, ks)

    def move_watermark(self, key: str, watermark: int, now: int,
                       closed: List[ClosedWindow]) -> None:
        """Idle time moved `key`'s watermark to `watermark` at idle-clock ms `now` (the sessions'
        idle closes, which come later than the windows'): as close_idle would."""
        ks = self.keys[key]
        if watermark > ks.watermark:
            self._advance(key, ks, watermark, closed)
        ks.idle_since = now
        if self.idle_closing and ks.open:
            self._schedule(key, ks)

    def apply_settled(self, now: int, closed: List[ClosedWindow]) -> None:
        """Apply the watermark moves that have waited `settle_ms` on the idle clock."""
        pending = self._pending
        limit = now - self.settle
        while pending and pending[0][0] <= limit:
            move = pending.popleft()
            _, key, watermark = move
            ks = self.keys.get(key)
            # A forgotten key's move is moot: its windows all ended at or before it.
            if ks is None:
                continue
            if ks.move is move:
                ks.move = None
            if watermark > ks.watermark:
                self._advance(key, ks, watermark, closed)

    def _advance(self, key: str, ks: _KeyState, watermark: int, closed: List[ClosedWindow]) -> None:
        ks.watermark = watermark
        if not ks.open:
            return
        width = self.width
        limit = watermark - width
        if ks.first > limit:  # the common case: nothing to close
            return
        starts, dirty = self._starts, self._dirty
        at, stop = ks.first, min(limit, ks.last)
        while at <= stop:  # oldest first; a key's open windows span a few W at most
            group = starts.get(at)
            if group is not None:
                state = group.pop(key, None)
                if state is not None:
                    closed.append(ClosedWindow(key, at, at + width, state))
                    if not group:
                        del starts[at]
                    dirty.add(at)
                    self._closed(key, ks, at)
            at += width

    def _due_at(self, ks: _KeyState) -> int:
        """Idle-clock ms at which the key's earliest open window closes if nothing arrives."""
        earliest_end = ks.first + self.width
        return ks.idle_since + max(self.settle, earliest_end - self._watermark_of(ks))

    def _watermark_of(self, ks: _KeyState) -> int:
        # Includes a move that is still settling.
        return max(ks.watermark, ks.max_ts - self.lateness)

    def _schedule(self, key: str, ks: _KeyState, due: Optional[int] = None) -> None:
        ks.due = self._due_at(ks) if due is None else due
        heap = self._idle_heap
        heapq.heappush(heap, (ks.due, key))
        # Forgotten keys leave their entries too. (At 4x the keys, the soak's 700,000 users
        # carried 2.8 million entries, +25 % RSS.) compact's bound, checked here first: this
        # runs per event that opens a window.
        keys = self.keys
        if len(heap) > bound(len(keys)):
            compact(heap, len(keys), lambda d, k: k in keys and keys[k].due == d)

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
            if not ks.open:
                continue
            if self._due_at(ks) <= now:
                # As if event time had kept flowing while the key was idle.
                self._advance(key, ks, self._watermark_of(ks) + (now - ks.idle_since), closed)
                ks.idle_since = now
            if ks.open:
                self._schedule(key, ks)
        return closed

    def close_all(self) -> List[ClosedWindow]:
        """End of input: emit every open window, oldest first per key."""
        closed: List[ClosedWindow] = []
        self._pending.clear()
        for key, ks in list(self.keys.items()):
            if ks.open:
                last_end = ks.last + self.width
                self._advance(key, ks, max(self._watermark_of(ks), last_end), closed)
        self._idle_heap.clear()
        for ks in self.keys.values():
            ks.due = None
            ks.move = None
        return closed

    # Recovery. Pickling every open window each epoch made snapshots cost O(state) per epoch,
    # most of the run time of a long backfill (bounded page windows stay open to the end).
    # So window states are pickled per window start and a group is pickled again only when
    # one of its windows changed; the snapshot is immutable bytes, never mutated later.
    def snapshot(self) -> WindowsSnapshot:
        blobs, starts = self._blobs, self._starts
        for start in self._dirty:
            group = starts.get(start)
            if group:
                blobs[start] = pack(group)
            else:
                blobs.pop(start, None)
        self._dirty.clear()
        times = array("q")
        for ks in self.keys.values():
            times.append(ks.max_ts)
            times.append(ks.watermark)
        return WindowsSnapshot(pack_marks(self.keys, times), dict(blobs), self.clock)

    def restore(self, stored, now: int) -> None:
        """Load a snapshot of any known version; idle time restarts from `now` (downtime never
        counts as idle). ValueError when `stored` is not a window snapshot this code reads."""
        snapshot = WindowsSnapshot.load(stored)
        self.keys.clear()
        self._idle_heap.clear()
        self._starts.clear()
        self._dirty.clear()
        self._blobs.clear()
        self._idle_keys.clear()
        self._bucket_ends.clear()
        self.clock = snapshot.clock
        marks, blobs = snapshot.marks, snapshot.groups
        for key, max_ts, watermark in unpack_marks(marks):
            ks = self.keys[key] = _KeyState(now)
            ks.max_ts = max_ts
            ks.watermark = watermark
        for start, blob in blobs.items():
            self._starts[start] = unpack(blob)
            if is_packed(blob):
                self._blobs[start] = blob
            else:  # a bare pickle of version 4 or before: packed at the next snapshot
                self._dirty.add(start)
        for start in sorted(self._starts):
            for key in self._starts[start]:
                self._opened(self.keys[key], start)
        self._open_starts = sorted(self._starts)
        for key, ks in self.keys.items():
            if not ks.open:
                self._retire(key, ks)
        # What a store written before expiry (or with a longer TTL) holds beyond this one's
        # horizon goes with the clock's next move: a restore emits nothing.
        if self.idle_closing:
            for key, ks in self.keys.items():
                if ks.open:
                    self._schedule(key, ks)

    def contents(self) -> Dict[str, tuple]:
        """{key: (max_ts, watermark, {start: state})}: a plain view for tests and tools."""
        windows: Dict[str, Dict[int, list]] = {key: {} for key in self.keys}
        for start in sorted(self._starts):
            for key, state in self._starts[start].items():
                windows[key][start] = state
        return {key: (ks.max_ts, ks.watermark, windows[key]) for key, ks in self.keys.items()}
