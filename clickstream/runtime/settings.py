"""Service settings: one frozen object read from the environment, checked once at start.

A bad value stops the program before any work with a single line that names the variable
(`SettingsError`); `dataflows/clickstream.py` prints that line and exits 2, no traceback.
"""

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from clickstream.core.times import seconds_text

DEFAULTS = {
    "CLICKSTREAM_BROKERS": "127.0.0.1:9092",
    "CLICKSTREAM_INPUT_TOPIC": "website-clicks",
    "CLICKSTREAM_USER_TOPIC": "user-metrics",
    "CLICKSTREAM_PAGE_TOPIC": "page-metrics",
    "CLICKSTREAM_DLQ_TOPIC": "clickstream-dlq",
    "CLICKSTREAM_WINDOW_SECONDS": "5",
    "CLICKSTREAM_ALLOWED_LATENESS_SECONDS": "10",
    "CLICKSTREAM_BOUNDED": "",
    "CLICKSTREAM_DELIVERY": "exactly-once",
    "CLICKSTREAM_TRANSACTION_TIMEOUT_SECONDS": "120",
    "CLICKSTREAM_COMMIT_INTERVAL_SECONDS": "0.1",
    "CLICKSTREAM_FRESH_START": "",
    "CLICKSTREAM_CONSUMER_GROUP": "clickstream",
    "CLICKSTREAM_PARTITION_CHECK_SECONDS": "10",
    "CLICKSTREAM_RECOVERY_LAYOUT": "shared",
    "CLICKSTREAM_OUTPUTS": "kafka",
    "CLICKSTREAM_POSTGRES_DSN": "postgresql://clickstream@127.0.0.1:15432/clickstream",
    "CLICKSTREAM_POSTGRES_RETENTION_DAYS": "0",
    "CLICKSTREAM_STATE_TTL_SECONDS": "3600",
    "CLICKSTREAM_MAX_FUTURE_SECONDS": "3600",
    "CLICKSTREAM_PAGE_URL_QUERY": "keep",
    "CLICKSTREAM_SESSION_TOPIC": "user-sessions",
    "CLICKSTREAM_SESSION_GAP_SECONDS": "1800",
    "CLICKSTREAM_SESSION_MAX_SECONDS": "86400",
}
KAFKA_PREFIX = "CLICKSTREAM_KAFKA_"  # CLICKSTREAM_KAFKA_SASL_USERNAME=x -> sasl.username=x
SECRET_WORDS = ("password", "secret", "key", "token", "jaas", "credential")


class SettingsError(ValueError):
    """A setting is unusable; str() is one line naming it."""


# The topic settings and the Settings field each one fills.
TOPIC_SETTINGS = (("CLICKSTREAM_INPUT_TOPIC", "input_topic"), ("CLICKSTREAM_USER_TOPIC", "user_topic"),
                  ("CLICKSTREAM_PAGE_TOPIC", "page_topic"), ("CLICKSTREAM_DLQ_TOPIC", "dlq_topic"),
                  ("CLICKSTREAM_SESSION_TOPIC", "session_topic"))


@dataclass(frozen=True)
class Settings:
    """The service's settings, checked; `from_env({})` gives the defaults (DEFAULTS above)."""

    brokers: Tuple[str, ...]
    input_topic: str
    user_topic: str
    page_topic: str
    dlq_topic: str
    session_topic: str  # "": user sessions are off
    session_gap_ms: int
    session_max_ms: int
    window_ms: int
    lateness_ms: int
    bounded: bool
    exactly_once: bool
    transaction_timeout_ms: int
    commit_interval_ms: int  # exactly-once: commit open transactions this old; 0: per epoch only
    fresh_start: bool
    consumer_group: str
    partition_check_ms: int  # 0: do not watch the input topic for new partitions
    recovery_per_process: bool  # each process has its own recovery directory
    state_ttl_ms: int  # key state idle this long behind its shard's event time is forgotten
    max_future_ms: int  # an event time further ahead of its record's timestamp is malformed
    drop_url_query: bool  # page keys are urls without their query string and fragment
    to_kafka: bool  # CLICKSTREAM_OUTPUTS holds kafka
    to_postgres: bool  # ... and/or postgres
    postgres_retention_days: int  # 0: keep every daily partition
    # the libpq DSN (may hold a password): kept out of repr, shown only through `dsn_shown`
    postgres_dsn: str = field(default="", repr=False)
    # librdkafka properties passed through (security.protocol, sasl.*, ssl.*); kept out of repr
    kafka: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(self.brokers)

    @property
    def sessions(self) -> bool:
        return bool(self.session_topic)

    @property
    def output_topics(self) -> Tuple[str, ...]:
        sessions = (self.session_topic,) if self.session_topic else ()
        return (self.user_topic, self.page_topic, self.dlq_topic, *sessions)

    def topics(self) -> Tuple[Tuple[str, str], ...]:
        """(setting name, topic) of every topic the service reads or writes: the output topics
        only when the outputs include Kafka."""
        used = TOPIC_SETTINGS if self.to_kafka else TOPIC_SETTINGS[:1]
        return tuple((name, getattr(self, attr)) for name, attr in used if getattr(self, attr))

    @property
    def dsn_shown(self) -> str:
        """The PostgreSQL DSN with its password, if any, masked: safe to print."""
        return redact_dsn(self.postgres_dsn)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if env is None else env

        def get(name: str) -> str:
            return env.get(name, DEFAULTS[name]).strip()

        brokers = tuple(b.strip() for b in get("CLICKSTREAM_BROKERS").split(",") if b.strip())
        if not brokers:
            raise SettingsError("CLICKSTREAM_BROKERS is empty; give host:port[,host:port...]")
        for broker in brokers:
            host, _, port = broker.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise SettingsError(f"CLICKSTREAM_BROKERS entry {broker!r} is not host:port")
        topics = {attr: _topic_name(name, get(name)) for name, attr in TOPIC_SETTINGS
                  if attr != "session_topic" or get(name)}  # an empty one turns sessions off
        topics.setdefault("session_topic", "")
        window_ms = _seconds_to_ms("CLICKSTREAM_WINDOW_SECONDS", get("CLICKSTREAM_WINDOW_SECONDS"))
        if window_ms <= 0:
            raise SettingsError("CLICKSTREAM_WINDOW_SECONDS must be greater than 0")
        lateness_ms = _seconds_to_ms(
            "CLICKSTREAM_ALLOWED_LATENESS_SECONDS", get("CLICKSTREAM_ALLOWED_LATENESS_SECONDS")
        )
        if lateness_ms < 0:
            raise SettingsError("CLICKSTREAM_ALLOWED_LATENESS_SECONDS must not be negative")
        delivery = get("CLICKSTREAM_DELIVERY").lower()
        if delivery not in ("exactly-once", "at-least-once"):
            raise SettingsError(
                f"CLICKSTREAM_DELIVERY={delivery!r} is not exactly-once or at-least-once")
        timeout_ms = _seconds_to_ms("CLICKSTREAM_TRANSACTION_TIMEOUT_SECONDS",
                                    get("CLICKSTREAM_TRANSACTION_TIMEOUT_SECONDS"))
        if not 1000 <= timeout_ms <= 900_000:
            raise SettingsError("CLICKSTREAM_TRANSACTION_TIMEOUT_SECONDS must be between 1 and 900 "
                                "(the broker's transaction.max.timeout.ms)")
        commit_interval_ms = _seconds_to_ms("CLICKSTREAM_COMMIT_INTERVAL_SECONDS",
                                            get("CLICKSTREAM_COMMIT_INTERVAL_SECONDS"))
        if commit_interval_ms < 0:
            raise SettingsError("CLICKSTREAM_COMMIT_INTERVAL_SECONDS must not be negative")
        partition_check_ms = _seconds_to_ms("CLICKSTREAM_PARTITION_CHECK_SECONDS",
                                            get("CLICKSTREAM_PARTITION_CHECK_SECONDS"))
        if partition_check_ms < 0:
            raise SettingsError("CLICKSTREAM_PARTITION_CHECK_SECONDS must not be negative")
        layout = get("CLICKSTREAM_RECOVERY_LAYOUT").lower()
        if layout not in ("shared", "per-process"):
            raise SettingsError(f"CLICKSTREAM_RECOVERY_LAYOUT={layout!r} is not shared or per-process")
        ttl_text = get("CLICKSTREAM_STATE_TTL_SECONDS")
        state_ttl_ms = _seconds_to_ms("CLICKSTREAM_STATE_TTL_SECONDS", ttl_text)
        # Shorter would forget a key whose window may still take an on-time event.
        if state_ttl_ms < window_ms + lateness_ms:
            raise SettingsError(
                f"CLICKSTREAM_STATE_TTL_SECONDS={ttl_text!r} must be at least "
                "CLICKSTREAM_WINDOW_SECONDS + CLICKSTREAM_ALLOWED_LATENESS_SECONDS "
                f"({seconds_text(window_ms + lateness_ms)})")
        max_future_ms = _seconds_to_ms("CLICKSTREAM_MAX_FUTURE_SECONDS",
                                       get("CLICKSTREAM_MAX_FUTURE_SECONDS"))
        if max_future_ms <= 0:
            raise SettingsError("CLICKSTREAM_MAX_FUTURE_SECONDS must be greater than 0")
        gap_ms = _seconds_to_ms("CLICKSTREAM_SESSION_GAP_SECONDS",
                                get("CLICKSTREAM_SESSION_GAP_SECONDS"))
        if gap_ms <= 0:
            raise SettingsError("CLICKSTREAM_SESSION_GAP_SECONDS must be greater than 0")
        max_text = get("CLICKSTREAM_SESSION_MAX_SECONDS")
        session_max_ms = _seconds_to_ms("CLICKSTREAM_SESSION_MAX_SECONDS", max_text)
        # Shorter could re-cut a session whose events were already folded (core/sessions.py).
        if session_max_ms < window_ms + lateness_ms:
            raise SettingsError(
                f"CLICKSTREAM_SESSION_MAX_SECONDS={max_text!r} must be at least "
                "CLICKSTREAM_WINDOW_SECONDS + CLICKSTREAM_ALLOWED_LATENESS_SECONDS "
                f"({seconds_text(window_ms + lateness_ms)})")
        url_query = get("CLICKSTREAM_PAGE_URL_QUERY").lower()
        if url_query not in ("keep", "drop"):
            raise SettingsError(f"CLICKSTREAM_PAGE_URL_QUERY={url_query!r} is not keep or drop")
        outputs = [o.strip().lower() for o in get("CLICKSTREAM_OUTPUTS").split(",") if o.strip()]
        if not outputs or not set(outputs) <= {"kafka", "postgres"}:
            raise SettingsError(f"CLICKSTREAM_OUTPUTS={get('CLICKSTREAM_OUTPUTS')!r} is not kafka, "
                                "postgres or kafka,postgres")
        dsn = get("CLICKSTREAM_POSTGRES_DSN")
        if "postgres" in outputs and not dsn:
            raise SettingsError("CLICKSTREAM_POSTGRES_DSN is empty; give a libpq DSN, e.g. "
                                + DEFAULTS["CLICKSTREAM_POSTGRES_DSN"])
        retention = get("CLICKSTREAM_POSTGRES_RETENTION_DAYS")
        if not retention.isdigit():
            raise SettingsError(f"CLICKSTREAM_POSTGRES_RETENTION_DAYS={retention!r} is not a "
                                "whole number of days (0 keeps everything)")
        kafka = tuple(sorted(
            (name[len(KAFKA_PREFIX):].lower().replace("_", "."), value)
            for name, value in env.items() if name.startswith(KAFKA_PREFIX) and value
        ))
        return cls(
            brokers=brokers,
            **topics,
            session_gap_ms=gap_ms,
            session_max_ms=session_max_ms,
            window_ms=window_ms,
            lateness_ms=lateness_ms,
            bounded=_flag(env, "CLICKSTREAM_BOUNDED"),
            exactly_once=delivery == "exactly-once",
            transaction_timeout_ms=timeout_ms,
            commit_interval_ms=commit_interval_ms,
            fresh_start=_flag(env, "CLICKSTREAM_FRESH_START"),
            consumer_group=get("CLICKSTREAM_CONSUMER_GROUP") or DEFAULTS["CLICKSTREAM_CONSUMER_GROUP"],
            partition_check_ms=partition_check_ms,
            recovery_per_process=layout == "per-process",
            state_ttl_ms=state_ttl_ms,
            max_future_ms=max_future_ms,
            drop_url_query=url_query == "drop",
            to_kafka="kafka" in outputs,
            to_postgres="postgres" in outputs,
            postgres_retention_days=int(retention),
            postgres_dsn=dsn,
            kafka=kafka,
        )

    def redact(self, text: str) -> str:
        """`text` with the value of every secret-looking Kafka property, and the PostgreSQL
        password, masked."""
        for name, value in self.kafka:
            if any(word in name for word in SECRET_WORDS) and len(value) >= 3:
                text = text.replace(value, "***")
        password = dsn_password(self.postgres_dsn)
        if password:
            text = text.replace(password, "***")
        return text


def dsn_password(dsn: str) -> str:
    """The password in a libpq DSN (URL `user:pw@` or key/value `password=pw`), or ""."""
    match = re.match(r"^postgres(?:ql)?://[^:@/]*:([^@/]*)@", dsn)
    if match:
        return match.group(1)
    match = re.search(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn)
    if match:
        return match.group(1).strip("'")
    return ""


def redact_dsn(dsn: str) -> str:
    password = dsn_password(dsn)
    return dsn.replace(password, "***") if password else dsn


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, DEFAULTS[name]).strip().lower()
    if text not in ("", "0", "1", "false", "true", "no", "yes", "off", "on"):
        raise SettingsError(f"{name}={text!r} is not 1/0 (true/false)")
    return text in ("1", "true", "yes", "on")


def _seconds_to_ms(name: str, text: str) -> int:
    """Seconds as a decimal number (fractions allowed, e.g. 0.5) to whole milliseconds."""
    try:
        seconds = float(text)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a number of seconds") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise SettingsError(f"{name}={text!r} is not a finite number of seconds")
    ms = round(seconds * 1000)
    if seconds > 0 and ms == 0:
        raise SettingsError(f"{name}={text!r} is below one millisecond")
    return ms


def _topic_name(name: str, value: str) -> str:
    # Kafka's own rule: 1..249 characters of [a-zA-Z0-9._-], not "." or "..".
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    if not value or len(value) > 249 or value in (".", "..") or not set(value) <= allowed:
        raise SettingsError(f"{name}={value!r} is not a valid Kafka topic name")
    return value
