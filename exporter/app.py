"""Wiring: a config becomes a registry, a snapshot store, a shared client and pollers.

The `Exporter` lives as long as the process; a reload hands it a new config. Targets that did
not change keep their poller, and so their counters and schedule; removed targets lose their
series; the registry and the exporter's own counters carry on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.config import Config, ConfigError, ListenAddress, Shard, WebConfig, load_config
from exporter.config.model import DEFAULT_SOURCES
from exporter.logs import add_secrets
from exporter.pipeline.clockstep import ClockStepWatcher
from exporter.pipeline.poller import TargetPoller, same_series
from exporter.pipeline.scheduler import PollScheduler, start_scheduler, sync_jobs
from exporter.pipeline.sharding import shard_config
from exporter.pipeline.snapshot import SnapshotStore
from exporter.pipeline.status import scheduled_runs
from exporter.serve.collector import ConversationCollector
from exporter.serve.render import ExpositionCache
from exporter.serve.selfmetrics import SelfMetrics
from exporter.serve.statuspage import StatusView, TargetRow
from exporter.upstream.client import SplashifyClient
from exporter.upstream.ratelimit import RequestLimiter

if TYPE_CHECKING:
    from exporter.config import Target
    from exporter.pipeline.persistence import StateFile
    from exporter.pipeline.sources import CounterStates

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Overrides:
    """What the command line says over the config file; applied at start and on every reload,
    so that the flags survive one."""

    listen_address: ListenAddress | None = None
    shard: Shard | None = None

    def apply(self, loaded: Config) -> Config:
        """The config as this process runs it: the flags win over the file, then only this
        shard's targets are kept."""
        config = loaded
        if self.listen_address is not None:
            config = dataclasses.replace(config, web=WebConfig(listen_address=self.listen_address))
        return shard_config(config, config.shard if self.shard is None else self.shard)


def summary(config: Config, loaded_targets: int) -> str:
    """One line about the running config; `loaded_targets` counts the file's, before sharding."""
    names = ", ".join(t.name for t in config.targets) or "none"
    owned = f"{len(config.targets)} target(s)"
    if not config.shard.is_everything:
        owned = f"{len(config.targets)} of {loaded_targets} target(s) in shard {config.shard}"
    line = (
        f"{owned} ({names}); poll every {config.poll.interval:g}s, "
        f"lookback {config.poll.lookback:g}s, delay {config.poll.delay:g}s; "
        f"dimensions {', '.join(config.dimensions) or 'none'}"
    )
    if config.sources != DEFAULT_SOURCES:
        line += f"; sources {', '.join(config.sources)}"
    return line


def log_shard(config: Config, loaded_targets: int) -> None:
    """Say which shard this replica is, so that a missing or doubled target can be traced."""
    if config.shard.is_everything:
        return
    if not config.targets:
        # Not an error: with more replicas than targets, or by the luck of the hash, a shard
        # can be empty. It still serves its own metrics, and /ready is true at once.
        log.warning(
            "shard %s owns none of the %d target(s): serving only the exporter's own metrics",
            config.shard,
            loaded_targets,
        )
        return
    # Counts, not names: a shard of a large fleet owns hundreds of targets.
    log.info(
        "shard %s: polling %d of %d target(s)", config.shard, len(config.targets), loaded_targets
    )


class Exporter:
    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        state_file: StateFile | None = None,
    ) -> None:
        self.stopping = threading.Event()
        self.metrics = SelfMetrics()
        self.state_file = state_file
        """--persistence.file: where every successful poll saves its counter state."""
        persistence: tuple[Collector, ...] = ()
        self._restored: Mapping[str, CounterStates] = {}
        if state_file is not None:
            from exporter.serve.selfmetrics import PersistenceMetrics

            persistence_metrics = PersistenceMetrics(clock())
            state_file.on_save = persistence_metrics.saved
            persistence = persistence_metrics.collectors
            # Before the first poll: a restored counter goes on where it was.
            self._restored = state_file.restore(config)
            persistence_metrics.restored.set(len(self._restored))
        self.store = SnapshotStore(config.dimensions, config.layout)
        self._clock = clock
        self.started = clock()
        self._reload_lock = threading.Lock()
        self._reload_from_lock = threading.Lock()
        self._scheduler: PollScheduler | None = None
        self._clock_watch = ClockStepWatcher(self._clock_stepped_back)
        self._pollers: dict[str, TargetPoller] = {}
        self.collector = ConversationCollector(self.store, config.poll.stale_after, clock=clock)
        process = ProcessCollector(registry=None)
        live = _registry(*self.metrics.live, *persistence, process)
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
            self.collector, *self.metrics.polled, *self.metrics.live, *persistence, process,
            self.cache,
        )
        self.store.on_change = self.cache.invalidate
        self.config = config
        self._apply(config)
        self._restored = {}  # only for the pollers of the first config

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
            on_usage=self.metrics.record_usage,
            stop=self.stopping,
            limits=config.limits,
        )
        pollers: dict[str, TargetPoller] = {}
        for target in config.targets:
            poller = self._pollers.get(target.name)
            if poller is not None and poller.target == target:
                poller.reconfigure(config, client)
            else:
                poller = TargetPoller(
                    target,
                    config,
                    client,
                    self.store,
                    self.metrics.count_error,
                    clock=self._clock,
                    observed=self._restored.get(target.name),
                    save=None if self.state_file is None else self.state_file.save,
                )
            pollers[target.name] = poller
        retired = []
        for name, poller in self._pollers.items():
            if pollers.get(name) is not poller:
                poller.retire()  # before the store forgets it: its poll in flight is void
                retired.append(poller.target)
                if name not in pollers:
                    self.metrics.forget(name)
        if self.state_file is not None and retired:
            self._forget_saved(retired, config)
        keep_data = old is None or same_series(old, config)
        kept = [n for n, p in pollers.items() if keep_data and self._pollers.get(n) is p]
        self.store.retain(kept, config.dimensions, config.layout)
        self.metrics.track_targets(list(pollers))
        self.collector.stale_after = config.poll.stale_after
        self.cache.stale_after = config.poll.stale_after
        self._pollers = pollers
        self.config = config
        # The polled self-metrics changed too (targets forgotten or added at 0).
        self.cache.invalidate()

    def _forget_saved(self, retired: list[Target], config: Config) -> None:
        """Removed targets lose their saved state, as they lose their series; a redefined one
        keeps its row, which its new poller's first save replaces."""
        from exporter.pipeline.persistence import target_key

        kept = {target_key(t) for t in config.targets}
        assert self.state_file is not None
        self.state_file.forget([t for t in retired if target_key(t) not in kept])

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
                # A new max_concurrency: new request slots (the limiter, above) and as many
                # poll workers.
                self._scheduler.resize(config.splashify.max_concurrency)
                # Targets whose data the reload dropped (new dimensions) are polled at once.
                unpolled = [
                    p.target.name for p in self.pollers if not self.store.get(p.target.name)
                ]
                sync_jobs(
                    self._scheduler, self.pollers, config.poll.interval, self.stopping, unpolled
                )
            log.info("config reloaded: %d target(s)", len(config.targets))

    def reload_from(self, path: str, overrides: Overrides) -> tuple[bool, str]:
        """Load the config file at `path` and take it; (success, one line saying what happened).

        A bad file leaves the running config as it is. SIGHUP and /-/reload both end here, one
        at a time and in order.
        """
        with self._reload_from_lock:
            try:
                return self._reload_from(path, overrides)
            except Exception as error:  # a bug of ours: the process and the old config stay
                log.exception("config reload failed unexpectedly")
                self.metrics.reloaded(False)
                return False, f"internal error: {type(error).__name__}"

    def _reload_from(self, path: str, overrides: Overrides) -> tuple[bool, str]:
        try:
            loaded = load_config(path)
        except ConfigError as error:
            log.error("config reload failed, the running config stays: %s", error)
            self.metrics.reloaded(False)
            return False, str(error)
        new = overrides.apply(loaded)
        add_secrets([new.splashify.api_key.reveal()])
        self.reload(new)
        self.metrics.reloaded(True)
        log_shard(new, len(loaded.targets))
        return True, f"config reloaded: {summary(new, len(loaded.targets))}"

    def start_polling(self) -> None:
        self.cache.start()
        self._scheduler = start_scheduler(
            self.pollers,
            self.config.poll.interval,
            self.config.splashify.max_concurrency,
            self.stopping,
        )
        self._clock_watch.start()

    def _clock_stepped_back(self, step: float) -> None:
        log.warning(
            "the wall clock stepped back by %.0fs: every poll is rescheduled from the new time",
            -step,
        )
        if self._scheduler is not None:
            self._scheduler.reschedule_from_now()

    def stop(self) -> None:
        """Stop scheduling; backoffs and waits for a token end at once."""
        self.stopping.set()
        self._clock_watch.stop()
        self.cache.stop()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)

    def is_ready(self) -> bool:
        """True once every target was polled at least once, successfully or not, and /metrics
        shows it (the render follows the store by up to render.REBUILD_SPACING)."""
        shown = self.cache.current().view.snapshots
        return all(name in shown for name in self._pollers)

    def status_view(self) -> StatusView:
        """What the status page and /api/v1/targets show, taken now (no lock: every part is an
        immutable value that its owner replaces)."""
        config, pollers = self.config, self.pollers
        snapshots = self.store.current().snapshots
        runs = scheduled_runs(self._scheduler)
        rows = tuple(
            TargetRow(
                p.target, p.status, snapshots.get(p.target.name), runs.get(p.target.name)
            )
            for p in pollers
        )
        return StatusView(__version__, self.started, self._clock(), config, rows)

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
