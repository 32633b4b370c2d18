"""The exporter's own counters, instrumented directly (they are ours, not proxied data).

Two groups, because /metrics renders them at different times (see exporter/render.py):
`polled` changes only while a poll runs, so it is rendered with the data after each swap;
`live` may change at any moment and is rendered on every scrape.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.errors import ERROR_REASONS


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """The metrics, registered in `registry` if one is given (else register the groups)."""
        self.api_requests = Counter(
            "whatsapp_exporter_api_requests",
            'Requests sent to the Splashify API, by HTTP status (code="error": no response).',
            ["waba_name", "code"],
            registry=None,
        )
        self.poll_errors = Counter(
            "whatsapp_exporter_poll_errors",
            "Failed polls, by reason (" + ", ".join(ERROR_REASONS) + ").",
            ["waba_name", "reason"],
            registry=None,
        )
        build_info = Gauge(
            "whatsapp_exporter_build_info",
            "Always 1; labels say which exporter and Python are running.",
            ["version", "python_version"],
            registry=None,
        )
        build_info.labels(__version__, platform.python_version()).set(1)
        self.targets = Gauge(
            "whatsapp_exporter_targets",
            "Targets (WABAs and partner customers) in the loaded config.",
            registry=None,
        )
        self.reload_successful = Gauge(
            "whatsapp_exporter_config_last_reload_successful",
            "1 if the last config reload succeeded (or none was asked for yet), else 0.",
            registry=None,
        )
        self.reload_success_time = Gauge(
            "whatsapp_exporter_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded successfully (start-up included).",
            registry=None,
        )
        self.reload_successful.set(1)
        self.reload_success_time.set(time.time())
        self.polled: tuple[Collector, ...] = (self.api_requests, self.poll_errors)
        self.live: tuple[Collector, ...] = (
            build_info,
            self.targets,
            self.reload_successful,
            self.reload_success_time,
        )
        if registry is not None:
            for collector in self.polled + self.live:
                registry.register(collector)
        self.on_change: Callable[[], None] | None = None
        """Called after a reload's outcome is set, so that the next scrape shows it."""
        self._lock = threading.Lock()
        self._codes: dict[str, set[str]] = {}
        self._tracked: frozenset[str] = frozenset()

    def track_targets(self, names: list[str]) -> None:
        """The configured targets; counts for any other name (a removed target's poll still in
        flight) are dropped, so that its series do not come back after `forget()`."""
        self._tracked = frozenset(names)
        self.targets.set(len(names))
        # Every reason starts at 0, so that increase() sees the first error of a kind.
        for name in names:
            for reason in ERROR_REASONS:
                self.poll_errors.labels(name, reason)

    def forget(self, name: str) -> None:
        """Drop a removed target's series, so that they do not linger until a restart."""
        with self._lock:
            self._tracked = self._tracked - {name}
            for reason in ERROR_REASONS:
                self.poll_errors.remove(name, reason)
            for code in self._codes.pop(name, set()):
                self.api_requests.remove(name, code)

    def count_response(self, target_name: str, code: str) -> None:
        with self._lock:
            if target_name not in self._tracked:
                return
            self._codes.setdefault(target_name, set()).add(code)
            self.api_requests.labels(target_name, code).inc()

    def count_error(self, target_name: str, reason: str) -> None:
        with self._lock:
            if target_name in self._tracked:
                self.poll_errors.labels(target_name, reason).inc()

    def reloaded(self, success: bool) -> None:
        self.reload_successful.set(1 if success else 0)
        if success:
            self.reload_success_time.set(time.time())
        if self.on_change is not None:
            self.on_change()
