"""Prometheus config, alert rules (with promtool's own unit tests) and the Grafana dashboard.

Grafana itself cannot run here, so its JSON and provisioning are validated, and every query of
the dashboard is run against a real Prometheus in tests/integration/test_observability.py.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from clickstream.runtime.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = json.loads((DEPLOY / "grafana/dashboards/clickstream.json").read_text())


def promtool(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("promtool") is None:
        pytest.fail("promtool (Debian's prometheus package) is not installed; .ci/run installs it")
    return subprocess.run(["promtool", *args], cwd=DEPLOY / "prometheus", capture_output=True,
                          text=True, timeout=60)


def test_prometheus_config_is_valid():
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_are_valid_and_pass_their_unit_tests():
    check = promtool("check", "rules", "alerts.yml")
    assert check.returncode == 0 and "SUCCESS: 6 rules found" in check.stdout, check.stdout + check.stderr
    result = promtool("test", "rules", "tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it():
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((DEPLOY / "prometheus/tests/alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    names = {rule["alert"] for rule in rules}
    assert names == fired == quiet and len(names) == 6


def exposed_names() -> set:
    metrics = Metrics.build(CollectorRegistry())
    names = set()
    for family in [getattr(metrics, f) for f in metrics.__dataclass_fields__ if f != "watermark"]:
        for metric in family.collect():
            suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                        "gauge": ("",)}[metric.type]
            names |= {metric.name + suffix for suffix in suffixes}
    return names


def queries():
    for panel in DASHBOARD["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target["expr"]
    for rule in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]:
        yield rule["alert"], rule["expr"]


def test_dashboards_and_alerts_use_only_metrics_the_service_exposes():
    exposed = exposed_names()
    for where, expr in queries():
        for name in re.findall(r"\b(clickstream_[a-z_]+)", expr):
            assert name in exposed, (where, name)


def test_dashboard_json_is_a_valid_provisionable_dashboard():
    d = DASHBOARD
    assert d["uid"] == "clickstream" and d["title"] and isinstance(d["schemaVersion"], int)
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in d["panels"]:
        assert panel["type"] in {"timeseries", "stat", "gauge", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh") and 0 <= g["x"] and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"].strip() for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for subject in ("events in", "records out", "lag per partition", "event-time lag",
                    "emit delay", "dead letters", "per process"):
        assert subject in titles


def test_grafana_provisioning_points_at_the_dashboard_and_datasource():
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert datasource["apiVersion"] == 1
    assert [d["uid"] for d in datasource["datasources"]] == ["prometheus"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/clickstream.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_event_time_lag_follows_the_slowest_partition():
    from clickstream.runtime.progress import EventTimeWatermark

    now = [1000.0]
    watermark = EventTimeWatermark(lateness_s=10, clock=lambda: now[0])
    assert watermark.lag_seconds() == 0.0
    watermark.observe("p0", 990_000)
    watermark.observe("p1", 960_000)
    watermark.observe("p1", 950_000)  # never backwards
    assert watermark.lag_seconds() == pytest.approx(1000 - (960 - 10))
    now[0] = 1100.0
    assert watermark.lag_seconds() == pytest.approx(1100 - 950)
