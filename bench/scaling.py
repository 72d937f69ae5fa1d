"""Speed of N local processes against one, on the same pre-loaded topic, bounded runs.

    python bench/scaling.py [--events 300000] [--partitions 4] [--repeats 2] [--processes 2]

Each run gets fresh output topics; recovery is on (-s 1) as in production. Prints the median
wall time per process count and the speed-up.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
BROKERS = os.environ.get("CLICKSTREAM_BROKERS", "127.0.0.1:9092")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    admin = AdminClient({"bootstrap.servers": BROKERS})
    tag = uuid.uuid4().hex[:8]
    source = f"scale-in-{tag}"
    [f.result() for f in admin.create_topics([NewTopic(source, args.partitions, 1)]).values()]
    subprocess.run([sys.executable, "-m", "clickstream.generate", "--count", str(args.events),
                    "--users", "20000", "--start-ms", "1767225600000", "--topic", source,
                    "--brokers", BROKERS], check=True, cwd=ROOT, stderr=subprocess.DEVNULL)
    seconds = {1: [], args.processes: []}
    for repeat in range(args.repeats):
        for processes in seconds:
            run = f"{tag}-{repeat}-{processes}"
            outputs = [f"scale-{kind}-{run}" for kind in ("user", "page", "dlq")]
            [f.result() for f in admin.create_topics(
                [NewTopic(t, args.partitions, 1) for t in outputs]).values()]
            env = dict(os.environ, CLICKSTREAM_BROKERS=BROKERS, CLICKSTREAM_INPUT_TOPIC=source,
                       CLICKSTREAM_USER_TOPIC=outputs[0], CLICKSTREAM_PAGE_TOPIC=outputs[1],
                       CLICKSTREAM_DLQ_TOPIC=outputs[2], CLICKSTREAM_BOUNDED="1")
            with tempfile.TemporaryDirectory() as store:
                began = time.perf_counter()
                subprocess.run([sys.executable, "-m", "clickstream.cluster", "--processes",
                                str(processes), "--recovery", store, "--snapshot", "1",
                                "--base-port", str(23000 + 10 * repeat + processes),
                                "--metrics-port", str(23500 + 10 * repeat)],
                               check=True, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
                seconds[processes].append(time.perf_counter() - began)
            print(f"  run {repeat + 1}: {processes} process(es) {seconds[processes][-1]:6.2f} s",
                  flush=True)
    one, many = (statistics.median(seconds[p]) for p in seconds)
    print(f"\n1 process: {one:.2f} s ({args.events / one:.0f} events/s); {args.processes} processes: "
          f"{many:.2f} s ({args.events / many:.0f} events/s); speed-up {one / many:.2f}x "
          f"on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
