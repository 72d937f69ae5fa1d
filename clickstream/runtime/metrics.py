"""Every Prometheus metric of the service, in one place.

Built from an injectable registry (tests pass their own); the dataflow uses the default
registry, which bytewax serves with its own step metrics at :3030/metrics when
BYTEWAX_DATAFLOW_API_ENABLED=true (one port per process: BYTEWAX_DATAFLOW_API_PORT).
Labels are low-cardinality on purpose: never a user id or a url. Durations are in seconds.
"""

from bisect import bisect_left
from collections import Counter as Tally
from dataclasses import dataclass
from typing import Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily

from clickstream.runtime.progress import IDLE_CLOCK, EventTimeWatermark, IdleClock

# From "on time" to "someone should look": emits wait for the epoch commit (-s), so the
# buckets reach well past the usual 1-10 s snapshot intervals.
EMIT_DELAY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# Session durations, up to the longest CLICKSTREAM_SESSION_MAX_SECONDS allows by default (a day).
SESSION_DURATION_BUCKETS = (1.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
                            7200.0, 14400.0, 43200.0, 86400.0)


@dataclass(frozen=True)
class Metrics:
    events_consumed: Counter
    events_malformed: Counter
    events_late: Counter
    windows_emitted: Counter
    records_produced: Counter
    produce_errors: Counter
    duplicates_suppressed: Counter
    producer_queue_full: Counter
    sink_pending: Gauge
    consumer_lag: Gauge
    event_time_lag: Gauge
    window_emit_delay: Histogram
    keys: Gauge
    keys_expired: Counter
    recovery_store_bytes: Gauge
    sessions_emitted: Counter
    sessions_bounced: Counter
    sessions_converted: Counter
    sessions_open: Gauge
    session_duration: Histogram
    idle_clock: "IdleClockSeconds"
    watermark: EventTimeWatermark

    @classmethod
    def build(cls, registry: CollectorRegistry, clock: IdleClock = IDLE_CLOCK) -> "Metrics":
        watermark = EventTimeWatermark()
        idle_clock = IdleClockSeconds(clock)
        registry.register(idle_clock)
        event_time_lag = Gauge(
            "clickstream_event_time_lag_seconds",
            "Wall clock minus this process's event-time watermark", registry=registry)
        event_time_lag.set_function(watermark.lag_seconds)
        metrics = cls(
            events_consumed=Counter(
                "clickstream_events_consumed", "Input messages read from Kafka", registry=registry),
            events_malformed=Counter(
                "clickstream_events_malformed", "Input messages rejected as malformed",
                registry=registry),
            events_late=Counter(
                "clickstream_events_late", "Valid events that arrived after their window closed",
                registry=registry),
            windows_emitted=Counter(
                "clickstream_windows_emitted", "Window results emitted", ["output"],
                registry=registry),
            records_produced=Counter(
                "clickstream_records_produced", "Records acknowledged by Kafka", ["topic"],
                registry=registry),
            produce_errors=Counter(
                "clickstream_produce_errors", "Kafka deliveries that failed", ["topic"],
                registry=registry),
            duplicates_suppressed=Counter(
                "clickstream_duplicates_suppressed",
                "Re-emitted records not written again because Kafka already held them after a "
                "resume", ["topic"], registry=registry),
            producer_queue_full=Counter(
                "clickstream_producer_queue_full",
                "Times a sink waited for deliveries because its local producer queue was full",
                ["topic"], registry=registry),
            sink_pending=Gauge(
                "clickstream_sink_pending_records",
                "Records Kafka held beyond the snapshot this run resumed from that the stages "
                "have not emitted again yet (they will not be written twice)",
                ["topic", "partition"], registry=registry),
            consumer_lag=Gauge(
                "clickstream_consumer_lag", "Messages behind the partition's end offset",
                ["topic", "partition"], registry=registry),
            event_time_lag=event_time_lag,
            window_emit_delay=Histogram(
                "clickstream_window_emit_delay_seconds",
                "From the moment a window may close to its record being committed to Kafka",
                ["output"], buckets=EMIT_DELAY_BUCKETS, registry=registry),
            keys=Gauge(
                "clickstream_keys", "Keys (users, urls) whose state this process holds",
                ["stage"], registry=registry),
            keys_expired=Counter(
                "clickstream_keys_expired",
                "Keys forgotten because their shard's event time passed them by the state TTL",
                ["stage"], registry=registry),
            recovery_store_bytes=Gauge(
                "clickstream_recovery_store_bytes",
                "Bytes on disk of the recovery store this process writes (0 without recovery)",
                registry=registry),
            sessions_emitted=Counter(
                "clickstream_sessions_emitted", "User sessions emitted (final)", registry=registry),
            sessions_bounced=Counter(
                "clickstream_sessions_bounced",
                "Sessions emitted that were bounces: one event, a page_view", registry=registry),
            sessions_converted=Counter(
                "clickstream_sessions_converted", "Sessions emitted that hold a purchase event",
                registry=registry),
            sessions_open=Gauge(
                "clickstream_sessions_open", "Sessions this process holds open (not emitted yet)",
                registry=registry),
            session_duration=Histogram(
                "clickstream_session_duration_seconds",
                "Emitted sessions' duration: last event time minus first",
                buckets=SESSION_DURATION_BUCKETS, registry=registry),
            idle_clock=idle_clock,
            watermark=watermark,
        )
        # Series that exist from the start read 0 instead of "no data" in alerts and panels.
        for output in ("user", "page"):
            metrics.windows_emitted.labels(output)
            metrics.window_emit_delay.labels(output)
            metrics.keys.labels(output)
            metrics.keys_expired.labels(output)
        return metrics


class IdleClockSeconds:
    """`clickstream_idle_clock_seconds_total`, read from the process's idle clock at scrape
    time: its rate is the share of time the clock runs. Windows and sessions of quiet keys
    close only on this clock, so a rate of 0 while the consumer lag is near 0 is why they
    wait (in a cluster: some process reports a backlog, see runtime/liveness.py)."""

    def __init__(self, clock: IdleClock):
        self._clock = clock

    def collect(self):
        yield CounterMetricFamily(
            "clickstream_idle_clock_seconds",
            "Seconds this process's idle clock ran: its input and the cluster's were caught up, "
            "so windows and sessions of quiet keys could close", value=self._clock.now_ms() / 1000)


METRICS = Metrics.build(REGISTRY)


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe` of each amount, one increment per bucket and batch: per amount it
    costs about a microsecond (a Python loop over the buckets, a lock per increment), and the
    user stage observes every closed session. Uses the client's own bucket values (its
    `_upper_bounds`, `_buckets`, `_sum`, as of 0.20); without them it observes one by one."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    for index, count in Tally(bisect_left(bounds, amount) for amount in amounts).items():
        buckets[index].inc(count)  # bisect_left: the first bound with amount <= bound
    total.inc(sum(amounts))
