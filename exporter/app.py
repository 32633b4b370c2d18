"""Wiring: a config becomes a registry, a snapshot store, a shared client and pollers.

The `Exporter` lives as long as the process; a reload hands it a new config. Targets that did
not change keep their poller, and so their counters and schedule; removed targets lose their
series; the registry and the exporter's own counters carry on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.registry import Collector

from exporter.client import SplashifyClient
from exporter.collector import ConversationCollector
from exporter.config import Config
from exporter.poller import TargetPoller, same_series
from exporter.ratelimit import RequestLimiter
from exporter.render import ExpositionCache
from exporter.scheduler import start_scheduler, sync_jobs
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import SnapshotStore

log = logging.getLogger(__name__)


class Exporter:
    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        # `_created` series double every counter's output and mean nothing to a poll-based
        # exporter; Prometheus does not need them.
        disable_created_metrics()
        self.stopping = threading.Event()
        self.metrics = SelfMetrics()
        self.store = SnapshotStore(config.dimensions)
        self._clock = clock
        self._reload_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None
        self._pollers: dict[str, TargetPoller] = {}
        self.collector = ConversationCollector(self.store, config.poll.stale_after, clock=clock)
        process = ProcessCollector(registry=None)
        live = _registry(*self.metrics.live, process)
        # What /metrics serves: rendered once per swap, plus the live self-metrics per scrape.
        self.cache = ExpositionCache(
            self.store,
            polled=_registry(*self.metrics.polled),
            live=live,
            stale_after=config.poll.stale_after,
            clock=clock,
        )
        live.register(self.cache)
        self.metrics.on_change = self.cache.refresh_live
        # Everything, rendered by prometheus-client on demand: `--once`, and /metrics requests
        # with a `name[]` filter. In the same order as the cached body, so that the two agree.
        self.registry = _registry(
            self.collector, *self.metrics.polled, *self.metrics.live, process, self.cache
        )
        self.store.on_change = self.cache.invalidate
        self.config = config
        self._apply(config)

    @property
    def pollers(self) -> tuple[TargetPoller, ...]:
        return tuple(self._pollers.values())

    def _apply(self, config: Config) -> None:
        """Point everything at `config`; reuse the poller of every unchanged target."""
        old = self.config if self._pollers else None
        limits = (config.splashify.max_concurrency, config.splashify.requests_per_second)
        if old is None or limits != (
            old.splashify.max_concurrency,
            old.splashify.requests_per_second,
        ):
            # Kept when unchanged: a fresh limiter beside the old one, still used by polls in
            # flight, would let both budgets run at once.
            self._limiter = RequestLimiter(*limits, self.stopping)
        client = SplashifyClient(
            config.splashify,
            self._limiter,
            on_response=self.metrics.count_response,
            stop=self.stopping,
        )
        pollers: dict[str, TargetPoller] = {}
        for target in config.targets:
            poller = self._pollers.get(target.name)
            if poller is not None and poller.target == target:
                poller.reconfigure(config, client)
            else:
                poller = TargetPoller(
                    target, config, client, self.store, self.metrics, clock=self._clock
                )
            pollers[target.name] = poller
        for name, poller in self._pollers.items():
            if pollers.get(name) is not poller:
                poller.retire()  # before the store forgets it: its poll in flight is void
                if name not in pollers:
                    self.metrics.forget(name)
        keep_data = old is None or same_series(old, config)
        kept = [n for n, p in pollers.items() if keep_data and self._pollers.get(n) is p]
        self.store.retain(kept, config.dimensions)
        self.metrics.track_targets(list(pollers))
        self.collector.stale_after = config.poll.stale_after
        self.cache.stale_after = config.poll.stale_after
        self._pollers = pollers
        self.config = config
        # The polled self-metrics changed too (targets forgotten or added at 0).
        self.cache.invalidate()

    def reload(self, config: Config) -> None:
        """Take a new config while running. The listen address needs a restart."""
        with self._reload_lock:
            if config.web != self.config.web:
                log.warning("web.listen_address changed: it takes effect after a restart")
            self._apply(config)
            # Served at once: series of removed targets or old dimensions must not outlive the
            # reload's answer.
            self.cache.refresh()
            if self._scheduler is not None:
                # Targets whose data the reload dropped (new dimensions) are polled at once.
                unpolled = [
                    p.target.name for p in self.pollers if not self.store.get(p.target.name)
                ]
                sync_jobs(
                    self._scheduler, self.pollers, config.poll.interval, self.stopping, unpolled
                )
            log.info("config reloaded: %d target(s)", len(config.targets))

    def start_polling(self) -> None:
        self.cache.start()
        self._scheduler = start_scheduler(
            self.pollers,
            self.config.poll.interval,
            self.config.splashify.max_concurrency,
            self.stopping,
        )

    def stop(self) -> None:
        """Stop scheduling; backoffs and waits for a token end at once."""
        self.stopping.set()
        self.cache.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)

    def is_ready(self) -> bool:
        """True once every target was polled at least once, successfully or not, and /metrics
        shows it (the render follows the store by up to render.REBUILD_SPACING)."""
        shown = self.cache.current().view.snapshots
        return all(name in shown for name in self._pollers)

    def poll_all_once(self) -> bool:
        """Poll every target concurrently (within the client's limits); True if all succeeded."""
        with ThreadPoolExecutor(self.config.splashify.max_concurrency) as pool:
            results = list(pool.map(lambda poller: poller.poll(), self.pollers))
        self.cache.refresh()
        return all(results)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _registry(*collectors: Collector) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry
