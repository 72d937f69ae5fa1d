"""Process-wide memory settings for a process that holds millions of small window states."""

import ctypes
import gc
import threading
from typing import Optional, Tuple

# Python's defaults are (700, 10, 10). A batch of 5,000 events keeps tens of thousands of
# objects alive for a moment; a first threshold above that makes young collections rare
# (1M-event backfill: 92 collections and 2.6 s at 50,000, 7 and 0.6 s at 100,000).
GC_THRESHOLDS = (100_000, 50, 100)

# glibc's mallopt() parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

MALLOPTS: Tuple[Tuple[int, int], ...] = (
    # A fixed threshold also turns off glibc's moving one, which each freed snapshot pickle
    # raised to its size; blocks up to that size then came from the heap, between long-lived
    # ones, and the holes they left were never given back (the soak's stream: +160 MB of
    # free heap over 5M events; 60 MB with this).
    (M_MMAP_THRESHOLD, 128 * 1024),
    # Bytewax's worker, librdkafka's and the metrics server's threads each got an arena of
    # their own (up to 8 per core), and what one frees is of no use to another.
    (M_ARENA_MAX, 2),
)
# glibc gives back only the top of a heap by itself; malloc_trim also returns the free pages
# inside it, which the state's churn (keys arriving and expiring) leaves everywhere.
TRIM_INTERVAL_S = 10.0

_trimmer: Optional["Trimmer"] = None


def tune_gc() -> None:
    """Make the cyclic garbage collector rare: window state is millions of small lists and sets
    that live for seconds, and with the default thresholds the collector walked them over and
    over, about half of the per-event time of a backfill. Our state holds no reference cycles
    (it is freed by reference counting), so little is left for the collector to find.
    Objects from start-up are moved out of its sight for good (gc.freeze)."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()


def glibc():
    """The process's C library when it is glibc (mallopt and malloc_trim), else None: musl,
    macOS and Windows have neither, and there these settings are simply left out."""
    try:
        libc = ctypes.CDLL(None)  # the symbols the process already has: its own C library
        for name in ("gnu_get_libc_version", "mallopt", "malloc_trim"):
            getattr(libc, name)
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def tune_malloc(libc=None) -> bool:
    """Apply MALLOPTS; False when the C library is not glibc or refused one of them."""
    libc = libc if libc is not None else glibc()
    if libc is None:
        return False
    applied = True
    for parameter, value in MALLOPTS:
        applied = bool(libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value))) and applied
    return applied


class Trimmer(threading.Thread):
    """Calls malloc_trim(0) every `interval` seconds until stopped. The call runs without the
    GIL (ctypes releases it) and took 1-5 ms in a process of the soak's state."""

    def __init__(self, libc, interval: float = TRIM_INTERVAL_S):
        super().__init__(name="malloc-trim", daemon=True)
        self._trim = libc.malloc_trim
        self._interval = interval
        self._halt = threading.Event()
        self.trims = 0

    def run(self) -> None:
        while not self._halt.wait(self._interval):
            self._trim(ctypes.c_size_t(0))
            self.trims += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def tune_memory(libc=None, trim_interval: float = TRIM_INTERVAL_S) -> Optional[Trimmer]:
    """Everything the dataflow process needs, once at its start: tune_gc(), tune_malloc()
    and a daemon thread trimming the heap (returned; None without glibc or when
    `trim_interval` <= 0). A second call starts no second thread."""
    global _trimmer
    tune_gc()
    libc = libc if libc is not None else glibc()
    if libc is None:
        return None
    tune_malloc(libc)
    if trim_interval > 0 and (_trimmer is None or not _trimmer.is_alive()):
        _trimmer = Trimmer(libc, trim_interval)
        _trimmer.start()
    return _trimmer if trim_interval > 0 else None
