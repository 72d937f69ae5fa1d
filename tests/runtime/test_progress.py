"""The idle clock: system time that counts only while the whole input is caught up."""

from clickstream.runtime.progress import IdleClock


def test_idle_clock_runs_only_while_every_partition_is_caught_up():
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0])
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
