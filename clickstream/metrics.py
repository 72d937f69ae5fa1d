"""Every Prometheus metric of the service, in one place.

Built from an injectable registry (tests pass their own); the dataflow uses the default
registry, which bytewax serves at :3030/metrics when BYTEWAX_DATAFLOW_API_ENABLED=true.
Labels are low-cardinality on purpose: never a user id or a url.
"""

from dataclasses import dataclass

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


@dataclass(frozen=True)
class Metrics:
    events_consumed: Counter
    events_malformed: Counter
    events_late: Counter
    windows_emitted: Counter
    records_produced: Counter
    produce_errors: Counter
    consumer_lag: Gauge

    @classmethod
    def build(cls, registry: CollectorRegistry) -> "Metrics":
        return cls(
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
                "clickstream_records_produced", "Records delivered to Kafka", ["topic"],
                registry=registry),
            produce_errors=Counter(
                "clickstream_produce_errors", "Kafka deliveries that failed", ["topic"],
                registry=registry),
            consumer_lag=Gauge(
                "clickstream_consumer_lag", "Messages behind the partition's end offset",
                ["topic", "partition"], registry=registry),
        )


METRICS = Metrics.build(REGISTRY)
