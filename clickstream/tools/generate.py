"""Load generator CLI: ``python -m clickstream.generate`` produces the traffic model to Kafka.

Why it looks like this:

* The stream itself comes from `clickstream.tools.generator` (pure, seeded), so what is produced
  is reproducible for ``--seed`` and ``--start-ms``; this module only paces and delivers.
* Key = user id, so the default partitioner keeps each user on one partition (SPEC).
* Nothing is dropped: a full local queue (BufferError) is drained by polling and the
  message retried; every delivery failure is counted and makes the exit status 1.
* ``--rate`` keeps an absolute schedule (message i is due at t0 + i/rate), so pacing never
  drifts; small bursts (a few ms ahead) are allowed instead of sleeping per message.
* Operator errors (bad flag, unreachable broker, missing topic; topics are not
  auto-created) end with one line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
import time

from clickstream.io.kafka import METADATA_TIMEOUT_S, quiet_logger
from clickstream.tools.generator import KINDS, GeneratorConfig, generate

PROG = "clickstream.generate"
PROGRESS_EVERY_S = 2.0
BURST_S = 0.002  # how far ahead of schedule we may run before waiting
POLL_EVERY = 1000  # serve delivery callbacks every this many messages


class UsageError(Exception):
    """A bad command line; reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print usage + exit; we want one line
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m {PROG}", description="Produce a synthetic shop clickstream to Kafka.")
    p.add_argument("--count", type=int, default=10_000, help="messages to produce (default 10000)")
    p.add_argument("--rate", type=float, default=None, help="messages per second (default: as fast as possible)")
    p.add_argument("--users", type=int, default=1000, help="distinct users (default 1000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--late-fraction", type=float, default=0.0, help="share of late events (>60 s behind)")
    p.add_argument("--out-of-order-fraction", type=float, default=0.0, help="share of slightly out-of-order events")
    p.add_argument("--malformed-fraction", type=float, default=0.0, help="share of malformed messages")
    p.add_argument("--max-disorder-ms", type=int, default=3000, help="max backward shift of out-of-order events")
    p.add_argument("--start-ms", type=int, default=None, help="event time of the first message (default: now)")
    p.add_argument("--user-lifetime-seconds", type=float, default=None,
                   help="arriving users: the --users arrive evenly over the stream's event time, each "
                        "active this long, then gone (default: all users active throughout)")
    p.add_argument("--visits", action="store_true",
                   help="people with visits: think times, pauses shorter and longer than 30 min, bounces, "
                        "purchases, a few bots; --users is the population, --rate sets how many are active "
                        "(default: the Zipf mix, one draw per message)")
    p.add_argument("--topic", default=None, help="input topic (default $CLICKSTREAM_INPUT_TOPIC or website-clicks)")
    p.add_argument("--brokers", default=None, help="bootstrap servers (default $CLICKSTREAM_BROKERS or 127.0.0.1:9092)")
    return p


def _config(args: argparse.Namespace) -> GeneratorConfig:
    try:
        return GeneratorConfig(
            count=args.count,
            rate=args.rate,
            users=args.users,
            seed=args.seed,
            late_fraction=args.late_fraction,
            out_of_order_fraction=args.out_of_order_fraction,
            malformed_fraction=args.malformed_fraction,
            start_ms=args.start_ms,
            max_disorder_ms=args.max_disorder_ms,
            user_lifetime_seconds=args.user_lifetime_seconds,
            visits=args.visits,
        )
    except ValueError as exc:
        # Name the flag, not the dataclass field: "late_fraction ..." -> "--late-fraction ...".
        message = re.sub(r"\b(" + "|".join(_FLAG_FIELDS) + r")\b", _as_flag, str(exc))
        raise UsageError(message) from None


_FLAG_FIELDS = (
    "count", "rate", "users", "seed", "late_fraction", "out_of_order_fraction",
    "malformed_fraction", "start_ms", "max_disorder_ms", "user_lifetime_seconds", "visits",
)


def _as_flag(match: re.Match) -> str:
    return "--" + match.group(1).replace("_", "-")


class _Stats:
    """Delivery outcomes, updated from the producer's callbacks."""

    def __init__(self) -> None:
        self.delivered = 0
        self.failed = 0
        self.first_error: str | None = None
        self.fatal: str | None = None

    def on_delivery(self, err, _msg) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = str(err)

    def on_error(self, err) -> None:
        # Transient broker errors are retried by librdkafka; only fatal ones stop us.
        if err.fatal():
            self.fatal = str(err)


def _producer(brokers: str, topic: str, stats: _Stats):
    """A connected producer for an existing topic, or UsageError with one line."""
    from confluent_kafka import KafkaException, Producer

    conf = {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 10,
        "batch.num.messages": 10_000,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "message.timeout.ms": 120_000,
        "on_delivery": stats.on_delivery,
        "error_cb": stats.on_error,
        "logger": quiet_logger(f"{PROG}.librdkafka"),
    }
    try:
        producer = Producer(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        raise UsageError(f"--brokers {brokers!r}: {exc}") from None
    try:
        metadata = producer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise UsageError(f"cannot reach Kafka at {brokers}: {_kafka_error_text(exc)}") from None
    info = metadata.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        why = info.error.str() if info is not None and info.error is not None else "no partitions"
        raise UsageError(f"topic {topic!r} is not available on {brokers} ({why}); create it first")
    return producer


def _kafka_error_text(exc: Exception) -> str:
    err = exc.args[0] if exc.args else exc
    return err.str() if hasattr(err, "str") else str(err)


def _summary(stats: _Stats, sent: int, elapsed: float, kinds: dict[str, int], interrupted: bool) -> str:
    rate = sent / elapsed if elapsed > 0 else 0.0
    by_kind = " ".join(f"{k}={kinds[k]}" for k in KINDS)
    line = (
        f"{PROG}: sent={sent} delivered={stats.delivered} failed={stats.failed} "
        f"elapsed={elapsed:.2f}s rate={rate:.0f} msgs/s {by_kind}"
    )
    if interrupted:
        line += " (interrupted)"
    if stats.first_error:
        line += f" first_error={stats.first_error!r}"
    if stats.fatal:
        line += f" fatal={stats.fatal!r}"
    return line


def _produce_all(producer, topic: str, config: GeneratorConfig, stats: _Stats) -> int:
    kinds = dict.fromkeys(KINDS, 0)
    sent = 0
    rate = config.rate
    progress = config.count > 50_000 or rate is not None
    # Check callbacks/progress about every 0.1 s of schedule at low rates, every 1000 otherwise.
    poll_every = POLL_EVERY if rate is None else max(1, min(POLL_EVERY, int(rate / 10)))
    produce = producer.produce
    poll = producer.poll
    clock = time.monotonic
    t0 = clock()
    next_progress = t0 + PROGRESS_EVERY_S
    interrupted = False
    try:
        # The schedule starts at the first message: the visits model simulates a while first.
        messages = generate(config)
        first = next(messages, None)
        t0 = clock()
        next_progress = t0 + PROGRESS_EVERY_S
        for i, msg in enumerate(itertools.chain(() if first is None else (first,), messages)):
            if rate is not None:
                due = t0 + i / rate
                while (ahead := due - clock()) > BURST_S:
                    poll(ahead)  # wait for the schedule while serving callbacks
            while True:
                try:
                    produce(topic, msg.value, msg.key)
                    break
                except BufferError:
                    poll(0.05)  # local queue full: let deliveries drain, then retry
            sent += 1
            kinds[msg.kind] += 1
            if sent % poll_every == 0:
                poll(0)
                if stats.fatal:
                    break
                if progress and (now := clock()) >= next_progress:
                    next_progress = now + PROGRESS_EVERY_S
                    print(
                        f"{PROG}: progress sent={sent}/{config.count} delivered={stats.delivered} "
                        f"failed={stats.failed} rate={sent / (now - t0):.0f} msgs/s",
                        file=sys.stderr,
                        flush=True,
                    )
    except KeyboardInterrupt:
        interrupted = True
    remaining = len(producer)
    while remaining > 0 and not stats.fatal:
        remaining = producer.flush(1.0)
    elapsed = clock() - t0
    print(_summary(stats, sent, elapsed, kinds, interrupted), file=sys.stderr, flush=True)
    if stats.failed or stats.fatal or remaining:
        return 1
    return 130 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    """Parse flags, check the topic, produce; 0 ok, 1 delivery failures, 2 bad usage/setup."""
    try:
        args = _parser().parse_args(argv)
        config = _config(args)
        topic = args.topic or os.environ.get("CLICKSTREAM_INPUT_TOPIC") or "website-clicks"
        brokers = args.brokers or os.environ.get("CLICKSTREAM_BROKERS") or "127.0.0.1:9092"
        stats = _Stats()
        producer = _producer(brokers, topic, stats)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        return 130
    return _produce_all(producer, topic, config, stats)


if __name__ == "__main__":
    sys.exit(main())
