"""Kafka Streams peer of `make bench` (see bench/peers/CONTRACT.md).

Run from the repo root as `.local/bench/kstreams/venv/bin/python bench/peers/kstreams/job.py`,
configured only by the BENCH_* environment. The job itself is ClickstreamJob.java (beside
this file; setup.sh compiles it into .local/bench/kstreams/classes): this script writes the
timing method and then becomes that JVM (exec, so the harness's kill on a timeout reaches it
and its exit status is the job's).

Timing: a JVM job, so the contract's "offsets" method. Kafka Streams commits its input
offsets to its application.id, which is BENCH_GROUP, every commit.interval.ms (100 ms).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LOCAL = ROOT / ".local" / "bench" / "kstreams"
HEAP = "2g"


def main() -> int:
    group = os.environ.get("BENCH_GROUP")
    timing_file = os.environ.get("BENCH_TIMING_FILE")
    if not group or not timing_file:
        sys.exit("kstreams peer: BENCH_GROUP and BENCH_TIMING_FILE must be set")
    classes, jars = LOCAL / "classes", LOCAL / "jars"
    if not (classes / "ClickstreamJob.class").exists() or not any(jars.glob("kafka-streams-*.jar")):
        sys.exit(f"kstreams peer: no compiled job or jars under {LOCAL}; run setup.sh")
    java = shutil.which("java")
    if java is None:
        sys.exit("kstreams peer: java not found")

    # The harness times this job from BENCH_GROUP's committed offsets.
    Path(timing_file).write_text(json.dumps({"method": "offsets"}) + "\n")

    state_dir = LOCAL / f"state-{group}"  # removed by the job at its end
    command = [
        java, f"-Xmx{HEAP}",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp", f"{classes}{os.pathsep}{jars}/*",
        "ClickstreamJob", str(state_dir),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(java, command)  # the environment passes through as it is
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
