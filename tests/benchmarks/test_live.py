"""The live-rate judge's arithmetic (bench/live.py), without Kafka."""

import math

import pytest

from bench import live

BEGAN = 1_000_000.0  # the generator's start, unix seconds
ENDED = BEGAN + 120


def windows(n_per_start, first_s, last_s):
    """Expected windows: n keys for each 5 s window closing between first_s and last_s."""
    out = []
    t = first_s
    while t <= last_s:
        start_ms = int((BEGAN + t - live.CLOSE_S) * 1000)
        out += [("user", f"u{i}", start_ms) for i in range(n_per_start)]
        t += 5
    return out


def closes(window):
    return window[2] / 1000 + live.CLOSE_S


def test_percentile_is_nearest_rank():
    assert live.percentile([3, 1, 2], 0.5) == 2
    assert live.percentile(list(range(1, 101)), 0.99) == 99
    assert live.percentile([], 0.99) is None
    assert live.percentile([1, math.inf], 0.99) == math.inf


@pytest.mark.parametrize("name,delay,held,ok,why", [
    ("prompt", lambda w: 0.3, 10_000, True, "held"),
    ("slow everywhere", lambda w: 1.5, 10_000, False, "p99 1.50 s"),
    # One key in 50 (2 %) late in the last 30 s only: under 1 % of the whole span.
    ("falling behind at the end", lambda w: 2.0 if w[1] == "u0" and closes(w) > ENDED - 30
     else 0.2, 10_000, False, "falling behind"),
    ("the generator could not hold the rate", lambda w: 0.1, 9_000, False, "the generator held only"),
])
def test_the_verdict(name, delay, held, ok, why):
    expected = {w: 3 for w in windows(50, live.WARMUP_S, 120)}
    seen = {w: (closes(w) + delay(w), 3) for w in expected}
    trial = live.judge(10_000, seen, expected, BEGAN, ENDED, held)
    assert trial.ok is ok and why in trial.why, trial


def test_windows_outside_the_judged_span_do_not_count_and_a_lost_or_wrong_one_fails():
    judged = windows(100, live.WARMUP_S, 120)
    early = windows(100, 5, 10)  # before the warm-up ends: the pings' and the start's
    expected = {w: 2 for w in judged + early}
    seen = {w: (closes(w) + 0.1, 2) for w in judged}
    seen.update({w: (closes(w) + 30, 2) for w in early})
    trial = live.judge(10_000, seen, expected, BEGAN, ENDED, 10_000)
    assert trial.ok and trial.records == len(judged) and trial.p99_s == pytest.approx(0.1)
    seen[judged[1]] = (closes(judged[1]) + 0.1, 1)  # prompt, but an event short
    del seen[judged[0]]  # one window of 2,100 never readable: prompt, but lost
    trial = live.judge(10_000, seen, expected, BEGAN, ENDED, 10_000)
    assert not trial.ok and (trial.missing, trial.wrong) == (1, 1)
    assert trial.why == "1 windows never readable, 1 with wrong counts"
    for w in judged[:len(judged) // 50]:  # 2 %
        seen.pop(w, None)
    trial = live.judge(10_000, seen, expected, BEGAN, ENDED, 10_000)
    assert not trial.ok and trial.p99_s == math.inf
    assert trial.why.startswith(f"{len(judged) // 50:,} windows never readable")  # not "p99 inf"


def test_results_are_strict_json_with_an_infinite_p99_written_as_null():
    import json

    from bench.systems import finite

    trial = live.Trial(5600, False, "42 windows never readable", p99_s=math.inf, p50_s=0.5)
    text = json.dumps(finite({"trials": [trial.__dict__], "nan": math.nan, "t": (1.0,)}),
                      allow_nan=False)
    assert json.loads(text) == {"trials": [dict(trial.__dict__, p99_s=None)], "nan": None,
                                "t": [1.0]}


@pytest.mark.parametrize("start,holds_up_to,found,tried", [
    (5000, 23_000, 22_500, [5000, 10_000, 20_000, 40_000, 30_000, 25_000, 22_500]),
    (5000, 4_000, 3_800, [5000, 2500, 3800, 4400, 4100]),  # down first, then bisect
    (5000, 100, None, [5000, 2500, 1250, 625]),  # nothing held down to the floor
])
def test_the_search_doubles_or_halves_then_bisects(monkeypatch, start, holds_up_to, found, tried):
    calls = []

    def fake_trial(system, brokers, rate, seconds, snapshot_s):
        calls.append(rate)
        ok = rate <= holds_up_to
        return live.Trial(rate, ok, "held" if ok else "p99 2.00 s", rate)

    monkeypatch.setattr(live, "trial", fake_trial)
    result = live.search(live.ours(1, 5), "b", start, report=lambda line: None)
    assert calls == tried and result["rate"] == found


def test_the_held_rate_comes_from_the_generators_summary():
    line = ("clickstream.generate: sent=1200000 delivered=1200000 failed=0 elapsed=120.00s "
            "rate=10000 msgs/s event=1 late=0 malformed=0")
    assert live.held_rate("progress ...\n" + line) == pytest.approx(10_000)
    assert live.held_rate("no summary") is None
