"""Compare what the dataflow wrote to its topics, record by record, with the oracle."""

import json
from collections import Counter
from typing import List, Optional

from clickstream.core.partitioner import murmur2
from tests.integration.kafka_io import Topics, read_topic
from tests.integration.oracle import (SESSION_GAP_MS, SESSION_MAX_MS, Expected, Message,
                                      expected_outputs)

USER_FIELDS = {"user_id", "window_start", "window_end", "events", "page_views", "clicks",
               "unique_pages", "sessions", "first_event_ts", "last_event_ts"}
PAGE_FIELDS = {"url", "window_start", "window_end", "views", "events", "unique_users"}
SESSION_FIELDS = {"user_id", "session_start", "session_end", "duration_ms", "events",
                  "page_views", "clicks", "unique_pages", "entry_url", "exit_url", "bounce",
                  "converted"}


def assert_keyed_like_java(messages: List[Message], partitions: int = 2) -> None:
    """Each record sits in the partition Kafka's default partitioner picks for its key."""
    for m in messages:
        assert m.partition == (murmur2(m.key) & 0x7FFFFFFF) % partitions, m


def outputs(topics: Topics):
    users = [(m.key, json.loads(m.value)) for m in read_topic(topics.brokers, topics.user)]
    pages = [(m.key, json.loads(m.value)) for m in read_topic(topics.brokers, topics.page)]
    dead = [json.loads(m.value) for m in read_topic(topics.brokers, topics.dlq)]
    return users, pages, dead


def windows_by_identity(records, fields, key_field: str, exactly_once: bool,
                        start_field: str = "window_start") -> dict:
    """{(key, window_start): record}, checking fields and message keys; a repeat is an error,
    or with exactly_once=False allowed only as an identical copy."""
    got = {}
    for key, record in records:
        assert set(record) == fields, record
        assert key == record[key_field].encode(), (key, record)
        ident = (record[key_field], record[start_field])
        if ident in got:
            assert not exactly_once, f"{key_field} window {ident} emitted twice"
            assert got[ident] == record, f"{key_field} window {ident} emitted with two contents"
        got[ident] = record
    return got


def assert_matches(topics: Topics, inputs: List[Message], window_ms: int = 5000,
                   lateness_ms: int = 10000, exactly_once: bool = True,
                   ttl_ms: Optional[int] = None, sessions: bool = True,
                   session_gap_ms: int = SESSION_GAP_MS,
                   session_max_ms: int = SESSION_MAX_MS) -> Expected:
    """Every expected record is there with exactly the expected content, and nothing else.

    With exactly_once=False (at-least-once), a record may repeat but only as an identical copy.
    Sessions are checked when the topics have a sessions topic and `sessions` (a run that
    ended live, not at the end of a bounded input, may still hold some open).
    """
    expected = expected_outputs(inputs, topics.input, window_ms, lateness_ms, ttl_ms,
                                session_gap_ms, session_max_ms)
    if topics.sessions and sessions:
        records = read_topic(topics.brokers, topics.sessions)
        assert_keyed_like_java(records)
        got = windows_by_identity([(m.key, json.loads(m.value)) for m in records],
                                  SESSION_FIELDS, "user_id", exactly_once, "session_start")
        assert got == expected.sessions
    users, pages, dead = outputs(topics)
    assert_keyed_like_java(read_topic(topics.brokers, topics.user))
    assert_keyed_like_java(read_topic(topics.brokers, topics.page))

    assert windows_by_identity(users, USER_FIELDS, "user_id", exactly_once) == expected.user
    assert windows_by_identity(pages, PAGE_FIELDS, "url", exactly_once) == expected.page

    got_dead = {}
    for record in dead:
        error = record.pop("error")
        assert isinstance(error, str) and error and "\n" not in error, error
        ident = (record["partition"], record["offset"])
        if ident in got_dead:
            assert not exactly_once, f"dead letter {ident} written twice"
        got_dead[ident] = record
    assert got_dead == expected.dead
    if exactly_once:
        assert Counter(r["reason"] for r in dead) == Counter(
            r["reason"] for r in expected.dead.values())
    return expected
