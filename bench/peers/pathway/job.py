"""Pathway peer of `make bench` (see bench/peers/CONTRACT.md).

Run from the repo root as `.local/bench/pathway/venv/bin/python bench/peers/pathway/job.py`,
configured only by the BENCH_* environment. One Pathway program, written with Pathway's own
operators only (no Python UDF on the per-record path):

* `pw.io.kafka.read(..., format="json", mode="static")`: Pathway's Kafka reader (Rust,
  librdkafka) in its bounded mode, which reads what the topic holds when the job starts and
  then ends the input, so `pw.run` returns once everything has been processed and written.
  The reader still commits a new Pathway time every AUTOCOMMIT_MS, so the input flows through
  the windows in small batches as in a streaming run.
* event time in epoch ms from `ts` (a JSON value): an integer as it is, a string parsed by
  `dt.strptime` (a trailing `Z` is rewritten as `+00:00`, since the `%z` of Pathway's strptime
  wants an offset), all as Pathway expressions;
* two `windowby(..., window=pw.temporal.tumbling(BENCH_WINDOW_MS), instance=<key>,
  behavior=pw.temporal.exactly_once_behavior(shift=BENCH_LATENESS_MS))` aggregations: each
  window comes out once, when the newest event time Pathway has seen reaches its end plus the
  lateness; events of a window already closed are dropped. Windows are aligned to the epoch
  (the default origin of an integer time column is 0).
* `pw.io.kafka.write(..., format="json", key=<key column>)` into the two output topics.
  Pathway adds `time` and `diff` to each JSON value; with the exactly-once behaviour every
  record is an insertion (`diff` 1).

Known limitation (how Pathway's temporal operators work, kept as is): each windowby has one
clock, the newest event time it has seen over all keys (updated once per Pathway batch), not
one per key or per partition. Events of a window that clock has already closed are dropped as
late, so the job is exact only when the reader does not run one input partition far ahead of
the others in event time. Kafka hands a consumer whole producer batches, so the skew depends
on how the input was produced: with producer batches of a few hundred records per partition
and small fetches (`max.partition.fetch.bytes` = FETCH_BYTES) the four partitions arrive
interleaved within a few seconds of event time and nothing is dropped; with producer batches
of thousands of records (~20 s of one partition's event time) a few percent of the events land
behind the 10 s lateness at a batch boundary and are dropped. The job reports the dropped
events on stderr (input records minus the events of all windows written; at the end of the
input Pathway writes the windows still open too).

Timing: a global `count()` of the input table, watched with `pw.io.subscribe`: one callback per
Pathway batch, one `time.time()` each. `first_consumed` is the time the first batch was
through, `last_consumed` the time the count reached BENCH_EVENTS; `consumed` is the number of
records processed between the two (the first batch is not counted, since its own processing
started before `first_consumed`).

Threads: one Pathway worker (PATHWAY_THREADS=1, PATHWAY_PROCESSES=1 unless set), as ours
runs at 1 process in the main rows.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("PATHWAY_THREADS", "1")
os.environ.setdefault("PATHWAY_PROCESSES", "1")

import pathway as pw  # noqa: E402

AUTOCOMMIT_MS = 100  # how often the reader closes a Pathway time (a batch) while reading
# Per partition and fetch, librdkafka asks for at most this much (the broker still sends at
# least one whole producer batch). Small, so that the partitions are read interleaved in small
# slices of event time (see "Known limitation" above); the default 1 MiB lets one partition run
# ~20 s of event time ahead of the others.
FETCH_BYTES = 8192


class Click(pw.Schema):
    user_id: str
    event_type: str
    url: str
    ts: pw.Json
    session_id: str | None = pw.column_definition(default_value=None)


def event_ms(ts: pw.ColumnExpression) -> pw.ColumnExpression:
    """Epoch ms of the JSON value `ts`: an integer, or an RFC 3339 string with an offset."""
    text = ts.to_string()  # an integer's digits, or the string in its JSON quotes
    as_time = (
        text.str.slice(1, -1)
        .str.replace("Z", "+00:00")
        .dt.strptime("%Y-%m-%dT%H:%M:%S%.f%z")
    )
    since_epoch = as_time - pw.DateTimeUtc("1970-01-01T00:00:00+00:00")
    return pw.if_else(
        text.str.startswith('"'), since_epoch.dt.milliseconds(), text.str.parse_int()
    )


def main() -> int:
    env = os.environ
    brokers = env["BENCH_BROKERS"]
    expected = int(env["BENCH_EVENTS"])
    window_ms = int(env.get("BENCH_WINDOW_MS", "5000"))
    lateness_ms = int(env.get("BENCH_LATENESS_MS", "10000"))
    timing_file = env["BENCH_TIMING_FILE"]

    consumer = {
        "bootstrap.servers": brokers,
        "group.id": env["BENCH_GROUP"],
        "auto.offset.reset": "earliest",
        "max.partition.fetch.bytes": str(FETCH_BYTES),
    }
    producer = {"bootstrap.servers": brokers}

    clicks = pw.io.kafka.read(
        consumer,
        env["BENCH_INPUT_TOPIC"],
        schema=Click,
        format="json",
        mode="static",
        autocommit_duration_ms=AUTOCOMMIT_MS,
        name="clicks",
    )
    events = clicks.select(
        pw.this.user_id,
        pw.this.url,
        t=event_ms(pw.this.ts),
        view=pw.if_else(pw.this.event_type == "page_view", 1, 0),
        click=pw.if_else(pw.this.event_type == "click", 1, 0),
        # distinct non-empty session ids = distinct values of `sid` minus one if "" is there
        sid=pw.coalesce(pw.this.session_id, ""),
        no_sid=pw.if_else(pw.coalesce(pw.this.session_id, "") == "", 1, 0),
    )

    def windows(key: pw.ColumnReference) -> pw.GroupedTable:
        return events.windowby(
            pw.this.t,
            window=pw.temporal.tumbling(duration=window_ms),
            instance=key,
            behavior=pw.temporal.exactly_once_behavior(shift=lateness_ms),
        )

    per_user = windows(events.user_id).reduce(
        user_id=pw.this._pw_instance,
        window_start=pw.this._pw_window_start,
        events=pw.reducers.count(),
        page_views=pw.reducers.sum(pw.this.view),
        clicks=pw.reducers.sum(pw.this.click),
        unique_pages=pw.reducers.count_distinct(pw.this.url),
        sessions=pw.reducers.count_distinct(pw.this.sid) - pw.reducers.max(pw.this.no_sid),
    )
    per_url = windows(events.url).reduce(
        url=pw.this._pw_instance,
        window_start=pw.this._pw_window_start,
        events=pw.reducers.count(),
        views=pw.reducers.sum(pw.this.view),
        unique_users=pw.reducers.count_distinct(pw.this.user_id),
    )

    pw.io.kafka.write(per_user, producer, env["BENCH_USER_TOPIC"], format="json",
                      key=per_user.user_id, name="per_user")
    pw.io.kafka.write(per_url, producer, env["BENCH_PAGE_TOPIC"], format="json",
                      key=per_url.url, name="per_url")

    # Timing: one update of a global count per batch.
    progress = {"first": None, "first_n": 0, "last": None, "n": 0}

    def on_count(key, row, is_addition, **_) -> None:
        if not is_addition:
            return
        now = time.time()
        n = progress["n"] = row["n"]
        if progress["first"] is None:
            progress["first"], progress["first_n"] = now, n
        if n >= expected and progress["last"] is None:
            progress["last"] = now

    pw.io.subscribe(clicks.reduce(n=pw.reducers.count()), on_change=on_count)

    # Events in the windows written (once per batch): the rest were dropped as late.
    written = {"user": 0, "page": 0}

    def on_written(kind: str):
        def on_change(key, row, is_addition, **_) -> None:
            if is_addition:
                written[kind] = row["n"]
        return on_change

    pw.io.subscribe(per_user.reduce(n=pw.reducers.sum(pw.this.events)), on_change=on_written("user"))
    pw.io.subscribe(per_url.reduce(n=pw.reducers.sum(pw.this.events)), on_change=on_written("page"))

    pw.run(monitoring_level=pw.MonitoringLevel.NONE)

    first, last = progress["first"], progress["last"]
    with open(timing_file, "w") as f:
        json.dump({"first_consumed": first, "last_consumed": last,
                   "consumed": progress["n"] - progress["first_n"]}, f)
    print(f"pathway peer: consumed {progress['n']} records "
          f"(first batch {progress['first_n']}); late (dropped) "
          f"user={progress['n'] - written['user']} page={progress['n'] - written['page']}",
          file=sys.stderr)
    if progress["n"] < expected:
        print(f"pathway peer: the input ended after {progress['n']} of {expected} records",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
