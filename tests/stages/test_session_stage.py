"""The user stage with sessions on, without a broker: session records beside the windows,
idle and end-of-input closing, snapshot round trips, a store from before sessions, metrics."""

import json
import pickle
import shutil
import sqlite3

from prometheus_client import REGISTRY

from clickstream.core.aggregations import USER_ENGAGEMENT
from clickstream.core.partitioner import Partitioner
from clickstream.core.records import SESSION, USER, Record
from clickstream.core.sessions import SESSION_SUMMARY, UserShardSnapshot
from clickstream.stages.user_windows import UserShard
from tests.fixtures.store_v2_input import messages, offsets_of, store_of, topics_of
from tests.integration.oracle import expected_outputs
from tests.stages.test_window_stages import T0, FakeClock, by_tag, event, rendered

W, L = 5000, 10000
GAP, MAX = 60_000, 3_600_000
SESSION_PARTITIONS = 4


def stage(clock, bounded=False, resume=None):
    return UserShard(W, L, bounded, "clicks", 3, 2, resume, clock, None,
                     sessions=(GAP, MAX, SESSION_PARTITIONS))


def sessions_out(out) -> dict:
    """{(user, session_start ms): record} of the session records in `out`, checking each one's
    partition and identity."""
    partition_of = Partitioner(SESSION_PARTITIONS)
    got = {}
    for partition, records in by_tag(out).get(SESSION, []):
        for record in records:
            assert isinstance(record, Record) and partition_of(record.key) == partition
            start, end, state = record.value
            assert record.ident == str(start)
            got[(record.key, start)] = json.loads(SESSION_SUMMARY.render(record.key, *record.value))
    return got


def sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


def test_a_session_is_emitted_once_the_watermark_passes_its_end_plus_the_gap():
    clock = FakeClock()
    user = stage(clock)
    emitted_before = sample("clickstream_sessions_emitted_total")
    out, _ = user.on_batch([[event("a", T0, "/home", offset=0),
                             event("a", T0 + 20_000, "/cart", "purchase", offset=1),
                             event("b", T0 + 1_000, "/home", offset=2)]])
    assert sessions_out(out) == {}
    # c = T0 + 20,000 + 59,999, on the 5 s grid T0 + 80,000: the watermark needs an event at +90 s
    out, _ = user.on_batch([[event("a", T0 + 90_000, "/home", offset=3)]])
    assert sessions_out(out) == {("a", T0): {
        "user_id": "a", "session_start": "2026-01-01T00:00:00.000Z",
        "session_end": "2026-01-01T00:00:20.000Z", "duration_ms": 20_000, "events": 2,
        "page_views": 1, "clicks": 0, "unique_pages": 2, "entry_url": "/home",
        "exit_url": "/cart", "bounce": False, "converted": True}}
    assert sample("clickstream_sessions_emitted_total") == emitted_before + 1
    out, _ = user.on_eof()
    assert set(sessions_out(out)) == {("a", T0 + 90_000), ("b", T0 + 1_000)}
    assert sessions_out(out)[("b", T0 + 1_000)]["bounce"] is True


def test_the_idle_clock_closes_a_quiet_users_session():
    clock = FakeClock(0)
    user = stage(clock)
    user.on_batch([[event("a", T0, offset=0)]])
    clock.ms = 69_999  # c = T0 + 59,999 -> watermark T0 + 60,000, from T0 - 10,000: 70 s idle
    out, _ = user.on_notify()
    assert sessions_out(out) == {}
    assert by_tag(out).get(USER)  # the user's window closed on the idle clock long before
    clock.ms = 70_000
    out, _ = user.on_notify()
    assert set(sessions_out(out)) == {("a", T0)}
    # The user's watermark moved with it: an event that would have extended it is late.
    out, _ = user.on_batch([[event("a", T0 + 30_000, offset=1)]])
    assert by_tag(out).get("dead_letters") and sessions_out(user.on_eof()[0]) == {}


def test_sessions_survive_a_snapshot_and_restore():
    clock = FakeClock(500)
    user = stage(clock)
    user.on_batch([[event(u, T0 + i * 7_000, f"/{i % 3}", offset=i)
                    for i, u in enumerate(["a", "b", "a", "c", "b", "a"])]])
    stored = pickle.loads(pickle.dumps(user.snapshot()))  # as the recovery store keeps it
    assert isinstance(stored, UserShardSnapshot)
    resumed = stage(FakeClock(0), resume=stored)
    more = [[event("a", T0 + 50_000, "/9", offset=10)]]
    want = user.on_batch(more)[0] + user.on_eof()[0]
    got = resumed.on_batch(more)[0] + resumed.on_eof()[0]
    assert sessions_out(want) and sessions_out(got) == sessions_out(want)
    assert rendered(got, USER, USER_ENGAGEMENT) == rendered(want, USER, USER_ENGAGEMENT)


def test_a_store_from_before_sessions_resumes_its_windows_with_no_open_session(tmp_path):
    """tests/fixtures/store-v4 was written by the version before sessions (make_store.py)."""
    store = tmp_path / "store"
    shutil.copytree(store_of(4), store)
    with sqlite3.connect(store / "part-0.sqlite3") as db:
        rows = db.execute("SELECT step_id, ser_change FROM snaps s WHERE snap_epoch = (SELECT"
                          " max(snap_epoch) FROM snaps WHERE step_id = s.step_id AND"
                          " state_key = s.state_key) AND step_id LIKE '%user_windows'").fetchall()
    users = {}
    for _, blob in rows:
        resumed = stage(FakeClock(), True, pickle.loads(blob))
        assert resumed.sessions.open == {}
        out, _ = resumed.on_eof()
        assert sessions_out(out) == {}
        users.update(rendered(out, USER, USER_ENGAGEMENT))
    expected = expected_outputs(offsets_of(messages()), topics_of(4)["input"], W, L)
    assert users == expected.user


def test_with_sessions_off_a_store_with_sessions_resumes_its_windows():
    user = stage(FakeClock())
    user.on_batch([[event("a", T0, offset=0)]])
    stored = pickle.loads(pickle.dumps(user.snapshot()))
    plain = UserShard(W, L, True, "clicks", 3, 2, stored, FakeClock(), None)
    out, _ = plain.on_eof()
    assert list(rendered(out, USER, USER_ENGAGEMENT)) == [("a", "2026-01-01T00:00:00.000Z")]
    assert SESSION not in by_tag(out)
