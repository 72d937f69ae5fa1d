"""Dead-letter records: one per rejected input message, never a silent drop (SPEC, Dead-letter topic).

The record carries where the message came from (topic, partition, offset) and the original
bytes, as text when they are UTF-8 and base64 otherwise, so it can be inspected and replayed.
"""

import base64
from typing import Optional

from clickstream.core import codec

MALFORMED = "malformed"
LATE = "late"
# A rejected message can be up to the broker's limit; its dead letter must still fit under it.
MAX_VALUE_BYTES = 256 * 1024


def dead_letter(reason: str, error: str, topic: str, partition: int, offset: int,
                value: Optional[bytes]) -> bytes:
    """The DLQ record as JSON bytes; `error` is folded to one line. A value over
    MAX_VALUE_BYTES is cut, and the error says so: the whole message stays at its offset."""
    error = " ".join(error.split())
    if value is not None and len(value) > MAX_VALUE_BYTES:
        error += (f" (value cut to its first {MAX_VALUE_BYTES} of {len(value)} bytes; "
                  "the whole message stays at its offset)")
        try:
            value.decode("utf-8")
            # keep it text: drop a character the cut split in two
            value = value[:MAX_VALUE_BYTES].decode("utf-8", "ignore").encode("utf-8")
        except UnicodeDecodeError:
            value = value[:MAX_VALUE_BYTES]
    record = {
        "reason": reason,
        "error": error,
        "topic": topic,
        "partition": partition,
        "offset": offset,
    }
    if value is None:
        record["value"] = None
    else:
        try:
            record["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            record["value_b64"] = base64.b64encode(value).decode("ascii")
    return codec.dumps(record)
