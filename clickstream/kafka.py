"""Kafka adapters: client settings, the click source, start-up checks, topic creation.

Source: one confluent-kafka consumer per input partition (bytewax's FixedPartitionedSource), no
consumer group (offsets live in the recovery snapshot), values parsed in the partition's batch
and grouped by user shard, malformed ones turned into dead-letter records on the spot.

The exactly-once sink lives in `clickstream/sink.py`. Errors a running dataflow must not pass
end in `stop()`: one line on stderr and a non-zero exit, and the restart redoes the epoch.
"""

import logging
import os
import socket
import sys
import threading
import time
from typing import Dict, Iterable, List, Optional

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from clickstream.deadletters import MALFORMED, dead_letter
from clickstream.events import MalformedEvent, parse_event
from clickstream.metrics import METRICS
from clickstream.operators import DLQ_KEY, USER_SHARD_KEYS, shard_of
from clickstream.settings import KAFKA_PREFIX, Settings, SettingsError
from clickstream.windows import IDLE_CLOCK, IdleClock

log = logging.getLogger("clickstream.kafka")

BATCH_SIZE = 5000
METADATA_TIMEOUT_S = 10.0


def _quiet_logger() -> logging.Logger:
    """librdkafka's own log lines (connect retries...) go here instead of stderr."""
    logger = logging.getLogger("clickstream.librdkafka")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


_SETTINGS_FOR_REDACTION: List[Settings] = []


def client_config(settings: Settings, **extra) -> dict:
    """librdkafka config: brokers, the pass-through security properties, then `extra`."""
    if settings not in _SETTINGS_FOR_REDACTION:
        _SETTINGS_FOR_REDACTION.append(settings)
    config = {"bootstrap.servers": settings.bootstrap_servers, "logger": _quiet_logger()}
    config.update(settings.kafka)
    config.update(extra)
    return config


def _redact(message: str) -> str:
    for settings in _SETTINGS_FOR_REDACTION:
        message = settings.redact(message)
    return message


def broker_answers(address: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at host:port (is a broker up here?)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def topic_partitions(settings: Settings) -> Dict[str, int]:
    """Check at start that a broker answers and every topic exists; partition count per topic.

    Raises SettingsError with one line naming the setting at fault.
    """
    errors: List[str] = []
    try:
        admin = AdminClient(client_config(settings, error_cb=lambda err: errors.append(err.str())))
    except KafkaException as exc:
        raise SettingsError(
            f"{KAFKA_PREFIX}* settings are not valid librdkafka configuration: {exc.args[0].str()}"
        ) from None
    try:
        metadata = admin.list_topics(timeout=METADATA_TIMEOUT_S)
    except KafkaException:
        admin.poll(0)  # serves error_cb
        last = f" (last error: {errors[-1]})" if errors else ""
        raise SettingsError(
            f"CLICKSTREAM_BROKERS={settings.bootstrap_servers}: no Kafka broker answered "
            f"within {METADATA_TIMEOUT_S:.0f} s{last}"
        ) from None
    counts = {}
    for name, topic in (("CLICKSTREAM_INPUT_TOPIC", settings.input_topic),
                        ("CLICKSTREAM_USER_TOPIC", settings.user_topic),
                        ("CLICKSTREAM_PAGE_TOPIC", settings.page_topic),
                        ("CLICKSTREAM_DLQ_TOPIC", settings.dlq_topic)):
        meta = metadata.topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise SettingsError(
                f"{name}={topic!r}: no such topic on {settings.bootstrap_servers} "
                "(create it first, e.g. `make topics`)"
            )
        counts[topic] = len(meta.partitions)
    return counts


def create_topics(settings: Settings, partitions: int, topics: Optional[Iterable[str]] = None,
                  ) -> List[str]:
    """Create missing topics (input and outputs by default); returns the ones created."""
    admin = AdminClient(client_config(settings))
    wanted = list(topics) if topics is not None else [settings.input_topic, *settings.output_topics]
    existing = admin.list_topics(timeout=METADATA_TIMEOUT_S).topics
    new = [NewTopic(t, partitions, 1) for t in wanted if t not in existing]
    created = []
    for topic, future in (admin.create_topics(new).items() if new else ()):
        try:
            future.result()
            created.append(topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created


# ---------------------------------------------------------------------------------------------
# Source


class _ClickPartition(StatefulSourcePartition):
    def __init__(self, settings: Settings, partition: int, resume_offset: Optional[int],
                 clock: IdleClock, batch_size: int, dlq_partition: int = 0):
        self._topic = settings.input_topic
        self._dlq_partition = dlq_partition
        self._partition = partition
        self._clock = clock
        self._batch_size = batch_size
        self._tp = TopicPartition(self._topic, partition)
        self._consumer = Consumer(client_config(
            settings,
            **{
                # Offsets are committed to this group after each snapshot, for the standard
                # lag tools only: recovery always resumes from the snapshot.
                "group.id": settings.consumer_group,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                # A resume offset that retention already deleted is data loss: say so, do not skip.
                "auto.offset.reset": "error",
                "isolation.level": "read_committed",
                # Prefetch per input partition (librdkafka's default is 64 MiB per consumer,
                # and we run one consumer per partition): memory, not speed, on a backfill.
                "queued.max.messages.kbytes": 16384,
            },
        ))
        low, high = self._consumer.get_watermark_offsets(self._tp, timeout=METADATA_TIMEOUT_S)
        self._high = high  # until a fetch tells a newer end
        # Next offset to read: the snapshot's, or the log start on a fresh store.
        self._next = low if resume_offset is None else resume_offset
        self._end: Optional[int] = high if settings.bounded else None
        start = OFFSET_BEGINNING if resume_offset is None else resume_offset
        self._consumer.assign([TopicPartition(self._topic, partition, start)])
        self._lag_gauge = METRICS.consumer_lag.labels(self._topic, str(partition))
        self._tp_key = (self._topic, partition)
        self._done = False

    def next_batch(self) -> list:
        if self._done or (self._end is not None and self._next >= self._end):
            self._finish()
        messages = self._consumer.consume(self._batch_size, 0.001)
        shards: Dict[str, list] = {}
        dead: list = []
        last = None
        newest = -(2**62)
        topic, partition, end = self._topic, self._partition, self._end
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_error(err)
                continue
            offset = msg.offset()
            if end is not None and offset >= end:
                self._done = True
                break
            last = offset
            value = msg.value()
            try:
                event = parse_event(value, partition, offset)
            except MalformedEvent as exc:
                dead.append((None, dead_letter(MALFORMED, str(exc), topic, partition, offset, value),
                             f"{partition}:{offset}", None))
                continue
            if event.ts > newest:
                newest = event.ts
            key = USER_SHARD_KEYS[shard_of(event.user_id)]
            bucket = shards.get(key)
            if bucket is None:
                shards[key] = [event]
            else:
                bucket.append(event)
        if last is not None:
            self._next = last + 1
            METRICS.events_consumed.inc(sum(map(len, shards.values())) + len(dead))
            if dead:
                METRICS.events_malformed.inc(len(dead))
            if shards:
                METRICS.watermark.observe(self._tp_key, newest)
        elif end is not None:
            # Transaction markers take offsets but are never delivered: trust the position.
            position = self._consumer.position([self._tp])[0].offset
            if position >= end:
                self._done = True
        if end is not None and self._next >= end:
            self._done = True
        self._report_lag()
        items: list = list(shards.items())
        if dead:
            items.append((DLQ_KEY, (self._dlq_partition, dead)))
        return items

    def _report_lag(self) -> None:
        """Caught up: read up to the partition's end as known from the last fetch (or from
        the start). An empty poll is not enough: the next fetch may simply be in flight."""
        _, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        if high >= 0:
            self._high = high
        # The position also moves past transaction markers, which are never delivered.
        position = self._consumer.position([self._tp])[0].offset
        lag = max(self._high - max(self._next, position), 0)
        self._lag_gauge.set(lag)
        self._clock.report(self._tp_key, lag == 0)

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
            stop(
                f"offset {self._next} of {self._topic}[{self._partition}] is no longer on the broker "
                "(deleted by retention?); refusing to skip data"
            )
        if err.fatal() or err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED):
            stop(f"consuming {self._topic}[{self._partition}] failed: {err.str()}")
        log.warning("consumer %s[%d]: %s (retrying)", self._topic, self._partition, err.str())

    def _finish(self):
        self._clock.report((self._topic, self._partition), True)
        raise StopIteration()

    def snapshot(self) -> Optional[int]:
        try:
            # The position is past transaction markers too, so a caught-up group shows lag 0.
            position = self._consumer.position([self._tp])[0].offset
            committed = self._next if self._end is not None else max(self._next, position)
            self._consumer.commit(offsets=[TopicPartition(self._topic, self._partition, committed)],
                                  asynchronous=True)
        except KafkaException as exc:  # lag reporting only: never worth stopping for
            log.warning("committing offsets of %s[%d] to group failed: %s",
                        self._topic, self._partition, exc.args[0].str())
        return self._next

    def close(self) -> None:
        self._consumer.close()


class ClickSource(FixedPartitionedSource):
    """Input partitions of the click topic; emits (user_shard, [Event]) and, for malformed
    messages, (DLQ_KEY, (dead-letter partition, [record])) per batch."""

    def __init__(self, settings: Settings, dlq_partitions: int = 1, clock: IdleClock = IDLE_CLOCK,
                 batch_size: int = BATCH_SIZE):
        self._settings = settings
        self._dlq_partitions = dlq_partitions
        self._clock = clock
        self._batch_size = batch_size

    def list_parts(self) -> List[str]:
        count = topic_partitions(self._settings)[self._settings.input_topic]
        return [f"{self._settings.input_topic}-{i}" for i in range(count)]

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> _ClickPartition:
        partition = int(for_part.rpartition("-")[2])
        return _ClickPartition(self._settings, partition, resume_state, self._clock,
                               self._batch_size, partition % self._dlq_partitions)


RESTART_STATUS = 75  # the exit status clickstream.cluster restarts on (EX_TEMPFAIL)


class PartitionWatcher(threading.Thread):
    """Notices partitions added to the input topic while the dataflow runs (Bytewax fixes its
    source partitions at start; Flink discovers new ones, so should we).

    On a change the process exits with RESTART_STATUS: its supervisor (clickstream.cluster, or
    Kubernetes) starts it again, the assignment is rebuilt from the new partition list and the
    dataflow resumes from its recovery store, the new partitions from their first offset.
    Exactly-once output makes the restart invisible downstream.
    """

    def __init__(self, settings: Settings, partitions: int):
        super().__init__(name="clickstream-partition-watcher", daemon=True)
        self._settings = settings
        self._partitions = partitions

    def run(self) -> None:
        admin = AdminClient(client_config(self._settings))
        topic = self._settings.input_topic
        while True:
            time.sleep(self._settings.partition_check_ms / 1000)
            try:
                meta = admin.list_topics(topic, timeout=METADATA_TIMEOUT_S).topics.get(topic)
            except KafkaException:
                continue  # the broker is away; the consumers report what matters
            if meta is not None and meta.partitions and len(meta.partitions) > self._partitions:
                stop(f"input topic {topic} now has {len(meta.partitions)} partitions (was "
                     f"{self._partitions}); restarting to read them all", RESTART_STATUS)


class ClusterProgress(threading.Thread):
    """In a cluster, the idle clock may only run when *every* process has caught up.

    A process knows only its own partitions; another one may still be replaying a backlog
    whose events will reach this process's windows. The processed offsets every process
    commits to the consumer group at each snapshot tell: this thread compares them with the
    partitions' end offsets every second and reports the whole input as one more "partition"
    to the idle clock. It errs late, never early: offsets are committed once per snapshot.
    """

    def __init__(self, settings: Settings, partitions: int, clock: IdleClock = IDLE_CLOCK,
                 interval_s: float = 1.0):
        super().__init__(name="clickstream-cluster-progress", daemon=True)
        self._settings = settings
        self._partitions = partitions
        self._clock = clock
        self._interval = interval_s
        self._clock.report(self._KEY, False)  # not caught up until shown to be

    _KEY = ("cluster", -1)

    def caught_up(self, admin: AdminClient, consumer: Consumer) -> bool:
        from confluent_kafka import ConsumerGroupTopicPartitions

        topic = self._settings.input_topic
        wanted = [TopicPartition(topic, p) for p in range(self._partitions)]
        request = ConsumerGroupTopicPartitions(self._settings.consumer_group, wanted)
        result = admin.list_consumer_group_offsets([request])[self._settings.consumer_group]
        committed = {tp.partition: tp.offset for tp in result.result(timeout=METADATA_TIMEOUT_S)
                     .topic_partitions}
        for tp in wanted:
            _, end = consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S)
            if committed.get(tp.partition, -1) < end:
                return False
        return True

    def run(self) -> None:
        admin = AdminClient(client_config(self._settings))
        consumer = Consumer(client_config(self._settings, **{"group.id": "clickstream-progress"}))
        while True:
            try:
                caught_up = self.caught_up(admin, consumer)
            except Exception as exc:  # the broker is away: assume a backlog
                log.debug("cluster progress unknown: %s", exc)
                caught_up = False
            self._clock.report(self._KEY, caught_up)
            time.sleep(self._interval)


def fail(message: str) -> None:
    """One line on stderr, exit 2: how every start-up problem ends."""
    print(f"clickstream: {_redact(message)}", file=sys.stderr)
    raise SystemExit(2)


def stop(message: str, status: int = 1) -> None:
    """One line on stderr, then exit: how a running dataflow stops on an error it must not pass.

    An exception raised inside a Bytewax connector ends in a Rust panic dump that buries the
    reason, so the process ends here instead. Nothing is lost: the epoch in progress was not
    snapshotted, and a restart from the recovery store redoes it.
    """
    print(f"clickstream: {_redact(message)}", file=sys.stderr, flush=True)
    os._exit(status)
