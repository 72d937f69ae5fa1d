"""A lookup table that forgets everything at once when full: a cheap bound for hot caches."""

from typing import Any, Callable


class Memo(dict):
    """`memo[key]` is `compute(key)`, remembered; at `limit` entries all are forgotten.

    Lookups of a remembered key cost what a dict's cost (no Python code runs); keys that
    repeat (urls, users, seconds) are computed once per `limit` distinct ones."""

    __slots__ = ("_compute", "_limit")

    def __init__(self, compute: Callable[[Any], Any], limit: int):
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, key):
        if len(self) >= self._limit:
            self.clear()
        value = self[key] = self._compute(key)
        return value
