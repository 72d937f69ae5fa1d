"""The idle clock: system time that counts only while the whole input is caught up."""

import pytest

from clickstream.runtime.progress import IdleClock


def test_idle_clock_runs_only_while_every_partition_is_caught_up():
    t = [0.0]
    # Reports here are seconds apart; no allowance for a partition falling behind.
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=60, flicker_s=0)
    t[0] = 1.0
    assert clock.now_ms() == 0             # stands still until a partition reports
    clock.report("p0", caught_up=True)
    t[0] = 2.0
    assert clock.now_ms() == 1000
    clock.report("p0", caught_up=False)
    t[0] = 5.0
    assert clock.now_ms() == 1000
    clock.report("p1", caught_up=True)
    t[0] = 6.0
    assert clock.now_ms() == 1000
    clock.report("p0", caught_up=True)
    t[0] = 6.5
    assert clock.now_ms() == 1500


def test_idle_clock_of_a_process_without_partitions_starts_after_the_grace_time():
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], grace_s=10)
    t[0] = 9.0
    assert clock.now_ms() == 0
    t[0] = 12.0
    assert clock.now_ms() == 2000


def test_a_stalled_worker_stops_the_clock_soon_after_its_last_report():
    """Sources report on every poll; a worker held up for seconds (building a sink, a slow
    commit) must not have that time counted as idle: its input may be waiting unread."""
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=0.5)
    clock.report("p0", caught_up=True)
    clock.report("p1", caught_up=True)
    t[0] = 3.0  # no report for 3 s
    assert clock.now_ms() == 500
    clock.report("p0", caught_up=True)
    t[0] = 3.25
    assert clock.now_ms() == 500  # p1 has still not reported since
    clock.report("p1", caught_up=True)
    t[0] = 3.5
    assert clock.now_ms() == 750


def test_reports_from_a_watcher_thread_do_not_keep_the_clock_running():
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=0.5)
    clock.report("cluster", caught_up=True, confirms=False)
    clock.report("p0", caught_up=True)
    t[0] = 2.0
    clock.report("cluster", caught_up=True, confirms=False)
    assert clock.now_ms() == 500


def test_a_process_without_partitions_is_not_held_to_reports():
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], grace_s=10, confirm_s=0.5)
    clock.report("cluster", caught_up=True, confirms=False)
    t[0] = 5.0
    assert clock.now_ms() == 5000


def test_start_up_work_holds_the_clock_past_the_grace_time():
    """A restart that read back for 34 s let the clock run from 10 s on, before any source had
    polled (the soak): restored windows closed on that time, their replayed events turned late."""
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], grace_s=10, confirm_s=60)
    with clock.starting("sink user[0]"):
        t[0] = 34.0
        assert clock.now_ms() == 0
    clock.expect("p0")  # a source partition built: lagging until its first poll
    t[0] = 40.0
    assert clock.now_ms() == 0
    clock.report("p0", caught_up=True)
    t[0] = 41.0
    assert clock.now_ms() == 1000


def test_a_process_without_partitions_runs_once_its_start_up_work_is_done():
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], grace_s=10)
    with clock.starting("sink"):
        t[0] = 30.0
    t[0] = 31.0
    assert clock.now_ms() == 1000


def test_a_caught_up_partition_briefly_behind_does_not_stop_the_clock():
    """Live, a poll often finds a few messages that came while the worker was busy and the
    next poll reads them: no backlog, so the clock goes on (it lost 7 % at 5,000 events/s)."""
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=60, flicker_s=0.5)
    clock.report("p0", caught_up=True)
    for step in range(1, 41):  # behind at every other poll, 0.1 s apart
        t[0] = step * 0.1
        clock.report("p0", caught_up=step % 2 == 0)
    assert clock.now_ms() == 4000


def test_a_backlog_stops_the_clock_once_it_has_lasted_the_allowance():
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=60, flicker_s=0.5)
    clock.report("p0", caught_up=True)
    clock.report("p1", caught_up=True)
    t[0] = 1.0
    clock.report("p0", caught_up=False)  # behind from 1.0 on
    t[0] = 1.3
    clock.report("p0", caught_up=False)
    assert clock.now_ms() == 1300
    t[0] = 4.0
    clock.report("p0", caught_up=False)
    assert clock.now_ms() == 1500  # counted up to 1.0 + 0.5 only
    t[0] = 6.0
    clock.report("p0", caught_up=True)
    t[0] = 6.5
    assert clock.now_ms() == 2000
    clock.report("p0", caught_up=False)  # a new episode gets a new allowance
    t[0] = 6.75
    assert clock.now_ms() == 2250


def test_a_partition_behind_since_it_was_built_gets_no_allowance():
    """A restart reading back its backlog: never caught up, so never idle."""
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=60, flicker_s=0.5)
    clock.expect("p0")
    clock.report("p1", caught_up=True)
    t[0] = 0.2
    clock.report("p0", caught_up=False)
    t[0] = 3.0
    assert clock.now_ms() == 0
    clock.report("p2", caught_up=False)  # its first report: behind
    clock.report("p0", caught_up=True)
    t[0] = 4.0
    assert clock.now_ms() == 0


@pytest.mark.parametrize("steps, backlog", [
    # (time, caught up?) reports of one partition after it was built, and the verdict after them
    ([], True),                                   # built, never polled
    ([(0.1, False)], True),                       # behind since it was built
    ([(0.1, True)], False),
    ([(0.1, True), (0.2, False)], False),         # behind for less than the allowance
    ([(0.1, True), (0.2, False), (0.8, False)], True),  # for longer
    ([(0.1, True), (0.2, False), (0.8, False), (0.9, True)], False),
])
def test_backlog_is_what_stops_the_clock(steps, backlog):
    """What a source's commit tells the other processes (runtime.liveness)."""
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=60, flicker_s=0.5)
    clock.expect("p0")
    for at, caught_up in steps:
        t[0] = at
        clock.report("p0", caught_up=caught_up)
    assert clock.backlog("p0") is backlog
