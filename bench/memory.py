"""Peak RSS of ours with 1,000,000 distinct users in open windows: every event of the input
falls in the same 5 s window, so every user window (and every url window) stays open until the
end of the bounded input. Run with exactly-once and recovery (-s 1: the most snapshots),
one process; the peak is the kernel's ru_maxrss of that process.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Dict

import orjson
from confluent_kafka import Producer

from bench import outputs
from bench.systems import ROOT, job_env, job_topics

USERS = 1_000_000
START_MS = 1767225600000


def load(brokers: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 50, "compression.type": "lz4",
                         "queue.buffering.max.messages": 500000})
    kinds = ("page_view", "click", "scroll")
    for i in range(USERS):
        user = f"m{i:07d}"
        value = orjson.dumps({"user_id": user, "event_type": kinds[i % 3],
                              "url": f"https://shop.example/p/{i % 1000}",
                              "ts": START_MS + i % 5000, "session_id": f"s{i:07d}"})
        while True:
            try:
                producer.produce(topic, value, user.encode())
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10000 == 0:
            producer.poll(0)
    producer.flush()


def measure(brokers: str, sessions: bool = True) -> dict:
    """With `sessions` (the default: the service's gap and max) each user also holds an open
    session; without, the window state alone (the figure before sessions existed)."""
    tag = uuid.uuid4().hex[:8]
    with job_topics(brokers, "bench-mem", tag) as topics:
        return _measure(brokers, sessions, tag, topics)


def _measure(brokers: str, sessions: bool, tag: str, topics: Dict[str, str]) -> dict:
    load(brokers, topics["in"])
    env = job_env(brokers, topics, f"bench-mem-{tag}",
                  CLICKSTREAM_BOUNDED="1",
                  CLICKSTREAM_SESSION_TOPIC=topics["session"] if sessions else "")
    store = tempfile.mkdtemp(prefix="bench-mem-", dir=ROOT / ".local" / "bench")
    with open(ROOT / ".local" / "bench" / "logs" / f"memory-{tag}.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow",
                                    "-r", store, "-s", "1", "-b", "0"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        samples = []
        sampler = threading.Thread(target=_sample, args=(process.pid, samples), daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        sampler.join(5)
    shutil.rmtree(store, ignore_errors=True)
    _, windows = outputs.read_windows(brokers, topics["user"], "user_id", 0)
    peak_at = max(samples, key=lambda s: s[1])[0] / samples[-1][0] if samples else None
    return {"users": USERS, "sessions": sessions, "peak_rss_mib": usage.ru_maxrss / 1024,
            "exit": os.waitstatus_to_exitcode(status), "user_windows": windows,
            "rss_mib_every_2s": [round(rss) for t, rss in samples[::10]],
            "note": f"one process, exactly-once, -s 1, sessions {'on' if sessions else 'off'}; "
                    f"{windows:,} user windows emitted; "
                    f"peak at {peak_at:.0%} of the run" if peak_at is not None else ""}


def _sample(pid: int, samples: list) -> None:
    """(seconds since start, RSS MiB) every 0.2 s until the process is gone."""
    began = time.time()
    while True:
        try:
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            return
        samples.append((time.time() - began, rss / 1024))
        time.sleep(0.2)
