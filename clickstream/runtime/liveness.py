"""Whether every process of a cluster reads its input live, told by what each one commits.

A process's windows also hold events that other processes read, so its idle clock may run only
while every process has caught up (`io.watchers.ClusterProgress`). The only thing processes
share outside the dataflow is the consumer group: each source commits its partition's
processed offset there at every snapshot, for lag tools. Those offsets are one snapshot old,
so under continuous traffic they are always behind the end offsets, and comparing the two
(the first rule) kept every clock of a cluster stopped while records flowed: a quiet user's
windows waited for the user's next event (2 processes at 10,000 events/s: p99 99 s).

So each commit also says, in its metadata, how its partition stood when it was made (`Mark`):
`cs1 <token> <interval_ms> <live>`. The token differs at every commit; the interval is the time
since that source's previous commit (its snapshot interval, measured: the flow never learns
`-s`); live is 1 when the partition did not stop its own process's idle clock
(`IdleClock.backlog`: not behind for longer than a flicker). A source's first commit has no
previous one: its interval would run from the source's start, which can be far longer than a
snapshot interval (a sink's read-back, a big restore), and the bound below would not hold, so
its mark is never live; a cluster's clocks start at the second.

The rule (`CommitWatch.caught_up`), for each partition:
- its committed offset has reached its end offset: caught up, whatever the metadata (an input
  that pauses; commits of a version without marks);
- otherwise only when its newest mark is live and fresh: first seen by this watcher at most
  1.25 intervals + `SLACK_S` ago. A mark already there when the watcher started has no known
  age (it may come from a process that has since died and now replays its backlog): not fresh.

Invariant: a partition counts as caught up only if it was read live at a commit that this
watcher first saw at most 1.25 intervals + SLACK_S ago. The watcher looks every 0.5 s, so it
sees a commit, and later its staleness, each at most one look late: the clock can run into
another process's fresh backlog for at most 1.25 intervals + SLACK_S + 1 s (3.75 s with
`-s 1`, 8.75 s with `-s 5`), and a process that stops committing (stalled, or gone) stops
every clock within that time. A window closes on idle time no sooner than the allowed
lateness L after its key's newest event, so while L is above that bound (the default 10 s is,
with `-s 5`) no window closes on time counted into another process's backlog. With L below
it, an event held up that long can come late, as with Flink's source idleness: the
dead-letter topic gets it, and no window already emitted changes. Steady traffic keeps the
marks fresh: the next commit is seen one interval after the last one, give or take a look and
the snapshot's jitter (a quarter of an interval + 1 s is allowed for both).
"""

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

PREFIX = "cs1"
FRESH_INTERVALS = 1.25
SLACK_S = 1.5  # a look's delay, the commit's own, a snapshot that starts late


@dataclass(frozen=True)
class Mark:
    """What one commit says about its partition."""
    token: str
    interval_ms: int
    live: bool

    def encode(self) -> str:
        return f"{PREFIX} {self.token} {self.interval_ms} {int(self.live)}"

    @staticmethod
    def decode(text: Optional[str]) -> Optional["Mark"]:
        """None for metadata that is not a mark (another tool's, an older version's, none)."""
        parts = (text or "").split(" ")
        if len(parts) != 4 or parts[0] != PREFIX or parts[3] not in ("0", "1"):
            return None
        try:
            interval_ms = int(parts[2])
        except ValueError:
            return None
        if interval_ms < 0:
            return None
        return Mark(parts[1], interval_ms, parts[3] == "1")


class CommitWatch:
    """The rule above, over successive looks at the group's commits."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic, slack_s: float = SLACK_S):
        self._monotonic = monotonic
        self._slack = slack_s
        # partition -> (metadata, when first seen; None when it was there at the first look)
        self._seen: Dict[Any, Tuple[Optional[str], Optional[float]]] = {}

    def caught_up(self, partitions: Dict[Any, Tuple[int, int, Optional[str]]]) -> bool:
        """`partitions`: partition -> (committed offset, end offset, commit metadata)."""
        now = self._monotonic()
        caught_up = True
        for partition, (committed, end, metadata) in partitions.items():
            seen = self._seen.get(partition)
            if seen is None:
                seen = self._seen[partition] = (metadata, None)
            elif seen[0] != metadata:
                seen = self._seen[partition] = (metadata, now)
            if committed >= end:
                continue
            mark = Mark.decode(metadata)
            since = seen[1]
            if (mark is None or not mark.live or since is None
                    or now - since > FRESH_INTERVALS * mark.interval_ms / 1000 + self._slack):
                caught_up = False
        return caught_up
