"""Kafka security settings pass through to librdkafka; secrets never reach logs or errors.

A broker of the test's own with a SASL_PLAINTEXT (PLAIN) listener: the whole service runs over
SASL, and a wrong password or a bad property is one line without the secret in it.
"""

import json

import pytest

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import make_topics, produce, run_dataflow

pytestmark = pytest.mark.integration

USER, PASSWORD = "clickstream", "s3cret-Pa55word"


def sasl_env(password=PASSWORD, **extra):
    return dict(CLICKSTREAM_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                CLICKSTREAM_KAFKA_SASL_MECHANISM="PLAIN",
                CLICKSTREAM_KAFKA_SASL_USERNAME=USER,
                CLICKSTREAM_KAFKA_SASL_PASSWORD=password, **extra)


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    from tests.integration.conftest import OwnBroker

    broker = OwnBroker(tmp_path_factory.mktemp("kafka-sasl"), 19192,
                       KAFKA_SASL_USER=USER, KAFKA_SASL_PASSWORD=PASSWORD)
    broker.up()
    yield broker
    broker.down()


def test_the_service_runs_over_sasl(sasl_broker):
    topics = make_topics(sasl_broker.address)  # created over the plaintext listener
    topics.brokers = "127.0.0.1:19194"  # the SASL listener
    events = [{"user_id": f"u{i % 2}", "event_type": "click", "url": "/", "ts": 1767225600000 + i}
              for i in range(10)]
    inputs = produce(sasl_broker.address, topics.input,
                     [(e["user_id"].encode(), json.dumps(e).encode(), 0) for e in events])
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1, **sasl_env()))
    assert result.returncode == 0, result.stderr[-2000:]
    assert PASSWORD not in result.stderr + result.stdout
    topics.brokers = sasl_broker.address
    assert_matches(topics, inputs)


@pytest.mark.parametrize("extra, words", [
    (dict(password="wrong-" + PASSWORD), "no Kafka broker answered"),
    (dict(CLICKSTREAM_KAFKA_SASL_MECHANISMZ="PLAIN"), "CLICKSTREAM_KAFKA_"),
])
def test_bad_security_settings_are_one_line_without_the_secret(sasl_broker, extra, words):
    topics = make_topics(sasl_broker.address)
    topics.brokers = "127.0.0.1:19194"
    result = run_dataflow(topics.env(**sasl_env(**extra)), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Pa55word" not in result.stderr + result.stdout
