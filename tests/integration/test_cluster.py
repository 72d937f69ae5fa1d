"""The service as a cluster of processes: same output as one process, rescaling from a
snapshot, fewer partitions than processes, and partitions added while it runs."""

import json
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, NewPartitions

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import (ROOT, make_topics, produce, read_topic, start_dataflow,
                                        stop, wait_for)
from tests.integration.test_exactly_once import preload

pytestmark = pytest.mark.integration


def cluster(env, processes, store=None, *, log=None, bounded=False, snapshot=1, workers=1):
    """`python -m clickstream.cluster` as the user runs it (its own process group)."""
    base = random.randrange(20000, 29000, 10)
    command = [sys.executable, "-m", "clickstream.cluster", "--processes", str(processes),
               "--workers", str(workers),
               "--base-port", str(base), "--metrics-port", str(base + 5), "--snapshot", str(snapshot)]
    if store is not None:
        command += ["--recovery", str(store)]
    env = dict(env, CLICKSTREAM_BOUNDED="1" if bounded else "")
    out = open(log, "w") if log else subprocess.DEVNULL
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish_as_cluster(topics, processes, store, tmp_path, workers=1):
    began = time.monotonic()
    run = cluster(topics.env(), processes, store, log=tmp_path / "finish.log", bounded=True,
                  workers=workers)
    assert run.wait(300) == 0, (tmp_path / "finish.log").read_text()[-3000:]
    return time.monotonic() - began


def test_two_process_cluster_killed_and_resumed_as_one_process_of_two_workers(topics, tmp_path):
    inputs = preload(topics, 40000, seed=31)
    store = tmp_path / "store"
    run = cluster(topics.env(), 2, store, log=tmp_path / "live.log")
    wait_for(lambda: len(read_topic(topics.brokers, topics.user)) > 200, timeout=60,
             what="the cluster's first windows")
    stop(run, signal.SIGKILL)  # the whole process group: supervisor and both processes
    finish_as_cluster(topics, 1, store, tmp_path, workers=2)  # rescaled: 2 processes -> 1 x 2
    assert_matches(topics, inputs)  # the single-process result: the oracle's


def test_killed_single_process_resumes_as_two_processes(topics, tmp_path):
    inputs = preload(topics, 60000, seed=37)
    store = tmp_path / "store"
    flags = ("-r", str(store), "-s", "1", "-b", "0")
    single = start_dataflow(topics.env(), *flags, log=tmp_path / "single.log")
    wait_for(lambda: len(read_topic(topics.brokers, topics.user)) > 200, timeout=60,
             what="the single process's first windows")
    stop(single, signal.SIGKILL)
    seconds = finish_as_cluster(topics, 2, store, tmp_path)  # rescaled: 1 -> 2 processes
    assert_matches(topics, inputs)
    print(f"resumed as 2 processes and finished the backlog in {seconds:.1f} s")


@pytest.mark.parametrize("partitions, partition_of", [
    (1, lambda i: 0),                            # fewer partitions than processes
    (3, lambda i: 2 if i % 20 == 0 else 0),      # skewed: 95% on one, 5% on another, one empty
], ids=["1-partition", "3-skewed-partitions"])
def test_uneven_partitions_on_two_processes_neither_stall_nor_starve(brokers, tmp_path, partitions,
                                                                     partition_of):
    topics = make_topics(brokers, input_partitions=partitions)
    now = int(time.time() * 1000)
    events = [{"user_id": f"u{i % 7}" if i % 20 else f"rare{i % 3}", "event_type": "page_view",
               "url": f"/o/{i % 3}", "ts": now - 4000 + i * 20} for i in range(200)]
    inputs = produce(brokers, topics.input,
                     [(e["user_id"].encode(), json.dumps(e).encode(), partition_of(i))
                      for i, e in enumerate(events)])
    env = topics.env(CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=1,
                     CLICKSTREAM_SESSION_GAP_SECONDS=1, CLICKSTREAM_SESSION_MAX_SECONDS=60)
    run = cluster(env, 2, tmp_path / "store", log=tmp_path / "live.log")
    try:
        from tests.integration.oracle import expected_outputs

        expected = expected_outputs(inputs, topics.input, 1000, 1000, None, 1000, 60_000)
        # Live, with one process holding no partition: every window and session still
        # closes (idle).
        wait_for(lambda: len(read_topic(brokers, topics.page)) >= len(expected.page) and
                 len(read_topic(brokers, topics.user)) >= len(expected.user) and
                 len(read_topic(brokers, topics.sessions)) >= len(expected.sessions),
                 timeout=90, what="every window and session, live, with uneven partitions on "
                 "2 processes")
    finally:
        stop(run, signal.SIGKILL)
    assert_matches(topics, inputs, window_ms=1000, lateness_ms=1000, session_gap_ms=1000,
                   session_max_ms=60_000)


def test_a_partition_added_while_running_is_picked_up(topics, tmp_path):
    first = preload(topics, 20000, seed=41)
    store = tmp_path / "store"
    env = topics.env(CLICKSTREAM_PARTITION_CHECK_SECONDS=2)
    run = cluster(env, 2, store, log=tmp_path / "live.log")
    try:
        wait_for(lambda: len(read_topic(topics.brokers, topics.user)) > 200, timeout=60,
                 what="first windows")
        admin = AdminClient({"bootstrap.servers": topics.brokers})
        for future in admin.create_partitions([NewPartitions(topics.input, 3)]).values():
            future.result(timeout=30)
        added = time.monotonic()
        late_users = [{"user_id": f"new{i % 5}", "event_type": "click", "url": "/new",
                       "ts": 1767225600000 + i * 50} for i in range(400)]
        produce(topics.brokers, topics.input,
                [(e["user_id"].encode(), json.dumps(e).encode(), 2) for e in late_users])

        def picked_up():
            return any(json.loads(m.value)["url"] == "/new"
                       for m in read_topic(topics.brokers, topics.page))

        wait_for(picked_up, timeout=60, what="windows from the added partition")
        took = time.monotonic() - added
        assert "restarting all 2 process(es)" in (tmp_path / "live.log").read_text()
    finally:
        stop(run, signal.SIGKILL)
    finish_as_cluster(topics, 2, store, tmp_path)
    assert_matches(topics, read_topic(topics.brokers, topics.input))
    assert len(read_topic(topics.brokers, topics.input)) == len(first) + 400
    print(f"added partition picked up in {took:.1f} s")


def test_a_recovery_directory_per_process_as_on_kubernetes(topics, tmp_path):
    """Each process with a store of its own (a volume per pod): each keeps only its partition."""
    inputs = preload(topics, 40000, seed=51)
    addresses = ";".join(f"127.0.0.1:{p}" for p in random.sample(range(24100, 24900), 2))
    env = topics.env(CLICKSTREAM_RECOVERY_LAYOUT="per-process")

    def start(bounded=False):
        return [start_dataflow(dict(env, CLICKSTREAM_BOUNDED="1" if bounded else ""),
                               "-i", str(i), "-a", addresses, "-r", str(tmp_path / f"pod-{i}"),
                               "-s", "1", "-b", "0", log=tmp_path / f"pod-{i}-{bounded}.log")
                for i in range(2)]

    live = start()
    wait_for(lambda: len(read_topic(topics.brokers, topics.user)) > 200, timeout=60,
             what="first windows")
    for process in live:
        stop(process, signal.SIGKILL)
    assert [p.name for p in (tmp_path / "pod-1").glob("part-*.sqlite3")] == ["part-1.sqlite3"]
    assert [p.wait(300) for p in start(bounded=True)] == [0, 0]
    assert_matches(topics, inputs)


class Traffic(threading.Thread):
    """Continuous live input: every 50 ms one event for each of a few busy users, event time
    the wall clock, each user (and each of its urls) on one partition, so nothing is late."""

    def __init__(self, topics, users: int = 6):
        super().__init__(daemon=True)
        self.topics, self.users = topics, users
        self.stopping = threading.Event()
        self.messages = []

    def run(self):
        while not self.stopping.is_set():
            now = int(time.time() * 1000)
            self.messages += produce(self.topics.brokers, self.topics.input, [
                (f"b{u}".encode(), json.dumps({"user_id": f"b{u}", "event_type": "page_view",
                                                "url": f"/p{u % 2}/{u}", "ts": now}).encode(),
                 u % 2) for u in range(self.users)])
            self.stopping.wait(0.05)


def test_a_quiet_users_windows_close_on_idle_while_other_users_keep_a_cluster_busy(topics,
                                                                                   tmp_path):
    """The idle clock of a cluster under continuous traffic (io.watchers.ClusterProgress).
    Before the commits carried liveness marks, the offsets every process commits at its
    snapshots were always behind the end offsets while records flowed, so no clock ran and
    a quiet user's windows waited for the traffic to stop (p99 99 s in the live bench).
    L = 5 s is above the rule's bound with `-s 1` (3.75 s, runtime/liveness.py): no busy
    user's window can close on idle time while another process holds its events."""
    settings = dict(CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=5,
                    CLICKSTREAM_SESSION_GAP_SECONDS=2, CLICKSTREAM_SESSION_MAX_SECONDS=600,
                    CLICKSTREAM_PARTITION_CHECK_SECONDS=0)
    traffic = Traffic(topics)
    traffic.start()
    run = cluster(topics.env(**settings), 2, tmp_path / "store", log=tmp_path / "live.log")
    try:
        wait_for(lambda: len(read_topic(topics.brokers, topics.user)) > 20, timeout=90,
                 what="the cluster's first windows")
        now = int(time.time() * 1000)
        quiet = produce(topics.brokers, topics.input, [
            (f"q{p}".encode(), json.dumps({"user_id": f"q{p}", "event_type": "click",
                                            "url": f"/q/{p}", "ts": now}).encode(), p)
            for p in (0, 1)])
        sent = time.monotonic()

        def quiet_windows():
            return {json.loads(m.value)["user_id"] for m in read_topic(topics.brokers, topics.user)
                    } >= {"q0", "q1"}

        wait_for(quiet_windows, timeout=30, what="the quiet users' windows, closed on idle "
                 "while the traffic goes on")
        took = time.monotonic() - sent
        assert traffic.is_alive() and not traffic.stopping.is_set()
    finally:
        traffic.stopping.set()
        traffic.join()
    try:
        inputs = traffic.messages + quiet
        from tests.integration.oracle import expected_outputs

        expected = expected_outputs(inputs, topics.input, 1000, 5000, None, 2000, 600_000)
        wait_for(lambda: len(read_topic(topics.brokers, topics.user)) >= len(expected.user) and
                 len(read_topic(topics.brokers, topics.page)) >= len(expected.page) and
                 len(read_topic(topics.brokers, topics.sessions)) >= len(expected.sessions),
                 timeout=60, what="every window and session after the traffic stopped")
    finally:
        stop(run, signal.SIGKILL)
    assert_matches(topics, inputs, window_ms=1000, lateness_ms=5000, session_gap_ms=2000,
                   session_max_ms=600_000)
    print(f"quiet users' windows readable {took:.1f} s after their events")


def test_the_cluster_watcher_reads_marks_and_ends_from_the_broker(brokers):
    """ClusterProgress.caught_up against the real broker: the group's committed offsets with
    their metadata, the partitions' read_committed ends, and the rule of runtime.liveness."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    from clickstream.io.watchers import ClusterProgress
    from clickstream.runtime.liveness import CommitWatch, Mark
    from clickstream.runtime.progress import IdleClock
    from clickstream.runtime.settings import Settings

    topics = make_topics(brokers)
    group = f"watcher-{topics.input}"
    settings = Settings.from_env(topics.env(CLICKSTREAM_CONSUMER_GROUP=group))
    t = [0.0]
    watcher = ClusterProgress(settings, 2, clock=IdleClock(),
                              watch=CommitWatch(monotonic=lambda: t[0]))
    admin = AdminClient({"bootstrap.servers": brokers})
    committer = Consumer({"bootstrap.servers": brokers, "group.id": group,
                          "enable.auto.commit": False})

    def commit(offset, mark=None):
        first = (TopicPartition(topics.input, 0, offset, metadata=mark.encode()) if mark
                 else TopicPartition(topics.input, 0, offset))
        committer.commit(offsets=[first, TopicPartition(topics.input, 1, 0)], asynchronous=False)

    def record(i):
        return (b"u", json.dumps({"user_id": "u", "event_type": "click", "url": "/",
                                  "ts": 1767225600000 + i}).encode(), 0)

    produce(brokers, topics.input, [record(i) for i in range(3)])
    assert not watcher.caught_up(admin)  # nothing committed yet
    commit(3)
    assert watcher.caught_up(admin)  # at the end of both partitions, no mark needed
    produce(brokers, topics.input, [record(i) for i in range(3, 5)])
    assert not watcher.caught_up(admin)  # behind its end, without a mark
    t[0] = 1.0
    commit(3, Mark("a.1", 1000, True))
    assert watcher.caught_up(admin)  # behind, but live at a commit just seen
    t[0] = 1.0 + 1.25 + 1.5 + 0.01
    assert not watcher.caught_up(admin)  # that commit is too old now
    commit(4, Mark("a.2", 1000, False))
    assert not watcher.caught_up(admin)  # fresh, but it was behind at that commit
    committer.close()
