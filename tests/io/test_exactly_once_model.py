"""The exactly-once protocol as a model, without Kafka or Bytewax, driven by Hypothesis.

What is modelled: an input log read from an offset; a window stage whose windows close on the
watermark and (at any moment Hypothesis picks) on the idle clock; a sink that writes through
the real `WriterState` into a Kafka partition of committed records, committing mid-epoch at
any moment; epochs whose snapshots (input offset, stage, sink) become durable only later;
crashes at every step boundary that lose the process, its open transaction and the snapshots
not yet durable; resumes from the latest durable snapshot or an older one (a backup), with the
sink reading the partition back from its snapshot's offset.

The property: after any schedule, finished by a bounded run, the partition holds every window
and every dead letter of a crash-free run exactly once, with the same contents. Idle closes
here come only after a key's last event (users who left), as in the restart storm test: an
event arriving after its key's window was closed on the idle clock is an exposure the README
names (Guarantees), not modelled.
"""

import copy
from typing import Dict, List, Tuple

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from clickstream.core.records import Record, identity
from clickstream.io.sink_state import SinkSnapshot, WriterState

LATENESS = 1  # event times are window numbers; a window closes once the key's newest time is past it + L


class Stage:
    """Per-key windows {window: events}, watermark closes, idle closes, late events."""

    def __init__(self):
        self.windows: Dict[str, Dict[int, int]] = {}
        self.closed_below: Dict[str, int] = {}  # windows below this are closed for the key

    def add(self, offset: int, key: str, ts: int, out: List[Record]) -> None:
        if ts < self.closed_below.get(key, -1):
            out.append(Record(None, ("late", offset), f"dlq:{offset}", None))
            return
        windows = self.windows.setdefault(key, {})
        windows[ts] = windows.get(ts, 0) + 1
        self._close(key, ts - LATENESS, out)

    def _close(self, key: str, below: int, out: List[Record]) -> None:
        if below <= self.closed_below.get(key, -1):
            return
        self.closed_below[key] = below
        windows = self.windows.get(key, {})
        for start in sorted(w for w in windows if w < below):
            out.append(Record(key, ("window", windows.pop(start)), str(start), 1.0))

    def close_key(self, key: str, out: List[Record]) -> None:
        """Idle clock or end of input: every open window of the key."""
        windows = self.windows.get(key, {})
        if windows:
            self._close(key, max(windows) + 1, out)


def oracle(log: List[Tuple[str, int]]) -> Dict[str, object]:
    """A crash-free run: {identity: content}."""
    stage, out = Stage(), []
    for offset, (key, ts) in enumerate(log):
        stage.add(offset, key, ts, out)
    for key in list(stage.windows):
        stage.close_key(key, out)
    return {identity(r.key, r.ident): r.value for r in out}


class Process:
    """One run: its input position, stage and sink state, and the open transaction."""

    def __init__(self, position: int, stage: Stage, sink: WriterState):
        self.position = position
        self.stage = stage
        self.sink = sink
        self.transaction: List[Record] = []


class ExactlyOnce(RuleBasedStateMachine):
    @initialize(log=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 6)),
                             min_size=1, max_size=30))
    def start(self, log):
        self.log = log
        self.kafka: List[Tuple[str, object]] = []  # committed records: (identity, content)
        self.durable: List[tuple] = [(0, Stage(), SinkSnapshot(0))]  # snapshots, oldest first
        self.unpersisted: List[tuple] = []
        self.run = self._resume(self.durable[-1])

    def _resume(self, snapshot) -> Process:
        position, stage, sink = snapshot
        read_back = {ident for ident, _ in self.kafka[sink.read_from:]}
        return Process(position, copy.deepcopy(stage), WriterState(sink, read_back, len(self.kafka)))

    def _write(self, records: List[Record]) -> None:
        self.run.transaction += self.run.sink.unwritten(records)

    @rule(n=st.integers(1, 4))
    def read(self, n):
        out: List[Record] = []
        for _ in range(n):
            if self.run.position < len(self.log):
                key, ts = self.log[self.run.position]
                self.run.stage.add(self.run.position, key, ts, out)
                self.run.position += 1
        self._write(out)

    @rule(data=st.data())
    def idle_close(self, data):
        """A key whose events are all read and that has open windows closes on the idle clock."""
        left = {key for key, _ in self.log[self.run.position:]}
        quiet = sorted(k for k, w in self.run.stage.windows.items() if w and k not in left)
        if quiet:
            out: List[Record] = []
            self.run.stage.close_key(data.draw(st.sampled_from(quiet)), out)
            self._write(out)

    @rule()
    def commit(self):
        """A commit while records flow (the Committer), or the one at an epoch's end."""
        for record in self.run.transaction:
            self.run.sink.acknowledged(len(self.kafka))
            self.kafka.append((identity(record.key, record.ident), record.value))
        self.run.transaction = []

    @rule()
    def end_epoch(self):
        self.commit()
        self.unpersisted.append((self.run.position, copy.deepcopy(self.run.stage),
                                 self.run.sink.snapshot()))

    @precondition(lambda self: self.unpersisted)
    @rule()
    def persist(self):
        self.durable += self.unpersisted
        self.unpersisted = []

    @rule(back=st.integers(0, 3))
    def crash_and_resume(self, back):
        """SIGKILL: the open transaction is aborted and unpersisted snapshots are lost; the
        restart resumes from the latest durable snapshot, or `back` older (a restored backup)."""
        self.unpersisted = []
        snapshot = self.durable[max(len(self.durable) - 1 - back, 0)]
        self.durable = self.durable[:self.durable.index(snapshot) + 1]
        self.run = self._resume(snapshot)

    @invariant()
    def nothing_twice(self):
        idents = [ident for ident, _ in self.kafka]
        assert len(idents) == len(set(idents)), f"written twice: {idents}"

    def teardown(self):
        if not hasattr(self, "log"):
            return
        # The bounded run that finishes the job: read all, close all, commit, persist.
        self.read(len(self.log))
        out: List[Record] = []
        for key in sorted(self.run.stage.windows):
            self.run.stage.close_key(key, out)
        self._write(out)
        self.end_epoch()
        self.persist()
        self.nothing_twice()
        assert dict(self.kafka) == oracle(self.log)


ExactlyOnce.TestCase.settings = settings(
    max_examples=3000, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_exactly_once_protocol = ExactlyOnce.TestCase
