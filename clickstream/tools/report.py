"""`python -m clickstream.tools.report`: the Grafana dashboard's panels as one PNG, for people without Grafana.

    python -m clickstream.tools.report --prometheus http://127.0.0.1:9090 --minutes 15 --out report.png

Runs every panel's PromQL of deploy/grafana/dashboards/clickstream.json (the same queries
Grafana would run) as range queries against Prometheus and draws them with matplotlib
(`pip install -e '.[report]'`).
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards" / "clickstream.json"
Series = List[Tuple[str, List[float], List[float]]]  # legend, times, values


def panels(dashboard: Path = DASHBOARD) -> List[dict]:
    """The dashboard's graph panels (rows only group them)."""
    return [p for p in json.loads(dashboard.read_text())["panels"] if p["type"] != "row"]


def query_range(prometheus: str, expr: str, start: float, end: float, step: float) -> list:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        body = json.load(r)
    if body.get("status") != "success":
        raise RuntimeError(f"query {expr!r} failed: {body.get('error')}")
    return body["data"]["result"]


def legend(template: str, labels: Dict[str, str]) -> str:
    text = template
    for name, value in labels.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def collect(prometheus: str, minutes: float, step: float = 5.0) -> List[Tuple[dict, Series]]:
    end = time.time()
    start = end - minutes * 60
    out = []
    for panel in panels():
        series: Series = []
        for target in panel["targets"]:
            for result in query_range(prometheus, target["expr"], start, end, step):
                points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf")]
                if points:
                    series.append((legend(target.get("legendFormat", ""), result["metric"]),
                                   [(t - end) / 60 for t, _ in points], [v for _, v in points]))
        out.append((panel, series))
    return out


def render(data: List[Tuple[dict, Series]], out: Path, title: str = "clickstream") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 3
    rows = (len(data) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (panel, series) in zip(axes.flat, data):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        ax.set_title(panel["title"], fontsize=10)
        ax.set_xlabel("minutes ago", fontsize=8)
        ax.set_ylabel({"ops": "per second", "s": "seconds"}.get(unit, ""), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        for name, times, values in series[:8]:
            ax.plot(times, values, label=name[:40], linewidth=1.2)
        if series:
            ax.legend(fontsize=6, loc="upper left")
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(data):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


class LocalPrometheus:
    """Debian's `prometheus` on loopback, scraping `targets` every second with our alert
    rules loaded; for the demo and the tests. Data lives in a temporary directory."""

    def __init__(self, targets: Sequence[str], port: int = 19090):
        self.targets = list(targets)
        self.url = f"http://127.0.0.1:{port}"
        self._port = port
        self._dir: Optional[str] = None
        self._process: Optional[subprocess.Popen] = None

    @staticmethod
    def available() -> bool:
        return shutil.which("prometheus") is not None

    def __enter__(self) -> "LocalPrometheus":
        self._dir = tempfile.mkdtemp(prefix="clickstream-prometheus-")
        rules = DASHBOARD.parents[2] / "prometheus" / "alerts.yml"
        config = Path(self._dir) / "prometheus.yml"
        config.write_text(json.dumps({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": "clickstream",
                                "static_configs": [{"targets": self.targets}]}],
        }))
        self._process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self._dir}/data",
             f"--web.listen-address=127.0.0.1:{self._port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(Path(self._dir) / "prometheus.log", "w"))
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2):
                    return self
            except OSError:
                if self._process.poll() is not None or time.time() > deadline:
                    log = (Path(self._dir) / "prometheus.log").read_text()[-2000:]
                    self.__exit__()
                    raise RuntimeError(f"prometheus did not start: {log}")
                time.sleep(0.3)

    def query(self, expr: str) -> list:
        params = urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{params}", timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"query {expr!r} failed: {body.get('error')}")
        return body["data"]["result"]

    def __exit__(self, *exc) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clickstream.tools.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--step", type=float, default=5.0, help="seconds between points")
    parser.add_argument("--out", type=Path, default=Path("clickstream-report.png"))
    args = parser.parse_args(argv)
    try:
        data = collect(args.prometheus.rstrip("/"), args.minutes, args.step)
    except (OSError, RuntimeError) as exc:
        print(f"clickstream.tools.report: {args.prometheus}: {exc}", file=sys.stderr)
        return 2
    render(data, args.out, f"clickstream, last {args.minutes:g} minutes")
    empty = [panel["title"] for panel, series in data if not series]
    print(f"wrote {args.out} ({len(data)} panels{'; no data: ' + ', '.join(empty) if empty else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
