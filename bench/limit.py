"""The limit: a bare confluent-kafka consumer that reads the input in batches and parses every
value with orjson, nothing else. Reads every partition from the start to its end offset as of
start, in one process, then exits.
"""

import os
import sys

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.timing import Timing


def main() -> int:
    topic = os.environ["BENCH_INPUT_TOPIC"]
    consumer = Consumer({"bootstrap.servers": os.environ["BENCH_BROKERS"],
                         "group.id": os.environ["BENCH_GROUP"], "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
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
