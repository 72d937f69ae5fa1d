"""Every panel of the PostgreSQL dashboard (deploy/grafana/dashboards/clickstream-sql.json) run
for real: on a fresh database migrated by the service's own code, with known rows spread over
the last hour (and some outside the dashboard's range), each panel's SQL, its Grafana macros
expanded here as Grafana expands them, must return exactly what the test computes from the
rows it inserted, and its plan must reach the rows through the time indexes (partitions of
other days pruned, never the sink's ledger)."""

import bisect
import json
import math
import random
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from clickstream.io import pg_schema

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "deploy/grafana/dashboards/clickstream-sql.json").read_text())
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=5)
# width_bucket(events, ARRAY[2, 3, 5, 10, 20, 50, 100]) and the panel's labels
THRESHOLDS = [2, 3, 5, 10, 20, 50, 100]
LABELS = ["1", "2", "3-4", "5-9", "10-19", "20-49", "50-99", "100+"]


# --- Grafana's macros (pkg/tsdb/grafana-postgresql-datasource/macros.go), the few used here ---

MACRO = re.compile(r"\$(\w+)\(([^)]*)\)")  # Grafana's own pattern: $name(args)


def rfc3339nano(t: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: fraction without trailing zeros, 'Z'."""
    t = t.astimezone(timezone.utc)
    fraction = f"{t.microsecond:06d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def expand(sql: str, start: datetime, end: datetime) -> str:
    def macro(match):
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")] if match.group(2).strip() else []
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(start)}' AND '{rfc3339nano(end)}'"
        if name == "__timeFrom":
            return f"'{rfc3339nano(start)}'"
        if name == "__timeTo":
            return f"'{rfc3339nano(end)}'"
        raise AssertionError(f"macro ${name} is not one this test expands (nor should the "
                             f"dashboard need it)")

    expanded = MACRO.sub(macro, sql)
    assert "$" not in expanded, expanded
    return expanded


# --- known rows ---------------------------------------------------------------------------

def day_of(t: datetime) -> int:
    return (t - EPOCH).days


def user_row(rng, user, start, events):
    page_views = rng.randint(0, events)
    clicks = rng.randint(0, events - page_views)
    first = start + timedelta(milliseconds=rng.randint(0, 2000))
    last = first + timedelta(milliseconds=rng.randint(0, 2999))
    return dict(user_id=user, window_start=start, window_end=start + WINDOW, events=events,
                page_views=page_views, clicks=clicks, unique_pages=min(page_views, 3),
                sessions=1, first_event_ts=first, last_event_ts=last)


def page_row(rng, url, start, views=None, events=None):
    views = rng.randint(0, 40) if views is None else views
    events = views + rng.randint(0, 20) if events is None else events
    return dict(url=url, window_start=start, window_end=start + WINDOW, views=views,
                events=events, unique_users=max(1, min(events, 5)))


def session_row(rng, user, start, events):
    duration = 0 if events == 1 else rng.randint(1, 3_600_000)
    page_views = rng.randint(0, events)
    return dict(user_id=user, session_start=start,
                session_end=start + timedelta(milliseconds=duration), duration_ms=duration,
                events=events, page_views=page_views, clicks=rng.randint(0, events - page_views),
                unique_pages=1, entry_url="/a", exit_url="/b",
                bounce=events == 1 and page_views == 1, converted=rng.random() < 0.3)


def known_rows(now: datetime):
    rng = random.Random(13)
    base = now - timedelta(microseconds=(now - EPOCH) // timedelta(microseconds=1) % 5_000_000)
    users = [f"user-{i}" for i in range(8)]
    # no in-range window has 20-49 events: that bucket must come back as 0
    in_range_events = [1, 1, 1, 2, 2, 3, 4, 5, 7, 9, 12, 15, 60, 99, 100, 150]
    user_rows = []
    for minutes in (1, 3, 9, 14, 22, 31, 47, 58):  # inside the last hour
        start = base - timedelta(minutes=minutes)
        for user in rng.sample(users, rng.randint(1, len(users))):
            user_rows.append(user_row(rng, user, start, rng.choice(in_range_events)))
    for ago in (timedelta(minutes=70), timedelta(days=3, minutes=5)):  # outside it
        for user in users:
            user_rows.append(user_row(rng, user, base - ago, 25))

    urls = [f"/page/{i:02d}" for i in range(14)]
    page_rows = []
    for minutes in (1, 4, 9, 13, 14, 16, 20, 45):  # 1..14: the last 15 minutes, with margins
        start = base - timedelta(minutes=minutes)
        for url in rng.sample(urls, rng.randint(6, len(urls))):
            page_rows.append(page_row(rng, url, start))
    # a tie on views and events, broken by url; and older windows that would outrank everyone
    page_rows += [page_row(rng, "/tie/b", base - timedelta(minutes=2), 1000, 1200),
                  page_row(rng, "/tie/a", base - timedelta(minutes=6), 1000, 1200),
                  page_row(rng, "/old", base - timedelta(minutes=17), 5000, 5000),
                  page_row(rng, "/older", base - timedelta(days=3), 9000, 9000)]

    dead = []
    for n, (reason, minutes) in enumerate(
            [("malformed", 2), ("malformed", 10), ("malformed", 30), ("malformed", 59),
             ("late", 5), ("late", 40),
             # outside the range: would make "late" the first reason
             ("late", 61), ("late", 90), ("late", 120), ("late", 24 * 60), ("malformed", 65)]):
        dead.append(dict(topic="clicks", partition=n % 2, offset=1000 + n, reason=reason,
                         error=f"{reason} #{n}", value="{}", value_b64=None,
                         written_at=now - timedelta(minutes=minutes)))
    sessions = []
    for minutes in (2, 5, 11, 26, 33, 44, 59):  # inside the last hour, some minutes with many
        minute = now.replace(second=0, microsecond=0) - timedelta(minutes=minutes)
        for n in range(rng.choice([1, 2, 7, 20])):
            start = minute + timedelta(milliseconds=rng.randint(0, 59_999))
            sessions.append(session_row(rng, f"user-{n}", start, rng.choice([1, 1, 2, 5, 30])))
    for ago in (timedelta(minutes=61), timedelta(days=3)):  # outside it
        for n in range(5):
            sessions.append(session_row(rng, f"user-{n}", base - ago, 1))
    return user_rows, page_rows, dead, sessions


def insert(conn, table, rows):
    columns = list(rows[0])
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    with conn.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                           [[row[c] for c in columns] for row in rows])


# --- what each panel must show, computed from the rows -------------------------------------

def percentile_cont(fraction, values):
    """PostgreSQL's percentile_cont (utils/adt/orderedsetaggs.c), the same float operations."""
    values = sorted(values)
    row = fraction * (len(values) - 1)
    first = math.floor(row)
    low, high = float(values[first]), float(values[math.ceil(row)])
    return low if row == first else low + (row - first) * (high - low)


def expected_results(user_rows, page_rows, dead, sessions, start, end, now):
    def in_range(t):
        return start <= t <= end  # BETWEEN

    users = [r for r in user_rows if in_range(r["window_start"])]
    active = Counter(r["window_start"] for r in users)
    sums = defaultdict(lambda: [0, 0])
    for r in users:
        sums[r["window_start"]][0] += r["events"]
        sums[r["window_start"]][1] += r["page_views"]

    pages = defaultdict(lambda: [0, 0])
    for r in page_rows:
        if r["window_start"] > now - timedelta(minutes=15):
            pages[r["url"]][0] += r["views"]
            pages[r["url"]][1] += r["events"]
    top = sorted(((url, v, e) for url, (v, e) in pages.items()),
                 key=lambda row: (-row[1], -row[2], row[0]))[:10]

    buckets = Counter(bisect.bisect_right(THRESHOLDS, r["events"]) for r in users)
    reasons = Counter(d["reason"] for d in dead if in_range(d["written_at"]))

    minutes = defaultdict(list)  # sessions by the minute they started
    for r in sessions:
        if in_range(r["session_start"]):
            minutes[r["session_start"].replace(second=0, microsecond=0)].append(r)
    minutes = sorted(minutes.items())

    return {
        "Active users per window": (
            ["time", "active users"], sorted(active.items())),
        "Events and page views per window": (
            ["time", "events", "page views"], [(t, e, v) for t, (e, v) in sorted(sums.items())]),
        "Top pages (last 15 minutes)": (
            ["url", "views", "events"], top),
        "Events per user window (distribution)": (
            ["events per user window", "user windows"],
            [(label, buckets[n]) for n, label in enumerate(LABELS)]),
        "Dead letters by reason": (
            ["reason", "dead letters"],
            sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
        "Sessions per minute": (
            ["time", "sessions"], [(t, len(rs)) for t, rs in minutes]),
        "Session duration (median, p90)": (
            ["time", "median", "p90"],
            [(t, percentile_cont(0.5, [r["duration_ms"] for r in rs]),
              percentile_cont(0.9, [r["duration_ms"] for r in rs])) for t, rs in minutes]),
        "Bounce and conversion rate": (
            ["time", "bounce rate", "conversion rate"],
            [(t, sum(r["bounce"] for r in rs) / len(rs), sum(r["converted"] for r in rs) / len(rs))
             for t, rs in minutes]),
    }


# --- plans --------------------------------------------------------------------------------

def scans(conn, sql):
    """(relation, [index names]) of every scan in the plan of `sql`, sequential scans
    disabled (so that a plan without an index shows that no index can serve the query)."""
    conn.execute("SET enable_seqscan = off")
    try:
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()[0][0]["Plan"]
    finally:
        conn.execute("RESET enable_seqscan")
    found = []

    def walk(node):
        if "Relation Name" in node:
            indexes = [n["Index Name"] for n in [node, *node.get("Plans", [])]
                       if "Index Name" in n]
            found.append((node["Relation Name"], node["Node Type"], indexes))
        for child in node.get("Plans", []):
            if "Relation Name" not in node or child["Node Type"] != "Bitmap Index Scan":
                walk(child)

    walk(plan)
    return found


def assert_uses_time_indexes(conn, title, sql, oldest_day):
    found = scans(conn, sql)
    assert found, title
    for relation, node_type, indexes in found:
        assert "ledger" not in relation and relation != "clickstream_schema", (title, relation)
        assert node_type in {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}, \
            (title, relation, node_type)
        assert indexes and all(
            ("window_start" in i or "session_start" in i or i == "dead_letters_written_at")
            and not i.endswith("_pkey")
            for i in indexes), (title, relation, indexes)
        if relation.startswith(pg_schema.DAILY_TABLES):  # a day's partition
            day = pg_schema._day_of(relation, relation.split("_p2")[0])
            assert day is not None and day >= oldest_day, (title, relation, "not pruned")


def test_every_panel_returns_exactly_what_the_rows_hold(database):
    now = datetime.now(timezone.utc)
    # the dashboard's range, as Grafana sends it: the last hour, to the millisecond
    end = now.replace(microsecond=now.microsecond // 1000 * 1000)
    start = end - timedelta(hours=1)
    user_rows, page_rows, dead, sessions = known_rows(now)

    with psycopg.connect(database, autocommit=True) as conn:
        pg_schema.migrate(conn)
        today = day_of(now)
        days = {day_of(r["window_start"]) for r in user_rows + page_rows} | {
            day_of(r["session_start"]) for r in sessions}
        pg_schema.ensure_days(conn, days | {today, today + 1, today + 2})
        assert day_of(now - timedelta(days=3)) in pg_schema.existing_days(conn)
        insert(conn, "user_metrics", user_rows)
        insert(conn, "page_metrics", page_rows)
        insert(conn, "dead_letters", dead)
        insert(conn, "user_sessions", sessions)
        conn.execute("INSERT INTO clickstream_sink_ledger (sink, partition, seq, idents) "
                     "VALUES ('user', 0, 1, '[\"u\\\\u00001\"]'::bytea)")
        expected = expected_results(user_rows, page_rows, dead, sessions, start, end, now)

        executed = {}
        panels = [p for p in DASHBOARD["panels"] if p["type"] != "row"]  # a row runs nothing
        for panel in panels:
            for target in panel["targets"]:
                sql = expand(target["rawSql"], start, end)
                cursor = conn.execute(sql)
                executed[panel["title"]] = ([c.name for c in cursor.description],
                                            [tuple(row) for row in cursor.fetchall()])
                oldest = day_of(start if "$__timeFilter" in target["rawSql"]
                                else now - timedelta(minutes=15))
                assert_uses_time_indexes(conn, panel["title"], sql, oldest)
                if target["format"] == "time_series":
                    assert executed[panel["title"]][0][0] == "time", panel["title"]

    # every panel of the dashboard was run, and every one is checked
    assert set(executed) == {p["title"] for p in panels} == set(expected)
    assert sum(len(p["targets"]) for p in panels) == len(executed)
    for title, (columns, rows) in expected.items():
        assert executed[title] == (columns, rows), title
    # the rows exercise what the queries must get right
    assert len(expected["Top pages (last 15 minutes)"][1]) == 10
    assert expected["Top pages (last 15 minutes)"][1][:2] == [("/tie/a", 1000, 1200),
                                                               ("/tie/b", 1000, 1200)]
    assert dict(expected["Events per user window (distribution)"][1])["20-49"] == 0
    assert [r for r, _ in expected["Dead letters by reason"][1]] == ["malformed", "late"]
    per_minute = [n for _, n in expected["Sessions per minute"][1]]
    assert len(per_minute) == 7 and max(per_minute) >= 7 and min(per_minute) == 1
    rates = expected["Bounce and conversion rate"][1]
    assert any(0 < b < 1 for _, b, _ in rates) and any(0 < c < 1 for _, _, c in rates)
    durations = expected["Session duration (median, p90)"][1]
    assert any(median != p90 for _, median, p90 in durations)


def test_the_macro_expander_matches_grafanas_format():
    start = datetime(2026, 1, 2, 3, 4, 5, 120000, tzinfo=timezone.utc)
    end = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone.utc)
    assert expand("SELECT $__time(t) WHERE $__timeFilter( t ) AND $__timeFrom() < $__timeTo()",
                  start, end) == (
        "SELECT t AS \"time\" WHERE t BETWEEN '2026-01-02T03:04:05.12Z' AND "
        "'2026-01-02T04:04:05Z' AND '2026-01-02T03:04:05.12Z' < '2026-01-02T04:04:05Z'")
    with pytest.raises(AssertionError):
        expand("SELECT $__timeGroup(t, 5m)", start, end)
