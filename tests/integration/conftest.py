"""A real Kafka broker for the integration tests: the one at CLICKSTREAM_BROKERS when it
answers, else a local one started here with scripts/kafka.sh (and stopped afterwards)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from clickstream.io.kafka import broker_answers
from tests.integration.kafka_io import ROOT, make_topics


@pytest.fixture(scope="session")
def brokers():
    address = os.environ.get("CLICKSTREAM_BROKERS", "127.0.0.1:9092").split(",")[0]
    if broker_answers(address):
        yield address
        return
    port = address.rpartition(":")[2]
    env = dict(os.environ, KAFKA_PORT=port)
    subprocess.run([str(ROOT / "scripts/kafka.sh"), "up"], check=True, env=env)
    try:
        yield address
    finally:
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "down"], env=env)


@pytest.fixture
def topics(brokers):
    """Fresh input/output topics for one test (2 input partitions, 2 per output)."""
    return make_topics(brokers)


class OwnBroker:
    """A broker of a test's own (its port, its data): for tests that stop the broker or
    need a SASL listener, so the shared one is never disturbed."""

    def __init__(self, home, port: int, **extra_env):
        self.port = port
        self.address = f"127.0.0.1:{port}"
        self.env = dict(os.environ, KAFKA_PORT=str(port), KAFKA_HOME=str(home), **extra_env)

    def up(self):
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "up"], check=True, env=self.env,
                       stdout=subprocess.DEVNULL)

    def down(self):
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "down"], env=self.env,
                       stdout=subprocess.DEVNULL)

    def kill(self):
        pid = int((Path(self.env["KAFKA_HOME"]) / f"broker-{self.port}.pid").read_text())
        os.kill(pid, 9)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.1)


@pytest.fixture
def own_broker(tmp_path_factory):
    brokers = []

    def start(port: int, **extra_env) -> OwnBroker:
        broker = OwnBroker(tmp_path_factory.mktemp(f"kafka-{port}"), port, **extra_env)
        broker.up()
        brokers.append(broker)
        return broker

    yield start
    for broker in brokers:
        broker.down()


def pytest_collection_modifyitems(config, items):
    """Soak tests run only when asked for (`make soak`, i.e. CLICKSTREAM_SOAK=1)."""
    if os.environ.get("CLICKSTREAM_SOAK") == "1":
        return
    skip = pytest.mark.skip(reason="long soak: run with `make soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)
