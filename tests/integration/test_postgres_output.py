"""The PostgreSQL output on the real database and broker: every row against the oracle.

Each test gets a database of its own on the local server (the `postgres` fixture).
"""

import random
import time
from datetime import date, datetime, timedelta, timezone

import orjson
import psycopg
import pytest

from clickstream.io import pg_schema
from clickstream.runtime.exits import RESTART_STATUS
from tests.integration.checks import assert_matches
from tests.integration.kafka_io import run_dataflow, start_dataflow, wait_for
from tests.integration.oracle import SESSION_GAP_MS, SESSION_MAX_MS, expected_outputs, iso
from tests.integration.test_exactly_once import finish, kill_repeatedly, preload

pytestmark = pytest.mark.integration


def table_rows(dsn: str):
    """(user rows, page rows, dead letters) in the oracle's shape, keyed as it keys them."""
    with psycopg.connect(dsn) as conn:
        def rows(sql):
            cursor = conn.execute(sql)
            names = [c.name for c in cursor.description]
            return [dict(zip(names, r)) for r in cursor.fetchall()]

        def shown(row):
            return {k: iso(int(v.timestamp() * 1000)) if hasattr(v, "timestamp") else v
                    for k, v in row.items()}

        users = [shown(r) for r in rows("SELECT * FROM user_metrics")]
        pages = [shown(r) for r in rows("SELECT * FROM page_metrics")]
        dead = rows('SELECT topic, partition, "offset", reason, error, value, value_b64 '
                    "FROM dead_letters")
    user = {(r["user_id"], r["window_start"]): r for r in users}
    page = {(r["url"], r["window_start"]): r for r in pages}
    assert len(user) == len(users) and len(page) == len(pages)
    letters = {}
    for d in dead:
        assert d.pop("error")
        if d["value_b64"] is None:
            del d["value_b64"]
        else:
            del d["value"]
        letters[(d["partition"], d["offset"])] = d
    return user, page, letters


def session_rows(dsn: str) -> dict:
    """{(user_id, session_start): row} of user_sessions, in the oracle's shape."""
    with psycopg.connect(dsn) as conn:
        cursor = conn.execute("SELECT * FROM user_sessions")
        names = [c.name for c in cursor.description]
        rows = [dict(zip(names, r)) for r in cursor.fetchall()]
    for row in rows:
        for name in ("session_start", "session_end"):
            row[name] = iso(int(row[name].timestamp() * 1000))
    got = {(r["user_id"], r["session_start"]): r for r in rows}
    assert len(got) == len(rows)
    return got


def assert_rows_match(dsn: str, topics, inputs, **windows):
    expected = expected_outputs(inputs, topics.input, windows.get("window_ms", 5000),
                                windows.get("lateness_ms", 10000), None,
                                windows.get("session_gap_ms", SESSION_GAP_MS),
                                windows.get("session_max_ms", SESSION_MAX_MS))
    user, page, dead = table_rows(dsn)
    assert user == expected.user
    assert page == expected.page
    assert dead == expected.dead
    assert session_rows(dsn) == expected.sessions
    return expected


def test_rows_equal_the_oracle_and_the_kafka_records(topics, database):
    inputs = preload(topics, 20000, seed=31)
    finish(topics, (), CLICKSTREAM_OUTPUTS="kafka,postgres", CLICKSTREAM_POSTGRES_DSN=database)
    expected = assert_rows_match(database, topics, inputs)
    assert_matches(topics, inputs)
    assert len(expected.dead) > 0 and {d["reason"] for d in expected.dead.values()} == {
        "malformed", "late"}
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT max(version) FROM clickstream_schema").fetchone()[0] == \
            pg_schema.VERSION
        # a partition per day the windows fell on, beside today's and two days ahead
        days = {r[0] for r in conn.execute(
            "SELECT DISTINCT (window_start AT TIME ZONE 'UTC')::date FROM user_metrics")}
        today = datetime.now(timezone.utc).date()
        assert pg_schema.existing_days(conn) == {
            (d - date(1970, 1, 1)).days for d in days | {today + timedelta(n) for n in range(3)}}


def test_postgres_only_needs_no_output_topics(topics, database):
    inputs = preload(topics, 3000, seed=32)
    env = dict(CLICKSTREAM_OUTPUTS="postgres", CLICKSTREAM_POSTGRES_DSN=database,
               CLICKSTREAM_USER_TOPIC="no-such-topic", CLICKSTREAM_PAGE_TOPIC="no-such-topic-2",
               CLICKSTREAM_DLQ_TOPIC="no-such-topic-3",
               CLICKSTREAM_SESSION_TOPIC="no-such-topic-4")
    finish(topics, (), **env)
    assert_rows_match(database, topics, inputs)


def test_sigkills_at_random_moments_leave_every_row_once(topics, database, tmp_path):
    inputs = preload(topics, 40000, seed=33)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    # Sessions of a 1 s gap close (and are written) all along the run, not only at its end.
    env = dict(CLICKSTREAM_OUTPUTS="kafka,postgres", CLICKSTREAM_POSTGRES_DSN=database,
               CLICKSTREAM_SESSION_GAP_SECONDS=1, CLICKSTREAM_SESSION_MAX_SECONDS=15)
    kill_repeatedly(topics, flags, 4, random.Random(34), tmp_path, 0.0, 1.5,
                    after_progress=True, **env)
    result = finish(topics, flags, **env)
    sessions = dict(session_gap_ms=1000, session_max_ms=15_000)
    assert len(assert_rows_match(database, topics, inputs, **sessions).sessions) > 1000
    assert_matches(topics, inputs, **sessions)
    print(result.stderr[-500:])


@pytest.mark.parametrize("problem, dsn, says", [
    ("nothing listens", "postgresql://clickstream:s3cret-pw@127.0.0.1:1/clickstream",
     "connection"),
    ("no such database", "postgresql://clickstream:s3cret-pw@127.0.0.1:15432/nodb_here",
     "does not exist"),
    ("no such role", "postgresql://nobody_here:s3cret-pw@127.0.0.1:15432/clickstream",
     "does not exist"),
])
def test_a_bad_dsn_stops_at_start_with_one_line_and_no_password(topics, postgres, problem, dsn,
                                                                 says):
    result = run_dataflow(topics.env(CLICKSTREAM_OUTPUTS="kafka,postgres",
                                     CLICKSTREAM_POSTGRES_DSN=dsn, CLICKSTREAM_BOUNDED=1))
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("clickstream: CLICKSTREAM_POSTGRES_DSN=") and says in lines[0]
    assert "s3cret-pw" not in result.stderr + result.stdout and "***" in lines[0]


def test_retention_drops_whole_old_days_and_keeps_the_rest(database):
    today = 20_000  # 2024-10-04
    with psycopg.connect(database) as conn:
        pg_schema.migrate(conn)
        pg_schema.ensure_days(conn, range(today - 10, today + 3))
        dropped = pg_schema.drop_old_days(conn, 7, today)
        assert dropped == sorted(f"{t}_p2024{md}" for t in pg_schema.DAILY_TABLES
                                 for md in ("0924", "0925", "0926"))
        assert pg_schema.existing_days(conn) == set(range(today - 7, today + 3))
        assert pg_schema.drop_old_days(conn, 0, today) == []
        # a second migrate finds the schema current and changes nothing
        assert pg_schema.migrate(conn) == pg_schema.VERSION


def test_a_schema_newer_than_the_code_is_refused(database):
    with psycopg.connect(database) as conn:
        pg_schema.migrate(conn)
        conn.execute("INSERT INTO clickstream_schema (version) VALUES (%s)",
                     (pg_schema.VERSION + 1,))
        conn.commit()
        with pytest.raises(pg_schema.DatabaseError, match=r"schema version \d+; this version"):
            pg_schema.migrate(conn)


def test_keys_with_nul_and_dead_letters_with_nul_are_stored(topics, database):
    from tests.integration.kafka_io import produce

    values = [b'{"user_id":"a\\u0000b","event_type":"click","url":"/x\\u0000","ts":1767225600000}',
              b'{"broken\\u0000": ', b"\x00\x01binary"]
    produce(topics.brokers, topics.input, [(None, v, 0) for v in values])
    finish(topics, (), CLICKSTREAM_OUTPUTS="postgres", CLICKSTREAM_POSTGRES_DSN=database)
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT user_id FROM user_metrics").fetchall() == [("a\ufffdb",)]
        assert conn.execute("SELECT count(*) FROM dead_letters WHERE value_b64 IS NOT NULL"
                            ).fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 2


def test_a_database_outage_stops_with_one_line_and_a_restart_resumes_exactly(
        topics, own_postgres, tmp_path):
    server = own_postgres(15499)
    inputs = preload(topics, 60000, seed=35)
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    env = dict(CLICKSTREAM_OUTPUTS="postgres", CLICKSTREAM_POSTGRES_DSN=server.dsn)
    flow = start_dataflow(topics.env(**env), *flags, log=tmp_path / "run.log")

    def rows_written():
        with psycopg.connect(server.dsn) as conn:
            try:
                return conn.execute("SELECT count(*) FROM user_metrics").fetchone()[0] > 100
            except psycopg.errors.UndefinedTable:  # not created yet
                return False

    wait_for(rows_written, timeout=60, what="rows in the database")
    went_down = time.monotonic()
    server.down()
    status = flow.wait(timeout=60)
    log = (tmp_path / "run.log").read_text()
    lines = [line for line in log.splitlines() if line.startswith("clickstream:")]
    assert status == RESTART_STATUS, log[-2000:]
    assert "in PostgreSQL" in lines[-1] and "resumes from the last snapshot" in lines[-1]
    assert "Traceback" not in log
    time.sleep(max(0.0, 30 - (time.monotonic() - went_down)))  # down for 30 s
    server.up()
    finish(topics, flags, **env)
    assert_rows_match(server.dsn, topics, inputs)


def test_rows_already_there_are_kept_when_nothing_says_so(topics, database):
    """Without recovery nothing records what an earlier run committed: its rows are met as
    conflicts and kept (the first values win), and the run still ends normally."""
    inputs = preload(topics, 5000, seed=36)
    env = dict(CLICKSTREAM_OUTPUTS="postgres", CLICKSTREAM_POSTGRES_DSN=database)
    finish(topics, (), **env)
    with psycopg.connect(database) as conn:
        conn.execute("UPDATE user_metrics SET events = -1 WHERE user_id = (SELECT min(user_id) "
                     "FROM user_metrics)")
        conn.commit()
    finish(topics, (), **env)
    user, page, dead = table_rows(database)
    expected = expected_outputs(inputs, topics.input, 5000, 10000)
    changed = {k for k in user if user[k]["events"] == -1}
    assert changed and {k: v for k, v in user.items() if k not in changed} == {
        k: v for k, v in expected.user.items() if k not in changed}
    assert page == expected.page and dead == expected.dead


def test_a_row_the_database_refuses_stops_with_one_line_and_nothing_half_written(
        topics, database, tmp_path):
    inputs = preload(topics, 5000, seed=37)
    with psycopg.connect(database) as conn:
        pg_schema.migrate(conn)
        # a rule of the DBA's that some windows break
        conn.execute("ALTER TABLE user_metrics ADD CONSTRAINT few CHECK (events < 4)")
        conn.commit()
    flags = ("-r", str(tmp_path / "store"), "-s", "1", "-b", "0")
    env = dict(CLICKSTREAM_OUTPUTS="postgres", CLICKSTREAM_POSTGRES_DSN=database)
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1, **env), *flags)
    lines = [line for line in result.stderr.splitlines() if line.startswith("clickstream:")]
    assert result.returncode == RESTART_STATUS, result.stderr[-2000:]
    assert "few" in lines[-1] and "Traceback" not in result.stderr
    with psycopg.connect(database) as conn:
        # whatever was committed came with its ledger row: every committed identity is there
        committed = conn.execute("SELECT count(*) FROM user_metrics").fetchone()[0]
        ledgered = sum(len(orjson.loads(blob)) for (blob,) in conn.execute(
            "SELECT idents FROM clickstream_sink_ledger WHERE sink = 'user_metrics'"))
        assert committed == ledgered
        conn.execute("ALTER TABLE user_metrics DROP CONSTRAINT few")
        conn.commit()
    finish(topics, flags, **env)
    assert_rows_match(database, topics, inputs)


def test_rows_of_days_past_the_retention_are_not_written(topics, database):
    inputs = preload(topics, 3000, seed=38)  # windows of 2026-01-01, long before today
    finish(topics, (), CLICKSTREAM_OUTPUTS="postgres", CLICKSTREAM_POSTGRES_DSN=database,
           CLICKSTREAM_POSTGRES_RETENTION_DAYS=30)
    user, page, dead = table_rows(database)
    expected = expected_outputs(inputs, topics.input, 5000, 10000)
    assert user == {} and page == {} and dead == expected.dead  # dead letters are kept
    with psycopg.connect(database) as conn:
        today = datetime.now(timezone.utc).date()
        assert pg_schema.existing_days(conn) == {
            (today + timedelta(n) - date(1970, 1, 1)).days for n in range(3)}
