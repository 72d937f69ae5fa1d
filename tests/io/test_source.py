"""The click source's batches, with a stand-in consumer (no Kafka): which messages become
events, which become dead letters, and what reaches the event-time watermark."""

import json

import pytest
from confluent_kafka import (TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME,
                             TIMESTAMP_NOT_AVAILABLE, TopicPartition)

from clickstream.core.records import DEAD_LETTERS
from clickstream.io import source
from clickstream.runtime.liveness import Mark
from clickstream.runtime.metrics import METRICS
from clickstream.runtime.progress import IdleClock
from clickstream.runtime.settings import Settings

RECORD_TS = 1_796_004_000_000  # 2026-11-30T02:00:00.000Z
HOUR_MS = 3_600_000
FAR = 4_070_908_800_000  # 2099-01-01T00:00:00.000Z


class FakeMessage:
    def __init__(self, offset, value, record_ts, kind=TIMESTAMP_CREATE_TIME):
        self._offset, self._value, self._timestamp = offset, value, (kind, record_ts)

    def error(self):
        return None

    def offset(self):
        return self._offset

    def value(self):
        return self._value

    def timestamp(self):
        return self._timestamp


class FakeConsumer:
    """Hands out its messages in one consume(); the partition ends after them."""

    def __init__(self, messages):
        self._messages = messages
        self._position = 0

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return 0, len(self._messages)

    def assign(self, partitions):
        pass

    def consume(self, num_messages, timeout):
        batch, self._messages = self._messages, []
        if batch:
            self._position = batch[-1].offset() + 1
        return batch

    def position(self, partitions):
        return [TopicPartition(tp.topic, tp.partition, self._position) for tp in partitions]

    def commit(self, offsets, asynchronous):
        pass

    def close(self):
        pass


def event(user, ts, url="/p"):
    return json.dumps({"user_id": user, "event_type": "page_view", "url": url, "ts": ts}).encode()


def one_batch(monkeypatch, records, **env):
    """next_batch over `records` ((value, record_ts[, timestamp type]) in offset order):
    ({user: [(ts, url)]}, [(offset, reason, error)], [newest event time per watermark call])."""
    messages = [FakeMessage(offset, *record) for offset, record in enumerate(records)]
    monkeypatch.setattr(source, "Consumer", lambda config: FakeConsumer(messages))
    observed = []
    monkeypatch.setattr(METRICS.watermark, "observe", lambda tp, newest: observed.append(newest))
    part = source.ClickPartition(Settings.from_env(env), 0, None, IdleClock(), 100)
    events, dead = {}, []
    for key, payload in part.next_batch():
        if key == DEAD_LETTERS:
            for record in payload[1]:
                letter = json.loads(record.value)
                dead.append((letter["offset"], letter["reason"], letter["error"]))
        else:
            for e in payload:
                events.setdefault(e.user_id, []).append((e.ts, e.url))
    return events, dead, observed


AHEAD = ("ts 2099-01-01T00:00:00.000Z is more than 3600 s ahead of its Kafka record's timestamp "
         "2026-11-30T02:00:00.000Z (CLICKSTREAM_MAX_FUTURE_SECONDS)")

CASES = [
    # (id, records, env, events, dead letters, watermark observations)
    ("far-future-then-normal",
     [(event("a", FAR), RECORD_TS), (event("a", RECORD_TS - 5), RECORD_TS)], {},
     {"a": [(RECORD_TS - 5, "/p")]}, [(0, "malformed", AHEAD)], [RECORD_TS - 5]),
    ("only-far-future: no clock moves",
     [(event("a", FAR), RECORD_TS)], {}, {}, [(0, "malformed", AHEAD)], []),
    ("exactly-at-the-limit",
     [(event("a", RECORD_TS + HOUR_MS), RECORD_TS)], {},
     {"a": [(RECORD_TS + HOUR_MS, "/p")]}, [], [RECORD_TS + HOUR_MS]),
    ("1-ms-past-the-limit",
     [(event("a", RECORD_TS + HOUR_MS + 1), RECORD_TS), (event("b", RECORD_TS), RECORD_TS)], {},
     {"b": [(RECORD_TS, "/p")]},
     [(0, "malformed", "ts 2026-11-30T03:00:00.001Z is more than 3600 s ahead of its Kafka "
                       "record's timestamp 2026-11-30T02:00:00.000Z (CLICKSTREAM_MAX_FUTURE_SECONDS)")],
     [RECORD_TS]),
    ("log-append-time-is-guarded-too",
     [(event("a", FAR), RECORD_TS, TIMESTAMP_LOG_APPEND_TIME)], {}, {},
     [(0, "malformed", AHEAD)], []),
    ("no-record-timestamp: no guard",
     [(event("a", FAR), -1, TIMESTAMP_NOT_AVAILABLE)], {}, {"a": [(FAR, "/p")]}, [], [FAR]),
    ("a-shorter-setting",
     [(event("a", RECORD_TS + 61_000), RECORD_TS), (event("a", RECORD_TS + 60_000), RECORD_TS)],
     {"CLICKSTREAM_MAX_FUTURE_SECONDS": "60"}, {"a": [(RECORD_TS + 60_000, "/p")]},
     [(0, "malformed", "ts 2026-11-30T02:01:01.000Z is more than 60 s ahead of its Kafka "
                       "record's timestamp 2026-11-30T02:00:00.000Z (CLICKSTREAM_MAX_FUTURE_SECONDS)")],
     [RECORD_TS + 60_000]),
    ("urls-kept-by-default",
     [(event("a", RECORD_TS, "/p?x=1#f"), RECORD_TS), (event("a", RECORD_TS, "?x"), RECORD_TS)], {},
     {"a": [(RECORD_TS, "/p?x=1#f"), (RECORD_TS, "?x")]}, [], [RECORD_TS]),
    ("urls-without-query-when-dropped",
     [(event("a", RECORD_TS, "/p?x=1#f"), RECORD_TS), (event("a", RECORD_TS, "?x"), RECORD_TS),
      (event("a", RECORD_TS + 1, "/q#top"), RECORD_TS)],
     {"CLICKSTREAM_PAGE_URL_QUERY": "drop"},
     {"a": [(RECORD_TS, "/p"), (RECORD_TS + 1, "/q")]},
     [(1, "malformed", "url '?x' is empty without its query string and fragment")],
     [RECORD_TS + 1]),
]


@pytest.mark.parametrize("records, env, events, dead, observed", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_next_batch(monkeypatch, records, env, events, dead, observed):
    assert one_batch(monkeypatch, records, **env) == (events, dead, observed)


def test_a_partition_holds_back_what_runs_too_far_ahead_of_another_and_resumes_it(monkeypatch):
    """Events beyond the alignment's limit wait, in order, unread as far as the snapshot and
    the idle clock are concerned; once the other partition moves on they go."""
    T = RECORD_TS
    records = [(event("a", T + 500), T), (event("a", T + 1000), T), (b"{bad", T),
               (event("a", T + 1600), T), (event("a", T + 1200), T)]
    messages = [FakeMessage(offset, *record) for offset, record in enumerate(records)]
    monkeypatch.setattr(source, "Consumer", lambda config: FakeConsumer(messages))
    monkeypatch.setattr(METRICS.watermark, "observe", lambda tp, newest: None)
    alignment = source.Alignment(500)
    alignment.report("other", T + 1000, True)  # another partition with a backlog, at T + 1000
    clock = IdleClock()
    part = source.ClickPartition(Settings.from_env({}), 0, None, clock, 100, alignment=alignment)

    def handed(items):
        return [(e.ts - T) for key, payload in items if key != DEAD_LETTERS for e in payload]

    first = part.next_batch()
    assert handed(first) == [500, 1000]
    assert [len(p[1]) for k, p in first if k == DEAD_LETTERS] == [1]  # the bad one before the cut
    assert part.snapshot() == 3 and part.next_awake() is None
    assert clock._lagging == {part._tp_key}  # held messages are a backlog: no idle time
    assert alignment.limit("other") == T + 1600 + 500  # its position: the held event

    assert part.next_batch() == [] and part.next_awake() is not None  # still too far ahead
    assert part.snapshot() == 3

    alignment.report("other", T + 1100, True)
    assert handed(part.next_batch()) == [1600, 1200]  # in offset order, the older one too
    assert part.snapshot() == 5 and part.next_awake() is None
    assert clock._lagging == set()
    assert alignment.limit("other") is None  # caught up: holds nobody back


def marking_partition(monkeypatch):
    """A source partition of three messages starting at monotonic time 100 s, its commits
    recorded: (partition, [(committed offset, Mark)], [monotonic time])."""
    commits = []

    class Recording(FakeConsumer):
        def commit(self, offsets, asynchronous):
            commits.extend((tp.offset, Mark.decode(tp.metadata)) for tp in offsets)

    T = RECORD_TS
    messages = [FakeMessage(offset, event("a", T + offset), T) for offset in range(3)]
    monkeypatch.setattr(source, "Consumer", lambda config: Recording(messages))
    monkeypatch.setattr(METRICS.watermark, "observe", lambda tp, newest: None)
    now = [100.0]
    monkeypatch.setattr(source.time, "monotonic", lambda: now[0])
    return source.ClickPartition(Settings.from_env({}), 0, None, IdleClock(), 100), commits, now


def test_each_commit_carries_a_mark_of_whether_the_partition_was_read_live(monkeypatch):
    """What io.watchers.ClusterProgress reads: a new token at every commit, the time since the
    previous commit, and live only once the partition has caught up."""
    part, commits, now = marking_partition(monkeypatch)
    now[0] = 101.5
    part.snapshot()  # built, not yet polled: a backlog
    part.next_batch()  # reads all three: caught up
    now[0] = 102.5
    part.snapshot()
    now[0] = 103.5
    part.snapshot()
    assert [c[0] for c in commits] == [0, 3, 3]
    marks = [mark for _, mark in commits]
    assert [(m.interval_ms, m.live) for m in marks] == [(1500, False), (1000, True), (1000, True)]
    assert len({m.token for m in marks}) == 3


def test_a_sources_first_mark_is_never_live(monkeypatch):
    """Its interval runs from the source's start, which may be far longer than a snapshot
    interval (a sink's read-back): vouching with it would stretch the watcher's bound."""
    part, commits, now = marking_partition(monkeypatch)
    part.next_batch()  # reads all three: caught up before the first snapshot
    now[0] = 160.0  # a minute of start-up
    part.snapshot()
    now[0] = 165.0
    part.snapshot()
    assert [(m.interval_ms, m.live) for _, m in commits] == [(60000, False), (5000, True)]
