"""The clickstream dataflow: wiring only; every concept lives in the `clickstream` package.

    python -m bytewax.run dataflows.clickstream:flow [-w N] [-i I -a ADDRS] [-r DIR -s S -b B]

    website-clicks ──► parse (per input partition) ──┬─► malformed ─────────────────────┐
                                                     ▼                                  │
                        user_windows (keyed by user shard) ─► user-metrics              │
                               │ on-time events       └──► late ───────────────────────┤
                               ▼                                                        ▼
                        page_windows (keyed by url shard) ─► page-metrics        clickstream-dlq
                                                      └──► late for its page ───────────┘

`flow` is built on first access, after bytewax.run has parsed its flags: settings and the
broker are checked then (one line and exit 2 on a problem), and the recovery store is created
when recovery is on and its directory is missing or empty.
"""

import fcntl
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Optional

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from clickstream.kafka import ClickSource, RecordSink, fail, stop, topic_partitions
from clickstream.operators import DLQ, DLQ_KEY, PAGE, PAGE_IN, USER, PageShard, UserShard
from clickstream.settings import Settings, SettingsError


def build_flow(settings: Settings, partitions: dict) -> Dataflow:
    """The dataflow for `settings`; `partitions` maps each output topic to its partition count."""
    flow = Dataflow("clickstream")
    source = op.input("clicks", flow, ClickSource(settings))
    parsed = op.branch("parsed", source, lambda item: item[0] != DLQ_KEY)

    window_args = (settings.window_ms, settings.lateness_ms, settings.bounded, settings.input_topic)
    users = op.stateful_batch("user_windows", parsed.trues,
                              lambda resume: UserShard(*window_args, resume))
    page_in = op.filter_map("to_pages", users, partial(_payload, PAGE_IN))
    pages = op.stateful_batch("page_windows", page_in,
                              lambda resume: PageShard(*window_args, resume))

    user_records = op.filter_map("user_records", users, partial(_keyed_record, USER))
    page_records = op.filter_map("page_records", pages, partial(_keyed_record, PAGE))
    dead = op.merge(
        "dead_letters",
        op.map("malformed", parsed.falses, lambda item: (DLQ_KEY, (None, item[1]))),
        op.filter_map("late_users", users, partial(_dead_letter, DLQ)),
        op.filter_map("late_pages", pages, partial(_dead_letter, DLQ)),
    )

    op.output("user_metrics", user_records,
              RecordSink(settings, settings.user_topic, partitions[settings.user_topic]))
    op.output("page_metrics", page_records,
              RecordSink(settings, settings.page_topic, partitions[settings.page_topic]))
    op.output("dead_letter_queue", dead,
              RecordSink(settings, settings.dlq_topic, partitions[settings.dlq_topic]))
    return flow


def _payload(tag: str, keyed):
    kind, payload = keyed[1]
    return payload if kind == tag else None


def _keyed_record(tag: str, keyed):
    """(shard, (tag, (key, json))) -> (key, (key, json)) for the sink's partitioner."""
    kind, payload = keyed[1]
    return (payload[0], payload) if kind == tag else None


def _dead_letter(tag: str, keyed):
    kind, payload = keyed[1]
    # Unkeyed DLQ records: route by a constant so the sink sends them to partition of "dlq".
    return (DLQ_KEY, (None, payload)) if kind == tag else None


def _recovery_directory() -> Optional[Path]:
    """The -r/--recovery-directory (or BYTEWAX_RECOVERY_DIRECTORY) bytewax.run was given."""
    main = sys.modules.get("__main__")
    kwargs = getattr(main, "kwargs", None)
    config = kwargs.get("recovery_config") if isinstance(kwargs, dict) else None
    if config is not None:
        return Path(config.db_dir)
    env = os.environ.get("BYTEWAX_RECOVERY_DIRECTORY")
    return Path(env) if env else None


def ensure_recovery_store(directory: Path, partitions: int = 1) -> bool:
    """Create and initialise the recovery store when the directory is missing or empty.

    A lock file keeps the processes of a local cluster from initialising it twice. Returns
    True when it created the store.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(p.name != ".init.lock" for p in directory.iterdir()):
            return False
        from bytewax.recovery import init_db_dir

        init_db_dir(directory, partitions)
        return True


def _flow_from_environment() -> Dataflow:
    try:
        settings = Settings.from_env()
        partitions = topic_partitions(settings)
    except SettingsError as exc:
        fail(str(exc))
    directory = _recovery_directory()
    if directory is not None and ensure_recovery_store(directory):
        print(f"clickstream: created recovery store in {directory}", file=sys.stderr)
    resumes = "resumes from the last snapshot" if directory else "starts over (recovery is off)"
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: stop(
            f"stopped by {signal.Signals(number).name}; the next start {resumes}", 128 + number))
    return build_flow(settings, partitions)


_flow: Optional[Dataflow] = None


def __getattr__(name: str):
    global _flow
    if name == "flow":
        if _flow is None:
            _flow = _flow_from_environment()
        return _flow
    raise AttributeError(name)
