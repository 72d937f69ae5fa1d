"""Apache Flink SQL peer for `make bench` (see bench/peers/CONTRACT.md).

One Flink SQL job, built with PyFlink's Table API and run on a local mini cluster inside the
PyFlink gateway JVM: a bounded Kafka source (earliest offsets up to the end offsets as of the
start), event time from `ts`, and two tumbling-window aggregations (per user, per url) into
the two output topics, submitted together as one statement set; with BENCH_SESSION_TOPIC set,
a third one: a SESSION window per user into that topic (`SESSIONS` below). With BENCH_LIVE=1
(bench/live.py) the source is unbounded and the job runs until it is stopped.

Why it looks like this:

* Everything is plain SQL with built-in functions: a Python UDF would move every record
  through a Python worker and measure that bridge instead of Flink.
* `ts` is declared STRING: the JSON format hands a JSON integer over as its digits, so both
  forms arrive as text. Digits are epoch milliseconds; anything else is RFC 3339 with an
  offset, read as whole seconds by UNIX_TIMESTAMP (which honours `Z` and `+hh:mm`) plus the
  fraction's first three digits. A `ts` that is neither gives a NULL rowtime, and Flink drops
  such a record from the windows.
* Timing: the job runs in a JVM, so it uses the contract's "offsets" method. The Kafka
  source keeps an explicitly set `enable.auto.commit` (KafkaSourceBuilder only defaults it to
  false), so its consumers commit their positions to BENCH_GROUP every 100 ms while they
  read. The last stretch of each partition is never auto-committed (see `_FinalCommit`), so
  the end offsets are committed by this script as soon as the mini cluster's REST API shows
  the source vertex FINISHED.
* The sinks are plain append-only 'kafka' tables: key = user_id / url (raw UTF-8), value =
  JSON; window_start, session_start and session_end are epoch milliseconds.
* Sessions (sessions-contract.md) as Flink SQL's SESSION window TVF, PARTITION BY user_id:
  - Flink merges two events' session windows [t, t + gap) when they touch (TimeWindow.intersects
    counts end == start), so events exactly the gap apart share a session; ours starts a new
    one at >= gap. With whole milliseconds, a Flink gap of BENCH_SESSION_GAP_MS - 1 ms merges
    exactly the events < BENCH_SESSION_GAP_MS apart, as ours does.
  - Flink has no max split: the harness picks a max longer than the input (bench/systems.py).
  - session_start = window_start (the first event's time); session_end = window_end - the
    Flink gap (the last event's time).
  - entry_url / exit_url: the url of the first / last event ordered by (event time, offset) --
    a user's events are all in one input partition, so the offset orders ties by arrival.
    FIRST_VALUE/LAST_VALUE would follow arrival order, not event time, so the url rides on a
    sortable key (event time as yyyyMMddHHmmssSSS, offset padded to 19 digits, url) whose
    MIN / MAX picks it. The offset is the Kafka source's `offset` metadata column, declared only
    when sessions are on (the windows-only job stays as it was).
  - A bounded source ends with the maximum watermark, so every session is emitted at the end.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LOCAL = ROOT / ".local" / "bench" / "flink"
PARALLELISM = 2  # on the 2-core bench machine 2 read faster than 1 (1M events: ~23k vs ~15k/s)
REST_POLL_S = 0.05
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"flink peer: {name} is not set")
    return value


def _quiet_jvm() -> None:
    """The gateway JVM (which also hosts the mini cluster) logs to a file through
    pyflink's log4j-cli.properties; keep it at WARN and out of the venv."""
    os.environ.setdefault("ROOT_LOG_LEVEL", "WARN")
    log_dir = LOCAL / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(log_dir))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _interval_ms(ms: int) -> str:
    """An SQL day-time interval of exactly `ms` milliseconds."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    text = f"{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"
    return f"INTERVAL '{text}' DAY TO SECOND(3)"


# Epoch milliseconds of `ts` (STRING): digits as they are, else RFC 3339 with an offset.
# UNIX_TIMESTAMP(string, format) parses with the offset; it needs the fraction removed, which
# is added back as milliseconds (first three digits, right-padded with zeros). It answers
# Long.MIN_VALUE for text it cannot parse: that becomes NULL (no rowtime).
EVENT_MS = r"""
  CASE
    WHEN REGEXP(ts, '^-?[0-9]{1,18}$') THEN CAST(ts AS BIGINT)
    ELSE NULLIF(UNIX_TIMESTAMP(REGEXP_REPLACE(ts, '\.[0-9]+', ''), 'yyyy-MM-dd''T''HH:mm:ssXXX'),
                CAST('-9223372036854775808' AS BIGINT)) * 1000
         + CAST(RPAD(COALESCE(REGEXP_EXTRACT(ts, '\.([0-9]{1,3})', 1), ''), 3, '0') AS BIGINT)
  END
"""

# window_start is a TIMESTAMP(3) in the session time zone (UTC here): epoch ms from it
# (TIMESTAMPDIFF is an INT: widen it before scaling).
WINDOW_MS = (
    "1000 * CAST(TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00', window_start) AS BIGINT)"
    " + EXTRACT(MILLISECOND FROM window_start)"
)


def _source_ddl(brokers: str, topic: str, group: str, lateness_ms: int,
                offsets: bool = False, live: bool = False) -> str:
    offset = "  `off` BIGINT METADATA FROM 'offset' VIRTUAL,\n" if offsets else ""
    bounded = "" if live else "  'scan.bounded.mode' = 'latest-offset',\n"
    return f"""
CREATE TEMPORARY TABLE clicks (
  user_id STRING,
  event_type STRING,
  url STRING,
  ts STRING,
  session_id STRING,
{offset}  rt AS TO_TIMESTAMP_LTZ({EVENT_MS}, 3),
  WATERMARK FOR rt AS rt - {_interval_ms(lateness_ms)}
) WITH (
  'connector' = 'kafka',
  'topic' = {_sql_string(topic)},
  'properties.bootstrap.servers' = {_sql_string(brokers)},
  'properties.group.id' = {_sql_string(group)},
  'properties.enable.auto.commit' = 'true',
  'properties.auto.commit.interval.ms' = '100',
  'scan.startup.mode' = 'earliest-offset',
{bounded}  'format' = 'json',
  'json.fail-on-missing-field' = 'false',
  'json.ignore-parse-errors' = 'true'
)"""


def _sink_ddl(name: str, columns: str, key: str, brokers: str, topic: str) -> str:
    return f"""
CREATE TEMPORARY TABLE {name} (
  {columns}
) WITH (
  'connector' = 'kafka',
  'topic' = {_sql_string(topic)},
  'properties.bootstrap.servers' = {_sql_string(brokers)},
  'key.format' = 'raw',
  'key.fields' = '{key}',
  'value.format' = 'json',
  'value.fields-include' = 'ALL',
  'sink.delivery-guarantee' = 'at-least-once'
)"""


def _window(window_ms: int) -> str:
    return f"TABLE(TUMBLE(TABLE timed_clicks, DESCRIPTOR(rt), {_interval_ms(window_ms)}))"


def _ms(timestamp: str) -> str:
    """Epoch ms of a TIMESTAMP(3) in the session time zone (UTC); EXTRACT(MILLISECOND) is the
    millisecond of the second (0..999)."""
    return WINDOW_MS.replace("window_start", timestamp)


# Per user, its events in (event time, offset) order: the key whose MIN / MAX carries the url of
# the first / last event. 17 characters of time, 19 of offset, then the url (from position 37).
ORDERED_CLICKS = """
CREATE TEMPORARY VIEW ordered_clicks AS
SELECT user_id, event_type, url, rt,
       CONCAT(DATE_FORMAT(rt, 'yyyyMMddHHmmssSSS'), LPAD(CAST(`off` AS STRING), 19, '0'), url)
         AS ordered_url
FROM timed_clicks"""


def sessions_sql(gap_ms: int) -> str:
    """The INSERT of the session records; Flink's gap is gap_ms - 1 (see the module's doc)."""
    flink_gap = gap_ms - 1
    return f"""
INSERT INTO user_sessions
SELECT user_id, session_start, session_end, session_end - session_start,
       events, page_views, clicks, unique_pages,
       SUBSTRING(first_url FROM 37), SUBSTRING(last_url FROM 37),
       events = 1 AND page_views = 1, purchases > 0
FROM (
  SELECT user_id,
         {_ms("window_start")} AS session_start,
         {_ms("window_end")} - {flink_gap} AS session_end,
         COUNT(*) AS events,
         COUNT(*) FILTER (WHERE event_type = 'page_view') AS page_views,
         COUNT(*) FILTER (WHERE event_type = 'click') AS clicks,
         COUNT(DISTINCT url) AS unique_pages,
         COUNT(*) FILTER (WHERE event_type = 'purchase') AS purchases,
         MIN(ordered_url) AS first_url,
         MAX(ordered_url) AS last_url
  FROM TABLE(SESSION(TABLE ordered_clicks PARTITION BY user_id, DESCRIPTOR(rt),
                     {_interval_ms(flink_gap)}))
  GROUP BY window_start, window_end, user_id
)"""


def main() -> int:
    brokers = _env("BENCH_BROKERS")
    in_topic = _env("BENCH_INPUT_TOPIC")
    user_topic = _env("BENCH_USER_TOPIC")
    page_topic = _env("BENCH_PAGE_TOPIC")
    group = _env("BENCH_GROUP")
    window_ms = int(os.environ.get("BENCH_WINDOW_MS", "5000"))
    lateness_ms = int(os.environ.get("BENCH_LATENESS_MS", "10000"))
    session_topic = os.environ.get("BENCH_SESSION_TOPIC", "")  # empty: no sessions
    gap_ms = int(os.environ.get("BENCH_SESSION_GAP_MS", "1800000"))
    if session_topic and gap_ms < 2:
        sys.exit(f"flink peer: BENCH_SESSION_GAP_MS={gap_ms} must be at least 2")
    timing_file = _env("BENCH_TIMING_FILE")
    live = os.environ.get("BENCH_LIVE") == "1"  # bench/live.py: unbounded, no timing

    # The harness times this job from BENCH_GROUP's committed offsets.
    Path(timing_file).write_text(json.dumps({"method": "offsets"}) + "\n")

    _quiet_jvm()
    from pyflink.table import EnvironmentSettings, TableEnvironment

    jars = sorted((LOCAL / "jars").glob("flink-sql-connector-kafka-*.jar"))
    if not jars:
        sys.exit(f"flink peer: no Kafka SQL connector jar in {LOCAL / 'jars'}; run setup.sh")

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("pipeline.jars", ";".join(jar.as_uri() for jar in jars))
    conf.set("parallelism.default", str(PARALLELISM))
    conf.set("table.local-time-zone", "UTC")  # window_start is rendered in this zone
    conf.set("pipeline.object-reuse", "true")
    conf.set("pipeline.name", "bench-flink-sql")
    # The mini cluster's REST API on a known loopback port, to see when the source finishes.
    rest_port = _free_port()
    conf.set("rest.bind-address", "127.0.0.1")
    conf.set("rest.address", "127.0.0.1")
    conf.set("rest.bind-port", str(rest_port))
    conf.set("rest.port", str(rest_port))
    # The REST API serves job details from a cache refreshed this often (default 3 s).
    conf.set("web.refresh-interval", str(int(REST_POLL_S * 1000)))
    # The connector's admin client may log after the job's class loader is closed; without
    # this the check prints a harmless stack trace to stderr at the end.
    conf.set("classloader.check-leaked-classloader", "false")

    t_env.execute_sql(_source_ddl(brokers, in_topic, group, lateness_ms,
                                  offsets=bool(session_topic), live=live))
    # A record without a usable ts has no rowtime; the window operator would fail on it.
    t_env.execute_sql(
        "CREATE TEMPORARY VIEW timed_clicks AS SELECT * FROM clicks WHERE rt IS NOT NULL")
    t_env.execute_sql(_sink_ddl(
        "user_windows",
        "`user_id` STRING, `window_start` BIGINT, `events` BIGINT, `page_views` BIGINT, "
        "`clicks` BIGINT, `unique_pages` BIGINT, `sessions` BIGINT",
        "user_id", brokers, user_topic,
    ))
    t_env.execute_sql(_sink_ddl(
        "page_windows",
        "`url` STRING, `window_start` BIGINT, `events` BIGINT, `views` BIGINT, "
        "`unique_users` BIGINT",  # VIEWS is a reserved word: every name is quoted
        "url", brokers, page_topic,
    ))
    if session_topic:
        t_env.execute_sql(ORDERED_CLICKS)
        t_env.execute_sql(_sink_ddl(
            "user_sessions",
            "`user_id` STRING, `session_start` BIGINT, `session_end` BIGINT, "
            "`duration_ms` BIGINT, `events` BIGINT, `page_views` BIGINT, `clicks` BIGINT, "
            "`unique_pages` BIGINT, `entry_url` STRING, `exit_url` STRING, "
            "`bounce` BOOLEAN, `converted` BOOLEAN",
            "user_id", brokers, session_topic,
        ))

    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""
INSERT INTO user_windows
SELECT user_id, {WINDOW_MS}, COUNT(*),
       COUNT(*) FILTER (WHERE event_type = 'page_view'),
       COUNT(*) FILTER (WHERE event_type = 'click'),
       COUNT(DISTINCT url),
       COUNT(DISTINCT NULLIF(session_id, ''))
FROM {_window(window_ms)}
GROUP BY window_start, window_end, user_id""")
    statements.add_insert_sql(f"""
INSERT INTO page_windows
SELECT url, {WINDOW_MS}, COUNT(*),
       COUNT(*) FILTER (WHERE event_type = 'page_view'),
       COUNT(DISTINCT user_id)
FROM {_window(window_ms)}
GROUP BY window_start, window_end, url""")
    if session_topic:
        statements.add_insert_sql(sessions_sql(gap_ms))
    if live:  # unbounded, until the harness stops it (SIGTERM to the process group)
        statements.execute().wait()
        return 0
    admin = _KafkaAdmin(brokers)
    end_offsets = admin.end_offsets(in_topic)  # where the bounded source stops
    final_commit = _FinalCommit(admin, group, in_topic, end_offsets)
    result = statements.execute()
    watcher = threading.Thread(
        target=final_commit.when_sources_finish,
        args=(rest_port, str(result.get_job_client().get_job_id())),
        daemon=True,
    )
    watcher.start()
    result.wait()
    ended = time.time()
    final_commit.now()  # no-op when the watcher already did it
    print(f"flink peer: end offsets committed when {final_commit.why} "
          f"({final_commit.at - ended:+.2f} s from the job's end)", file=sys.stderr)
    admin.close()
    return 0


class _FinalCommit:
    """Commits the end offsets once, as soon as the source vertex has finished.

    The Kafka source's consumers auto-commit their positions every 100 ms, but a partition that
    reaches its stopping offset is unassigned at once, so its last position is never committed.
    The job has consumed everything when its source vertex is FINISHED (all splits at their
    stopping offsets), which the mini cluster's REST API tells; the end offsets are committed
    then. If the REST API cannot be read, they are committed when the whole job has finished
    (a little later, so the harness's time errs against Flink, never for it).
    """

    def __init__(self, admin: "_KafkaAdmin", group: str, topic: str, offsets: dict[int, int]):
        self._commit = admin.offsets_commit(group, topic, offsets)
        self._lock = threading.Lock()
        self._done = False

    def now(self, why: str = "the job finished") -> None:
        with self._lock:
            if not self._done:
                self._commit()
                self._done = True
                self.why, self.at = why, time.time()

    def when_sources_finish(self, rest_port: int, job_id: str) -> None:
        url = f"http://127.0.0.1:{rest_port}/jobs/{job_id}"
        failures = 0
        while not self._done:
            try:
                with _NO_PROXY.open(url, timeout=2) as response:
                    job = json.load(response)
                failures = 0
            except (OSError, ValueError):
                failures += 1
                if failures > 100:  # give up; the commit after the job's end remains
                    return
                time.sleep(REST_POLL_S)
                continue
            vertices = job.get("vertices", [])
            sources = [v for v in vertices if v.get("name", "").startswith("Source:")]
            if sources and all(v.get("status") == "FINISHED" for v in sources):
                self.now("the source finished")
                return
            if job.get("state") in ("FINISHED", "FAILED", "CANCELED"):
                return
            time.sleep(REST_POLL_S)


class _KafkaAdmin:
    """Kafka's Java AdminClient, as shaded into the SQL connector jar, through the gateway."""

    def __init__(self, brokers: str) -> None:
        from pyflink.java_gateway import get_gateway

        self._jvm = get_gateway().jvm
        self._kafka = self._jvm.org.apache.flink.kafka.shaded.org.apache.kafka
        props = self._jvm.java.util.Properties()
        props.setProperty("bootstrap.servers", brokers)
        self._admin = self._kafka.clients.admin.AdminClient.create(props)

    def end_offsets(self, topic: str) -> dict[int, int]:
        k = self._kafka
        names = self._jvm.java.util.Collections.singletonList(topic)
        info = self._admin.describeTopics(names).allTopicNames().get().get(topic)
        specs = self._jvm.java.util.HashMap()
        for p in info.partitions():
            tp = k.common.TopicPartition(topic, p.partition())
            specs.put(tp, k.clients.admin.OffsetSpec.latest())
        result = self._admin.listOffsets(specs).all().get()
        return {tp.partition(): result.get(tp).offset() for tp in result.keySet()}

    def offsets_commit(self, group: str, topic: str, offsets: dict[int, int]):
        """A function that commits `offsets` for `group`. The Java objects are made here, on
        the calling thread: another Python thread gets a gateway thread whose class loader
        does not see the connector jar, but it can still call methods of existing objects."""
        k = self._kafka
        j_offsets = self._jvm.java.util.HashMap()
        for partition, offset in offsets.items():
            j_offsets.put(k.common.TopicPartition(topic, partition),
                          k.clients.consumer.OffsetAndMetadata(offset))
        admin = self._admin
        return lambda: admin.alterConsumerGroupOffsets(group, j_offsets).all().get()

    def close(self) -> None:
        self._admin.close()


if __name__ == "__main__":
    sys.exit(main())
