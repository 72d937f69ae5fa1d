"""The benchmark's own arithmetic: histogram quantiles, the output check, window counts."""

import json

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
