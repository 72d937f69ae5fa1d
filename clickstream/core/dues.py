"""Heaps of (due, key) entries where a key's newer entry supersedes its older ones.

A superseded entry is normally dropped when it comes due and is popped. While a backlog is
replayed the idle clock stands still, so nothing comes due, and every reschedule (and every
key forgotten meanwhile) leaves one behind: unbounded over a long replay. So once the
entries outnumber the live keys twice over, only each key's current entry is kept.
"""

import heapq
from typing import Callable, List, Tuple

SLACK = 1024  # below this many extra entries a rebuild would cost more than it frees


def compact(heap: List[Tuple[int, str]], live: int,
            is_current: Callable[[int, str], bool]) -> None:
    """Keep only current entries in `heap` (in place) once it holds more than 2 x `live` + SLACK."""
    if len(heap) > 2 * live + SLACK:
        heap[:] = [(due, key) for due, key in heap if is_current(due, key)]
        heapq.heapify(heap)
