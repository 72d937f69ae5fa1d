"""The service's metrics as Prometheus scrapes them: names, types, labels, buckets."""

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clickstream.runtime.metrics import METRICS, SESSION_DURATION_BUCKETS, Metrics, observe_many
from clickstream.runtime.progress import IdleClock


def scraped(registry: CollectorRegistry) -> dict:
    """{sample name: [(labels, value)]} of the registry's exposition."""
    samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def observed(registry: CollectorRegistry) -> dict:
    """`scraped` without the `_created` timestamps, which differ between two registries."""
    return {name: rows for name, rows in scraped(registry).items() if "created" not in name}


def test_session_metrics_are_exposed_from_the_start_without_labels():
    registry = CollectorRegistry()
    Metrics.build(registry)
    samples = scraped(registry)
    for name in ("clickstream_sessions_emitted_total", "clickstream_sessions_bounced_total",
                 "clickstream_sessions_converted_total", "clickstream_sessions_open",
                 "clickstream_session_duration_seconds_count",
                 "clickstream_session_duration_seconds_sum"):
        assert samples[name] == [({}, 0.0)], name
    # a histogram with no observation still exposes every bucket (panels' quantiles need them)
    buckets = samples["clickstream_session_duration_seconds_bucket"]
    assert [float(labels["le"]) for labels, _ in buckets] == [
        1, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400, float("inf")]
    assert all(value == 0 and set(labels) == {"le"} for labels, value in buckets)
    assert SESSION_DURATION_BUCKETS[-1] == 86400  # CLICKSTREAM_SESSION_MAX_SECONDS's default


def test_session_metrics_count_what_they_are_given():
    registry = CollectorRegistry()
    metrics = Metrics.build(registry)
    metrics.sessions_emitted.inc(3)
    metrics.sessions_bounced.inc()
    metrics.sessions_converted.inc(2)
    metrics.sessions_open.inc(5)
    metrics.sessions_open.dec(2)
    for seconds in (0.0, 12.5, 1800.0, 86400.0):
        metrics.session_duration.observe(seconds)
    value = registry.get_sample_value
    assert value("clickstream_sessions_emitted_total") == 3
    assert value("clickstream_sessions_bounced_total") == 1
    assert value("clickstream_sessions_converted_total") == 2
    assert value("clickstream_sessions_open") == 3
    assert value("clickstream_session_duration_seconds_count") == 4
    assert value("clickstream_session_duration_seconds_sum") == 0 + 12.5 + 1800 + 86400
    assert value("clickstream_session_duration_seconds_bucket", {"le": "1.0"}) == 1
    assert value("clickstream_session_duration_seconds_bucket", {"le": "30.0"}) == 2
    assert value("clickstream_session_duration_seconds_bucket", {"le": "1800.0"}) == 3
    assert value("clickstream_session_duration_seconds_bucket", {"le": "86400.0"}) == 4


def test_the_idle_clock_counter_reads_the_clock_at_each_scrape():
    t = [0.0]
    clock = IdleClock(monotonic=lambda: t[0], confirm_s=60, flicker_s=0)
    registry = CollectorRegistry()
    Metrics.build(registry, clock)
    value = lambda: registry.get_sample_value("clickstream_idle_clock_seconds_total")  # noqa: E731
    assert value() == 0                    # stands still until the input reports
    clock.report("p0", caught_up=True)
    t[0] = 2.5
    assert value() == 2.5                  # caught up: it runs
    clock.report("p0", caught_up=False)
    t[0] = 10.0
    assert value() == 2.5                  # a backlog: it stands still, and the rate is 0
    clock.report("p0", caught_up=True)
    t[0] = 10.25
    assert value() == 2.75
    families = list(text_string_to_metric_families(generate_latest(registry).decode()))
    assert [f.type for f in families if f.name == "clickstream_idle_clock_seconds"] == ["counter"]


def test_the_service_registry_holds_the_session_and_idle_clock_metrics():
    from prometheus_client import REGISTRY

    assert METRICS.sessions_open.collect()[0].name == "clickstream_sessions_open"
    for name in ("clickstream_sessions_emitted_total", "clickstream_sessions_bounced_total",
                 "clickstream_sessions_converted_total", "clickstream_sessions_open",
                 "clickstream_session_duration_seconds_count",
                 "clickstream_idle_clock_seconds_total"):
        assert REGISTRY.get_sample_value(name) is not None, name


@pytest.mark.parametrize("amounts", [
    [],
    [0.0, 1.0],  # exactly a bound is in its bucket (le)
    [1.0001, 9.999, 10.0, 10.5],
    [60.0, 60.001, 1e9],  # past the last bound: +Inf only
    [0.5] * 7 + [86400.0, 86400.5, 3.25],
])
def test_observe_many_scrapes_like_one_observe_per_amount(amounts):
    one, many = CollectorRegistry(), CollectorRegistry()
    buckets = (1.0, 10.0, 30.0, 60.0)
    single = Histogram("d_seconds", "d", buckets=buckets, registry=one)
    batched = Histogram("d_seconds", "d", buckets=buckets, registry=many)
    for amount in amounts:
        single.observe(amount)
    observe_many(batched, amounts)
    assert observed(many) == observed(one)
    assert observed(many)["d_seconds_count"] == [({}, float(len(amounts)))]


def test_observe_many_on_a_labelled_histogram_scrapes_like_one_observe_per_amount():
    """The sinks' emit delay is a labelled histogram (one child per output)."""
    one, many = CollectorRegistry(), CollectorRegistry()
    amounts = [0.05, 0.25, 0.25, 3.0, 1e6]
    single = Histogram("e_seconds", "e", ["output"], buckets=(0.1, 1.0), registry=one)
    batched = Histogram("e_seconds", "e", ["output"], buckets=(0.1, 1.0), registry=many)
    for amount in amounts:
        single.labels("user").observe(amount)
    observe_many(batched.labels("user"), amounts)
    assert observed(many) == observed(one)
    assert observed(many)["e_seconds_bucket"][0] == ({"output": "user", "le": "0.1"}, 1.0)


def test_observe_many_without_the_clients_bucket_values_observes_one_by_one():
    class Plain:
        def __init__(self):
            self.seen = []

        def observe(self, amount):
            self.seen.append(amount)
    plain = Plain()
    observe_many(plain, [3.0, 1.0])
    assert plain.seen == [3.0, 1.0]
