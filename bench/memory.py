"""Peak RSS of ours with 1,000,000 distinct users in open windows: every event of the input
falls in the same 5 s window, so every user window (and every url window) stays open until the
end of the bounded input. Run as in the throughput benchmark (exactly-once, recovery, -s 1),
one process; the peak is the kernel's ru_maxrss of that process.
"""

import os
import subprocess
import sys
import tempfile
import uuid

import orjson
from confluent_kafka import Producer

from bench import outputs
from bench.systems import ROOT, create_topics

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


def measure(brokers: str) -> dict:
    tag = uuid.uuid4().hex[:8]
    topics = {k: f"bench-mem-{k}-{tag}" for k in ("in", "user", "page", "dlq")}
    create_topics(brokers, {topics["in"]: 4, topics["user"]: 2, topics["page"]: 2, topics["dlq"]: 2})
    load(brokers, topics["in"])
    env = dict(os.environ, CLICKSTREAM_BROKERS=brokers, CLICKSTREAM_BOUNDED="1",
               CLICKSTREAM_INPUT_TOPIC=topics["in"], CLICKSTREAM_USER_TOPIC=topics["user"],
               CLICKSTREAM_PAGE_TOPIC=topics["page"], CLICKSTREAM_DLQ_TOPIC=topics["dlq"])
    store = tempfile.mkdtemp(prefix="bench-mem-", dir=ROOT / ".local" / "bench")
    with open(ROOT / ".local" / "bench" / "logs" / f"memory-{tag}.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "bytewax.run", "dataflows.clickstream:flow",
                                    "-r", store, "-s", "1", "-b", "0"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    _, windows = outputs.read_windows(brokers, topics["user"], "user_id", 0)
    return {"users": USERS, "peak_rss_mib": usage.ru_maxrss / 1024, "exit": os.waitstatus_to_exitcode(status),
            "user_windows": windows,
            "note": f"one process, exactly-once, -s 1; {windows:,} user windows emitted"}
