"""The user stage: per-user windows, where lateness is decided once per event (SPEC: per user),
and the user sessions, fed the events found on time (so one verdict serves both).

Events on time for their user go on to the page stage, grouped by page shard.
"""

from typing import List, Optional, Tuple

from clickstream.core.aggregations import USER_ENGAGEMENT
from clickstream.core.batches import Batch
from clickstream.core.partitioner import Partitioner
from clickstream.core.records import PAGE_IN, SESSION, USER
from clickstream.core.sessions import ClosedSession, KeyedSessions, UserShardSnapshot
from clickstream.core.shards import PAGE_SHARD_OF
from clickstream.core.windows import ClosedWindow, KeyedWindows
from clickstream.runtime.metrics import METRICS, observe_many
from clickstream.stages.shard import WindowShard, grouped


class UserShard(WindowShard):
    aggregation = USER_ENGAGEMENT
    output = USER

    def __init__(self, *args, sessions: Optional[Tuple[int, int, int]] = None, **kwargs):
        """`sessions`: (gap ms, max ms, user-sessions partitions), None when they are off."""
        self.session_rules = sessions
        self.sessions: Optional[KeyedSessions] = None
        self._open_reported = 0
        if sessions is not None:
            self.session_partition_of = Partitioner(sessions[2])
        super().__init__(*args, **kwargs)

    def _windows(self, width_ms: int, lateness_ms: int, bounded: bool,
                 ttl_ms: Optional[int]) -> KeyedWindows:
        windows = super()._windows(width_ms, lateness_ms, bounded, ttl_ms)
        if self.session_rules is not None:
            gap_ms, max_ms, _ = self.session_rules
            self.sessions = KeyedSessions(windows, gap_ms, max_ms)
        return windows

    def _restore(self, stored, now: int) -> None:
        windows, sessions = UserShardSnapshot.split(stored)
        self.windows.restore(windows, now)
        if self.sessions is not None:
            self.sessions.restore(sessions, now)
        # With sessions off, a store's open sessions are dropped (they were never emitted).

    def _key_of(self, event) -> str:
        return event.user_id

    def _add(self, chunks: List[list], now: int, closed: List[ClosedWindow], late: list) -> list:
        windows, sessions = self.windows, self.sessions
        to_pages: dict = {}
        done: List[ClosedSession] = []
        for chunk in chunks:
            keys = [event.user_id for event in chunk]
            windows.add_many(keys, chunk, now, closed, late)
            if late:
                late_ones = {id(late_one[0]) for late_one in late}
                chunk = [event for event in chunk if id(event) not in late_ones]
                keys = [event.user_id for event in chunk]
            if sessions is not None:
                sessions.add_many(keys, chunk, now, done, closed)
            for event in chunk:
                shard = PAGE_SHARD_OF[event.url]
                bucket = to_pages.get(shard)
                if bucket is None:
                    to_pages[shard] = Batch((event,))
                else:
                    bucket.append(event)
        out = [(PAGE_IN, item) for item in to_pages.items()]
        self._emit_sessions(done, out)
        return out

    def _emit_sessions(self, done: List[ClosedSession], out: list) -> None:
        if done:
            grouped(done, SESSION, self.session_partition_of, out)
            METRICS.sessions_emitted.inc(len(done))
            bounced = converted = 0
            for session in done:
                state = session.state
                bounced += state[6]
                converted += state[7]
            observe_many(METRICS.session_duration,
                         [(session.end - session.start) / 1000 for session in done])
            METRICS.sessions_bounced.inc(bounced)
            METRICS.sessions_converted.inc(converted)
        if self.sessions is not None and self.sessions.count != self._open_reported:
            METRICS.sessions_open.inc(self.sessions.count - self._open_reported)
            self._open_reported = self.sessions.count

    def on_notify(self):
        if self.sessions is None:
            return super().on_notify()
        out: list = []
        now = self.clock.now_ms()
        closed = self.windows.close_idle(now)
        done = self.sessions.close_idle(now, closed)
        self._emit(closed, out)
        self._emit_sessions(done, out)
        self._report_keys()
        return out, self.RETAIN

    def on_eof(self):
        out, retain = super().on_eof()
        if self.sessions is not None:
            self._emit_sessions(self.sessions.close_all(), out)
        return out, retain

    def notify_at(self):
        if self.sessions is None:
            return super().notify_at()
        due = self.windows.next_due()
        sessions_due = self.sessions.next_due()
        if sessions_due is not None and (due is None or sessions_due < due):
            return self._timer(sessions_due)
        return self._timer(due)

    def snapshot(self):
        if self.sessions is None:
            return self.windows.snapshot()
        return UserShardSnapshot(self.windows.snapshot(), self.sessions.snapshot())
