"""Threads that watch the cluster's input from outside the dataflow: new input partitions,
and whether every process has caught up (which the idle clock waits for)."""

import logging
import threading
import time
from typing import Optional

from confluent_kafka import (ConsumerGroupTopicPartitions, IsolationLevel, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, OffsetSpec

from clickstream.io.kafka import METADATA_TIMEOUT_S, client_config
from clickstream.runtime.exits import RESTART_STATUS, stop
from clickstream.runtime.liveness import CommitWatch
from clickstream.runtime.progress import IDLE_CLOCK, IdleClock
from clickstream.runtime.settings import Settings

log = logging.getLogger("clickstream.watchers")


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
    whose events will reach this process's windows. Every half second this thread reads what all
    processes committed to the consumer group at their snapshots, offsets and marks, and
    reports the whole input as one more "partition" to the idle clock, by the rule of
    `runtime.liveness` (how late it can err is written there).
    """

    def __init__(self, settings: Settings, partitions: int, clock: IdleClock = IDLE_CLOCK,
                 interval_s: float = 0.5, watch: Optional[CommitWatch] = None):
        super().__init__(name="clickstream-cluster-progress", daemon=True)
        self._settings = settings
        self._partitions = partitions
        self._clock = clock
        self._interval = interval_s
        self._watch = watch or CommitWatch()
        self._failures = 0
        self._clock.report(self._KEY, False, confirms=False)  # not caught up until shown to be

    _KEY = ("cluster", -1)

    def caught_up(self, admin: AdminClient) -> bool:
        topic = self._settings.input_topic
        wanted = [TopicPartition(topic, p) for p in range(self._partitions)]
        request = ConsumerGroupTopicPartitions(self._settings.consumer_group, wanted)
        result = admin.list_consumer_group_offsets([request])[self._settings.consumer_group]
        committed = {tp.partition: (tp.offset, tp.metadata)
                     for tp in result.result(timeout=METADATA_TIMEOUT_S).topic_partitions}
        # One request for every partition's end; read_committed, as the sources read: an open
        # transaction's records are not there to be read yet.
        ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in wanted},
                                  isolation_level=IsolationLevel.READ_COMMITTED,
                                  request_timeout=METADATA_TIMEOUT_S)
        looks = {}
        for tp, future in ends.items():
            offset, metadata = committed.get(tp.partition, (-1, None))
            looks[tp.partition] = (offset, future.result().offset, metadata)
        return self._watch.caught_up(looks)

    _WARN_AFTER = 20  # failed looks in a row (10 s) before saying so: a broker restart is shorter

    def look(self, admin: AdminClient) -> bool:
        """One look; a failure counts as a backlog (the clock stops), and a failure that lasts
        is logged once, since quiet users' windows wait meanwhile."""
        try:
            caught_up = self.caught_up(admin)
        except Exception as exc:
            self._failures += 1
            if self._failures == self._WARN_AFTER:
                log.warning("cluster progress unknown for %d looks (%s); idle closing waits "
                            "until the consumer group %s can be read", self._failures, exc,
                            self._settings.consumer_group)
            return False
        if self._failures >= self._WARN_AFTER:
            log.warning("cluster progress readable again after %d failed looks", self._failures)
        self._failures = 0
        return caught_up

    def run(self) -> None:
        admin = AdminClient(client_config(self._settings))
        while True:
            self._clock.report(self._KEY, self.look(admin), confirms=False)
            time.sleep(self._interval)
