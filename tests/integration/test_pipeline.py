"""The whole service on a real broker, bounded: outputs compared record by record with the oracle."""

import json

import pytest

from tests.integration.checks import assert_matches, outputs
from tests.integration.kafka_io import produce, run_dataflow

pytestmark = pytest.mark.integration

T0 = 1767225600000  # 2026-01-01T00:00:00Z, a window boundary for any W dividing a day


def ev(user, ts, url="/home", kind="page_view", session=None, **extra):
    record = {"user_id": user, "event_type": kind, "url": url, "ts": ts}
    if session is not None:
        record["session_id"] = session
    record.update(extra)
    return record


def keyed(events, partition_of=None):
    """(key, value, partition): key = user id, partition by user unless told otherwise."""
    items = []
    for e in events:
        if isinstance(e, tuple):  # raw (key, value, partition) for malformed input
            items.append(e)
            continue
        user = e["user_id"]
        partition = partition_of(user) if partition_of else sum(user.encode()) % 2
        items.append((user.encode(), json.dumps(e, ensure_ascii=False).encode(), partition))
    return items


def run_bounded(topics, items, *flags, window=5, lateness=10, workers=None):
    inputs = produce(topics.brokers, topics.input, items)
    extra = ["-w", str(workers)] if workers else []
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1, CLICKSTREAM_WINDOW_SECONDS=window,
                                     CLICKSTREAM_ALLOWED_LATENESS_SECONDS=lateness),
                          *extra, *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return inputs


def test_in_order_events_make_exact_user_and_page_windows(topics):
    events = []
    for i in range(40):  # 20 s of traffic, 3 users, 4 windows each
        user = ("alice", "bob", "carol")[i % 3]
        events.append(ev(user, T0 + i * 500, url=f"/p/{i % 4}",
                         kind=("page_view", "click", "scroll")[i % 3 if i % 5 else 0],
                         session=f"s-{user}-{i // 20}"))
    inputs = run_bounded(topics, keyed(events))
    expected = assert_matches(topics, inputs)
    assert len(expected.user) == 12 and not expected.dead
    users, _, _ = outputs(topics)
    alice_first = next(r for _, r in users
                       if r["user_id"] == "alice" and r["window_start"] == "2026-01-01T00:00:00.000Z")
    # alice: i = 0, 3, 6, 9 in the first window (ts 0, 1.5 s, 3 s, 4.5 s), all page views
    assert alice_first == {
        "user_id": "alice", "window_start": "2026-01-01T00:00:00.000Z",
        "window_end": "2026-01-01T00:00:05.000Z", "events": 4, "page_views": 4, "clicks": 0,
        "unique_pages": 4, "sessions": 1, "first_event_ts": "2026-01-01T00:00:00.000Z",
        "last_event_ts": "2026-01-01T00:00:04.500Z",
    }


def test_out_of_order_within_lateness_counts_and_very_late_goes_to_dlq(topics):
    events = [
        ev("u1", T0 + 12000),
        ev("u1", T0 + 1000),    # 11 s behind, window [0,5) ends 5 s > 12 - 10: on time
        ev("u1", T0 + 14900, kind="click"),
        ev("u1", T0 + 3000),    # window end 5 s <= 14.9 - 10 = 4.9? no: 5 > 4.9, still on time
        ev("u1", T0 + 15000),   # watermark 5 s: window [0,5) closes
        ev("u1", T0 + 4999),    # late: its window was emitted
        ev("u1", T0 - 60000),   # very late
        ev("u2", T0 + 1000),    # another user: on time, lateness is per user
        ev("u1", T0 + 9000),    # window [5,10) end 10 s > 5 s: on time
    ]
    inputs = run_bounded(topics, keyed(events, lambda u: 0))
    expected = assert_matches(topics, inputs)
    assert sorted(r["offset"] for r in expected.dead.values()) == [5, 6]
    assert expected.user[("u1", "2026-01-01T00:00:00.000Z")]["events"] == 2
    assert expected.page[("/home", "2026-01-01T00:00:00.000Z")]["unique_users"] == 2


def test_users_far_apart_in_event_time_are_judged_each_on_their_own(topics):
    # All of a's traffic, then all of b's, over the same minute: nothing of b's is late.
    events = [ev("a", T0 + i * 1000, url=f"/u{i % 3}") for i in range(60)]
    events += [ev("b", T0 + i * 1000, url=f"/u{i % 3}") for i in range(60)]
    inputs = run_bounded(topics, keyed(events, lambda u: 0))
    expected = assert_matches(topics, inputs)
    assert not expected.dead
    assert all(r["unique_users"] == 2 for r in expected.page.values())


def test_malformed_messages_each_become_one_dead_letter(topics):
    good = ev("u1", T0)
    raw = [
        (b"u1", b"not json", 0),
        (b"u1", b"", 0),
        (None, None, 0),
        (b"u1", b"\xff\xfe\xfa", 1),
        (b"u1", b"[1, 2]", 1),
        (b"u1", json.dumps(dict(good, ts=True)).encode(), 1),
        (b"u1", json.dumps(dict(good, ts=1.5)).encode(), 1),
        (b"u1", json.dumps(dict(good, ts="2026-01-01T00:00:00")).encode(), 0),
        (b"u1", json.dumps(dict(good, user_id="")).encode(), 0),
        (b"u1", json.dumps(dict(good, user_id="x" * 257)).encode(), 0),
        (b"u1", json.dumps(dict(good, session_id=7)).encode(), 0),
        (b"u1", json.dumps({k: v for k, v in good.items() if k != "url"}).encode(), 0),
        (b"u1", b"[" * 2000 + b"]" * 2000, 1),
        (b"u1", b'{"a":' * 2000 + b"1" + b"}" * 2000, 1),
        (b"u1", json.dumps(good).encode(), 0),  # the one good message
    ]
    inputs = run_bounded(topics, keyed(raw))
    expected = assert_matches(topics, inputs)
    assert len(expected.dead) == 14 and len(expected.user) == 1
    _, _, dead = outputs(topics)
    invalid_utf8 = next(r for r in dead if r["partition"] == 1 and r["offset"] == 0)
    assert invalid_utf8["value_b64"] == "//76" and "value" not in invalid_utf8
    null_value = next(r for r in dead if r["partition"] == 0 and r["offset"] == 2)
    assert null_value["value"] is None


def test_unicode_urls_and_users(topics):
    events = [
        ev("ユーザー", T0 + 100, url="https://shop.example/c/café"),
        ev("ユーザー", T0 + 200, url="https://shop.example/p/日本", kind="click"),
        ev("👩‍💻", T0 + 300, url="https://shop.example/c/café"),
        ev("👩‍💻", T0 + 400, url="https://shop.example/c/cafe\u0301"),  # combining accent: another url
    ]
    inputs = run_bounded(topics, keyed(events))
    expected = assert_matches(topics, inputs)
    assert expected.page[("https://shop.example/c/café", "2026-01-01T00:00:00.000Z")]["unique_users"] == 2
    assert len(expected.page) == 3


def test_every_timestamp_form(topics):
    events = [
        ev("t", T0 + 1234),
        ev("t", "2026-01-01T00:00:01.500Z"),
        ev("t", "2026-01-01T02:00:02.250+02:00"),   # = 00:00:02.250Z
        ev("t", "2025-12-31T19:00:03-05:00"),       # = 00:00:03Z
        ev("t", "2026-01-01t00:00:04.999999z"),     # lower case, truncated to .999
        ev("t", "2026-01-01 00:00:05.1Z"),          # space separator, next window
    ]
    inputs = run_bounded(topics, keyed(events))
    expected = assert_matches(topics, inputs)
    first = expected.user[("t", "2026-01-01T00:00:00.000Z")]
    assert first["events"] == 5
    assert first["first_event_ts"] == "2026-01-01T00:00:01.234Z"
    assert first["last_event_ts"] == "2026-01-01T00:00:04.999Z"
    assert expected.user[("t", "2026-01-01T00:00:05.000Z")]["first_event_ts"] == "2026-01-01T00:00:05.100Z"


def test_two_workers_give_the_same_result(topics):
    events = [ev(f"user{i % 7}", T0 + i * 137, url=f"/p/{i % 11}",
                 kind=("page_view", "click")[i % 2], session=f"s{i % 3}") for i in range(500)]
    inputs = run_bounded(topics, keyed(events), workers=2)
    expected = assert_matches(topics, inputs)
    assert len(expected.user) > 50


def test_bounded_run_on_an_empty_topic_exits_cleanly(topics):
    inputs = run_bounded(topics, [])
    assert inputs == []
    assert outputs(topics) == ([], [], [])


def test_two_processes_give_the_same_result(topics):
    from tests.integration.kafka_io import start_dataflow

    events = [ev(f"user{i % 9}", T0 + i * 173, url=f"/p/{i % 5}", kind=("page_view", "click")[i % 2])
              for i in range(400)]
    inputs = produce(topics.brokers, topics.input, keyed(events))
    env = topics.env(CLICKSTREAM_BOUNDED=1)
    addresses = "127.0.0.1:21011;127.0.0.1:21012"
    procs = [start_dataflow(env, "-i", str(i), "-a", addresses) for i in range(2)]
    assert [p.wait(120) for p in procs] == [0, 0]
    expected = assert_matches(topics, inputs)
    assert len(expected.user) > 100
