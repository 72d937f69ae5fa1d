"""`make demo`: the service end to end on a local broker and database for about half a minute.

Starts Kafka and PostgreSQL (scripts/pg.sh, 127.0.0.1:PG_PORT) when none answers, recreates
the default topics and the database `clickstream_demo` (DEMO_DATABASE), runs the dataflow
live with both outputs (CLICKSTREAM_OUTPUTS=kafka,postgres; metrics on :3030, or the next free
port) and the load generator at a steady rate, waits for the last windows to close on
idleness, prints a sample of the results from the topics (user sessions too, with a session
gap of DEMO_SESSION_GAP_S so that some end within the demo), the top pages from a SQL query and
the rows per table, then stops everything it started. DEMO_KEEP_KAFKA=1 / DEMO_KEEP_POSTGRES=1
leave running a server it started. Without PostgreSQL's server binaries installed, it runs
with the Kafka output only.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from clickstream.io.kafka import broker_answers, create_topics
from clickstream.tools.report import LocalPrometheus, collect, render
from clickstream.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RATE = int(os.environ.get("DEMO_RATE", "3000"))
SECONDS = int(os.environ.get("DEMO_SECONDS", "25"))
METRICS_PORT = int(os.environ.get("BYTEWAX_DATAFLOW_API_PORT", "3030"))  # the next free one when taken
PG_PORT = os.environ.get("PG_PORT", "15432")
PG_SERVER = f"postgresql://clickstream@127.0.0.1:{PG_PORT}"  # scripts/pg.sh's role, no password
# Recreated by each run, as the topics are (a dead letter's row is keyed by its input offset,
# which starts over with the topic). DEMO_DATABASE=clickstream: the default DSN's database.
DEMO_DATABASE = os.environ.get("DEMO_DATABASE", "clickstream_demo")
DEMO_DSN = f"{PG_SERVER}/{DEMO_DATABASE}"
TABLES = ("user_metrics", "page_metrics", "dead_letters", "user_sessions")
# Sessions end after this many seconds without an event, so that some end within the demo
# (the service's default is 1800); CLICKSTREAM_SESSION_GAP_SECONDS, when set, wins.
DEMO_SESSION_GAP_S = 5
DB_ROWS_METRIC = 'clickstream_records_produced_total{topic="postgres:'  # rows committed, all tables
TOP_PAGES_SQL = ("SELECT url, sum(views) AS views, sum(events) AS events, count(*) AS windows, "
                 "max(unique_users) AS peak_users FROM page_metrics "
                 "GROUP BY url ORDER BY views DESC, url LIMIT 5")


def recreate_topics(settings: Settings) -> None:
    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    names = [settings.input_topic, *settings.output_topics]
    existing = [n for n in names if n in admin.list_topics(timeout=10).topics]
    if existing:
        for future in admin.delete_topics(existing).values():
            future.result()
        deadline = time.time() + 30
        while any(n in admin.list_topics(timeout=10).topics for n in existing):
            if time.time() > deadline:
                raise SystemExit("demo: old topics were not deleted in 30 s")
            time.sleep(0.3)
    for _ in range(50):  # a just-deleted name can take a moment to be reusable
        try:
            create_topics(settings, 2)
            return
        except Exception:
            time.sleep(0.3)
    create_topics(settings, 2)


def read_all(settings: Settings, topic: str):
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "demo-reader",
                         "enable.partition.eof": True, "isolation.level": "read_committed"})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    records, eof = [], set()
    ends = {p for p in parts if consumer.get_watermark_offsets(TopicPartition(topic, p))[1] == 0}
    eof |= ends
    while len(eof) < len(parts):
        msg = consumer.poll(2)
        if msg is None:
            break
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                eof.add(msg.partition())
            continue
        records.append(json.loads(msg.value()))
    consumer.close()
    return records


def scrape(name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return float("nan")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def free_port(first: int) -> int:
    """`first`, or the next port bytewax can bind (it listens on 0.0.0.0) when another process
    holds it: otherwise the live lines would show that process's metrics."""
    for port in range(first, first + 50):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port))
                return port
            except OSError:
                continue
    raise SystemExit(f"demo: no free port for the metrics in {first}..{first + 49}")


def postgres_answers() -> bool:
    try:
        with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def pg_env() -> dict:
    """scripts/pg.sh's environment. As root the server runs as an unprivileged user that must
    reach its data: in a clone under a private directory (/root, say), keep the data outside
    it, as .ci/run does."""
    env = dict(os.environ)
    if os.geteuid() == 0 and not env.get("PG_HOME") and subprocess.run(
            ["runuser", "-u", "nobody", "--", "test", "-x", str(ROOT)]).returncode != 0:
        env["PG_HOME"] = "/var/tmp/clickstream-pg"
        print(f"demo: {ROOT} is private; PostgreSQL data in {env['PG_HOME']}")
    return env


def start_postgres():
    """(use PostgreSQL, pg.sh's environment when started here, else None): scripts/pg.sh up
    when nothing answers on PG_PORT."""
    if postgres_answers():
        return True, None
    if not os.environ.get("PG_BINDIR") and not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        print("demo: no PostgreSQL server installed (apt-get install postgresql): "
              "Kafka output only")
        return False, None
    env = pg_env()
    if subprocess.run([str(ROOT / "scripts/pg.sh"), "up"], env=env).returncode != 0:
        raise SystemExit("demo: PostgreSQL did not start (see the lines above)")
    return True, env


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # in order with the servers' and tools' lines
    settings = Settings.from_env()
    started_kafka = False
    started_postgres = None  # pg.sh's environment when the demo started PostgreSQL
    try:
        if not broker_answers(settings.brokers[0]):
            subprocess.run([str(ROOT / "scripts/kafka.sh"), "up"], check=True)
            started_kafka = True
        use_postgres, started_postgres = start_postgres()
        return run(settings, use_postgres)
    finally:
        if started_postgres is not None and os.environ.get("DEMO_KEEP_POSTGRES") != "1":
            subprocess.run([str(ROOT / "scripts/pg.sh"), "down"], env=started_postgres)
        if started_kafka and os.environ.get("DEMO_KEEP_KAFKA") != "1":
            subprocess.run([str(ROOT / "scripts/kafka.sh"), "down"])


def recreate_database() -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", DEMO_DATABASE):
        raise SystemExit(f"demo: DEMO_DATABASE={DEMO_DATABASE!r} is not a plain database name")
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DEMO_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DEMO_DATABASE}")


def run(settings: Settings, use_postgres: bool) -> int:
    global METRICS_PORT
    flow = prometheus = None
    try:
        port = free_port(METRICS_PORT)
        if port != METRICS_PORT:
            print(f"demo: port {METRICS_PORT} is in use; the dataflow's metrics go to {port}")
            METRICS_PORT = port
        print(f"demo: recreating topics {settings.input_topic}, {', '.join(settings.output_topics)}")
        recreate_topics(settings)
        env = dict(os.environ, BYTEWAX_DATAFLOW_API_ENABLED="true",
                   BYTEWAX_DATAFLOW_API_PORT=str(METRICS_PORT), CLICKSTREAM_OUTPUTS="kafka")
        env.setdefault("CLICKSTREAM_SESSION_GAP_SECONDS", str(DEMO_SESSION_GAP_S))
        if settings.sessions:
            print(f"demo: sessions end after {env['CLICKSTREAM_SESSION_GAP_SECONDS']} s without "
                  "an event (CLICKSTREAM_SESSION_GAP_SECONDS; the service's default is 1800)")
        if use_postgres:
            print(f"demo: recreating database {DEMO_DATABASE} on 127.0.0.1:{PG_PORT} "
                  "(the dataflow creates its tables)")
            recreate_database()
            env.update(CLICKSTREAM_OUTPUTS="kafka,postgres", CLICKSTREAM_POSTGRES_DSN=DEMO_DSN)
        (ROOT / ".local").mkdir(exist_ok=True)  # git ignores it; absent in a fresh clone
        log = open(ROOT / ".local" / "demo-dataflow.log", "w")
        flow = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow", "-s", "1"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        print(f"demo: dataflow started (pid {flow.pid}, outputs {env['CLICKSTREAM_OUTPUTS']}); "
              f"metrics at http://127.0.0.1:{METRICS_PORT}/metrics")
        if LocalPrometheus.available():
            prometheus = LocalPrometheus([f"127.0.0.1:{METRICS_PORT}"]).__enter__()
            print(f"demo: Prometheus scraping it at {prometheus.url} (alerts at {prometheus.url}/alerts)")
        else:
            prometheus = None
            print("demo: no `prometheus` installed (apt-get install prometheus): no report picture")
        print(f"demo: generating {RATE * SECONDS} events at {RATE}/s for {SECONDS} s "
              "(2% late, 5% out of order, 1% malformed)")
        started = time.time()
        generator = subprocess.Popen(
            [sys.executable, "-m", "clickstream.generate", "--count", str(RATE * SECONDS),
             "--rate", str(RATE), "--users", "20000", "--late-fraction", "0.02",
             "--out-of-order-fraction", "0.05", "--malformed-fraction", "0.01",
             "--topic", settings.input_topic, "--brokers", settings.bootstrap_servers],
            cwd=ROOT)
        while generator.poll() is None:
            time.sleep(5)
            consumed = scrape("clickstream_events_consumed_total")
            windows = scrape("clickstream_windows_emitted_total")
            lag = scrape("clickstream_consumer_lag")
            elapsed = time.time() - started
            line = f"demo: live  in {consumed / elapsed:7.0f} events/s  windows out {windows:6.0f}  lag {lag:5.0f}"
            if use_postgres:
                line += f"  rows in db {scrape(DB_ROWS_METRIC):6.0f}"
            print(line)
        if generator.returncode != 0:
            print("demo: the generator failed", file=sys.stderr)
            return 1
        # A session closes on idle time about G + L after its last event, rounded up to a window.
        gap_ms = float(env["CLICKSTREAM_SESSION_GAP_SECONDS"]) * 1000 if settings.sessions else 0
        wait = (settings.window_ms + settings.lateness_ms + gap_ms) / 1000 + 4
        print(f"demo: waiting {wait:.0f} s for the last windows{' and sessions' if gap_ms else ''} "
              "to close on idleness")
        time.sleep(wait)
        consumed = scrape("clickstream_events_consumed_total")
        if flow.poll() is not None:
            print("demo: the dataflow exited early; see .local/demo-dataflow.log", file=sys.stderr)
            return 1
        if prometheus is not None:
            picture = ROOT / ".local" / "demo-report.png"
            render(collect(prometheus.url, minutes=(time.time() - started) / 60 + 0.5, step=2),
                   picture, "clickstream demo")
            print(f"demo: dashboard panels rendered to {picture}")
    finally:
        if prometheus is not None:
            prometheus.__exit__()
        if flow is not None and flow.poll() is None:
            os.killpg(flow.pid, signal.SIGINT)
            try:
                flow.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(flow.pid, signal.SIGKILL)
    return report(settings, consumed, use_postgres)


def report(settings: Settings, consumed: float, use_postgres: bool) -> int:
    users = read_all(settings, settings.user_topic)
    pages = read_all(settings, settings.page_topic)
    dead = read_all(settings, settings.dlq_topic)
    print(f"\ndemo: {len(users)} user windows, {len(pages)} page windows, {len(dead)} dead letters "
          f"({dict(Counter(d['reason'] for d in dead))}); dataflow consumed {consumed:.0f} events")
    print("\nbusiest user windows:")
    print(f"  {'user_id':10} {'window_start':26} {'events':>6} {'views':>5} {'clicks':>6} {'pages':>5} {'sessions':>8}")
    for r in sorted(users, key=lambda r: -r["events"])[:5]:
        print(f"  {r['user_id']:10} {r['window_start']:26} {r['events']:6} {r['page_views']:5} "
              f"{r['clicks']:6} {r['unique_pages']:5} {r['sessions']:8}")
    print("\nmost viewed pages in one window:")
    print(f"  {'url':40} {'window_start':26} {'views':>5} {'events':>6} {'users':>5}")
    for r in sorted(pages, key=lambda r: -r["views"])[:5]:
        print(f"  {r['url'][:40]:40} {r['window_start']:26} {r['views']:5} {r['events']:6} {r['unique_users']:5}")
    if dead:
        print(f"\na dead letter: {json.dumps(dead[0], ensure_ascii=False)[:200]}")
    sessions = read_all(settings, settings.session_topic) if settings.sessions else []
    if sessions:
        share = lambda field: sum(r[field] for r in sessions) / len(sessions)  # noqa: E731
        print(f"\n{len(sessions)} user sessions: {share('bounce'):.0%} bounced, "
              f"{share('converted'):.0%} converted; the longest:")
        print(f"  {'user_id':10} {'session_start':26} {'seconds':>7} {'events':>6} {'pages':>5}  "
              "entry -> exit")
        for r in sorted(sessions, key=lambda r: (-r["duration_ms"], r["user_id"]))[:5]:
            print(f"  {r['user_id']:10} {r['session_start']:26} {r['duration_ms'] / 1000:7.1f} "
                  f"{r['events']:6} {r['unique_pages']:5}  {r['entry_url']} -> {r['exit_url']}")
    ok = bool(users and pages and (sessions or not settings.sessions))
    if not use_postgres:
        return 0 if ok else 1
    on_topics = {"user_metrics": len(users), "page_metrics": len(pages), "dead_letters": len(dead),
                 "user_sessions": len(sessions)}
    tables = [t for t in TABLES if settings.sessions or t != "user_sessions"]
    with psycopg.connect(DEMO_DSN, connect_timeout=5) as conn:
        rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
        top = conn.execute(TOP_PAGES_SQL).fetchall()
    print(f"\nrows in PostgreSQL (psql {DEMO_DSN}):")
    print(f"  {'table':14} {'rows':>7}   {'records on its topic':>20}")
    for table in tables:
        print(f"  {table:14} {rows[table]:7}   {on_topics[table]:20}")
    print("\ntop pages over the run (SQL on page_metrics: views summed over all windows):")
    print(f"  {'url':40} {'views':>6} {'events':>6} {'windows':>7} {'peak users':>10}")
    for url, views, events, windows, peak in top:
        print(f"  {url[:40]:40} {views:6} {events:6} {windows:7} {peak:10}")
    return 0 if ok and all(rows[t] for t in tables if t != "dead_letters") else 1


if __name__ == "__main__":
    sys.exit(main())
