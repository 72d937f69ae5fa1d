"""The PostgreSQL schema on a real server: the sessions table as SPEC defines it, and a database
made by the previous version (1: windows and dead letters, no sessions) migrated forward with its
rows and days kept. Each test gets a database of its own (the `database` fixture)."""

from datetime import datetime, timezone

import psycopg
import pytest

from clickstream.io import pg_schema

pytestmark = pytest.mark.integration

TODAY = 20_000  # 2024-10-04
SESSION_TYPES = {
    "user_id": "text", "session_start": "timestamp with time zone",
    "session_end": "timestamp with time zone", "duration_ms": "bigint", "events": "integer",
    "page_views": "integer", "clicks": "integer", "unique_pages": "integer",
    "entry_url": "text", "exit_url": "text", "bounce": "boolean", "converted": "boolean"}
# A row as the sink COPYs it: COLUMNS' order, times as RFC 3339 text (SESSION_SUMMARY.row).
SESSION_ROW = ("u1", "2024-10-03T23:59:58.500Z", "2024-10-04T00:10:00.000Z", 601_500, 3, 2, 1, 2,
               "/home", "/cart", False, True)


def columns(conn, table):
    return {name: (kind, nullable) for name, kind, nullable in conn.execute(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = %s", (table,))}


def primary_key(conn, table):
    return [name for (name,) in conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
        "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary "
        "ORDER BY array_position(i.indkey, a.attnum)", (table,))]


def partition_key(conn, table):
    return conn.execute("SELECT pg_get_partkeydef(%s::regclass)", (table,)).fetchone()[0]


def partitions(conn, table):
    return sorted(name for (name,) in conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass", (table,)))


def copy_session(conn, row=SESSION_ROW):
    names = ", ".join(f'"{c}"' for c in pg_schema.COLUMNS["user_sessions"])
    with conn.cursor() as cursor:
        with cursor.copy(f"COPY user_sessions ({names}) FROM STDIN") as copy:
            copy.write_row(row)


def test_user_sessions_is_the_table_spec_defines(database):
    with psycopg.connect(database) as conn:
        assert pg_schema.migrate(conn) == 0
        assert pg_schema.VERSION == len(pg_schema.MIGRATIONS) == 2
        assert columns(conn, "user_sessions") == {c: (t, "NO") for c, t in SESSION_TYPES.items()}
        assert pg_schema.COLUMNS["user_sessions"] == tuple(SESSION_TYPES)  # the record's order
        assert primary_key(conn, "user_sessions") == ["user_id", "session_start"]
        # daily partitions like the window tables, on the session's start
        assert partition_key(conn, "user_sessions") == "RANGE (session_start)"
        assert partition_key(conn, "user_metrics") == "RANGE (window_start)"
        assert pg_schema.DAILY_TABLES == ("user_metrics", "page_metrics", "user_sessions")
        pg_schema.ensure_days(conn, [TODAY - 1, TODAY])
        assert partitions(conn, "user_sessions") == ["user_sessions_p20241003",
                                                     "user_sessions_p20241004"]
        copy_session(conn)  # starts the day before it ends: in that day's partition
        conn.commit()
        assert conn.execute("SELECT tableoid::regclass::text FROM user_sessions").fetchall() == [
            ("user_sessions_p20241003",)]
        row = conn.execute("SELECT * FROM user_sessions").fetchone()
        assert row[:3] == ("u1", datetime(2024, 10, 3, 23, 59, 58, 500000, timezone.utc),
                           datetime(2024, 10, 4, 0, 10, tzinfo=timezone.utc))
        assert row[3:] == (601_500, 3, 2, 1, 2, "/home", "/cart", False, True)
        with pytest.raises(psycopg.errors.UniqueViolation):
            copy_session(conn)
        conn.rollback()
        # the dashboard reaches sessions through their time index
        assert "user_sessions_session_start" in {name for (name,) in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'user_sessions'")}


def version_1_database(dsn, days):
    """What the previous version (schema 1) left: its tables, windows on `days`, a ledger."""
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TABLE clickstream_schema ("
                     "version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(pg_schema.MIGRATIONS[0])
        conn.execute("INSERT INTO clickstream_schema (version) VALUES (1)")
        for day in days:  # version 1's ensure_days: the window tables only
            for table in pg_schema.WINDOW_TABLES:
                conn.execute(f"CREATE TABLE {pg_schema.partition_name(table, day)} PARTITION OF "
                             f"{table} FOR VALUES FROM ('{pg_schema._date(day):%Y-%m-%d}') TO "
                             f"('{pg_schema._date(day + 1):%Y-%m-%d}')")
            conn.execute("INSERT INTO user_metrics VALUES ('u1', %(t)s, %(t)s + interval '5s', "
                         "1, 1, 0, 1, 0, %(t)s, %(t)s)", {"t": pg_schema._date(day)})
        conn.execute("INSERT INTO clickstream_sink_ledger (sink, partition, seq, idents) "
                     "VALUES ('user_metrics', 0, 7, '[]'::bytea)")


def test_a_version_1_database_migrates_forward_keeping_its_rows(database):
    old_days = range(TODAY - 9, TODAY + 1)  # ten days, the first two past a 7-day retention
    version_1_database(database, old_days)
    with psycopg.connect(database) as conn:
        assert pg_schema.migrate(conn) == 1
        assert [v for (v,) in conn.execute(
            "SELECT version FROM clickstream_schema ORDER BY version")] == [1, 2]
        assert columns(conn, "user_sessions") == {c: (t, "NO") for c, t in SESSION_TYPES.items()}
        assert primary_key(conn, "user_sessions") == ["user_id", "session_start"]
        assert conn.execute("SELECT count(*) FROM user_metrics").fetchone()[0] == 10
        assert conn.execute("SELECT seq FROM clickstream_sink_ledger").fetchall() == [(7,)]
        assert pg_schema.migrate(conn) == 2  # once
        conn.commit()
    # the service's start: partitions for today and the days ahead in every table, old days
    # dropped in every table
    pg_schema.prepare(database, retention_days=7, today=TODAY)
    with psycopg.connect(database) as conn:
        assert partitions(conn, "user_sessions") == [
            pg_schema.partition_name("user_sessions", d) for d in range(TODAY, TODAY + 3)]
        assert partitions(conn, "user_metrics") == [
            pg_schema.partition_name("user_metrics", d) for d in range(TODAY - 7, TODAY + 3)]
        assert conn.execute("SELECT count(*) FROM user_metrics").fetchone()[0] == 8
        assert pg_schema.existing_days(conn) == set(range(TODAY, TODAY + 3))
        # a session of an older day (still kept) gets its partition as the sink makes it
        pg_schema.ensure_days(conn, [TODAY - 1])
        copy_session(conn)
        conn.commit()
        assert pg_schema.existing_days(conn) == set(range(TODAY - 1, TODAY + 3))
        # retention drops sessions' days with the windows'
        dropped = pg_schema.drop_old_days(conn, 1, TODAY + 1)
        assert dropped == sorted(pg_schema.partition_name(t, d) for t in pg_schema.DAILY_TABLES
                                 for d in range(TODAY - 7 if t != "user_sessions" else TODAY - 1,
                                                TODAY))
        assert conn.execute("SELECT count(*) FROM user_sessions").fetchone()[0] == 0


def test_daily_partitions_are_utc_days_whatever_the_sessions_time_zone(database):
    """A partition's bounds are UTC midnights even when the connection's TimeZone is not UTC
    (day-only bounds were read in the session's zone: a window at 23:30Z went to the next
    day's partition on a server in New York)."""
    with psycopg.connect(database) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")
        pg_schema.migrate(conn)
        pg_schema.ensure_days(conn, [TODAY - 1, TODAY])
        bounds = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
            "WHERE c.relname = %s", (pg_schema.partition_name("user_sessions", TODAY),)).fetchone()[0]
        conn.execute("SET TimeZone = 'UTC'")
        bounds_utc = conn.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c "
            "WHERE c.relname = %s", (pg_schema.partition_name("user_sessions", TODAY),)).fetchone()[0]
        assert "2024-10-04 00:00:00+00" in bounds_utc and "2024-10-05 00:00:00+00" in bounds_utc, (
            bounds, bounds_utc)
        conn.execute("SET TimeZone = 'America/New_York'")
        conn.execute("INSERT INTO user_metrics (user_id, window_start, window_end, events, "
                     "page_views, clicks, unique_pages, sessions, first_event_ts, last_event_ts) "
                     "VALUES ('u', '2024-10-03T23:30:00Z', '2024-10-03T23:30:05Z', 1, 1, 0, 1, 0, "
                     "'2024-10-03T23:30:00Z', '2024-10-03T23:30:00Z')")
        [(table,)] = conn.execute("SELECT tableoid::regclass::text FROM user_metrics").fetchall()
        assert table == pg_schema.partition_name("user_metrics", TODAY - 1)
