"""How each benchmarked system is started, and one timed run of it.

Every system reads the same pre-loaded input topic in bounded mode and writes to fresh output
topics; Python jobs time their first and last consumed record in-process (`bench.timing`),
the JVM jobs (Flink SQL, Kafka Streams) commit their offsets every 100 ms and are timed from
the group's committed offsets, polled here (`offsets_timing`).
"""

import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import psycopg
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from clickstream.io.kafka import wait_until_served

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
LOGS = ROOT / ".local" / "bench" / "logs"
WINDOW_MS, LATENESS_MS = 5000, 10000
# Sessions (sessions-contract.md): the gap, by the generator mode of the bench input.
# - default input: 30 s, not the service's 1800 s. That input holds 1000 events per second of
#   event time spread over 20,000 users (1M events span ~1000 s), so with 1800 s no session
#   would close before the end of the input and a run would measure only their accumulation,
#   never their emission while records flow; at 30 s busy users' sessions close and reopen all
#   through the run and quiet users' close behind them (1M events: 94 % close before the end).
# - visits input: 1800 s, the service's default. There people think ~20 s between pages and
#   pause around the gap between visits (the generator's visit_gap_seconds, set to the same
#   value), and 20,000 people make ~17 events per second of event time (1M events span ~16 h;
#   96 % of the sessions close before the end), so sessions end all through the run for the
#   reason they end in production.
# BENCH_SESSION_GAP_SECONDS overrides either.
SESSION_GAPS_MS = {"default": 30_000, "visits": 1_800_000}
# The max split: Flink SQL's SESSION window has none. The harness sets the bench's max
# (`session_max_ms`) above the input's event-time span, so that no session can reach it and
# both agree; never below the service's default of 86,400 s.
SESSION_MAX_MS = 86_400_000
DAY_MS = 86_400_000


def session_gap_ms(input_kind: str) -> int:
    gap_s = os.environ.get("BENCH_SESSION_GAP_SECONDS")
    return round(float(gap_s) * 1000) if gap_s else SESSION_GAPS_MS[input_kind]


def session_max_ms(span_ms: int) -> int:
    """A max no session of an input spanning `span_ms` of event time can reach: whole days."""
    return max(SESSION_MAX_MS, (span_ms // DAY_MS + 1) * DAY_MS)


@dataclass
class System:
    name: str
    command: List[str]
    env: Dict[str, str] = field(default_factory=dict)
    outputs: tuple = ("user", "page")  # which outputs it writes, for the check ("session" too)
    setup: Optional[str] = None  # a peer's setup script
    recovery: bool = False  # ours: a fresh recovery store per run (-r/-s/-b via the cluster)
    unavailable: Optional[str] = None  # why it cannot run, once setup failed
    offsets_timing: bool = False  # timed from its group's committed offsets (a JVM job)


PER_EPOCH = "per-epoch commits"  # CLICKSTREAM_COMMIT_INTERVAL_SECONDS=0, the default before 0.1


POSTGRES = "postgres"  # the PostgreSQL output instead of Kafka's (scripts/pg.sh's server)
# The server (scripts/pg.sh's by default); BENCH_POSTGRES_DSN points elsewhere (e.g. a second
# server on another PG_PORT), ending in "/": a fresh database name is appended per run.
POSTGRES_DSN = os.environ.get("BENCH_POSTGRES_DSN", "postgresql://clickstream@127.0.0.1:15432/")


SESSIONS_OFF = "sessions off"  # CLICKSTREAM_SESSION_TOPIC empty; every other row of ours has them on


def ours(processes: int, snapshot_s: int, delivery: str = "exactly-once",
         commits: str = "", output: str = "kafka", sessions: bool = True) -> System:
    name = f"ours, {processes} process{'es' if processes > 1 else ''}"
    if delivery != "exactly-once":
        name += f", {delivery}"
    env = {"CLICKSTREAM_DELIVERY": delivery, "CLICKSTREAM_BOUNDED": "1"}
    outputs = ("user", "page", "session")
    if not sessions:
        name += f", {SESSIONS_OFF}"
        env["CLICKSTREAM_SESSION_TOPIC"] = ""  # run_once gives the others a fresh topic
        outputs = ("user", "page")
    if output == POSTGRES:
        name += ", postgres output"
        env["CLICKSTREAM_OUTPUTS"] = POSTGRES
    if commits == PER_EPOCH:
        name += f", {PER_EPOCH}"
        env["CLICKSTREAM_COMMIT_INTERVAL_SECONDS"] = "0"
    return System(name, [PY, "-m", "clickstream.cluster", "--processes", str(processes),
                         "--snapshot", str(snapshot_s), "--flow", "bench.timed_ours:flow"],
                  env, outputs=outputs, recovery=True)


def peer(name: str, label: str, outputs=("user", "page"), offsets_timing=False) -> System:
    """A peer (bench/peers/CONTRACT.md); with "session" in `outputs` it is given
    BENCH_SESSION_TOPIC and writes sessions too; `offsets_timing` when it writes
    {"method": "offsets"} and is timed from its group's committed offsets."""
    venv_python = str(ROOT / ".local" / "bench" / name / "venv" / "bin" / "python")
    return System(label, [venv_python, f"bench/peers/{name}/job.py"], outputs=outputs,
                  setup=f"bench/peers/{name}/setup.sh", offsets_timing=offsets_timing)


def all_systems(snapshot_s: int) -> List[System]:
    return [
        System("limit (bare consumer + orjson)", [PY, "-m", "bench.limit"], outputs=()),
        System("limit, 2 processes", [PY, "-m", "bench.limit", "--processes", "2"], outputs=()),
        System("naive bytewax", [PY, "-m", "bytewax.run", "bench.naive_bytewax:flow"],
               outputs=("user",)),
        ours(1, snapshot_s),
        ours(1, snapshot_s, sessions=False),  # beside the row above: the sessions' cost
        ours(2, snapshot_s),
        ours(1, snapshot_s, "at-least-once"),
        ours(1, snapshot_s, commits=PER_EPOCH),
        ours(1, snapshot_s, output=POSTGRES),
        peer("quix", "quix streams"),
        peer("flink", "flink sql", offsets_timing=True),
        peer("flink", "flink sql with sessions", outputs=("user", "page", "session"),
             offsets_timing=True),
        peer("kstreams", "kafka streams", offsets_timing=True),
        peer("pathway", "pathway"),
    ]


def prepare(system: System) -> None:
    """Run a peer's setup once; a failure makes the system unavailable, with the reason."""
    if system.setup is None:
        return
    done = subprocess.run(["bash", system.setup], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout or "setup failed").strip().splitlines()
        system.unavailable = lines[-1] if lines else "setup failed"


def delete_topics(brokers: str, names) -> None:
    """Drop a job's topics once nothing reads them again: left behind, one `make bench` kept
    gigabytes on the broker's disk (25 GB had piled up by 2026-11-30)."""
    names = list(names)
    if not names:
        return
    admin = AdminClient({"bootstrap.servers": brokers})  # kept alive until the futures are done
    for name, future in admin.delete_topics(names).items():
        try:
            future.result(timeout=30)
        except Exception as exc:  # gone already, or the broker is busy: the data stays, say so
            print(f"bench: could not delete topic {name}: {exc}", file=sys.stderr)


JOB_TOPICS = ("in", "user", "page", "dlq", "session")


@contextmanager
def job_topics(brokers: str, prefix: str, tag: str, input_partitions: int = 4):
    """A job's topics, {kind: name} for each of JOB_TOPICS (`<prefix>-<kind>-<tag>`, outputs
    with 2 partitions), created for the job and deleted after it, whatever its end."""
    topics = {kind: f"{prefix}-{kind}-{tag}" for kind in JOB_TOPICS}
    create_topics(brokers, {name: input_partitions if kind == "in" else 2
                            for kind, name in topics.items()})
    try:
        yield topics
    finally:
        delete_topics(brokers, topics.values())


def create_topics(brokers: str, names: Dict[str, int]) -> None:
    """Topics that keep everything: Quix stamps its records with event time (2026-01-01 here),
    which the default 7-day retention would delete in the middle of a run."""
    admin = AdminClient({"bootstrap.servers": brokers})
    new = [NewTopic(n, p, 1, config={"retention.ms": "-1"}) for n, p in names.items()]
    for future in admin.create_topics(new).values():
        future.result(timeout=30)
    wait_until_served(admin, names, 30)  # as before, a job on topics not ready yet says so itself


def end_offsets(brokers: str, topic: str) -> Dict[int, int]:
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "bench-offsets"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
    finally:
        consumer.close()


class OffsetPoller(threading.Thread):
    """First time the group's committed offsets move, and first time they reach the end."""

    def __init__(self, brokers: str, group: str, topic: str, ends: Dict[int, int]):
        super().__init__(daemon=True)
        self.first = self.last = None
        self._halt = threading.Event()
        self._consumer = Consumer({"bootstrap.servers": brokers, "group.id": group})
        self._tps = [TopicPartition(topic, p) for p in ends]
        self._end = sum(ends.values())

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                done = sum(max(tp.offset, 0) for tp in self._consumer.committed(self._tps, 5))
            except Exception:
                done = 0
            now = time.time()
            if done > 0 and self.first is None:
                self.first = now
            if done >= self._end:
                self.last = now
                return
            time.sleep(0.1)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
        self._consumer.close()


@dataclass
class Run:
    system: str
    wall_s: float
    status: int
    consumed: int = 0
    steady_s: Optional[float] = None
    timing: str = "in-process"
    topics: Dict[str, str] = field(default_factory=dict)
    log: str = ""
    database: Optional[str] = None  # the PostgreSQL output's database

    @property
    def steady_rate(self) -> Optional[float]:
        return self.consumed / self.steady_s if self.steady_s else None


def finite(value):
    """`value` with every infinite or NaN float as None: JSON has no Infinity (a trial with
    windows never readable has an infinite p99), and strict readers refuse it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def job_env(brokers: str, topics: Dict[str, str], group: str, **extra) -> Dict[str, str]:
    """The environment of one job: ours reads CLICKSTREAM_*, a peer BENCH_* (its CONTRACT.md),
    both the same topics, group, window and lateness. `topics`: {kind: name} of JOB_TOPICS;
    `extra`: more variables, or these overridden."""
    env = dict(os.environ,
               BENCH_BROKERS=brokers, BENCH_INPUT_TOPIC=topics["in"], BENCH_GROUP=group,
               BENCH_USER_TOPIC=topics["user"], BENCH_PAGE_TOPIC=topics["page"],
               BENCH_WINDOW_MS=str(WINDOW_MS), BENCH_LATENESS_MS=str(LATENESS_MS),
               CLICKSTREAM_BROKERS=brokers, CLICKSTREAM_INPUT_TOPIC=topics["in"],
               CLICKSTREAM_USER_TOPIC=topics["user"], CLICKSTREAM_PAGE_TOPIC=topics["page"],
               CLICKSTREAM_DLQ_TOPIC=topics["dlq"], CLICKSTREAM_SESSION_TOPIC=topics["session"],
               CLICKSTREAM_CONSUMER_GROUP=group,
               CLICKSTREAM_WINDOW_SECONDS=str(WINDOW_MS // 1000),
               CLICKSTREAM_ALLOWED_LATENESS_SECONDS=str(LATENESS_MS // 1000),
               PYTHONPATH=str(ROOT))
    env.update({name: str(value) for name, value in extra.items()})
    return env


def run_once(system: System, brokers: str, input_topic: str, events: int,
             timeout_s: float, gap_ms: int, max_ms: int) -> Run:
    """One run; `gap_ms` and `max_ms` are the session gap and max (ours; a peer has the gap)."""
    tag = uuid.uuid4().hex[:8]
    topics = {kind: f"bench-{kind}-{tag}" for kind in ("user", "page", "dlq", "session")}
    create_topics(brokers, {name: 2 for name in topics.values()})
    sessions = "session" in system.outputs
    LOGS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"bench-{tag}-", dir=ROOT / ".local" / "bench"))
    timing_file = work / "timing"
    group = f"bench-{tag}"
    env = job_env(brokers, dict(topics, **{"in": input_topic}), group,
                  BENCH_SESSION_TOPIC=topics["session"] if sessions else "",
                  BENCH_SESSION_GAP_MS=gap_ms, BENCH_EVENTS=events, BENCH_TIMING_FILE=timing_file,
                  CLICKSTREAM_SESSION_GAP_SECONDS=gap_ms / 1000,
                  CLICKSTREAM_SESSION_MAX_SECONDS=max_ms / 1000)
    env.update(system.env)  # e.g. CLICKSTREAM_SESSION_TOPIC="" for ours with sessions off
    database = None
    if system.env.get("CLICKSTREAM_OUTPUTS") == POSTGRES:
        database = f"bench_{tag}"
        with psycopg.connect(POSTGRES_DSN + "clickstream", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        env["CLICKSTREAM_POSTGRES_DSN"] = POSTGRES_DSN + database
    command = list(system.command)
    if system.recovery:
        command += ["--recovery", str(work / "recovery")]
    log_path = LOGS / f"{tag}.log"
    poller = None
    if system.offsets_timing:
        poller = OffsetPoller(brokers, group, input_topic, end_offsets(brokers, input_topic))
        poller.start()
    began = time.time()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            status = process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
    wall = time.time() - began
    # Relative to the repo: a results file names no path of the machine it ran on.
    run = Run(system.name, wall, status, topics=topics, log=str(log_path.relative_to(ROOT)),
              database=database)
    if poller is not None:
        time.sleep(0.3)
        poller.stop()
        run.timing = "committed offsets"
        if poller.first and poller.last:
            run.consumed, run.steady_s = events, poller.last - poller.first
    else:
        files = glob.glob(f"{timing_file}.*") + glob.glob(str(timing_file))  # per process, or one
        parts = [json.loads(Path(p).read_text()) for p in files]
        parts = [p for p in parts if p.get("first_consumed")]
        if parts:
            run.consumed = sum(p["consumed"] for p in parts)
            run.steady_s = (max(p["last_consumed"] for p in parts)
                            - min(p["first_consumed"] for p in parts))
    shutil.rmtree(work, ignore_errors=True)  # recovery store and timing files
    return run
