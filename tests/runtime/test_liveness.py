"""The cluster's caught-up rule (runtime.liveness): marks as written and read, the rule's
cases one by one, and two properties over random commit histories: it never vouches for a
partition longer than the bound after a live commit, and steady live commits keep it true."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.runtime.liveness import FRESH_INTERVALS, SLACK_S, CommitWatch, Mark


@pytest.mark.parametrize("text, mark", [
    ("cs1 ab12.0 1000 1", Mark("ab12.0", 1000, True)),
    ("cs1 ab12.7 5003 0", Mark("ab12.7", 5003, False)),
    ("cs1 t 0 1", Mark("t", 0, True)),
    (None, None),
    ("", None),
    ("some other tool's metadata", None),
    ("cs2 ab12.0 1000 1", None),       # a format this version does not know
    ("cs1 ab12.0 1000", None),         # a field missing
    ("cs1 ab12.0 1000 1 x", None),     # one too many
    ("cs1 ab12.0 soon 1", None),
    ("cs1 ab12.0 -5 1", None),
    ("cs1 ab12.0 1000 yes", None),
])
def test_marks_are_read_back_or_refused(text, mark):
    assert Mark.decode(text) == mark
    if mark is not None:
        assert Mark.decode(mark.encode()) == mark


def live(token, interval_ms=1000):
    return Mark(token, interval_ms, True).encode()


BOUND = FRESH_INTERVALS * 1.0 + SLACK_S  # for a 1 s interval: 2.75 s

# Each case: looks at (time, {partition: (committed, end, metadata)}) and the verdicts.
CASES = [
    ("at-the-end: caught up without any mark, from the first look",
     [(0, {0: (10, 10, None)}), (1, {0: (12, 12, "garbage")})], [True, True]),
    ("behind at the first look: its mark's age is unknown",
     [(0, {0: (5, 10, live("a.0"))}), (60, {0: (5, 10, live("a.0"))})], [False, False]),
    ("a new live mark: caught up until the bound, not after",
     [(0, {0: (5, 10, live("a.0"))}), (1, {0: (8, 12, live("a.1"))}),
      (1 + BOUND, {0: (8, 14, live("a.1"))}), (1 + BOUND + 0.01, {0: (8, 14, live("a.1"))})],
     [False, True, True, False]),
    ("the next mark renews it",
     [(0, {0: (5, 10, None)}), (1, {0: (8, 12, live("a.1"))}), (4, {0: (11, 14, live("a.2"))}),
      (7, {0: (13, 16, live("a.3"))})], [False, True, True, True]),
    ("a fresh mark that is not live: behind",
     [(0, {0: (5, 10, None)}), (1, {0: (8, 12, Mark("a.1", 1000, False).encode())})],
     [False, False]),
    ("a longer interval allows longer",
     [(0, {0: (5, 10, None)}), (1, {0: (8, 12, live("a.1", 5000))}),
      (1 + 6.25 + SLACK_S, {0: (8, 14, live("a.1", 5000))}),
      (1 + 6.25 + SLACK_S + 0.01, {0: (8, 14, live("a.1", 5000))})], [False, True, True, False]),
    ("metadata of another tool: behind unless at the end",
     [(0, {0: (5, 10, None)}), (1, {0: (8, 12, "other")}), (2, {0: (12, 12, "other")})],
     [False, False, True]),
    ("one partition stale holds the cluster",
     [(0, {0: (5, 10, None), 1: (5, 10, None)}),
      (1, {0: (8, 12, live("a.1")), 1: (8, 12, live("b.1"))}),
      (3.5, {0: (11, 14, live("a.2")), 1: (8, 14, live("b.1"))}),
      (4, {0: (11, 14, live("a.2")), 1: (8, 14, live("b.1"))})],
     [False, True, True, False]),
]


@pytest.mark.parametrize("looks, verdicts", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_commit_watch(looks, verdicts):
    t = [0.0]
    watch = CommitWatch(monotonic=lambda: t[0])
    got = []
    for at, partitions in looks:
        t[0] = at
        got.append(watch.caught_up(partitions))
    assert got == verdicts


def test_a_returning_mark_counts_from_when_it_was_seen_again():
    """Metadata that changes back (a commit lost its race with an older one, or a process
    started again with the same state) is new to the watcher: it counts from that look."""
    t = [0.0]
    watch = CommitWatch(monotonic=lambda: t[0])
    assert not watch.caught_up({0: (5, 10, live("old.9"))})
    t[0] = 1
    assert not watch.caught_up({0: (5, 10, None)})
    t[0] = 2
    assert watch.caught_up({0: (5, 10, live("old.9"))})
    t[0] = 2 + BOUND + 0.01
    assert not watch.caught_up({0: (5, 10, live("old.9"))})


commits = st.lists(st.tuples(st.floats(0.05, 8.0), st.booleans(), st.integers(0, 5000)),
                   min_size=1, max_size=25)


@settings(max_examples=300, deadline=None)
@given(history=st.lists(commits, min_size=1, max_size=3), poll=st.floats(0.1, 2.0),
       ends_move=st.booleans())
def test_never_vouches_for_a_partition_beyond_the_bound_after_a_live_commit(history, poll,
                                                                           ends_move):
    """Commits of each partition at random gaps, live or not, with random intervals; the watcher
    looks every `poll` seconds. Whenever it says caught up, each partition behind its end has
    as newest commit a live one, made after the watcher's first look, first seen at most the
    bound (for that commit's interval) before. Commits are visible at once here."""
    timeline = []  # (time, partition, mark)
    for partition, gaps in enumerate(history):
        at = 0.0
        for n, (gap, is_live, interval_ms) in enumerate(gaps):
            at += gap
            timeline.append((at, partition, Mark(f"{partition}.{n}", interval_ms, is_live)))
    timeline.sort(key=lambda c: c[0])
    horizon = timeline[-1][0] + 10
    t = [0.0]
    watch = CommitWatch(monotonic=lambda: t[0])
    newest = {}  # partition -> (mark, first look that saw it, or None for "before the first")
    first_look = True
    i = 0
    while t[0] <= horizon:
        while i < len(timeline) and timeline[i][0] <= t[0]:
            _, partition, mark = timeline[i]
            newest[partition] = (mark, None if first_look else t[0])
            i += 1
        looks = {}
        for partition in range(len(history)):
            mark = newest.get(partition, (None, None))[0]
            behind = ends_move or mark is None
            looks[partition] = (0, 1 if behind else 0, mark.encode() if mark else None)
        if watch.caught_up(looks):
            for partition, (committed, end, _) in looks.items():
                if committed >= end:
                    continue
                mark, seen = newest[partition]
                assert mark.live and seen is not None
                assert t[0] - seen <= FRESH_INTERVALS * mark.interval_ms / 1000 + SLACK_S
        first_look = False
        t[0] += poll


@settings(max_examples=200, deadline=None)
@given(partitions=st.integers(1, 4), interval_s=st.integers(1, 10), poll=st.floats(0.1, 0.5),
       jitter=st.lists(st.floats(0.0, 1.0), min_size=40, max_size=40))
def test_steady_live_commits_keep_the_cluster_caught_up(partitions, interval_s, poll, jitter):
    """Every partition live at every commit, commits every `interval_s`, each late by up to a
    quarter of it + 0.5 s (a snapshot that starts late), ends always ahead of the commits, the
    watcher looking every `poll` (ClusterProgress: 0.5 s): once the first commit after the
    watcher's first look has been seen, it says caught up at every look."""
    late = 0.25 * interval_s + 0.5
    commit_times = [k * interval_s + jitter[k] * late for k in range(1, len(jitter))]
    t = [0.0]
    watch = CommitWatch(monotonic=lambda: t[0])
    verdicts = []
    while t[0] < commit_times[-1]:
        done = [k for k, at in enumerate(commit_times) if at <= t[0]]
        mark = Mark(f"x.{done[-1]}", interval_s * 1000, True).encode() if done else None
        verdict = watch.caught_up({p: (0, 1, mark) for p in range(partitions)})
        verdicts.append((t[0], verdict))
        t[0] += poll
    settled = commit_times[1] + poll  # the first commit after the first look, seen
    assert all(v for at, v in verdicts if at >= settled)
