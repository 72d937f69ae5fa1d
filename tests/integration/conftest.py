"""A real Kafka broker for the integration tests: the one at CLICKSTREAM_BROKERS when it
answers, else a local one started here with scripts/kafka.sh (and stopped afterwards)."""

import os
import socket
import subprocess

import pytest

from tests.integration.kafka_io import ROOT, make_topics


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def brokers():
    address = os.environ.get("CLICKSTREAM_BROKERS", "127.0.0.1:9092").split(",")[0]
    if _answers(address):
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
