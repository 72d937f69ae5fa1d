"""What exactly-once costs: the same bounded backfill with CLICKSTREAM_DELIVERY=exactly-once and
=at-least-once, alternating, on one pre-loaded topic, recovery on (-s 1) in both.

    python bench/delivery_cost.py [--events 300000] [--repeats 3]

Prints the median wall time and events/s of each mode and their ratio. Output topics are
fresh for every run, so each run does the same work.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
BROKERS = "127.0.0.1:9092"


def create(admin, names, partitions=2):
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    admin = AdminClient({"bootstrap.servers": BROKERS})
    tag = uuid.uuid4().hex[:8]
    source = f"bench-in-{tag}"
    create(admin, [source])
    subprocess.run([sys.executable, "-m", "clickstream.generate", "--count", str(args.events),
                    "--users", "20000", "--late-fraction", "0.01", "--out-of-order-fraction", "0.05",
                    "--malformed-fraction", "0.005", "--start-ms", "1767225600000",
                    "--topic", source, "--brokers", BROKERS], check=True, cwd=ROOT)
    seconds = {"exactly-once": [], "at-least-once": []}
    for repeat in range(args.repeats):
        for mode in seconds:
            run = f"{tag}-{repeat}-{mode[0]}"
            outputs = [f"bench-user-{run}", f"bench-page-{run}", f"bench-dlq-{run}"]
            create(admin, outputs)
            env = dict(__import__("os").environ, CLICKSTREAM_BROKERS=BROKERS,
                       CLICKSTREAM_INPUT_TOPIC=source, CLICKSTREAM_USER_TOPIC=outputs[0],
                       CLICKSTREAM_PAGE_TOPIC=outputs[1], CLICKSTREAM_DLQ_TOPIC=outputs[2],
                       CLICKSTREAM_BOUNDED="1", CLICKSTREAM_DELIVERY=mode)
            with tempfile.TemporaryDirectory() as store:
                began = time.perf_counter()
                subprocess.run([sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow",
                                "-r", store, "-s", "1", "-b", "0"], check=True, cwd=ROOT, env=env)
                seconds[mode].append(time.perf_counter() - began)
            print(f"  run {repeat + 1} {mode:14} {seconds[mode][-1]:6.2f} s", flush=True)
    medians = {mode: statistics.median(values) for mode, values in seconds.items()}
    print(f"\n{'delivery':14} {'median s':>9} {'events/s':>9}")
    for mode, median in medians.items():
        print(f"{mode:14} {median:9.2f} {args.events / median:9.0f}")
    print(f"exactly-once / at-least-once throughput: "
          f"{medians['at-least-once'] / medians['exactly-once']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
