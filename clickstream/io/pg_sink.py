"""Exactly-once PostgreSQL output: rows in transactions that also record what they wrote.

One sink partition per output partition (the same routing as the Kafka output), each with its
own connection. In the phases of the Kafka sink (io/sink.py):
- write: rows are COPYed into a temporary staging table and moved into the (partitioned)
  table with one INSERT ... SELECT inside the open transaction;
- commit: the transaction also inserts a row of `clickstream_sink_ledger` (sink, partition,
  seq, the identities of every row it wrote), so rows and ledger are committed together; it is
  committed as the Kafka transactions are (CLICKSTREAM_COMMIT_INTERVAL_SECONDS, a quiet
  burst, the end of an epoch);
- snapshot state: a `sink_state.SinkSnapshot` whose `read_from` is the next ledger seq;
- resume: the ledger rows from the snapshot's seq on name exactly the rows committed after the
  snapshot; those identities are not written again when the stages re-emit them (the same
  invariant as the Kafka sink's, stated in io/sink_state.py, with ledger seqs for offsets).
So a (user_id, window_start) row keeps the values it was first committed with, whatever a
resumed run computes, exactly as the Kafka topic keeps its first record; `ON CONFLICT DO
NOTHING` only guards against a store older than the ledger it meets (counted as suppressed).
"""

import base64
import logging
import threading
import time
from itertools import chain
from typing import Callable, List, Optional

import psycopg
from bytewax.outputs import StatefulSinkPartition

from clickstream.core import codec
from clickstream.core.records import Record, identity
from clickstream.io.pg_schema import (DAY_MS, DatabaseError, connect, drop_old_days, ensure_days,
                                      one_line)
from clickstream.io.sink import Committer, NumberedSink
from clickstream.io.sink_state import SinkSnapshot, WriterState
from clickstream.runtime import faults
from clickstream.runtime.exits import RESTART_STATUS, stop
from clickstream.runtime.metrics import METRICS, observe_many
from clickstream.runtime.progress import IDLE_CLOCK
from clickstream.runtime.settings import Settings

log = logging.getLogger("clickstream.pg_sink")

Row = Callable[[str, int, int, list], tuple]  # a closed window's row: key, start, end, state
TABLE_PARTITIONS = 2  # sink partitions per table when there are no Kafka outputs to follow
LEDGER_KEPT = 20  # ledger rows kept behind the newest snapshot, for a resume from older ones
MAINTENANCE_S = 3600  # how often partitions ahead are made and old ones dropped
DAYS_AHEAD = 2

# Days whose partitions exist, per process: one CREATE per day, not per batch.
_known_days: set = set()
_days_guard = threading.Lock()


class TableSink(NumberedSink):
    """Writes Records to a table: closed windows through `row`, dead letters (JSON) as rows."""

    def __init__(self, settings: Settings, table: str, columns: tuple, partitions: int,
                 row: Optional[Row] = None, output: str = ""):
        self._settings = settings
        self._table = table
        self._columns = columns
        self._partitions = partitions
        self._row = row
        self._output = output

    def build_part(self, step_id: str, for_part: str, resume_state):
        partition = int(for_part)
        try:
            resumed, legacy = SinkSnapshot.load(resume_state)
        except ValueError as exc:
            stop(f"cannot resume {self._table}[{partition}]: {exc}; start with a new store", 2)
        try:
            with IDLE_CLOCK.starting((self._table, partition)):
                return _TablePartition(self._settings, self._table, self._columns, partition,
                                       resumed, legacy, self._row, self._output)
        except (DatabaseError, psycopg.Error) as exc:
            stop(f"CLICKSTREAM_POSTGRES_DSN={self._settings.dsn_shown}: "
                 f"{self._settings.redact(one_line(exc))}; a restart resumes from the last "
                 "snapshot")


class _TablePartition(StatefulSinkPartition):
    def __init__(self, settings: Settings, table: str, columns: tuple, partition: int,
                 resumed: SinkSnapshot, legacy: bool, row: Optional[Row], output: str):
        self._settings = settings
        self._table = table
        self._columns = columns
        self._partition = partition
        self._row = row
        self._conn = connect(settings.postgres_dsn)
        conn = self._conn
        names = ", ".join(f'"{c}"' for c in columns)
        self._copy_sql = f"COPY {table} ({names}) FROM STDIN"
        self._copy_staging_sql = f"COPY staging ({names}) FROM STDIN"
        self._insert_sql = (f"INSERT INTO {table} ({names}) SELECT {names} FROM staging "
                            "ON CONFLICT DO NOTHING")
        conn.execute(f"CREATE TEMP TABLE staging (LIKE {table} INCLUDING DEFAULTS)")
        key = (table, partition)
        rows = conn.execute(
            "SELECT seq, idents FROM clickstream_sink_ledger WHERE sink = %s AND partition = %s"
            " AND seq >= %s", (*key, resumed.read_from or 0)).fetchall()
        end = conn.execute("SELECT coalesce(max(seq) + 1, 0) FROM clickstream_sink_ledger "
                           "WHERE sink = %s AND partition = %s", key).fetchone()[0]
        if resumed.read_from is None:
            # No snapshot yet (a new store, or recovery off): nothing to read back.
            self._state = WriterState(SinkSnapshot(end))
        else:
            read_back = {ident for _, idents in rows for ident in codec.loads(idents)}
            self._state = WriterState(resumed, read_back, max(end, resumed.read_from), legacy)
            conn.execute("DELETE FROM clickstream_sink_ledger WHERE sink = %s AND partition = %s"
                         " AND seq < %s", (*key, resumed.read_from - LEDGER_KEPT))
            if self._state.pending:
                log.warning("%s[%d]: %d row(s) committed after the last snapshot will not be "
                            "written again", table, partition, self._state.pending)
        conn.commit()
        self._seq = max(end, resumed.read_from or 0)  # the ledger seq of the next commit
        self._lock = threading.Lock()  # the connection and the state, shared with the Committer
        self._in_transaction = False
        self._began = 0.0
        self._last_write = 0.0
        self._idents: List[str] = []  # of the rows in the open transaction
        self._closed_at: List[float] = []
        self._commit_interval_s = settings.commit_interval_ms / 1000
        label = f"postgres:{table}"
        self._written = METRICS.records_produced.labels(label)
        self._suppressed = METRICS.duplicates_suppressed.labels(label)
        self._pending = METRICS.sink_pending.labels(label, str(partition))
        self._pending.set(self._state.pending)
        self._emit_delay = METRICS.window_emit_delay.labels(output) if output else None
        # One sink partition of the cluster keeps the days: partitions ahead, retention.
        self._maintains = row is not None and table == "user_metrics" and partition == 0
        self._maintained = time.monotonic()
        self._retention_days = settings.postgres_retention_days
        self._skipped_old = 0  # rows of days past the retention, not written
        if self._commit_interval_s:
            Committer.for_interval(self._commit_interval_s).add(self)

    def write_batch(self, values: List[List[Record]]) -> None:
        records = list(chain.from_iterable(values))
        with self._lock:
            count = len(records)
            records = self._state.unwritten(records)
            if len(records) < count:
                self._suppressed.inc(count - len(records))
                self._pending.set(self._state.pending)
            if not records:
                return
            try:
                self._write(records)
            except psycopg.Error as exc:
                self._fail("writing", exc)

    def _write(self, records: List[Record]) -> None:
        conn, row = self._conn, self._row
        if row is not None:
            if self._retention_days:
                # Rows of a day past the retention are not written (a backfill of old
                # history): their partition would only be dropped again, and a resume skips
                # them again the same way.
                oldest = int(time.time() * 1000) // DAY_MS - self._retention_days
                kept = [r for r in records if r[1][0] // DAY_MS >= oldest]
                if len(kept) < len(records):
                    if not self._skipped_old:
                        log.warning("%s[%d]: rows of days before the retention of %d days are "
                                    "not written", self._table, self._partition,
                                    self._retention_days)
                    self._skipped_old += len(records) - len(kept)
                    records = kept
                    if not records:
                        return
            days = {value[0] // DAY_MS for _, value, _, _ in records}
            missing = days - _known_days
            if missing:
                # Attaching a partition waits for the table's writers: not inside our own.
                if self._in_transaction:
                    self._commit()
                ensure_days(conn, missing)
                with _days_guard:
                    _known_days.update(missing)
        rows = ([_text(row(key, *value)) for key, value, _, _ in records] if row is not None
                else [_dead_letter_row(value) for _, value, _, _ in records])
        if not self._in_transaction:
            self._in_transaction = True
            self._began = time.monotonic()
        with conn.cursor() as cursor:
            # (the statement also begins the transaction when none is open)
            cursor.execute("SAVEPOINT batch")
            try:
                # Straight into the table: the ledger says none of these rows is there...
                with cursor.copy(self._copy_sql) as copy:
                    for values in rows:
                        copy.write_row(values)
                cursor.execute("RELEASE SAVEPOINT batch")
            except psycopg.errors.UniqueViolation:
                # ...unless the store is older than the ledger rows kept: keep the first.
                cursor.execute("ROLLBACK TO SAVEPOINT batch")
                with cursor.copy(self._copy_staging_sql) as copy:
                    for values in rows:
                        copy.write_row(values)
                cursor.execute(self._insert_sql)
                self._suppressed.inc(len(rows) - cursor.rowcount)
                cursor.execute("TRUNCATE staging")
        self._idents.extend(identity(key, ident) for key, _, ident, _ in records)
        self._closed_at.extend(closed for _, _, _, closed in records if closed is not None)
        self._last_write = time.monotonic()
        if self._commit_interval_s and self._last_write - self._began >= self._commit_interval_s:
            self._commit()

    def commit_if_due(self, now: float, quiet_s: float) -> None:
        """The Committer's question, as for the Kafka sink: commit a transaction this old, or
        one that nothing was written to for `quiet_s`."""
        if self._in_transaction and (now - self._began >= self._commit_interval_s
                                     or now - self._last_write >= quiet_s):
            with self._lock:
                self._commit_or_fail()

    def _commit_or_fail(self) -> None:
        """Commit the open transaction, if any; a database error stops the process."""
        if self._in_transaction:
            try:
                self._commit()
            except psycopg.Error as exc:
                self._fail("committing", exc)

    def _commit(self) -> None:
        self._conn.execute(
            "INSERT INTO clickstream_sink_ledger (sink, partition, seq, idents) "
            "VALUES (%s, %s, %s, %s)",
            (self._table, self._partition, self._seq, codec.dumps(self._idents)))
        self._conn.commit()
        self._in_transaction = False
        self._state.acknowledged(self._seq)
        self._seq += 1
        self._written.inc(len(self._idents))
        self._idents = []
        if self._closed_at:
            faults.reach("after-commit")
            if self._emit_delay is not None:
                now = time.time()  # one bucket increment per bucket and commit, not per record
                observe_many(self._emit_delay, [now - closed for closed in self._closed_at])
            self._closed_at = []

    def _fail(self, doing: str, exc: psycopg.Error) -> None:
        # Exiting closes the connection: the server rolls the open transaction back whole.
        # The database may be back soon: the status asks a supervisor to restart.
        stop(f"{doing} {self._table} in PostgreSQL ({self._settings.dsn_shown}) failed: "
             f"{self._settings.redact(one_line(exc))}; a restart resumes from the last snapshot",
             RESTART_STATUS)

    def snapshot(self) -> SinkSnapshot:
        with self._lock:
            self._commit_or_fail()
            if self._maintains and time.monotonic() - self._maintained >= MAINTENANCE_S:
                try:
                    self._maintain()
                except psycopg.Error as exc:
                    self._fail("keeping the daily partitions of", exc)
            return self._state.snapshot()

    def _maintain(self) -> None:
        """Partitions for the days ahead, old days dropped (outside any open transaction)."""
        today = int(time.time() * 1000) // DAY_MS
        ensure_days(self._conn, range(today, today + DAYS_AHEAD + 1))
        dropped = drop_old_days(self._conn, self._retention_days, today)
        with _days_guard:
            _known_days.difference_update(d for d in list(_known_days)
                                          if d < today - self._retention_days)
        if dropped:
            log.info("dropped %d partition(s) past the retention: %s", len(dropped), dropped)
        self._maintained = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._commit_or_fail()
            self._conn.close()


def _text(values: tuple) -> tuple:
    """PostgreSQL text cannot hold NUL: a key with one is stored with U+FFFD in its place."""
    return tuple(v.replace("\x00", "\ufffd") if v.__class__ is str and "\x00" in v else v
                 for v in values)


def _dead_letter_row(value: bytes) -> tuple:
    letter = codec.loads(value)
    text = letter.get("value")
    b64 = letter.get("value_b64")
    if text is not None and "\x00" in text:  # not storable as text: keep the bytes exactly
        b64, text = base64.b64encode(text.encode("utf-8")).decode("ascii"), None
    return (letter["topic"], letter["partition"], letter["offset"], letter["reason"],
            letter["error"].replace("\x00", "\ufffd"), text, b64)
