"""Process-wide memory settings: the collector's thresholds and glibc's mmap threshold."""

import gc
import subprocess
import sys

from clickstream.runtime.memory import GC_THRESHOLDS, tune_gc

# Run in a fresh interpreter: the malloc state of this one depends on what ran before.
PROBE = """
import ctypes, sys
from clickstream.runtime.memory import tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
tuned = tune_malloc() if sys.argv[1] == "tuned" else None
big = bytes(8 << 20)  # mapped (above the default threshold of 128 KiB) ...
del big  # ... and freed: glibc raises its threshold to 8 MiB unless it was set
before = libc.mallinfo2().hblkhd
blob = bytes(1 << 20)  # a snapshot blob's size
print(tuned, libc.mallinfo2().hblkhd - before >= 1 << 20)
"""


def probe(mode: str) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          check=True).stdout.split()


def test_glibc_keeps_large_blocks_in_its_heap_once_one_was_freed_unless_tuned():
    assert probe("default") == ["None", "False"]  # the 1 MiB block came from the heap
    assert probe("tuned") == ["True", "True"]  # a mapping of its own, returned when freed


def test_the_collector_runs_rarely_and_skips_what_start_up_made():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
