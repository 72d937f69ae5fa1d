"""The endurance harness (tests/integration/test_endurance.py): a live run with recovery,
sampled while it runs, killed and restarted on the way, then checked against the oracle.

- `Sampler`: every few seconds the dataflow process's RSS (VmRSS of it and its children),
  the recovery store's bytes on disk (every file in the directory: SQLite partitions, their
  -wal and -shm journals), and the process's metrics (events consumed, consumer lag, key
  counts, event-time progress).
- `Dataflow`: starts the live dataflow with metrics on, kills it, and measures each start's
  *restart time* (see `Dataflow.start`).
- `InputIndex`: reads the input topic once: per partition the newest event time up to each
  offset (to turn read positions into event time), the premise that no event is ever more
  than the state TTL behind its shard's event time (`horizon_margin`), and the messages
  spilled to disk in groups of users for the check.
- `check_in_groups`: the oracle's expected outputs (tests/integration/oracle.py, unchanged)
  computed per group of users and compared with the topics group by group, so that ten
  million events never sit in memory at once. Exact for the same reason the oracle is: a
  user's lateness depends on that user's events only, every user's messages are in one
  group (messages are keyed by user), and a page window's counts and distinct users are sums
  over disjoint groups of users.
- `write_report`: the curves as JSON and as a PNG (matplotlib).
"""

import json
import os
import pickle
import signal
import statistics
import subprocess
import threading
import time
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from clickstream.core.partitioner import murmur2
from tests.integration.checks import PAGE_FIELDS, USER_FIELDS, windows_by_identity
from tests.integration.kafka_io import Topics, start_dataflow, stop
from tests.integration.oracle import Message, event_time, expected_outputs

MiB = 1024 * 1024


# --- what is sampled ---------------------------------------------------------------------

def scrape(port: int, timeout: float = 2.0) -> Optional[dict]:
    """{(name, frozenset(labels)): value} of a dataflow's metrics, None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(samples: Optional[dict], name: str, **labels) -> Optional[float]:
    """Sum of the samples of `name` whose labels include `labels`; None when there are none."""
    if samples is None:
        return None
    values = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    return sum(values) if values else None


def process_tree(pid: int) -> List[int]:
    """`pid` and all its descendants."""
    children = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def rss_bytes(pid: int) -> Optional[int]:
    """VmRSS of `pid` and its descendants; None once the process is gone."""
    total, found = 0, False
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        found = True
                        break
        except OSError:
            continue
    return total if found else None


def dir_bytes(path: Path) -> int:
    """Bytes of every file under `path` (a file replaced while we look counts 0)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total


def snapshot_bytes(path: Path) -> Optional[int]:
    """Bytes of the snapshots the store holds now (Bytewax's `snaps` rows, every epoch still
    kept), without the free pages SQLite keeps in its files; None when unreadable."""
    import sqlite3

    total = 0
    for part in sorted(path.glob("*.sqlite3")):
        try:
            db = sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1)
            try:
                total += db.execute("SELECT COALESCE(SUM(LENGTH(ser_change)), 0) FROM snaps"
                                    ).fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            return None
    return total


@dataclass
class Sample:
    at: float  # seconds since the sampler started
    run: int  # which start of the dataflow (0, 1, ...)
    up: float  # seconds since that start
    rss_mib: Optional[float]
    store_mib: float  # the store's files on disk (what CLICKSTREAM's store gauge reports too)
    snapshots_mib: Optional[float]  # the snapshots in it (`snapshot_bytes`)
    event_ms: Optional[int]  # event time reached: slowest partition's newest event time (metrics)
    consumed: Optional[float]  # input messages this process has read
    lag: Optional[float]  # messages behind the partitions' ends, all partitions
    positions: Optional[Dict[int, int]]  # next offset to read per partition (end - lag)
    late: Optional[float]  # events this process dead-lettered as late (user and page stage)
    keys_user: Optional[float]
    keys_page: Optional[float]
    expired_user: Optional[float]
    expired_page: Optional[float]


class Sampler(threading.Thread):
    """Samples the attached dataflow process every `interval` s until stopped."""

    def __init__(self, store: Path, port: int, lateness_ms: int, input_topic: str,
                 ends: Optional[Dict[int, int]] = None, interval: float = 2.0):
        super().__init__(daemon=True)
        self.store, self.port, self.lateness_ms = store, port, lateness_ms
        self.input_topic, self.ends, self.interval = input_topic, ends, interval
        self.samples: List[Sample] = []
        self.began = time.monotonic()
        self._process: Optional[subprocess.Popen] = None
        self._run_index, self._run_began = -1, 0.0
        self._halt = threading.Event()

    def attach(self, process: Optional[subprocess.Popen], run: int, started: float) -> None:
        self._process, self._run_index, self._run_began = process, run, started

    def halt(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        while not self._halt.is_set():
            began = time.monotonic()
            self.take()
            self._halt.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def take(self) -> Optional[Sample]:
        process, run, started = self._process, self._run_index, self._run_began
        if process is None or process.poll() is not None:
            return None
        rss = rss_bytes(process.pid)
        live = snapshot_bytes(self.store)
        samples = scrape(self.port)
        wall = time.time()
        consumed = metric(samples, "clickstream_events_consumed_total")
        lag_s = metric(samples, "clickstream_event_time_lag_seconds")
        event_ms = None
        if consumed and lag_s:  # the lag reads 0 until a partition has been read
            event_ms = int((wall - lag_s) * 1000) + self.lateness_ms
        positions = None
        if self.ends is not None and consumed:
            lags = {p: metric(samples, "clickstream_consumer_lag", topic=self.input_topic,
                              partition=str(p)) for p in self.ends}
            if all(v is not None for v in lags.values()):
                positions = {p: self.ends[p] - int(v) for p, v in lags.items()}
        sample = Sample(
            at=round(time.monotonic() - self.began, 2), run=run,
            up=round(time.monotonic() - started, 2),
            rss_mib=None if rss is None else round(rss / MiB, 1),
            store_mib=round(dir_bytes(self.store) / MiB, 2),
            snapshots_mib=None if live is None else round(live / MiB, 2),
            event_ms=event_ms, consumed=consumed,
            lag=metric(samples, "clickstream_consumer_lag", topic=self.input_topic),
            positions=positions,
            late=metric(samples, "clickstream_events_late_total"),
            keys_user=metric(samples, "clickstream_keys", stage="user"),
            keys_page=metric(samples, "clickstream_keys", stage="page"),
            expired_user=metric(samples, "clickstream_keys_expired_total", stage="user"),
            expired_page=metric(samples, "clickstream_keys_expired_total", stage="page"))
        if process.poll() is None:  # not a sample of a process killed meanwhile
            self.samples.append(sample)
            return sample
        return None


# --- running and restarting --------------------------------------------------------------

@dataclass
class Start:
    run: int
    kind: str  # "first", "restart" or "bounded"
    restart_s: Optional[float] = None  # see Dataflow.start
    metrics_s: Optional[float] = None  # until the metrics endpoint answered
    keys_before: Optional[float] = None  # user keys the killed process held just before the kill
    event_ms_before: Optional[int] = None  # event time the killed process had reached
    ended: str = ""  # how the run ended: "SIGKILL", "SIGTERM", "exit 0"
    seconds: Optional[float] = None  # how long the run lasted


class Dataflow:
    """The live dataflow on one recovery store, started, killed and restarted.

    Restart time (`Start.restart_s`): from spawning `python -m bytewax.run` to the first
    moment the new process has read input again, i.e. its `clickstream_events_consumed_total`
    is above 0, polled every 0.1 s. It covers the interpreter and the imports, the start-up
    checks against the broker and the store, loading the store's snapshots (the sources
    poll only once that is done: 0.7 s on an empty store, 35 s with 700,000 users), and
    building the Kafka clients, including fencing the killed run's open transactions (0.5 to
    1 s for each output partition, one after another: most of the 7 s of a restart with an
    almost empty store). It leaves out the replay of the epoch the kill lost, which depends
    only on where in that epoch the kill fell.
    """

    def __init__(self, topics: Topics, store: Path, port: int, env: dict, flags: Tuple[str, ...],
                 sampler: Sampler, logs: Path):
        self.topics, self.store, self.port = topics, store, port
        self.env = dict(env, BYTEWAX_DATAFLOW_API_ENABLED="true", BYTEWAX_DATAFLOW_API_PORT=port)
        self.flags, self.sampler, self.logs = flags, sampler, logs
        self.starts: List[Start] = []
        self.process: Optional[subprocess.Popen] = None
        self._started = 0.0

    def log(self, run: int) -> Path:
        return self.logs / f"run-{run}.log"

    def start(self, bounded: bool = False, timeout: float = 600, on_metrics=None) -> Start:
        """Start the next run; returns once it reads input (see the class docstring).
        `on_metrics` is called as soon as its metrics endpoint answers."""
        run = len(self.starts)
        before = self.sampler.samples[-1] if self.sampler.samples else None
        kind = "bounded" if bounded else ("restart" if run else "first")
        env = dict(self.env, CLICKSTREAM_BOUNDED="1") if bounded else self.env
        began = time.monotonic()
        self.process = start_dataflow(self.topics.env(**env), *self.flags, log=self.log(run))
        self._started = began
        self.sampler.attach(self.process, run, began)
        start = Start(run, kind)
        if run and before is not None:
            start.keys_before, start.event_ms_before = before.keys_user, before.event_ms
        self.starts.append(start)
        deadline = began + timeout
        while time.monotonic() < deadline:
            samples = scrape(self.port, timeout=0.5)
            now = time.monotonic()
            if samples is not None and start.metrics_s is None:
                start.metrics_s = round(now - began, 2)
                if on_metrics is not None:
                    on_metrics()
            if (metric(samples, "clickstream_events_consumed_total") or 0) > 0:
                start.restart_s = round(now - began, 2)
                return start
            if self.process.poll() is not None:
                if bounded and self.process.returncode == 0:
                    return start  # a bounded run over so little that it ended first
                raise AssertionError(f"run {run} ended with {self.process.returncode}: "
                                     f"{self.log(run).read_text()[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"run {run} read no input within {timeout} s")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process.poll() is None, self.log(len(self.starts) - 1).read_text()[-3000:]
        self.sampler.take()  # the last look at the process before it dies
        stop(self.process, sig)
        self.starts[-1].ended = signal.Signals(sig).name
        self.starts[-1].seconds = round(time.monotonic() - self._started, 1)
        self.sampler.attach(None, -1, 0.0)

    def wait(self, timeout: float) -> int:
        status = self.process.wait(timeout)
        self.starts[-1].ended = f"exit {status}"
        self.starts[-1].seconds = round(time.monotonic() - self._started, 1)
        self.sampler.attach(None, -1, 0.0)
        assert status == 0, self.log(len(self.starts) - 1).read_text()[-3000:]
        return status

    def wait_until(self, predicate, timeout: float, what: str, interval: float = 0.5) -> Sample:
        """The first sample (taken every `interval`) that satisfies `predicate`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (
                f"the dataflow ended while waiting for {what}: "
                + self.log(len(self.starts) - 1).read_text()[-3000:])
            sample = self.sampler.samples[-1] if self.sampler.samples else None
            if sample is not None and sample.run == len(self.starts) - 1 and predicate(sample):
                return sample
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# --- the input, read once ----------------------------------------------------------------

def group_of(key: Optional[bytes], groups: int) -> int:
    return zlib.crc32(key or b"") % groups


def consume_all(brokers: str, topic: str, batch: int = 10000):
    """Every committed record of `topic` in partition-offset order per partition, in batches
    of confluent_kafka Messages (read_committed, up to the end offsets as of the start)."""
    consumer = Consumer({
        "bootstrap.servers": brokers, "group.id": f"endurance-{uuid.uuid4().hex}",
        "isolation.level": "read_committed", "enable.auto.commit": False,
        "enable.partition.eof": True, "fetch.max.bytes": 64 * MiB,
        "max.partition.fetch.bytes": 16 * MiB, "queued.max.messages.kbytes": 256 * 1024,
    })
    parts = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in parts}
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    done = {p for p, end in ends.items() if end == 0}
    idle_since = time.monotonic()
    while len(done) < len(parts):
        messages = consumer.consume(batch, 1.0)
        good = []
        for m in messages:
            err = m.error()
            if err is None:
                if m.offset() < ends[m.partition()]:
                    good.append(m)
                if m.offset() >= ends[m.partition()] - 1:
                    done.add(m.partition())
            elif err.code() == KafkaError._PARTITION_EOF:
                if m.offset() >= ends[m.partition()]:
                    done.add(m.partition())
            else:
                raise AssertionError(err.str())
        if good:
            idle_since = time.monotonic()
            yield good
        elif time.monotonic() - idle_since > 60:
            raise AssertionError(f"reading {topic} stalled with {sorted(set(parts) - done)} unfinished")
    consumer.close()


class Spill:
    """Items appended to one of `groups` files, in pickled chunks."""

    def __init__(self, directory: Path, name: str, groups: int, chunk: int = 20000):
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"{name}-{g}.pickles" for g in range(groups)]
        self._files = [open(p, "wb") for p in self.paths]
        self._buffers: List[list] = [[] for _ in range(groups)]
        self._chunk = chunk
        self.count = 0

    def add(self, group: int, item) -> None:
        buffer = self._buffers[group]
        buffer.append(item)
        self.count += 1
        if len(buffer) >= self._chunk:
            pickle.dump(buffer, self._files[group], pickle.HIGHEST_PROTOCOL)
            buffer.clear()

    def close(self) -> None:
        for buffer, f in zip(self._buffers, self._files):
            if buffer:
                pickle.dump(buffer, f, pickle.HIGHEST_PROTOCOL)
            f.close()

    @staticmethod
    def load(path: Path) -> list:
        out = []
        with open(path, "rb") as f:
            while True:
                try:
                    out += pickle.load(f)
                except EOFError:
                    return out


@dataclass
class InputIndex:
    """The input topic as read back once (see `index_input`)."""

    count: int
    ends: Dict[int, int]  # partition -> end offset
    newest: Dict[int, np.ndarray]  # partition -> newest event time among offsets <= i
    first_ms: int
    last_ms: int
    users: int  # distinct user ids among the well-formed events
    late: int  # well-formed events late for their user by the oracle's rule
    worst_behind_ms: int  # max over on-time events of (newest of its partition so far - ts)
    spill: List[Path]  # per group: [Message] of that group's users
    seconds: float

    def event_time_at(self, positions: Dict[int, int]) -> Optional[int]:
        """Event time reached when each partition's next offset is positions[p]: the
        slowest partition's newest event time (None before every partition has one)."""
        times = []
        for p, position in positions.items():
            if position <= 0:
                return None
            times.append(int(self.newest[p][min(position, self.ends[p]) - 1]))
        return min(times) if times else None

    def skew_ms(self, positions: Dict[int, int]) -> Optional[int]:
        """How far apart in event time the partitions' read positions are."""
        times = [int(self.newest[p][min(pos, self.ends[p]) - 1])
                 for p, pos in positions.items() if pos > 0]
        return max(times) - min(times) if len(times) == len(positions) else None


def index_input(brokers: str, topic: str, spill_dir: Path, groups: int, window_ms: int,
                lateness_ms: int) -> InputIndex:
    """Read the input once: spill it per group of users, and measure the premise.

    An event counts as on time here by the oracle's own rule (its window is not behind its
    user's newest event time minus the lateness); `worst_behind_ms` is the most any on-time
    event lies behind the newest event time read before it in its partition. Validity here
    is looser than the oracle's (a dict with non-empty strings and a valid `ts`), which only
    makes the premise stricter.
    """
    began = time.monotonic()
    spill = Spill(spill_dir, "input", groups)
    newest_lists: Dict[int, list] = defaultdict(list)
    running: Dict[int, int] = {}
    user_newest: Dict[str, int] = {}
    worst = 0
    late = 0
    first_ms, last_ms = None, None
    count = 0
    ends: Dict[int, int] = {}
    for batch in consume_all(brokers, topic):
        for m in batch:
            partition, offset, key, value = m.partition(), m.offset(), m.key(), m.value()
            count += 1
            ends[partition] = offset + 1
            spill.add(group_of(key, groups), Message(partition, offset, key, value))
            ts = user = None
            try:
                obj = orjson.loads(value) if value else None
                if isinstance(obj, dict):
                    user = obj.get("user_id")
                    if isinstance(user, str) and user and all(
                            isinstance(obj.get(f), str) and obj[f] for f in ("event_type", "url")):
                        ts = event_time(obj.get("ts"))
            except orjson.JSONDecodeError:
                pass
            newest = running.get(partition)
            if ts is not None:
                start = ts - ts % window_ms
                seen = user_newest.get(user)
                if seen is not None and start + window_ms <= seen - lateness_ms:
                    late += 1
                else:
                    if newest is not None and newest - ts > worst:
                        worst = newest - ts
                    user_newest[user] = ts if seen is None else max(seen, ts)
                if newest is None or ts > newest:
                    running[partition] = newest = ts
                first_ms = ts if first_ms is None else min(first_ms, ts)
                last_ms = ts if last_ms is None else max(last_ms, ts)
            newest_lists[partition].append(newest if newest is not None else -(1 << 62))
    spill.close()
    newest_arrays = {p: np.asarray(v, dtype=np.int64) for p, v in newest_lists.items()}
    assert all(len(newest_arrays[p]) == ends[p] for p in ends), "offsets are not contiguous"
    return InputIndex(count, ends, newest_arrays, first_ms, last_ms, len(user_newest), late,
                      worst, spill.paths, round(time.monotonic() - began, 1))


# --- the check, group by group -----------------------------------------------------------

@dataclass
class CheckResult:
    user_windows: int = 0
    page_windows: int = 0
    dead_letters: int = 0
    reasons: Dict[str, int] = field(default_factory=dict)
    errors: Dict[str, int] = field(default_factory=dict)  # dead letters by kind of error
    failures: List[str] = field(default_factory=list)  # what differs from the oracle
    read_s: float = 0.0  # reading the output topics
    seconds: float = 0.0  # the whole check


def error_kind(error: str) -> str:
    """A dead letter's error without its particulars: "late: user window", "malformed: ..."."""
    if error.startswith("late: "):
        for kind in ("user window", "page window", "user state horizon", "page state horizon"):
            if kind in error:
                return f"late: {kind}"
        return "late: other"
    return "malformed"


PAGE_VALUES = ("window_end", "views", "events", "unique_users")  # besides url and window_start


def _check_group(input_path: Path, output_path: Path, topic: str, window_ms: int,
                 lateness_ms: int) -> Tuple[int, Dict[Tuple[int, int], dict], dict]:
    """One group of users (in a worker process): the oracle's user windows of these users
    must be exactly the user records of these users on the topic. Returns how many there
    were, the group's expected dead letters and its share of every page window's counts."""
    expected = expected_outputs(Spill.load(input_path), topic, window_ms, lateness_ms)
    got = windows_by_identity(((k, orjson.loads(v)) for k, v in Spill.load(output_path)),
                              USER_FIELDS, "user_id", exactly_once=True)
    missing, extra = expected.user.keys() - got.keys(), got.keys() - expected.user.keys()
    assert not missing and not extra, (
        f"{input_path.name}: {len(missing)} user windows missing (e.g. {sorted(missing)[:3]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    wrong = [k for k, v in expected.user.items() if got[k] != v]
    assert not wrong, f"{input_path.name}: {len(wrong)} user windows differ, e.g. " + "; ".join(
        f"{got[k]} != expected {expected.user[k]}" for k in wrong[:3])
    pages = {ident: tuple(record[f] for f in PAGE_VALUES) for ident, record in expected.page.items()}
    return len(got), expected.dead, pages


def check_in_groups(topics: Topics, index: InputIndex, spill_dir: Path, window_ms: int,
                    lateness_ms: int, output_partitions: int, workers: int = 2) -> CheckResult:
    """`checks.assert_matches` for inputs too large to hold: every expected record is on the
    topics with exactly the expected content, exactly once, placed by the Java partitioner,
    and nothing else is there. The oracle runs per group in `workers` processes."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    began = time.monotonic()
    groups = len(index.spill)

    def placed(key: bytes, partition: int, memo: Dict[bytes, int]) -> None:
        want = memo.get(key)
        if want is None:
            want = memo[key] = (murmur2(key) & 0x7FFFFFFF) % output_partitions
        assert partition == want, (key, partition)

    # User records go to the group of their key (= the user id, like the input messages);
    # page records and dead letters are few enough to hold, page values as tuples.
    users_spill = Spill(spill_dir, "user-out", groups)
    for batch in consume_all(topics.brokers, topics.user):
        for m in batch:
            key = m.key()
            placed(key, m.partition(), {})
            users_spill.add(group_of(key, groups), (key, m.value()))
    users_spill.close()
    pages: Dict[Tuple[str, str], tuple] = {}
    url_partitions: Dict[bytes, int] = {}
    for batch in consume_all(topics.brokers, topics.page):
        for m in batch:
            key = m.key()
            placed(key, m.partition(), url_partitions)
            record = orjson.loads(m.value())
            assert set(record) == PAGE_FIELDS, record
            assert key == record["url"].encode(), (key, record)
            ident = (record["url"], record["window_start"])
            assert ident not in pages, f"url window {ident} emitted twice"
            pages[ident] = tuple(record[f] for f in PAGE_VALUES)
    dead: Dict[Tuple[int, int], dict] = {}
    kinds: Dict[Tuple[int, int], str] = {}
    for batch in consume_all(topics.brokers, topics.dlq):
        for m in batch:
            record = orjson.loads(m.value())
            error = record.pop("error")
            assert isinstance(error, str) and error and "\n" not in error, error
            ident = (record["partition"], record["offset"])
            assert ident not in dead, f"dead letter {ident} written twice"
            dead[ident] = record
            kinds[ident] = error_kind(error)

    result = CheckResult(read_s=round(time.monotonic() - began, 1))
    result.errors = dict(Counter(kinds.values()))
    failures = result.failures
    expected_pages: Dict[Tuple[str, str], list] = {}
    expected_dead: Dict[Tuple[int, int], dict] = {}
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_check_group, index.spill[g], users_spill.paths[g], topics.input,
                               window_ms, lateness_ms) for g in range(groups)]
        for future in futures:
            try:
                user_windows, group_dead, group_pages = future.result()
            except AssertionError as exc:
                failures.append(str(exc)[:2000])
                continue
            result.user_windows += user_windows
            expected_dead.update(group_dead)
            for ident, values in group_pages.items():  # disjoint users: counts add up
                have = expected_pages.get(ident)
                if have is None:
                    expected_pages[ident] = list(values)
                else:
                    for i in range(1, len(PAGE_VALUES)):
                        have[i] += values[i]
    if len(failures) == groups:
        return result  # nothing to compare the rest with
    if dead != expected_dead:
        unexpected = dead.keys() - expected_dead.keys()
        missing = expected_dead.keys() - dead.keys()
        failures.append(
            f"dead letters: {len(missing)} missing (e.g. {[expected_dead[k] for k in sorted(missing)[:2]]}), "
            f"{len(unexpected)} unexpected ({dict(Counter(kinds[k] for k in unexpected))}, "
            f"e.g. {[dead[k] for k in sorted(unexpected)[:2]]}), "
            f"{sum(dead[k] != v for k, v in expected_dead.items() if k in dead)} differ")
    missing, extra = expected_pages.keys() - pages.keys(), pages.keys() - expected_pages.keys()
    if missing or extra:
        failures.append(f"{len(missing)} page windows missing (e.g. {sorted(missing)[:3]}), "
                        f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})")
    wrong = [k for k, v in expected_pages.items() if k in pages and pages[k] != tuple(v)]
    if wrong:
        failures.append(f"{len(wrong)} page windows differ, e.g. " + "; ".join(
            f"{k}: {dict(zip(PAGE_VALUES, pages[k]))} != expected "
            f"{dict(zip(PAGE_VALUES, expected_pages[k]))}" for k in wrong[:3]))
    result.page_windows, result.dead_letters = len(pages), len(dead)
    result.reasons = dict(Counter(r["reason"] for r in dead.values()))
    result.seconds = round(time.monotonic() - began, 1)
    return result


# --- judging the curves ------------------------------------------------------------------

def settled(samples: List[Sample], starts: List[Start], after_ms: int, settle_s: float) -> List[Sample]:
    """Samples at event time >= after_ms, leaving out each start's first `settle_s` seconds
    after its restart time (the process is loading its state and catching up then)."""
    restart = {s.run: (s.restart_s or 0.0) for s in starts}
    return [s for s in samples if s.event_ms is not None and s.event_ms >= after_ms
            and s.up >= restart.get(s.run, 0.0) + settle_s]


def flatness(values: List[float], level_count: int) -> dict:
    """Level = median of the first `level_count` values; the extremes relative to it."""
    assert values, "no samples to judge"
    level = statistics.median(values[:max(1, level_count)])
    low, high = min(values), max(values)
    return {"level": round(level, 2), "min": round(low, 2), "max": round(high, 2),
            "min_ratio": round(low / level, 3) if level else None,
            "max_ratio": round(high / level, 3) if level else None, "samples": len(values)}


# --- the report --------------------------------------------------------------------------

def write_report(path_stem: Path, report: dict, curves: Dict[str, List[Sample]], t0_ms: int,
                 ttl_ms: int, kills_ms: List[int]) -> List[Path]:
    """`<stem>.json` (report + every sample) and `<stem>.png` (RSS, store size and user keys
    over event time, one line per curve)."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    data = dict(report, curves={name: [asdict(s) for s in samples]
                                for name, samples in curves.items()})
    json_path = path_stem.with_suffix(".json")
    json_path.write_text(json.dumps(data, indent=1, default=str))
    written = [json_path]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    panels = (("rss_mib", "RSS of the dataflow process, MiB"),
              ("store_mib", "recovery store on disk, MiB"),
              ("snapshots_mib", "snapshots in the store, MiB"),
              ("keys_user", "user keys held (clickstream_keys)"))
    fig, grid = plt.subplots(2, 2, figsize=(12, 7.5))
    axes = list(grid.flat)
    hours = 3600_000
    colors = ("tab:blue", "tab:orange", "tab:green")
    for ax, (attr, title) in zip(axes, panels):
        for (name, samples), color in zip(curves.items(), colors):
            runs = sorted({s.run for s in samples})
            for run in runs:  # one line per start: a restart replays some event time
                points = [((s.event_ms - t0_ms) / hours, getattr(s, attr)) for s in samples
                          if s.run == run and s.event_ms is not None
                          and getattr(s, attr) is not None]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], color=color,
                            label=name if run == runs[0] else None, linewidth=1.2,
                            linestyle="-" if color == colors[0] else "--")
        ax.axvline(ttl_ms / hours, color="grey", linewidth=0.8)
        ax.text(ttl_ms / hours, 0, " first TTL", fontsize=7, va="bottom", color="grey")
        for k in kills_ms:
            ax.axvline((k - t0_ms) / hours, color="red", linewidth=0.6, linestyle=":")
            ax.text((k - t0_ms) / hours, 0, " SIGKILL", fontsize=7, va="bottom", color="red")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("event time consumed, hours", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(report.get("title", "endurance run"), fontsize=10)
    fig.tight_layout()
    png = path_stem.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return written + [png]
