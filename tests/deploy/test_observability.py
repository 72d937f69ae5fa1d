"""Prometheus config, alert rules (with promtool's own unit tests) and the Grafana dashboards.

Grafana itself cannot run here, so its JSON and provisioning are validated, every query of the
Prometheus dashboard is run against a real Prometheus in tests/integration/test_observability.py
and every query of the PostgreSQL one against a real database in
tests/integration/test_sql_dashboard.py.
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
SQL_DASHBOARD = json.loads((DEPLOY / "grafana/dashboards/clickstream-sql.json").read_text())
DATASOURCES = DEPLOY / "grafana/provisioning/datasources"
# The Grafana macros tests/integration/test_sql_dashboard.py expands (as Grafana does).
SQL_MACROS = {"__time", "__timeFilter", "__timeFrom", "__timeTo"}


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
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stdout + check.stderr
    result = promtool("test", "rules", "tests/alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_fires_it():
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]
    tests = yaml.safe_load((DEPLOY / "prometheus/tests/alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    quiet = {case["alertname"] for test in tests for case in test["alert_rule_test"] if not case["exp_alerts"]}
    names = {rule["alert"] for rule in rules}
    assert names == fired == quiet and len(names) == 7


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
        for target in panel.get("targets", []):  # a row has none
            yield panel["title"], target["expr"]
    for rule in yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"][0]["rules"]:
        yield rule["alert"], rule["expr"]


def test_dashboards_and_alerts_use_only_metrics_the_service_exposes():
    exposed = exposed_names()
    for where, expr in queries():
        for name in re.findall(r"\b(clickstream_[a-z_]+)", expr):
            assert name in exposed, (where, name)


def assert_panels_laid_out(d: dict):
    """Unique panel ids, integer grid positions inside the 24 columns, no two panels overlapping."""
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in d["panels"]:
        g = panel["gridPos"]
        assert all(isinstance(g[k], int) for k in "xywh") and 0 <= g["x"] and g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def split_rows(d: dict) -> tuple:
    """(rows, panels) of a dashboard; every row is an expanded, full-width header (its panels
    are the ones below it in the top-level list, so Grafana's row holds none), and the panels
    under the "Sessions" row are the sessions' own."""
    rows = [p for p in d["panels"] if p["type"] == "row"]
    for row in rows:
        assert row["gridPos"]["x"] == 0 and row["gridPos"]["w"] == 24 and row["gridPos"]["h"] == 1
        assert row["collapsed"] is False and row["panels"] == [] and "targets" not in row
    assert [r["title"] for r in rows] == ["Sessions"]
    below = {p["title"] for p in d["panels"]
             if p["type"] != "row" and p["gridPos"]["y"] > rows[0]["gridPos"]["y"]}
    assert below and all("session" in t.lower() or "bounce" in t.lower() for t in below), below
    return rows, [p for p in d["panels"] if p["type"] != "row"]


def test_dashboard_json_is_a_valid_provisionable_dashboard():
    d = DASHBOARD
    assert d["uid"] == "clickstream" and d["title"] and isinstance(d["schemaVersion"], int)
    assert_panels_laid_out(d)
    for panel in split_rows(d)[1]:
        assert panel["type"] in {"timeseries", "stat", "gauge", "table"}
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)) and all(t["expr"].strip() for t in panel["targets"])
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for subject in ("events in", "records out", "lag per partition", "event-time lag",
                    "emit delay", "dead letters", "per process", "sessions per minute",
                    "open sessions", "session duration", "bounce and conversion rate"):
        assert subject in titles
    exprs = " ".join(t["expr"] for p in d["panels"] for t in p.get("targets", []))
    for name in ("clickstream_sessions_emitted_total", "clickstream_sessions_open",
                 "clickstream_session_duration_seconds_bucket",
                 "clickstream_sessions_bounced_total", "clickstream_sessions_converted_total"):
        assert name in exprs


def provisioned_datasources() -> dict:
    """{uid: datasource} over every file Grafana provisions datasources from."""
    found = {}
    for path in sorted(DATASOURCES.glob("*.yml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["apiVersion"] == 1, path
        for source in doc["datasources"]:
            assert source["uid"] not in found, source["uid"]
            found[source["uid"]] = source
    return found


def test_sql_dashboard_json_is_a_valid_provisionable_dashboard():
    d = SQL_DASHBOARD
    assert d["uid"] == "clickstream-sql" != DASHBOARD["uid"]
    assert d["title"] and d["title"] != DASHBOARD["title"] and isinstance(d["schemaVersion"], int)
    assert_panels_laid_out(d)
    source = provisioned_datasources()["clickstream-postgres"]
    datasource = {"type": source["type"], "uid": "clickstream-postgres"}
    for panel in split_rows(d)[1]:
        assert panel["type"] in {"timeseries", "table", "barchart"}, panel["title"]
        assert panel["datasource"] == datasource, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            sql = target["rawSql"]
            assert sql.strip() and target["rawQuery"] is True and target["editorMode"] == "code"
            assert target.get("datasource", datasource) == datasource, panel["title"]
            assert target["format"] == ("time_series" if panel["type"] == "timeseries" else "table")
            if target["format"] == "time_series":  # Grafana wants the time column
                assert re.match(r"SELECT \$__time\(\w+\),", sql), panel["title"]
            assert set(re.findall(r"\$(\w+)\(", sql)) <= SQL_MACROS, panel["title"]
            assert "$" not in re.sub(r"\$(\w+)\(", "", sql), panel["title"]  # no template vars
            assert "ledger" not in sql and "clickstream_schema" not in sql, panel["title"]
        if panel["type"] == "barchart":
            assert panel["options"]["xField"] in sql, panel["title"]
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for subject in ("active users", "events and page views", "top pages", "events per user window",
                    "dead letters by reason", "sessions per minute", "session duration",
                    "bounce and conversion rate"):
        assert subject in titles


def test_grafana_provisioning_points_at_the_dashboard_and_datasource():
    datasource = yaml.safe_load((DATASOURCES / "prometheus.yml").read_text())
    assert datasource["apiVersion"] == 1
    assert [d["uid"] for d in datasource["datasources"]] == ["prometheus"]
    sources = provisioned_datasources()
    assert sorted(sources) == ["clickstream-postgres", "prometheus"]
    assert [uid for uid, s in sources.items() if s.get("isDefault")] == ["prometheus"]
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/clickstream.yml").read_text())
    assert provider["providers"][0]["type"] == "file"
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    # both dashboards are in the provider's folder (deploy/grafana/dashboards, mounted there)
    dashboards = (DEPLOY / "grafana/dashboards").glob("*.json")
    assert {json.loads(p.read_text())["uid"] for p in dashboards} == {"clickstream", "clickstream-sql"}


def test_postgres_datasource_reads_its_password_from_the_environment():
    source = provisioned_datasources()["clickstream-postgres"]
    # the core plugin's id since Grafana 10 (`postgres` is its alias)
    assert source["type"] == "grafana-postgresql-datasource" and source["access"] == "proxy"
    assert source["url"] == "${CLICKSTREAM_POSTGRES_ADDRESS}" and source["user"] == "clickstream"
    assert source["jsonData"]["database"] == "clickstream"
    assert source["jsonData"]["sslmode"] == "disable"
    # the password only from the environment, and only where Grafana encrypts it
    assert source["secureJsonData"] == {"password": "${CLICKSTREAM_POSTGRES_PASSWORD}"}
    assert "password" not in source and "password" not in source["jsonData"]


def test_provisioning_uses_only_environment_references_grafana_expands():
    """Grafana expands $VAR, ${VAR} and $__env{VAR} in provisioning files, with no default:
    `${VAR:-default}` looks up a variable named `VAR:-default`, i.e. yields an empty value."""
    compose = yaml.safe_load((DEPLOY / "compose/compose.yaml").read_text())
    environment = compose["services"]["grafana"]["environment"]
    for path in DATASOURCES.glob("*.yml"):
        text = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())  # values
        references = re.findall(r"\$\{([^}]*)\}", text)
        assert references, path.name
        for name in references:
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), (path.name, name)
            assert name in environment, (path.name, name, "not set for compose's Grafana")


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
