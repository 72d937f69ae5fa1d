"""Tests of the traffic model's visits mode (`clickstream.tools.generator`, ``visits=True``) and
of the sessions it implies (`clickstream.tools.visits`).

No Kafka. The stream is judged from its bytes with the SPEC input rules of test_generator
(re-implemented there independently of the dataflow's parser); the expected sessions are
judged against the sessions contract's rules, not against the code that makes them.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter, defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.tools.generate import _config, _parser, main
from clickstream.tools.generator import (
    BOT_USER_AGENT, GeneratedMessage, GeneratorConfig, base_time_ms, generate, visit_bot_ids, visit_plan,
)
from clickstream.tools.visits import (
    FIELDS, Event, expected_sessions, model_sessions, on_time_events, session_summary, split_sessions,
)
from tests.tools.test_generator import spec_event, ts_ms

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
GAP_MS = 1_800_000


def visits(**overrides) -> GeneratorConfig:
    params = dict(count=20_000, users=3000, rate=4.0, seed=7, start_ms=START, visits=True)
    params.update(overrides)
    return GeneratorConfig(**params)


MIXED = visits(late_fraction=0.03, out_of_order_fraction=0.08, malformed_fraction=0.02)
CLEAN = visits()  # no disorder: every message is a planned event at its planned time


@pytest.fixture(scope="module")
def mixed() -> list[GeneratedMessage]:
    return list(generate(MIXED))


@pytest.fixture(scope="module")
def clean() -> list[dict]:
    return [json.loads(m.value) for m in generate(CLEAN)]


def person_visits(events: list[dict], bots: frozenset[str]) -> dict[str, list[dict]]:
    """Events by session id (the model's visit), people only."""
    by_visit = defaultdict(list)
    for e in events:
        if "session_id" in e and e["user_id"] not in bots:
            by_visit[e["session_id"]].append(e)
    return by_visit


# -- the stream ------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 7, 12345])
def test_deterministic_per_seed(seed):
    cfg = visits(count=3000, seed=seed, late_fraction=0.05, out_of_order_fraction=0.1, malformed_fraction=0.05)
    first = list(generate(cfg))
    assert first == list(generate(cfg))
    assert first != list(generate(visits(count=3000, seed=seed + 1, late_fraction=0.05,
                                         out_of_order_fraction=0.1, malformed_fraction=0.05)))
    assert expected_sessions(cfg) == expected_sessions(cfg)


def test_the_default_mode_ignores_the_visit_knobs():
    # (the default stream's bytes are pinned in test_generator's GOLDEN digests)
    plain = GeneratorConfig(count=3000, seed=3, start_ms=START, late_fraction=0.05, malformed_fraction=0.05)
    knobs = GeneratorConfig(count=3000, seed=3, start_ms=START, late_fraction=0.05, malformed_fraction=0.05,
                            visit_gap_seconds=60.0, bounce_share=0.9, purchase_share=0.1, bot_share=0.5,
                            think_seconds=1.0)
    assert list(generate(plain)) == list(generate(knobs))
    assert list(generate(plain)) != list(generate(GeneratorConfig(count=3000, seed=3, start_ms=START, visits=True,
                                                                  late_fraction=0.05, malformed_fraction=0.05)))


@pytest.mark.parametrize("count", [0, 1, 17, 5000])
def test_exact_count(count):
    cfg = visits(count=count, late_fraction=0.2, malformed_fraction=0.3)
    assert sum(1 for _ in generate(cfg)) == count


def test_kinds_and_message_format(mixed):
    kinds = Counter(m.kind for m in mixed)
    assert kinds["late"] / len(mixed) == pytest.approx(0.03, abs=0.01)
    assert kinds["out_of_order"] / len(mixed) == pytest.approx(0.08, abs=0.01)
    assert kinds["malformed"] / len(mixed) == pytest.approx(0.02, abs=0.01)
    for m in mixed:
        event = spec_event(m.value)
        if m.kind == "malformed":
            assert event is None, m
            continue
        assert event is not None, m
        assert m.key == event["user_id"].encode()  # key = user id
        assert len(event["user_id"]) == 7 and event["user_id"][0] == "u"


def test_events_come_in_time_order_and_disorder_keeps_its_bounds(mixed):
    """Valid events never go back in time; out-of-order ones are at most max_disorder_ms behind
    the stream and their user; late ones more than 60 s behind both."""
    stream = user_newest = None
    newest: dict[str, int] = {}
    late = 0
    for m in mixed:
        if m.kind == "malformed":
            continue
        event = json.loads(m.value)
        user, ts = event["user_id"], ts_ms(event["ts"])
        user_newest = newest.get(user)
        if m.kind == "valid":
            assert stream is None or ts >= stream
        elif m.kind == "out_of_order":
            assert stream - ts <= MIXED.max_disorder_ms
            assert user_newest is None or user_newest - ts <= MIXED.max_disorder_ms
        else:
            late += 1
            assert user_newest is not None and user_newest - ts > 60_000
            assert stream - ts > 60_000
            continue  # a late event moves nothing
        stream = ts if stream is None else max(stream, ts)
        newest[user] = ts if user_newest is None else max(user_newest, ts)
    assert late > 500


@pytest.mark.parametrize("rate, users", [(4.0, 3000), (20.0, 15_000), (1.0, 1000)])
def test_the_stream_makes_the_rate(rate, users):
    cfg = visits(rate=rate, users=users, late_fraction=0.05, malformed_fraction=0.05)
    times = [ts_ms(json.loads(m.value)["ts"]) for m in generate(cfg) if m.kind == "valid"]
    span_s = (times[-1] - times[0]) / 1000
    assert cfg.count / span_s == pytest.approx(rate, rel=0.1)


def test_without_a_rate_the_population_sets_the_pace():
    cfg = visits(rate=None, users=1000, count=10_000)
    plan = visit_plan(cfg)
    assert 0.3 < plan.rate < 2  # about 0.7 messages per second for 1000 people
    times = [ts_ms(json.loads(m.value)["ts"]) for m in generate(cfg)]
    assert cfg.count / ((times[-1] - times[0]) / 1000) == pytest.approx(plan.rate, rel=0.1)


def test_without_a_start_an_unpaced_stream_ends_about_now():
    now = int(time.time() * 1000)
    times = [ts_ms(json.loads(m.value)["ts"]) for m in generate(GeneratorConfig(count=500, visits=True))]
    assert now - 3_600_000 < times[0] < now and times[-1] < now + 600_000


def test_people_make_at_most_one_event_per_second(clean):
    bots = visit_bot_ids(CLEAN)
    last: dict[str, int] = {}
    per_user = Counter()
    for e in clean:
        user, ts = e["user_id"], ts_ms(e["ts"])
        if user in last:
            assert ts - last[user] >= 1000, e  # (bots too: every 1-5 s)
        last[user] = ts
        per_user[user] += 1
    busiest_person = max(n for u, n in per_user.items() if u not in bots)
    span_s = (ts_ms(clean[-1]["ts"]) - ts_ms(clean[0]["ts"])) / 1000
    assert busiest_person / span_s < 0.1  # on average over the run: far below one per second
    assert len(per_user) > 1000  # many people, no one dominates


def test_pauses_between_visits_are_shorter_and_longer_than_the_gap(clean):
    bots = visit_bot_ids(CLEAN)
    visit_of: dict[str, str] = {}
    last: dict[str, int] = {}
    pauses = []
    for e in clean:
        user, ts = e["user_id"], ts_ms(e["ts"])
        if user in bots or "session_id" not in e:
            continue
        if user in visit_of and visit_of[user] != e["session_id"]:
            pauses.append(ts - last[user])
        visit_of[user], last[user] = e["session_id"], ts
    shorter = sum(p < GAP_MS for p in pauses)
    assert shorter > 0.2 * len(pauses) and len(pauses) - shorter > 0.2 * len(pauses)
    assert len(pauses) > 300


@pytest.mark.parametrize("bounce, purchase, users", [(0.3, 0.05, 3000), (0.5, 0.1, 6000), (0.0, 0.2, 4000)])
def test_bounce_and_purchase_shares_of_visits(bounce, purchase, users):
    cfg = visits(count=30_000, bounce_share=bounce, purchase_share=purchase, users=users)
    events = [json.loads(m.value) for m in generate(cfg)]
    first, end = ts_ms(events[0]["ts"]), ts_ms(events[-1]["ts"])
    # visits that start 20 minutes into the stream or later and 20 minutes before its end or
    # earlier: whole visits (not under way at the start nor cut by the end), whatever their length
    done = [v for v in person_visits(events, visit_bot_ids(cfg)).values()
            if first + 1_200_000 <= ts_ms(v[0]["ts"]) <= end - 1_200_000]
    assert len(done) > 2000
    bounces = sum(1 for v in done if [e["event_type"] for e in v] == ["page_view"])
    buys = sum(1 for v in done if any(e["event_type"] == "purchase" for e in v))
    assert bounces / len(done) == pytest.approx(bounce, abs=0.04)
    assert buys / len(done) == pytest.approx(purchase, abs=0.02)
    for v in done:  # a purchase ends its visit ...
        types = [e["event_type"] for e in v]
        assert "purchase" not in types[:-1]
    carts = Counter()  # ... and follows an add_to_cart of its user
    for e in events:
        if e["event_type"] == "add_to_cart":
            carts[e["user_id"]] += 1
        elif e["event_type"] == "purchase":
            assert carts.pop(e["user_id"], 0) > 0


def test_bots_click_for_hours_and_say_so(clean):
    bots = visit_bot_ids(CLEAN)
    assert 1 <= len(bots) <= round(CLEAN.bot_share * CLEAN.users)
    times = defaultdict(list)
    for e in clean:
        if e["user_id"] in bots:
            times[e["user_id"]].append(ts_ms(e["ts"]))
            assert e.get("user_agent", BOT_USER_AGENT) == BOT_USER_AGENT
            assert e["event_type"] in ("page_view", "click")
    span = ts_ms(clean[-1]["ts"]) - ts_ms(clean[0]["ts"])
    for user, ts in times.items():
        assert all(1000 <= b - a <= 5000 for a, b in zip(ts, ts[1:]))
        assert ts[-1] - ts[0] > 0.95 * span  # all the time
    share = sum(map(len, times.values())) / len(clean)
    assert 0.05 < share <= 0.25


@pytest.mark.parametrize("overrides, field", [
    ({"bounce_share": 1.5}, "bounce_share"),
    ({"purchase_share": 0.8}, "purchase_share"),  # > 1 - bounce_share
    ({"bot_share": 0.6}, "bot_share"),
    ({"think_seconds": 0.0}, "think_seconds"),
    ({"visit_gap_seconds": 1.0}, "visit_gap_seconds"),
    ({"visit_gap_seconds": float("nan")}, "visit_gap_seconds"),
    ({"visits": "yes"}, "visits"),
    ({"visits": True, "user_lifetime_seconds": 5.0, "users": 5}, "user_lifetime_seconds"),
    ({"visits": True, "rate": 1000.0, "users": 1000}, "users must be at least"),
    ({"visits": True, "late_fraction": 0.5, "malformed_fraction": 0.5}, "late_fraction + malformed_fraction"),
])
def test_config_validation(overrides, field):
    with pytest.raises(ValueError) as info:
        GeneratorConfig(**{"count": 10, **overrides})
    assert field in str(info.value) and "\n" not in str(info.value)


def test_base_time_is_not_a_grid_with_visits():
    with pytest.raises(ValueError):
        base_time_ms(CLEAN, 5)


def test_cli_flag():
    args = _parser().parse_args(["--visits", "--rate", "4", "--users", "3000", "--count", "5"])
    assert _config(args) == GeneratorConfig(count=5, rate=4.0, users=3000, visits=True)
    assert _config(_parser().parse_args(["--count", "5"])).visits is False


def test_cli_names_the_flags_when_the_population_is_too_small(capsys):
    assert main(["--visits", "--rate", "1000", "--users", "1000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--users must be at least" in err and "--rate 1000 with --visits" in err


# -- the expected sessions -------------------------------------------------------------------

def assert_contract(records: list[dict], gap_ms: int, max_ms: int) -> None:
    """The contract's rules, checked on the records alone."""
    last: dict[str, tuple[int, int]] = {}
    seen = set()
    for r in sorted(records, key=lambda r: (r["user_id"], r["session_start"])):
        assert tuple(r) == FIELDS
        start, end = ts_ms(r["session_start"]), ts_ms(r["session_end"])
        assert r["session_start"].endswith("Z") and len(r["session_start"]) == 24
        assert r["duration_ms"] == end - start and 0 <= r["duration_ms"] <= max_ms
        assert (r["user_id"], start) not in seen
        seen.add((r["user_id"], start))
        assert r["events"] >= r["page_views"] + r["clicks"] and r["unique_pages"] <= r["events"]
        assert r["unique_pages"] >= 1 and r["entry_url"] and r["exit_url"]
        assert r["bounce"] == (r["events"] == 1 and r["page_views"] == 1)
        assert not (r["bounce"] and r["converted"])
        if r["events"] == 1:
            assert start == end and r["entry_url"] == r["exit_url"]
        if r["user_id"] in last:
            before_start, before_end = last[r["user_id"]]
            # a gap of at least GAP, or a split: the max was exceeded within a run
            assert start - before_end >= gap_ms or (start - before_end < gap_ms and start - before_start > max_ms)
            assert start > before_end
        last[r["user_id"]] = (start, end)


@pytest.mark.parametrize("gap_ms, max_ms", [
    (1_800_000, 86_400_000),  # the defaults
    (1_800_000, 600_000),  # bots' and merged visits' sessions split
    (60_000, 15_000),  # think times split visits; max = W + L
])
def test_expected_sessions_obey_the_contract(mixed, gap_ms, max_ms):
    records = expected_sessions(MIXED, gap_ms=gap_ms, max_ms=max_ms)
    assert_contract(records, gap_ms, max_ms)
    # exactly the on-time events, each in one session
    assert sum(r["events"] for r in records) == sum(1 for m in mixed if m.kind in ("valid", "out_of_order"))
    assert records == sorted(records, key=lambda r: (r["session_start"], r["user_id"]))
    assert {r["user_id"] for r in records} == {json.loads(m.value)["user_id"] for m in mixed
                                              if m.kind in ("valid", "out_of_order")}


def test_expected_sessions_of_the_default_mode_too():
    cfg = GeneratorConfig(count=5000, users=200, seed=3, start_ms=START, out_of_order_fraction=0.1, late_fraction=0.05)
    records = expected_sessions(cfg, gap_ms=2_000, max_ms=15_000)
    assert_contract(records, 2_000, 15_000)
    assert sum(r["events"] for r in records) == sum(1 for m in generate(cfg) if m.kind != "late")


def test_session_summary_of_the_visits():
    summary = session_summary(MIXED)
    # sessions are visits, some merged (pauses shorter than the gap): fewer bounces than visits
    assert summary.sessions > 1500 and summary.split == summary.bot_split == 0
    assert 0.15 < summary.bounces / summary.sessions < 0.3
    assert 0.03 < summary.conversions / summary.sessions < 0.1
    assert summary.bot_sessions == len(visit_bot_ids(MIXED))  # one each: they never stop
    # a small maximum splits the bots' sessions (and long merged visits)
    small = session_summary(MIXED, max_ms=300_000)
    assert small.bot_split >= len(visit_bot_ids(MIXED)) * 10 and small.longest_ms <= 300_000
    assert small.events == summary.events


def test_bot_sessions_split_at_the_default_maximum_over_a_long_run():
    cfg = visits(count=160_000, users=2000, rate=None, seed=1)
    assert visit_bot_ids(cfg) and visit_plan(cfg).rate * 86_400 < cfg.count  # more than a day of traffic
    summary = session_summary(cfg)
    assert summary.bot_split >= 1 and summary.longest_ms <= 86_400_000


def test_expected_sessions_refuse_settings_the_model_cannot_answer_for():
    with pytest.raises(ValueError, match="60 s"):
        expected_sessions(visits(count=10, late_fraction=0.1), window_ms=30_000, lateness_ms=40_000)
    with pytest.raises(ValueError, match="max_disorder_ms"):
        expected_sessions(visits(count=10, out_of_order_fraction=0.1), lateness_ms=1000)
    with pytest.raises(ValueError, match="start_ms"):
        expected_sessions(GeneratorConfig(count=10, visits=True))
    wall = GeneratorConfig(count=300, visits=True)
    assert expected_sessions(wall, START) == expected_sessions(dataclasses.replace(wall, start_ms=START))


def test_on_time_events_keep_each_users_arrival_order(mixed):
    per_user = on_time_events(MIXED)
    arrivals = defaultdict(list)
    for m in mixed:
        if m.kind in ("valid", "out_of_order"):
            event = json.loads(m.value)
            arrivals[event["user_id"]].append(ts_ms(event["ts"]))
    assert {u: [e.ts for e in events] for u, events in per_user.items()} == arrivals
    sessions = model_sessions(MIXED)
    assert sum(len(s.events) for s in sessions) == sum(map(len, arrivals.values()))


TYPES = st.sampled_from(["page_view", "click", "scroll", "add_to_cart", "purchase"])
EVENTS = st.lists(st.tuples(st.integers(0, 200), TYPES, st.sampled_from("abc")), max_size=40)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.integers(1, 50), st.integers(1, 80))
def test_split_sessions_follows_the_rules(raw, gap_ms, max_ms):
    events = [Event(ts, t, url) for ts, t, url in raw]
    sessions = split_sessions("u1", events, gap_ms, max_ms)
    # every event once, ordered by time, ties in arrival order
    assert [e for s in sessions for e in s.events] == sorted(events, key=lambda e: e.ts)
    for s in sessions:
        ts = [e.ts for e in s.events]
        assert s.start_ms == ts[0] and s.end_ms == ts[-1] and ts[-1] - ts[0] <= max_ms
        assert all(b - a < gap_ms for a, b in zip(ts, ts[1:]))  # no gap inside
    for before, after in zip(sessions, sessions[1:]):
        if after.start_ms - before.end_ms >= gap_ms:
            assert not before.split
        else:  # split greedily: the next event was past the max from the session's start
            assert before.split and after.start_ms - before.start_ms > max_ms
