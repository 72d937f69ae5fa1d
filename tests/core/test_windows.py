"""Window assignment, aggregates, lateness and closing: pure code, no broker."""

import pickle

import pytest

from clickstream.core.aggregations import PageTraffic, UserEngagement
from clickstream.core.blobs import is_packed, unpack
from clickstream.core.events import make_event
from clickstream.core.windows import KeyedWindows, WindowsSnapshot


E = make_event  # an Event from (user_id, event_type, url, ts, session_id, partition, offset)


@pytest.mark.parametrize("ts, width, start", [
    (0, 5000, 0),
    (4999, 5000, 0),
    (5000, 5000, 5000),
    (1767225604999, 5000, 1767225600000),
    (-1, 5000, -5000),            # floor, not truncation, before 1970
    (-5000, 5000, -5000),
    (-5001, 5000, -10000),
    (59_999, 60_000, 0),
    (123, 1, 123),
    (1767225600123, 7000, 1767225600123 - 1767225600123 % 7000),
])
def test_window_start_is_epoch_aligned_floor(ts, width, start):
    windows = KeyedWindows(PageTraffic(), width, 0, idle_closing=False, watermark_closing=False)
    windows.add_many(["/"], [E("u", "page_view", "/", ts)], 0, [], [])
    assert list(windows.contents()["/"][2]) == [start]
    assert start <= ts < start + width


def _add(windows, key, event, now, closed) -> bool:
    """Count one event; False when it is late."""
    late: list = []
    windows.add_many((key,), (event,), now, closed, late)
    return not late


def _feed(windows, events, now=0):
    """Feed (key, ts) pairs; returns (emitted [(key, start, events)], late indexes)."""
    emitted, late = [], []
    for i, (key, ts) in enumerate(events):
        closed = []
        if not _add(windows, key, E(key, "page_view", "/", ts), now, closed):
            late.append(i)
        emitted += [(c.key, c.start, c.state[0]) for c in closed]
    return emitted, late


# (events as (user, ts in ms), W=5000, L=10000) -> windows emitted on the way, late event indexes
LATENESS_CASES = [
    ("in order closes when the watermark passes end + L",
     [("u", 0), ("u", 4999), ("u", 14999), ("u", 15000)], [("u", 0, 2)], []),
    ("out of order within lateness still counts",
     [("u", 12000), ("u", 1000), ("u", 14000), ("u", 4999)], [], []),
    ("after the window was emitted the event is late",
     [("u", 1000), ("u", 15000), ("u", 4999), ("u", 0)], [("u", 0, 1)], [2, 3]),
    ("more than L behind but window still open is on time",
     [("u", 14000), ("u", 3500)], [], []),
    ("a window that never existed is late once the watermark passed it",
     [("u", 30000), ("u", 100)], [], [1]),
    ("lateness is per user", [("a", 60000), ("b", 0), ("a", 0)], [], [2]),
    ("one event closes several windows in order",
     [("u", 0), ("u", 5000), ("u", 10000), ("u", 40000)],
     [("u", 0, 1), ("u", 5000, 1), ("u", 10000, 1)], []),
    ("an event never makes itself late", [("u", 100000), ("u", 90001)], [], []),
    ("exactly on the boundary: end == watermark is closed",
     [("u", 2000), ("u", 15000), ("u", 4999)], [("u", 0, 1)], [2]),
]


@pytest.mark.parametrize("name, events, emitted, late", LATENESS_CASES,
                         ids=[c[0] for c in LATENESS_CASES])
def test_lateness_and_watermark_closing(name, events, emitted, late):
    windows = KeyedWindows(UserEngagement(), 5000, 10000, idle_closing=False)
    assert _feed(windows, events) == (emitted, late)


def test_zero_lateness_closes_at_window_end():
    windows = KeyedWindows(UserEngagement(), 1000, 0, idle_closing=False)
    assert _feed(windows, [("u", 0), ("u", 999), ("u", 1000), ("u", 999)]) == ([("u", 0, 2)], [3])


def test_close_all_emits_every_open_window_once_then_everything_older_is_late():
    windows = KeyedWindows(UserEngagement(), 5000, 10000, idle_closing=False)
    _feed(windows, [("a", 0), ("a", 7000), ("b", 3000)])
    closed = windows.close_all()
    assert sorted((c.key, c.start, c.state[0]) for c in closed) == [("a", 0, 1), ("a", 5000, 1), ("b", 0, 1)]
    assert windows.close_all() == []
    assert _feed(windows, [("a", 9999), ("b", 4000), ("a", 10000)]) == ([], [0, 1])


def test_idle_closing_runs_on_the_idle_clock():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 1000), ("u", 6000)], now=100)
    # watermark -4000: window [0,5) is due after 9 s idle, [5,10) after 14 s
    assert windows.next_due() == 100 + 9000
    assert windows.close_idle(9099) == []
    assert [(c.start, c.state[0]) for c in windows.close_idle(9100)] == [(0, 1)]
    assert windows.next_due() == 14100
    assert [(c.start, c.state[0]) for c in windows.close_idle(20000)] == [(5000, 1)]
    assert windows.next_due() is None
    # ...and what was closed by idleness is late afterwards
    assert _feed(windows, [("u", 9000)], now=20000) == ([], [0])


def test_new_events_postpone_idle_closing():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 1000)], now=0)          # due at 14 s
    _feed(windows, [("u", 2000)], now=10000)      # watermark -8000: due at 10 + 13 s
    assert windows.close_idle(14000) == []
    assert [c.state[0] for c in windows.close_idle(23000)] == [2]


def test_an_older_window_arriving_later_is_scheduled_sooner():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 12000)], now=0)         # [10,15) due at 13 s
    _feed(windows, [("u", 4000)], now=0)          # [0,5) due at 3 s
    assert windows.next_due() == 3000
    assert [(c.start) for c in windows.close_idle(3000)] == [0]


def test_settled_watermarks_wait_on_the_idle_clock():
    windows = KeyedWindows(PageTraffic(), 5000, 10000, settle_ms=1000)
    closed = []
    _add(windows, "/p", E("a", "page_view", "/p", 20000), 0, closed)
    # The move to watermark 10000 is pending, so an event from the window [0,5) still counts.
    _add(windows, "/p", E("b", "page_view", "/p", 1000), 500, closed)
    assert closed == []
    windows.apply_settled(999, closed)
    assert closed == []
    windows.apply_settled(1000, closed)
    assert [(c.start, c.state[1]) for c in closed] == [(0, 1)]
    assert _add(windows, "/p", E("c", "page_view", "/p", 2000), 1000, []) is False


# (events as (idle-clock ms, url, ts), W=5000, L=10000, settle 1000) -> watermark moves queued,
# (key, start) closed by apply_settled at 1000, then at 1500
SETTLE_QUEUE_CASES = [
    ("clock still: one queued move per key, the newest",
     [(0, "/a", 1000), (0, "/a", 16000), (0, "/a", 31000)], 1,
     [("/a", 0), ("/a", 15000)], []),
    ("clock moved: one per key and ms, each settles on its own",
     [(0, "/a", 1000), (0, "/a", 16000), (500, "/a", 31000)], 2,
     [("/a", 0)], [("/a", 15000)]),
    ("two keys interleaved, clock still",
     [(0, "/a", 1000), (0, "/b", 1000), (0, "/a", 16000), (0, "/b", 16000), (0, "/a", 31000)], 2,
     [("/a", 0), ("/a", 15000), ("/b", 0)], []),
    ("an older event moves nothing",
     [(0, "/a", 16000), (0, "/a", 1000)], 1, [("/a", 0)], []),
]


@pytest.mark.parametrize("name, events, queued, at_1000, at_1500", SETTLE_QUEUE_CASES,
                         ids=[c[0] for c in SETTLE_QUEUE_CASES])
def test_settling_moves_queue_once_per_key_and_clock_ms(name, events, queued, at_1000, at_1500):
    # A backlog replayed with the idle clock still queued one move per event (the soak's
    # page stage: +1.3 million entries per hour of event time); what settles is unchanged.
    windows = KeyedWindows(PageTraffic(), 5000, 10000, settle_ms=1000)
    for now, key, ts in events:
        _add(windows, key, E("u", "page_view", key, ts), now, [])
    assert len(windows._pending) == queued
    for now, expected in ((1000, at_1000), (1500, at_1500)):
        closed = []
        windows.apply_settled(now, closed)
        assert sorted((c.key, c.start) for c in closed) == expected
    assert not windows._pending and all(ks.move is None for ks in windows.keys.values())


def test_a_move_after_close_all_is_queued_again():
    windows = KeyedWindows(PageTraffic(), 5000, 10000, settle_ms=1000)
    _add(windows, "/a", E("u", "page_view", "/a", 1000), 0, [])
    assert [c.start for c in windows.close_all()] == [0]
    _add(windows, "/a", E("u", "page_view", "/a", 31000), 0, [])  # same idle-clock ms
    _add(windows, "/a", E("u", "page_view", "/a", 46000), 0, [])
    closed = []
    windows.apply_settled(1000, closed)
    assert [c.start for c in closed] == [30000]


def test_bounded_pages_stay_open_until_the_end():
    windows = KeyedWindows(PageTraffic(), 5000, 10000, idle_closing=False, watermark_closing=False)
    assert _feed(windows, [("/p", 100000), ("/p", 0)]) == ([], [])
    assert sorted(c.start for c in windows.close_all()) == [0, 100000]


def test_snapshot_restore_round_trip_is_a_copy():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 1000), ("u", 16000), ("v", 3000)], now=50)
    snap = windows.snapshot()
    _feed(windows, [("u", 16500)], now=60)  # must not leak into the snapshot
    restored = KeyedWindows(UserEngagement(), 5000, 10000)
    restored.restore(snap, now=7)
    assert restored.contents() == {
        "u": (16000, 6000, {15000: [1, 1, 0, "/", None, 16000, 16000]}),  # 0 closed
        "v": (3000, -7000, {0: [1, 1, 0, "/", None, 3000, 3000]}),
    }
    # idle time restarts at restore: downtime is not idleness
    assert restored.next_due() == 7 + (5000 - (3000 - 10000))
    assert _feed(restored, [("u", 4000)]) == ([], [0])  # u's watermark survived


def test_snapshot_pickles_again_only_the_window_starts_that_changed():
    windows = KeyedWindows(PageTraffic(), 5000, 10000, idle_closing=False, watermark_closing=False)
    _feed(windows, [("/a", 0), ("/b", 100), ("/a", 5000)])
    first = windows.snapshot().groups
    _feed(windows, [("/c", 5100)])
    second = windows.snapshot().groups
    assert second[0] is first[0]          # untouched since: the same bytes, not pickled again
    assert second[5000] is not first[5000]
    restored = KeyedWindows(PageTraffic(), 5000, 10000, idle_closing=False, watermark_closing=False)
    restored.restore(windows.snapshot(), now=0)
    assert {k: w for k, (_, _, w) in restored.contents().items()} == {
        "/a": {0: [1, 1, {"/a"}], 5000: [1, 1, {"/a"}]},
        "/b": {0: [1, 1, {"/b"}]},
        "/c": {5000: [1, 1, {"/c"}]},
    }
    assert sorted((c.key, c.start) for c in restored.close_all()) == [
        ("/a", 0), ("/a", 5000), ("/b", 0), ("/c", 5000)]
    assert restored.snapshot().groups == {}   # closed windows leave the snapshot


def test_restore_refuses_a_snapshot_of_another_format():
    with pytest.raises(ValueError, match="format"):
        KeyedWindows(UserEngagement(), 5000, 10000).restore({"u": (0, 0, {})}, now=0)


@pytest.mark.parametrize("width, lateness", [(0, 0), (-1, 0), (1000, -1)])
def test_bad_window_parameters_are_refused(width, lateness):
    with pytest.raises(ValueError):
        KeyedWindows(UserEngagement(), width, lateness)


def test_a_snapshot_is_frozen_and_versioned():
    snap = KeyedWindows(UserEngagement(), 5000, 10000).snapshot()
    assert snap.version == WindowsSnapshot.VERSION == 5
    assert all(is_packed(blob) for blob in snap.groups.values())
    with pytest.raises(AttributeError):
        snap.groups = {}


def old_marks(windows: KeyedWindows) -> bytes:
    """Marks as versions 2 and 3 stored them: a pickled {key: (max_ts, watermark)}."""
    return pickle.dumps({k: (m, w) for k, (m, w, _) in windows.contents().items()})


def bare(groups: dict) -> dict:
    """Groups as versions 2 to 4 stored them: bare pickles."""
    return {start: pickle.dumps(unpack(blob), pickle.HIGHEST_PROTOCOL)
            for start, blob in groups.items()}


def test_a_version_2_snapshot_is_migrated_on_restore():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 1000), ("u", 16000), ("v", 3000)], now=50)
    now = windows.snapshot()
    restored = KeyedWindows(UserEngagement(), 5000, 10000)
    restored.restore((2, old_marks(windows), bare(now.groups)), now=0)  # the tuple version 2 stored
    assert restored.contents() == windows.contents()
    assert restored.clock == windows.clock == 16000  # the newest event time of its keys


def test_a_version_3_snapshot_is_migrated_with_the_clock_it_implied():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 1000), ("u", 16000), ("v", 3000)], now=50)
    now = windows.snapshot()
    v3 = WindowsSnapshot(old_marks(windows), bare(now.groups), version=3)  # as unpickled: no clock
    restored = KeyedWindows(UserEngagement(), 5000, 10000, ttl_ms=20000)
    restored.restore(v3, now=0)
    assert restored.contents() == windows.contents() and restored.clock == 16000
    empty = WindowsSnapshot(pickle.dumps({}), {}, version=3)
    restored.restore(empty, now=0)
    assert restored.keys == {} and restored.clock < -(2**61)


def test_a_version_4_snapshot_restores_and_its_groups_are_packed_at_the_next_snapshot():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 1000), ("u", 16000), ("v", 3000)], now=50)
    now = windows.snapshot()
    v4 = WindowsSnapshot(now.marks, bare(now.groups), now.clock, version=4)
    restored = KeyedWindows(UserEngagement(), 5000, 10000)
    restored.restore(pickle.loads(pickle.dumps(v4)), now=0)
    assert restored.contents() == windows.contents() and restored.clock == 16000
    again = restored.snapshot()
    assert again.version == 5 and again.groups.keys() == now.groups.keys()
    assert all(is_packed(blob) for blob in again.groups.values())
    assert {s: unpack(b) for s, b in again.groups.items()} == {
        s: unpack(b) for s, b in now.groups.items()}


def test_a_damaged_group_is_refused_in_one_line():
    windows = KeyedWindows(UserEngagement(), 5000, 10000)
    _feed(windows, [("u", 1000)], now=50)
    now = windows.snapshot()
    (start, blob), = now.groups.items()
    damaged = WindowsSnapshot(now.marks, {start: blob[:-3]}, now.clock)
    with pytest.raises(ValueError, match="damaged"):
        KeyedWindows(UserEngagement(), 5000, 10000).restore(damaged, now=0)


def test_a_snapshot_of_a_newer_version_is_refused():
    newer = WindowsSnapshot(b"", {}, version=WindowsSnapshot.VERSION + 1)
    with pytest.raises(ValueError, match=rf"format .*\(version {WindowsSnapshot.VERSION + 1};"):
        KeyedWindows(UserEngagement(), 5000, 10000).restore(newer, now=0)
