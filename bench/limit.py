"""The limit: a bare confluent-kafka consumer that reads the input in batches and parses every
value with orjson, nothing else. Reads every partition from the start to its end offset as of
start, then exits. `--processes N`: N such processes, process i reading the partitions p with
p % N == i (how a cluster of ours splits them), each timed on its own (the harness merges).
"""

import os
import subprocess
import sys

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.timing import Timing


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    processes = int(argv[argv.index("--processes") + 1]) if "--processes" in argv else 1
    if processes > 1 and "--index" not in argv:
        children = [subprocess.Popen([sys.executable, "-m", "bench.limit", "--processes",
                                      str(processes), "--index", str(i)]) for i in range(processes)]
        return max(child.wait() for child in children)
    index = int(argv[argv.index("--index") + 1]) if "--index" in argv else 0
    topic = os.environ["BENCH_INPUT_TOPIC"]
    consumer = Consumer({"bootstrap.servers": os.environ["BENCH_BROKERS"],
                         "group.id": os.environ["BENCH_GROUP"], "enable.auto.commit": False})
    partitions = [p for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
                  if p % processes == index]
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions}
    remaining = {p for p, end in ends.items() if end > 0}
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    timing = Timing()
    loads = orjson.loads
    parsed = 0
    while remaining:
        messages = consumer.consume(10000, 1.0)
        for msg in messages:
            if msg.error() is None:
                loads(msg.value())
                parsed += 1
                if msg.offset() >= ends[msg.partition()] - 1:
                    remaining.discard(msg.partition())
        timing.seen(len(messages))
    consumer.close()
    print(f"limit: parsed {parsed} values", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
