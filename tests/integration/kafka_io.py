"""Test-side Kafka plumbing: topics per test, producing, reading a topic back whole, and
running the dataflow as the user would (`python -m bytewax.run`)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clickstream.io.kafka import wait_until_served
from tests.integration.oracle import Message

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Topics:
    brokers: str
    input: str
    user: str
    page: str
    dlq: str
    sessions: str = ""  # the user-sessions topic; "" turns sessions off

    def env(self, **extra) -> Dict[str, str]:
        env = dict(os.environ)
        env.update({
            "CLICKSTREAM_BROKERS": self.brokers,
            "CLICKSTREAM_INPUT_TOPIC": self.input,
            "CLICKSTREAM_USER_TOPIC": self.user,
            "CLICKSTREAM_PAGE_TOPIC": self.page,
            "CLICKSTREAM_DLQ_TOPIC": self.dlq,
            "CLICKSTREAM_SESSION_TOPIC": self.sessions,
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env


def make_topics(brokers: str, input_partitions: int = 2, output_partitions: int = 2) -> Topics:
    suffix = uuid.uuid4().hex[:10]
    topics = Topics(brokers, f"in-{suffix}", f"user-{suffix}", f"page-{suffix}", f"dlq-{suffix}",
                    f"sessions-{suffix}")
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([
        NewTopic(topics.input, input_partitions, 1),
        NewTopic(topics.user, output_partitions, 1),
        NewTopic(topics.page, output_partitions, 1),
        NewTopic(topics.dlq, output_partitions, 1),
        NewTopic(topics.sessions, output_partitions, 1),
    ])
    for future in futures.values():
        future.result(timeout=30)
    names = [topics.input, topics.user, topics.page, topics.dlq, topics.sessions]
    if not wait_until_served(admin, names, 30):
        raise AssertionError(f"topics {names} never became ready")
    return topics


def produce(brokers: str, topic: str, items: Iterable[Tuple[Optional[bytes], Optional[bytes], int]]
            ) -> List[Message]:
    """Produce (key, value, partition) in order; returns the messages with their offsets."""
    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    delivered: List[Message] = []
    errors: List[str] = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err.str())
        else:
            delivered.append(Message(msg.partition(), msg.offset(), msg.key(), msg.value()))

    for key, value, partition in items:
        producer.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(30) == 0, "produce did not finish"
    assert not errors, errors
    return delivered


def read_topic(brokers: str, topic: str, timeout: float = 30.0) -> List[Message]:
    """Every committed record now on the topic (read_committed, up to the end offsets)."""
    consumer = Consumer({
        "bootstrap.servers": brokers, "group.id": f"test-{uuid.uuid4().hex}",
        "isolation.level": "read_committed", "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    meta = consumer.list_topics(topic, timeout=10).topics[topic]
    parts = sorted(meta.partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: List[Message] = []
    done = set()
    deadline = time.time() + timeout
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
    for p, end in ends.items():
        if end == 0:
            done.add(p)
    while len(done) < len(parts):
        assert time.time() < deadline, f"reading {topic} timed out"
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                done.add(msg.partition())
                continue
            raise AssertionError(msg.error().str())
        out.append(Message(msg.partition(), msg.offset(), msg.key(), msg.value()))
    consumer.close()
    return out


def dataflow_command(*flags: str) -> List[str]:
    return [sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow", *flags]


def run_dataflow(env: Dict[str, str], *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(dataflow_command(*flags), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def start_dataflow(env: Dict[str, str], *flags: str, log: Optional[Path] = None) -> subprocess.Popen:
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(dataflow_command(*flags), cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 30) -> int:
    if process.poll() is None:
        os.killpg(process.pid, sig)
    return process.wait(timeout)


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
