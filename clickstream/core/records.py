"""The contract between the window stages and the sinks: tagged outputs carrying records.

A stage emits `(tag, (partition, [Record]))` per output partition and batch (and the user stage
`(PAGE_IN, (page shard, [Event]))`); the source emits `(DEAD_LETTERS, (partition, [Record]))`
for malformed messages beside its `(user shard, [Event])` batches. Records are grouped by the
Kafka partition they go to, picked with Kafka's default partitioner (`core.partitioner`).
"""

from typing import Final, Literal, NamedTuple, Optional, Tuple, Union

Tag = Literal["user", "page", "session", "page_in", "dead_letters"]
USER: Final = "user"  # user-metrics records
PAGE: Final = "page"  # page-metrics records
SESSION: Final = "session"  # user-sessions records
PAGE_IN: Final = "page_in"  # on-time events from the user stage to the page stage
DEAD_LETTERS: Final = "dead_letters"  # dead-letter records (source: malformed; stages: late)

Window = Tuple[int, int, list]  # start, end, state of a window or a session: rendered by the sink


class Record(NamedTuple):
    """One output record. `value` is a closed window (rendered to JSON by the sink, so a
    million records waiting for it cost their small state) or a dead letter's JSON bytes.
    `ident` with the key identifies the record across a restart (see `identity`): the window
    start for windows, `partition:offset` of the input message for dead letters. `closed_at`
    is when the window could close (wall clock s), None for dead letters."""

    key: Optional[str]
    value: Union[Window, bytes]
    ident: str
    closed_at: Optional[float]


def identity(key: Optional[str], ident: str) -> str:
    """A record's identity: unique per output topic over the service's whole history."""
    return f"{key or ''}\x00{ident}"


def dead_letter_ident(partition: int, offset: int) -> str:
    return f"{partition}:{offset}"
