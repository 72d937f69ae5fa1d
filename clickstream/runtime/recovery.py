"""The recovery store: found from bytewax.run's own flags, created when missing, checked when not.

- Missing or empty directory: created and initialised here (no separate init step). Its
  `origin.json` records where the output topics ended at that moment, so a crash before the
  first snapshot still de-duplicates on restart (see `clickstream/io/sink.py`).
- A new store while the output topics already hold records is refused: that is what a lost
  store looks like, and starting over would emit the whole history again. Restore the store,
  or say CLICKSTREAM_FRESH_START=1 to process the input again on purpose.
- An existing store must be a Bytewax store whose SQLite files pass `PRAGMA quick_check`;
  anything else stops the start with one line rather than silently starting fresh.
- Snapshots of epochs that never completed, left by a process that died, are deleted before
  Bytewax reads the store (`discard_orphan_snapshots`).
- Layout: one directory shared by all processes of a machine (default), or, with
  CLICKSTREAM_RECOVERY_LAYOUT=per-process, a directory per process (a volume per pod) holding
  only that process's partition of the store.
"""

import fcntl
import json
import os
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from clickstream.runtime.settings import Settings, SettingsError

ORIGIN_FILE = "origin.json"
LOCK_FILE = ".init.lock"
Origin = Dict[str, Dict[int, int]]  # topic -> partition -> offset


def _run_flags() -> dict:
    """The flags bytewax.run parsed before it imported the dataflow, kept in its module
    globals (empty when the dataflow runs another way)."""
    kwargs = getattr(sys.modules.get("__main__"), "kwargs", None)
    return kwargs if isinstance(kwargs, dict) else {}


def cluster_position() -> Tuple[int, int]:
    """(this process's id, number of processes) as bytewax.run was told (-i/-a, or the pod
    name and hostfile it reads in Kubernetes)."""
    flags = _run_flags()
    if flags.get("addresses"):
        return int(flags.get("process_id") or 0), len(flags["addresses"])
    return 0, 1


def recovery_directory() -> Optional[Path]:
    """The -r/--recovery-directory (or BYTEWAX_RECOVERY_DIRECTORY) bytewax.run was given;
    the environment variable is the fallback for other launchers."""
    config = _run_flags().get("recovery_config")
    if config is not None:
        return Path(config.db_dir)
    env = os.environ.get("BYTEWAX_RECOVERY_DIRECTORY")
    return Path(env) if env else None


def prepare_store(directory: Path, settings: Settings, output_ends: Callable[[], Origin]) -> Origin:
    """Create the store if needed, check it otherwise; returns the output topics' origin,
    which `output_ends()` tells (where each output partition ends now) for a new store.

    Raises SettingsError (one line) when the store is unusable. A lock file keeps the
    processes of a local cluster from creating it twice.
    """
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(p.name != LOCK_FILE for p in directory.iterdir()):
            origin = _check_store(directory)
            discard_orphan_snapshots(sorted(directory.glob("part-*.sqlite3")))
            outputs = settings.output_topics if settings.to_kafka else ()
            if (directory / ORIGIN_FILE).exists() and any(t not in origin for t in outputs):
                # An output added since the store was made (user-sessions, by an upgrade):
                # its history starts now, so a crash before the next snapshot de-duplicates.
                # (Asked of the broker only then: not on every restart.)
                added = {t: ends for t, ends in output_ends().items() if t not in origin}
                if added:
                    origin.update(added)
                    (directory / ORIGIN_FILE).write_text(json.dumps(origin))
            return origin
        origin = output_ends()
        written = {t: n for t, parts in origin.items() if (n := sum(parts.values()))}
        if written and not settings.fresh_start:
            topic, count = next(iter(written.items()))
            raise SettingsError(
                f"recovery store {directory} is new but {topic} already holds {count} record(s): "
                "if the store was lost, restore it; to process the input again anyway (emitting "
                "its windows again) set CLICKSTREAM_FRESH_START=1"
            )
        from bytewax.recovery import init_db_dir

        process, processes = cluster_position()
        if settings.recovery_per_process and processes > 1:
            # One directory per process (a volume per pod): Bytewax needs the cluster's store
            # partitions numbered 0..N-1 across processes, so each keeps only its own.
            init_db_dir(directory, processes)
            for part in directory.glob("part-*.sqlite3"):
                if part.name != f"part-{process}.sqlite3":
                    part.unlink()
        else:
            init_db_dir(directory, 1)
        (directory / ORIGIN_FILE).write_text(json.dumps(origin))
        print(f"clickstream: created recovery store in {directory}", file=sys.stderr)
        return origin


def _check_store(directory: Path) -> Origin:
    parts = sorted(directory.glob("part-*.sqlite3"))
    if not parts:
        raise SettingsError(
            f"recovery store {directory} is not empty but holds no part-*.sqlite3: not a "
            "Bytewax recovery store (point -r at an empty directory to create one)")
    for part in parts:
        try:
            with sqlite3.connect(f"file:{part}?mode=ro", uri=True) as db:
                verdict = db.execute("PRAGMA quick_check").fetchone()[0]
                tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise SettingsError(f"recovery store file {part} is corrupt or unreadable: {exc}") from None
        if verdict != "ok" or not tables:
            raise SettingsError(f"recovery store file {part} is corrupt: {verdict}")
    origin_path = directory / ORIGIN_FILE
    if not origin_path.exists():
        return {}
    try:
        raw = json.loads(origin_path.read_text())
        return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in raw.items()}
    except (ValueError, AttributeError) as exc:
        raise SettingsError(f"recovery store file {origin_path} is corrupt: {exc}") from None


def resume_epoch(parts) -> Optional[int]:
    """The epoch Bytewax resumes from, as its own resume calculation finds it: the smallest
    frontier of the last execution's workers, a worker without one standing at that
    execution's resume epoch. From only some of a cluster's store files (a volume per pod) it
    is the largest frontier they show, never below the real one. None: no execution yet."""
    exs, fronts, found, counts = [], {}, set(), set()
    for part in parts:
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as db:
            for index, count in db.execute("SELECT part_index, part_count FROM parts"):
                found.add(index)
                counts.add(count)
            exs += db.execute("SELECT ex_num, worker_count, resume_epoch FROM exs").fetchall()
            for ex, worker, front in db.execute("SELECT ex_num, worker_index, worker_frontier FROM fronts"):
                fronts[(ex, worker)] = max(front, fronts.get((ex, worker), front))
    if not exs:
        return None
    ex, workers, resumed = max(exs)
    known = {w: max(f, resumed) for (e, w), f in fronts.items() if e == ex}
    if len(counts) == 1 and found == set(range(counts.pop())):  # the whole store
        return min(known.get(w, resumed) for w in range(workers))
    return max([resumed, *known.values()])


def discard_orphan_snapshots(parts) -> int:
    """Delete the snapshots of epochs at or after the resume epoch; returns how many.

    A process that died mid-epoch leaves them behind and Bytewax keeps them, so a later resume
    would load state from an epoch that never completed (README, Guarantees). Bytewax never
    loads them at this resume, so deleting them changes nothing else.
    """
    epoch = resume_epoch(parts)
    if epoch is None:
        return 0
    deleted = 0
    for part in parts:
        with closing(sqlite3.connect(str(part))) as db, db:
            deleted += db.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (epoch,)).rowcount
    return deleted


def store_bytes(directory: Path) -> int:
    """Bytes on disk of the store's files (SQLite partitions with their journals): read on
    each metrics scrape, so it may race a file being replaced; such a file counts 0."""
    total = 0
    for path in directory.glob("*"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total
