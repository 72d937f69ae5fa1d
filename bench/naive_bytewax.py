"""The straightforward Bytewax job, as a newcomer writes it from the docs: the stock
KafkaSource, a per-event `map` that parses JSON, `count_window` per user with an EventClock and
a TumblingWindower, the stock KafkaSink. Counts events per user and window, nothing else.

    python -m bytewax.run bench.naive_bytewax:flow      (BENCH_* environment, see bench/peers)
"""

import os
from datetime import datetime, timedelta, timezone

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, count_window

from bench.timing import Timing

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(milliseconds=int(os.environ.get("BENCH_WINDOW_MS", "5000")))
LATENESS = timedelta(milliseconds=int(os.environ.get("BENCH_LATENESS_MS", "10000")))
TIMING = Timing()


def parse(msg):
    TIMING.seen(1)
    return orjson.loads(msg.value)


def event_time(event) -> datetime:
    ts = event["ts"]
    if isinstance(ts, int):
        return EPOCH + timedelta(milliseconds=ts)
    return datetime.fromisoformat(ts)


def to_message(item) -> KafkaSinkMessage:
    user, (window_id, count) = item
    start = EPOCH + WINDOW * window_id
    return KafkaSinkMessage(user.encode(), orjson.dumps(
        {"user_id": user, "window_start": start.isoformat(), "events": count}))


brokers = [os.environ["BENCH_BROKERS"]]
flow = Dataflow("naive_clickstream")
messages = op.input("in", flow, KafkaSource(brokers, [os.environ["BENCH_INPUT_TOPIC"]],
                                            tail=False))
events = op.map("parse", messages, parse)
counts = count_window("count", events, EventClock(event_time, wait_for_system_duration=LATENESS),
                      TumblingWindower(length=WINDOW, align_to=EPOCH),
                      key=lambda event: event["user_id"])
op.output("out", op.map("to_message", counts.down, to_message),
          KafkaSink(brokers, os.environ["BENCH_USER_TOPIC"]))
