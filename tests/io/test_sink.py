"""The exactly-once sink's pieces that need no broker: partition routing and its bookkeeping
(`WriterState`, `SinkSnapshot`), table-driven."""

import pickle

import pytest

from clickstream.core.records import Record, identity
from clickstream.io.sink import RecordSink
from clickstream.io.sink_state import SinkSnapshot, WriterState
from clickstream.runtime.settings import Settings

WINDOW = (0, 5000, [1])


def window(key: str, start: int = 0) -> Record:
    return Record(key, (start, start + 5000, [1]), str(start), 1.0)


def test_sink_partition_is_the_one_the_window_stage_picked():
    sink = RecordSink(Settings.from_env({}), "t", 50)
    assert sink.list_parts() == [f"{i:05d}" for i in range(50)]
    assert sink.part_fn("16") == 16


# (resumed from, read back to, acknowledged offsets per epoch) -> read_from of each snapshot
SNAPSHOT_CASES = [
    ("fresh store, nothing written", SinkSnapshot(None), None, [[], []], [None, None]),
    ("origin, nothing written: the origin stays", SinkSnapshot(7), None, [[], []], [7, 7]),
    ("the offset after the last acknowledged record", SinkSnapshot(0), None,
     [[0, 1], [2], [3, 4]], [2, 3, 5]),
    ("acknowledgements out of order: the highest counts", SinkSnapshot(10), None,
     [[12, 10, 11], [14, 13]], [13, 15]),
    ("records read back lie before the first snapshot's offset", SinkSnapshot(3), 9,
     [[], [9, 10]], [9, 11]),
]


@pytest.mark.parametrize("name, resumed, read_back_end, epochs, read_from", SNAPSHOT_CASES,
                         ids=[c[0] for c in SNAPSHOT_CASES])
def test_snapshot_offsets(name, resumed, read_back_end, epochs, read_from):
    state = WriterState(resumed, read_back_end=read_back_end)
    got = []
    for offsets in epochs:
        for offset in offsets:
            state.acknowledged(offset)
        got.append(state.snapshot().read_from)
    assert got == read_from


def test_records_kafka_already_holds_are_not_written_again_and_leave_the_pending_set():
    records = [window("u1"), window("u2"), Record(None, b"{}", "0:5", None),
               Record(None, b"{}", "0:6", None)]
    state = WriterState(SinkSnapshot(0, frozenset({identity("u1", "0")})),
                        read_back={identity(None, "0:6")}, read_back_end=4)
    assert state.pending == 2
    assert state.snapshot().pending == {identity("u1", "0"), identity(None, "0:6")}
    assert state.unwritten(records) == [records[1], records[2]]
    assert state.pending == 0 and state.snapshot() == SinkSnapshot(4)
    assert state.unwritten(records) == records
    assert WriterState(SinkSnapshot(0)).unwritten(records) == records


def test_pending_identities_outlive_snapshots_until_they_are_emitted_again():
    """The defect of version 1: a record committed after the snapshot a run resumed from is
    suppressed in that run, but a second resume must still know it, however far its offset."""
    first = WriterState(SinkSnapshot(0), read_back={identity("u", "0")}, read_back_end=1)
    for offset in range(1, 50):  # other records, many epochs
        first.unwritten([window(f"v{offset}")])
        first.acknowledged(offset)
        snapshot = first.snapshot()
    assert snapshot.read_from == 50 and snapshot.pending == {identity("u", "0")}
    second = WriterState(pickle.loads(pickle.dumps(snapshot)), read_back=(), read_back_end=50)
    assert second.unwritten([window("u")]) == []
    assert second.snapshot() == SinkSnapshot(50)


def test_a_version_1_offset_is_read_back_but_not_carried_on():
    resumed, legacy = SinkSnapshot.load(12)
    assert resumed == SinkSnapshot(12) and legacy
    state = WriterState(resumed, read_back={identity("u", "0")}, read_back_end=20, legacy=True)
    assert state.pending == 1 and state.snapshot() == SinkSnapshot(20)
    assert state.unwritten([window("u")]) == []


@pytest.mark.parametrize("stored, origin, expected", [
    (None, None, (SinkSnapshot(None), False)),
    (None, 5, (SinkSnapshot(5), False)),
    (SinkSnapshot(3, frozenset({"x"})), 5, (SinkSnapshot(3, frozenset({"x"})), False)),
])
def test_load(stored, origin, expected):
    assert SinkSnapshot.load(stored, origin) == expected


@pytest.mark.parametrize("stored, words", [
    ("garbage", "(str;"), (SinkSnapshot(1, version=3), "(version 3;"), (True, "(bool;")])
def test_a_sink_state_of_an_unknown_format_is_refused(stored, words):
    with pytest.raises(ValueError, match=r"sink state of a format .*" + words.replace("(", r"\(")):
        SinkSnapshot.load(stored)


class ServingProducer:
    """A producer stand-in that acknowledges every record: `poll` (and `flush`, and a commit)
    serves the delivery reports of what was produced since, offsets counting up."""

    def __init__(self, config):
        self.config = config
        self._reports = []
        self._offset = 0

    def produce(self, topic, value, key, partition, on_delivery, headers):
        self._reports.append((on_delivery, self._offset))
        self._offset += 1

    def poll(self, timeout=0):
        reports, self._reports = self._reports, []
        for report, offset in reports:
            report(None, type("Msg", (), {"offset": lambda self, o=offset: o})())

    def flush(self, timeout=None):
        self.poll()
        return 0

    def __len__(self):
        return len(self._reports)


class StartingProducer(ServingProducer):
    """A transactional producer whose init_transactions waits for `release` (a stand-in: the
    start's order and what waits for it are the subject here, not Kafka)."""

    release = None  # threading.Event, set by the test
    failure = None  # an exception init_transactions raises instead
    inits: list = []

    def init_transactions(self, timeout):
        StartingProducer.inits.append(self.config["transactional.id"])
        if StartingProducer.failure is not None:
            raise StartingProducer.failure
        assert StartingProducer.release.wait(10)

    def begin_transaction(self):
        pass

    def commit_transaction(self, timeout=None):
        self.poll()


@pytest.fixture
def starting(monkeypatch):
    import threading

    from clickstream.io import sink
    from clickstream.runtime.progress import IdleClock

    StartingProducer.release, StartingProducer.failure = threading.Event(), None
    StartingProducer.inits = []
    monkeypatch.setattr(sink, "Producer", StartingProducer)
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=1e9, flicker_s=0)
    monkeypatch.setattr(sink, "IDLE_CLOCK", clock)
    clock.report("input-0", caught_up=True)  # the input alone would let the clock run
    # Per-epoch commits: no Committer thread.
    settings = Settings.from_env({"CLICKSTREAM_COMMIT_INTERVAL_SECONDS": "0"})
    return RecordSink(settings, "out", 3), clock, t


def test_transactional_partitions_start_side_by_side_holding_the_idle_clock(starting):
    import time

    sink, clock, t = starting
    parts = [sink.build_part("out", f"{i:05d}", None) for i in range(3)]  # none waits
    deadline = time.monotonic() + 10
    while len(StartingProducer.inits) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(StartingProducer.inits) == [f"clickstream-out-{i}" for i in range(3)]
    t[0] = 5.0
    assert clock.now_ms() == 0  # three starts in flight: a slow start is not idle time
    StartingProducer.release.set()
    parts[0].write_batch([[Record("a", b"{}", "0", None)]])  # waits for its own start
    assert parts[0].snapshot() == SinkSnapshot(1)
    parts[1].snapshot()
    parts[2].close()
    now = clock.now_ms()
    t[0] = 6.0
    assert clock.now_ms() == now + 1000  # every start is done: the clock runs again


def test_a_failed_start_is_raised_by_the_partitions_next_call(starting):
    sink, clock, t = starting
    StartingProducer.failure = RuntimeError("no broker in this test")
    part = sink.build_part("out", "00000", None)
    with pytest.raises(RuntimeError, match="no broker in this test"):
        part.write_batch([[Record("a", b"{}", "0", None)]])
    t[0] = 2.0
    assert clock.now_ms() > 0  # and the clock is not held for ever by the failed start


def test_a_refusal_is_named_even_when_the_purges_it_caused_are_reported_first(monkeypatch):
    """A refused record fails its transaction and librdkafka purges the rest of the queue; the
    purges' reports can be served first (seen once in CI). The stop names the refusal."""
    from confluent_kafka import KafkaError

    from clickstream.io import sink

    refusal = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)

    class Refusing:
        def __init__(self, config):
            self.pending = [refusal]  # the refusal's report, still to be served

        def poll(self, timeout=0):
            while self.pending:
                part._on_delivery(self.pending.pop(), None)

        def __len__(self):
            return len(self.pending)

    stops = []
    monkeypatch.setattr(sink, "Producer", Refusing)
    monkeypatch.setattr(sink, "stop", lambda message: stops.append(message))
    settings = Settings.from_env({"CLICKSTREAM_DELIVERY": "at-least-once"})
    part = RecordSink(settings, "out", 1).build_part("out", "00000", None)
    for _ in range(2):
        part._on_delivery(KafkaError(KafkaError._PURGE_QUEUE), None)
    part._check_failures()
    assert len(stops) == 1 and "3 record(s) to out[0] were not delivered: " in stops[0]
    assert refusal.str() in stops[0] and "Purged" not in stops[0]


def test_acknowledged_records_are_counted_once_per_write_not_per_record(monkeypatch):
    """records_produced counts every acknowledged record, one counter increment per write
    (the reports of the write's records are served by its poll)."""
    from clickstream.io import sink
    from clickstream.runtime.metrics import METRICS

    monkeypatch.setattr(sink, "Producer", ServingProducer)
    settings = Settings.from_env({"CLICKSTREAM_DELIVERY": "at-least-once"})
    part = RecordSink(settings, "acked-out", 1).build_part("out", "00000", None)
    counter = METRICS.records_produced.labels("acked-out")
    increments = []
    real_inc = counter.inc
    monkeypatch.setattr(counter, "inc", lambda amount=1: (increments.append(amount),
                                                          real_inc(amount)))
    before = counter._value.get()
    letters = [Record(None, b"{}", f"0:{offset}", None) for offset in range(4)]
    part.write_batch([letters[:2], letters[2:3]])
    part.write_batch([letters[3:]])
    assert counter._value.get() - before == 4 and increments == [3, 1]
    part.close()  # nothing more acknowledged: no increment of 0
    assert counter._value.get() - before == 4 and increments == [3, 1]
