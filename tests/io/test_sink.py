"""The exactly-once sink's pieces that need no broker: partition routing and its bookkeeping
(`WriterState`), table-driven and as a Hypothesis property."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.core.records import Record, identity
from clickstream.io.sink import RecordSink
from clickstream.io.sink_state import SKEW_EPOCHS, WriterState
from clickstream.runtime.settings import Settings


def test_sink_partition_is_the_one_the_window_stage_picked():
    sink = RecordSink(Settings.from_env({}), "t", 50)
    assert sink.list_parts() == [f"{i:05d}" for i in range(50)]
    assert sink.part_fn("16") == 16


# (resume offset, acknowledged offsets per epoch) -> snapshot after each epoch
SNAPSHOT_CASES = [
    ("fresh store, nothing written", None, [[], []], [None, None]),
    ("resumed, nothing written: the resume offset stays", 7, [[], [], [], []], [7, 7, 7, 7]),
    ("reaches back SKEW_EPOCHS snapshots", 0, [[0, 1], [2], [3, 4], [5], [6]], [0, 0, 0, 2, 3]),
    ("an epoch without writes marks the end so far", 0, [[0, 1], [], [], []], [0, 0, 0, 2]),
    ("acknowledgements out of order: the lowest counts", 10, [[12, 10, 11], [14, 13]],
     [10, 10]),
]


@pytest.mark.parametrize("name, resume, epochs, snapshots", SNAPSHOT_CASES,
                         ids=[c[0] for c in SNAPSHOT_CASES])
def test_snapshot_offsets(name, resume, epochs, snapshots):
    state = WriterState(resume)
    got = []
    for offsets in epochs:
        for offset in offsets:
            state.acknowledged(offset)
        got.append(state.snapshot())
    assert got == snapshots


def test_records_kafka_already_holds_are_not_written_again():
    window = (0, 5000, [1])
    records = [Record("u1", window, "0", 1.0), Record("u2", window, "0", 1.0),
               Record(None, b"{}", "0:5", None), Record(None, b"{}", "0:6", None)]
    state = WriterState(0, {identity("u1", "0"), identity(None, "0:6")})
    assert state.unwritten(records) == [records[1], records[2]]
    assert WriterState(0).unwritten(records) == records


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(0, 2), max_size=5), min_size=1, max_size=12),
       st.integers(0, SKEW_EPOCHS - 1))
def test_a_snapshot_is_at_or_before_every_record_of_the_epochs_it_may_replay(epochs, skew):
    """Records of epoch e may be written (and acknowledged) up to `skew` < SKEW_EPOCHS epochs
    before snapshot e is taken, by a worker running ahead; a resume from snapshot e replays
    from epoch e + 1 on. The snapshot offset must not be past any record of those epochs."""
    offsets, next_offset = [], 0
    for writes in epochs:  # offsets written in each epoch, in order
        offsets.append(list(range(next_offset, next_offset + len(writes))))
        next_offset += len(writes)
    state = WriterState(0)
    snapshots = []
    for e in range(len(epochs)):
        # before snapshot e: everything of epochs up to e + skew has been acknowledged
        for ahead in range(e, min(e + skew, len(epochs) - 1) + 1):
            for offset in offsets[ahead]:
                state.acknowledged(offset)
            offsets[ahead] = []
        snapshots.append(state.snapshot())
    starts = [[o for o in range(sum(map(len, epochs[:e])), sum(map(len, epochs[:e + 1])))]
              for e in range(len(epochs))]
    for e, snapshot in enumerate(snapshots):
        replayed = [o for later in starts[e + 1:] for o in later]
        assert snapshot is not None
        assert all(snapshot <= o for o in replayed)
