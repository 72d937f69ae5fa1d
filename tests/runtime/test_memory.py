"""Process memory settings: the garbage collector's thresholds, glibc's malloc options and the
heap trimmer, with a fake C library where glibc is not the point (and on glibc when it is)."""

import ctypes
import gc
import time

import pytest

from clickstream.runtime import memory
from clickstream.runtime.memory import (GC_THRESHOLDS, M_ARENA_MAX, M_MMAP_THRESHOLD, MALLOPTS,
                                        Trimmer, glibc, tune_malloc, tune_memory)


class FakeLibc:
    """mallopt and malloc_trim that record their calls; `refuse` holds parameters to refuse."""

    def __init__(self, refuse=()):
        self.refuse = set(refuse)
        self.mallopts = []
        self.trims = []

    @staticmethod
    def gnu_get_libc_version():
        return b"2.36"

    def mallopt(self, parameter, value):
        self.mallopts.append((parameter.value, value.value))
        return 0 if parameter.value in self.refuse else 1

    def malloc_trim(self, pad):
        self.trims.append(pad.value)
        return 1


class NotGlibc:
    """A C library with malloc but none of glibc's extras (musl, macOS)."""

    malloc = free = object()


@pytest.fixture(autouse=True)
def restore_gc_and_trimmer(monkeypatch):
    thresholds = gc.get_threshold()
    monkeypatch.setattr(memory, "_trimmer", None)
    yield
    if memory._trimmer is not None:
        memory._trimmer.stop()
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def _cdll_raising(exc):
    def cdll(name):
        raise exc
    return cdll


@pytest.mark.parametrize("name, cdll, found", [
    ("no C library to load (Windows)", _cdll_raising(TypeError("None")), False),
    ("loading fails", _cdll_raising(OSError("no such file")), False),
    ("musl or macOS: no mallopt, malloc_trim", lambda name: NotGlibc(), False),
    ("glibc", lambda name: FakeLibc(), True),
])
def test_glibc_is_found_only_where_it_is(monkeypatch, name, cdll, found):
    monkeypatch.setattr(memory.ctypes, "CDLL", cdll)
    assert (glibc() is not None) is found


@pytest.mark.parametrize("name, refuse, applied", [
    ("every option taken", (), True),
    ("a refused option is reported, the others still applied", (M_ARENA_MAX,), False),
])
def test_tune_malloc_applies_every_option(name, refuse, applied):
    libc = FakeLibc(refuse)
    assert tune_malloc(libc) is applied
    assert libc.mallopts == list(MALLOPTS)
    assert (M_MMAP_THRESHOLD, 128 * 1024) in libc.mallopts


@pytest.mark.parametrize("name, libc, trim_interval, trims", [
    ("glibc: options and a trimmer", FakeLibc(), 0.01, True),
    ("glibc, trimming off", FakeLibc(), 0, False),
    ("no glibc: only the collector", None, 0.01, False),
])
def test_tune_memory(monkeypatch, name, libc, trim_interval, trims):
    monkeypatch.setattr(memory, "glibc", lambda: libc)
    trimmer = tune_memory(trim_interval=trim_interval)
    assert gc.get_threshold() == GC_THRESHOLDS and gc.get_freeze_count() > 0
    assert (trimmer is not None) is trims
    if libc is not None:
        assert libc.mallopts == list(MALLOPTS)
    if trims:
        deadline = time.monotonic() + 5
        while len(libc.trims) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert libc.trims[:2] == [0, 0] and trimmer.daemon
        assert tune_memory(trim_interval=trim_interval) is trimmer  # one thread, however often


def test_trimmer_stops():
    libc = FakeLibc()
    trimmer = Trimmer(libc, 0.01)
    trimmer.start()
    trimmer.stop()
    assert not trimmer.is_alive()
    count = len(libc.trims)
    time.sleep(0.05)
    assert len(libc.trims) == count == trimmer.trims


@pytest.mark.skipif(glibc() is None, reason="not glibc")
def test_on_glibc_the_options_and_trim_are_taken():
    libc = glibc()
    assert tune_malloc(libc)
    assert libc.malloc_trim(ctypes.c_size_t(0)) in (0, 1)
