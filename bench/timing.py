"""First and last consumed record, per process, for the steady-state rate (start-up excluded).

Jobs in Python call `Timing.seen(n)` once per batch (one `time.time()`), and the file named by
BENCH_TIMING_FILE is written at exit, one file per process (`<file>.<pid>`); the harness merges
them: earliest first, latest last, sum of counts.
"""

import atexit
import json
import os
import time


class Timing:
    def __init__(self):
        self.first = None
        self.last = None
        self.consumed = 0
        path = os.environ.get("BENCH_TIMING_FILE")
        if path:
            atexit.register(self.write, f"{path}.{os.getpid()}")

    def seen(self, count: int) -> None:
        if count:
            now = time.time()
            if self.first is None:
                self.first = now
            self.last = now
            self.consumed += count

    def write(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump({"first_consumed": self.first, "last_consumed": self.last,
                       "consumed": self.consumed}, f)
