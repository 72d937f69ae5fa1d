"""The user sessions a correct service must emit for a generated stream, from the traffic model
alone (the test oracle for sessions; see the sessions contract in README / SPEC "Sessions").

Why it looks like this: the generator labels every message with what it meant it to be, so
the sessions follow from the model without any of the service's code. A user's sessions are
made of its well-formed on-time events, which are exactly the generator's ``valid`` and
``out_of_order`` messages when

* the window W plus the allowed lateness L is at most 60 s (a ``late`` draw is more than 60 s
  behind its user's newest event time, so it is late for every such W and L), and
* L >= ``max_disorder_ms`` (an ``out_of_order`` event is at most that far behind its user's
  newest time, so it is on time);

both are checked. ``malformed`` messages count nowhere. Each user's events are ordered by
(event time, partition, offset): a user's messages all go to one partition in the order they
are made, so ties keep the generator's order. Then, per the contract: consecutive events less
than the gap apart are in one run (exactly the gap apart: two); a run is split greedily from
its first event: an event more than ``max_ms`` after the current session's start starts the
next one. The records are the user-sessions records, field for field.

It works for every mode of the generator; with visits, `session_summary` also tells the bots'
sessions apart (`visit_bot_ids`).
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from datetime import datetime, timezone
from typing import Iterable, NamedTuple, Sequence

from clickstream.core import codec
from clickstream.core.times import format_ts
from clickstream.tools.generator import GeneratorConfig, generate, visit_bot_ids

DEFAULT_GAP_MS = 1_800_000  # CLICKSTREAM_SESSION_GAP_SECONDS=1800
DEFAULT_MAX_MS = 86_400_000  # CLICKSTREAM_SESSION_MAX_SECONDS=86400
DEFAULT_WINDOW_MS = 5_000
DEFAULT_LATENESS_MS = 10_000
LATE_DRAWS_BEHIND_MS = 60_000  # a late draw is more than this behind its user (generator docstring)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

FIELDS = ("user_id", "session_start", "session_end", "duration_ms", "events", "page_views", "clicks",
          "unique_pages", "entry_url", "exit_url", "bounce", "converted")


class Event(NamedTuple):
    ts: int  # epoch ms
    event_type: str
    url: str


class Session(NamedTuple):
    """One session of one user, times in epoch ms; ``split``: the session ended because the
    next event of its run was more than the maximum after its start (not because of a gap)."""

    user_id: str
    start_ms: int
    end_ms: int
    events: tuple[Event, ...]
    split: bool


class SessionSummary(NamedTuple):
    sessions: int
    users: int
    events: int
    bounces: int
    conversions: int
    split: int  # sessions ended by the maximum
    bot_sessions: int
    bot_split: int
    longest_ms: int


def _ts_ms(ts) -> int:
    """The generator's event time (int ms, or RFC 3339 with ms and Z / +02:00) -> epoch ms."""
    if isinstance(ts, int):
        return ts
    return (datetime.fromisoformat(ts) - _EPOCH) // _MS


_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=timezone.utc) - _EPOCH


def _checked(config: GeneratorConfig, start_ms: int | None, gap_ms: int, max_ms: int, window_ms: int,
             lateness_ms: int) -> GeneratorConfig:
    for name, value, low in (("gap_ms", gap_ms, 1), ("max_ms", max_ms, 1), ("window_ms", window_ms, 1),
                             ("lateness_ms", lateness_ms, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if config.late_fraction > 0 and window_ms + lateness_ms > LATE_DRAWS_BEHIND_MS:
        raise ValueError(f"the generator's late draws are late only for window + lateness <= 60 s, "
                         f"got {window_ms} + {lateness_ms} ms")
    if config.out_of_order_fraction > 0 and lateness_ms < config.max_disorder_ms:
        raise ValueError(f"the generator's out-of-order events are on time only for lateness >= "
                         f"max_disorder_ms, got {lateness_ms} < {config.max_disorder_ms}")
    if start_ms is not None:
        config = dataclasses.replace(config, start_ms=start_ms)
    if config.start_ms is None:
        raise ValueError("start_ms is not set in the config nor given: the stream would depend on the clock")
    return config


def on_time_events(config: GeneratorConfig, start_ms: int | None = None) -> dict[str, list[Event]]:
    """Each user's on-time events in the order the generator makes them (valid and
    out_of_order messages; see the module docstring for when those are the on-time ones)."""
    if start_ms is not None:
        config = dataclasses.replace(config, start_ms=start_ms)
    if config.start_ms is None:
        raise ValueError("start_ms is not set in the config nor given: the stream would depend on the clock")
    per_user: dict[str, list[Event]] = defaultdict(list)
    loads = codec.loads
    for message in generate(config):
        if message.kind == "valid" or message.kind == "out_of_order":
            event = loads(message.value)
            per_user[event["user_id"]].append(Event(_ts_ms(event["ts"]), event["event_type"], event["url"]))
    return dict(per_user)


def split_sessions(user_id: str, events: Iterable[Event], gap_ms: int, max_ms: int) -> list[Session]:
    """A user's sessions from its on-time events in arrival order (the contract's rules)."""
    ordered = sorted(events, key=lambda e: e.ts)  # stable: ties stay in arrival order
    sessions: list[Session] = []
    current: list[Event] = []
    for event in ordered:
        if current:
            if event.ts - current[-1].ts >= gap_ms:
                sessions.append(Session(user_id, current[0].ts, current[-1].ts, tuple(current), False))
                current = []
            elif event.ts - current[0].ts > max_ms:
                sessions.append(Session(user_id, current[0].ts, current[-1].ts, tuple(current), True))
                current = []
        current.append(event)
    if current:
        sessions.append(Session(user_id, current[0].ts, current[-1].ts, tuple(current), False))
    return sessions


def session_record(session: Session) -> dict:
    """The user-sessions record of a session, fields in the contract's order."""
    events = session.events
    views = sum(1 for e in events if e.event_type == "page_view")
    return {
        "user_id": session.user_id,
        "session_start": format_ts(session.start_ms),
        "session_end": format_ts(session.end_ms),
        "duration_ms": session.end_ms - session.start_ms,
        "events": len(events),
        "page_views": views,
        "clicks": sum(1 for e in events if e.event_type == "click"),
        "unique_pages": len({e.url for e in events}),
        "entry_url": events[0].url,
        "exit_url": events[-1].url,
        "bounce": len(events) == 1 and views == 1,
        "converted": any(e.event_type == "purchase" for e in events),
    }


def model_sessions(config: GeneratorConfig, start_ms: int | None = None, *, gap_ms: int = DEFAULT_GAP_MS,
                   max_ms: int = DEFAULT_MAX_MS, window_ms: int = DEFAULT_WINDOW_MS,
                   lateness_ms: int = DEFAULT_LATENESS_MS) -> list[Session]:
    """Every session of the stream ``(config, start_ms)``, ordered by (start, user id)."""
    config = _checked(config, start_ms, gap_ms, max_ms, window_ms, lateness_ms)
    sessions = [s for user, events in on_time_events(config).items()
                for s in split_sessions(user, events, gap_ms, max_ms)]
    sessions.sort(key=lambda s: (s.start_ms, s.user_id))
    return sessions


def expected_sessions(config: GeneratorConfig, start_ms: int | None = None, *, gap_ms: int = DEFAULT_GAP_MS,
                      max_ms: int = DEFAULT_MAX_MS, window_ms: int = DEFAULT_WINDOW_MS,
                      lateness_ms: int = DEFAULT_LATENESS_MS) -> list[dict]:
    """The user-sessions records a correct service emits for the stream ``(config, start_ms)``
    with that gap, maximum, window and lateness: ordered by (session_start, user_id), each
    (user_id, session_start) once."""
    return [session_record(s) for s in model_sessions(
        config, start_ms, gap_ms=gap_ms, max_ms=max_ms, window_ms=window_ms, lateness_ms=lateness_ms)]


def summarize(sessions: Sequence[Session], bots: frozenset[str] = frozenset()) -> SessionSummary:
    bounces = conversions = split = bot_sessions = bot_split = 0
    for s in sessions:
        record = session_record(s)
        bounces += record["bounce"]
        conversions += record["converted"]
        split += s.split
        if s.user_id in bots:
            bot_sessions += 1
            bot_split += s.split
    return SessionSummary(
        sessions=len(sessions), users=len({s.user_id for s in sessions}),
        events=sum(len(s.events) for s in sessions), bounces=bounces, conversions=conversions,
        split=split, bot_sessions=bot_sessions, bot_split=bot_split,
        longest_ms=max((s.end_ms - s.start_ms for s in sessions), default=0),
    )


def session_summary(config: GeneratorConfig, start_ms: int | None = None, *, gap_ms: int = DEFAULT_GAP_MS,
                    max_ms: int = DEFAULT_MAX_MS, window_ms: int = DEFAULT_WINDOW_MS,
                    lateness_ms: int = DEFAULT_LATENESS_MS) -> SessionSummary:
    """Counts over `model_sessions`: sessions, bounces, conversions, those split at the maximum,
    and the bots' ones (visits mode)."""
    sessions = model_sessions(config, start_ms, gap_ms=gap_ms, max_ms=max_ms, window_ms=window_ms,
                              lateness_ms=lateness_ms)
    return summarize(sessions, visit_bot_ids(config))
