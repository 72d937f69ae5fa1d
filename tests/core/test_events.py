"""Tests of input parsing (`clickstream.events`) against the Input section of SPEC.md.

No Kafka needed.  The expectations are derived from SPEC, not from the parser: epoch
milliseconds are computed here with `datetime`, and the Hypothesis properties compare the
parser with an independent reference validator (`spec_oracle`) written from the SPEC table.

SPEC, Input:
  user_id     non-empty string, at most 256 characters          required
  event_type  non-empty string (any value)                       required
  url         non-empty string                                   required
  ts          RFC 3339 string with offset, or integer epoch ms   required
  session_id, event_id, referrer, user_agent: string             optional
  A wrong type in an optional field, or JSON that is not an object, is malformed.
  Other fields are ignored.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from clickstream.core.events import (CLICK, OTHER, PAGE_VIEW, PURCHASE, Event, MalformedEvent,
                                     _parse_rfc3339_text, make_event, parse_event,
                                     parse_timestamp, strip_query)

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)
REQUIRED = ("user_id", "event_type", "url", "ts")
REQUIRED_STRINGS = ("user_id", "event_type", "url")
OPTIONAL = ("session_id", "event_id", "referrer", "user_agent")


def epoch_ms(dt: datetime) -> int:
    """Exact epoch milliseconds of an aware datetime (floor, integer arithmetic only)."""
    assert dt.tzinfo is not None
    return (dt - EPOCH) // MS


def tz(hours: int = 0, minutes: int = 0, sign: int = 1) -> timezone:
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


# Years 0001..9999 in UTC: the range an RFC 3339 timestamp can express.
MIN_MS = epoch_ms(datetime(1, 1, 1, tzinfo=UTC))
MAX_MS = epoch_ms(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))
JAN_2026 = epoch_ms(datetime(2026, 1, 1, tzinfo=UTC))
assert JAN_2026 == 1_767_225_600_000

BASE = {"user_id": "u1", "event_type": "page_view", "url": "https://example.com/", "ts": JAN_2026}
MISSING = object()


def message(**fields) -> bytes:
    """BASE with fields overridden (MISSING deletes one), as compact UTF-8 JSON bytes."""
    obj = dict(BASE)
    for name, value in fields.items():
        if value is MISSING:
            obj.pop(name, None)
        else:
            obj[name] = value
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def assert_one_line_reason(exc: MalformedEvent, field: str | None = None) -> None:
    text = str(exc)
    assert isinstance(exc, ValueError)
    assert text.strip(), "the reason must not be empty"
    assert len(text.splitlines()) == 1, f"the reason must be one line: {text!r}"
    assert "\n" not in text and "\r" not in text
    if field is not None:
        assert re.search(rf"\b{re.escape(field)}\b", text), f"{field!r} not named in {text!r}"


# --------------------------------------------------------------------------------------------
# Valid inputs
# --------------------------------------------------------------------------------------------

ALL_OPTIONAL = {
    "session_id": "s-42",
    "event_id": "e-1",
    "referrer": "https://ref.example/",
    "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
}

VALID_MESSAGES = [
    # (id, obj, expected session_id)
    ("minimal", dict(BASE), ""),
    ("all-optional", {**BASE, **ALL_OPTIONAL}, "s-42"),
    ("optional-empty-strings", {**BASE, "session_id": "", "event_id": "", "referrer": "",
                                "user_agent": ""}, ""),
    ("only-session-id", {**BASE, "session_id": "abc"}, "abc"),
    ("only-referrer", {**BASE, "referrer": "x"}, ""),
    ("extra-unknown-fields", {**BASE, "extra": {"nested": [1, 2.5, None, True]}, "n": None,
                              "f": 1.5, "b": False, "list": [], "USER_ID": 7, "Ts": "x"}, ""),
    ("extra-fields-and-optional", {**BASE, **ALL_OPTIONAL, "x": [{"y": {}}]}, "s-42"),
    ("event-type-other", {**BASE, "event_type": "hover"}, ""),
    ("event-type-custom-unicode", {**BASE, "event_type": "вход 🚪"}, ""),
    *[(f"event-type-{t}", {**BASE, "event_type": t}, "")
      for t in ("page_view", "click", "scroll", "add_to_cart", "purchase")],
    ("unicode-emoji", {**BASE, "user_id": "🙂👍🏽", "url": "https://example.com/🙂?q=😀"}, ""),
    ("unicode-cjk", {**BASE, "user_id": "用户一", "url": "https://例え.jp/パス/商品"}, ""),
    ("unicode-combining", {**BASE, "user_id": "e\u0301a\u0308", "url": "/cafe\u0301"}, ""),
    ("unicode-rtl-zwj", {**BASE, "user_id": "مستخدم\u200d", "url": "/👨‍👩‍👧"}, ""),
    ("unicode-nul-and-del", {**BASE, "user_id": "a\u0000b\u007f", "url": "/\u0001"}, ""),
    ("unicode-session", {**BASE, "session_id": "セッション🙂"}, "セッション🙂"),
    ("user-id-256-ascii", {**BASE, "user_id": "a" * 256}, ""),
    ("user-id-256-latin1", {**BASE, "user_id": "é" * 256}, ""),
    ("user-id-256-cjk", {**BASE, "user_id": "字" * 256}, ""),
    ("user-id-256-emoji", {**BASE, "user_id": "🙂" * 256}, ""),
    ("user-id-256-codepoints-combining", {**BASE, "user_id": "e\u0301" * 128}, ""),
    ("user-id-1-char", {**BASE, "user_id": "x"}, ""),
    ("user-id-whitespace", {**BASE, "user_id": " "}, ""),
    ("long-url", {**BASE, "url": "/" + "p" * 10_000}, ""),
    ("key-order", {"ts": JAN_2026, "url": "/", "event_type": "click", "user_id": "u1"}, ""),
]


@pytest.mark.parametrize("ensure_ascii", [False, True], ids=["utf8", "ascii-escaped"])
@pytest.mark.parametrize("obj,session", [(o, s) for _, o, s in VALID_MESSAGES],
                         ids=[i for i, _, _ in VALID_MESSAGES])
def test_valid_message(obj, session, ensure_ascii):
    raw = json.dumps(obj, ensure_ascii=ensure_ascii).encode("utf-8")
    event = parse_event(raw)
    assert isinstance(event, Event)
    assert event.user_id == obj["user_id"]
    assert event.event_type == obj["event_type"]
    assert event.url == obj["url"]
    assert type(event.ts) is int and event.ts == obj["ts"]
    assert event.session_id == session
    assert event.raw == raw
    assert (event.partition, event.offset) == (-1, -1)


def test_valid_message_with_json_whitespace():
    raw = b' \t\r\n{ "user_id" : "u1" ,\n "event_type" : "click" , "url" : "/" , "ts" : 0 }\n '
    event = parse_event(raw)
    assert (event.user_id, event.event_type, event.url, event.ts) == ("u1", "click", "/", 0)


def test_valid_message_with_escapes():
    raw = b'{"user_id":"\\u00e9\\ud83d\\ude42\\n\\"","event_type":"c","url":"\\/x","ts":0}'
    event = parse_event(raw)
    assert event.user_id == 'é🙂\n"'
    assert event.url == "/x"


INT_TS = [
    ("zero", 0),
    ("one", 1),
    ("minus-one", -1),
    ("pre-1970", epoch_ms(datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC))),
    ("pre-1970-1900", epoch_ms(datetime(1900, 1, 1, tzinfo=UTC))),
    ("2026", JAN_2026),
    ("large-2100", epoch_ms(datetime(2100, 1, 1, tzinfo=UTC))),
    ("beyond-int32-seconds", 2**31 * 1000 + 7),
    ("min-year-0001", MIN_MS),
    ("max-year-9999", MAX_MS),
]


@pytest.mark.parametrize("ts", [t for _, t in INT_TS], ids=[i for i, _ in INT_TS])
def test_ts_integer_ms(ts):
    assert parse_event(message(ts=ts)).ts == ts
    assert parse_timestamp(ts) == ts


def test_ts_negative_zero_literal():
    raw = b'{"user_id":"u","event_type":"c","url":"/","ts":-0}'
    assert parse_event(raw).ts == 0


RFC3339_VALID = [
    # (id, text, expected epoch ms)
    ("Z", "2026-01-01T00:00:00Z", JAN_2026),
    ("lower-z", "2026-01-01T00:00:00z", JAN_2026),
    ("lower-t", "2026-01-01t00:00:00Z", JAN_2026),
    ("lower-t-lower-z", "2026-01-01t12:34:56z",
     epoch_ms(datetime(2026, 1, 1, 12, 34, 56, tzinfo=UTC))),
    ("space-separator", "2026-01-01 00:00:00Z", JAN_2026),
    ("spec-example", "2026-01-01T00:00:00.123Z", JAN_2026 + 123),
    ("plus-00:00", "2026-01-01T00:00:00+00:00", JAN_2026),
    ("minus-00:00", "2026-01-01T00:00:00-00:00", JAN_2026),
    ("plus-05:30", "2026-01-01T05:30:00+05:30",
     epoch_ms(datetime.fromisoformat("2026-01-01T05:30:00+05:30"))),
    ("plus-05:30-is-utc-midnight", "2026-01-01T05:30:00+05:30", JAN_2026),
    ("minus-08:00", "2025-12-31T16:00:00-08:00", JAN_2026),
    ("minus-03:30", "2026-03-15T10:20:30-03:30",
     epoch_ms(datetime(2026, 3, 15, 10, 20, 30, tzinfo=tz(3, 30, -1)))),
    ("plus-14:00", "2026-01-01T14:00:00+14:00", JAN_2026),
    ("minus-12:00", "2025-12-31T12:00:00-12:00", JAN_2026),
    ("plus-23:59", "2026-06-01T00:00:00+23:59",
     epoch_ms(datetime(2026, 6, 1, tzinfo=tz(23, 59)))),
    ("minus-23:59", "2026-06-01T00:00:00-23:59",
     epoch_ms(datetime(2026, 6, 1, tzinfo=tz(23, 59, -1)))),
    ("offset-crosses-year", "2026-01-01T00:30:00+01:00",
     epoch_ms(datetime(2025, 12, 31, 23, 30, tzinfo=UTC))),
    ("fraction-offset", "2026-01-01T05:30:00.250+05:30", JAN_2026 + 250),
    ("frac-1-digit", "2026-01-01T00:00:00.1Z", JAN_2026 + 100),
    ("frac-2-digits", "2026-01-01T00:00:00.12Z", JAN_2026 + 120),
    ("frac-3-digits", "2026-01-01T00:00:00.123Z", JAN_2026 + 123),
    ("frac-4-digits", "2026-01-01T00:00:00.1234Z", JAN_2026 + 123),
    ("frac-5-digits", "2026-01-01T00:00:00.12345Z", JAN_2026 + 123),
    ("frac-6-digits", "2026-01-01T00:00:00.123456Z", JAN_2026 + 123),
    ("frac-7-digits", "2026-01-01T00:00:00.1234567Z", JAN_2026 + 123),
    ("frac-8-digits", "2026-01-01T00:00:00.12345678Z", JAN_2026 + 123),
    ("frac-9-digits", "2026-01-01T00:00:00.123456789Z", JAN_2026 + 123),
    ("frac-zeros", "2026-01-01T00:00:00.000000000Z", JAN_2026),
    ("frac-leading-zero", "2026-01-01T00:00:00.007Z", JAN_2026 + 7),
    ("truncate-.9999", "2026-01-01T00:00:00.9999Z", JAN_2026 + 999),
    ("truncate-.9995", "2026-01-01T00:00:00.9995Z", JAN_2026 + 999),
    ("truncate-.0009", "2026-01-01T00:00:00.0009Z", JAN_2026),
    ("truncate-.999999999", "2026-01-01T23:59:59.999999999Z",
     epoch_ms(datetime(2026, 1, 1, 23, 59, 59, 999000, tzinfo=UTC))),
    ("truncate-.1239-offset", "2026-01-01T01:00:00.1239+01:00", JAN_2026 + 123),
    ("frac-space-separator", "2026-01-01 00:00:00.5z", JAN_2026 + 500),
    ("pre-1970", "1969-07-20T20:17:40Z", epoch_ms(datetime(1969, 7, 20, 20, 17, 40, tzinfo=UTC))),
    ("pre-1970-fraction", "1969-12-31T23:59:59.999Z", -1),
    ("pre-1970-truncate", "1969-12-31T23:59:59.9999Z", -1),
    ("epoch", "1970-01-01T00:00:00Z", 0),
    ("epoch-offset", "1970-01-01T01:00:00+01:00", 0),
    ("leap-day-2024", "2024-02-29T12:00:00Z", epoch_ms(datetime(2024, 2, 29, 12, tzinfo=UTC))),
    ("leap-day-2024-fromiso", "2024-02-29T23:59:59.500-02:00",
     epoch_ms(datetime.fromisoformat("2024-02-29T23:59:59.500-02:00"))),
    ("leap-day-2000", "2000-02-29T00:00:00Z", epoch_ms(datetime(2000, 2, 29, tzinfo=UTC))),
    ("dec-31", "2026-12-31T23:59:59Z", epoch_ms(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC))),
    ("apr-30", "2026-04-30T00:00:00Z", epoch_ms(datetime(2026, 4, 30, tzinfo=UTC))),
    ("year-0001", "0001-01-01T00:00:00Z", MIN_MS),
    ("year-0001-negative-offset", "0001-01-01T00:00:00-00:01", MIN_MS + 60_000),
    ("year-9999-max", "9999-12-31T23:59:59.999Z", MAX_MS),
    ("year-9999-max-long-fraction", "9999-12-31T23:59:59.999999999Z", MAX_MS),
    ("year-9999-positive-offset", "9999-12-31T23:59:59+00:01", MAX_MS - 999 - 60_000),
]


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in RFC3339_VALID],
                         ids=[i for i, _, _ in RFC3339_VALID])
def test_ts_rfc3339(text, expected):
    event = parse_event(message(ts=text))
    assert type(event.ts) is int
    assert event.ts == expected
    assert parse_timestamp(text) == expected


# Texts with exactly three fraction digits take a fast path (the instant of the text without
# them, remembered, plus the milliseconds); these sit on its edges and must agree with the
# full parse, value or message.
FAST_PATH_EDGES = [
    "9999-12-31T23:59:59.999Z",  # the last millisecond there is
    "9999-12-31T23:59:59.999-00:01",  # past it by the offset: out of range
    "0001-01-01T00:00:00.000Z",
    "0001-01-01T00:00:00.500+00:01",  # before year 1 in UTC
    "2026-01-01t00:00:05.123z", "2026-01-01 00:00:05.123+02:00",
    "2026-02-29T00:00:00.123Z",  # not a leap year: the second is wrong, not the fraction
    "2024-02-29T23:59:59.999+23:59", "2026-01-01T00:00:05.12Z", "2026-01-01T00:00:05.1234Z",
    "2026-01-01T00:00:05.12aZ", "2026-01-01T00:00:05.١٢٣Z",  # Arabic-Indic digits
    "2026-01-01T00:00:05.123", "2026-01-01T00:00:05.123+2:00", "2026-01-01T00:00:05.123+24:00",
    "2026-01-01T00:00:05.123UTC",
]


def full_parse(text: str):
    try:
        return _parse_rfc3339_text(text)
    except MalformedEvent as exc:
        return str(exc)


def fast_parse(text: str):
    try:
        return parse_timestamp(text)
    except MalformedEvent as exc:
        return str(exc)


@pytest.mark.parametrize("text", FAST_PATH_EDGES)
def test_ts_fast_path_agrees_with_the_full_parse(text):
    for _ in range(2):  # the second time the instant of the second is remembered
        assert fast_parse(text) == full_parse(text)
    try:
        expected = ref_ts(text)
    except Reject:
        assert type(fast_parse(text)) is str
    else:
        assert fast_parse(text) == expected


@settings(max_examples=2000, deadline=None)
@given(st.integers(MIN_MS - 86_400_000, MAX_MS + 86_400_000),
       st.sampled_from(["Z", "z", "+00:00", "-00:00", "+02:00", "-23:59", "+23:59", "+24:00"]),
       st.sampled_from(["T", "t", " "]))
def test_property_ts_fast_path(ms, offset, sep):
    """Three-digit fractions at every millisecond and offset: the same value or the same
    message as the full parse, and the reference's verdict."""
    shift = 0 if offset in ("Z", "z") else (1 if offset[0] == "+" else -1) * (
        int(offset[1:3]) * 3_600_000 + int(offset[4:6]) * 60_000)
    try:
        local = datetime(1970, 1, 1) + timedelta(milliseconds=ms + shift)
    except OverflowError:
        return  # no such local time to write
    text = (f"{local.year:04d}-{local:%m-%d}{sep}{local:%H:%M:%S}."
            f"{local.microsecond // 1000:03d}{offset}")
    assert fast_parse(text) == full_parse(text)
    try:
        assert fast_parse(text) == ref_ts(text) == ms
    except Reject:
        assert type(fast_parse(text)) is str


def test_carries_partition_offset_and_raw():
    raw = message(session_id="s1")
    event = parse_event(raw, partition=3, offset=123_456_789_012)
    assert event.partition == 3
    assert event.offset == 123_456_789_012
    assert type(event.raw) is bytes and event.raw == raw
    assert event.session_id == "s1"


@pytest.mark.parametrize("partition,offset", [(0, 0), (7, 1), (-1, -1), (2**31 - 1, 2**63 - 1)],
                         ids=["zero", "small", "unknown", "max"])
def test_carries_positions(partition, offset):
    event = parse_event(message(), partition, offset)
    assert (event.partition, event.offset) == (partition, offset)


def test_raw_is_the_original_bytes_not_reserialised():
    raw = b'{ "ts" : 0,"url":"/\\u00e9", "user_id":"u","event_type":"c", "x": [1.50] }'
    assert parse_event(raw, 1, 2).raw == raw


# --------------------------------------------------------------------------------------------
# Malformed inputs
# --------------------------------------------------------------------------------------------

WRONG_TYPES = [
    ("int", 1),
    ("zero", 0),
    ("float", 1.5),
    ("true", True),
    ("false", False),
    ("null", None),
    ("empty-array", []),
    ("array", ["u1"]),
    ("empty-object", {}),
    ("object", {"id": "u1"}),
]

TS_WRONG = [
    ("true", True),
    ("false", False),
    ("null", None),
    ("float-1.5", 1.5),
    ("float-integral", 1767225600000.0),
    ("float-zero", 0.0),
    ("float-exponent", 1e12),
    ("array", [JAN_2026]),
    ("object", {"ms": JAN_2026}),
    ("numeric-string", "1767225600000"),
    ("empty-string", ""),
    ("naive", "2026-01-01T00:00:00"),
    ("naive-fraction", "2026-01-01T00:00:00.123"),
    ("naive-space", "2026-01-01 00:00:00"),
    ("date-only", "2026-01-01"),
    ("date-only-Z", "2026-01-01Z"),
    ("time-only", "00:00:00Z"),
    ("no-seconds", "2026-01-01T00:00Z"),
    ("feb-29-non-leap", "2026-02-29T00:00:00Z"),
    ("feb-29-1900", "1900-02-29T00:00:00Z"),
    ("feb-29-2100", "2100-02-29T00:00:00Z"),
    ("feb-30-leap", "2024-02-30T00:00:00Z"),
    ("month-13", "2026-13-01T00:00:00Z"),
    ("month-00", "2026-00-10T00:00:00Z"),
    ("day-00", "2026-01-00T00:00:00Z"),
    ("apr-31", "2026-04-31T00:00:00Z"),
    ("jan-32", "2026-01-32T00:00:00Z"),
    ("hour-24", "2026-01-01T24:00:00Z"),
    ("minute-60", "2026-01-01T00:60:00Z"),
    ("second-60", "2026-01-01T00:00:60Z"),
    ("second-61", "2026-01-01T12:30:61Z"),
    ("offset-+24:00", "2026-01-01T00:00:00+24:00"),
    ("offset--24:00", "2026-01-01T00:00:00-24:00"),
    ("offset-+05:60", "2026-01-01T00:00:00+05:60"),
    ("offset-no-colon", "2026-01-01T00:00:00+0530"),
    ("offset-hours-only", "2026-01-01T00:00:00+05"),
    ("offset-one-digit", "2026-01-01T00:00:00+5:30"),
    ("offset-seconds", "2026-01-01T00:00:00+05:30:00"),
    ("offset-UTC-word", "2026-01-01T00:00:00 UTC"),
    ("garbage-after", "2026-01-01T00:00:00Zjunk"),
    ("garbage-after-offset", "2026-01-01T00:00:00+01:00x"),
    ("trailing-space", "2026-01-01T00:00:00Z "),
    ("leading-space", " 2026-01-01T00:00:00Z"),
    ("trailing-newline", "2026-01-01T00:00:00Z\n"),
    ("double-Z", "2026-01-01T00:00:00ZZ"),
    ("empty-fraction", "2026-01-01T00:00:00.Z"),
    ("comma-fraction", "2026-01-01T00:00:00,123Z"),
    ("bad-separator", "2026-01-01X00:00:00Z"),
    ("two-spaces", "2026-01-01  00:00:00Z"),
    ("slashes", "2026/01/01T00:00:00Z"),
    ("basic-format", "20260101T000000Z"),
    ("short-year", "226-01-01T00:00:00Z"),
    ("five-digit-year", "10000-01-01T00:00:00Z"),
    ("signed-year", "+2026-01-01T00:00:00Z"),
    ("one-digit-month", "2026-1-01T00:00:00Z"),
    ("one-digit-hour", "2026-01-01T0:00:00Z"),
    ("unicode-digits", "２０２６-01-01T00:00:00Z"),
    ("arabic-indic-digits", "٢٠٢٦-01-01T00:00:00Z"),
    ("unicode-minus-offset", "2026-01-01T00:00:00\u221201:00"),
    ("year-0000", "0000-01-01T00:00:00Z"),
    ("year-0000-dec-31", "0000-12-31T23:59:59Z"),
    ("year-0001-positive-offset", "0001-01-01T00:00:00+00:01"),
    ("year-9999-negative-offset", "9999-12-31T23:59:59-00:01"),
    ("text", "yesterday"),
    ("newline-text", "line one\nline two"),
    ("int-below-year-0001", MIN_MS - 1),
    ("int-above-year-9999", MAX_MS + 1),
    ("int-far-below", -(10**15)),
    ("int-far-above", 10**16),
    ("int-beyond-int64", 2**64),
    ("int-beyond-negative-int64", -(2**63) - 1),
    ("int-huge", 10**40),
]


def _malformed_cases():
    cases = []
    # JSON / message level: no field to name.
    cases += [
        ("value-None", None, None),
        ("empty-bytes", b"", None),
        ("whitespace-space", b" ", None),
        ("whitespace-mixed", b" \t\r\n ", None),
        ("invalid-json-text", b"not json", None),
        ("invalid-json-single-quotes", b"{'user_id': 'u1'}", None),
        ("invalid-json-trailing-comma", message()[:-1] + b",}", None),
        ("invalid-json-unquoted-key", b'{user_id:"u1"}', None),
        ("invalid-json-trailing-garbage", message() + b"x", None),
        ("invalid-json-two-objects", message() + message(), None),
        ("invalid-json-trailing-nul", message() + b"\x00", None),
        ("invalid-json-bom", b"\xef\xbb\xbf" + message(), None),
        ("invalid-json-raw-newline-in-string", message(user_id="a\nb").replace(b"\\n", b"\n"),
         None),
        ("invalid-json-raw-tab-in-string", message(url="a\tb").replace(b"\\t", b"\t"), None),
        ("truncated-json-brace", b"{", None),
        ("truncated-json-half", message()[: len(message()) // 2], None),
        ("truncated-json-last-byte", message()[:-1], None),
        ("truncated-json-in-string", b'{"user_id":"u', None),
        ("invalid-utf8-ff", b"\xff", None),
        ("invalid-utf8-fe-ff", b"\xfe\xff", None),
        ("invalid-utf8-in-string", message(user_id="X").replace(b"X", b"\xff"), None),
        ("invalid-utf8-continuation-only", message(url="X").replace(b"X", b"\x80"), None),
        ("invalid-utf8-truncated-sequence", message(url="X").replace(b"X", b"\xe2\x82"), None),
        ("overlong-slash-2byte", message(url="X").replace(b"X", b"\xc0\xaf"), None),
        ("overlong-nul-2byte", message(url="X").replace(b"X", b"\xc0\x80"), None),
        ("overlong-slash-3byte", message(url="X").replace(b"X", b"\xe0\x80\xaf"), None),
        ("overlong-4byte", message(url="X").replace(b"X", b"\xf0\x80\x80\xaf"), None),
        ("lone-high-surrogate-utf8", message(user_id="X").replace(b"X", b"\xed\xa0\x80"), None),
        ("lone-low-surrogate-utf8", message(user_id="X").replace(b"X", b"\xed\xbf\xbf"), None),
        ("surrogate-pair-as-cesu8",
         message(user_id="X").replace(b"X", b"\xed\xa0\xbd\xed\xb8\x82"), None),
        ("above-max-codepoint", message(user_id="X").replace(b"X", b"\xf4\x90\x80\x80"), None),
        ("invalid-utf8-in-key", message().replace(b'"url"', b'"u\xffrl"'), None),
        ("invalid-utf8-in-ignored-field", message(extra="X").replace(b"X", b"\xff"), None),
        ("json-array", b"[]", None),
        ("json-array-of-event", b"[" + message() + b"]", None),
        ("json-string", b'"hello"', None),
        ("json-number", b"42", None),
        ("json-float", b"1.5", None),
        ("json-null", b"null", None),
        ("json-true", b"true", None),
        ("json-false", b"false", None),
        ("json-empty-object", b"{}", None),
        ("nested-array-2000", b"[" * 2000, None),
        ("nested-array-2000-closed", b"[" * 2000 + b"]" * 2000, None),
        ("nested-object-2000", b'{"a":' * 2000, None),
        ("nested-object-2000-closed", b'{"a":' * 2000 + b"1" + b"}" * 2000, None),
        ("nested-ignored-field-2000",
         message()[:-1] + b',"x":' + b"[" * 2000 + b"]" * 2000 + b"}", None),
        ("nested-array-100000", b"[" * 100_000, None),
        ("ts-NaN", message(ts=0).replace(b'"ts":0', b'"ts":NaN'), None),
        ("ts-Infinity", message(ts=0).replace(b'"ts":0', b'"ts":Infinity'), None),
        ("ts-minus-Infinity", message(ts=0).replace(b'"ts":0', b'"ts":-Infinity'), None),
        ("ignored-field-NaN", message()[:-1] + b',"x":NaN}', None),
        ("ignored-field-Infinity", message()[:-1] + b',"x":Infinity}', None),
        ("ts-hex-literal", message(ts=0).replace(b'"ts":0', b'"ts":0x10'), None),
        ("ts-leading-zero", message(ts=0).replace(b'"ts":0', b'"ts":0123'), None),
        ("ts-plus-sign", message(ts=0).replace(b'"ts":0', b'"ts":+5'), None),
    ]
    for name in REQUIRED:
        cases.append((f"{name}-missing", message(**{name: MISSING}), name))
    for name in REQUIRED_STRINGS:
        cases.append((f"{name}-empty", message(**{name: ""}), name))
        for tid, value in WRONG_TYPES:
            cases.append((f"{name}-{tid}", message(**{name: value}), name))
    cases += [
        ("user_id-257-ascii", message(user_id="a" * 257), "user_id"),
        ("user_id-257-latin1", message(user_id="é" * 257), "user_id"),
        ("user_id-257-emoji", message(user_id="🙂" * 257), "user_id"),
        ("user_id-1000", message(user_id="u" * 1000), "user_id"),
    ]
    for tid, value in TS_WRONG:
        cases.append((f"ts-{tid}", message(ts=value), "ts"))
    for name in OPTIONAL:
        for tid, value in WRONG_TYPES:
            cases.append((f"{name}-{tid}", message(**{name: value}), name))
    cases.append(("all-required-missing", message(user_id=MISSING, event_type=MISSING,
                                                  url=MISSING, ts=MISSING), None))
    cases.append(("only-unknown-fields", b'{"userId":"u","type":"click","href":"/","time":0}',
                  None))
    return cases


MALFORMED = _malformed_cases()


@pytest.mark.parametrize("value,field", [(v, f) for _, v, f in MALFORMED],
                         ids=[i for i, _, _ in MALFORMED])
def test_malformed(value, field):
    with pytest.raises(MalformedEvent) as info:
        parse_event(value, partition=1, offset=2)
    assert_one_line_reason(info.value, field)


@pytest.mark.parametrize("value", [v for _, v in TS_WRONG], ids=[i for i, _ in TS_WRONG])
def test_parse_timestamp_rejects(value):
    with pytest.raises(MalformedEvent) as info:
        parse_timestamp(value)
    assert_one_line_reason(info.value, "ts")


def test_malformed_is_a_value_error():
    assert issubclass(MalformedEvent, ValueError)


def test_long_garbage_ts_reason_stays_one_line():
    with pytest.raises(MalformedEvent) as info:
        parse_event(message(ts="x\n" * 10_000))
    assert_one_line_reason(info.value, "ts")


# --------------------------------------------------------------------------------------------
# Properties: a reference validator written from SPEC, and Hypothesis against it
# --------------------------------------------------------------------------------------------

_RFC3339_REF = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


class Reject(Exception):
    """The reference validator's "malformed"."""


def ref_ts(value) -> int:
    if isinstance(value, bool):
        raise Reject("bool")
    if isinstance(value, int):
        if not MIN_MS <= value <= MAX_MS:
            raise Reject("out of range")
        return value
    if not isinstance(value, str):
        raise Reject("type")
    m = _RFC3339_REF.fullmatch(value)
    if m is None:
        raise Reject("syntax")
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    try:
        local = datetime(y, mo, d, h, mi, s)  # rejects year 0, month 13, Feb 29, hour 24, :60
    except ValueError:
        raise Reject("calendar") from None
    if m.group(8):
        zone = UTC
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            raise Reject("offset")
        zone = tz(oh, om, -1 if m.group(9) == "-" else 1)
    frac = m.group(7) or ""
    ms = epoch_ms(local.replace(tzinfo=zone)) + int(frac[:3].ljust(3, "0"))
    if not MIN_MS <= ms <= MAX_MS:
        raise Reject("out of range")
    return ms


def _check_text(value) -> None:
    """Every string in a parsed document must be Unicode text (no lone surrogates)."""
    if isinstance(value, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise Reject("surrogate")
    elif isinstance(value, list):
        for item in value:
            _check_text(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, float) and not math.isfinite(value):
        # RFC 8259 section 6 lets a parser limit number range; an overflow may be rejected.
        raise Reject("non-finite")


def ref_decode(raw: bytes):
    try:
        text = raw.decode("utf-8")  # strict: no overlongs, no surrogates
    except UnicodeDecodeError:
        raise Reject("utf-8") from None

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    try:
        obj = json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError):
        raise Reject("json") from None
    _check_text(obj)
    return obj


def ref_event(obj) -> dict:
    """The expected Event fields for a decoded message, or Reject."""
    if type(obj) is not dict:
        raise Reject("not an object")
    for name in REQUIRED_STRINGS:
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise Reject(name)
    if len(obj["user_id"]) > 256:
        raise Reject("user_id length")
    if len(obj["url"]) > 65536:  # the service's own limit: a page record must fit in Kafka
        raise Reject("url length")
    if "ts" not in obj:
        raise Reject("ts missing")
    ts = ref_ts(obj["ts"])
    for name in OPTIONAL:
        if name in obj and not isinstance(obj[name], str):
            raise Reject(name)
    return {"user_id": obj["user_id"], "event_type": obj["event_type"], "url": obj["url"],
            "ts": ts, "session_id": obj.get("session_id", "")}


def check_against_reference(raw: bytes, expected: dict | None) -> None:
    """parse_event accepts exactly what the reference accepts, with the same fields; any
    exception other than MalformedEvent fails."""
    event(f"reference: {'valid' if expected is not None else 'malformed'}")
    try:
        parsed = parse_event(raw, partition=5, offset=77)
    except MalformedEvent as exc:
        assert_one_line_reason(exc)
        assert expected is None, f"valid per SPEC but rejected: {exc}"
        return
    assert expected is not None, f"malformed per SPEC but accepted: {parsed!r}"
    assert isinstance(parsed, Event)
    assert type(parsed.user_id) is str and 0 < len(parsed.user_id) <= 256
    assert type(parsed.event_type) is str and parsed.event_type
    assert type(parsed.url) is str and parsed.url
    assert type(parsed.ts) is int and MIN_MS <= parsed.ts <= MAX_MS
    assert type(parsed.session_id) is str
    kind = {"page_view": 1, "click": 2, "purchase": 3}.get(expected["event_type"], 0)
    assert parsed._asdict() == {**expected, "partition": 5, "offset": 77, "raw": raw,
                                "kind": kind}


def reference(raw: bytes) -> dict | None:
    try:
        return ref_event(ref_decode(raw))
    except Reject:
        return None


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in RFC3339_VALID],
                         ids=[i for i, _, _ in RFC3339_VALID])
def test_reference_agrees_with_table(text, expected):
    """The reference validator itself is checked against the hand-written tables."""
    assert ref_ts(text) == expected


@pytest.mark.parametrize("value", [v for _, v in TS_WRONG], ids=[i for i, _ in TS_WRONG])
def test_reference_rejects_table(value):
    with pytest.raises(Reject):
        ref_ts(value)


# Strategies.
json_leaves = (st.none() | st.booleans() | st.integers()
               | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@st.composite
def rfc3339ish(draw):
    """Strings near the RFC 3339 grammar, with every component sometimes out of range."""
    year = draw(st.sampled_from([0, 1, 1900, 1969, 1970, 2000, 2024, 2026, 2100, 9999])
                | st.integers(0, 10_000))
    month = draw(st.integers(0, 13))
    day = draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(
        st.integers(0, 61))
    sep = draw(st.sampled_from(["T", "t", " ", "_", ""]))
    frac = draw(st.none() | st.text("0123456789", min_size=0, max_size=12))
    offset = draw(st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "UTC"])
                  | st.builds(lambda s, h, m: f"{s}{h:02d}:{m:02d}",
                              st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61)))
    text = f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}"
    if frac is not None:
        text += "." + frac
    return text + offset


valid_strings = st.text(min_size=1, max_size=20)
near_limit_user_ids = st.sampled_from(["a" * 255, "a" * 256, "a" * 257, "é" * 256, "é" * 257,
                                       "🙂" * 256, "🙂" * 257])
string_fields = valid_strings | st.just("") | near_limit_user_ids
ts_values = (st.integers(MIN_MS - 2, MIN_MS + 2) | st.integers(MAX_MS - 2, MAX_MS + 2)
             | st.integers(-(2**70), 2**70) | st.integers(MIN_MS, MAX_MS) | rfc3339ish()
             | st.floats(allow_nan=False, allow_infinity=False) | json_values)
any_field = string_fields | json_values

# A dict carrying (usually) the SPEC keys with random-typed values, plus unknown fields.
event_shaped = st.builds(
    lambda extra, fields: {**extra, **fields},
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    st.fixed_dictionaries(
        {},
        optional={
            "user_id": any_field, "event_type": any_field, "url": any_field, "ts": ts_values,
            **{name: any_field for name in OPTIONAL},
        },
    ),
)
# Mostly valid: required fields of the right shape, optional ones of any type.
nearly_valid = st.builds(
    lambda extra, fields: {**extra, **fields},
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    st.fixed_dictionaries(
        {"user_id": valid_strings | near_limit_user_ids, "event_type": valid_strings,
         "url": valid_strings, "ts": st.integers(MIN_MS - 2, MAX_MS + 2) | rfc3339ish()},
        optional={name: valid_strings | st.just("") | json_values for name in OPTIONAL},
    ),
)
documents = json_values | event_shaped | nearly_valid


@settings(max_examples=5000, deadline=None)
@given(st.binary(max_size=300))
def test_property_random_bytes(raw):
    check_against_reference(raw, reference(raw))


@settings(max_examples=5000, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(documents, st.booleans(), st.sampled_from([None, 1]))
def test_property_json_documents(obj, ensure_ascii, indent):
    raw = json.dumps(obj, ensure_ascii=ensure_ascii, indent=indent).encode("utf-8")
    try:
        expected = ref_event(obj)
    except Reject:
        expected = None
    check_against_reference(raw, expected)


@pytest.mark.parametrize("length, ok", [(65536, True), (65537, False)])
def test_url_length_limit_keeps_page_records_deliverable(length, ok):
    raw = json.dumps({"user_id": "u", "event_type": "click", "url": "é" * length,
                      "ts": 0}, ensure_ascii=False).encode()
    if ok:
        assert parse_event(raw).url == "é" * length
    else:
        with pytest.raises(MalformedEvent, match="url is 65537 characters"):
            parse_event(raw)


# --------------------------------------------------------------------------------------------
# Event time ahead of the Kafka record's timestamp (SPEC, Windows: CLICKSTREAM_MAX_FUTURE_SECONDS)
# --------------------------------------------------------------------------------------------

RECORD_TS = epoch_ms(datetime(2026, 11, 30, 2, tzinfo=UTC))  # 2026-11-30T02:00:00.000Z
HOUR_MS = 3_600_000

FUTURE = [
    # (id, ts, record_ts, max_future_ms, accepted)
    ("same-as-record", RECORD_TS, RECORD_TS, HOUR_MS, True),
    ("in-the-past", JAN_2026, RECORD_TS, HOUR_MS, True),
    ("year-0001", MIN_MS, RECORD_TS, HOUR_MS, True),
    ("1-ms-before-limit", RECORD_TS + HOUR_MS - 1, RECORD_TS, HOUR_MS, True),
    ("exactly-at-limit", RECORD_TS + HOUR_MS, RECORD_TS, HOUR_MS, True),
    ("1-ms-past-limit", RECORD_TS + HOUR_MS + 1, RECORD_TS, HOUR_MS, False),
    ("year-2099", epoch_ms(datetime(2099, 1, 1, tzinfo=UTC)), RECORD_TS, HOUR_MS, False),
    ("year-9999", MAX_MS, RECORD_TS, HOUR_MS, False),
    ("rfc3339-offset-at-limit", "2026-11-30T04:00:00+01:00", RECORD_TS, HOUR_MS, True),
    ("rfc3339-offset-past-limit", "2026-11-30T04:00:00.001+01:00", RECORD_TS, HOUR_MS, False),
    ("rfc3339-z-past-limit", "2026-11-30T03:00:00.001Z", RECORD_TS, HOUR_MS, False),
    ("limit-1-ms-at", RECORD_TS + 1, RECORD_TS, 1, True),
    ("limit-1-ms-past", RECORD_TS + 2, RECORD_TS, 1, False),
    ("record-at-epoch", JAN_2026, 0, HOUR_MS, False),
    ("negative-event-time", -1, 0, 1, True),
    ("no-record-timestamp", MAX_MS, None, HOUR_MS, True),  # nothing to guard by
]


@pytest.mark.parametrize("ts, record_ts, max_future_ms, accepted",
                         [c[1:] for c in FUTURE], ids=[c[0] for c in FUTURE])
def test_event_time_ahead_of_its_record(ts, record_ts, max_future_ms, accepted):
    raw = message(ts=ts)
    if accepted:
        assert parse_event(raw, 1, 2, record_ts, max_future_ms).ts == parse_event(raw).ts
    else:
        with pytest.raises(MalformedEvent) as err:
            parse_event(raw, 1, 2, record_ts, max_future_ms)
        assert_one_line_reason(err.value, "ts")
        assert "CLICKSTREAM_MAX_FUTURE_SECONDS" in str(err.value)


@pytest.mark.parametrize("ts, record_ts, max_future_ms, reason", [
    (epoch_ms(datetime(2099, 1, 1, tzinfo=UTC)), RECORD_TS, HOUR_MS,
     "ts 2099-01-01T00:00:00.000Z is more than 3600 s ahead of its Kafka record's timestamp "
     "2026-11-30T02:00:00.000Z (CLICKSTREAM_MAX_FUTURE_SECONDS)"),
    ("2026-11-30T04:00:00.001+01:00", RECORD_TS, HOUR_MS,
     "ts 2026-11-30T03:00:00.001Z is more than 3600 s ahead of its Kafka record's timestamp "
     "2026-11-30T02:00:00.000Z (CLICKSTREAM_MAX_FUTURE_SECONDS)"),
    (RECORD_TS + 251, RECORD_TS, 250,
     "ts 2026-11-30T02:00:00.251Z is more than 0.25 s ahead of its Kafka record's timestamp "
     "2026-11-30T02:00:00.000Z (CLICKSTREAM_MAX_FUTURE_SECONDS)"),
])
def test_event_time_ahead_reason_names_both_times(ts, record_ts, max_future_ms, reason):
    with pytest.raises(MalformedEvent) as err:
        parse_event(message(ts=ts), 0, 0, record_ts, max_future_ms)
    assert str(err.value) == reason


@pytest.mark.parametrize("fields, field", [
    ({"user_id": MISSING}, "user_id"),
    ({"session_id": 7}, "session_id"),
    ({"ts": "2099-01-01T00:00:00"}, "ts"),  # naive: its own reason, not "ahead"
], ids=["missing-user", "bad-optional", "naive-ts"])
def test_a_broken_message_gives_its_own_reason_before_being_ahead(fields, field):
    far = epoch_ms(datetime(2099, 1, 1, tzinfo=UTC))
    with pytest.raises(MalformedEvent) as err:
        parse_event(message(**{"ts": far, **fields}), 0, 0, RECORD_TS, HOUR_MS)
    assert "ahead" not in str(err.value)
    assert_one_line_reason(err.value, field)


# --------------------------------------------------------------------------------------------
# Page urls without their query string and fragment (CLICKSTREAM_PAGE_URL_QUERY=drop)
# --------------------------------------------------------------------------------------------

STRIPPED = [
    # (url as given, without query string and fragment)
    ("https://shop.example/p/1", "https://shop.example/p/1"),
    ("https://shop.example/p/1?utm_source=x&b=2", "https://shop.example/p/1"),
    ("https://shop.example/p/1#reviews", "https://shop.example/p/1"),
    ("https://shop.example/p/1?a=1#frag", "https://shop.example/p/1"),
    ("https://shop.example/p/1#frag?a=1", "https://shop.example/p/1"),  # '?' inside a fragment
    ("https://shop.example/search?q=a?b#c#d", "https://shop.example/search"),
    ("/p?", "/p"),
    ("/p#", "/p"),
    ("/", "/"),
    ("/a%3Fb%23c", "/a%3Fb%23c"),  # encoded marks are part of the path
    ("/c/café?q=日本", "/c/café"),
    ("/p/🙂#😀", "/p/🙂"),
    (" ?x", " "),
    ("?x=1", ""),
    ("#top", ""),
    ("?", ""),
    ("", ""),
]


@pytest.mark.parametrize("url, expected", STRIPPED)
def test_strip_query(url, expected):
    assert strip_query(url) == expected


@pytest.mark.parametrize("url, expected", [(u, e) for u, e in STRIPPED if e])
def test_drop_url_query_changes_only_the_url(url, expected):
    raw = message(url=url, session_id="s")
    kept, dropped = parse_event(raw, 3, 4), parse_event(raw, 3, 4, drop_url_query=True)
    assert kept.url == url and dropped.url == expected
    assert dropped._replace(url=url) == kept  # raw bytes (for dead letters) stay as given


@pytest.mark.parametrize("url", ["?x", "#", "?", "?a=1#b", "#?"])
def test_a_url_that_is_only_a_query_is_malformed_when_dropped(url):
    assert parse_event(message(url=url)).url == url  # keep: any non-empty url
    with pytest.raises(MalformedEvent) as err:
        parse_event(message(url=url), drop_url_query=True)
    assert str(err.value) == f"url {url!r} is empty without its query string and fragment"
    # not remembered: the next one fails the same way
    with pytest.raises(MalformedEvent):
        parse_event(message(url=url), drop_url_query=True)


def test_dropped_query_urls_share_one_string_per_page():
    a = parse_event(message(url="/p/" + "x" * 40 + "?a=1"), drop_url_query=True).url
    b = parse_event(message(url="/p/" + "x" * 40 + "#b"), drop_url_query=True).url
    c = parse_event(message(url="/p/" + "x" * 40)).url
    assert a == b == c and a is b is c


def test_url_length_limit_is_on_the_url_as_given():
    url = "/" + "p" * 10 + "?" + "q" * 65530
    with pytest.raises(MalformedEvent, match="url is 65542 characters"):
        parse_event(message(url=url), drop_url_query=True)


@pytest.mark.parametrize("event_type,kind", [
    ("page_view", PAGE_VIEW), ("click", CLICK), ("purchase", PURCHASE),
    ("scroll", OTHER), ("Page_View", OTHER), ("page_view ", OTHER),  # exact names only
])
def test_the_kind_is_decided_once_at_parse(event_type, kind):
    raw = json.dumps({"user_id": "u", "event_type": event_type, "url": "/", "ts": 0}).encode()
    assert parse_event(raw).kind == kind
    assert make_event("u", event_type, "/", 0).kind == kind
