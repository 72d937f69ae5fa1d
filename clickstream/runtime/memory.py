"""Process-wide memory settings for a process that holds millions of small window states."""

import ctypes
import gc

# Python's defaults are (700, 10, 10). The first counts tracked objects allocated minus those
# freed since the last collection, so it is reached as state grows, and a young collection
# walks every young object still alive (about 1 us each), a batch's tens of thousands among
# them. 1M-event backfill with sessions (the bench's, gc.callbacks): 20 young collections of
# 30 to 120 ms at 100,000 (1.9 s); 2 at 400,000 (0.6 s), but of 300 ms each, more than the
# live p99 goal (250 ms), so not kept. Before sessions: 92 and 2.6 s at 50,000.
GC_THRESHOLDS = (100_000, 50, 100)

# glibc's mallopt parameter, and the size from which a malloc gets a mapping of its own.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024


def tune_gc() -> None:
    """Make the cyclic garbage collector rare: window state is millions of small lists and sets
    that live for seconds, and with the default thresholds the collector walked them over and
    over, about half of the per-event time of a backfill. Our state holds no reference cycles
    (it is freed by reference counting), so little is left for the collector to find.
    Objects from start-up are moved out of its sight for good (gc.freeze)."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


def tune_malloc() -> bool:
    """Keep large blocks out of glibc's heap; False where the C library is not glibc.

    A malloc of at least the mmap threshold gets a mapping of its own, returned to the system
    when freed. But glibc raises the threshold to the size of each such block freed (up to
    32 MiB), so after the first snapshots every pickled group and Bytewax's pickle of every
    shard came from the heap, and each snapshot's few hundred MB of transient blocks left
    that much free space behind in it, which glibc keeps (the soak: 1.3 MiB mapped, up to
    400 MB free in the heap). Setting the threshold turns the raising off."""
    try:
        # The process's own symbols: libc is loaded already, and find_library("c") would
        # spawn ldconfig (5 ms per process).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
