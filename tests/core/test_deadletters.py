"""Tests of dead-letter records (`clickstream.deadletters`) against SPEC.md, "Dead-letter topic":

  {"reason": "malformed" | "late", "error": "<one line>", "topic", "partition", "offset",
   "value" | "value_b64"}   (`value` when the original bytes are UTF-8, else `value_b64`)
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clickstream.core.deadletters import LATE, MALFORMED, dead_letter
from clickstream.core.events import MalformedEvent, parse_event

COMMON_KEYS = {"reason", "error", "topic", "partition", "offset"}


def decode(record: bytes) -> dict:
    assert isinstance(record, bytes)
    text = record.decode("utf-8")  # the record itself is UTF-8 JSON
    assert "\n" not in text  # one Kafka value, compact
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in record"))


def check_shape(rec: dict) -> None:
    keys = set(rec)
    assert keys in (COMMON_KEYS | {"value"}, COMMON_KEYS | {"value_b64"}), keys
    assert isinstance(rec["reason"], str)
    assert isinstance(rec["error"], str)
    assert len(rec["error"].splitlines()) <= 1
    assert isinstance(rec["topic"], str)
    assert type(rec["partition"]) is int and type(rec["offset"]) is int


def assert_words_kept(error: str, folded: str) -> None:
    """Nothing of the message is lost: every word of every line is still there, in order."""
    position = 0
    for word in error.split():
        found = folded.find(word, position)
        assert found >= 0, (word, folded)
        position = found + len(word)


UTF8_VALUES = [
    ("json-object", b'{"user_id":"u1","ts":0}'),
    ("empty", b""),
    ("ascii-text", b"not json"),
    ("whitespace", b" \t\r\n"),
    ("multiline", b"line one\nline two\r\n"),
    ("nul-and-controls", b"\x00\x01\x1f\x7f"),
    ("latin", "héllo wörld".encode()),
    ("cjk", "用户一 例え".encode()),
    ("emoji", "🙂👍🏽👨‍👩‍👧".encode()),
    ("combining", "e\u0301a\u0308".encode()),
    ("max-codepoint", "\U0010ffff".encode()),
    ("bmp-edge-ufffd", "\ufffd\uffff".encode()),
    ("quotes-and-backslashes", b'"\\\\"\\u0000'),
    ("line-separators", "a\u2028b\u2029c\x85".encode()),
    ("long", b"x" * 100_000),
]

INVALID_UTF8 = [
    ("ff", b"\xff"),
    ("fe-ff", b"\xfe\xff"),
    ("continuation-only", b"\x80"),
    ("truncated-sequence", b"abc\xe2\x82"),
    ("overlong-slash", b"\xc0\xaf"),
    ("overlong-nul", b"\xc0\x80"),
    ("overlong-3byte", b"\xe0\x80\xaf"),
    ("lone-high-surrogate", b'{"user_id":"\xed\xa0\x80","event_type":"c","url":"/","ts":0}'),
    ("lone-low-surrogate", b"\xed\xbf\xbf"),
    ("cesu8-pair", b"\xed\xa0\xbd\xed\xb8\x82"),
    ("above-max-codepoint", b"\xf4\x90\x80\x80"),
    ("json-with-bad-byte", b'{"user_id":"\xff"}'),
    ("latin1-encoded", "héllo".encode("latin-1")),
    ("utf16", "hello".encode("utf-16")),
    ("all-bytes", bytes(range(256))),
]


@pytest.mark.parametrize("value", [v for _, v in UTF8_VALUES], ids=[i for i, _ in UTF8_VALUES])
def test_utf8_value_is_text(value):
    rec = decode(dead_letter(MALFORMED, "bad", "website-clicks", 2, 41, value))
    check_shape(rec)
    assert "value_b64" not in rec
    assert rec["value"] == value.decode("utf-8")
    assert rec["value"].encode("utf-8") == value


@pytest.mark.parametrize("value", [v for _, v in INVALID_UTF8], ids=[i for i, _ in INVALID_UTF8])
def test_invalid_utf8_value_is_base64(value):
    rec = decode(dead_letter(MALFORMED, "bad", "website-clicks", 0, 7, value))
    check_shape(rec)
    assert "value" not in rec
    assert isinstance(rec["value_b64"], str)
    assert base64.b64decode(rec["value_b64"], validate=True) == value


def test_none_value_is_null():
    raw = dead_letter(MALFORMED, "message has no value (null)", "website-clicks", 1, 9, None)
    rec = decode(raw)
    check_shape(rec)
    assert "value" in rec and rec["value"] is None
    assert "value_b64" not in rec


ERRORS = [
    ("lf", "line one\nline two"),
    ("crlf", "line one\r\nline two"),
    ("cr", "line one\rline two"),
    ("trailing-newline", "one line\n"),
    ("leading-newline", "\nafter"),
    ("many-lines", "Traceback (most recent call last):\n  File \"x\", line 1\nValueError: boom\n"),
    ("blank-lines", "a\n\n\nb"),
    ("vertical-tab-form-feed", "a\x0bb\x0cc"),
    ("unicode-line-separators", "a\u2028b\u2029c\x85d"),
    ("file-group-record-separators", "a\x1cb\x1dc\x1ed"),
]


@pytest.mark.parametrize("error", [e for _, e in ERRORS], ids=[i for i, _ in ERRORS])
def test_multiline_error_is_folded_to_one_line(error):
    rec = decode(dead_letter(MALFORMED, error, "t", 0, 0, b"x"))
    check_shape(rec)
    folded = rec["error"]
    assert len(folded.splitlines()) == 1
    assert "\n" not in folded and "\r" not in folded
    assert_words_kept(error, folded)


@pytest.mark.parametrize("error", ["not valid JSON: unexpected character: line 1 column 1",
                                   "ts '2026-01-01T00:00:00' has no UTC offset (add Z or +hh:mm)",
                                   "user_id is 257 characters, more than 256",
                                   "event at 2026-01-01T00:00:00.000Z is late"],
                         ids=["json", "ts", "user_id", "late"])
def test_one_line_error_passes_through(error):
    assert decode(dead_letter(MALFORMED, error, "t", 0, 0, b""))["error"] == error


@pytest.mark.parametrize("reason,constant", [("malformed", MALFORMED), ("late", LATE)],
                         ids=["malformed", "late"])
def test_reason_and_position_pass_through(reason, constant):
    assert constant == reason
    value = b'{"user_id":"u1","event_type":"click","url":"/","ts":0}'
    rec = decode(dead_letter(reason, "why", "website-clicks", 11, 123_456_789_012, value))
    check_shape(rec)
    assert rec == {"reason": reason, "error": "why", "topic": "website-clicks",
                   "partition": 11, "offset": 123_456_789_012, "value": value.decode()}


@pytest.mark.parametrize("value", [None, b"", b"   ", b"[", b"\xff", b"[" * 2000,
                                   b'{"user_id":"\xed\xa0\x80","event_type":"c","url":"/","ts":0}',
                                   b'{"user_id":"u","event_type":"c","url":"/","ts":true}'],
                         ids=["none", "empty", "whitespace", "truncated", "ff", "deep",
                              "surrogate", "ts-bool"])
def test_record_for_a_parser_rejection(value):
    """The parser's reason goes into a valid record that still carries the original bytes."""
    with pytest.raises(MalformedEvent) as info:
        parse_event(value, 4, 8)
    rec = decode(dead_letter(MALFORMED, str(info.value), "website-clicks", 4, 8, value))
    check_shape(rec)
    assert rec["error"] == str(info.value)
    if value is None:
        assert rec["value"] is None
    elif "value" in rec:
        assert rec["value"].encode("utf-8") == value
    else:
        assert base64.b64decode(rec["value_b64"]) == value


@settings(max_examples=1000, deadline=None)
@given(st.none() | st.binary(max_size=200) | st.text(max_size=50).map(str.encode),
       st.text(max_size=60), st.sampled_from([MALFORMED, LATE]),
       st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1))
def test_property_round_trip(value, error, reason, partition, offset):
    rec = decode(dead_letter(reason, error, "website-clicks", partition, offset, value))
    check_shape(rec)
    assert (rec["reason"], rec["topic"], rec["partition"], rec["offset"]) == (
        reason, "website-clicks", partition, offset)
    assert len(rec["error"].splitlines()) <= 1
    assert_words_kept(error, rec["error"])
    if value is None:
        assert rec["value"] is None
    else:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            assert "value" not in rec
            assert base64.b64decode(rec["value_b64"], validate=True) == value
        else:
            assert "value_b64" not in rec
            assert rec["value"] == text


@pytest.mark.parametrize("value, field", [
    (b'{"user_id":"' + "é".encode() * 200_000 + b'"', "value"),
    (b"\xff" * 1_000_000, "value_b64"),
])
def test_huge_values_are_cut_so_the_dead_letter_still_fits_in_kafka(value, field):
    from clickstream.core.deadletters import MAX_VALUE_BYTES

    record = json.loads(dead_letter("malformed", "not valid JSON", "t", 0, 9, value))
    assert f"first {MAX_VALUE_BYTES} of {len(value)} bytes" in record["error"]
    kept = record[field].encode() if field == "value" else base64.b64decode(record[field])
    assert value.startswith(kept) and MAX_VALUE_BYTES - 4 < len(kept) <= MAX_VALUE_BYTES
