"""The exporter's own counters, instrumented directly (they are ours, not proxied data).

Two groups, because /metrics renders them at different times (see exporter/serve/render.py):
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
from exporter.serve.metrics import (
    API_REGAIN_ACCESS,
    API_REQUESTS,
    API_USAGE,
    BUILD_INFO,
    PERSISTENCE_LAST_SAVE_SUCCESS,
    PERSISTENCE_LAST_SAVE_TIME,
    PERSISTENCE_RESTORED,
    PERSISTENCE_SAVE_FAILURES,
    POLL_ERRORS,
    RELOAD_SUCCESS_TIME,
    RELOAD_SUCCESSFUL,
    TARGETS,
    SelfMetricSpec,
)
from exporter.upstream.errors import ERROR_REASONS
from exporter.upstream.usage import Usage


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """The metrics, registered in `registry` if one is given (else register the groups)."""
        self.api_requests = _counter(API_REQUESTS)
        self.poll_errors = _counter(POLL_ERRORS)
        build_info = _gauge(BUILD_INFO)
        build_info.labels(__version__, platform.python_version()).set(1)
        self.targets = _gauge(TARGETS)
        self.reload_successful = _gauge(RELOAD_SUCCESSFUL)
        self.reload_success_time = _gauge(RELOAD_SUCCESS_TIME)
        self.reload_successful.set(1)
        self.reload_success_time.set(time.time())
        # Usage is set while a poll runs; the wait to regain access counts down between polls.
        self.api_usage = _gauge(API_USAGE)
        self.api_regain_access = _gauge(API_REGAIN_ACCESS)
        self.polled: tuple[Collector, ...] = (self.api_requests, self.api_usage, self.poll_errors)
        self.live: tuple[Collector, ...] = (
            self.api_regain_access,
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
        self._usage: dict[str, set[tuple[str, str]]] = {}
        self._regain_until: dict[str, float] = {}

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
            for usage_type, measure in self._usage.pop(name, set()):
                self.api_usage.remove(name, usage_type, measure)
            if self._regain_until.pop(name, None) is not None:
                self.api_regain_access.remove(name)

    def count_response(self, target_name: str, code: str) -> None:
        with self._lock:
            if target_name not in self._tracked:
                return
            self._codes.setdefault(target_name, set()).add(code)
            self.api_requests.labels(target_name, code).inc()

    def record_usage(self, target_name: str, usage: Usage) -> None:
        """What an answer's usage headers said. A reading stays until an answer replaces it:
        an error answer without the headers says nothing about the budget."""
        with self._lock:
            if target_name not in self._tracked:
                return
            seen = self._usage.setdefault(target_name, set())
            for key, percent in usage.percent.items():
                self.api_usage.labels(target_name, *key).set(percent)
                seen.add(key)
            if usage.regain_access_seconds is None:
                return
            first = target_name not in self._regain_until
            self._regain_until[target_name] = time.time() + usage.regain_access_seconds
            if first:
                self.api_regain_access.labels(target_name).set_function(
                    lambda: self._regain_left(target_name)
                )

    def _regain_left(self, target_name: str) -> float:
        until = self._regain_until.get(target_name)
        return 0.0 if until is None else max(0.0, until - time.time())

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


class PersistenceMetrics:
    """The state file's health (with --persistence.file only); rendered on every scrape."""

    def __init__(self, opened_at: float) -> None:
        self.last_save_success = _gauge(PERSISTENCE_LAST_SAVE_SUCCESS)
        self.last_save_time = _gauge(PERSISTENCE_LAST_SAVE_TIME)
        self.save_failures = _counter(PERSISTENCE_SAVE_FAILURES)
        self.restored = _gauge(PERSISTENCE_RESTORED)
        self.last_save_success.set(1)
        self.last_save_time.set(opened_at)
        self.collectors: tuple[Collector, ...] = (
            self.last_save_success,
            self.last_save_time,
            self.save_failures,
            self.restored,
        )

    def saved(self, success: bool, when: float) -> None:
        self.last_save_success.set(1 if success else 0)
        if success:
            self.last_save_time.set(when)
        else:
            self.save_failures.inc()


def _counter(spec: SelfMetricSpec) -> Counter:
    return Counter(spec.name, spec.documentation, spec.labels, registry=None)


def _gauge(spec: SelfMetricSpec) -> Gauge:
    return Gauge(spec.name, spec.documentation, spec.labels, registry=None)
