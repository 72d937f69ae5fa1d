"""Both window stages without a broker: batches in, tagged records and dead letters out, with a
clock the test moves; snapshot and restore round trips; a store of the previous version."""

import json
import shutil
import sqlite3
import pickle
from contextlib import contextmanager
from typing import Dict, List

import pytest
from prometheus_client import REGISTRY

from clickstream.core.aggregations import PAGE_TRAFFIC, USER_ENGAGEMENT
from clickstream.core.events import Event, make_event
from clickstream.core.partitioner import Partitioner
from clickstream.core.records import DEAD_LETTERS, PAGE, PAGE_IN, USER, Record
from clickstream.core.shards import PAGE_SHARD_OF, USER_SHARD_KEYS, shard_of
from clickstream.stages import shard as shard_module
from clickstream.runtime.progress import FLICKER_S
from clickstream.stages.page_windows import PAGE_SETTLE_MS, PageShard
from clickstream.stages.user_windows import UserShard
from tests.fixtures.store_v2_input import messages, offsets_of, store_of, topics_of
from tests.integration.oracle import expected_outputs, iso

W, L = 5000, 10000
T0 = 1767225600000


class FakeClock:
    """The idle clock, moved by the test."""

    def __init__(self, ms: int = 0):
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    @contextmanager
    def starting(self, what):
        yield


def event(user: str, ts: int, url: str = "/a", kind: str = "page_view", offset: int = 0,
          partition: int = 0) -> Event:
    raw = json.dumps({"user_id": user, "event_type": kind, "url": url, "ts": ts}).encode()
    return make_event(user, kind, url, ts, "", partition, offset, raw)


def user_stage(clock, bounded=False, resume=None, output_partitions=3, dlq_partitions=2,
               ttl_ms=None):
    return UserShard(W, L, bounded, "clicks", output_partitions, dlq_partitions, resume, clock,
                     ttl_ms)


def page_stage(clock, bounded=False, resume=None, output_partitions=3, dlq_partitions=2,
               ttl_ms=None):
    return PageShard(W, L, bounded, "clicks", output_partitions, dlq_partitions, resume, clock,
                     ttl_ms)


def by_tag(out) -> Dict[str, list]:
    """{tag: [(partition or shard, [items])]} of a stage's outputs."""
    tags: Dict[str, list] = {}
    for tag, payload in out:
        tags.setdefault(tag, []).append(payload)
    return tags


def rendered(out, tag, aggregation) -> Dict[tuple, dict]:
    """{(key, window_start): record} of the window records of `tag`, checking each record's
    partition against Kafka's default partitioner."""
    partition_of = Partitioner(3)
    got = {}
    for partition, records in by_tag(out).get(tag, []):
        for record in records:
            assert isinstance(record, Record) and partition_of(record.key) == partition
            start, end, state = record.value
            assert record.ident == str(start) and end == start + W
            got[(record.key, iso(start))] = json.loads(aggregation.render(record.key, *record.value))
    return got


def dead_letters(out) -> List[dict]:
    letters = []
    for partition, records in by_tag(out).get(DEAD_LETTERS, []):
        for record in records:
            letter = json.loads(record.value)
            assert record.key is None and record.closed_at is None
            assert record.ident == f"{letter['partition']}:{letter['offset']}"
            assert partition == letter["partition"] % 2
            letters.append(letter)
    return letters


def test_user_stage_emits_a_window_once_the_watermark_passes_its_end():
    stage = user_stage(FakeClock())
    out, _ = stage.on_batch([[event("u", T0 + 100, offset=0), event("u", T0 + 4999, "/b", "click", 1),
                              event("v", T0 + 200, offset=2)]])
    assert USER not in by_tag(out)
    out, _ = stage.on_batch([[event("u", T0 + W + L, offset=3)]])
    assert rendered(out, USER, USER_ENGAGEMENT) == {("u", iso(T0)): {
        "user_id": "u", "window_start": iso(T0), "window_end": iso(T0 + W), "events": 2,
        "page_views": 1, "clicks": 1, "unique_pages": 2, "sessions": 0,
        "first_event_ts": iso(T0 + 100), "last_event_ts": iso(T0 + 4999)}}


def test_user_stage_sends_on_time_events_to_their_page_shard_and_late_ones_to_dead_letters():
    stage = user_stage(FakeClock())
    stage.on_batch([[event("u", T0 + 100, offset=0), event("u", T0 + 20000, offset=1)]])
    late, on_time = event("u", T0 + 200, offset=2, partition=1), event("u", T0 + 19000, "/b", offset=3)
    out, _ = stage.on_batch([[late, on_time]])
    assert by_tag(out)[PAGE_IN] == [(PAGE_SHARD_OF["/b"], [on_time])]
    [letter] = dead_letters(out)
    assert letter == {"reason": "late", "topic": "clicks", "partition": 1, "offset": 2,
                      "value": late.raw.decode(), "error": (
                          f"late: user window {iso(T0)} of 'u' was already emitted "
                          f"(watermark {iso(T0 + 10000)})")}


def test_an_event_behind_the_state_horizon_is_dead_lettered_and_forgotten_keys_are_counted():
    keys = REGISTRY.get_sample_value("clickstream_keys", {"stage": "user"})
    expired = REGISTRY.get_sample_value("clickstream_keys_expired_total", {"stage": "user"})
    stage = user_stage(FakeClock(), ttl_ms=20000)
    stage.on_batch([[event("u", T0 + 100, offset=0), event("v", T0 + 100, offset=1)]])
    assert REGISTRY.get_sample_value("clickstream_keys", {"stage": "user"}) == keys + 2
    out, _ = stage.on_batch([[event("v", T0 + 60000, offset=2)]])
    # u's window closed on the horizon (T0 + 40 s) and u was forgotten; v stays
    assert set(rendered(out, USER, USER_ENGAGEMENT)) == {("u", iso(T0)), ("v", iso(T0))}
    assert set(stage.windows.keys) == {"v"}
    assert REGISTRY.get_sample_value("clickstream_keys", {"stage": "user"}) == keys + 1
    assert REGISTRY.get_sample_value(
        "clickstream_keys_expired_total", {"stage": "user"}) == expired + 1
    back = event("u", T0 + 39999, offset=3, partition=1)
    out, _ = stage.on_batch([[back]])
    [letter] = dead_letters(out)
    assert letter["reason"] == "late" and letter["error"] == (
        f"late: ts {iso(T0 + 39999)} is before the user state horizon {iso(T0 + 40000)} (the "
        f"shard's newest event time minus CLICKSTREAM_STATE_TTL_SECONDS=20)")
    assert PAGE_IN not in by_tag(out)


def test_idle_clock_closes_a_quiet_users_window_after_w_plus_l():
    clock = FakeClock(1000)
    stage = user_stage(clock)
    stage.on_batch([[event("u", T0 + 4000)]])
    # due when the watermark (newest - L) reaches the window's end, counted on the idle clock
    due_in_ms = W - (4000 - L)
    clock.ms = 1000 + due_in_ms - 1
    assert stage.on_notify()[0] == []
    clock.ms += 1
    out, _ = stage.on_notify()
    assert list(rendered(out, USER, USER_ENGAGEMENT)) == [("u", iso(T0))]
    assert stage.notify_at() is None


def test_a_bounded_stage_closes_nothing_on_the_idle_clock_and_everything_at_the_end():
    clock = FakeClock()
    stage = user_stage(clock, bounded=True)
    stage.on_batch([[event("u", T0), event("v", T0 + 7000)]])
    clock.ms = 10**9
    assert stage.notify_at() is None and stage.on_notify()[0] == []
    out, _ = stage.on_eof()
    assert sorted(rendered(out, USER, USER_ENGAGEMENT)) == [("u", iso(T0)), ("v", iso(T0 + 5000))]


def test_page_moves_wait_longer_than_the_idle_clocks_allowance_for_a_partition_behind():
    """The idle clock runs on for FLICKER_S after a caught-up partition falls behind; a page
    watermark move queued in the first moments of a backlog must not apply within that."""
    assert PAGE_SETTLE_MS / 1000 > FLICKER_S


def test_page_watermarks_wait_to_settle_on_the_idle_clock():
    clock = FakeClock()
    stage = page_stage(clock)
    stage.on_batch([[event("a", T0 + 100, "/p"), event("b", T0 + 30000, "/p")]])
    assert stage.on_notify()[0] == []  # the move to T0 + 20000 waits PAGE_SETTLE_MS
    clock.ms = PAGE_SETTLE_MS
    out, _ = stage.on_notify()
    assert rendered(out, PAGE, PAGE_TRAFFIC) == {("/p", iso(T0)): {
        "url": "/p", "window_start": iso(T0), "window_end": iso(T0 + W), "views": 1, "events": 1,
        "unique_users": 1}}
    out, _ = stage.on_batch([[event("c", T0 + 200, "/p", offset=9)]])
    [letter] = dead_letters(out)
    assert letter["reason"] == "late" and letter["offset"] == 9
    assert letter["error"].startswith(f"late: page window {iso(T0)} of '/p' was already emitted")


def test_a_bounded_page_stage_keeps_windows_open_to_the_end():
    stage = page_stage(FakeClock(), bounded=True)
    stage.on_batch([[event("a", T0 + 100000, "/p"), event("b", T0 + 100, "/p")]])
    out, _ = stage.on_eof()
    assert sorted(rendered(out, PAGE, PAGE_TRAFFIC)) == [("/p", iso(T0)), ("/p", iso(T0 + 100000))]


@pytest.mark.parametrize("make", [user_stage, page_stage])
def test_snapshot_and_restore_round_trip(make):
    clock = FakeClock(500)
    stage = make(clock)
    stage.on_batch([[event(u, T0 + i * 700, f"/{i % 3}", offset=i) for i, u in
                     enumerate(["a", "b", "a", "c", "b", "a"])]])
    snapshot = pickle.loads(pickle.dumps(stage.snapshot()))  # as the recovery store keeps it
    resumed = make(FakeClock(0), resume=snapshot)
    tag, aggregation = (USER, USER_ENGAGEMENT) if make is user_stage else (PAGE, PAGE_TRAFFIC)
    want = rendered(stage.on_eof()[0], tag, aggregation)
    assert want and rendered(resumed.on_eof()[0], tag, aggregation) == want


def test_a_store_it_cannot_read_stops_with_one_line(monkeypatch):
    def stop(message, status=1):
        raise SystemExit((message, status))

    monkeypatch.setattr(shard_module, "stop", stop)
    with pytest.raises(SystemExit) as exc:
        user_stage(FakeClock(), resume={"not": "a snapshot"})
    message, status = exc.value.code
    assert status == 2 and message.startswith("cannot resume: the recovery store holds window state")


@pytest.mark.parametrize("version, found", [(2, lambda state: state[0] == 2),
                                            (3, lambda state: state.version == 3),
                                            (4, lambda state: state.version == 4)])
def test_the_stores_of_previous_versions_resume(tmp_path, version, found):
    """tests/fixtures/store-v2, -v3 and -v4 were written by earlier landed versions (see
    make_store.py): tuples, then WindowsSnapshot 3 without the shard clock, then 4 (before
    sessions). Their open windows
    must come back whole, and the clock they imply is their newest event time."""
    store = tmp_path / "store"
    shutil.copytree(store_of(version), store)
    with sqlite3.connect(store / "part-0.sqlite3") as db:
        rows = db.execute("SELECT step_id, state_key, ser_change FROM snaps s WHERE snap_epoch ="
                          " (SELECT max(snap_epoch) FROM snaps WHERE step_id = s.step_id AND"
                          " state_key = s.state_key)").fetchall()
    states = {(step.rpartition(".")[2], key): pickle.loads(blob) for step, key, blob in rows}
    assert all(found(state) for (step, _), state in states.items() if step.endswith("windows"))
    users, pages = {}, {}
    newest = max(T0 + i * 300 for i in range(24))
    for (step, key), state in states.items():
        if step == "user_windows":
            stage = user_stage(FakeClock(), True, state, 3)
            assert T0 <= stage.windows.clock <= newest
            users.update(rendered(stage.on_eof()[0], USER, USER_ENGAGEMENT))
        elif step == "page_windows":
            pages.update(rendered(page_stage(FakeClock(), True, state, 3).on_eof()[0], PAGE,
                                  PAGE_TRAFFIC))
    expected = expected_outputs(offsets_of(messages()), topics_of(version)["input"], W, L)
    assert users == expected.user and pages == expected.page
    assert {k for (step, k) in states if step == "user_windows"} == {
        USER_SHARD_KEYS[shard_of(u)] for u, _ in expected.user}
