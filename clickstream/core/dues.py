"""Heaps of (due, key) entries where a key's newer entry supersedes its older ones.

A superseded entry is normally dropped when it comes due and is popped. While a backlog is
replayed the idle clock stands still, so nothing comes due, and every reschedule (and every
key forgotten meanwhile) leaves one behind: unbounded over a long replay. So once the
entries outnumber the live keys by a quarter (`bound`), only each key's current entry is kept.

Why a quarter: the dead entries are a sawtooth on top of the state, and its peaks are what a
process's memory must have room for. At twice the keys the soak's windows and sessions heaps
carried up to a million dead entries each (about 100 bytes apiece); a rebuild every quarter
of the keys' pushes costs a few list copies per push.
"""

import heapq
from typing import Callable, List, Tuple

SLACK = 1024  # below this many extra entries a rebuild would cost more than it frees


def bound(live: int) -> int:
    """The most entries a heap of `live` keys keeps before `compact` rebuilds it."""
    return live + (live >> 2) + SLACK


def compact(heap: List[Tuple[int, str]], live: int,
            is_current: Callable[[int, str], bool]) -> None:
    """Keep only current entries in `heap` (in place) once it holds more than `bound(live)`."""
    if len(heap) > bound(live):
        heap[:] = [(due, key) for due, key in heap if is_current(due, key)]
        heapq.heapify(heap)
