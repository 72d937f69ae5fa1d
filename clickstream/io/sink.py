"""Exactly-once Kafka output: transactional writes per output partition, de-duplicated on resume.

Per output partition (one sink partition each), in the phases of Flink's Kafka sink:
- write: records go into the open transaction of a transactional producer with a stable
  `transactional.id` (`clickstream-<topic>-<partition>`); `init_transactions()` at start fences
  a predecessor that may still be alive and aborts its open transaction.
- commit: every CLICKSTREAM_COMMIT_INTERVAL_SECONDS (a `Committer` thread commits a
  transaction that old), and in `snapshot()`, when Bytewax closes the epoch.
- snapshot state: `sink_state.SinkSnapshot`, kept by `sink_state.WriterState`.
- resume: Kafka may hold records committed after the snapshot a run resumes from. Each
  record carries its identity in the header `clickstream-id` (with its key); the partition is
  read back from the snapshot's offset (read_committed), and those identities, with the ones
  the snapshot still holds as pending, are not written again when the stages re-emit them.
  `sink_state` states the invariant that makes this exact.
With `CLICKSTREAM_DELIVERY=at-least-once` the producer is plain idempotent, flushed per epoch.
"""

import logging
import threading
import time
import weakref
from itertools import chain
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from clickstream.core.records import Record, identity
from clickstream.io.kafka import METADATA_TIMEOUT_S, client_config
from clickstream.io.sink_state import SinkSnapshot, WriterState
from clickstream.runtime import faults
from clickstream.runtime.exits import stop
from clickstream.runtime.metrics import METRICS, observe_many
from clickstream.runtime.progress import IDLE_CLOCK
from clickstream.runtime.settings import Settings

log = logging.getLogger("clickstream.sink")

ID_HEADER = "clickstream-id"
# Both delivery modes: every record acknowledged by all in-sync replicas, no duplicates from
# retries, small batches waited for briefly.
PRODUCER_CONFIG = {"acks": "all", "enable.idempotence": True, "linger.ms": 20,
                   "compression.type": "lz4"}
COMMIT_TIMEOUT_S = 300.0  # a broker outage shorter than this is waited out
CAUSE_WAIT_S = 5.0  # for the report of a failure's cause, when only purges came in yet
PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)
QUIET_S = 0.01  # no write for this long: the burst is over, commit (see Committer)
Render = Callable[[str, int, int, list], bytes]  # a closed window's JSON: key, start, end, state


class NumberedSink(FixedPartitionedSink):
    """A sink with one partition per output partition number: items are ("partition",
    records), as `stages.outputs.sink_item` makes them, so Kafka and the tables route alike."""

    _partitions: int

    def list_parts(self) -> List[str]:
        return [f"{i:05d}" for i in range(self._partitions)]

    def part_fn(self, item_key: str) -> int:
        return int(item_key)


class RecordSink(NumberedSink):
    """Writes Records to a topic, one sink partition per Kafka partition.

    Items are ("partition", [Record]): the window stages already picked each record's Kafka
    partition with Kafka's own default partitioner (see `core.partitioner`). Closed windows
    are turned into JSON by `render` right before they are produced; `output` labels the
    emit-delay histogram ("user", "page"). `origin` maps partitions to the offsets at which
    this service's history starts (written when the recovery store was created): a crash
    before the first snapshot still de-duplicates.
    """

    def __init__(self, settings: Settings, topic: str, partitions: int,
                 origin: Optional[Dict[int, int]] = None, render: Optional[Render] = None,
                 output: str = ""):
        self._settings = settings
        self._topic = topic
        self._partitions = partitions
        self._origin = origin
        self._render = render
        self._output = output

    def build_part(self, step_id: str, for_part: str, resume_state):
        partition = int(for_part)
        try:
            resumed, legacy = SinkSnapshot.load(resume_state, (self._origin or {}).get(partition))
        except ValueError as exc:
            stop(f"cannot resume {self._topic}[{partition}]: {exc}; start with a new store", 2)
        if self._settings.exactly_once:  # starts in the background (see the class)
            return _TransactionalPartition(self._settings, self._topic, partition, resumed, legacy,
                                           self._render, self._output)
        with IDLE_CLOCK.starting((self._topic, partition)):
            faults.reach("slow-sink-start")
            return _FlushingPartition(self._settings, self._topic, partition, resumed, legacy,
                                      self._render, self._output)


class _Partition(StatefulSinkPartition):
    """Shared by both delivery modes: produce with back-pressure, check every report."""

    def __init__(self, settings: Settings, topic: str, partition: int, resumed: SinkSnapshot,
                 render: Optional[Render], output: str, producer_config: dict):
        self._topic = topic
        self._partition = partition
        self._render = render
        self._emit_delay = METRICS.window_emit_delay.labels(output) if output else None
        self._closed_at: List[float] = []  # of the window records not yet committed / flushed
        self._queue_full = METRICS.producer_queue_full.labels(topic)
        self._failures: List[KafkaError] = []
        self._state = WriterState(resumed)
        self._produced = METRICS.records_produced.labels(topic)
        # Acknowledged since last counted: the reports are served under the partition's lock
        # (or by the worker alone), and the counter's own lock once per record cost 1.5 % of
        # a backfill; counted where they are served (_reports_served).
        self._acknowledged = 0
        self._errors = METRICS.produce_errors.labels(topic)
        self._producer = Producer(client_config(settings, **producer_config))

    def _on_delivery(self, err, msg) -> None:
        if err is None:
            self._acknowledged += 1
            self._state.acknowledged(msg.offset())
        else:
            self._errors.inc()
            self._failures.append(err)

    def _produce(self, records: Iterable[Record]) -> None:
        produce = self._producer.produce
        topic, partition, on_delivery = self._topic, self._partition, self._on_delivery
        closed_at, render = self._closed_at, self._render
        for key, value, ident, closed in records:
            if closed is not None:
                closed_at.append(closed)
            if value.__class__ is tuple:
                value = render(key, *value)
            while True:
                try:
                    produce(topic, value, key, partition=partition, on_delivery=on_delivery,
                            headers=[(ID_HEADER, ident)])
                    break
                except BufferError:
                    # Local queue full: let librdkafka send and serve callbacks, then retry.
                    self._queue_full.inc()
                    self._producer.poll(0.1)
                except KafkaException as exc:
                    # e.g. the transaction can only be aborted after a failed delivery
                    self._producer.poll(0)
                    self._check_failures()
                    stop(f"producing to {topic}[{partition}] failed: {exc.args[0].str()}; "
                         "a restart resumes from the last snapshot")
        self._producer.poll(0)
        self._reports_served()

    def _reports_served(self) -> None:
        """After a write's poll, a flush or a commit served delivery reports: count the
        acknowledged records at once, and stop on a failed one."""
        if self._acknowledged:
            self._produced.inc(self._acknowledged)
            self._acknowledged = 0
        self._check_failures()

    def _check_failures(self) -> None:
        if self._failures:
            cause = self._cause()  # may serve more reports: count after it
            stop(
                f"{len(self._failures)} record(s) to {self._topic}[{self._partition}] were not "
                f"delivered: {cause.str()}; stopping so a restart re-produces them from "
                "the last snapshot"
            )

    def _cause(self) -> KafkaError:
        """The failure to name. A refused record makes librdkafka purge what is still queued
        in its transaction, and those reports ("Purged in queue") can be served before the
        refusal's own (seen once in CI): they are its consequence, so wait briefly for it."""
        deadline = time.monotonic() + CAUSE_WAIT_S
        while True:
            for err in self._failures:
                if err.code() not in PURGED:
                    return err
            if time.monotonic() >= deadline or not len(self._producer):
                return self._failures[0]
            self._producer.poll(0.1)

    def _flush(self) -> None:
        while self._producer.flush(5.0) > 0:
            log.warning("waiting for Kafka to acknowledge %d record(s) to %s[%d]",
                        len(self._producer), self._topic, self._partition)
        self._reports_served()

    def _observe_emitted(self) -> None:
        """The records are readable now: how long after their windows could close."""
        if self._closed_at:
            if self._emit_delay is not None:
                now = time.time()  # one bucket increment per bucket and commit, not per record
                observe_many(self._emit_delay, [now - closed for closed in self._closed_at])
            self._closed_at = []


class _FlushingPartition(_Partition):
    """At-least-once: idempotent producer, everything acknowledged before an epoch's snapshot."""

    def __init__(self, settings, topic, partition, resumed, legacy, render, output):
        super().__init__(settings, topic, partition, resumed, render, output, PRODUCER_CONFIG)

    def write_batch(self, values: List[List[Record]]) -> None:
        self._produce(chain.from_iterable(values))

    def snapshot(self) -> SinkSnapshot:
        self._flush()
        self._observe_emitted()
        return self._state.snapshot()

    def close(self) -> None:
        self._flush()


class _TransactionalPartition(_Partition):
    """Exactly-once: a transactional producer whose writes a resume never repeats.

    Its start (init_transactions, then the read-back) runs in a thread of its own, so that a
    process's sink partitions start side by side: one after the other, their init_transactions
    round trips alone took 1.2 s of a process's 2 s start-up with 8 partitions. Everything
    that uses the producer or the state waits for it first (`_started`), and the idle clock
    is held from here until it is done, as a slow start must not count as idle time."""

    def __init__(self, settings, topic, partition, resumed, legacy, render, output):
        super().__init__(settings, topic, partition, resumed, render, output, {
            "transactional.id": f"clickstream-{topic}-{partition}",
            "transaction.timeout.ms": settings.transaction_timeout_ms,
            **PRODUCER_CONFIG,
        })
        self._hold = IDLE_CLOCK.starting((topic, partition))
        self._hold.__enter__()  # left by the starting thread when it is done
        self._start_failure: Optional[BaseException] = None
        self._starter: Optional[threading.Thread] = threading.Thread(
            target=self._start, args=(settings, resumed, legacy), daemon=True,
            name=f"clickstream-sink-start-{partition}")
        self._lock = threading.Lock()  # the producer and the state, shared with the Committer
        self._in_transaction = False
        self._began = 0.0  # monotonic time the open transaction began
        self._last_write = 0.0  # monotonic time records were last written to it
        self._commit_interval_s = settings.commit_interval_ms / 1000
        self._suppressed = METRICS.duplicates_suppressed.labels(topic)
        self._pending = METRICS.sink_pending.labels(topic, str(partition))
        self._starter.start()
        if self._commit_interval_s:  # it commits only transactions begun, so after the start
            Committer.for_interval(self._commit_interval_s).add(self)

    def _start(self, settings: Settings, resumed: SinkSnapshot, legacy: bool) -> None:
        try:
            faults.reach("slow-sink-start")
            self._call("init_transactions", METADATA_TIMEOUT_S * 6)
            # After init_transactions a predecessor's open transaction is aborted, so the
            # read-back sees exactly what is committed. read_from is None only without recovery.
            if resumed.read_from is not None:
                read_back, end = self._read_back(settings, resumed.read_from)
                self._state = WriterState(resumed, read_back, end, legacy)
                if self._state.pending:
                    log.warning("%s[%d]: %d record(s) committed after the last snapshot will not "
                                "be written again", self._topic, self._partition,
                                self._state.pending)
            self._pending.set(self._state.pending)
        except BaseException as exc:  # stop() ends the process from here; anything else is raised
            self._start_failure = exc  # in the worker, by _started
        finally:
            self._hold.__exit__(None, None, None)

    def _started(self) -> None:
        """Wait for the start (the worker's calls only: the Committer never needs to)."""
        if self._starter is not None:
            self._starter.join()
            self._starter = None
            if self._start_failure is not None:
                raise self._start_failure

    def _call(self, method: str, timeout: Optional[float]) -> None:
        """A transactional call, retried while Kafka says it is retriable (broker restarting)."""
        deadline = time.monotonic() + (timeout or 10.0)
        while True:
            try:
                call = getattr(self._producer, method)
                call() if timeout is None else call(timeout)
                return
            except KafkaException as exc:
                error = exc.args[0]
                if error.retriable() and time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                # A refused record fails the commit too: name the record's reason if there is one.
                self._producer.poll(0)
                self._check_failures()
                stop(f"{method} on {self._topic}[{self._partition}] failed: {error.str()}; "
                     "a restart resumes from the last snapshot")

    def _read_back(self, settings: Settings, start: int) -> Tuple[Set[str], int]:
        """Identities of the records from `start` to the partition's end, and that end."""
        consumer = Consumer(client_config(
            settings, **{"group.id": "clickstream-sink-readback", "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True}))
        tp = TopicPartition(self._topic, self._partition)
        try:
            _, end = consumer.get_watermark_offsets(tp, timeout=METADATA_TIMEOUT_S)
            seen: Set[str] = set()
            if start >= end:
                return seen, end
            consumer.assign([TopicPartition(self._topic, self._partition, start)])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                for msg in consumer.consume(10000, 1.0):
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            return seen, end
                        stop(f"reading back {self._topic}[{self._partition}] failed: {err.str()}")
                    ident = dict(msg.headers() or ()).get(ID_HEADER)
                    if ident is not None:
                        key = msg.key()
                        seen.add(identity(key.decode() if key else None, ident.decode()))
                    if msg.offset() >= end - 1:
                        return seen, end
                if consumer.position([tp])[0].offset >= end:
                    return seen, end
            stop(f"reading back {self._topic}[{self._partition}] from offset {start} took over 120 s")
        finally:
            consumer.close()

    def write_batch(self, values: List[List[Record]]) -> None:
        self._started()
        records = list(chain.from_iterable(values))
        with self._lock:
            count = len(records)
            records = self._state.unwritten(records)
            if len(records) < count:
                self._suppressed.inc(count - len(records))
                self._pending.set(self._state.pending)
            if not records:
                return
            if not self._in_transaction:
                self._call("begin_transaction", None)
                self._in_transaction = True
                self._began = time.monotonic()
            self._produce(records)
            self._last_write = time.monotonic()
            if self._commit_interval_s and self._last_write - self._began >= self._commit_interval_s:
                self._commit()  # due now: no need to wait for the Committer's next look

    def commit_if_due(self, now: float, quiet_s: float) -> None:
        """Commit the open transaction if it began a commit interval ago, or if nothing was
        written to it for `quiet_s` (a burst of closed windows is over): the Committer asks."""
        if self._in_transaction and (now - self._began >= self._commit_interval_s
                                     or now - self._last_write >= quiet_s):
            with self._lock:
                if self._in_transaction:
                    self._commit()

    def snapshot(self) -> SinkSnapshot:
        self._started()
        with self._lock:
            if self._in_transaction:
                self._commit()
            return self._state.snapshot()

    def _commit(self) -> None:
        # commit_transaction flushes first; a failed delivery shows up in the reports, which
        # the poll serves, so the state knows every offset of the transaction.
        self._call("commit_transaction", COMMIT_TIMEOUT_S)
        self._in_transaction = False
        self._producer.poll(0)
        self._reports_served()
        if self._closed_at:
            faults.reach("after-commit")
        self._observe_emitted()

    def close(self) -> None:
        self._started()
        with self._lock:
            if self._in_transaction:
                self._commit()


class Committer(threading.Thread):
    """Commits the sink partitions' open transactions once they are a commit interval old, so
    a record is readable within about that interval of being written, however the writes
    come (Kafka Streams' commit.interval.ms), and as soon as a burst of writes is over: live,
    windows close in bursts, and their records need not wait for the interval. A steady flow
    (a backfill) still commits once per interval. One thread per process and interval."""

    _instances: Dict[float, "Committer"] = {}
    _guard = threading.Lock()

    def __init__(self, interval_s: float):
        super().__init__(name="clickstream-committer", daemon=True)
        self._interval = interval_s
        self._partitions: "weakref.WeakSet[_TransactionalPartition]" = weakref.WeakSet()

    @classmethod
    def for_interval(cls, interval_s: float) -> "Committer":
        with cls._guard:
            committer = cls._instances.get(interval_s)
            if committer is None:
                committer = cls._instances[interval_s] = cls(interval_s)
                committer.start()
            return committer

    def add(self, partition: "_TransactionalPartition") -> None:
        self._partitions.add(partition)

    def run(self) -> None:
        tick = min(self._interval / 5, QUIET_S)
        while True:
            time.sleep(tick)
            now = time.monotonic()
            for partition in list(self._partitions):
                partition.commit_if_due(now, QUIET_S)
