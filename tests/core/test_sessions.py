"""User sessions (SPEC: Sessions): the rules table-driven, and against a brute-force
sort-and-split with Hypothesis (random events, batches, orders within the lateness, idle
closes, snapshots and restores, expiry).

The operator lives in clickstream/core/sessions.py with its argument; `reference` below is the
definition itself, written independently: sort a user's on-time events by (ts, partition,
offset), cut where consecutive times are the gap or more apart, then cut each run greedily at
its first event time plus the maximum.
"""

import pickle
from collections import defaultdict
from typing import Dict, List

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.core.aggregations import UserEngagement
from clickstream.core.blobs import is_packed, pack, unpack
from clickstream.core.dues import bound
from clickstream.core.events import SHARED_URLS, make_event
from clickstream.core.sessions import (SESSION_SUMMARY, KeyedSessions, SessionsSnapshot,
                                       UserShardSnapshot)
from clickstream.core.windows import KeyedWindows

W, L = 5_000, 10_000
G, M = 30_000, 60_000  # small gap and maximum, so that the tables stay short


E = make_event  # an Event from (user_id, event_type, url, ts, session_id, partition, offset)


def reference(events, gap: int, cap: int) -> List[tuple]:
    """[(user, start, end, [events, views, clicks, unique, entry, exit, bounce, converted])]."""
    by_user: Dict[str, list] = defaultdict(list)
    for e in events:
        by_user[e.user_id].append(e)
    out = []
    for user, mine in by_user.items():
        mine.sort(key=lambda e: (e.ts, e.partition, e.offset))
        sessions: List[list] = []
        previous = None
        for e in mine:
            if previous is None or e.ts - previous.ts >= gap or e.ts - sessions[-1][0].ts > cap:
                sessions.append([e])
            else:
                sessions[-1].append(e)
            previous = e
        for s in sessions:
            kinds = [e.event_type for e in s]
            out.append((user, s[0].ts, s[-1].ts, [
                len(s), kinds.count("page_view"), kinds.count("click"),
                len({e.url for e in s}), s[0].url, s[-1].url,
                len(s) == 1 and kinds[0] == "page_view", "purchase" in kinds]))
    return sorted(out)


class Driver:
    """A user shard's windows and sessions, fed the way the user stage feeds them."""

    def __init__(self, gap=G, cap=M, idle=False, ttl=None):
        self.args = (gap, cap, idle, ttl)
        self.windows = KeyedWindows(UserEngagement(), W, L, idle_closing=idle, ttl_ms=ttl)
        self.sessions = KeyedSessions(self.windows, gap, cap)
        self.emitted: List[tuple] = []
        self.on_time: List[E] = []
        self.late: List[E] = []
        self.closed_windows: list = []
        self.step = 0  # batches and idle closes so far
        self.emitted_at: List[int] = []  # the step of each emitted session
        self.on_time_at: List[int] = []

    def feed(self, events, now: int = 0):
        closed, late = [], []
        self.windows.add_many([e.user_id for e in events], events, now, closed, late)
        late_ids = {id(entry[0]) for entry in late}
        on_time = [e for e in events if id(e) not in late_ids]
        self.late += [e for e in events if id(e) in late_ids]
        self.step += 1
        self.on_time += on_time
        self.on_time_at += [self.step] * len(on_time)
        done = []
        self.sessions.add_many([e.user_id for e in on_time], on_time, now, done, closed)
        self._take(done)
        self.closed_windows += closed

    def idle(self, now: int):
        self.step += 1
        closed = self.windows.close_idle(now)
        self._take(self.sessions.close_idle(now, closed))
        self.closed_windows += closed

    def end(self):
        self.closed_windows += self.windows.close_all()
        self._take(self.sessions.close_all())

    def restart(self, now: int = 0):
        stored = pickle.loads(pickle.dumps(UserShardSnapshot(self.windows.snapshot(),
                                                             self.sessions.snapshot())))
        gap, cap, idle, ttl = self.args
        fresh = Driver(gap, cap, idle, ttl)  # only its windows and sessions are taken
        windows_part, sessions_part = UserShardSnapshot.split(stored)
        fresh.windows.restore(windows_part, now)
        fresh.sessions.restore(sessions_part, now)
        self.windows, self.sessions = fresh.windows, fresh.sessions

    def _take(self, done):
        self.emitted += [(c.key, c.start, c.end, c.state) for c in done]
        self.emitted_at += [self.step] * len(done)


def ev(user, ts, kind="page_view", url="/", offset=0):
    return E(user, kind, url, ts, offset=offset)


def sessions_of(driver) -> List[tuple]:
    return sorted((user, start, end, state[0]) for user, start, end, state in driver.emitted)


# (batches of (ts, event_type, url) of user "u"; G=30 s, M=60 s, W=5 s, L=10 s) -> sessions
# (start, end, events) after the end of input, and how many events were late
CASES = [
    ("events less than the gap apart are one session",
     [[(0, "page_view", "/a"), (29_999, "click", "/a")]], [(0, 29_999, 2)], 0),
    ("exactly the gap apart: two sessions",
     [[(0, "page_view", "/a"), (30_000, "page_view", "/b")]], [(0, 0, 1), (30_000, 30_000, 1)], 0),
    ("an event between two open sessions bridges them into one",
     [[(40_000, "page_view", "/"), (70_000, "page_view", "/"), (61_000, "click", "/")]],
     [(40_000, 70_000, 3)], 0),
    ("out of order within the lateness extends the session backwards",
     [[(20_000, "page_view", "/"), (12_000, "page_view", "/")]], [(12_000, 20_000, 2)], 0),
    ("a run longer than the maximum is cut there, greedily from its first event",
     [[(0, "page_view", "/"), (20_000, "click", "/"), (40_000, "click", "/"),
       (60_000, "click", "/"), (60_001, "click", "/"), (80_000, "click", "/")]],
     [(0, 60_000, 4), (60_001, 80_000, 2)], 0),
    ("a late event against an emitted session changes nothing",
     [[(0, "page_view", "/")], [(60_000, "page_view", "/")], [(10_000, "click", "/")]],
     [(0, 0, 1), (60_000, 60_000, 1)], 1),
    ("a bridging event that arrives last joins three sessions' worth of events into one",
     [[(40_000, "page_view", "/a"), (70_000, "click", "/b"), (61_000, "click", "/c")],
      [(75_000, "page_view", "/d")]],
     [(40_000, 75_000, 4)], 0),
]


@pytest.mark.parametrize("name,batches,expected,late", CASES, ids=[c[0] for c in CASES])
def test_the_session_rules(name, batches, expected, late):
    driver = Driver()
    offset = 0
    for batch in batches:
        events = []
        for ts, kind, url in batch:
            events.append(ev("u", ts, kind, url, offset))
            offset += 1
        driver.feed(events)
    driver.end()
    assert sessions_of(driver) == [("u", s, e, n) for s, e, n in expected]
    assert len(driver.late) == late
    assert sorted(driver.emitted) == reference(driver.on_time, G, M)


# summary fields: (events of one session as (event_type, url)) -> (page_views, clicks,
# unique_pages, entry_url, exit_url, bounce, converted)
SUMMARIES = [
    ("one page view is a bounce", [("page_view", "/a")], (1, 0, 1, "/a", "/a", True, False)),
    ("one click is not a bounce", [("click", "/a")], (0, 1, 1, "/a", "/a", False, False)),
    ("two page views are not a bounce", [("page_view", "/a"), ("page_view", "/a")],
     (2, 0, 1, "/a", "/a", False, False)),
    ("a purchase converts", [("page_view", "/a"), ("add_to_cart", "/p"), ("purchase", "/c")],
     (1, 0, 3, "/a", "/c", False, True)),
    ("one purchase alone converts and is no bounce", [("purchase", "/c")],
     (0, 0, 1, "/c", "/c", False, True)),
]


@pytest.mark.parametrize("name,events,expected", SUMMARIES, ids=[c[0] for c in SUMMARIES])
def test_the_summary(name, events, expected):
    driver = Driver()
    driver.feed([ev("u", 1000 * i, kind, url, i) for i, (kind, url) in enumerate(events)])
    driver.end()
    [(user, start, end, state)] = driver.emitted
    assert tuple(state[1:]) == expected
    assert state[0] == len(events)


def test_entry_and_exit_ties_go_by_input_order():
    driver = Driver()
    driver.feed([ev("u", 5000, url="/second", offset=8), ev("u", 5000, url="/first", offset=7),
                 ev("u", 1000, url="/x", offset=9)])
    driver.feed([ev("u", 9000, url="/last-a", offset=10), ev("u", 9000, url="/last-b", offset=11)])
    driver.end()
    [(_, _, _, state)] = driver.emitted
    assert (state[4], state[5]) == ("/x", "/last-b")


def test_the_record_is_the_spec_json():
    state = [3, 1, 1, 2, "/a", "/b", False, True]
    record = orjson.loads(SESSION_SUMMARY.render("u1", 1_000, 61_500, state))
    assert list(record) == ["user_id", "session_start", "session_end", "duration_ms", "events",
                            "page_views", "clicks", "unique_pages", "entry_url", "exit_url",
                            "bounce", "converted"]
    assert record["session_start"] == "1970-01-01T00:00:01.000Z"
    assert record["session_end"] == "1970-01-01T00:01:01.500Z"
    assert record["duration_ms"] == 60_500
    assert record["converted"] is True and record["bounce"] is False


def test_a_session_closes_when_the_watermark_passes_its_end_plus_the_gap_on_the_window_grid():
    driver = Driver()
    driver.feed([ev("u", 1_000)])
    # c = 1,000 + 30,000 - 1 = 30,999: final once the watermark reaches 35,000 (event 45,000)
    driver.feed([ev("u", 44_999, offset=1)])
    assert driver.emitted == []
    driver.feed([ev("u", 45_000, offset=2)])
    assert sessions_of(driver) == [("u", 1_000, 1_000, 1)]


def test_a_bots_day_is_cut_at_the_maximum_and_its_events_folded():
    driver = Driver(gap=30_000, cap=600_000)
    for i in range(2000):  # one event a second for 2,000 s
        driver.feed([ev("bot", i * 1000, "click", f"/p{i % 7}", i)])
        if i == 1500:
            [open_one] = driver.sessions.open["bot"]
            assert open_one.agg is not None and len(open_one.items) < 4  # folded as it went
    driver.end()
    assert sessions_of(driver) == [("bot", 0, 600_000, 601), ("bot", 601_000, 1_201_000, 601),
                                   ("bot", 1_202_000, 1_802_000, 601),
                                   ("bot", 1_803_000, 1_999_000, 197)]
    assert sorted(driver.emitted) == reference(driver.on_time, 30_000, 600_000)


def test_idle_time_closes_a_session_and_moves_the_users_watermark_for_the_windows_too():
    driver = Driver(idle=True)
    driver.feed([ev("u", 1_000)], now=0)
    driver.idle(now=34_000)  # c = 30,999, final at watermark 35,000: 1,000 - 10,000 + 44,000
    assert driver.emitted == []
    driver.idle(now=44_000)
    assert sessions_of(driver) == [("u", 1_000, 1_000, 1)]
    driver.feed([ev("u", 30_000, offset=1)], now=44_001)  # would have extended it: late
    assert len(driver.late) == 1 and driver.sessions.open == {}


def test_after_a_session_closes_on_the_watermark_the_users_next_one_closes_on_idle_time():
    driver = Driver(idle=True)
    driver.feed([ev("u", 1_000), ev("u", 50_000, offset=1)], now=0)  # 49 s apart: two sessions
    assert sessions_of(driver) == [("u", 1_000, 1_000, 1)]  # final: watermark 40,000 >= 35,000
    driver.idle(now=39_999)  # c = 79,999 -> 80,000, from 40,000
    assert len(driver.emitted) == 1
    driver.idle(now=40_000)
    assert sessions_of(driver) == [("u", 1_000, 1_000, 1), ("u", 50_000, 50_000, 1)]


def test_the_horizon_closes_sessions_and_only_then_forgets_the_user():
    driver = Driver(ttl=40_000)
    driver.feed([ev("u", 1_000)])
    driver.feed([ev("other", 70_000, offset=1)])  # horizon 30,000: u's window is gone, c = 30,999
    assert driver.emitted == [] and "u" in driver.windows.keys
    driver.feed([ev("other", 74_999, offset=2)])  # horizon 34,999 > c, but it is filed by W
    assert driver.emitted == []
    driver.feed([ev("other", 75_000, offset=3)])  # horizon 35,000: the first W-multiple after c
    assert sessions_of(driver) == [("u", 1_000, 1_000, 1)]
    driver.feed([ev("other", 76_000, offset=4)])
    assert "u" not in driver.windows.keys and "u" not in driver.sessions.open


def test_open_sessions_survive_a_restart_and_the_store_reads_an_older_one():
    driver = Driver()
    driver.feed([ev("u", 1_000), ev("v", 2_000, offset=1)])
    driver.restart()
    driver.feed([ev("u", 20_000, offset=2)])
    driver.end()
    assert sessions_of(driver) == [("u", 1_000, 20_000, 2), ("v", 2_000, 2_000, 1)]
    older = Driver()  # a store without sessions: a bare WindowsSnapshot
    windows_part, sessions_part = UserShardSnapshot.split(older.windows.snapshot())
    assert sessions_part is None
    older.sessions.restore(sessions_part, 0)
    assert older.sessions.open == {}


def test_a_store_grouped_otherwise_is_regrouped_by_first_start_and_written_again():
    """A store whose users sit under another group key (another GROUP_MS, or one blob for
    all) restores, and the next snapshot files them by their first start."""
    driver = Driver()
    driver.feed([ev("u", 1_000), ev("v", 61_000, offset=1), ev("w", 125_000, offset=2)])
    stored = driver.sessions.snapshot()
    merged = {}
    for blob in stored.groups.values():
        merged.update(unpack(blob))
    driver.sessions.restore(SessionsSnapshot({7: pack(merged)}), 0)
    assert driver.sessions.snapshot().groups.keys() == {0, 60_000, 120_000}
    driver.feed([ev("u", 20_000, offset=3), ev("v", 62_000, offset=4)])  # moves each user
    driver.feed([ev("w", 140_000, offset=5)])
    driver.restart()
    driver.end()
    assert sessions_of(driver) == [("u", 1_000, 20_000, 2), ("v", 61_000, 62_000, 2),
                                   ("w", 125_000, 140_000, 2)]


def test_a_version_1_store_restores_and_its_groups_are_packed_at_the_next_snapshot():
    """Version 1 held its groups as bare pickles; they read as they are and are written
    packed at the next snapshot, each under its own group."""
    driver = Driver()
    driver.feed([ev("u", 1_000), ev("v", 61_000, offset=1), ev("w", 125_000, offset=2)])
    stored = driver.sessions.snapshot()
    assert stored.version == SessionsSnapshot.VERSION == 2
    assert all(is_packed(blob) for blob in stored.groups.values())
    v1 = SessionsSnapshot({group: pickle.dumps(unpack(blob), pickle.HIGHEST_PROTOCOL)
                           for group, blob in stored.groups.items()}, version=1)
    before = driver.sessions.contents()
    driver.sessions.restore(pickle.loads(pickle.dumps(v1)), 0)
    assert driver.sessions.contents() == before
    again = driver.sessions.snapshot()
    assert again.groups.keys() == stored.groups.keys()
    assert all(is_packed(blob) for blob in again.groups.values())
    assert {g: unpack(b) for g, b in again.groups.items()} == {
        g: unpack(b) for g, b in stored.groups.items()}


def test_a_damaged_sessions_snapshot_is_refused_in_one_line():
    driver = Driver()
    with pytest.raises(ValueError, match="cannot read"):
        driver.sessions.restore(SessionsSnapshot({}, version=99), 0)


def test_settings_below_the_rules_are_refused():
    windows = KeyedWindows(UserEngagement(), W, L)
    with pytest.raises(ValueError, match="gap"):
        KeyedSessions(windows, 0, M)
    with pytest.raises(ValueError, match="maximum"):
        KeyedSessions(windows, G, W + L - 1)


# --- properties ------------------------------------------------------------------------

USERS = ["a", "b", "c"]
KIND = st.sampled_from(["page_view", "click", "purchase", "scroll"])
# Small gap and max on a small time range, so that merges, bridges and cuts are common.
GAP = st.sampled_from([1_000, 7_000, 20_000])
CAP = st.sampled_from([W + L, 20_000, 45_000])


@st.composite
def traffic(draw):
    """Events of a few users, each at most a little more than L behind its user's newest time
    so far (so most are on time and some are late), cut into batches, with idle closes and
    restarts between them."""
    n = draw(st.integers(1, 60))
    newest: Dict[str, int] = {}
    actions = []
    for offset in range(n):
        user = draw(st.sampled_from(USERS))
        base = newest.get(user, 0)
        ts = max(0, base + draw(st.integers(-L - 3_000, 25_000)))
        newest[user] = max(base, ts)
        actions.append(("event", E(user, draw(KIND), draw(st.sampled_from(["/x", "/y", "/z"])),
                                   ts, "", draw(st.integers(0, 1)), offset)))
        what = draw(st.sampled_from(["", "", "", "cut", "idle", "restart"]))
        if what:
            actions.append((what, None))
    return actions


def run(actions, gap, cap, idle, ttl):
    driver = Driver(gap, cap, idle, ttl)
    batch, now = [], 0
    for what, event in actions:
        if what == "event":
            batch.append(event)
            continue
        if batch:
            driver.feed(batch, now)
            batch = []
        if what == "idle":
            now += 7_000
            driver.idle(now)
        elif what == "restart":
            driver.restart(now)
    if batch:
        driver.feed(batch, now)
    if idle:  # a long enough quiet spell alone emits every session
        driver.idle(now + 10**9)
        assert driver.sessions.open == {}
    driver.end()
    return driver


@settings(max_examples=400, deadline=None)
@given(actions=traffic(), gap=GAP, cap=CAP, idle=st.booleans(),
       ttl=st.sampled_from([None, W + L, 40_000]))
def test_sessions_equal_a_sort_and_split_of_the_on_time_events(actions, gap, cap, idle, ttl):
    driver = run(actions, gap, cap, idle, ttl)
    assert sorted(driver.emitted) == reference(driver.on_time, gap, cap)
    starts = [(user, start) for user, start, _, _ in driver.emitted]
    assert len(starts) == len(set(starts))  # each session once
    assert driver.sessions.open == {} and driver.sessions.count == 0


@settings(max_examples=200, deadline=None)
@given(actions=traffic(), gap=GAP, cap=CAP)
def test_no_event_on_time_reaches_a_session_emitted_before_it(actions, gap, cap):
    """SPEC: an event that would change an emitted session is late. An on-time event fed after
    a session was emitted lies beyond that session's reach: more than its close point after it
    (G - 1 after its end, or its cap), and never before its start."""
    driver = run(actions, gap, cap, True, None)
    for event, fed_at in zip(driver.on_time, driver.on_time_at):
        for (user, start, end, _), emitted_at in zip(driver.emitted, driver.emitted_at):
            if user == event.user_id and emitted_at < fed_at:
                assert event.ts > min(end + gap - 1, start + cap)


def test_a_restore_shares_one_str_per_url_across_snapshot_groups():
    """Pickle shares a str only within one blob (one snapshot group), so without mapping them
    back a restore kept a copy of every url per group for as long as the sessions lived."""
    driver = Driver()
    urls = ["".join(["/page/", str(i % 3)]) for i in range(40)]  # equal values, distinct objects
    for minute in range(4):  # users in four snapshot groups (GROUP_MS)
        t = minute * 60_000
        driver.feed([ev(f"u{minute}-{j}", t + j, url=urls[(minute * 7 + j) % 40], offset=j)
                     for j in range(5)])
    driver.feed([ev("long", 300_000 + i * 1000, "click", urls[i], offset=100 + i)
                 for i in range(25)])
    driver.feed([ev("long", 340_000, offset=200)])  # seals and folds "long"'s first events
    [long_one] = driver.sessions.open["long"]
    assert long_one.agg is not None
    driver.restart()
    seen = []
    for pieces in driver.sessions.open.values():
        for session in pieces:
            seen += [item[4] for item in session.items]
            events = session.items + ([] if session.agg is None else session.agg[4:6])
            assert any(session.start is item[0] for item in events)  # one int, as live
            assert any(session.end is item[0] for item in events)
            if session.agg is not None:
                urls_kept = session.agg[3]
                seen += [urls_kept] if isinstance(urls_kept, str) else list(urls_kept)
                seen += [session.agg[4][4], session.agg[5][4]]
    assert len(seen) > 20 and {id(url) for url in seen} == {id(SHARED_URLS[url]) for url in seen}
    assert len({id(url) for url in seen}) == len(set(seen)) == 4  # three pages and "/"
    driver.end()
    assert sorted(driver.emitted) == reference(driver.on_time, G, M)


def test_idle_entries_stay_bounded_while_the_idle_clock_stands_still():
    """Replaying a backlog, the idle clock stands still, so no idle entry ever comes due: the
    ones that sessions closed by the horizon left behind are dropped, not kept until then."""
    driver = Driver(idle=True, ttl=40_000)
    most = 0
    for round_ in range(12):  # 500 new users a round; the horizon closes the rounds before
        driver.feed([ev(f"r{round_}-{j}", round_ * 50_000 + j, offset=round_ * 1000 + j)
                     for j in range(500)], now=0)
        heap, dues = driver.sessions._idle_heap, driver.sessions._idle_due
        assert len(heap) <= bound(len(dues))
        most = max(most, len(heap))
    assert most <= bound(1000)  # two rounds' users are open; kept, 6,000 by the end
    driver.end()
    assert sorted(driver.emitted) == reference(driver.on_time, G, M)
