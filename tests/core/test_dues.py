import heapq

import pytest

from clickstream.core.dues import SLACK, bound, compact


@pytest.mark.parametrize("live,extra,kept", [
    (10, bound(10) - 10, bound(10)),  # at the bound: left alone
    (10, bound(10) - 9, 10),  # one past it: only the current entries stay
    (0, SLACK + 1, 0),  # every key forgotten
    (40_000, 10_000 + SLACK + 1, 40_000),  # a quarter of the keys and the slack, and one
])
def test_superseded_entries_go_once_they_outnumber_the_live_keys(live, extra, kept):
    current = {f"k{i}": 1_000 + i for i in range(live)}
    heap = [(due, key) for key, due in current.items()]
    heap += [(i, f"k{i % 7}") for i in range(extra)]  # older dues of the same and gone keys
    heapq.heapify(heap)
    before = heap
    compact(heap, live, lambda due, key: current.get(key) == due)
    assert heap is before and len(heap) == kept
    if kept == live:
        popped = [heapq.heappop(heap) for _ in range(live)]  # still a heap
        assert popped == sorted((due, key) for key, due in current.items())
