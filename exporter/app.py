"""Wiring: one config becomes a registry, a snapshot store, a shared client and pollers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from exporter.client import SplashifyClient
from exporter.collector import ConversationCollector
from exporter.config import Config
from exporter.poller import TargetPoller
from exporter.ratelimit import RequestLimiter
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import SnapshotStore


class Exporter:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        # `_created` series double every counter's output and mean nothing to a poll-based
        # exporter; Prometheus does not need them.
        disable_created_metrics()
        self.config = config
        self.stopping = threading.Event()
        self.registry = CollectorRegistry()
        self.store = SnapshotStore()
        metrics = SelfMetrics(self.registry, [t.name for t in config.targets])
        limiter = RequestLimiter(
            config.splashify.max_concurrency, config.splashify.requests_per_second
        )
        client = SplashifyClient(
            config.splashify, limiter, on_response=metrics.count_response, stop=self.stopping
        )
        self.pollers = tuple(
            TargetPoller(target, config, client, self.store, metrics, clock=clock)
            for target in config.targets
        )
        self.registry.register(ConversationCollector(self.store, config.dimensions))
        ProcessCollector(registry=self.registry)

    def is_ready(self) -> bool:
        """True once every target was polled at least once, successfully or not."""
        return all(self.store.get(p.target.name) is not None for p in self.pollers)

    def poll_all_once(self) -> bool:
        """Poll every target concurrently (within the client's limits); True if all succeeded."""
        with ThreadPoolExecutor(self.config.splashify.max_concurrency) as pool:
            return all(list(pool.map(lambda poller: poller.poll(), self.pollers)))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
