"""`make demo`: the service end to end on a local broker for about half a minute.

Starts Kafka when none answers, recreates the four default topics, runs the dataflow live
(metrics on :3030) and the load generator at a steady rate, waits for the last windows to close
on idleness, prints a sample of the results and the dead-letter count, then stops everything
it started.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from clickstream.io.kafka import broker_answers, create_topics
from clickstream.tools.report import LocalPrometheus, collect, render
from clickstream.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
RATE = int(os.environ.get("DEMO_RATE", "3000"))
SECONDS = int(os.environ.get("DEMO_SECONDS", "25"))
METRICS_PORT = int(os.environ.get("BYTEWAX_DATAFLOW_API_PORT", "3030"))


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


def main() -> int:
    settings = Settings.from_env()
    started_kafka = False
    if not broker_answers(settings.brokers[0]):
        subprocess.run([str(ROOT / "scripts/kafka.sh"), "up"], check=True)
        started_kafka = True
    try:
        return run(settings)
    finally:
        if started_kafka and os.environ.get("DEMO_KEEP_KAFKA") != "1":
            subprocess.run([str(ROOT / "scripts/kafka.sh"), "down"])


def run(settings: Settings) -> int:
    flow = prometheus = None
    try:
        print(f"demo: recreating topics {settings.input_topic}, {', '.join(settings.output_topics)}")
        recreate_topics(settings)
        env = dict(os.environ, BYTEWAX_DATAFLOW_API_ENABLED="true",
                   BYTEWAX_DATAFLOW_API_PORT=str(METRICS_PORT))
        log = open(ROOT / ".local" / "demo-dataflow.log", "w")
        flow = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow", "-s", "1"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        print(f"demo: dataflow started (pid {flow.pid}); metrics at http://127.0.0.1:{METRICS_PORT}/metrics")
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
            print(f"demo: live  in {consumed / elapsed:7.0f} events/s  windows out {windows:6.0f}  lag {lag:5.0f}")
        if generator.returncode != 0:
            print("demo: the generator failed", file=sys.stderr)
            return 1
        wait = (settings.window_ms + settings.lateness_ms) / 1000 + 4
        print(f"demo: waiting {wait:.0f} s for the last windows to close on idleness")
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
    return report(settings, consumed)


def report(settings: Settings, consumed: float) -> int:
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
    return 0 if users and pages else 1


if __name__ == "__main__":
    sys.exit(main())
