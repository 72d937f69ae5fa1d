"""The recovery store's resume epoch as Bytewax computes it, and the orphan snapshots removed."""

import sqlite3

import pytest

from clickstream.runtime.recovery import discard_orphan_snapshots, resume_epoch


def store(path, exs, fronts, snaps, part=(0, 1)):
    """A part file with Bytewax's tables (the columns we read) and the given rows."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE parts (part_index INTEGER, part_count INTEGER)")
        db.execute("INSERT INTO parts VALUES (?, ?)", part)
        db.execute("CREATE TABLE exs (ex_num INTEGER, worker_count INTEGER, resume_epoch INTEGER)")
        db.execute("CREATE TABLE fronts (ex_num INTEGER, worker_index INTEGER, worker_frontier INTEGER)")
        db.execute("CREATE TABLE snaps (step_id TEXT, state_key TEXT, snap_epoch INTEGER, ser_change BLOB)")
        db.executemany("INSERT INTO exs VALUES (?, ?, ?)", exs)
        db.executemany("INSERT INTO fronts VALUES (?, ?, ?)", fronts)
        db.executemany("INSERT INTO snaps VALUES (?, ?, ?, NULL)", snaps)
    return path


# (exs, fronts, this file's (part index, part count)) -> resume epoch
CASES = [
    ("no execution yet", [], [], (0, 1), None),
    ("one worker, its frontier", [(0, 1, 1)], [(0, 0, 11)], (0, 1), 11),
    ("the slowest worker of the last execution", [(0, 2, 1), (1, 2, 11)],
     [(0, 0, 12), (0, 1, 11), (1, 0, 30), (1, 1, 25)], (0, 1), 25),
    ("a worker without a frontier stands at the execution's resume epoch",
     [(0, 2, 1), (1, 2, 11)], [(1, 0, 30)], (0, 1), 11),
    ("one file of two (a volume per pod): the largest frontier it shows",
     [(0, 2, 1), (1, 2, 11)], [(1, 0, 30)], (0, 2), 30),
    ("a frontier behind the resume epoch counts as the resume epoch", [(0, 1, 1), (1, 1, 11)],
     [(1, 0, 5)], (0, 1), 11),
]


@pytest.mark.parametrize("name, exs, fronts, part, epoch", CASES, ids=[c[0] for c in CASES])
def test_resume_epoch(tmp_path, name, exs, fronts, part, epoch):
    assert resume_epoch([store(tmp_path / "part-0.sqlite3", exs, fronts, [], part)]) == epoch


def test_snapshots_of_epochs_that_never_completed_are_removed(tmp_path):
    part = store(tmp_path / "part-0.sqlite3", [(0, 1, 1)], [(0, 0, 11)],
                 [("s.page_windows", "p28", 2), ("s.page_windows", "p28", 11),
                  ("s.user_windows", "u03", 12), ("s.clicks", "in-0", 10)])
    assert discard_orphan_snapshots([part]) == 2
    with sqlite3.connect(part) as db:
        assert db.execute("SELECT state_key, snap_epoch FROM snaps ORDER BY snap_epoch").fetchall() == [
            ("p28", 2), ("in-0", 10)]
