"""Metrics of a live dataflow: exact values against the topics, the consumer group seen by
Kafka's own tool, and every dashboard panel's query answered by a real Prometheus."""

import json
import math
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from clickstream.runtime.metrics import Metrics
from clickstream.tools.report import DASHBOARD, LocalPrometheus, collect, panels, render
from tests.integration.kafka_io import ROOT, read_topic, start_dataflow, stop, wait_for
from tests.integration.oracle import expected_outputs

pytestmark = pytest.mark.integration

METRICS_PORT = 3097
SESSIONS_METRICS_PORT = 3098


def scrape() -> dict:
    """{(name, frozenset(labels)): value} of the dataflow's endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and set(labels.items()) <= set(ls))


def generate(topics, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clickstream.generate", "--topic", topics.input,
                           "--brokers", topics.brokers, *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_metrics_consumer_group_and_dashboard_queries_on_a_live_run(topics, tmp_path):
    if not LocalPrometheus.available():
        pytest.fail("Debian's prometheus is not installed (.ci/run installs it)")
    # Sessions of at most 2 s (W + L), so that they are emitted during the run.
    env = topics.env(BYTEWAX_DATAFLOW_API_ENABLED="true", BYTEWAX_DATAFLOW_API_PORT=METRICS_PORT,
                     CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=1,
                     CLICKSTREAM_SESSION_GAP_SECONDS=1, CLICKSTREAM_SESSION_MAX_SECONDS=2)
    flow = start_dataflow(env, "-s", "1", log=tmp_path / "flow.log")
    try:
        with LocalPrometheus([f"127.0.0.1:{METRICS_PORT}"]) as prometheus:
            # Live traffic for ~25 s, late and malformed events included.
            traffic = generate(topics, "--count", "6000", "--rate", "250", "--users", "50",
                               "--seed", "21", "--late-fraction", "0.02",
                               "--malformed-fraction", "0.02")
            assert traffic.returncode == 0, traffic.stderr
            # Every panel of the dashboard returns data from Prometheus's HTTP API.
            for panel in panels():
                for target in panel.get("targets", []):  # a row has none
                    assert prometheus.query(target["expr"]), (panel["title"], target["expr"])
            data = collect(prometheus.url, minutes=1, step=2)
            assert all(series for _, series in data), [p["title"] for p, s in data if not s]
            render(data, tmp_path / "report.png")
            assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            # No alert fires on this healthy run.
            assert prometheus.query('ALERTS{alertstate="firing"}') == []

        # Once idle closing has emitted everything, the counters equal what is on the topics.
        inputs = read_topic(topics.brokers, topics.input)
        expected = expected_outputs(inputs, topics.input, 1000, 1000)

        def settled():
            samples = scrape()
            return value(samples, "clickstream_windows_emitted_total", output="page") == len(
                expected.page) and samples

        samples = wait_for(settled, timeout=60, what="every window to be emitted")
        kinds = dict(re.findall(r"(\w+)=(\d+)", traffic.stderr.splitlines()[-1]))
        assert value(samples, "clickstream_events_consumed_total") == len(inputs) == 6000
        assert value(samples, "clickstream_events_malformed_total") == int(kinds["malformed"]) > 0
        assert value(samples, "clickstream_events_late_total") == sum(
            d["reason"] == "late" for d in expected.dead.values())
        assert value(samples, "clickstream_windows_emitted_total", output="user") == len(expected.user)
        # Nothing is an hour behind here, so every user and url seen is still held.
        assert value(samples, "clickstream_keys", stage="user") == len({u for u, _ in expected.user})
        assert value(samples, "clickstream_keys", stage="page") == len({u for u, _ in expected.page})
        assert value(samples, "clickstream_keys_expired_total", stage="user") == 0
        assert value(samples, "clickstream_recovery_store_bytes") == 0  # recovery is off
        emitted = value(samples, "clickstream_sessions_emitted_total")
        assert emitted > 0 and value(samples, "clickstream_session_duration_seconds_count") > 0
        assert value(samples, "clickstream_sessions_bounced_total") <= emitted
        assert value(samples, "clickstream_sessions_converted_total") <= emitted
        idle = value(samples, "clickstream_idle_clock_seconds_total")
        time.sleep(2)  # the last epoch's commit
        samples = scrape()
        # The input is idle now, so the idle clock (which closed the last windows) runs on.
        assert value(samples, "clickstream_idle_clock_seconds_total") > idle + 1.0 > 1.0
        for topic, count in ((topics.user, len(expected.user)), (topics.page, len(expected.page)),
                             (topics.dlq, len(expected.dead))):
            assert value(samples, "clickstream_records_produced_total", topic=topic) == count
            assert len(read_topic(topics.brokers, topic)) == count
        assert value(samples, "clickstream_produce_errors_total") == 0
        delay_count = value(samples, "clickstream_window_emit_delay_seconds_count", output="user")
        assert delay_count == len(expected.user)
        assert value(samples, "clickstream_window_emit_delay_seconds_bucket", output="user",
                     le="10.0") == delay_count  # every emit within 10 s of its window closing
        for partition in (0, 1):
            assert value(samples, "clickstream_consumer_lag", topic=topics.input,
                         partition=str(partition)) == 0
        assert 0 < value(samples, "clickstream_event_time_lag_seconds") < 120
        assert value(samples, "bytewax_flat_map_batch_duration_seconds_count") > 0  # bytewax's own

        # The offsets of the last snapshot are in the consumer group, for standard lag tools.
        admin = AdminClient({"bootstrap.servers": topics.brokers})
        from confluent_kafka import ConsumerGroupTopicPartitions

        future = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("clickstream")])
        committed = {tp.partition: tp.offset for tp in future["clickstream"].result().topic_partitions
                     if tp.topic == topics.input}
        ends = {m.partition: m.offset + 1 for m in inputs}
        assert committed == {p: ends.get(p, 0) for p in (0, 1)}
        describe = subprocess.run(
            ["java", "-cp", str(ROOT / ".local/kafka/libs/*"),
             "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
             "--bootstrap-server", topics.brokers, "--describe", "--group", "clickstream"],
            capture_output=True, text=True, timeout=60)
        rows = [line.split() for line in describe.stdout.splitlines() if topics.input in line]
        assert len(rows) == 2, describe.stdout + describe.stderr
        assert all(row[5] == "0" for row in rows), describe.stdout  # LAG column
    finally:
        stop(flow)
    assert json.loads(read_topic(topics.brokers, topics.user)[0].value)["events"] >= 1


def test_the_sessions_panels_compute_their_rates_and_quantiles():
    """The Sessions row's queries on a real Prometheus, against metrics of known values."""
    if not LocalPrometheus.available():
        pytest.fail("Debian's prometheus is not installed (.ci/run installs it)")
    dashboard = json.loads(DASHBOARD.read_text())
    row = next(p for p in dashboard["panels"] if p["type"] == "row" and p["title"] == "Sessions")
    targets = {(p["title"], t["legendFormat"]): t["expr"] for p in dashboard["panels"]
               if p["gridPos"]["y"] > row["gridPos"]["y"] for t in p["targets"]}
    class Current:
        """Serves one registry, swapped whole: a scrape never sees half of a change (a rate
        over a scrape taken mid-change sees only part of the observations)."""

        def __init__(self, registry):
            self.registry = registry

        def collect(self):
            return self.registry.collect()

    current = Current(CollectorRegistry())
    Metrics.build(current.registry)
    served = CollectorRegistry()
    served.register(current)
    server, thread = start_http_server(SESSIONS_METRICS_PORT, "127.0.0.1", served)
    try:
        with LocalPrometheus([f"127.0.0.1:{SESSIONS_METRICS_PORT}"], port=19091) as prometheus:
            def scraped(expr):
                return wait_for(lambda: [float(r["value"][1]) for r in prometheus.query(expr)],
                                timeout=30, what=expr)

            # before any session: the series exist (0, or NaN where nothing was observed)
            assert scraped(targets[("Open sessions", "open")]) == [0.0]
            assert scraped(targets[("Sessions per minute", "sessions / min")]) == [0.0]
            assert math.isnan(scraped(targets[("Session duration (median, p90)", "median")])[0])
            # 40 sessions: 10 bounces, 20 conversions; 19 of 5 s, 18 of 45 s, 3 of 2000 s
            after = CollectorRegistry()
            metrics = Metrics.build(after)
            metrics.sessions_open.set(7)
            metrics.sessions_emitted.inc(40)
            metrics.sessions_bounced.inc(10)
            metrics.sessions_converted.inc(20)
            for seconds, count in ((5, 19), (45, 18), (2000, 3)):
                for _ in range(count):
                    metrics.session_duration.observe(seconds)
            current.registry = after

            def value(title, legend):
                result = scraped(targets[(title, legend)])
                assert len(result) == 1, (title, legend, result)
                return result[0]

            wait_for(lambda: value("Open sessions", "open") == 7, timeout=30, what="open")
            time.sleep(3)  # a few scrapes after the change
            assert value("Sessions per minute", "sessions / min") > 0
            assert value("Bounce and conversion rate", "bounce rate") == pytest.approx(0.25)
            assert value("Bounce and conversion rate", "conversion rate") == pytest.approx(0.5)
            # histogram_quantile interpolates within the bucket holding the rank; ranks 20 and
            # 36 of 40 fall inside the (30, 60] bucket (ranks 20..37), never on a bucket's
            # edge, where the rates' rounding would pick either neighbour (1800 s, once)
            assert value("Session duration (median, p90)", "median") == pytest.approx(30 + 30 / 18)
            assert value("Session duration (median, p90)", "p90") == pytest.approx(30 + 30 * 17 / 18)
            assert set(targets) == {
                ("Sessions per minute", "sessions / min"), ("Open sessions", "open"),
                ("Session duration (median, p90)", "median"),
                ("Session duration (median, p90)", "p90"),
                ("Bounce and conversion rate", "bounce rate"),
                ("Bounce and conversion rate", "conversion rate")}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
