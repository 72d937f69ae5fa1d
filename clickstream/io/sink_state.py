"""The bookkeeping of one exactly-once sink partition, apart from the producer: pure, no Kafka.

Kafka may hold records that the recovery store does not know were emitted: they are committed
promptly (every CLICKSTREAM_COMMIT_INTERVAL_SECONDS, and at each epoch's end), while the
snapshot that records their windows as closed becomes durable only later. A run resumed from
that snapshot emits them again, at once or much later (a window closed on the idle clock closes
again only after W + L of caught-up time), and may itself be stopped before it does.

Invariant, for the snapshot of every epoch e (`SinkSnapshot`):
  every record of the partition at an offset >= `read_from` was written after this snapshot;
  every record before it was emitted by the stages in an epoch <= e, so a run resumed from e
  never emits it again, unless its identity is in `pending`: committed by an earlier run after
  the snapshot it resumed from, and not re-emitted by the resumed stages up to epoch e.
Hence a run resumed from e must not write again exactly `pending` plus the identities it reads
back from `read_from` on; each one leaves that set when the stages emit it again (from then on
their own snapshots say it was emitted). The set holds only what Kafka has beyond the durable
snapshot, and every entry leaves it when its window closes again; Bytewax snapshots the stages
and the sinks at the same epochs, so the two can never disagree about an entry.
"""

from dataclasses import dataclass
from typing import ClassVar, Collection, FrozenSet, List, Optional, Sequence, Tuple

from clickstream.core.records import Record, identity


@dataclass(frozen=True)
class SinkSnapshot:
    """What the recovery store keeps of one sink partition (see the invariant above).
    Version 1 was a bare offset from which a resume read back (conservatively early)."""

    VERSION: ClassVar[int] = 2
    read_from: Optional[int]
    pending: FrozenSet[str] = frozenset()
    version: int = VERSION

    @classmethod
    def load(cls, stored, origin: Optional[int] = None) -> Tuple["SinkSnapshot", bool]:
        """(snapshot, legacy) of what the store holds: None before the first snapshot (then the
        output's `origin`), a version 1 offset (legacy: what it reads back is suppressed in
        this run but not carried on, as version 1 did), or a SinkSnapshot."""
        if stored is None:
            return cls(origin), False
        if isinstance(stored, int) and not isinstance(stored, bool):
            return cls(stored), True
        if isinstance(stored, cls) and stored.version == cls.VERSION:
            return stored, False
        found = f"version {stored.version}" if isinstance(stored, cls) else type(stored).__name__
        raise ValueError(f"the recovery store holds sink state of a format this version of "
                         f"clickstream cannot read ({found}; it reads 1 and {cls.VERSION})")


class WriterState:
    """Offsets acknowledged since the last snapshot, and what the resumed run must not repeat."""

    __slots__ = ("_next", "_last_offset", "_pending", "_legacy")

    def __init__(self, resumed: SinkSnapshot, read_back: Collection[str] = (),
                 read_back_end: Optional[int] = None, legacy: bool = False):
        """`read_back`: identities found from `resumed.read_from` up to `read_back_end`."""
        ends = [o for o in (resumed.read_from, read_back_end) if o is not None]
        self._next: Optional[int] = max(ends) if ends else None
        self._last_offset = -1  # highest offset acknowledged in this run
        self._pending = set(resumed.pending)
        self._legacy: set = set()
        (self._legacy if legacy else self._pending).update(read_back)

    def acknowledged(self, offset: int) -> None:
        """Kafka acknowledged a record of this partition at `offset`."""
        if offset > self._last_offset:
            self._last_offset = offset

    def unwritten(self, records: Sequence[Record]) -> List[Record]:
        """`records` without those Kafka already holds; those leave the pending set."""
        pending, legacy = self._pending, self._legacy
        if not pending and not legacy:
            return records if isinstance(records, list) else list(records)
        out = []
        for record in records:
            ident = identity(record[0], record[2])
            if ident in pending:
                pending.discard(ident)
            elif ident in legacy:
                legacy.discard(ident)
            else:
                out.append(record)
        return out

    @property
    def pending(self) -> int:
        return len(self._pending) + len(self._legacy)

    def snapshot(self) -> SinkSnapshot:
        """The state at the end of an epoch; every record of the epoch must be acknowledged."""
        if self._last_offset >= 0 and (self._next is None or self._last_offset >= self._next):
            self._next = self._last_offset + 1
        return SinkSnapshot(self._next, frozenset(self._pending))
