"""Batches cross between processes as Bytewax's exchange does it: pickled twice with the default
protocol, loaded once; they come back equal, of the same classes, and are packed only once."""

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clickstream.core import batches
from clickstream.core.batches import Batch
from clickstream.core.events import Event, make_event
from clickstream.core.records import Record

EVENTS = [make_event("u1", "page_view", "/a", 1_000, "s1", 2, 7, b'{"x": 1}'),
          make_event("u2", "purchase", "/b?q=1", 2_000)]
RECORDS = [Record("u1", (0, 5_000, [3, 1, {"/a", "/b"}, None]), "0", 12.5),
           Record(None, b'{"error": "late"}', "2:7", None)]


def exchange(item):
    """What timely does with an item for another process: size it, write it, read it."""
    pickle.dumps(item)
    return pickle.loads(pickle.dumps(item))


@pytest.mark.parametrize("items", [
    EVENTS,
    RECORDS,
    [],
    [(1, "a"), (2, "b")],  # plain tuples
    [EVENTS[0], (1, "a")],  # mixed classes: pickled as a plain list would be
    [["a"], {"b"}],  # not tuples at all
], ids=["events", "records", "empty", "plain-tuples", "mixed", "not-tuples"])
def test_a_batch_comes_back_equal_with_its_classes(items):
    key, back = exchange(("u07", Batch(items)))
    assert key == "u07"
    assert back.__class__ is Batch
    assert back == items
    assert [item.__class__ for item in back] == [item.__class__ for item in items]


def test_a_batch_is_packed_once_for_both_pickles(monkeypatch):
    calls = []
    pack = batches._pack
    monkeypatch.setattr(batches, "_pack", lambda items: calls.append(len(items)) or pack(items))
    batch = Batch(EVENTS)
    assert exchange(batch) == EVENTS
    assert calls == [2]


def test_a_batch_grown_after_it_was_pickled_is_packed_again():
    batch = Batch(EVENTS[:1])
    pickle.dumps(batch)
    batch.append(EVENTS[1])
    assert pickle.loads(pickle.dumps(batch)) == EVENTS


def test_within_a_process_a_batch_is_a_list():
    batch = Batch((EVENTS[0],))
    batch.append(EVENTS[1])
    assert isinstance(batch, list) and batch == EVENTS and list(batch) == EVENTS


texts = st.text(max_size=12)
events = st.builds(Event, texts, texts, texts, st.integers(-2**63, 2**63), texts,
                   st.integers(0, 2**31), st.integers(0, 2**62), st.binary(max_size=40),
                   st.integers(0, 3))


@given(st.lists(events, max_size=30))
def test_any_events_cross_unchanged(items):
    back = exchange(Batch(items))
    assert back == items and all(item.__class__ is Event for item in back)
