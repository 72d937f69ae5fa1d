"""The clickstream dataflow: wiring only; every concept lives in the `clickstream` package.

    python -m bytewax.run dataflows.clickstream:flow [-w N] [-i I -a ADDRS] [-r DIR -s S -b B]

    website-clicks ──► parse (per input partition) ──┬─► malformed ─────────────────────┐
                                                     ▼                                  │
                        user_windows (keyed by user shard) ─► user-metrics              │
                               │ on-time events       └──► late ───────────────────────┤
                               ▼                                                        ▼
                        page_windows (keyed by url shard) ─► page-metrics        clickstream-dlq
                                                      └──► late for its page ───────────┘

`flow` is built on first access, after bytewax.run has parsed its flags: settings, the broker
and the recovery store are checked then (one line and exit 2 on a problem).
"""

import signal
from functools import partial
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from clickstream.kafka import (ClickSource, ClusterProgress, PartitionWatcher, fail, stop,
                               topic_partitions)
from clickstream.metrics import METRICS
from clickstream.operators import (DLQ, DLQ_KEY, PAGE, PAGE_IN, USER, PageShard, UserShard,
                                   tune_gc)
from clickstream.recovery import Origin, cluster_position, prepare_store, recovery_directory
from clickstream.settings import Settings, SettingsError
from clickstream.sink import RecordSink


def build_flow(settings: Settings, partitions: dict, origin: Optional[Origin] = None) -> Dataflow:
    """The dataflow for `settings`; `partitions` maps each output topic to its partition count,
    `origin` (with recovery) where each output partition's history starts."""
    METRICS.watermark.lateness_s = settings.lateness_ms / 1000
    flow = Dataflow("clickstream")
    source = op.input("clicks", flow, ClickSource(settings, partitions[settings.dlq_topic]))
    parsed = op.branch("parsed", source, lambda item: item[0] != DLQ_KEY)

    window_args = (settings.window_ms, settings.lateness_ms, settings.bounded, settings.input_topic)
    dlq_partitions = partitions[settings.dlq_topic]
    users = op.stateful_batch("user_windows", parsed.trues, lambda resume: UserShard(
        *window_args, partitions[settings.user_topic], dlq_partitions, resume))
    page_in = op.filter_map("to_pages", users, partial(_payload, PAGE_IN))
    pages = op.stateful_batch("page_windows", page_in, lambda resume: PageShard(
        *window_args, partitions[settings.page_topic], dlq_partitions, resume))

    user_records = op.filter_map("user_records", users, partial(_records, USER))
    page_records = op.filter_map("page_records", pages, partial(_records, PAGE))
    dead = op.merge(
        "dead_letters",
        op.map("malformed", parsed.falses, _partition_records),
        op.filter_map("late_users", users, partial(_records, DLQ)),
        op.filter_map("late_pages", pages, partial(_records, DLQ)),
    )

    def sink(topic: str, output: str = "") -> RecordSink:
        return RecordSink(settings, topic, partitions[topic], (origin or {}).get(topic), output)

    op.output("user_metrics", user_records, sink(settings.user_topic, USER))
    op.output("page_metrics", page_records, sink(settings.page_topic, PAGE))
    op.output("dead_letter_queue", dead, sink(settings.dlq_topic))
    return flow


def _payload(tag: str, keyed):
    kind, payload = keyed[1]
    return payload if kind == tag else None


def _records(tag: str, keyed):
    """(shard, (tag, (partition, [record]))) -> ("partition", [record]): routes the sink."""
    kind, payload = keyed[1]
    return _partition_records((None, payload)) if kind == tag else None


def _partition_records(keyed):
    partition, records = keyed[1]
    return str(partition), records


def _flow_from_environment() -> Dataflow:
    try:
        settings = Settings.from_env()
        partitions = topic_partitions(settings)
        directory = recovery_directory()
        origin = prepare_store(directory, settings, partitions) if directory else None
    except SettingsError as exc:
        fail(str(exc))
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
    return flow


_flow: Optional[Dataflow] = None


def __getattr__(name: str):
    global _flow
    if name == "flow":
        if _flow is None:
            _flow = _flow_from_environment()
        return _flow
    raise AttributeError(name)
