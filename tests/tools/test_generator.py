"""Tests of the traffic model (`clickstream.generator`) and the CLI's argument handling.

No Kafka needed.  The SPEC input rules are re-implemented here independently of the
dataflow's parser on purpose: the generator must be judged against the contract, not
against the code it is meant to exercise.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from clickstream.tools.generate import main
from clickstream.tools.generator import GeneratedMessage, GeneratorConfig, base_time_ms, generate

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
REQUIRED = ("user_id", "event_type", "url", "ts")
OPTIONAL = ("session_id", "event_id", "referrer", "user_agent")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def ts_ms(ts) -> int:
    """SPEC event time -> epoch ms; raises ValueError when not a valid SPEC time."""
    if isinstance(ts, bool):
        raise ValueError("bool is not a time")
    if isinstance(ts, int):
        return ts
    if isinstance(ts, str) and RFC3339.fullmatch(ts):
        dt = datetime.fromisoformat(ts.replace("z", "Z"))
        if dt.tzinfo is None:
            raise ValueError("no offset")
        return round(dt.timestamp() * 1000)
    raise ValueError(f"not a SPEC time: {ts!r}")


def spec_event(value: bytes) -> dict | None:
    """The parsed event when ``value`` is a valid input message per SPEC.md, else None."""
    try:
        event = json.loads(value.decode("utf-8"))  # strict UTF-8, unlike errors="replace"
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(event, dict):
        return None
    for field in ("user_id", "event_type", "url"):
        if not isinstance(event.get(field), str) or not event[field]:
            return None
    if len(event["user_id"]) > 256 or "ts" not in event:
        return None
    try:
        ts_ms(event["ts"])
    except ValueError:
        return None
    if any(field in event and not isinstance(event[field], str) for field in OPTIONAL):
        return None
    return event


def config(**overrides) -> GeneratorConfig:
    params = dict(count=20_000, seed=7, start_ms=START)
    params.update(overrides)
    return GeneratorConfig(**params)


MIXED = config(late_fraction=0.05, out_of_order_fraction=0.10, malformed_fraction=0.08)


@pytest.fixture(scope="module")
def mixed() -> list[GeneratedMessage]:
    return list(generate(MIXED))


def test_deterministic_for_seed_and_start():
    cfg = config(count=3000, late_fraction=0.1, out_of_order_fraction=0.1, malformed_fraction=0.1)
    assert list(generate(cfg)) == list(generate(cfg))
    assert list(generate(cfg)) != list(generate(config(count=3000, seed=8, late_fraction=0.1,
                                                       out_of_order_fraction=0.1, malformed_fraction=0.1)))


def test_exact_count():
    for n in (0, 1, 17, 5000):
        assert sum(1 for _ in generate(config(count=n, malformed_fraction=0.3, late_fraction=0.2))) == n


def test_kind_shares_close_to_fractions(mixed):
    shares = {k: c / len(mixed) for k, c in Counter(m.kind for m in mixed).items()}
    assert set(shares) <= {"valid", "out_of_order", "late", "malformed"}
    assert shares.get("late", 0) == pytest.approx(0.05, abs=0.02)
    assert shares.get("out_of_order", 0) == pytest.approx(0.10, abs=0.02)
    assert shares.get("malformed", 0) == pytest.approx(0.08, abs=0.02)
    assert shares.get("valid", 0) == pytest.approx(0.77, abs=0.02)


def test_no_disorder_by_default():
    msgs = list(generate(config(count=2000)))
    assert {m.kind for m in msgs} == {"valid"}
    assert [ts_ms(json.loads(m.value)["ts"]) for m in msgs] == [base_time_ms(config(), i) for i in range(2000)]


def test_well_formed_messages_meet_spec(mixed):
    forms = Counter()
    for m in mixed:
        if m.kind == "malformed":
            continue
        event = spec_event(m.value)
        assert event is not None, m
        assert m.key == event["user_id"].encode("utf-8")
        assert re.fullmatch(r"u\d{6}", event["user_id"])
        ts = event["ts"]
        forms["int" if isinstance(ts, int) else ts[-6:] if ts.endswith("+02:00") else ts[-1]] += 1
    # Both time forms occur, and the string ones carry milliseconds.
    assert forms["int"] > 0 and forms["Z"] > 0 and forms["+02:00"] > 0


def test_string_and_integer_times_are_the_same_instant():
    cfg = config(count=3000)
    for i, m in enumerate(generate(cfg)):
        ts = json.loads(m.value)["ts"]
        assert ts_ms(ts) == base_time_ms(cfg, i)
        if isinstance(ts, str):
            assert re.search(r"\.\d{3}(Z|\+02:00)$", ts)


def test_malformed_messages_break_spec(mixed):
    bad = [m for m in mixed if m.kind == "malformed"]
    assert bad
    for m in bad:
        assert spec_event(m.value) is None, m
    # A real variety, including the raw byte cases.
    values = {m.value for m in bad}
    assert b"" in values and b"\xff\xfe" in values and b"[1,2]" in values
    assert len({m.value[:12] for m in bad}) > 5


def test_keys_none_only_for_malformed(mixed):
    assert all(m.key is not None for m in mixed if m.kind != "malformed")
    assert any(m.key is None for m in mixed if m.kind == "malformed")


def test_late_events_far_behind_user_and_stream(mixed):
    newest: dict[str, int] = {}
    late = 0
    for i, m in enumerate(mixed):
        if m.kind == "malformed":
            continue
        event = json.loads(m.value)
        user, ts = event["user_id"], ts_ms(event["ts"])
        if m.kind == "late":
            late += 1
            assert user in newest, "late event for a user without history"
            assert newest[user] - ts >= 60_000
            assert base_time_ms(MIXED, i) - ts >= 60_000
        newest[user] = max(newest.get(user, ts), ts)
    assert late > 0


def test_out_of_order_within_max_disorder(mixed):
    cfg = config(count=5000, out_of_order_fraction=0.3, max_disorder_ms=500)
    for msgs, c in ((mixed, MIXED), (list(generate(cfg)), cfg)):
        shifted = 0
        for i, m in enumerate(msgs):
            if m.kind == "out_of_order":
                shift = base_time_ms(c, i) - ts_ms(json.loads(m.value)["ts"])
                assert 0 < shift <= c.max_disorder_ms
                shifted += 1
            elif m.kind == "valid":
                assert ts_ms(json.loads(m.value)["ts"]) == base_time_ms(c, i)
        assert shifted > 0


def test_rate_sets_event_time_spacing():
    cfg = config(count=100, rate=10.0)
    times = [ts_ms(json.loads(m.value)["ts"]) for m in generate(cfg)]
    assert times[0] == START and times[10] == START + 1000 and times[99] == START + 9900


def test_user_activity_is_skewed(mixed):
    per_user = Counter(json.loads(m.value)["user_id"] for m in mixed if m.kind == "valid")
    counts = sorted(per_user.values(), reverse=True)
    top = sum(counts[: MIXED.users // 10])
    assert top / sum(counts) > 0.3  # uniform would be 0.1


def test_shop_realism(mixed):
    events = [json.loads(m.value) for m in mixed if m.kind in ("valid", "out_of_order")]
    types = Counter(e["event_type"] for e in events)
    assert types["page_view"] > types["click"] > types["scroll"] > types["purchase"] > 0
    assert types["add_to_cart"] > types["purchase"]
    urls = {e["url"] for e in events}
    assert "https://shop.example/c/café" in urls and "https://shop.example/p/日本" in urls
    assert all(u.startswith("https://shop.example/") for u in urls)
    # Funnel: a user's purchase follows an add_to_cart of that user.
    carts: dict[str, int] = defaultdict(int)
    for e in events:
        if e["event_type"] == "add_to_cart":
            carts[e["user_id"]] += 1
        elif e["event_type"] == "purchase":
            assert carts[e["user_id"]] > 0
            carts[e["user_id"]] = 0
    # Sessions: users have them, busy users have more than one, and they are not shared.
    sessions = defaultdict(set)
    for e in events:
        if "session_id" in e:
            sessions[e["user_id"]].add(e["session_id"])
    assert max(len(s) for s in sessions.values()) > 1
    owners = Counter(s for ss in sessions.values() for s in ss)
    assert max(owners.values()) == 1
    ids = [e["event_id"] for e in events if "event_id" in e]
    assert ids and len(ids) == len(set(ids))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"count": -1}, "count"),
        ({"users": 0}, "users"),
        ({"rate": 0.0}, "rate"),
        ({"rate": -5.0}, "rate"),
        ({"rate": float("inf")}, "rate"),
        ({"late_fraction": -0.1}, "late_fraction"),
        ({"out_of_order_fraction": 1.5}, "out_of_order_fraction"),
        ({"malformed_fraction": float("nan")}, "malformed_fraction"),
        ({"late_fraction": 0.6, "malformed_fraction": 0.5}, "late_fraction"),
        ({"max_disorder_ms": 0}, "max_disorder_ms"),
        ({"start_ms": -1}, "start_ms"),
        ({"count": 1.5}, "count"),
    ],
)
def test_config_validation(overrides, field):
    params = {"count": 10, **overrides}
    with pytest.raises(ValueError) as info:
        GeneratorConfig(**params)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_config_is_frozen():
    cfg = GeneratorConfig(count=1)
    with pytest.raises(AttributeError):
        cfg.count = 2  # type: ignore[misc]


def test_start_defaults_to_wall_clock():
    import time

    before = int(time.time() * 1000)
    first = next(generate(GeneratorConfig(count=1)))
    assert before <= ts_ms(json.loads(first.value)["ts"]) <= int(time.time() * 1000)


@pytest.mark.parametrize(
    "argv",
    [
        ["--count", "-1"],
        ["--count", "abc"],
        ["--no-such-flag"],
        ["--late-fraction", "0.7", "--malformed-fraction", "0.5"],
        ["--rate", "0"],
    ],
)
def test_cli_bad_arguments_one_line_exit_2(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert captured.out == ""


# The default stream is pinned byte for byte: tests and benchmarks elsewhere rely on it.
GOLDEN = [
    (dict(count=50000, users=400, seed=3, late_fraction=0.02, out_of_order_fraction=0.1,
          malformed_fraction=0.01),
     "fa4dfe48c6fb198e9b801468244cbd13a00733ae04e2d77ffc32ace06f8dd844"),
    (dict(count=20000, seed=7), "2571f32dd6eb198c889468459f3bf9d1ef4bd7a037605384bff62b6c8f42ccd1"),
]


@pytest.mark.parametrize("overrides, digest", GOLDEN)
def test_default_stream_is_unchanged(overrides, digest):
    import hashlib

    h = hashlib.sha256()
    for m in generate(GeneratorConfig(start_ms=START, **overrides)):
        h.update(repr(m).encode())
    assert h.hexdigest() == digest


# Arriving users (user_lifetime_seconds): the endurance test's traffic.
ARRIVING = config(count=30_000, users=3_000, user_lifetime_seconds=2.0, late_fraction=0.01,
                  out_of_order_fraction=0.05, malformed_fraction=0.01, max_disorder_ms=300)


@pytest.fixture(scope="module")
def arriving() -> list[GeneratedMessage]:
    return list(generate(ARRIVING))


def test_arriving_users_are_reproducible_and_differ_from_the_default(arriving):
    assert list(generate(ARRIVING)) == arriving
    assert arriving != list(generate(config(count=30_000, users=3_000)))


def test_arriving_users_all_appear_in_arrival_order_each_for_its_lifetime(arriving):
    span = base_time_ms(ARRIVING, ARRIVING.count - 1)
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, m in enumerate(arriving):
        if m.kind not in ("valid", "out_of_order"):
            continue
        event = json.loads(m.value)
        user, ts = event["user_id"], ts_ms(event["ts"])
        if user not in first:
            assert m.kind == "valid" or ts >= base_time_ms(ARRIVING, i) - ARRIVING.max_disorder_ms
            first[user] = base_time_ms(ARRIVING, i)
        last[user] = max(last.get(user, ts), ts)
    assert len(first) == ARRIVING.users  # every user appears
    assert list(first) == [f"u{k:06d}" for k in range(1, ARRIVING.users + 1)]  # in order
    lifetime_ms = ARRIVING.user_lifetime_seconds * 1000
    assert all(last[u] - first[u] <= lifetime_ms for u in first)
    # Arrivals are spread evenly over the span: user k arrives about k * span / users in.
    for k in (0, 1000, 2000, 2999):
        scheduled = START + k * (span - START) // ARRIVING.users
        assert abs(first[f"u{k + 1:06d}"] - scheduled) <= 5


def test_arriving_users_grow_linearly_while_the_active_ones_stay_flat(arriving):
    seen: set[str] = set()
    distinct, active = [], []
    window: dict[str, int] = {}
    for i, m in enumerate(arriving):
        if m.kind == "valid":
            event = json.loads(m.value)
            seen.add(event["user_id"])
            window[event["user_id"]] = ts_ms(event["ts"])
        if i % 3000 == 2999:
            now = base_time_ms(ARRIVING, i)
            distinct.append(len(seen))
            active.append(sum(1 for t in window.values() if t > now - 2000))
    steps = [b - a for a, b in zip(distinct, distinct[1:])]
    assert max(steps) - min(steps) <= 0.1 * max(steps)  # linear
    assert max(active[1:]) - min(active[1:]) <= 0.15 * max(active[1:])  # flat


def test_arriving_users_keep_the_kinds_meaning(arriving):
    newest: dict[str, int] = {}
    kinds = Counter(m.kind for m in arriving)
    assert kinds["late"] and kinds["malformed"] and kinds["out_of_order"]
    for m in arriving:
        if m.kind == "malformed":
            assert spec_event(m.value) is None
            continue
        event = spec_event(m.value)
        assert event is not None and m.key == event["user_id"].encode()
        ts = ts_ms(event["ts"])
        if m.kind == "late":
            assert newest[event["user_id"]] - ts >= 60_000
        newest[event["user_id"]] = max(newest.get(event["user_id"], ts), ts)


def test_arriving_user_ids_widen_past_a_million():
    def first_ids(users: int) -> list[str]:  # lazy: only the first messages are made
        cfg = config(count=users, users=users, user_lifetime_seconds=60.0)
        return [json.loads(m.value)["user_id"] for m, _ in zip(generate(cfg), range(3))]

    assert first_ids(999_999) == ["u000001", "u000002", "u000003"]
    assert first_ids(2_000_000) == ["u0000001", "u0000002", "u0000003"]


@pytest.mark.parametrize("overrides", [
    {"user_lifetime_seconds": 0.0},
    {"user_lifetime_seconds": -1.0},
    {"user_lifetime_seconds": float("nan")},
    {"user_lifetime_seconds": "5"},
    {"user_lifetime_seconds": 5.0, "users": 11},
])
def test_arriving_users_validation(overrides):
    with pytest.raises(ValueError) as info:
        GeneratorConfig(**{"count": 10, **overrides})
    assert "user_lifetime_seconds" in str(info.value) and "\n" not in str(info.value)


def test_cli_names_the_lifetime_flag(capsys):
    assert main(["--count", "10", "--users", "20", "--user-lifetime-seconds", "5"]) == 2
    err = capsys.readouterr().err
    assert "--users must be <= --count with --user-lifetime-seconds" in err
