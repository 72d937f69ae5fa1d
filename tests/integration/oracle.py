"""The expected outputs, computed from the input messages independently of `clickstream`.

Deliberately naive: plain dicts, `datetime` for every time conversion, one pass in input order
per partition. It implements SPEC's rules as written, for a bounded run (no idle closing):
- an event's window is [floor(ts/W)*W, +W);
- per user, an event is late when its window end is at or behind (newest event time already
  seen for that user) - L, i.e. its window was already emitted;
- every on-time event counts once for its user window and once for its url window.
With `ttl_ms` it also applies the state horizon (SPEC: key state expires): users and urls fall
into 64 shards by crc32 of their UTF-8 bytes; a shard's clock is the newest event time it has
seen, and an event older than its shard's clock minus the TTL is late (for its user: dead
letter, counted nowhere; else for its url: dead letter, counted for its user only). Forgetting
keys changes no output, so nothing is forgotten here. Clocks move in the order of `messages`
(partition by partition), so with several partitions the input must keep every event within
the TTL of all others, or sit on one partition.
Sessions (SPEC: Sessions) are a sort-and-split of each user's on-time events, the definition
itself: order by (ts, partition, offset), cut where consecutive times are the gap or more
apart, then cut each run at its first event time plus the maximum, greedily. A bounded run
emits every one of them; when they were emitted does not change them.
"""

import base64
import json
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Dict, Iterable, List, Optional, Tuple

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
REQUIRED = ("user_id", "event_type", "url", "ts")
OPTIONAL = ("session_id", "event_id", "referrer", "user_agent")


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: Optional[bytes]
    value: Optional[bytes]


def iso(ms: int) -> str:
    dt = EPOCH + timedelta(milliseconds=ms)
    return f"{dt.year:04d}" + dt.strftime("-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def event_time(ts) -> Optional[int]:
    """Epoch ms per SPEC, or None when the value is not a valid timestamp."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, int):
        # years 0001..9999, the span an RFC 3339 output time can show
        return ts if -62135596800000 <= ts <= 253402300799999 else None
    if not isinstance(ts, str) or len(ts) < 20 or ts[10] not in "Tt ":
        return None
    text = ts.replace("z", "Z").replace("t", "T")
    if not (text.endswith("Z") or text[-6] in "+-" and text[-3] == ":"):
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    delta = dt - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000


def parse(value: Optional[bytes]) -> Optional[dict]:
    """The event as a dict with ts in ms, or None when SPEC calls it malformed."""
    if not value:
        return None
    try:
        obj = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    for name in ("user_id", "event_type", "url"):
        if not isinstance(obj.get(name), str) or not obj[name]:
            return None
    if len(obj["user_id"]) > 256 or len(obj["url"]) > 65536 or "ts" not in obj:
        return None
    ts = event_time(obj["ts"])
    if ts is None:
        return None
    for name in OPTIONAL:
        if name in obj and not isinstance(obj[name], str):
            return None
    return dict(obj, ts=ts)


@dataclass
class Expected:
    user: Dict[Tuple[str, str], dict] = field(default_factory=dict)
    page: Dict[Tuple[str, str], dict] = field(default_factory=dict)
    dead: Dict[Tuple[int, int], dict] = field(default_factory=dict)  # (partition, offset)
    sessions: Dict[Tuple[str, str], dict] = field(default_factory=dict)  # (user, session_start)


def _shard(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % 64


SESSION_GAP_MS, SESSION_MAX_MS = 1_800_000, 86_400_000  # SPEC's defaults


def expected_outputs(messages: Iterable[Message], topic: str, window_ms: int,
                     lateness_ms: int, ttl_ms: Optional[int] = None,
                     session_gap_ms: int = SESSION_GAP_MS,
                     session_max_ms: int = SESSION_MAX_MS) -> Expected:
    by_partition: Dict[int, List[Message]] = defaultdict(list)
    for m in messages:
        by_partition[m.partition].append(m)
    newest: Dict[str, int] = {}
    user_events: Dict[Tuple[str, int], List[dict]] = defaultdict(list)
    page_events: Dict[Tuple[str, int], List[dict]] = defaultdict(list)
    user_clock: Dict[int, int] = {}
    page_clock: Dict[int, int] = {}
    on_time: Dict[str, list] = defaultdict(list)
    result = Expected()

    def beyond_horizon(clocks: Dict[int, int], shard: int, ts: int) -> bool:
        if ttl_ms is None:
            return False
        if shard in clocks and ts < clocks[shard] - ttl_ms:
            return True
        clocks[shard] = max(clocks.get(shard, ts), ts)
        return False

    for partition in sorted(by_partition):
        for m in sorted(by_partition[partition], key=lambda m: m.offset):
            event = parse(m.value)
            if event is None:
                result.dead[(m.partition, m.offset)] = _dead("malformed", topic, m)
                continue
            start = event["ts"] // window_ms * window_ms
            user = event["user_id"]
            if beyond_horizon(user_clock, _shard(user), event["ts"]) or (
                    user in newest and start + window_ms <= newest[user] - lateness_ms):
                result.dead[(m.partition, m.offset)] = _dead("late", topic, m)
                continue
            newest[user] = max(newest.get(user, event["ts"]), event["ts"])
            user_events[(user, start)].append(event)
            on_time[user].append((event["ts"], m.partition, m.offset, event))
            if beyond_horizon(page_clock, _shard(event["url"]), event["ts"]):
                result.dead[(m.partition, m.offset)] = _dead("late", topic, m)
                continue
            page_events[(event["url"], start)].append(event)
    for (user, start), events in user_events.items():
        result.user[(user, iso(start))] = {
            "user_id": user,
            "window_start": iso(start),
            "window_end": iso(start + window_ms),
            "events": len(events),
            "page_views": sum(e["event_type"] == "page_view" for e in events),
            "clicks": sum(e["event_type"] == "click" for e in events),
            "unique_pages": len({e["url"] for e in events}),
            "sessions": len({e["session_id"] for e in events if e.get("session_id")}),
            "first_event_ts": iso(min(e["ts"] for e in events)),
            "last_event_ts": iso(max(e["ts"] for e in events)),
        }
    for (url, start), events in page_events.items():
        result.page[(url, iso(start))] = {
            "url": url,
            "window_start": iso(start),
            "window_end": iso(start + window_ms),
            "views": sum(e["event_type"] == "page_view" for e in events),
            "events": len(events),
            "unique_users": len({e["user_id"] for e in events}),
        }
    for user, events in on_time.items():
        for session in _sessions(sorted(events, key=lambda e: e[:3]), session_gap_ms,
                                 session_max_ms):
            first, last = session[0][3], session[-1][3]
            kinds = [e[3]["event_type"] for e in session]
            result.sessions[(user, iso(first["ts"]))] = {
                "user_id": user,
                "session_start": iso(first["ts"]),
                "session_end": iso(last["ts"]),
                "duration_ms": last["ts"] - first["ts"],
                "events": len(session),
                "page_views": kinds.count("page_view"),
                "clicks": kinds.count("click"),
                "unique_pages": len({e[3]["url"] for e in session}),
                "entry_url": first["url"],
                "exit_url": last["url"],
                "bounce": kinds == ["page_view"],
                "converted": "purchase" in kinds,
            }
    return result


def _sessions(events: list, gap_ms: int, max_ms: int) -> List[list]:
    """Sorted (ts, ...) events cut by the gap, then greedily by the maximum."""
    sessions: List[list] = []
    for e in events:
        if sessions and e[0] - sessions[-1][-1][0] < gap_ms and e[0] - sessions[-1][0][0] <= max_ms:
            sessions[-1].append(e)
        else:
            sessions.append([e])
    return sessions


def _dead(reason: str, topic: str, m: Message) -> dict:
    record = {"reason": reason, "topic": topic, "partition": m.partition, "offset": m.offset}
    value = m.value
    if value is None:
        record["value"] = None
        return record
    limit = 256 * 1024  # the service keeps at most this much of a rejected value
    try:
        record["value"] = value.decode("utf-8")[:limit]
        while len(record["value"].encode("utf-8")) > limit:
            record["value"] = record["value"][:-1]
    except UnicodeDecodeError:
        record["value_b64"] = base64.b64encode(value[:limit]).decode()
    return record
