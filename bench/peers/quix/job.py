"""Quix Streams peer of `make bench` (see bench/peers/CONTRACT.md).

Run from the repo root as `.local/bench/quix/venv/bin/python bench/peers/quix/job.py`,
configured only by the BENCH_* environment. The job, written the way the Quix Streams docs
suggest:

* one input topic with the JSON deserializer and an event-time `timestamp_extractor`
  (`ts` is integer epoch ms or an RFC 3339 string with an offset);
* branch 1: per-user tumbling windows (`tumbling_window(...).reduce(...).final()`) on the
  input key (the user id) -> BENCH_USER_TOPIC, key = user_id. One small state dict per
  window: measured cheaper than `.agg()` with one aggregator per column;
* branch 2: `group_by("url")` (Quix produces every event to its own repartition topic and
  consumes it back), then per-url tumbling windows -> BENCH_PAGE_TOPIC, key = url.

Windows close by the partition's event time (`closing_strategy="partition"`: the newest
event time seen in the partition minus the grace), which is the watermark of the contract;
the default "key" strategy would only close a user's window when that same user is seen
again. Windows still open at the end are not emitted (Quix closes windows by event time only).

Known limitation, kept as is because it is how Quix behaves: event time is tracked per
partition of the stream a window reads. The url windows read the repartition topic, whose
partitions mix all input partitions in the order the consumer happened to fetch them
(whole producer batches per partition, unevenly sized partitions), so on a pre-loaded topic
their event time runs far ahead of the slower input partitions and many events arrive
behind the grace and are dropped as late (counted by `on_late`, reported on stderr).

Bounded run: `on_message_processed` counts processed messages per topic; once all
BENCH_EVENTS input records and as many repartitioned records have been processed, it calls
`app.stop()`, which leaves the poll loop, flushes the producer and commits. `app.run`'s own
`timeout` is only a guard against a hang (exit 1 if the counts were not reached).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from quixstreams import Application

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)
STALL_GUARD_S = 60.0  # stop (and fail) when nothing was consumed for this long


def event_time(value, headers, timestamp, timestamp_type) -> int:
    """Event time in epoch ms from `ts` (int ms, or RFC 3339 with Z / +hh:mm offset)."""
    ts = value["ts"]
    if type(ts) is int:
        return ts
    # Integer arithmetic on the timedelta keeps the milliseconds exact (no float rounding).
    return (datetime.fromisoformat(ts) - EPOCH) // ONE_MS


# Window state: one small dict per (key, window), reduced in place. Distinct values are kept
# as the keys of a dict, because Quix stores window state as JSON, which has no set type.
def user_init(e: dict) -> dict:
    sid = e.get("session_id")
    t = e["event_type"]
    return {
        "events": 1,
        "page_views": 1 if t == "page_view" else 0,
        "clicks": 1 if t == "click" else 0,
        "pages": {e["url"]: 1},
        "sessions": {sid: 1} if sid else {},
    }


def user_reduce(acc: dict, e: dict) -> dict:
    acc["events"] += 1
    t = e["event_type"]
    if t == "page_view":
        acc["page_views"] += 1
    elif t == "click":
        acc["clicks"] += 1
    acc["pages"][e["url"]] = 1
    sid = e.get("session_id")
    if sid:
        acc["sessions"][sid] = 1
    return acc


def url_init(e: dict) -> dict:
    return {"events": 1, "views": 1 if e["event_type"] == "page_view" else 0, "users": {e["user_id"]: 1}}


def url_reduce(acc: dict, e: dict) -> dict:
    acc["events"] += 1
    if e["event_type"] == "page_view":
        acc["views"] += 1
    acc["users"][e["user_id"]] = 1
    return acc


def user_row(w: dict, key, _timestamp, _headers) -> dict:
    acc = w["value"]
    return {
        "user_id": key,
        "window_start": w["start"],
        "events": acc["events"],
        "page_views": acc["page_views"],
        "clicks": acc["clicks"],
        "unique_pages": len(acc["pages"]),
        "sessions": len(acc["sessions"]),
    }


def url_row(w: dict, key, _timestamp, _headers) -> dict:
    acc = w["value"]
    return {
        "url": key,
        "window_start": w["start"],
        "events": acc["events"],
        "views": acc["views"],
        "unique_users": len(acc["users"]),
    }


def main() -> int:
    env = os.environ
    brokers = env["BENCH_BROKERS"]
    group = env["BENCH_GROUP"]
    expected = int(env["BENCH_EVENTS"])
    window_ms = int(env.get("BENCH_WINDOW_MS", "5000"))
    grace_ms = int(env.get("BENCH_LATENESS_MS", "10000"))
    timing_file = env["BENCH_TIMING_FILE"]

    state_root = Path(".local/bench/quix/state")  # Quix keeps each group under <state_dir>/<group>
    shutil.rmtree(state_root / group, ignore_errors=True)

    progress = {"input": 0, "repartitioned": 0, "first": None, "last": None, "drained": None}
    late = {"user": 0, "page": 0}
    input_name = env["BENCH_INPUT_TOPIC"]

    def on_processed(topic: str, partition: int, offset: int) -> None:
        if topic == input_name:
            n = progress["input"] = progress["input"] + 1
            if n == 1:
                progress["first"] = time.time()
            if n == expected:
                progress["last"] = time.time()
        else:  # the group_by("url") repartition topic
            progress["repartitioned"] += 1
        if progress["input"] >= expected and progress["repartitioned"] >= expected:
            progress["drained"] = time.time()
            app.stop()

    app = Application(
        broker_address=brokers,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_root,
        on_message_processed=on_processed,
        loglevel="WARNING",
    )

    clicks = app.topic(
        input_name,
        key_deserializer="str",
        value_deserializer="json",
        timestamp_extractor=event_time,
    )
    users_out = app.topic(env["BENCH_USER_TOPIC"], key_serializer="str", value_serializer="json")
    pages_out = app.topic(env["BENCH_PAGE_TOPIC"], key_serializer="str", value_serializer="json")

    def on_late_user(*_args) -> bool:
        late["user"] += 1
        return False  # counted here instead of a log line per event

    def on_late_page(*_args) -> bool:
        late["page"] += 1
        return False

    sdf = app.dataframe(clicks)

    # Per user: the input is already keyed by user id.
    per_user = (
        sdf.tumbling_window(duration_ms=window_ms, grace_ms=grace_ms, name="per_user",
                            on_late=on_late_user)
        .reduce(reducer=user_reduce, initializer=user_init)
        .final(closing_strategy="partition")
    )
    per_user.apply(user_row, metadata=True).to_topic(users_out)

    # Per url: re-key through Quix's repartition topic (created by Quix's topic manager).
    by_url = sdf.group_by("url", key_serializer="str", key_deserializer="str")
    per_url = (
        by_url.tumbling_window(duration_ms=window_ms, grace_ms=grace_ms, name="per_url",
                               on_late=on_late_page)
        .reduce(reducer=url_reduce, initializer=url_init)
        .final(closing_strategy="partition")
    )
    per_url.apply(url_row, metadata=True).to_topic(pages_out)

    # `timeout` is a guard only: the normal stop is app.stop() from on_processed.
    app.run(timeout=STALL_GUARD_S, collect=False)

    with open(timing_file, "w") as f:
        json.dump(
            {"first_consumed": progress["first"], "last_consumed": progress["last"],
             "consumed": progress["input"]},
            f,
        )
    drain_s = (progress["drained"] - progress["last"]) if progress["drained"] and progress["last"] else None
    print(
        f"quix peer: consumed {progress['input']} input, {progress['repartitioned']} repartitioned; "
        f"late (dropped) user={late['user']} page={late['page']}; "
        f"repartition drained {drain_s if drain_s is None else round(drain_s, 3)} s after the last input",
        file=sys.stderr,
    )
    if progress["input"] < expected or progress["repartitioned"] < expected:
        print(f"quix peer: stopped before all {expected} records were processed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
