"""Settings from the environment: defaults, parsing, and one-line errors naming the variable."""

import pytest

from clickstream.runtime.settings import Settings, SettingsError


def test_defaults_are_the_spec_defaults():
    s = Settings.from_env({})
    assert (s.brokers, s.input_topic, s.user_topic, s.page_topic, s.dlq_topic, s.window_ms,
            s.lateness_ms, s.bounded) == (("127.0.0.1:9092",), "website-clicks", "user-metrics",
                                          "page-metrics", "clickstream-dlq", 5000, 10000, False)
    assert (s.exactly_once, s.transaction_timeout_ms, s.commit_interval_ms, s.fresh_start,
            s.consumer_group, s.partition_check_ms, s.recovery_per_process, s.kafka) == (
        True, 120000, 100, False, "clickstream", 10000, False, ())
    assert s.bootstrap_servers == "127.0.0.1:9092"


@pytest.mark.parametrize("env, field, value", [
    ({"CLICKSTREAM_BROKERS": "a:1, b:2 ,"}, "brokers", ("a:1", "b:2")),
    ({"CLICKSTREAM_WINDOW_SECONDS": "60"}, "window_ms", 60000),
    ({"CLICKSTREAM_WINDOW_SECONDS": "0.25"}, "window_ms", 250),
    ({"CLICKSTREAM_WINDOW_SECONDS": " 5 "}, "window_ms", 5000),
    ({"CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "0"}, "lateness_ms", 0),
    ({"CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "2.5"}, "lateness_ms", 2500),
    ({"CLICKSTREAM_BOUNDED": "1"}, "bounded", True),
    ({"CLICKSTREAM_BOUNDED": "true"}, "bounded", True),
    ({"CLICKSTREAM_BOUNDED": "0"}, "bounded", False),
    ({"CLICKSTREAM_BOUNDED": ""}, "bounded", False),
    ({"CLICKSTREAM_INPUT_TOPIC": "my.topic_1-x"}, "input_topic", "my.topic_1-x"),
    ({}, "commit_interval_ms", 100),
    ({"CLICKSTREAM_COMMIT_INTERVAL_SECONDS": "0"}, "commit_interval_ms", 0),
    ({"CLICKSTREAM_COMMIT_INTERVAL_SECONDS": "0.1"}, "commit_interval_ms", 100),
    ({"CLICKSTREAM_COMMIT_INTERVAL_SECONDS": "0.25"}, "commit_interval_ms", 250),
])
def test_values_are_read(env, field, value):
    assert getattr(Settings.from_env(env), field) == value


@pytest.mark.parametrize("name, value", [
    ("CLICKSTREAM_WINDOW_SECONDS", "0"),
    ("CLICKSTREAM_WINDOW_SECONDS", "-1"),
    ("CLICKSTREAM_WINDOW_SECONDS", "abc"),
    ("CLICKSTREAM_WINDOW_SECONDS", "nan"),
    ("CLICKSTREAM_WINDOW_SECONDS", "inf"),
    ("CLICKSTREAM_WINDOW_SECONDS", "0.0001"),
    ("CLICKSTREAM_WINDOW_SECONDS", ""),
    ("CLICKSTREAM_ALLOWED_LATENESS_SECONDS", "-0.5"),
    ("CLICKSTREAM_COMMIT_INTERVAL_SECONDS", "-1"),
    ("CLICKSTREAM_COMMIT_INTERVAL_SECONDS", "soon"),
    ("CLICKSTREAM_ALLOWED_LATENESS_SECONDS", "ten"),
    ("CLICKSTREAM_BROKERS", ""),
    ("CLICKSTREAM_BROKERS", "localhost"),
    ("CLICKSTREAM_BROKERS", "host:99999"),
    ("CLICKSTREAM_BROKERS", "host:port"),
    ("CLICKSTREAM_INPUT_TOPIC", ""),
    ("CLICKSTREAM_USER_TOPIC", "has space"),
    ("CLICKSTREAM_PAGE_TOPIC", ".."),
    ("CLICKSTREAM_DLQ_TOPIC", "x" * 250),
    ("CLICKSTREAM_BOUNDED", "maybe"),
])
def test_bad_values_name_the_setting_in_one_line(name, value):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    message = str(err.value)
    assert message.startswith(name) and "\n" not in message
