"""The exporter's own counters: names from the metrics table, tracking of targets, forgetting."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry

from exporter import __version__
from exporter.serve.metrics import API_REQUESTS, POLL_ERRORS
from exporter.serve.selfmetrics import SelfMetrics
from exporter.upstream.errors import ERROR_REASONS


def fresh() -> tuple[SelfMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    return SelfMetrics(registry), registry


def requests(registry: CollectorRegistry, name: str, code: str) -> float | None:
    labels = {"waba_name": name, "code": code}
    return registry.get_sample_value(API_REQUESTS.name + "_total", labels)


def errors(registry: CollectorRegistry, name: str, reason: str) -> float | None:
    labels = {"waba_name": name, "reason": reason}
    return registry.get_sample_value(POLL_ERRORS.name + "_total", labels)


def test_every_reason_starts_at_zero_for_a_tracked_target() -> None:
    metrics, registry = fresh()
    metrics.track_targets(["acme"])
    assert {reason: errors(registry, "acme", reason) for reason in ERROR_REASONS} == dict.fromkeys(
        ERROR_REASONS, 0.0
    )
    assert registry.get_sample_value("whatsapp_exporter_targets") == 1.0


def test_counts_go_to_tracked_targets_only() -> None:
    metrics, registry = fresh()
    metrics.track_targets(["acme"])
    metrics.count_response("acme", "200")
    metrics.count_response("acme", "200")
    metrics.count_error("acme", "timeout")
    # A removed target's poll still in flight must not bring its series back.
    metrics.count_response("gone", "200")
    metrics.count_error("gone", "timeout")
    assert requests(registry, "acme", "200") == 2.0
    assert errors(registry, "acme", "timeout") == 1.0
    assert requests(registry, "gone", "200") is None
    assert errors(registry, "gone", "timeout") is None


def test_forget_drops_every_series_of_a_target() -> None:
    metrics, registry = fresh()
    metrics.track_targets(["acme", "globex"])
    metrics.count_response("acme", "429")
    metrics.count_error("acme", "rate_limited")
    metrics.forget("acme")
    assert requests(registry, "acme", "429") is None
    assert all(errors(registry, "acme", reason) is None for reason in ERROR_REASONS)
    assert errors(registry, "globex", "rate_limited") == 0.0
    metrics.count_response("acme", "200")  # no longer tracked
    assert requests(registry, "acme", "200") is None


def test_reload_status_and_build_info() -> None:
    metrics, registry = fresh()
    assert registry.get_sample_value("whatsapp_exporter_config_last_reload_successful") == 1.0
    before = registry.get_sample_value(
        "whatsapp_exporter_config_last_reload_success_timestamp_seconds"
    )
    metrics.reloaded(False)
    assert registry.get_sample_value("whatsapp_exporter_config_last_reload_successful") == 0.0
    assert (
        registry.get_sample_value("whatsapp_exporter_config_last_reload_success_timestamp_seconds")
        == before
    )
    metrics.reloaded(True)
    assert registry.get_sample_value("whatsapp_exporter_config_last_reload_successful") == 1.0
    labels = {"version": __version__, "python_version": platform.python_version()}
    assert registry.get_sample_value("whatsapp_exporter_build_info", labels) == 1.0


def test_the_groups_hold_every_metric_once() -> None:
    metrics = SelfMetrics()
    assert len(set(metrics.polled) | set(metrics.live)) == len(metrics.polled) + len(metrics.live)
    assert metrics.api_requests in metrics.polled and metrics.poll_errors in metrics.polled
