"""Our dataflow, unchanged, with its input timed: `python -m bytewax.run bench.timed_ours:flow`.

Only `ClickPartition.next_batch` is wrapped, to count what each batch consumed (events and
malformed messages) with one clock read per batch.
"""

from clickstream.core.records import DEAD_LETTERS
from clickstream.io import source

from bench.timing import Timing

TIMING = Timing()
_next_batch = source.ClickPartition.next_batch


def _timed_next_batch(self):
    items = _next_batch(self)
    if items:
        TIMING.seen(sum(len(v[1]) if k == DEAD_LETTERS else len(v) for k, v in items))
    return items


source.ClickPartition.next_batch = _timed_next_batch


def __getattr__(name):
    if name == "flow":
        import dataflows.clickstream
        return dataflows.clickstream.flow
    raise AttributeError(name)
