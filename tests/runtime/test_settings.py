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
    assert (s.state_ttl_ms, s.max_future_ms, s.drop_url_query) == (3600000, 3600000, False)
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
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "86400"}, "state_ttl_ms", 86_400_000),
    ({}, "session_topic", "user-sessions"),
    ({"CLICKSTREAM_SESSION_TOPIC": ""}, "session_topic", ""),  # sessions off
    ({"CLICKSTREAM_SESSION_TOPIC": "  "}, "session_topic", ""),
    ({}, "session_gap_ms", 1_800_000),
    ({"CLICKSTREAM_SESSION_GAP_SECONDS": "0.5"}, "session_gap_ms", 500),
    ({}, "session_max_ms", 86_400_000),
    ({"CLICKSTREAM_SESSION_MAX_SECONDS": "15"}, "session_max_ms", 15_000),  # exactly W + L
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "15"}, "state_ttl_ms", 15000),  # exactly W + L
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "2.5", "CLICKSTREAM_WINDOW_SECONDS": "1",
      "CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "1.5"}, "state_ttl_ms", 2500),
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "1", "CLICKSTREAM_WINDOW_SECONDS": "1",
      "CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "0"}, "state_ttl_ms", 1000),
    ({"CLICKSTREAM_MAX_FUTURE_SECONDS": "60"}, "max_future_ms", 60000),
    ({"CLICKSTREAM_MAX_FUTURE_SECONDS": "0.001"}, "max_future_ms", 1),
    ({"CLICKSTREAM_MAX_FUTURE_SECONDS": " 86400 "}, "max_future_ms", 86_400_000),
    ({"CLICKSTREAM_PAGE_URL_QUERY": "keep"}, "drop_url_query", False),
    ({"CLICKSTREAM_PAGE_URL_QUERY": "drop"}, "drop_url_query", True),
    ({"CLICKSTREAM_PAGE_URL_QUERY": "DROP"}, "drop_url_query", True),
    ({"CLICKSTREAM_PAGE_URL_QUERY": " Keep "}, "drop_url_query", False),
    ({}, "to_kafka", True),
    ({}, "to_postgres", False),
    ({"CLICKSTREAM_OUTPUTS": "postgres"}, "to_kafka", False),
    ({"CLICKSTREAM_OUTPUTS": "postgres"}, "to_postgres", True),
    ({"CLICKSTREAM_OUTPUTS": "Kafka, postgres"}, "to_postgres", True),
    ({"CLICKSTREAM_OUTPUTS": "postgres,kafka"}, "to_kafka", True),
    ({}, "postgres_dsn", "postgresql://clickstream@127.0.0.1:15432/clickstream"),
    ({}, "postgres_retention_days", 0),
    ({"CLICKSTREAM_POSTGRES_RETENTION_DAYS": "90"}, "postgres_retention_days", 90),
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
    ("CLICKSTREAM_SESSION_GAP_SECONDS", "0"),
    ("CLICKSTREAM_SESSION_GAP_SECONDS", "-1"),
    ("CLICKSTREAM_SESSION_GAP_SECONDS", "half an hour"),
    ("CLICKSTREAM_SESSION_MAX_SECONDS", "14.999"),  # below W + L = 15
    ("CLICKSTREAM_SESSION_MAX_SECONDS", "a day"),
    ("CLICKSTREAM_SESSION_TOPIC", "bad topic"),
    ("CLICKSTREAM_STATE_TTL_SECONDS", "14.999"),  # below W + L = 15
    ("CLICKSTREAM_STATE_TTL_SECONDS", "0"),
    ("CLICKSTREAM_STATE_TTL_SECONDS", "-3600"),
    ("CLICKSTREAM_STATE_TTL_SECONDS", "an hour"),
    ("CLICKSTREAM_STATE_TTL_SECONDS", "inf"),
    ("CLICKSTREAM_STATE_TTL_SECONDS", ""),
    ("CLICKSTREAM_MAX_FUTURE_SECONDS", "0"),
    ("CLICKSTREAM_MAX_FUTURE_SECONDS", "-1"),
    ("CLICKSTREAM_MAX_FUTURE_SECONDS", "0.0001"),
    ("CLICKSTREAM_MAX_FUTURE_SECONDS", "soon"),
    ("CLICKSTREAM_MAX_FUTURE_SECONDS", "nan"),
    ("CLICKSTREAM_PAGE_URL_QUERY", "strip"),
    ("CLICKSTREAM_PAGE_URL_QUERY", ""),
    ("CLICKSTREAM_PAGE_URL_QUERY", "1"),
    ("CLICKSTREAM_OUTPUTS", "mysql"),
    ("CLICKSTREAM_OUTPUTS", ","),
    ("CLICKSTREAM_POSTGRES_RETENTION_DAYS", "-1"),
    ("CLICKSTREAM_POSTGRES_RETENTION_DAYS", "1.5"),
])
def test_bad_values_name_the_setting_in_one_line(name, value):
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: value})
    message = str(err.value)
    assert message.startswith(name) and "\n" not in message


@pytest.mark.parametrize("env, message", [
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "10"},
     "CLICKSTREAM_STATE_TTL_SECONDS='10' must be at least CLICKSTREAM_WINDOW_SECONDS + "
     "CLICKSTREAM_ALLOWED_LATENESS_SECONDS (15)"),
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "-1"},
     "CLICKSTREAM_STATE_TTL_SECONDS='-1' must be at least CLICKSTREAM_WINDOW_SECONDS + "
     "CLICKSTREAM_ALLOWED_LATENESS_SECONDS (15)"),
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "3600", "CLICKSTREAM_WINDOW_SECONDS": "3600",
      "CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "0.5"},
     "CLICKSTREAM_STATE_TTL_SECONDS='3600' must be at least CLICKSTREAM_WINDOW_SECONDS + "
     "CLICKSTREAM_ALLOWED_LATENESS_SECONDS (3600.5)"),
    ({"CLICKSTREAM_STATE_TTL_SECONDS": "x"},
     "CLICKSTREAM_STATE_TTL_SECONDS='x' is not a number of seconds"),
    ({"CLICKSTREAM_MAX_FUTURE_SECONDS": "0"},
     "CLICKSTREAM_MAX_FUTURE_SECONDS must be greater than 0"),
    ({"CLICKSTREAM_PAGE_URL_QUERY": "Strip"},
     "CLICKSTREAM_PAGE_URL_QUERY='strip' is not keep or drop"),
])
def test_new_settings_errors_say_what_is_wrong(env, message):
    with pytest.raises(SettingsError) as err:
        Settings.from_env(env)
    assert str(err.value) == message


def test_a_longer_window_raises_the_least_state_ttl():
    # The TTL default (1 h) is checked against W + L as set, not as defaulted.
    with pytest.raises(SettingsError, match=r"^CLICKSTREAM_STATE_TTL_SECONDS='3600' must be "):
        Settings.from_env({"CLICKSTREAM_WINDOW_SECONDS": "3600",
                           "CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "10"})
    assert Settings.from_env({"CLICKSTREAM_WINDOW_SECONDS": "3600",
                              "CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "10",
                              "CLICKSTREAM_STATE_TTL_SECONDS": "3610"}).state_ttl_ms == 3_610_000


def test_postgres_only_reads_and_writes_only_the_input_topic():
    settings = Settings.from_env({"CLICKSTREAM_OUTPUTS": "postgres"})
    assert settings.topics() == (("CLICKSTREAM_INPUT_TOPIC", "website-clicks"),)
    assert len(Settings.from_env({}).topics()) == 5
    assert len(Settings.from_env({"CLICKSTREAM_SESSION_TOPIC": ""}).topics()) == 4


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://clickstream@127.0.0.1:15432/clickstream",
     "postgresql://clickstream@127.0.0.1:15432/clickstream"),
    ("postgresql://app:pa55-w0rd@db:5432/x", "postgresql://app:***@db:5432/x"),
    ("postgres://app:pa55@db/x?sslmode=require", "postgres://app:***@db/x?sslmode=require"),
    ("host=db user=app password=pa55-w0rd dbname=x", "host=db user=app password=*** dbname=x"),
    ("host=db password='pa 55' dbname=x", "host=db password='***' dbname=x"),
])
def test_the_postgres_password_never_shows(dsn, shown):
    settings = Settings.from_env({"CLICKSTREAM_OUTPUTS": "postgres",
                                  "CLICKSTREAM_POSTGRES_DSN": dsn})
    assert settings.dsn_shown == shown
    assert "pa55" not in repr(settings) and "pa 55" not in repr(settings)
    assert settings.redact(f"failed for {dsn}") == f"failed for {shown}"
