"""The benchmark's input and the check on every system's output.

The input comes from our generator with a fixed seed and start, so the expected window
counts and sessions are computed from the same pure stream (`clickstream.tools.generator`),
not from any system's output, and by code of this module alone (no service code): a small
brute-force reference of SPEC's rules.

Windows: the check compares a sample of keys (users and urls whose crc32 falls in
1/SAMPLE_EVERY) on every window that all systems must have closed: those ending at least
the lateness plus a margin before the newest event time (Quix, for one, closes windows on
event time only and never at the end of a bounded input).

Sessions (`expected_all`'s `sessions`, checked by `compare_sessions`): for the sampled users,
their on-time events sorted by (ts, message index) -- in the bench input a user's messages
all go to one partition in production order, so the index orders them as (partition, offset)
does -- split where consecutive times are >= the gap apart, then greedily where a session
would last longer than the max (sessions-contract.md; the bench itself gives no max, as it
sets ours' above the input's span for Flink's sake). All sessions are compared, also the
last ones: every system that writes sessions flushes them at the end of a bounded input (ours
by CLICKSTREAM_BOUNDED; Flink SQL in streaming mode ends a bounded Kafka source with the
maximum watermark, which fires every session window).

Which events count, for both: not malformed (the bench input has none) and not late. Late is
decided as SPEC says, per user in arrival order: an event is late when its window's end is at
or behind the user's watermark (newest event time seen for the user minus the lateness). The
default bench input (out-of-order events at most 3 s behind, lateness 10 s) has no late
events; the rule is here so that another input (e.g. the generator's visits mode) is judged
the same way by the window and the session check. SPEC's second rule (an event more than the
state TTL behind its shard's clock is late) is not modelled: `expected_all` refuses an input
where it could apply.
"""

import zlib
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Dict, List, NamedTuple, Optional, Tuple

import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition

from clickstream.tools.generator import GeneratorConfig, generate

SAMPLE_EVERY = 25
MARGIN_MS = 5000
STATE_TTL_MS = 3600_000  # the service's default CLICKSTREAM_STATE_TTL_SECONDS

WindowCounts = Dict[Tuple[str, int], int]
# (user_id, session_start ms) -> (start, end, events, page_views, clicks, unique_pages,
#                                 entry_url, exit_url, bounce, converted)
Sessions = Dict[Tuple[str, int], tuple]
SESSION_FIELDS = ("session_start", "session_end", "events", "page_views", "clicks",
                  "unique_pages", "entry_url", "exit_url", "bounce", "converted")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


class Expected(NamedTuple):
    users: WindowCounts  # sampled users' windows starting before cutoff
    pages: WindowCounts  # sampled urls' windows starting before cutoff
    cutoff: int
    sessions: Sessions  # every session of the sampled users
    newest: int  # the newest event time of the input (of the events that count)
    oldest: int  # the oldest
    split_by_max: int  # sessions that ended because of the max, not the gap


def in_sample(key: str) -> bool:
    return zlib.crc32(key.encode()) % SAMPLE_EVERY == 0


def event_ms(value) -> int:
    """`ts` as epoch ms: an integer as it is, else RFC 3339 with an offset (exact integer ms)."""
    if isinstance(value, int):
        return value
    return (datetime.fromisoformat(value) - _EPOCH) // _MS


def expected(config: GeneratorConfig, width_ms: int, lateness_ms: int):
    """({(user, start): events}, {(url, start): events}, cutoff) for the sampled keys; windows
    starting at or after `cutoff` are left out of the comparison."""
    return expected_all(config, width_ms, lateness_ms)[:3]


def expected_all(config: GeneratorConfig, width_ms: int, lateness_ms: int,
                 gap_ms: Optional[int] = None, max_ms: Optional[int] = None) -> Expected:
    """The expected windows and (with `gap_ms`) sessions of the sampled keys; sessions are split
    at `max_ms` too unless it is None."""
    users: Counter = Counter()
    pages: Counter = Counter()
    newest_of: Dict[str, int] = {}  # per user, in arrival order: for the lateness verdict
    events_of: Dict[str, List[tuple]] = defaultdict(list)  # sampled users' on-time events
    newest = oldest = None
    for index, message in enumerate(generate(config)):
        if message.kind == "malformed":
            continue
        event = orjson.loads(message.value)
        user, ts = event["user_id"], event_ms(event["ts"])
        start = ts - ts % width_ms
        mine = newest_of.get(user)
        if mine is not None and start + width_ms <= mine - lateness_ms:
            continue  # late: its window has closed for this user
        if newest is not None and ts < newest - STATE_TTL_MS:
            raise ValueError("bench input: an event more than the state TTL behind the stream; "
                             "the reference does not model the shard horizon")
        if mine is None or ts > mine:
            newest_of[user] = ts
        newest = ts if newest is None else max(newest, ts)
        oldest = ts if oldest is None else min(oldest, ts)
        if in_sample(user):
            users[(user, start)] += 1
            if gap_ms is not None:
                events_of[user].append((ts, index, event["event_type"], event["url"]))
        if in_sample(event["url"]):
            pages[(event["url"], start)] += 1
    cutoff = newest - lateness_ms - MARGIN_MS - width_ms
    sessions: Sessions = {}
    split = 0
    if gap_ms is not None:
        for user, events in events_of.items():
            for session, by_max in _split(sorted(events), gap_ms, max_ms):
                sessions[(user, session[0])] = session
                split += by_max
    return Expected({k: v for k, v in users.items() if k[1] < cutoff},
                    {k: v for k, v in pages.items() if k[1] < cutoff}, cutoff, sessions,
                    newest, oldest, split)


def _split(events: List[tuple], gap_ms: int, max_ms: Optional[int]):
    """Sessions of one user's sorted (ts, index, event_type, url): a new one where the time
    since the previous event is >= the gap, or since the session's first event > the max.
    Yields (the session's fields as SESSION_FIELDS, 1 if the max ended it else 0)."""
    runs: List[List[tuple]] = []
    previous = None
    for event in events:
        ts = event[0]
        if (previous is None or ts - previous >= gap_ms
                or (max_ms is not None and ts - runs[-1][0][0] > max_ms)):
            runs.append([])
        runs[-1].append(event)
        previous = ts
    for n, run in enumerate(runs):
        types = [e[2] for e in run]
        page_views = types.count("page_view")
        by_max = n + 1 < len(runs) and runs[n + 1][0][0] - run[-1][0] < gap_ms
        yield ((run[0][0], run[-1][0], len(run), page_views, types.count("click"),
                len({e[3] for e in run}), run[0][3], run[-1][3],
                len(run) == 1 and page_views == 1, "purchase" in types), int(by_max))


def _start_ms(value) -> int:
    if isinstance(value, int):
        return value
    return event_ms(value)


def records(brokers: str, topic: str):
    """Every record's value on `topic` (read_committed), decoded, from the start to the end."""
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "bench-check",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        open_partitions = set(partitions)
        while open_partitions:
            for msg in consumer.consume(10000, 2.0):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        open_partitions.discard(msg.partition())
                    continue
                yield orjson.loads(msg.value())
    finally:
        consumer.close()


def read_windows(brokers: str, topic: str, key_field: str, cutoff: int) -> Tuple[WindowCounts, int]:
    """Sampled {(key, start): events} on `topic` (read_committed), and the total record count."""
    found: WindowCounts = {}
    total = 0
    for record in records(brokers, topic):
        total += 1
        key = record[key_field]
        if in_sample(key):
            start = _start_ms(record["window_start"])
            if start < cutoff:
                found[(key, start)] = found.get((key, start), 0) + record["events"]
    return found, total


def session_row(record: dict) -> tuple:
    """A session record (JSON from Kafka, or a table row as a dict) as SESSION_FIELDS' values;
    times may be epoch ms or RFC 3339 (ours) -- normalised to ms."""
    return tuple(_start_ms(record[f]) if f in ("session_start", "session_end") else record[f]
                 for f in SESSION_FIELDS)


def read_sessions(brokers: str, topic: str) -> Tuple[Dict[Tuple[str, int], List[tuple]], int]:
    """Sampled users' sessions on `topic`: {(user, start): [fields, ...]} (a list, so that a
    duplicate shows), and the total record count."""
    found: Dict[Tuple[str, int], List[tuple]] = defaultdict(list)
    total = 0
    for record in records(brokers, topic):
        total += 1
        if in_sample(record["user_id"]):
            row = session_row(record)
            found[(record["user_id"], row[0])].append(row)
    return found, total


def read_session_rows(dsn: str, table: str = "user_sessions"):
    """`read_sessions` for the PostgreSQL output."""
    import psycopg
    from psycopg.rows import dict_row

    found: Dict[Tuple[str, int], List[tuple]] = defaultdict(list)
    times = ", ".join(f"(extract(epoch FROM {f}) * 1000)::bigint AS {f}"
                      for f in ("session_start", "session_end"))
    others = ", ".join(f for f in SESSION_FIELDS if f not in ("session_start", "session_end"))
    with psycopg.connect(dsn, row_factory=dict_row) as conn:
        rows = conn.execute(f"SELECT user_id, {times}, {others} FROM {table}").fetchall()
    for record in rows:
        if in_sample(record["user_id"]):
            row = session_row(record)
            found[(record["user_id"], row[0])].append(row)
    return found, len(rows)


def compare_sessions(want: Sessions, got: Dict[Tuple[str, int], List[tuple]]) -> str:
    """'ok (N sessions)' or a one-line account of what differs, with the first difference."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    duplicated = [k for k in got if len(got[k]) > 1]
    wrong = [k for k in want if k in got and any(row != want[k] for row in got[k])]
    if not (missing or extra or duplicated or wrong):
        return f"ok ({len(want)} sessions)"
    line = (f"DIFFERS: {len(missing)} missing, {len(extra)} extra, {len(wrong)} wrong, "
            f"{len(duplicated)} duplicated of {len(want)} sampled sessions")
    if wrong:
        key = min(wrong)
        row = next(r for r in got[key] if r != want[key])
        fields = ", ".join(f"{f}: want {w!r}, got {g!r}" for f, w, g in zip(SESSION_FIELDS, want[key], row)
                           if w != g)
        line += f"; first wrong {key[0]}@{key[1]}: {fields}"
    elif missing:
        line += f"; first missing {min(missing)}"
    elif extra:
        line += f"; first extra {min(extra)}"
    return line


def compare(want: WindowCounts, got: WindowCounts) -> str:
    """'ok (N windows)' or a one-line account of what differs."""
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    wrong = [k for k in want if k in got and got[k] != want[k]]
    if not (missing or extra or wrong):
        return f"ok ({len(want)} windows)"
    return (f"DIFFERS: {len(missing)} missing, {len(extra)} extra, {len(wrong)} wrong counts "
            f"of {len(want)} sampled windows")


def read_rows(dsn: str, table: str, key_field: str, cutoff: int) -> Tuple[WindowCounts, int]:
    """`read_windows` for the PostgreSQL output: sampled {(key, start): events} of `table`."""
    import psycopg

    found: WindowCounts = {}
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f"SELECT {key_field}, (extract(epoch FROM window_start) * 1000)"
                            f"::bigint, events FROM {table}").fetchall()
    for key, start, events in rows:
        if in_sample(key) and start < cutoff:
            found[(key, start)] = found.get((key, start), 0) + events
    return found, len(rows)
