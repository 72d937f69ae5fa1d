"""A bad setting stops the dataflow at start with one line naming it, exit status 2."""

import pytest

from tests.integration.kafka_io import run_dataflow

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("setting, value, words", [
    ("CLICKSTREAM_WINDOW_SECONDS", "0", "must be greater than 0"),
    ("CLICKSTREAM_WINDOW_SECONDS", "-5", "must be greater than 0"),
    ("CLICKSTREAM_WINDOW_SECONDS", "five", "is not a number"),
    ("CLICKSTREAM_ALLOWED_LATENESS_SECONDS", "-1", "must not be negative"),
    ("CLICKSTREAM_ALLOWED_LATENESS_SECONDS", "1e", "is not a number"),
    ("CLICKSTREAM_INPUT_TOPIC", "no-such-topic-here", "no such topic"),
    ("CLICKSTREAM_DLQ_TOPIC", "no-such-dlq-here", "no such topic"),
    ("CLICKSTREAM_BROKERS", "127.0.0.1:9", "no Kafka broker answered"),
    ("CLICKSTREAM_BROKERS", "nonsense", "is not host:port"),
    ("CLICKSTREAM_BOUNDED", "maybe", "CLICKSTREAM_BOUNDED"),
])
def test_bad_setting_is_one_line_naming_it(topics, setting, value, words):
    result = run_dataflow(topics.env(**{setting: value}), timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert setting in lines[0] and words in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
