"""Batches of events and records that cross between processes cheaply.

Why: between processes Bytewax pickles each item for another process's worker twice (timely
asks bincode for the size first, which runs the whole serializer, then writes it), and a list
of NamedTuples pickles every element through a Python `__getnewargs__` and loads it through
the class's Python `__new__`. At 2 processes that was 21 to 24 % of each process's CPU.

A `Batch` is a list that pickles its elements once, as plain tuples, keeps those bytes for the
second call, and is rebuilt in the receiving process with `tuple.__new__` (no Python call per
element). Within a process nothing is pickled and a Batch is simply a list. Every list of
events or records a step hands on is one: the source's, the window stages' and their dead
letters'.

Rules: every element of a batch has one class, a tuple subclass (else it pickles as a plain list
would); a batch is not changed once emitted (the kept bytes are its contents when first pickled;
a change of length is noticed, an element replaced in place would not be).
"""

import pickle
from functools import partial
from typing import Any, Optional, Tuple


class Batch(list):
    """A list of NamedTuples of one class, as the stages hand them on (see the module)."""

    __slots__ = ("_packed",)  # (length when packed, pickled (class, rows))

    def __reduce__(self):
        packed: Optional[Tuple[int, bytes]] = getattr(self, "_packed", None)
        if packed is None or packed[0] != len(self):
            packed = self._packed = (len(self), _pack(self))
        return _unpack, (packed[1],)


def _pack(items: list) -> bytes:
    cls: Any = items[0].__class__ if items else tuple
    if issubclass(cls, tuple) and all(item.__class__ is cls for item in items):
        return pickle.dumps((cls, list(map(tuple, items))), pickle.HIGHEST_PROTOCOL)
    return pickle.dumps((None, list(items)), pickle.HIGHEST_PROTOCOL)


def _unpack(packed: bytes) -> Batch:
    cls, rows = pickle.loads(packed)
    if cls is None or cls is tuple:
        return Batch(rows)
    return Batch(map(partial(tuple.__new__, cls), rows))
