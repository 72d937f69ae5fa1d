"""Test-only fault points: `CLICKSTREAM_FAULT_POINT=<name>` ends the process where the code
calls `reach(<name>)`, as a SIGKILL there would, so tests can crash at an exact step.

Points: `after-commit` (a sink committed a transaction holding window records, before the
snapshot of their epoch is persisted). Unset in production: `reach` is then one comparison.
"""

import os
import sys

FAULT_STATUS = 97
_POINT = os.environ.get("CLICKSTREAM_FAULT_POINT", "")


def reach(point: str) -> None:
    if point == _POINT:
        print(f"clickstream: fault point {point} reached; exiting with {FAULT_STATUS}",
              file=sys.stderr, flush=True)
        os._exit(FAULT_STATUS)
