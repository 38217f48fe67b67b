"""Metric definitions: buckets at every SL threshold, series that exist from the start,
bounded labels with no personal data, and every metric documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from router.metrics import (
    WAIT_BUCKETS,
    DispatchMetrics,
    IngestMetrics,
    RoutingMetrics,
    StateGauges,
    bucket_label,
    wait_buckets,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
# Every label a metric may carry: values come from config (queue) or fixed sets.
BOUNDED_LABELS = {"queue", "state", "topic", "type", "trigger", "action", "result", "formula", "bucket", "le", "model"}


def every_metric() -> list[CollectorRegistry]:
    """One registry per process kind (acd_ami_connected exists in ingest and dispatch)."""
    registries = [CollectorRegistry() for _ in range(4)]
    RoutingMetrics(registries[0], [20.0, 12.5], queues=["billing", "support"])
    IngestMetrics(registries[1])
    DispatchMetrics(registries[2])
    StateGauges(registries[3])
    return registries


@pytest.mark.parametrize("threshold", [20, 12.5, 0.5, 7, 45.0, 1000])
def test_wait_histograms_have_a_bucket_exactly_at_each_threshold(threshold: float) -> None:
    assert float(threshold) in wait_buckets([threshold])
    assert set(WAIT_BUCKETS) <= set(wait_buckets([threshold]))
    registry = CollectorRegistry()
    metrics = RoutingMetrics(registry, [threshold], queues=["q"])
    metrics.answer_wait.labels("q").observe(float(threshold))  # a wait of exactly T counts as within T
    text = generate_latest(registry).decode()
    label = bucket_label(threshold)
    assert f'acd_call_answer_wait_seconds_bucket{{le="{label}",queue="q"}} 1.0' in text


def test_per_queue_series_exist_at_zero_before_the_first_call() -> None:
    registry = CollectorRegistry()
    RoutingMetrics(registry, queues=["billing"])
    for name in ("acd_calls_offered_total", "acd_calls_abandoned_total", "acd_calls_overflowed_total"):
        assert registry.get_sample_value(name, {"queue": "billing"}) == 0
    assert registry.get_sample_value("acd_call_abandon_wait_seconds_count", {"queue": "billing"}) == 0


def test_kept_children_count_where_the_registry_reads_and_labels_are_still_checked() -> None:
    registry = CollectorRegistry()
    metrics = RoutingMetrics(registry, queues=["billing"])
    assert metrics.offered.labels("billing") is metrics.offered.labels("billing")
    for _ in range(3):
        metrics.offered.labels("billing").inc()
        metrics.commands.labels(type="offer").inc()
        metrics.events_consumed.labels("acd.ami.events.v1").inc()
    assert registry.get_sample_value("acd_calls_offered_total", {"queue": "billing"}) == 3
    assert registry.get_sample_value("acd_routing_commands_total", {"type": "offer"}) == 3
    assert registry.get_sample_value("acd_events_consumed_total", {"topic": "acd.ami.events.v1"}) == 3
    with pytest.raises(ValueError):
        metrics.offered.labels("billing", "extra")
    with pytest.raises(ValueError):
        metrics.conflicts.labels("no labels here")


def test_metrics_build_twice_on_separate_registries() -> None:
    every_metric()
    every_metric()


def test_labels_are_bounded_and_carry_no_personal_data() -> None:
    registry = CollectorRegistry()
    groups = [
        RoutingMetrics(registry),
        IngestMetrics(CollectorRegistry()),
        DispatchMetrics(registry),
        StateGauges(registry),
    ]
    groups.append(groups[-1].staffing)
    for group in groups:
        for metric in vars(group).values():
            if isinstance(metric, MetricWrapperBase):
                assert metric._name.startswith("acd_")
                assert set(metric._labelnames) <= BOUNDED_LABELS, (metric._name, metric._labelnames)


def test_every_metric_is_documented() -> None:
    documented = set(re.findall(r"`(acd_[a-z_]+)`", DOC.read_text()))
    for registry in every_metric():
        for family in registry.collect():
            name = family.name + "_total" if family.type == "counter" else family.name
            assert name in documented, f"{name} is not in docs/metrics.md"
