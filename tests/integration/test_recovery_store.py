"""The recovery store is created when missing, and refused with one line when it is unusable
or when it looks lost (a new store next to output topics that already hold history)."""

import json
import sqlite3

import pytest

from tests.integration.kafka_io import produce, run_dataflow

pytestmark = pytest.mark.integration

T0 = 1767225600000


def one_event(topics):
    event = {"user_id": "u", "event_type": "click", "url": "/", "ts": T0}
    return produce(topics.brokers, topics.input, [(b"u", json.dumps(event).encode(), 0)])


def run(topics, store, **env):
    return run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1, **env), "-r", str(store), "-s", "1", "-b", "0")


def single_line(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return lines[0]


def test_a_lost_store_is_refused_instead_of_emitting_history_again(topics, tmp_path):
    one_event(topics)
    assert run(topics, tmp_path / "first").returncode == 0
    again = run(topics, tmp_path / "second")  # as if the first store had been lost
    assert again.returncode == 2
    line = single_line(again)
    assert "is new but" in line and "already holds" in line and "CLICKSTREAM_FRESH_START=1" in line
    assert run(topics, tmp_path / "third", CLICKSTREAM_FRESH_START=1).returncode == 0


@pytest.mark.parametrize("damage, words", [
    ("garbage", "corrupt"),
    ("truncate", "corrupt"),
    ("stranger", "not a Bytewax recovery store"),
    ("origin", "corrupt"),
])
def test_a_damaged_store_is_refused_with_one_line(topics, tmp_path, damage, words):
    one_event(topics)
    store = tmp_path / "store"
    assert run(topics, store).returncode == 0
    part = store / "part-0.sqlite3"
    if damage == "garbage":
        data = bytearray(part.read_bytes())
        data[100:4096] = b"\x42" * (4096 - 100)
        part.write_bytes(bytes(data))
    elif damage == "truncate":
        part.write_bytes(part.read_bytes()[:1000])
    elif damage == "stranger":
        part.unlink()
        (store / "notes.txt").write_text("hello")
    elif damage == "origin":
        (store / "origin.json").write_text("{not json")
    result = run(topics, store)
    assert result.returncode == 2
    assert words in single_line(result)


def test_a_healthy_store_passes_the_check(tmp_path, topics):
    one_event(topics)
    store = tmp_path / "store"
    assert run(topics, store).returncode == 0
    with sqlite3.connect(store / "part-0.sqlite3") as db:
        assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert run(topics, store).returncode == 0
