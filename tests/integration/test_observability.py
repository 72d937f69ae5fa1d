"""Metrics of a live dataflow: exact values against the topics, the consumer group seen by
Kafka's own tool, and every dashboard panel's query answered by a real Prometheus."""

import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from clickstream.tools.report import LocalPrometheus, collect, panels, render
from tests.integration.kafka_io import ROOT, read_topic, start_dataflow, stop, wait_for
from tests.integration.oracle import expected_outputs

pytestmark = pytest.mark.integration

METRICS_PORT = 3097


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
    env = topics.env(BYTEWAX_DATAFLOW_API_ENABLED="true", BYTEWAX_DATAFLOW_API_PORT=METRICS_PORT,
                     CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=1)
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
                for target in panel["targets"]:
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
        time.sleep(2)  # the last epoch's commit
        samples = scrape()
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
