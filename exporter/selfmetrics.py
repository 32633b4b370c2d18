"""The exporter's own counters, instrumented directly (they are ours, not proxied data)."""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge

from exporter import __version__
from exporter.errors import ERROR_REASONS


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry, target_names: list[str]) -> None:
        self.api_requests = Counter(
            "whatsapp_exporter_api_requests",
            'Requests sent to the Splashify API, by HTTP status (code="error": no response).',
            ["waba_name", "code"],
            registry=registry,
        )
        self.poll_errors = Counter(
            "whatsapp_exporter_poll_errors",
            "Failed polls, by reason (" + ", ".join(ERROR_REASONS) + ").",
            ["waba_name", "reason"],
            registry=registry,
        )
        build_info = Gauge(
            "whatsapp_exporter_build_info",
            "Always 1; labels say which exporter and Python are running.",
            ["version", "python_version"],
            registry=registry,
        )
        build_info.labels(__version__, platform.python_version()).set(1)
        targets = Gauge(
            "whatsapp_exporter_targets",
            "Targets (WABAs and partner customers) in the loaded config.",
            registry=registry,
        )
        targets.set(len(target_names))
        # Every reason starts at 0, so that increase() sees the first error of a kind.
        for name in target_names:
            for reason in ERROR_REASONS:
                self.poll_errors.labels(name, reason)

    def count_response(self, target_name: str, code: str) -> None:
        self.api_requests.labels(target_name, code).inc()

    def count_error(self, target_name: str, reason: str) -> None:
        self.poll_errors.labels(target_name, reason).inc()
