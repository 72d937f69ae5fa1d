"""Dead-letter records: one per rejected input message, never a silent drop (SPEC, Dead-letter topic).

The record carries where the message came from (topic, partition, offset) and the original
bytes, as text when they are UTF-8 and base64 otherwise, so it can be inspected and replayed.
"""

import base64
from typing import Optional

from clickstream import codec

MALFORMED = "malformed"
LATE = "late"


def dead_letter(reason: str, error: str, topic: str, partition: int, offset: int,
                value: Optional[bytes]) -> bytes:
    """The DLQ record as JSON bytes; `error` is folded to one line."""
    record = {
        "reason": reason,
        "error": " ".join(error.split()),
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
