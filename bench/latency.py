"""Emit latency of ours, live: the generator at a fixed rate (event time = now), the dataflow
with recovery and exactly-once as in the throughput runs, and our own histogram
`clickstream_window_emit_delay_seconds` read at the end: from the moment a window may close to
the moment its record is readable (its transaction committed), per record. Quantiles are
interpolated within the histogram's buckets, as Prometheus' histogram_quantile does.
"""

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from typing import Dict, List, Optional, Tuple

from bench.systems import LATENESS_MS, ROOT, WINDOW_MS, job_env, job_topics

SECONDS = 40
METRICS_PORT = 3030
HISTOGRAM = "clickstream_window_emit_delay_seconds"


def buckets(text: str) -> List[Tuple[float, float]]:
    """Cumulative (upper bound, count) of the histogram, summed over its `output` labels."""
    sums: Dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(HISTOGRAM + "_bucket{"):
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            sums[bound] = sums.get(bound, 0.0) + float(value)
    return sorted(sums.items())


def quantile(q: float, cumulative: List[Tuple[float, float]]) -> Optional[float]:
    if not cumulative or cumulative[-1][1] == 0:
        return None
    rank = q * cumulative[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower_bound, lower_count = bound, count
    return None


def measure(brokers: str, rate: int, snapshot_s: int, extra_env: Optional[dict] = None) -> dict:
    tag = uuid.uuid4().hex[:8]
    # Sessions on, as by default (and the service's default gap and max): a fresh topic for them.
    with job_topics(brokers, "bench-live", tag) as topics:
        return _measure(brokers, rate, snapshot_s, extra_env, tag, topics)


def _measure(brokers: str, rate: int, snapshot_s: int, extra_env: Optional[dict], tag: str,
             topics: Dict[str, str]) -> dict:
    env = job_env(brokers, topics, f"bench-live-{tag}",
                  **(extra_env or {}))
    store = tempfile.mkdtemp(prefix="bench-live-", dir=ROOT / ".local" / "bench")
    log = open(ROOT / ".local" / "bench" / "logs" / f"live-{tag}.log", "w")
    flow = subprocess.Popen([sys.executable, "-m", "clickstream.cluster", "--processes", "1",
                             "--recovery", store, "--snapshot", str(snapshot_s),
                             "--metrics-port", str(METRICS_PORT)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_for_metrics()
        subprocess.run([sys.executable, "-m", "clickstream.generate", "--rate", str(rate),
                        "--count", str(rate * SECONDS), "--users", "20000", "--seed", "11",
                        "--out-of-order-fraction", "0.05", "--topic", topics["in"],
                        "--brokers", brokers], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        # Let idle closing emit the last windows (W + L of caught-up time, and a snapshot).
        time.sleep((WINDOW_MS + LATENESS_MS) / 1000 + 2 * snapshot_s + 3)
        cumulative = buckets(_scrape())
    finally:
        flow.terminate()
        flow.wait(30)
        log.close()
        shutil.rmtree(store, ignore_errors=True)
    p50, p99 = quantile(0.5, cumulative), quantile(0.99, cumulative)
    return {"rate": rate, "seconds": SECONDS, "windows": int(cumulative[-1][1]) if cumulative else 0,
            "p50_ms": p50 * 1000 if p50 is not None else None,
            "p99_ms": p99 * 1000 if p99 is not None else None,
            "method": f"{HISTOGRAM}, interpolated in buckets, -s {snapshot_s}",
            "buckets": cumulative[:-1]}


def _scrape() -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
        return r.read().decode()


def _wait_for_metrics(timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            _scrape()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the live dataflow did not come up (no metrics on port 3030)")
