"""The alignment rule of the input partitions one process reads, table-driven, and a
simulation of partitions of very different sizes read in batches: no deadlock, nothing lost,
and no event handed on further ahead of another partition's position than the drift."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.core.times import NEVER
from clickstream.runtime.alignment import Alignment, drift_for

CASES = [
    # (id, reports [(partition, position, backlog)], asking partition, limit)
    ("alone: no limit", [(0, 100, True)], 0, None),
    ("nobody reported", [], 0, None),
    ("another with a backlog", [(0, 500, True), (1, 100, True)], 0, 100 + 50),
    ("the one behind is limited by the one ahead", [(0, 500, True), (1, 100, True)], 1, 500 + 50),
    ("the smallest of the others", [(0, 900, True), (1, 300, True), (2, 200, True)], 0, 250),
    ("a caught-up partition holds nobody back", [(0, 500, True), (1, 100, False)], 0, None),
    ("a backlog without a position yet holds everything back", [(0, 500, True), (1, None, True)],
     0, NEVER),
    ("without a backlog it holds nobody back", [(0, 500, True), (1, None, False)], 0, None),
    ("a report replaces the last", [(1, 100, True), (0, 500, True), (1, 400, True)], 0, 450),
    ("caught up again after a backlog", [(1, 100, True), (0, 500, True), (1, 150, False)], 0, None),
]


@pytest.mark.parametrize("reports, asking, limit", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_limit(reports, asking, limit):
    alignment = Alignment(50)
    for partition, position, backlog in reports:
        alignment.report(partition, position, backlog)
    assert alignment.limit(asking) == limit


def test_unconfigured_limits_nobody_and_forget_removes():
    alignment = Alignment()
    alignment.report(1, 100, True)
    assert alignment.limit(0) is None
    alignment.configure(10)
    assert alignment.limit(0) == 110
    alignment.forget(1)
    assert alignment.limit(0) is None


def test_drift_is_half_the_ttl():
    assert drift_for(3_600_000) == 1_800_000


def simulate(sizes, drift, batch, rng):
    """Partitions of `sizes` events with times spread over the same span (so the small ones
    are sparse), read in batches in random turns the way ClickPartition does: hold back from
    the first event beyond the limit. Returns the handed-on (partition, ts) in order and the
    largest lead over another backlogged partition's position seen when handing on."""
    span = 1_000_000
    logs = [sorted(rng.randrange(span) for _ in range(n)) for n in sizes]
    alignment = Alignment(drift)
    for p, log in enumerate(logs):
        alignment.report(p, None, bool(log))  # built: a backlog, no position yet
    nxt = [0] * len(sizes)
    held = [False] * len(sizes)
    newest = [None] * len(sizes)
    out, lead = [], 0
    while any(nxt[p] < len(logs[p]) for p in range(len(sizes))):
        p = rng.choice([q for q in range(len(sizes)) if nxt[q] < len(logs[q])])
        limit = alignment.limit(p)
        taken = 0
        while nxt[p] < len(logs[p]) and taken < batch:
            ts = logs[p][nxt[p]]
            if limit is not None and ts > limit:
                break
            others = [pos for q, pos in alignment._position.items() if q != p]
            assert None not in others
            if others:
                lead = max(lead, ts - min(others))
            out.append((p, ts))
            newest[p] = ts if newest[p] is None else max(newest[p], ts)
            nxt[p] += 1
            taken += 1
        held[p] = nxt[p] < len(logs[p]) and taken < batch
        backlog = nxt[p] < len(logs[p])
        position = logs[p][nxt[p]] if held[p] else newest[p]
        alignment.report(p, position, backlog)
        if len(out) > 10 * sum(sizes) + 1000:
            raise AssertionError("no progress")
    return logs, out, lead


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
       drift=st.integers(0, 200_000), batch=st.integers(1, 50), seed=st.integers(0, 2**32))
def test_partitions_of_any_sizes_never_deadlock_lose_nothing_nor_run_ahead(sizes, drift, batch,
                                                                           seed):
    logs, out, lead = simulate(sizes, drift, batch, random.Random(seed))
    for p, log in enumerate(logs):
        assert [ts for q, ts in out if q == p] == log  # each partition whole, in its order
    assert lead <= drift
