"""User sessions as pure code: which events form a session, when it is final, and its summary.

Nothing here knows about Bytewax or Kafka (tests/core/test_sessions.py drives it table-driven
and against a brute-force sort-and-split with Hypothesis); the user stage feeds it the events
its windows found on time, so an event has one lateness verdict for windows and sessions.

Semantics (SPEC: Sessions), per user, over the user's on-time events in the order
(ts, partition, offset), "ties by arrival" being the input's offset order:
- gap G: consecutive events less than G apart are in the same run; G or more apart, not;
- max M: a run is cut greedily from the left: a session starts at its first event time s and
  holds the run's events up to s + M; the first later event starts the next one. So a
  session's duration (last minus first event time) is at most M.
- final: a session is emitted once, when no event that is not late can still change it. An
  event e joins, extends or bridges a session only if ts(e) <= c = min(end + G - 1, start + M),
  and an event is late when its W-window has closed (window end <= the user's watermark) or it
  is behind the shard's horizon. So the session is final once window_end(c) <= watermark, or
  c < horizon; the watermark moves with the user's events and with the idle clock (as for the
  windows: `KeyedWindows.move_watermark`), and close_all() ends a bounded input.
  In words: when the watermark passes its end plus the gap, rounded up to the window grid.
Why an emitted session never changes: after it, every event that is not late has
ts > c, so it lies G or more after the session's last event or beyond its cap s + M, and the
greedy cut never moves a boundary left of a new event. Content depends only on which events
are on time, never on when a session closed or on how the input was batched or restarted.

State: a user's open sessions, sorted by start; each keeps its events as items
(ts, partition, offset, kind, url) until its start is *sealed* (every event before it is late:
window_end(start - 1) <= watermark), and from then on folds them into an aggregate a few at a
time, so a bot's day-long session costs an aggregate, not its events. Why folding is safe: events are only ever
needed again to re-cut a session whose start moves or which is bridged to an earlier one, and
both need an on-time event before its start. With M >= W + L (checked), a session whose start
is not sealed spans less than W + L, so a re-cut never meets a folded one (if it ever did, the
folded session is kept whole: exact counts, no crash).
Users with an open session are pinned in `KeyedWindows` (never forgotten), and released when
their last session closes; a session closes at the shard's horizon like a window, so session
state expires with the key state.
"""

import heapq
from bisect import insort
from dataclasses import dataclass
from operator import itemgetter
from typing import ClassVar, Dict, List, NamedTuple, Optional

from clickstream.core import codec
from clickstream.core.aggregations import distinct_count, with_distinct
from clickstream.core.blobs import is_packed, pack, unpack
from clickstream.core.dues import compact
from clickstream.core.events import CLICK, PAGE_VIEW, PURCHASE, SHARED_URLS
from clickstream.core.times import format_ts
from clickstream.core.windows import KeyedWindows

# A session's item (ts, partition, offset, kind, url) of an Event, in one C call.
_ITEM = itemgetter(3, 5, 6, 8, 2)
GROUP_MS = 60_000  # snapshot groups: users by the minute their first open session started
_BLOCK = -1  # marks a folded session among items being re-cut
FOLD_AT = 4  # a sealed session's events are folded into its aggregate from this many on


class Session:
    """One open session: first/last event time, events not yet folded, the folded aggregate
    [events, page_views, clicks, urls (None, a str or a set), entry item, exit item, converted]."""

    __slots__ = ("start", "end", "items", "agg")

    def __init__(self, item: tuple):
        self.start = self.end = item[0]
        self.items: list = [item]
        self.agg: Optional[list] = None

    @classmethod
    def of(cls, state: tuple) -> "Session":
        """A stored session, its urls the process's shared objects (SHARED_URLS): pickle
        shares a str only within one blob, so a restore of many snapshot groups made a copy
        of every url per group, kept as long as the sessions (and ints not at all)."""
        session = cls.__new__(cls)
        start, end, items, agg = state
        items = [(t, p, o, k, SHARED_URLS[u]) for t, p, o, k, u in items]
        if agg is not None:
            urls = agg[3]
            agg[3] = (SHARED_URLS[urls] if urls.__class__ is str else
                      None if urls is None else {SHARED_URLS[url] for url in urls})
            for at in (4, 5):
                t, p, o, k, u = agg[at]
                agg[at] = (t, p, o, k, SHARED_URLS[u])
        # Start and end as the int objects of their events, as a live session has them.
        for item in (items if agg is None else items + agg[4:6]):
            t = item[0]
            if t == start:
                start = t
            if t == end:
                end = t
        session.start, session.end, session.items, session.agg = start, end, items, agg
        return session


class ClosedSession(NamedTuple):
    key: str
    start: int
    end: int
    state: list  # [events, page_views, clicks, unique_pages, entry_url, exit_url, bounce, converted]


def _fold(agg: Optional[list], items) -> list:
    if agg is None:
        first = items[0]
        agg = [0, 0, 0, None, first, first, False]
    count, views, clicks, urls, entry, exit_, converted = agg
    for item in items:
        count += 1
        kind = item[3]
        if kind == PAGE_VIEW:
            views += 1
        elif kind == CLICK:
            clicks += 1
        elif kind == PURCHASE:
            converted = True
        urls = with_distinct(urls, item[4])
        if item < entry:
            entry = item
        if item > exit_:
            exit_ = item
    agg[:] = count, views, clicks, urls, entry, exit_, converted
    return agg


def summary(session: Session) -> list:
    """The closed session's output state (see ClosedSession)."""
    agg = _fold(session.agg, session.items) if session.items else session.agg
    count, views, clicks, urls, entry, exit_, converted = agg
    unique = distinct_count(urls)
    bounce = count == 1 and views == 1
    return [count, views, clicks, unique, entry[4], exit_[4], bounce, converted]


class SessionSummary:
    """A closed session as the user-sessions record (SPEC), its JSON and its database row."""

    def result(self, key: str, start: int, end: int, state: list) -> dict:
        return {
            "user_id": key,
            "session_start": format_ts(start),
            "session_end": format_ts(end),
            "duration_ms": end - start,
            "events": state[0],
            "page_views": state[1],
            "clicks": state[2],
            "unique_pages": state[3],
            "entry_url": state[4],
            "exit_url": state[5],
            "bounce": state[6],
            "converted": state[7],
        }

    def render(self, key: str, start: int, end: int, state: list) -> bytes:
        return codec.dumps(self.result(key, start, end, state))

    def row(self, key: str, start: int, end: int, state: list) -> tuple:
        return tuple(self.result(key, start, end, state).values())


SESSION_SUMMARY = SessionSummary()


@dataclass(frozen=True)
class SessionsSnapshot:
    """The open sessions in the recovery store: per GROUP_MS group of their users' first open
    session start, the pickled {user: [(start, end, items, agg)]}; a group is pickled again
    only when one of its users changed (most changes touch the last few minutes' groups).
    Groups are `blobs.pack`ed since version 2; version 1 held bare pickles (read as they are,
    packed at the next snapshot)."""

    VERSION: ClassVar[int] = 2
    groups: Dict[int, bytes]
    version: int = VERSION


@dataclass(frozen=True)
class UserShardSnapshot:
    """A user shard's state with sessions on: its windows and its open sessions. A shard with
    sessions off stores its WindowsSnapshot alone, which this reads as no open sessions."""

    VERSION: ClassVar[int] = 1
    windows: object  # a WindowsSnapshot (or any version KeyedWindows.restore reads)
    sessions: Optional[SessionsSnapshot]
    version: int = VERSION

    @classmethod
    def split(cls, stored):
        """(windows part, sessions part or None) of anything a user shard ever stored."""
        if isinstance(stored, cls):
            if stored.version != cls.VERSION:
                raise ValueError(f"the recovery store holds user state of version "
                                 f"{stored.version}; this version of clickstream reads "
                                 f"{cls.VERSION}")
            return stored.windows, stored.sessions
        return stored, None


class KeyedSessions:
    """The open sessions of one shard of users, beside (and driven by) its KeyedWindows."""

    def __init__(self, windows: KeyedWindows, gap_ms: int, max_ms: int):
        if gap_ms <= 0:
            raise ValueError("the session gap must be > 0")
        if max_ms < windows.width + windows.lateness:
            raise ValueError("the session maximum must be at least window width + allowed lateness")
        self.windows = windows
        self.gap = gap_ms
        self.max = max_ms
        self.open: Dict[str, List[Session]] = {}
        windows.pinned = self.open  # a user with an open session keeps its watermark
        windows.defer_expiry = True  # the batch's new users are pinned before the horizon moves
        self.count = 0  # open sessions
        # Users by the W-aligned time after their first session's close point c, for the
        # horizon: a list slot per user, not a heap entry (lazy: re-filed when c moved on).
        self._horizon: Dict[int, List[str]] = {}
        self._horizon_ends: List[int] = []  # the sorted keys of _horizon
        self._idle_heap: list = []  # (idle-clock ms when due, user): lazy
        self._idle_due: Dict[str, int] = {}  # each user's live idle entry
        self._groups: Dict[int, set] = {}  # GROUP_MS group -> users
        self._dirty: set = set()
        self._blobs: Dict[int, bytes] = {}

    # --- the rules ------------------------------------------------------------------------

    def _close_point(self, session: Session) -> int:
        c = session.end + self.gap - 1
        cap = session.start + self.max
        return cap if cap < c else c

    def _need(self, session: Session, watermark: int) -> int:
        """How far the watermark must still move for `session` to be final (<= 0: it is)."""
        c = self._close_point(session)
        width = self.windows.width
        return c - c % width + width - watermark

    def _sealed(self, start: int, watermark: int) -> bool:
        before = start - 1
        width = self.windows.width
        return before - before % width + width <= watermark

    # --- events ---------------------------------------------------------------------------

    def add_many(self, keys, events, now: int, closed: List[ClosedSession],
                 closed_windows: list) -> None:
        """Add on-time events[i] of user keys[i] at idle-clock ms `now` (after the windows
        judged them); sessions that become final go to `closed`, then the windows' horizon
        moves (windows it closes go to `closed_windows`).

        Folding and closing wait for the end of the batch: the windows judged each event
        against the watermark of its moment, and a later event of the same batch may already
        have moved it (an event on time then must still find its session). A user whose only
        session just went on needs no settling: that cannot make it final (its close point
        moved with its newest event, past the watermark) nor its idle close sooner; only its
        snapshot group is dirty and, past FOLD_AT events, it may fold."""
        opened = self.open
        gap, cap = self.gap, self.max
        touched: Dict[str, Optional[int]] = {}  # user -> its first session's start before
        went_on: Dict[str, Session] = {}  # users whose only session just went on
        for key, event in zip(keys, events):
            item = _ITEM(event)
            pieces = opened.get(key)
            if pieces is None:
                opened[key] = [Session(item)]
                self.count += 1
                if key not in touched:
                    touched[key] = None
                continue
            last = pieces[-1]
            t = item[0]
            start = last.start
            if start <= t <= start + cap and t - last.end < gap:
                last.items.append(item)  # the common case: the user's newest session goes on
                if t > last.end:
                    last.end = t
                if len(pieces) == 1:
                    went_on[key] = last
                elif key not in touched:
                    touched[key] = pieces[0].start
                continue
            if key not in touched:
                touched[key] = pieces[0].start  # before _insert may move it
            self._insert(pieces, item)
        self._went_on(went_on, touched)
        self._settle(touched, now, closed)
        self._expire(closed)
        self.windows.expire(closed_windows)
        dues = self._idle_due
        compact(self._idle_heap, len(dues), lambda due, key: dues.get(key) == due)

    def _went_on(self, went_on: Dict[str, Session], touched: Dict[str, Optional[int]]) -> None:
        """Users whose only session went on and that need no settling: mark their snapshot
        group dirty and fold their session if it is sealed (see `_sealed`, inlined)."""
        states, dirty, width = self.windows.keys, self._dirty, self.windows.width
        for key, session in went_on.items():
            if key in touched:
                continue  # _settle does both
            start = session.start
            dirty.add(start - start % GROUP_MS)
            items = session.items
            if len(items) >= FOLD_AT:
                before = start - 1
                if before - before % width + width <= states[key].watermark:
                    session.agg = _fold(session.agg, items)
                    items.clear()

    def _settle(self, touched: Dict[str, Optional[int]], now: int,
                closed: List[ClosedSession]) -> None:
        """After a batch: regroup, fold sealed sessions, close final ones, schedule idle closes.
        (The rules of _close_point and _need, inlined: this runs per user and batch.)"""
        states, opened, dirty = self.windows.keys, self.open, self._dirty
        lateness, idle = self.windows.lateness, self.windows.idle_closing
        width, gap, cap = self.windows.width, self.gap, self.max
        dues = self._idle_due
        for key, before in touched.items():
            pieces = opened[key]
            first = pieces[0]
            start = first.start
            if before != start:
                self._regroup(key, before, start)
                self._file(key, self._close_point(first))
            else:
                dirty.add(start - start % GROUP_MS)
            ks = states[key]
            watermark = ks.watermark
            for session in pieces:
                if len(session.items) >= FOLD_AT and self._sealed(session.start, watermark):
                    session.agg = _fold(session.agg, session.items)
                    session.items.clear()
            moved = ks.max_ts - lateness
            if moved > watermark:
                watermark = moved
            c = first.end + gap - 1
            if start + cap < c:
                c = start + cap
            need = c - c % width + width - watermark
            if need <= 0:
                self._close_ready(key, closed)
                pieces = opened.get(key)
                if pieces is None:
                    continue
                need = self._need(pieces[0], watermark)  # the next one waits: > 0
            if idle:
                due = now + need
                recorded = dues.get(key)
                if recorded is None or due < recorded:
                    dues[key] = due
                    heapq.heappush(self._idle_heap, (due, key))

    def _insert(self, pieces: List[Session], item: tuple) -> None:
        """Place an event that does not simply go on with the user's newest session."""
        t = item[0]
        gap, cap = self.gap, self.max
        if t >= pieces[-1].start:  # G after the newest session, or beyond its cap: the next one
            pieces.append(Session(item))
            self.count += 1
            return
        lo = 0
        while pieces[lo].end + gap <= t:  # sessions ending G or more before t stay as they are
            lo += 1
        if pieces[lo].start >= t + gap:  # G or more from everything: a session of its own
            pieces.insert(lo, Session(item))
            self.count += 1
            return
        # t joins the run of pieces[lo]: re-cut that run from its first session that t cannot
        # move (the anchor, when t is not before it), with t and every later session of the run.
        anchor = pieces[lo] if t >= pieces[lo].start else None
        first = lo + 1 if anchor is not None else lo
        run_end = max(anchor.end, t) if anchor is not None else t
        hi = first
        while hi < len(pieces) and pieces[hi].start - run_end < gap:
            if pieces[hi].end > run_end:
                run_end = pieces[hi].end
            hi += 1
        units = [item]
        for session in pieces[first:hi]:
            if session.agg is None:
                units += session.items
            else:  # cannot happen while M >= W + L (see the module's docstring)
                session.agg = _fold(session.agg, session.items) if session.items else session.agg
                session.items = []
                units.append((session.start, _BLOCK, _BLOCK, _BLOCK, session))
        units.sort()
        recut: List[Session] = []
        current = anchor
        for unit in units:
            if unit[1] == _BLOCK:
                block = unit[4]
                if current is not None and block.start <= current.start + cap:
                    self._absorb(current, block)
                else:
                    recut.append(block)
                    current = block
            elif current is not None and unit[0] <= current.start + cap:
                self._add(current, unit)
            else:
                current = Session(unit)
                recut.append(current)
        self.count += len(recut) - (hi - first)
        pieces[first:hi] = recut

    @staticmethod
    def _add(session: Session, item: tuple) -> None:
        t = item[0]
        session.items.append(item)
        if t < session.start:
            session.start = t
        elif t > session.end:
            session.end = t

    @staticmethod
    def _absorb(into: Session, other: Session) -> None:
        into.agg = _fold(into.agg, into.items) if into.items else into.agg
        into.items = []
        if other.items:
            other.agg = _fold(other.agg, other.items)
        count, views, clicks, urls, entry, exit_, converted = other.agg
        agg = into.agg
        agg[0] += count
        agg[1] += views
        agg[2] += clicks
        for url in ([urls] if urls.__class__ is str else urls):
            agg[3] = with_distinct(agg[3], url)
        agg[4] = min(agg[4], entry)
        agg[5] = max(agg[5], exit_)
        agg[6] = agg[6] or converted
        into.start = min(into.start, other.start)
        into.end = max(into.end, other.end)

    # --- closing --------------------------------------------------------------------------

    def _close_ready(self, key: str, closed: List[ClosedSession]) -> None:
        """Emit the user's sessions that are final now (oldest first: they close in order).
        (The rules of _close_point and _need, inlined: this runs once per session.)"""
        pieces = self.open[key]
        windows = self.windows
        ks = windows.keys[key]
        watermark = ks.max_ts - windows.lateness
        if ks.watermark > watermark:
            watermark = ks.watermark
        horizon = windows.clock - windows.ttl
        width, gap, cap = windows.width, self.gap, self.max
        before = pieces[0].start
        while pieces:
            session = pieces[0]
            c = session.end + gap - 1
            if session.start + cap < c:
                c = session.start + cap
            if c >= horizon and c - c % width + width > watermark:
                break
            pieces.pop(0)
            self.count -= 1
            closed.append(ClosedSession(key, session.start, session.end, summary(session)))
        if pieces:
            self._regroup(key, before, pieces[0].start)
        else:
            self._regroup(key, before, None)
            del self.open[key]
            self._idle_due.pop(key, None)
            windows.release(key)

    def _expire(self, closed: List[ClosedSession]) -> None:
        """Close what the shard's horizon has passed."""
        horizon = self.windows.clock - self.windows.ttl
        ends, filed = self._horizon_ends, self._horizon
        while ends and ends[0] <= horizon:
            for key in filed.pop(ends.pop(0)):
                pieces = self.open.get(key)
                if pieces is None:
                    continue  # closed already
                c = self._close_point(pieces[0])
                if c < horizon:
                    self._close_ready(key, closed)
                    pieces = self.open.get(key)
                    if pieces is None:
                        continue
                    c = self._close_point(pieces[0])
                self._file(key, c)  # after the horizon: not met again in this loop

    def _file(self, key: str, c: int) -> None:
        """Note `key` for the horizon: it may close once the horizon passes c."""
        width = self.windows.width
        at = c - c % width + width  # the first W-multiple after c: the horizon passes c there
        users = self._horizon.get(at)
        if users is None:
            self._horizon[at] = [key]
            insort(self._horizon_ends, at)
        else:
            users.append(key)

    def next_due(self) -> Optional[int]:
        return self._idle_heap[0][0] if self._idle_heap else None

    def close_idle(self, now: int, closed_windows: list) -> List[ClosedSession]:
        """Close what the idle clock `now` allows; the idle time moves the user's watermark in
        the windows too (windows that closes go to `closed_windows`), so lateness stays one
        verdict for both."""
        closed: List[ClosedSession] = []
        heap, dues, states = self._idle_heap, self._idle_due, self.windows.keys
        lateness = self.windows.lateness
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            if dues.get(key) != due:
                continue  # superseded, or the user has no open session any more
            del dues[key]
            ks = states[key]
            watermark = max(ks.watermark, ks.max_ts - lateness)
            need = self._need(self.open[key][0], watermark)
            moved = watermark + (now - ks.idle_since)
            if need <= now - ks.idle_since:
                self.windows.move_watermark(key, moved, now, closed_windows)
                self._close_ready(key, closed)
            pieces = self.open.get(key)
            if pieces is not None:
                ks = states[key]
                watermark = max(ks.watermark, ks.max_ts - lateness)
                dues[key] = due = ks.idle_since + max(self._need(pieces[0], watermark), 1)
                heapq.heappush(heap, (due, key))
        return closed

    def close_all(self) -> List[ClosedSession]:
        """End of a bounded input: every open session is final."""
        closed: List[ClosedSession] = []
        for key, pieces in self.open.items():
            for session in pieces:
                closed.append(ClosedSession(key, session.start, session.end, summary(session)))
            self.windows.release(key)
        self.open.clear()
        self.windows.pinned = self.open
        self.count = 0
        self._horizon.clear()
        self._horizon_ends.clear()
        self._idle_heap.clear()
        self._idle_due.clear()
        self._dirty.update(self._groups)
        self._groups.clear()
        return closed

    # --- recovery -------------------------------------------------------------------------

    def _regroup(self, key: str, before: Optional[int], after: Optional[int]) -> None:
        groups = self._groups
        old = None if before is None else before - before % GROUP_MS
        new = None if after is None else after - after % GROUP_MS
        if old != new:
            if old is not None:
                members = groups[old]
                members.discard(key)
                if not members:
                    del groups[old]
                self._dirty.add(old)
            if new is not None:
                groups.setdefault(new, set()).add(key)
        if new is not None:
            self._dirty.add(new)

    def snapshot(self) -> SessionsSnapshot:
        blobs, groups, opened = self._blobs, self._groups, self.open
        for group in self._dirty:
            members = groups.get(group)
            if members:
                blobs[group] = pack(
                    {key: [(s.start, s.end, s.items, s.agg) for s in opened[key]]
                     for key in sorted(members)})
            else:
                blobs.pop(group, None)
        self._dirty.clear()
        return SessionsSnapshot(dict(blobs))

    def restore(self, stored: Optional[SessionsSnapshot], now: int) -> None:
        """Load the open sessions (after the windows were restored); idle time restarts at `now`."""
        self.open.clear()
        self.count = 0
        for heap in (self._horizon, self._horizon_ends, self._idle_heap, self._idle_due, self._groups,
                     self._dirty, self._blobs):
            heap.clear()
        if stored is None:
            return
        known = (1, SessionsSnapshot.VERSION)
        if not isinstance(stored, SessionsSnapshot) or stored.version not in known:
            found = getattr(stored, "version", type(stored).__name__)
            raise ValueError(f"the recovery store holds sessions of a format this version of "
                             f"clickstream cannot read ({found}; it reads 1 to "
                             f"{SessionsSnapshot.VERSION})")
        states = self.windows.keys
        lateness = self.windows.lateness
        for stored_group, blob in stored.groups.items():
            if is_packed(blob):
                self._blobs[stored_group] = blob
            else:  # a bare pickle of version 1: packed at the next snapshot
                self._dirty.add(stored_group)
            for key, sessions in unpack(blob).items():
                pieces = self.open[key] = [Session.of(state) for state in sessions]
                self.count += len(pieces)
                first = pieces[0]
                # The group follows from the first start (_regroup relies on it); a store
                # grouped otherwise has both its blobs written again at the next snapshot.
                group = first.start - first.start % GROUP_MS
                self._groups.setdefault(group, set()).add(key)
                if group != stored_group:
                    self._dirty.update((stored_group, group))
                self._file(key, self._close_point(first))
                if self.windows.idle_closing:
                    ks = states[key]
                    watermark = max(ks.watermark, ks.max_ts - lateness)
                    due = self._idle_due[key] = now + max(self._need(first, watermark), 1)
                    heapq.heappush(self._idle_heap, (due, key))

    def contents(self) -> Dict[str, List[tuple]]:
        """{user: [(start, end, summary)]} of the open sessions: for tests and tools."""
        return {key: [(s.start, s.end, summary(s)) for s in pieces]
                for key, pieces in self.open.items()}

