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
    """Serialise to compact UTF-8 JSON bytes.

    orjson writes into a buffer of several KiB and shrinks it in place, so each small result
    kept alive pins that much memory (a window record of 260 bytes held 4 KiB: 4 GiB of RSS
    for a million records waiting for the sink). A small result is copied out instead."""
    out = orjson.dumps(obj)
    return bytes(memoryview(out)) if len(out) < _COPY_BELOW else out


_COPY_BELOW = 4096
