"""The clickstream dataflow: wiring only; every concept lives in the `clickstream` package.

    python -m bytewax.run dataflows.clickstream:flow [-w N] [-i I -a ADDRS] [-r DIR -s S -b B]

    website-clicks ──► parse (per input partition) ──┬─► malformed ─────────────────────┐
                                                     ▼                                  │
                        user_windows (keyed by user shard) ─► user-metrics              │
                               │ on-time events       └──► late ───────────────────────┤
                               ▼                                                        ▼
                        page_windows (keyed by url shard) ─► page-metrics        clickstream-dlq
                                                      └──► late for its page ───────────┘
    user_windows also closes each user's sessions ─► user-sessions (CLICKSTREAM_SESSION_TOPIC;
    an empty one turns them off)

With CLICKSTREAM_OUTPUTS=postgres (or kafka,postgres) the four outputs go to the tables
user_metrics, page_metrics, user_sessions and dead_letters instead of (or as well as) the topics.

`flow` is built on first access, after bytewax.run has parsed its flags: settings, the broker,
the database and the recovery store are checked then (one line and exit 2 on a problem).
"""

import signal
import time
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from clickstream.core.aggregations import PAGE_TRAFFIC, USER_ENGAGEMENT
from clickstream.core.records import DEAD_LETTERS, PAGE, PAGE_IN, SESSION, USER
from clickstream.core.sessions import SESSION_SUMMARY
from clickstream.io.kafka import end_offsets, topic_partitions
from clickstream.io.sink import RecordSink
from clickstream.io.source import ClickSource
from clickstream.io.watchers import ClusterProgress, PartitionWatcher
from clickstream.runtime.exits import fail, stop
from clickstream.runtime.memory import tune_gc, tune_malloc
from clickstream.runtime.metrics import METRICS
from clickstream.runtime.recovery import (Origin, cluster_position, prepare_store,
                                          recovery_directory, store_bytes)
from clickstream.runtime.settings import Settings, SettingsError
from clickstream.stages.outputs import payloads, sink_item, sink_items
from clickstream.stages.page_windows import PageShard
from clickstream.stages.user_windows import UserShard


def build_flow(settings: Settings, partitions: dict, origin: Optional[Origin] = None) -> Dataflow:
    """The dataflow for `settings`; `partitions` maps each topic to its partition count,
    `origin` (with recovery) where each output partition's history starts."""
    METRICS.watermark.lateness_s = settings.lateness_ms / 1000
    flow = Dataflow("clickstream")
    dlq_partitions = partitions[settings.dlq_topic]
    source = op.input("clicks", flow, ClickSource(settings, dlq_partitions))
    parsed = op.branch("parsed", source, lambda item: item[0] != DEAD_LETTERS)

    window_args = (settings.window_ms, settings.lateness_ms, settings.bounded, settings.input_topic)
    ttl = {"ttl_ms": settings.state_ttl_ms}
    sessions = {"sessions": (settings.session_gap_ms, settings.session_max_ms,
                             partitions[settings.session_topic]) if settings.sessions else None}
    users = op.stateful_batch("user_windows", parsed.trues, lambda resume: UserShard(
        *window_args, partitions[settings.user_topic], dlq_partitions, resume, **ttl,
        **sessions))
    page_in = op.filter_map("to_pages", users, payloads(PAGE_IN))
    pages = op.stateful_batch("page_windows", page_in, lambda resume: PageShard(
        *window_args, partitions[settings.page_topic], dlq_partitions, resume, **ttl))

    user_records = op.filter_map("user_records", users, sink_items(USER))
    page_records = op.filter_map("page_records", pages, sink_items(PAGE))
    session_records = op.filter_map("session_records", users, sink_items(SESSION))
    dead = op.merge(
        "dead_letters",
        op.map("malformed", parsed.falses, lambda item: sink_item(item[1])),
        op.filter_map("late_users", users, sink_items(DEAD_LETTERS)),
        op.filter_map("late_pages", pages, sink_items(DEAD_LETTERS)),
    )

    def sink(topic: str, render=None, output: str = "") -> RecordSink:
        return RecordSink(settings, topic, partitions[topic], (origin or {}).get(topic), render,
                          output)

    if settings.to_kafka:
        op.output("user_metrics", user_records,
                  sink(settings.user_topic, USER_ENGAGEMENT.render, USER))
        op.output("page_metrics", page_records,
                  sink(settings.page_topic, PAGE_TRAFFIC.render, PAGE))
        op.output("dead_letter_queue", dead, sink(settings.dlq_topic))
        if settings.sessions:
            op.output("user_sessions", session_records,
                      sink(settings.session_topic, SESSION_SUMMARY.render))
    if settings.to_postgres:
        from clickstream.io.pg_schema import COLUMNS
        from clickstream.io.pg_sink import TableSink

        def table(name: str, topic: str, aggregation=None, output: str = "") -> TableSink:
            return TableSink(settings, name, COLUMNS[name], partitions[topic],
                             aggregation.row if aggregation else None, output)

        # The emit-delay histogram follows one output: Kafka's when there is one.
        user, page = ("", "") if settings.to_kafka else (USER, PAGE)
        op.output("user_metrics_table", user_records,
                  table("user_metrics", settings.user_topic, USER_ENGAGEMENT, user))
        op.output("page_metrics_table", page_records,
                  table("page_metrics", settings.page_topic, PAGE_TRAFFIC, page))
        op.output("dead_letters_table", dead, table("dead_letters", settings.dlq_topic))
        if settings.sessions:
            op.output("user_sessions_table", session_records,
                      table("user_sessions", settings.session_topic, SESSION_SUMMARY))
    return flow


def _flow_from_environment() -> Dataflow:
    try:
        settings = Settings.from_env()
        partitions = topic_partitions(settings)
        kafka_outputs = settings.output_topics if settings.to_kafka else ()
        if settings.to_postgres:
            # Imported only for the database output: psycopg takes 0.2 s of every start.
            from clickstream.io.pg_schema import DAY_MS, DatabaseError
            from clickstream.io.pg_schema import prepare as prepare_database
            from clickstream.io.pg_sink import TABLE_PARTITIONS

            for topic in settings.output_topics:  # without Kafka outputs: the tables' partitions
                partitions.setdefault(topic, TABLE_PARTITIONS)
            try:
                prepare_database(settings.postgres_dsn, settings.postgres_retention_days,
                                 int(time.time() * 1000) // DAY_MS)
            except DatabaseError as exc:
                raise SettingsError(f"CLICKSTREAM_POSTGRES_DSN={settings.dsn_shown}: "
                                    f"{settings.redact(str(exc))}") from None
        directory = recovery_directory()
        origin = prepare_store(directory, settings, lambda: end_offsets(
            settings, partitions, kafka_outputs)) if directory else None
    except SettingsError as exc:
        fail(str(exc))
    if directory:
        METRICS.recovery_store_bytes.set_function(lambda: store_bytes(directory))
    resumes = "resumes from the last snapshot" if directory else "starts over (recovery is off)"
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Exactly what a crash does: the open transactions are aborted by the next start.
        signal.signal(sig, lambda number, _frame: stop(
            f"stopped by {signal.Signals(number).name}; the next start {resumes}", 128 + number))
    if settings.partition_check_ms and not settings.bounded:
        PartitionWatcher(settings, partitions[settings.input_topic]).start()
    if cluster_position()[1] > 1 and not settings.bounded:
        ClusterProgress(settings, partitions[settings.input_topic]).start()
    flow = build_flow(settings, partitions, origin)
    tune_gc()
    tune_malloc()
    return flow


_flow: Optional[Dataflow] = None


def __getattr__(name: str):
    global _flow
    if name == "flow":
        if _flow is None:
            _flow = _flow_from_environment()
        return _flow
    raise AttributeError(name)
