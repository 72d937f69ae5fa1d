"""The bookkeeping of one exactly-once sink partition, apart from the producer: pure, no Kafka.

Its snapshot is the offset the output partition is read back from when a run resumes from
that snapshot; the identities found there are the records not to write again.

Invariant: the offset a snapshot returns is at or before every record that a resume from it
can emit again. Bytewax writes items as they come, so the transaction a snapshot commits may
already hold records of the next epoch or two (a worker running ahead): the state is where
writing began SKEW_EPOCHS snapshots ago, not the current end. Reading back a few epochs more
than strictly needed costs a little time; their identities are harmless.
"""

from collections import deque
from typing import Collection, Deque, List, Optional, Sequence

from clickstream.core.records import Record, identity

SKEW_EPOCHS = 3


class WriterState:
    """Offsets acknowledged since the last snapshot, and what the resumed run must not repeat."""

    __slots__ = ("_last_offset", "_first_since_snapshot", "_marks", "_already_written")

    def __init__(self, resume_offset: Optional[int], already_written: Collection[str] = ()):
        self._last_offset = -1  # highest offset acknowledged so far
        self._first_since_snapshot: Optional[int] = None  # lowest offset acknowledged since
        # Where the records written after each of the last SKEW_EPOCHS snapshots begin.
        self._marks: Deque[Optional[int]] = deque([resume_offset], maxlen=SKEW_EPOCHS)
        # Identities (see core.records.identity) Kafka held past the resume offset.
        self._already_written = set(already_written)

    def acknowledged(self, offset: int) -> None:
        """Kafka acknowledged a record of this partition at `offset`."""
        if offset > self._last_offset:
            self._last_offset = offset
        if self._first_since_snapshot is None or offset < self._first_since_snapshot:
            self._first_since_snapshot = offset

    def unwritten(self, records: Sequence[Record]) -> List[Record]:
        """`records` without those Kafka already holds (re-emitted after a resume)."""
        written = self._already_written
        if not written:
            return records if isinstance(records, list) else list(records)
        return [r for r in records if identity(r[0], r[2]) not in written]

    def snapshot(self) -> Optional[int]:
        """The snapshot state (see the invariant above); None only if nothing was ever known."""
        if self._first_since_snapshot is not None:
            mark = self._first_since_snapshot
        elif self._last_offset >= 0:
            mark = self._last_offset + 1
        else:
            mark = self._marks[-1]
        self._first_since_snapshot = None
        self._marks.append(mark)
        return self._marks[0]
