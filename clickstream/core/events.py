"""Input messages: parse and validate one Kafka value into an `Event`, or say in one line why not.

Every rule here comes from the Input section of SPEC.md. Parsing is strict on purpose: a value
the service would have to guess about (a naive timestamp, a float where milliseconds belong, a
boolean that Python would happily treat as 1) is malformed and goes to the dead-letter topic
with the reason, so the producer can be fixed instead of the numbers quietly drifting.

Event time is carried as integer epoch milliseconds: cheap to compare and to window, and exact.
"""

import re
from calendar import timegm
from typing import NamedTuple, Optional

from clickstream.core import codec
from clickstream.core.memo import Memo
from clickstream.core.times import format_ts, seconds_text

MAX_USER_ID_CHARS = 256
# Not in SPEC's table, but a url travels as the key and inside the value of a page-metrics
# record; a longer one could never be delivered (Kafka's 1 MB limit) and would stop the service.
MAX_URL_CHARS = 65536
OPTIONAL_STRING_FIELDS = ("session_id", "event_id", "referrer", "user_agent")

# Year 0001 .. 9999: the range an RFC 3339 timestamp can express, and so the range we can emit.
MIN_TS_MS = -62135596800000
MAX_TS_MS = 253402300799999

# full-date "T" full-time with a mandatory offset; RFC 3339 section 5.6 allows lower-case t/z
# and (in its note) a space as the separator.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


# An event's kind, decided once at parse: what the user sessions count (any other type counts
# only as an event). An int, so a session's item is built by one C call and compares cheaply.
OTHER, PAGE_VIEW, CLICK, PURCHASE = 0, 1, 2, 3
KINDS = {"page_view": PAGE_VIEW, "click": CLICK, "purchase": PURCHASE}


class Event(NamedTuple):
    """One valid click event; `ts` is epoch milliseconds. Where it came from and its original
    bytes ride along, so a later stage can still dead-letter it (late) as SPEC asks; `kind`
    is KINDS of its event_type (OTHER for any other)."""

    user_id: str
    event_type: str
    url: str
    ts: int
    session_id: str  # "" when absent
    partition: int
    offset: int
    raw: bytes
    kind: int


def make_event(user_id: str, event_type: str, url: str, ts: int, session_id: str = "",
               partition: int = 0, offset: int = 0, raw: bytes = b"") -> Event:
    """An Event from its fields, its kind looked up as parse_event does (tests and tools)."""
    return Event(user_id, event_type, url, ts, session_id, partition, offset, raw,
                 KINDS.get(event_type, OTHER))


class MalformedEvent(ValueError):
    """The value breaks a rule of the input contract; str() is the one-line reason."""


def parse_timestamp(value) -> int:
    """Epoch milliseconds from an integer or an RFC 3339 string with an offset."""
    if type(value) is int:  # not bool: True is an int to Python but not a timestamp
        if not MIN_TS_MS <= value <= MAX_TS_MS:
            raise MalformedEvent(f"ts {value} is outside years 0001..9999 in epoch milliseconds")
        return value
    if isinstance(value, str):
        return _parse_rfc3339(value)
    if isinstance(value, bool):
        raise MalformedEvent("ts must be epoch milliseconds or an RFC 3339 string, not a boolean")
    if isinstance(value, float):
        raise MalformedEvent("ts must be integer epoch milliseconds, not a fraction")
    raise MalformedEvent(f"ts must be epoch milliseconds or an RFC 3339 string, not {_json_type(value)}")


def _parse_rfc3339(text: str) -> int:
    # The common shape, "...THH:MM:SS.mmm" and an offset: the instant of the text without its
    # milliseconds is remembered (events come many to a second), and the milliseconds are
    # added. Exact: that text passed every check below, and a whole second in range plus
    # 0..999 ms stays in range. Anything else, or a failure, takes the full path.
    if len(text) >= 24 and text[19] == ".":
        millis = _MILLIS.get(text[20:23])
        if millis is not None and text[23] in "Zz+-":
            try:
                return _INSTANT_OF_SECOND[text[:19] + text[23:]] + millis
            except MalformedEvent:
                pass  # the full path names the original text
    return _parse_rfc3339_text(text)


def _parse_rfc3339_text(text: str) -> int:
    m = _RFC3339.fullmatch(text)
    if m is None:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?", text, re.ASCII):
            raise MalformedEvent(f"ts {_clip(text)!r} has no UTC offset (add Z or +hh:mm)")
        raise MalformedEvent(f"ts {_clip(text)!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if not 1 <= month <= 12:
        raise MalformedEvent(f"ts {text!r} has month {month}")
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    days = 29 if month == 2 and leap else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days or year == 0:
        raise MalformedEvent(f"ts {text!r} is not a calendar date")
    if hour > 23 or minute > 59 or second > 59:
        raise MalformedEvent(f"ts {text!r} has a time of day out of range")
    fraction = m.group(7)
    millis = int((fraction + "00")[:3]) if fraction else 0
    ts = timegm((year, month, day, hour, minute, second)) * 1000 + millis
    if m.group(9):
        off_h, off_m = int(m.group(10)), int(m.group(11))
        if off_h > 23 or off_m > 59:
            raise MalformedEvent(f"ts {text!r} has an offset out of range")
        offset = (off_h * 60 + off_m) * 60000
        ts = ts - offset if m.group(9) == "+" else ts + offset
    if not MIN_TS_MS <= ts <= MAX_TS_MS:
        raise MalformedEvent(f"ts {text!r} is outside years 0001..9999 in UTC")
    return ts


_MILLIS = {f"{millis:03d}": millis for millis in range(1000)}  # exactly three ASCII digits
_INSTANT_OF_SECOND = Memo(_parse_rfc3339_text, 1 << 16)


def parse_event(value: Optional[bytes], partition: int = -1, offset: int = -1,
                record_ts: Optional[int] = None, max_future_ms: int = 0,
                drop_url_query: bool = False) -> Event:
    """Validate one message value; raises MalformedEvent with a one-line reason.

    `record_ts`: the Kafka record's timestamp (epoch ms), None when it has none; an event
    time more than `max_future_ms` after it is malformed (SPEC, Windows): one such event
    would otherwise carry its user's clock, and with it every window, far ahead.
    `drop_url_query`: the url loses its query string and fragment (CLICKSTREAM_PAGE_URL_QUERY).
    """
    if value is None:
        raise MalformedEvent("message has no value (null)")
    if not value:
        raise MalformedEvent("message value is empty")
    try:
        obj = codec.loads(value)
    except codec.JSONDecodeError as exc:
        raise MalformedEvent(f"not valid JSON: {_first_line(str(exc))}") from None
    if type(obj) is not dict:
        raise MalformedEvent(f"JSON value is {_json_type(obj)}, not an object")
    user_id = _required_string(obj, "user_id")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise MalformedEvent(f"user_id is {len(user_id)} characters, more than {MAX_USER_ID_CHARS}")
    event_type = _required_string(obj, "event_type")
    url = _required_string(obj, "url")
    if len(url) > MAX_URL_CHARS:
        raise MalformedEvent(f"url is {len(url)} characters, more than {MAX_URL_CHARS}")
    if "ts" not in obj:
        raise MalformedEvent("required field ts is missing")
    ts = parse_timestamp(obj["ts"])
    for name in OPTIONAL_STRING_FIELDS:
        field = obj.get(name, "")
        if type(field) is not str:
            raise MalformedEvent(f"{name} must be a string, not {_json_type(field)}")
    # Last: a message that breaks a rule of its own says so rather than this.
    if record_ts is not None and ts - record_ts > max_future_ms:
        raise MalformedEvent(_ahead_reason(ts, record_ts, max_future_ms))
    return Event(user_id, event_type, _BARE_URLS[url] if drop_url_query else SHARED_URLS[url], ts,
                 obj.get("session_id", ""), partition, offset, value,
                 KINDS.get(event_type, OTHER))


def strip_query(url: str) -> str:
    """`url` without its query string and fragment: everything from the first '?' or '#'."""
    for mark in "?#":
        at = url.find(mark)
        if at >= 0:
            url = url[:at]
    return url


def _bare_url(url: str) -> str:
    bare = strip_query(url)
    if not bare:  # an empty page key would count unrelated pages together
        raise MalformedEvent(f"url {_clip(url)!r} is empty without its query string and fragment")
    return SHARED_URLS[bare]


def _ahead_reason(ts: int, record_ts: int, max_future_ms: int) -> str:
    return (f"ts {format_ts(ts)} is more than {seconds_text(max_future_ms)} s ahead of its "
            f"Kafka record's timestamp {format_ts(record_ts)} (CLICKSTREAM_MAX_FUTURE_SECONDS)")


# One str object per distinct url: they repeat, and open windows keep them. State that comes
# back from a snapshot with copies maps its urls through it too.
SHARED_URLS = Memo(lambda url: url, 1 << 16)
# With the query dropped, each url as given maps to the one str of its page (a failed
# lookup, a malformed url, is not remembered).
_BARE_URLS = Memo(_bare_url, 1 << 16)


def _required_string(obj: dict, name: str) -> str:
    if name not in obj:
        raise MalformedEvent(f"required field {name} is missing")
    field = obj[name]
    if type(field) is not str:
        raise MalformedEvent(f"{name} must be a string, not {_json_type(field)}")
    if not field:
        raise MalformedEvent(f"{name} is empty")
    return field


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else "unknown error"


def _clip(text: str, limit: int = 64) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
