"""The benchmark's own arithmetic (histogram quantiles, the output check, window counts) and
its scratch topics."""

import json
import re
import time
import uuid
from pathlib import Path

import pytest

from bench import latency, outputs
from clickstream.tools.generator import GeneratorConfig, generate

METRICS = """\
# HELP clickstream_window_emit_delay_seconds x
clickstream_window_emit_delay_seconds_bucket{le="0.1",output="user"} 90.0
clickstream_window_emit_delay_seconds_bucket{le="0.25",output="user"} 100.0
clickstream_window_emit_delay_seconds_bucket{le="+Inf",output="user"} 100.0
clickstream_window_emit_delay_seconds_bucket{le="0.1",output="page"} 0.0
clickstream_window_emit_delay_seconds_bucket{le="0.25",output="page"} 100.0
clickstream_window_emit_delay_seconds_bucket{le="+Inf",output="page"} 100.0
clickstream_window_emit_delay_seconds_count{output="user"} 100.0
"""


def test_buckets_sum_the_outputs_and_quantiles_interpolate_like_prometheus():
    cumulative = latency.buckets(METRICS)
    assert cumulative == [(0.1, 90.0), (0.25, 200.0), (float("inf"), 200.0)]
    assert abs(latency.quantile(0.25, cumulative) - 0.1 * 50 / 90) < 1e-9
    # rank 198 of 200 lies in (0.1, 0.25]: 108 of its 110
    assert abs(latency.quantile(0.99, cumulative) - (0.1 + 0.15 * 108 / 110)) < 1e-9
    assert latency.quantile(0.5, []) is None


def test_compare_reports_missing_extra_and_wrong_windows():
    want = {("u1", 0): 2, ("u2", 0): 1, ("u3", 5000): 4}
    assert outputs.compare(want, dict(want)) == "ok (3 windows)"
    got = {("u1", 0): 2, ("u2", 0): 3, ("u9", 0): 1}
    assert outputs.compare(want, got) == ("DIFFERS: 1 missing, 1 extra, 1 wrong counts "
                                          "of 3 sampled windows")


def test_expected_counts_come_from_the_seeded_stream():
    start = 1767225600000
    config = GeneratorConfig(count=3000, users=50, seed=3, start_ms=start)
    users, pages, cutoff = outputs.expected(config, 5000, 10000)
    # event i is at start + i ms; only windows ending W + L + margin before the newest count
    assert cutoff == start + 2999 - 10000 - outputs.MARGIN_MS - 5000
    assert users == {} and pages == {}

    config = GeneratorConfig(count=60000, users=50, seed=3, start_ms=start)
    users, pages, cutoff = outputs.expected(config, 5000, 10000)
    assert cutoff == start + 59999 - 20000
    by_hand = {}
    for message in generate(config):
        event = json.loads(message.value)
        window = event["ts"] - event["ts"] % 5000 if isinstance(event["ts"], int) else None
        if window is not None and outputs.in_sample(event["user_id"]) and window < cutoff:
            by_hand[(event["user_id"], window)] = by_hand.get((event["user_id"], window), 0) + 1
    # integer timestamps only, by hand: every one of them is in the expected counts
    assert by_hand and all(users[k] >= v for k, v in by_hand.items())
    assert set(users) >= set(by_hand)


def _sessions(events, gap=30, max_=100):
    return [s for s, _ in outputs._split(sorted(events), gap, max_)]


def test_session_reference_splits_at_the_gap_and_greedily_at_the_max():
    # (ts, index, event_type, url); exactly the gap apart: two sessions
    one = [(0, 0, "page_view", "/a"), (29, 1, "click", "/a"), (58, 2, "page_view", "/b")]
    assert [s[:3] for s in _sessions(one)] == [(0, 58, 3)]
    two = [(0, 0, "page_view", "/a"), (30, 1, "page_view", "/b")]
    assert [s[:3] for s in _sessions(two)] == [(0, 0, 1), (30, 30, 1)]
    # a run of 0, 20, ..., 240: greedy from the left, ts - start <= max joins
    run = [(t, t, "click", "/x") for t in range(0, 241, 20)]
    assert [s[:2] for s in _sessions(run)] == [(0, 100), (120, 220), (240, 240)]
    marks = [m for _, m in outputs._split(run, 30, 100)]
    assert marks == [1, 1, 0]  # the first two ended by the max, the last by the end


def test_session_reference_orders_by_time_then_arrival_and_derives_the_fields():
    events = [(10, 0, "page_view", "/late-arrival"), (5, 1, "click", "/first"),
              (10, 2, "purchase", "/checkout"), (5, 3, "page_view", "/second")]
    (session,) = _sessions(events)
    assert session == (5, 10, 4, 2, 1, 4, "/first", "/checkout", False, True)
    (bounce,) = _sessions([(7, 0, "page_view", "/a")])
    assert bounce == (7, 7, 1, 1, 0, 1, "/a", "/a", True, False)
    (lone_click,) = _sessions([(7, 0, "click", "/a")])
    assert lone_click[-2:] == (False, False)


def test_expected_sessions_skip_late_events_like_the_windows():
    start = 1767225600000
    config = GeneratorConfig(count=20000, users=50, seed=3, start_ms=start, late_fraction=0.05)
    want = outputs.expected_all(config, 5000, 10000, 30000, 86400000)
    late = {}
    for message in generate(config):
        event = json.loads(message.value)
        if message.kind == "late" and outputs.in_sample(event["user_id"]):
            late[event["user_id"]] = late.get(event["user_id"], 0) + 1
    on_time = {}
    for message in generate(config):
        event = json.loads(message.value)
        if message.kind != "late" and outputs.in_sample(event["user_id"]):
            on_time[event["user_id"]] = on_time.get(event["user_id"], 0) + 1
    assert late  # the generator's late events are >60 s behind: late for W + L = 15 s
    counted = {}
    for (user, _), session in want.sessions.items():
        counted[user] = counted.get(user, 0) + session[2]
    assert counted == on_time
    assert sum(want.users.values()) <= sum(on_time.values()) and want.split_by_max == 0


def test_compare_sessions_reports_missing_extra_wrong_and_duplicated():
    row = (0, 10, 2, 1, 1, 1, "/a", "/a", False, False)
    want = {("u1", 0): row, ("u2", 5): row[:1] + (5,) + row[2:]}
    got = {k: [v] for k, v in want.items()}
    assert outputs.compare_sessions(want, got) == "ok (2 sessions)"
    got[("u1", 0)] = [row, row]
    got[("u2", 5)] = [want[("u2", 5)][:2] + (3,) + row[3:]]
    got[("u3", 0)] = [row]
    assert outputs.compare_sessions(want, got) == (
        "DIFFERS: 0 missing, 1 extra, 1 wrong, 1 duplicated of 2 sampled sessions; "
        "first wrong u2@5: events: want 2, got 3")


def test_session_records_normalise_rfc3339_and_epoch_ms():
    record = {"user_id": "u1", "session_start": "2026-01-01T00:00:00.123Z",
              "session_end": 1767225600999, "events": 2, "page_views": 1, "clicks": 1,
              "unique_pages": 1, "entry_url": "/a", "exit_url": "/a", "bounce": False,
              "converted": False}
    assert outputs.session_row(record)[:2] == (1767225600123, 1767225600999)
    assert outputs.event_ms("2026-01-01T02:00:00.001+02:00") == 1767225600001


def test_results_files_carry_no_path_of_the_machine_they_ran_on():
    results = Path(__file__).resolve().parents[2] / "bench" / "results"
    absolute = re.compile(r'"/(?:work|tmp|root|home|var|usr|opt|mnt|srv)/[^"]*"')
    found = {f.name: absolute.findall(f.read_text()) for f in sorted(results.glob("*.json"))}
    assert found and {name: paths for name, paths in found.items() if paths} == {}


def _rates(on, off):
    from bench.run import SESSIONS_PAIR
    return {SESSIONS_PAIR[0]: {"steady_rate": on}, SESSIONS_PAIR[1]: {"steady_rate": off}}


def test_the_sessions_cost_goal_is_judged_on_visits_and_the_stress_ratio_shown_beside_it():
    from bench.run import targets
    rows = {row["target"]: row for row in targets(
        _rates(28_000, 40_000), None, None, None, "default",
        {"systems": _rates(27_000, 30_000)})}
    goal = rows["sessions on / sessions off (1 process, exactly-once; visits input, 30-min gap)"]
    assert goal["goal"] == 0.75 and goal["value"] == pytest.approx(0.9) and goal["met"] is True
    [stress] = [row for name, row in rows.items() if name.startswith("sessions on / sessions "
                                                                     "off, default input")]
    assert stress["goal"] is None and stress["value"] == pytest.approx(0.7)
    # a run on the visits input judges its own pair; a pair not run gives no row at all
    [row] = [r for r in targets(_rates(21_000, 30_000), None, None, None, "visits")
             if r["target"].startswith("sessions")]
    assert row["goal"] == 0.75 and row["met"] is False
    assert not [r for r in targets({}, None, None, None) if r["target"].startswith("sessions")]


def test_every_job_gets_the_same_topics_group_window_and_lateness_under_both_names():
    from bench.systems import job_env

    topics = {"in": "in-1", "user": "u-1", "page": "p-1", "dlq": "d-1", "session": "s-1"}
    env = job_env("b:9", topics, "g-1", BENCH_EVENTS=0, CLICKSTREAM_SESSION_TOPIC="")
    pairs = [("BROKERS", "BROKERS", "b:9"), ("INPUT_TOPIC", "INPUT_TOPIC", "in-1"),
             ("USER_TOPIC", "USER_TOPIC", "u-1"), ("PAGE_TOPIC", "PAGE_TOPIC", "p-1"),
             ("GROUP", "CONSUMER_GROUP", "g-1")]
    for bench_name, ours, value in pairs:
        assert env[f"BENCH_{bench_name}"] == env[f"CLICKSTREAM_{ours}"] == value
    assert (env["BENCH_WINDOW_MS"], env["BENCH_LATENESS_MS"]) == ("5000", "10000")
    assert (env["CLICKSTREAM_WINDOW_SECONDS"], env["CLICKSTREAM_ALLOWED_LATENESS_SECONDS"]) == (
        "5", "10")
    assert env["CLICKSTREAM_DLQ_TOPIC"] == "d-1"
    assert env["BENCH_EVENTS"] == "0" and env["CLICKSTREAM_SESSION_TOPIC"] == ""  # extras win


@pytest.mark.integration
def test_a_jobs_topics_are_gone_after_it_even_when_it_fails(brokers):
    from confluent_kafka.admin import AdminClient

    from bench.systems import JOB_TOPICS, job_topics

    admin = AdminClient({"bootstrap.servers": brokers})
    tag = uuid.uuid4().hex[:8]
    with pytest.raises(RuntimeError):
        with job_topics(brokers, "bench-scratch", tag, 3) as topics:
            assert sorted(topics) == sorted(JOB_TOPICS)
            meta = admin.list_topics(timeout=10).topics
            assert {kind: len(meta[name].partitions) for kind, name in topics.items()} == {
                "in": 3, "user": 2, "page": 2, "dlq": 2, "session": 2}
            raise RuntimeError("the job failed")
    names = set(topics.values())

    def gone():
        return not set(names) & set(admin.list_topics(timeout=10).topics)

    deadline = time.time() + 30
    while not gone() and time.time() < deadline:
        time.sleep(0.2)
    assert gone()
