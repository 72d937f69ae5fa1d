"""Sustainable live rate: the highest input rate a system holds, live, for a trial's length.

A trial runs one system on fresh topics, unbounded, and feeds it the generator at a fixed
rate with event time = now (`clickstream.generate --rate`). The judge is the same for every
system, and outside all of them: a read_committed consumer on the window outputs notes when
each record became readable. A window [s, s + W) may close once an event at s + W + L has
arrived, which live is wall-clock s + W + L, so a record's end-to-end latency is

    readable at - (s + W + L)

It includes everything a dashboard user waits for: input lag, processing, the window's own
close rule, and the output's commit. A trial passes when

* the generator held the rate (at least RATE_HELD of it; otherwise the generator is the
  limit and the trial says so instead of a verdict on the system),
* the p99 of that latency over the windows closing from WARMUP_S after the generator started
  to its end is under P99_LIMIT_S, and
* the lag stayed bounded: the windows closing in the last TAIL_S are held to the same p99 (a
  system falling behind shows there first),
* and every window that closes in the judged span (the input, read back after the trial, has
  an event in it) was readable by the end of the drain, with the input's count of events (a
  lost one counts as infinitely late in the percentiles; a lost or wrong one fails the trial
  on its own). The input is in order (BENCH_LIVE_DISORDER, default 0), so no event is late
  for any system: a window that lacks events lost them.

The search doubles the rate from a start while trials hold (or halves it while they fail),
then bisects between the last pass and the first fail, `bisections` times.

Before the generator starts, a trickle of ping events (one per input partition every
PING_EVERY_S) runs until the first output record is readable: the system is up end to end,
whatever its start-up costs, and its start-up is not part of the trial.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.outputs import event_ms, records
from bench.systems import (LATENESS_MS, LOGS, PY, ROOT, WINDOW_MS, finite, job_env, job_topics,
                           prepare)

RESULTS = ROOT / "bench" / "results"

TRIAL_S = 120
WARMUP_S = 20  # the pings' last windows close by 15 s after the generator's start
TAIL_S = 30
P99_LIMIT_S = 1.0
RATE_HELD = 0.97
USERS = 20_000
DISORDER = float(os.environ.get("BENCH_LIVE_DISORDER", "0"))
PING_EVERY_S = 0.2
READY_TIMEOUT_S = 240
FLOOR = 500  # the search's lowest rate
INPUT_PARTITIONS = 4
CLOSE_S = (WINDOW_MS + LATENESS_MS) / 1000


@dataclass
class LiveSystem:
    name: str
    command: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    recovery: bool = False  # ours: a fresh recovery store per trial
    setup: Optional[str] = None  # a peer's setup script
    unavailable: Optional[str] = None  # why it cannot run, once setup failed (systems.prepare)


def ours(processes: int, snapshot_s: int) -> LiveSystem:
    name = f"ours, {processes} process{'es' if processes > 1 else ''}"
    return LiveSystem(name, [PY, "-m", "clickstream.cluster", "--processes", str(processes),
                             "--snapshot", str(snapshot_s)], recovery=True)


def peer(name: str, label: str) -> LiveSystem:
    venv_python = str(ROOT / ".local" / "bench" / name / "venv" / "bin" / "python")
    return LiveSystem(label, [venv_python, f"bench/peers/{name}/job.py"], {"BENCH_LIVE": "1"},
                      setup=f"bench/peers/{name}/setup.sh")


def all_live(snapshot_s: int) -> List[LiveSystem]:
    return [ours(1, snapshot_s), ours(2, snapshot_s), peer("flink", "flink sql"),
            peer("kstreams", "kafka streams")]


@dataclass
class Trial:
    rate: int
    ok: bool
    why: str
    held_rate: Optional[float] = None  # what the generator achieved, messages/s
    records: int = 0  # judged window records
    p50_s: Optional[float] = None
    p99_s: Optional[float] = None
    tail_p99_s: Optional[float] = None
    missing: int = 0  # windows closing in the judged span, not readable by the end of the drain
    wrong: int = 0  # windows readable with another count of events than the input holds
    ready_s: Optional[float] = None  # start-up: from launch to the first readable record


def percentile(values: List[float], q: float) -> Optional[float]:
    """The nearest-rank percentile (no interpolation: an observed latency)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def judge(rate: int, seen: Dict[tuple, tuple], expected: Dict[tuple, int], began: float,
          ended: float, held_rate: Optional[float]) -> Trial:
    """The verdict on one trial from `seen` {(output, key, window start ms): (readable at,
    its events count)} and `expected` {(output, key, window start ms): the input's events}."""
    if held_rate is None or held_rate < RATE_HELD * rate:
        return Trial(rate, False, f"the generator held only {held_rate or 0:,.0f} of {rate:,}/s: "
                     "it is the limit here, not the system", held_rate)
    first, last = began + WARMUP_S, ended
    latencies, tail = [], []
    missing = wrong = 0
    for window, events in expected.items():
        closes = window[2] / 1000 + CLOSE_S
        if first <= closes <= last:
            readable, counted = seen.get(window, (None, None))
            if readable is None:
                missing += 1
            elif counted != events:
                wrong += 1
            latency = math.inf if readable is None else readable - closes
            latencies.append(latency)
            if closes > last - TAIL_S:
                tail.append(latency)
    trial = Trial(rate, False, "", held_rate, len(latencies), percentile(latencies, 0.5),
                  percentile(latencies, 0.99), percentile(tail, 0.99), missing, wrong)
    if not latencies or not tail:
        trial.why = "no windows closed in the judged span"
    elif missing or wrong:  # before the p99s, which missing windows make infinite
        trial.why = f"{missing:,} windows never readable, {wrong:,} with wrong counts"
    elif trial.p99_s >= P99_LIMIT_S:
        trial.why = f"p99 {trial.p99_s:.2f} s"
    elif trial.tail_p99_s >= P99_LIMIT_S:
        trial.why = f"p99 of the last {TAIL_S} s {trial.tail_p99_s:.2f} s: falling behind"
    else:
        trial.ok, trial.why = True, "held"
    return trial


def input_windows(brokers: str, topic: str) -> Dict[tuple, int]:
    """{(output, key, window start ms): events} of the events on `topic`, read to its end."""
    windows: Dict[tuple, int] = {}
    get = windows.get
    for event in records(brokers, topic):
        ts = event_ms(event["ts"])
        start = ts - ts % WINDOW_MS
        for window in (("user", event["user_id"], start), ("page", event["url"], start)):
            windows[window] = get(window, 0) + 1
    return windows


class Readable(threading.Thread):
    """Notes when each window record of `topics` becomes readable (read_committed)."""

    def __init__(self, brokers: str, topics: Dict[str, str]):
        """`topics`: {"user": topic, "page": topic}."""
        super().__init__(daemon=True)
        self._kinds = {topic: (kind, "user_id" if kind == "user" else "url")
                       for kind, topic in topics.items()}
        self.seen: Dict[tuple, tuple] = {}  # window -> (readable at, its events count)
        self.first_at: Optional[float] = None
        self._halt = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": brokers, "group.id": "bench-live-judge",
                                   "enable.auto.commit": False,
                                   "isolation.level": "read_committed",
                                   "fetch.wait.max.ms": 20})
        self._consumer.assign([TopicPartition(t, p, 0) for t in topics.values() for p in (0, 1)])

    def run(self) -> None:
        seen, consume, kinds = self.seen, self._consumer.consume, self._kinds
        while not self._halt.is_set():
            messages = consume(5000, 0.05)
            now = time.time()
            for msg in messages:
                if msg.error() is not None:
                    continue
                value = orjson.loads(msg.value())
                start = value.get("window_start")
                if start is None:
                    continue
                kind, field_ = kinds[msg.topic()]
                key = (kind, value.get(field_), event_ms(start))
                if key not in seen:  # a repeat (at-least-once peers) does not make it later
                    seen[key] = (now, value.get("events"))
                if self.first_at is None:
                    self.first_at = now

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self._consumer.close()


def held_rate(output: str) -> Optional[float]:
    """Delivered messages per second, from the generator's summary line (its own clock, from
    its first message: not its start-up)."""
    found = re.findall(r"delivered=(\d+) failed=\d+ elapsed=([\d.]+)s", output)
    if not found:
        return None
    delivered, elapsed = found[-1]
    return int(delivered) / float(elapsed) if float(elapsed) > 0 else None


def _ping_until_ready(brokers: str, topic: str, judge_: Readable, process: subprocess.Popen,
                      timeout_s: float) -> None:
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
    deadline = time.time() + timeout_s
    try:
        while judge_.first_at is None:
            if process.poll() is not None:
                raise RuntimeError(f"it exited with status {process.returncode} during start-up")
            if time.time() > deadline:
                raise RuntimeError(f"no output record within {timeout_s:.0f} s of its start")
            now_ms = int(time.time() * 1000)
            for p in range(INPUT_PARTITIONS):
                user = f"ping-{p}"
                producer.produce(topic, orjson.dumps({
                    "user_id": user, "event_type": "page_view", "url": "/ping", "ts": now_ms,
                    "session_id": "ping"}), user.encode(), partition=p)
            producer.poll(0)
            time.sleep(PING_EVERY_S)
    finally:
        producer.flush(10)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the system's whole process group (a JVM it started too), then SIGKILL."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


def trial(system: LiveSystem, brokers: str, rate: int, seconds: int, snapshot_s: int) -> Trial:
    tag = uuid.uuid4().hex[:8]
    with job_topics(brokers, "bench-live", tag, INPUT_PARTITIONS) as topics:
        return _trial(system, brokers, rate, seconds, snapshot_s, tag, topics)


def _trial(system: LiveSystem, brokers: str, rate: int, seconds: int, snapshot_s: int, tag: str,
           topics: Dict[str, str]) -> Trial:
    group = f"bench-live-{tag}"
    env = job_env(brokers, topics, group, BENCH_SESSION_TOPIC="",
                  BENCH_EVENTS=0, BENCH_TIMING_FILE=os.devnull, **system.env)
    LOGS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"bench-live-{tag}-", dir=ROOT / ".local" / "bench"))
    command = list(system.command)
    if system.recovery:
        command += ["--recovery", str(work / "recovery")]
    judge_ = Readable(brokers, {"user": topics["user"], "page": topics["page"]})
    judge_.start()
    log = open(LOGS / f"live-{tag}.log", "w")
    launched = time.time()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        try:
            _ping_until_ready(brokers, topics["in"], judge_, process, READY_TIMEOUT_S)
        except RuntimeError as exc:
            return Trial(rate, False,
                         f"did not start: {exc} (see .local/bench/logs/live-{tag}.log)")
        ready_s = judge_.first_at - launched
        began = time.time()
        generator = subprocess.run(
            [PY, "-m", "clickstream.generate", "--rate", str(rate), "--count", str(rate * seconds),
             "--users", str(USERS), "--seed", "11", "--out-of-order-fraction", str(DISORDER),
             "--topic", topics["in"], "--brokers", brokers],
            cwd=ROOT, capture_output=True, text=True)
        ended = time.time()
        if generator.returncode != 0:
            return Trial(rate, False, "the generator failed: " + generator.stderr.strip()[-300:])
        held = held_rate(generator.stdout + generator.stderr) or rate * seconds / (ended - began)
        # The drain: a window closing at the very end has had W + L of event time behind it
        # already; it needs its close rule's last step and a commit.
        time.sleep(P99_LIMIT_S + 2 * snapshot_s + 2)
        exited = process.poll()
    finally:
        _stop(process)
        judge_.stop()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    if exited is not None:
        return Trial(rate, False, f"it exited with status {exited} during the trial", held)
    result = judge(rate, judge_.seen, input_windows(brokers, topics["in"]), began, ended, held)
    result.ready_s = round(ready_s, 1)
    return result


def search(system: LiveSystem, brokers: str, start: int, seconds: int = TRIAL_S,
           bisections: int = 3, snapshot_s: int = 5, report=print) -> dict:
    """The highest rate that held: from `start`, doubling while trials hold (or halving while
    they fail, down to FLOOR), then `bisections` bisections between the last rate that held
    and the first that failed. A rate the generator could not hold counts as failed."""
    trials: List[Trial] = []

    def attempt(rate: int) -> bool:
        t = trial(system, brokers, rate, seconds, snapshot_s)
        trials.append(t)
        report(f"live: {system.name} at {rate:,}/s: {'held' if t.ok else 'FAILED'} ({t.why}; "
               f"p50 {_s(t.p50_s)}, p99 {_s(t.p99_s)}, last {TAIL_S} s p99 {_s(t.tail_p99_s)}, "
               f"{t.records:,} window records, ready in {_s(t.ready_s)})")
        return t.ok

    good, bad = None, None
    if attempt(start):
        good = start
        while bad is None:
            if attempt(good * 2):
                good *= 2
            else:
                bad = good * 2
    else:
        bad = start
        while good is None and bad // 2 >= FLOOR:
            if attempt(bad // 2):
                good = bad // 2
            else:
                bad //= 2
    for _ in range(bisections if good else 0):
        middle = int(round((good + bad) / 2, -2))
        if middle in (good, bad):
            break
        if attempt(middle):
            good = middle
        else:
            bad = middle
    return {"system": system.name, "rate": good, "first_failed": bad, "seconds": seconds,
            "trials": [asdict(t) for t in trials]}


def _s(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f} s"


def main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="systems by exact name (default: all)")
    parser.add_argument("--start", type=int, default=5000, help="the first rate, messages/s")
    parser.add_argument("--seconds", type=int, default=TRIAL_S)
    parser.add_argument("--bisections", type=int, default=3)
    parser.add_argument("--snapshot", type=int, default=5)
    parser.add_argument("--brokers", default=os.environ.get("CLICKSTREAM_BROKERS", "127.0.0.1:9092"))
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="writes live-<time>.json here")
    args = parser.parse_args(argv)
    systems = [s for s in all_live(args.snapshot) if not args.only or s.name in args.only]
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = args.results / f"live-{when.replace(':', '')}.json"
    results = []
    for system in systems:
        prepare(system)
        if system.unavailable:
            print(f"{system.name}: NOT RUN: {system.unavailable}", flush=True)
            continue
        results.append(search(system, args.brokers, args.start, args.seconds, args.bisections,
                              args.snapshot, report=lambda line: print(line, flush=True)))
        args.results.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(finite({"when": when, "machine": {"cores": os.cpu_count()},
                                           "live_rate": results}), indent=1) + "\n")
    for r in results:
        print(f"{r['system']}: {r['rate'] or 0:,}/s held for {r['seconds']} s; "
              f"{r['first_failed'] or 0:,}/s failed")
    print(f"written: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
