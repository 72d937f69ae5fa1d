"""Live mode (idle closing in system time) and resuming from the recovery store."""

import signal
import time

import pytest

from tests.integration.checks import assert_matches
from tests.integration.kafka_io import produce, read_topic, run_dataflow, start_dataflow, stop, wait_for
from tests.integration.test_pipeline import T0, ev, keyed

pytestmark = pytest.mark.integration


def test_live_windows_and_sessions_close_when_the_input_goes_idle(topics, tmp_path):
    now = int(time.time() * 1000)
    # live0 pauses 4 s (more than the 3 s gap) halfway: two sessions; the others click on.
    events = [ev(f"live{i % 3}", now - 7000 + i * 50 + (4000 if i >= 30 else 0),
                 url=f"/l/{i % 2}") for i in range(60) if i % 3 or i < 30 or i >= 33]
    inputs = produce(topics.brokers, topics.input, keyed(events))
    env = topics.env(CLICKSTREAM_WINDOW_SECONDS=1, CLICKSTREAM_ALLOWED_LATENESS_SECONDS=1,
                     CLICKSTREAM_SESSION_GAP_SECONDS=3, CLICKSTREAM_SESSION_MAX_SECONDS=60)
    flow = start_dataflow(env, log=tmp_path / "flow.log")
    try:
        from tests.integration.oracle import expected_outputs
        expected = expected_outputs(inputs, topics.input, 1000, 1000, None, 3000, 60_000)
        assert len(expected.sessions) == 4 + 2
        # Nothing arrives after the last event: only idle closing can emit the last windows
        # and sessions (a session's after about gap + W + L of idle time).
        wait_for(lambda: len(read_topic(topics.brokers, topics.user)) >= len(expected.user)
                 and len(read_topic(topics.brokers, topics.page)) >= len(expected.page)
                 and len(read_topic(topics.brokers, topics.sessions)) >= len(expected.sessions),
                 timeout=60, what="every window and session to close on idle")
        assert flow.poll() is None, (tmp_path / "flow.log").read_text()
    finally:
        stop(flow)
    assert_matches(topics, inputs, window_ms=1000, lateness_ms=1000, session_gap_ms=3000,
                   session_max_ms=60_000)


def test_killed_dataflow_resumes_from_recovery_without_losing_a_window(topics, tmp_path):
    store = tmp_path / "recovery"  # missing: the service creates it
    first = [ev(f"r{i % 5}", T0 + i * 100, url=f"/r/{i % 4}", session=f"s{i % 2}") for i in range(300)]
    first.append((b"r1", b"{broken", 0))
    inputs = produce(topics.brokers, topics.input, keyed(first))
    flags = ("-r", str(store), "-s", "1", "-b", "0")
    flow = start_dataflow(topics.env(), *flags, log=tmp_path / "first.log")
    try:
        # Windows closed by event time reach the topic, then at least one more snapshot.
        wait_for(lambda: len(read_topic(topics.brokers, topics.user)) >= 20, timeout=60,
                 what="first windows")
        time.sleep(2.5)
        assert flow.poll() is None, (tmp_path / "first.log").read_text()
        assert "created recovery store" in (tmp_path / "first.log").read_text()
    finally:
        stop(flow, signal.SIGKILL)
    emitted_before_kill = len(read_topic(topics.brokers, topics.user))

    # More traffic while it is down, then a bounded run on the same store finishes the job.
    second = [ev(f"r{i % 5}", T0 + 60000 + i * 100, url=f"/r/{i % 4}") for i in range(200)]
    second.append(ev("r2", T0 + 1000))  # late by then for r2
    inputs += produce(topics.brokers, topics.input, keyed(second))
    result = run_dataflow(topics.env(CLICKSTREAM_BOUNDED=1), *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "created recovery store" not in result.stderr

    expected = assert_matches(topics, inputs)  # exactly once, across the kill
    assert 0 < emitted_before_kill < len(expected.user)
    assert any(r["reason"] == "late" for r in expected.dead.values())
