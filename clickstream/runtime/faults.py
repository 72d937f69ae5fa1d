"""Test-only fault points: `CLICKSTREAM_FAULT_POINT=<name>` ends the process where the code
calls `reach(<name>)`, as a SIGKILL there would, so tests can crash at an exact step.

Points: `after-commit` (a sink committed a transaction holding window records, before the
snapshot of their epoch is persisted) ends the process; `slow-sink-start` sleeps
CLICKSTREAM_FAULT_SLEEP_SECONDS (default 15) where the first Kafka sink partition of the
process starts, as a long read-back would. Unset in production: `reach` is then one comparison.
"""

import os
import sys
import time

FAULT_STATUS = 97
_POINT = os.environ.get("CLICKSTREAM_FAULT_POINT", "")


SLEEPS = ("slow-sink-start",)


_slept = False


def reach(point: str) -> None:
    global _slept
    if point == _POINT and point in SLEEPS:
        if not _slept:  # once per process
            _slept = True
            time.sleep(float(os.environ.get("CLICKSTREAM_FAULT_SLEEP_SECONDS", "15")))
    elif point == _POINT:
        print(f"clickstream: fault point {point} reached; exiting with {FAULT_STATUS}",
              file=sys.stderr, flush=True)
        os._exit(FAULT_STATUS)
