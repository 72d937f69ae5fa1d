"""The PostgreSQL output's tables: created and migrated by the service, partitioned by day.

`clickstream_schema` records the version applied; `MIGRATIONS[i]` takes the database from
version i to i + 1, each in one transaction under an advisory lock, so processes starting
together apply it once. The `DAILY_TABLES` are range-partitioned by day (UTC), the window
tables on `window_start`, `user_sessions` on `session_start`, a day in all of them at once:
the sinks create a day's partition before they write its first row (`ensure_days`), and
`drop_old_days` drops whole days past CLICKSTREAM_POSTGRES_RETENTION_DAYS. Dead letters are
few and keyed by their input offset, so their table is not partitioned.
`clickstream_sink_ledger` is the sinks' exactly-once bookkeeping (see io/pg_sink.py).
"""

from datetime import datetime, timedelta, timezone
from typing import Iterable, List, Optional

import psycopg

WINDOW_TABLES = ("user_metrics", "page_metrics")
DAILY_TABLES = (*WINDOW_TABLES, "user_sessions")
DAY_MS = 86_400_000
SCHEMA_LOCK = 0x636C6B73  # advisory lock id: migrations and partition changes
CONNECT_TIMEOUT_S = 5

MIGRATIONS: List[str] = [
    # 0 -> 1
    """
    CREATE TABLE user_metrics (
        user_id text NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        events integer NOT NULL,
        page_views integer NOT NULL,
        clicks integer NOT NULL,
        unique_pages integer NOT NULL,
        sessions integer NOT NULL,
        first_event_ts timestamptz NOT NULL,
        last_event_ts timestamptz NOT NULL,
        PRIMARY KEY (user_id, window_start)
    ) PARTITION BY RANGE (window_start);
    CREATE INDEX user_metrics_window_start ON user_metrics (window_start);
    CREATE TABLE page_metrics (
        url text NOT NULL,
        window_start timestamptz NOT NULL,
        window_end timestamptz NOT NULL,
        views integer NOT NULL,
        events integer NOT NULL,
        unique_users integer NOT NULL,
        PRIMARY KEY (url, window_start)
    ) PARTITION BY RANGE (window_start);
    CREATE INDEX page_metrics_window_start ON page_metrics (window_start);
    CREATE TABLE dead_letters (
        topic text NOT NULL,
        partition integer NOT NULL,
        "offset" bigint NOT NULL,
        reason text NOT NULL,
        error text NOT NULL,
        value text,
        value_b64 text,
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (topic, partition, "offset")
    );
    CREATE INDEX dead_letters_written_at ON dead_letters (written_at);
    CREATE TABLE clickstream_sink_ledger (
        sink text NOT NULL,
        partition integer NOT NULL,
        seq bigint NOT NULL,
        idents bytea NOT NULL,  -- a JSON list of identities (they hold NUL, text cannot)
        written_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (sink, partition, seq)
    );
    """,
    # 1 -> 2: sessions. A database of version 1 gets a session day's partition when a sink
    # first writes that day, or from `prepare` (today and the days ahead), as a new one does.
    """
    CREATE TABLE user_sessions (
        user_id text NOT NULL,
        session_start timestamptz NOT NULL,
        session_end timestamptz NOT NULL,
        duration_ms bigint NOT NULL,
        events integer NOT NULL,
        page_views integer NOT NULL,
        clicks integer NOT NULL,
        unique_pages integer NOT NULL,
        entry_url text NOT NULL,
        exit_url text NOT NULL,
        bounce boolean NOT NULL,
        converted boolean NOT NULL,
        PRIMARY KEY (user_id, session_start)
    ) PARTITION BY RANGE (session_start);
    CREATE INDEX user_sessions_session_start ON user_sessions (session_start);
    """,
]
VERSION = len(MIGRATIONS)
# The columns the sinks write, in the order of the rows they build (SPEC's field order).
COLUMNS = {
    "user_metrics": ("user_id", "window_start", "window_end", "events", "page_views", "clicks",
                     "unique_pages", "sessions", "first_event_ts", "last_event_ts"),
    "page_metrics": ("url", "window_start", "window_end", "views", "events", "unique_users"),
    "user_sessions": ("user_id", "session_start", "session_end", "duration_ms", "events",
                      "page_views", "clicks", "unique_pages", "entry_url", "exit_url", "bounce",
                      "converted"),
    "dead_letters": ("topic", "partition", "offset", "reason", "error", "value", "value_b64"),
}


class DatabaseError(Exception):
    """The database refused or could not be reached; str() is one line."""


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def connect(dsn: str, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S,
                               application_name="clickstream")
    except psycopg.Error as exc:
        raise DatabaseError(one_line(exc)) from None


def migrate(conn: psycopg.Connection) -> int:
    """Bring the schema to VERSION; returns the version found. A newer one is refused."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS clickstream_schema ("
                     "version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        found = conn.execute("SELECT coalesce(max(version), 0) FROM clickstream_schema"
                             ).fetchone()[0]
        if found > VERSION:
            raise DatabaseError(f"the database holds clickstream schema version {found}; this "
                                f"version of clickstream knows up to {VERSION}")
        for version in range(found, VERSION):
            conn.execute(MIGRATIONS[version])
            conn.execute("INSERT INTO clickstream_schema (version) VALUES (%s)", (version + 1,))
    return found


def partition_name(table: str, day: int) -> str:
    """`user_metrics_p20260101` for the day number `day` (days since the epoch, UTC)."""
    return f"{table}_p{_date(day):%Y%m%d}"


def _date(day: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)


def existing_days(conn: psycopg.Connection) -> set:
    """Day numbers that have partitions in every daily table."""
    days = None
    for table in DAILY_TABLES:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass", (table,)).fetchall()
        found = {_day_of(name, table) for (name,) in rows} - {None}
        days = found if days is None else days & found
    return days or set()


def _day_of(name: str, table: str) -> Optional[int]:
    prefix = f"{table}_p"
    if not name.startswith(prefix):
        return None
    try:
        date = datetime.strptime(name[len(prefix):], "%Y%m%d").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return (date - _date(0)).days


def ensure_days(conn: psycopg.Connection, days: Iterable[int]) -> None:
    """Create the daily partitions of `days` that are missing (outside any open transaction:
    attaching a partition waits for the writers of the parent table)."""
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '120s'")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for day in sorted(set(days)):
            for table in DAILY_TABLES:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {partition_name(table, day)} PARTITION OF "
                    f"{table} FOR VALUES FROM ('{_date(day):%Y-%m-%d} 00:00+00') TO "
                    f"('{_date(day + 1):%Y-%m-%d} 00:00+00')")  # UTC, not the session's zone


def drop_old_days(conn: psycopg.Connection, retention_days: int, today: int) -> List[str]:
    """Drop the daily partitions that end before `today - retention_days` (0: none)."""
    if retention_days <= 0:
        return []
    dropped = []
    with conn.transaction():
        conn.execute("SET LOCAL lock_timeout = '120s'")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        for table in DAILY_TABLES:
            rows = conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass", (table,)).fetchall()
            for (name,) in rows:
                day = _day_of(name, table)
                if day is not None and day + 1 <= today - retention_days:
                    conn.execute(f"DROP TABLE {name}")
                    dropped.append(name)
    return sorted(dropped)


def prepare(dsn: str, retention_days: int, today: int, ahead: int = 2) -> None:
    """At start: the schema at VERSION, partitions from today to `ahead` days on, old days
    dropped. DatabaseError (one line) when the database cannot be reached or refuses."""
    try:
        with connect(dsn) as conn:
            migrate(conn)
            ensure_days(conn, range(today, today + ahead + 1))
            drop_old_days(conn, retention_days, today)
    except psycopg.Error as exc:
        raise DatabaseError(one_line(exc)) from None
