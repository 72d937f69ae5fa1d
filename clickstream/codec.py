"""The one place JSON is read and written, so the library behind it can change in one line.

orjson is strict where it matters for us: it rejects invalid UTF-8, lone surrogates,
NaN/Infinity and nesting deeper than 1024 levels instead of recursing until the
interpreter gives up.
"""

import orjson

JSONDecodeError = orjson.JSONDecodeError


def loads(data):
    """Parse JSON bytes (or str); raises JSONDecodeError (a ValueError) on bad input."""
    return orjson.loads(data)


def dumps(obj) -> bytes:
    """Serialise to compact UTF-8 JSON bytes."""
    return orjson.dumps(obj)
