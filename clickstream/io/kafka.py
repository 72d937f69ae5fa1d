"""Kafka clients of the service: their config, the start-up checks, topics and end offsets.

Every client gets its config from `client_config`, so the pass-through security properties
reach all of them and their secrets are registered for redaction before any line is printed.
"""

import logging
import socket
import time
from typing import Dict, Iterable, List, Optional

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from clickstream.runtime import exits
from clickstream.runtime.settings import KAFKA_PREFIX, Settings, SettingsError

METADATA_TIMEOUT_S = 10.0
Offsets = Dict[str, Dict[int, int]]  # topic -> partition -> offset


def quiet_logger(name: str = "clickstream.librdkafka") -> logging.Logger:
    """librdkafka's own log lines (connect retries...) go here instead of burying ours."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False
    return logger


def client_config(settings: Settings, **extra) -> dict:
    """librdkafka config: brokers, the pass-through security properties, then `extra`."""
    exits.redact_with(settings.redact)
    config = {"bootstrap.servers": settings.bootstrap_servers, "logger": quiet_logger()}
    config.update(settings.kafka)
    config.update(extra)
    return config


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
    for name, topic in settings.topics():
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
    if created:
        wait_until_served(admin, created, 3 * METADATA_TIMEOUT_S)
    return created


def wait_until_served(admin: AdminClient, topics: Iterable[str], timeout_s: float) -> bool:
    """Wait until every partition of the just created `topics` has a leader that serves it;
    True once they do. A client that looks sooner is told "unknown topic" (seen once in
    `make demo`) or, while the metadata already names a leader that does not serve the
    partition yet, NOT_LEADER_FOR_PARTITION (seen once in CI): so ask for offsets too."""
    names = list(topics)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=METADATA_TIMEOUT_S).topics
        if all(t in meta and meta[t].error is None and meta[t].partitions
               and all(p.leader >= 0 for p in meta[t].partitions.values()) for t in names):
            wanted = {TopicPartition(t, p): OffsetSpec.latest()
                      for t in names for p in meta[t].partitions}
            try:
                for future in admin.list_offsets(wanted,
                                                 request_timeout=METADATA_TIMEOUT_S).values():
                    future.result()
                return True
            except KafkaException:
                pass  # not served yet: look again
        time.sleep(0.2)
    return False


def end_offsets(settings: Settings, partitions: Dict[str, int], topics: Iterable[str]) -> Offsets:
    """Where each partition of `topics` ends now."""
    consumer = Consumer(client_config(settings, **{"group.id": "clickstream-origin"}))
    try:
        return {
            topic: {p: consumer.get_watermark_offsets(TopicPartition(topic, p),
                                                      timeout=METADATA_TIMEOUT_S)[1]
                    for p in range(partitions[topic])}
            for topic in topics
        }
    finally:
        consumer.close()
