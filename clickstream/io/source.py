"""The click source: one consumer per input partition, values parsed per batch.

Offsets live in the recovery snapshot (`snapshot()` returns the next offset to read); after
each snapshot they are also committed to the consumer group, for the standard lag tools and
for `io.watchers.ClusterProgress` (with a `runtime.liveness.Mark` saying whether the partition
was read live), never to resume from. Valid events leave grouped by user
shard, malformed messages as dead-letter records, both per batch. An event time further than
CLICKSTREAM_MAX_FUTURE_SECONDS ahead of its record's timestamp is malformed here, before it can
move the watermark or reach a window. While it has a backlog, a partition holds back events
that run too far ahead of the process's other partitions in event time (`runtime.alignment`).
"""

import logging
import secrets
import time
from datetime import datetime, timedelta, timezone
from typing import Dict, List, Optional

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (OFFSET_BEGINNING, TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError,
                             KafkaException, TopicPartition)

from clickstream.core.batches import Batch
from clickstream.core.deadletters import MALFORMED, dead_letter
from clickstream.core.events import MalformedEvent, parse_event
from clickstream.core.records import DEAD_LETTERS, Record, dead_letter_ident
from clickstream.core.shards import USER_SHARD_KEYS, dead_letter_partition, shard_of
from clickstream.core.times import NEVER
from clickstream.io.kafka import METADATA_TIMEOUT_S, client_config, topic_partitions
from clickstream.runtime.alignment import ALIGNMENT, Alignment, drift_for
from clickstream.runtime.exits import stop
from clickstream.runtime.liveness import Mark
from clickstream.runtime.metrics import METRICS
from clickstream.runtime.progress import IDLE_CLOCK, IdleClock
from clickstream.runtime.settings import Settings

log = logging.getLogger("clickstream.source")

BATCH_SIZE = 5000
HELD_RETRY = timedelta(milliseconds=5)  # a partition holding everything back looks again then


class ClickPartition(StatefulSourcePartition):
    def __init__(self, settings: Settings, partition: int, resume_offset: Optional[int],
                 clock: IdleClock, batch_size: int, dlq_partition: int = 0,
                 alignment: Alignment = ALIGNMENT):
        self._topic = settings.input_topic
        self._alignment = alignment
        self._held: list = []  # fetched messages held back by the alignment, in order
        self._held_ts = NEVER  # the event time of the first of them
        self._newest = NEVER  # the newest event time handed on
        self._awake: Optional[datetime] = None
        self._dlq_partition = dlq_partition
        self._partition = partition
        self._clock = clock
        self._batch_size = batch_size
        self._max_future_ms = settings.max_future_ms
        self._drop_url_query = settings.drop_url_query
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
        self._token = secrets.token_hex(4)  # this source's marks differ from a former one's
        self._commits = 0
        self._committed_at = time.monotonic()
        clock.expect(self._tp_key)  # lagging until the first poll says otherwise
        alignment.report(self._tp_key, None, self._next < high)  # where it starts: unknown yet

    def next_batch(self) -> list:
        if self._done or (self._end is not None and self._next >= self._end):
            self._finish()
        limit = self._alignment.limit(self._tp_key)
        if self._held:
            messages, self._held = self._held, []
        else:
            messages = self._consumer.consume(self._batch_size, 0.001)
        shards: Dict[str, list] = {}
        dead = Batch()  # malformed messages' records: they cross to the dead-letter sink too
        last = None
        newest = NEVER
        topic, partition, end = self._topic, self._partition, self._end
        max_future_ms, drop_url_query = self._max_future_ms, self._drop_url_query
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._on_error(err)
                continue
            offset = msg.offset()
            if end is not None and offset >= end:
                self._done = True
                break
            value = msg.value()
            kind, record_ts = msg.timestamp()
            if kind == TIMESTAMP_NOT_AVAILABLE:
                record_ts = None  # a record without a timestamp: nothing to guard the event time by
            try:
                # Malformed includes too far ahead of the record: such an event moves no clock.
                event = parse_event(value, partition, offset, record_ts, max_future_ms,
                                    drop_url_query)
            except MalformedEvent as exc:
                last = offset
                dead.append(Record(None, dead_letter(MALFORMED, str(exc), topic, partition,
                                                     offset, value),
                                   dead_letter_ident(partition, offset), None))
                continue
            if limit is not None and event.ts > limit:
                self._held = messages[messages.index(msg):]  # this one and the rest, in order
                self._held_ts = event.ts
                break
            last = offset
            if event.ts > newest:
                newest = event.ts
            key = USER_SHARD_KEYS[shard_of(event.user_id)]
            bucket = shards.get(key)
            if bucket is None:
                shards[key] = Batch((event,))
            else:
                bucket.append(event)
        if last is not None:
            self._next = last + 1
            METRICS.events_consumed.inc(sum(map(len, shards.values())) + len(dead))
            if dead:
                METRICS.events_malformed.inc(len(dead))
            if shards:
                METRICS.watermark.observe(self._tp_key, newest)
                if newest > self._newest:
                    self._newest = newest
        elif end is not None and not self._held:
            # Transaction markers take offsets but are never delivered: trust the position.
            position = self._consumer.position([self._tp])[0].offset
            if position >= end:
                self._done = True
        if end is not None and self._next >= end:
            self._done = True
        self._report_lag()
        # Holding everything back: look again in a moment rather than spin.
        self._awake = (datetime.now(timezone.utc) + HELD_RETRY
                       if self._held and last is None else None)
        items: list = list(shards.items())
        if dead:
            items.append((DEAD_LETTERS, (self._dlq_partition, dead)))
        return items

    def _report_lag(self) -> None:
        """Caught up: read up to the partition's end as known from the last fetch (or from
        the start). An empty poll is not enough: the next fetch may simply be in flight."""
        _, high = self._consumer.get_watermark_offsets(self._tp, cached=True)
        if high >= 0:
            self._high = high
        # The position also moves past transaction markers, which are never delivered; held
        # messages were fetched but are unread, a backlog like any other.
        read = (self._next if self._held
                else max(self._next, self._consumer.position([self._tp])[0].offset))
        lag = max(self._high - read, 0)
        self._lag_gauge.set(lag)
        caught_up = lag == 0 and not self._held
        self._clock.report(self._tp_key, caught_up)
        at = self._held_ts if self._held else self._newest
        self._alignment.report(self._tp_key, None if at == NEVER else at, not caught_up)

    def next_awake(self) -> Optional[datetime]:
        return self._awake

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
        self._alignment.forget(self._tp_key)
        raise StopIteration()

    def snapshot(self) -> Optional[int]:
        try:
            # The position is past transaction markers too, so a caught-up group shows lag 0.
            position = self._consumer.position([self._tp])[0].offset
            committed = (self._next if self._end is not None or self._held
                         else max(self._next, position))
            now = time.monotonic()
            # The first interval runs from the source's start, not from a commit: never live
            # (runtime/liveness.py).
            mark = Mark(f"{self._token}.{self._commits}", int((now - self._committed_at) * 1000),
                        self._commits > 0 and not self._clock.backlog(self._tp_key))
            self._commits += 1
            self._committed_at = now
            self._consumer.commit(offsets=[TopicPartition(self._topic, self._partition, committed,
                                                          metadata=mark.encode())],
                                  asynchronous=True)
        except KafkaException as exc:  # lag reporting only: never worth stopping for
            log.warning("committing offsets of %s[%d] to group failed: %s",
                        self._topic, self._partition, exc.args[0].str())
        return self._next

    def close(self) -> None:
        self._alignment.forget(self._tp_key)
        self._consumer.close()


class ClickSource(FixedPartitionedSource):
    """Input partitions of the click topic; emits (user_shard, [Event]) and, for malformed
    messages, (DEAD_LETTERS, (dead-letter partition, [Record])) per batch."""

    def __init__(self, settings: Settings, dlq_partitions: int = 1, clock: IdleClock = IDLE_CLOCK,
                 batch_size: int = BATCH_SIZE, alignment: Alignment = ALIGNMENT):
        self._settings = settings
        self._dlq_partitions = dlq_partitions
        self._clock = clock
        self._batch_size = batch_size
        self._alignment = alignment
        alignment.configure(drift_for(settings.state_ttl_ms))

    def list_parts(self) -> List[str]:
        count = topic_partitions(self._settings)[self._settings.input_topic]
        return [f"{self._settings.input_topic}-{i}" for i in range(count)]

    def build_part(self, step_id: str, for_part: str, resume_state: Optional[int]) -> ClickPartition:
        partition = int(for_part.rpartition("-")[2])
        return ClickPartition(self._settings, partition, resume_state, self._clock,
                              self._batch_size, dead_letter_partition(partition, self._dlq_partitions),
                              self._alignment)
