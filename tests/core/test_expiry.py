"""Key state expiry (SPEC: Windows): the horizon rule, table-driven and as properties.

The rule lives in clickstream/core/windows.py with its proof: with the shard clock C and the
TTL T, events older than C - T are late, windows ending at or before C - T close, and a key
without open windows whose watermark and last window end are at or before C - T is forgotten.
"""

from typing import Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.core.aggregations import PageTraffic, UserEngagement
from clickstream.core.events import make_event
from clickstream.core.times import NEVER
from clickstream.core.windows import KeyedWindows

W, L, T = 5000, 10000, 20000


E = make_event  # an Event from (user_id, event_type, url, ts, session_id, partition, offset)


def feed(windows: KeyedWindows, batches, now: int = 0):
    """Feed batches of (key, ts); returns (closed [(key, start, count)], late [(i, horizon?)])."""
    closed_all, late_all, i = [], [], 0
    for batch in batches:
        closed, late = [], []
        events = [E(key, "page_view", "/", ts) for key, ts in batch]
        windows.add_many([key for key, _ in batch], events, now, closed, late)
        late_ids = {id(entry[0]): entry[2] for entry in late}
        for event in events:
            if id(event) in late_ids:
                late_all.append((i, late_ids[id(event)]))
            i += 1
        closed_all += [(c.key, c.start, c.state[0]) for c in closed]
    return closed_all, late_all


# (batches of (key, ts); W=5 s, L=10 s, T=20 s, no idle closing)
#   -> windows closed on the way, late events (index, by the horizon?), keys held at the end
CASES = [
    ("an event exactly at the horizon is on time, one ms before it is late",
     [[("a", 100_000)], [("b", 80_000), ("b", 79_999)]],
     [], [(2, True)], {"a", "b"}),
    ("a key's own watermark decides within the TTL: another key far ahead makes nothing late",
     [[("a", 100_000)], [("b", 81_000), ("b", 95_000), ("b", 81_500)]],
     [("b", 80_000, 1)], [(3, False)], {"a", "b"}),
    ("the horizon closes a window its key's watermark never reached, then forgets the key",
     [[("a", 1_000)], [("b", 30_000)]],
     [("a", 0, 1)], [], {"b"}),
    ("a forgotten key coming back into its emitted window is late, never a second result",
     [[("a", 1_000)], [("b", 30_000)], [("a", 4_000)]],
     [("a", 0, 1)], [(2, True)], {"b"}),
    ("a forgotten key coming back at the horizon opens a new window",
     [[("a", 1_000)], [("b", 30_000)], [("a", 10_000), ("b", 60_000)]],
     [("a", 0, 1), ("b", 30_000, 1), ("a", 10_000, 1)], [], {"b"}),
    ("a key with an open window is never forgotten",
     [[("a", 15_000)], [("b", 35_000)]],
     [], [], {"a", "b"}),
    ("a window ending exactly at the horizon closes and its key goes",
     [[("a", 15_000)], [("b", 35_000)], [("b", 40_000)]],
     [("a", 15_000, 1)], [], {"b"}),
    ("a key whose windows closed on its watermark is kept until the horizon passes them",
     [[("a", 1_000), ("a", 16_000)], [("b", 35_000)], [("b", 40_000)]],
     [("a", 0, 1), ("a", 15_000, 1)], [], {"b"}),
    ("late by the horizon is decided before the key's own rule, on an unknown key too",
     [[("a", 100_000)], [("new", 50_000)]],
     [], [(1, True)], {"a"}),
]


@pytest.mark.parametrize("name, batches, closed, late, kept", CASES, ids=[c[0] for c in CASES])
def test_the_horizon_rule(name, batches, closed, late, kept):
    windows = KeyedWindows(UserEngagement(), W, L, idle_closing=False, ttl_ms=T)
    assert feed(windows, batches) == (closed, late)
    assert set(windows.keys) == kept


def test_bounded_page_windows_close_at_the_horizon_and_their_urls_are_forgotten():
    windows = KeyedWindows(PageTraffic(), W, L, idle_closing=False, watermark_closing=False,
                           ttl_ms=T)
    closed, _ = feed(windows, [[("/a", t) for t in range(0, 60_000, 1000)]])
    # The clock is 59 s, the horizon 39 s: windows ending at or before it are out.
    assert [(k, s) for k, s, _ in closed] == [("/a", s) for s in range(0, 35_000, 5000)]
    assert sorted(windows.contents()["/a"][2]) == list(range(35_000, 60_000, 5000))
    feed(windows, [[("/b", 100_000)]])
    assert set(windows.keys) == {"/b"} and windows.expired == 1


def test_an_idle_close_past_the_last_window_holds_the_key_until_the_horizon_passes_it():
    windows = KeyedWindows(UserEngagement(), W, L, ttl_ms=T)
    feed(windows, [[("a", 1_000)]], now=0)
    assert [c.start for c in windows.close_idle(100_000)] == [0]
    # idle time moved a's watermark to -9 s + 100 s = 91 s, far past its last window's end
    assert windows.contents()["a"][1] == 91_000
    feed(windows, [[("b", 110_000)]], now=100_000)  # horizon 90 s < 91 s: a stays
    assert "a" in windows.keys
    # Keys leave in W-aligned buckets: a goes when the horizon reaches 95 s, not at 91 s.
    feed(windows, [[("b", 114_999)]], now=100_000)
    assert "a" in windows.keys
    feed(windows, [[("b", 115_000)]], now=100_000)
    assert "a" not in windows.keys and windows.expired == 1


def test_the_clock_survives_a_snapshot_and_forgotten_keys_are_not_in_it():
    windows = KeyedWindows(UserEngagement(), W, L, idle_closing=False, ttl_ms=T)
    feed(windows, [[("a", 1_000)], [("b", 30_000)]])
    snap = windows.snapshot()
    restored = KeyedWindows(UserEngagement(), W, L, idle_closing=False, ttl_ms=T)
    restored.restore(snap, now=0)
    assert restored.clock == 30_000 and set(restored.contents()) == {"b"}
    assert feed(restored, [[("a", 9_999)]]) == ([], [(0, True)])


def test_a_store_from_before_expiry_is_trimmed_on_the_clocks_next_move():
    old = KeyedWindows(UserEngagement(), W, L, idle_closing=False)  # never forgets
    feed(old, [[("a", 1_000)], [("a", 16_000)], [("b", 100_000)]])
    restored = KeyedWindows(UserEngagement(), W, L, idle_closing=False, ttl_ms=T)
    restored.restore(old.snapshot(), now=0)
    assert set(restored.keys) == {"a", "b"}  # a restore itself emits and forgets nothing
    closed, _ = feed(restored, [[("b", 100_001)]])
    assert closed == [("a", 15_000, 1)] and set(restored.keys) == {"b"}


def test_a_ttl_below_window_plus_lateness_is_refused():
    with pytest.raises(ValueError, match="TTL"):
        KeyedWindows(UserEngagement(), W, L, ttl_ms=W + L - 1)
    KeyedWindows(UserEngagement(), W, L, ttl_ms=W + L)


class Reference:
    """SPEC's rules without forgetting and without idle closing: plain dicts, one event at a time."""

    def __init__(self, watermark_closing: bool):
        self.watermark_closing = watermark_closing
        self.clock = NEVER
        self.marks: Dict[str, Tuple[int, int]] = {}
        self.open: Dict[Tuple[str, int], int] = {}

    def add(self, key: str, ts: int):
        """None when on time, else whether the horizon made it late."""
        if ts < self.clock - T:
            return True
        self.clock = max(self.clock, ts)
        max_ts, watermark = self.marks.get(key, (NEVER, NEVER))
        start = ts // W * W
        if start + W <= watermark:
            return False
        self.open[(key, start)] = self.open.get((key, start), 0) + 1
        max_ts = max(max_ts, ts)
        if self.watermark_closing:
            watermark = max(watermark, max_ts - L)
        self.marks[key] = (max_ts, watermark)
        return None

    def close(self, limit_of) -> List[Tuple[str, int, int]]:
        due = sorted(k for k in self.open if k[1] + W <= limit_of(k[0]))
        return [(key, start, self.open.pop((key, start))) for key, start in due]

    def end_of_batch(self):
        closed = self.close(lambda key: self.marks[key][1])
        return closed + self.close(lambda key: self.clock - T)


KEYS = st.sampled_from(["a", "b", "c", "d"])
STEPS = st.integers(min_value=-30_000, max_value=12_000)
BATCHES = st.lists(st.lists(st.tuples(KEYS, STEPS), min_size=1, max_size=6), max_size=25)


@settings(max_examples=400, deadline=None)
@given(batches=BATCHES, watermark_closing=st.booleans())
def test_forgetting_never_changes_a_result(batches, watermark_closing):
    """Against the reference that never forgets: the same late events, the same windows with
    the same counts closed after the same batches, and at the end the same open windows."""
    windows = KeyedWindows(UserEngagement(), W, L, idle_closing=False,
                           watermark_closing=watermark_closing, ttl_ms=T)
    ref = Reference(watermark_closing)
    ts = 1_000_000
    for batch in batches:
        events = []
        for key, step in batch:
            ts += step
            events.append((key, ts))
        expected_late = [ref.add(key, t) for key, t in events]
        expected_closed = ref.end_of_batch()
        closed, late = feed(windows, [events])
        assert sorted(closed) == sorted(expected_closed)
        assert late == [(i, by_horizon) for i, by_horizon in enumerate(expected_late)
                        if by_horizon is not None]
        assert all(k in windows.keys for k, _ in ref.open)
    assert sorted((c.key, c.start, c.state[0]) for c in windows.close_all()) == \
        sorted(ref.close(lambda key: 2**62))


ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("events"), st.lists(st.tuples(KEYS, STEPS), min_size=1, max_size=5)),
    st.tuples(st.just("idle"), st.integers(min_value=0, max_value=40_000)),
    st.tuples(st.just("snapshot"), st.just(None)),
), max_size=30)


@settings(max_examples=300, deadline=None)
@given(actions=ACTIONS, settle=st.sampled_from([0, 1000]))
def test_with_idle_closing_every_window_is_emitted_once_and_every_event_counted_once(actions,
                                                                                       settle):
    """Idle closes depend on wall time, so here the property is safety: no (key, window) is
    emitted twice, and every event is either late or counted in exactly one emitted window."""
    windows = KeyedWindows(PageTraffic(), W, L, settle_ms=settle, ttl_ms=T)
    now, ts, on_time = 0, 1_000_000, {}
    emitted: Dict[Tuple[str, int], int] = {}

    def record(closed):
        for c in closed:
            assert (c.key, c.start) not in emitted, "a window emitted twice"
            emitted[(c.key, c.start)] = c.state[1]

    for kind, arg in actions:
        if kind == "events":
            batch = []
            for key, step in arg:
                ts += step
                batch.append(E("u", "page_view", key, ts))
            closed, late = [], []
            windows.add_many([e.url for e in batch], batch, now, closed, late)
            late_ids = {id(entry[0]) for entry in late}
            for e in batch:
                if id(e) not in late_ids:
                    window = (e.url, e.ts // W * W)
                    on_time[window] = on_time.get(window, 0) + 1
            record(closed)
        elif kind == "idle":
            now += arg
            record(windows.close_idle(now))
        else:
            restored = KeyedWindows(PageTraffic(), W, L, settle_ms=settle, ttl_ms=T)
            restored.restore(windows.snapshot(), now)
            windows = restored
    record(windows.close_all())
    assert emitted == on_time


def test_the_idle_heap_is_compacted_past_forgotten_keys():
    """Compaction of the idle heap once looked every key up and raised KeyError for entries
    of forgotten keys: 2,000 keys leave, then the next schedule compacts."""
    windows = KeyedWindows(UserEngagement(), W, L, ttl_ms=T)
    feed(windows, [[(f"k{i}", 1_000) for i in range(2000)]], now=0)
    assert len(windows._idle_heap) == 2000
    feed(windows, [[("far", 100_000)]], now=0)
    assert set(windows.keys) == {"far"} and windows.expired == 2000
    feed(windows, [[("new", 100_001)]], now=0)
    assert sorted(k for _, k in windows._idle_heap) == ["far", "new"]
    assert sorted(c.key for c in windows.close_idle(10**9)) == ["far", "new"]


def test_the_idle_heap_stays_within_twice_the_keys_while_a_backlog_replays():
    """The idle clock stands still during a backlog, so every watermark move pushes a new
    entry for its key; compaction keeps the heap within 2 x keys + 1024 entries."""
    windows = KeyedWindows(UserEngagement(), W, L, ttl_ms=T)
    keys = [f"k{i}" for i in range(3000)]
    for step in range(40):
        feed(windows, [[(k, 1_000_000 + step * 700) for k in keys]], now=0)
        assert len(windows._idle_heap) <= 2 * len(windows.keys) + 1025
