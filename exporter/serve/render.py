"""The /metrics body, rendered once per snapshot swap and served from memory on every scrape.

The data only changes when a poll ends, so rendering it on every scrape (what a collector does)
burns a core for nothing once there are tens of thousands of series. Here:

- a background thread re-renders when the store says a snapshot was swapped in (at most once
  per `REBUILD_SPACING`, so a burst of polls costs one render), and when a target's data goes
  stale;
- each target's per-series lines are rendered and compressed once per poll of that target and
  reused until its data changes (a failed poll changes only the small per-target gauges);
- a scrape takes the last rendered body as it is (it never waits for a poll or a render),
  renders only the self-metrics that change between polls (process CPU and memory, build info,
  reload status: the "live" registry) and appends them.

What is cached is the compressed text of both formats (Prometheus text 0.0.4 and OpenMetrics,
which share every sample line); a scraper that does not accept gzip gets it inflated on the fly.

The metric names, help and types come from `collector.METRICS`, the same table the collector
uses, and the bytes are prometheus-client's own (tests/test_render.py compares them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as generate_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from exporter.pipeline.snapshot import SnapshotStore, StoreView, TargetSnapshot
from exporter.serve.collector import fresh_targets
from exporter.serve.exposition import (
    Fragment,
    LineTemplate,
    fragment,
    gzip_body,
    inflate,
    join,
    plain_sample_names,
    render_lines,
    sample_line,
)
from exporter.serve.metrics import (
    LAST_RENDER_DURATION,
    METRICS,
    RENDERS,
    TARGET_LABELS,
    MetricSpec,
)
from exporter.vocabulary import DIMENSIONS_BY_NAME

log = logging.getLogger(__name__)

REBUILD_SPACING = 1.0
"""Seconds between two renders at most: a burst of polls (the first round, 200 targets in a few
seconds) is rendered once a second instead of once per poll. Data is at most this much later
on /metrics than in the store."""

STALE_CHECK_SECONDS = 1.0
"""How often the render thread looks for targets whose data just went stale."""

EOF = b"# EOF\n"

Format = str
TEXT: Format = "text"
OPENMETRICS: Format = "openmetrics"
FORMATS = (TEXT, OPENMETRICS)

_GENERATORS: Mapping[Format, Callable[[CollectorRegistry], bytes]] = {
    TEXT: generate_text,
    OPENMETRICS: generate_openmetrics,
}


def render_registry(registry: CollectorRegistry, fmt: Format) -> bytes:
    """prometheus-client's exposition of `registry`, without OpenMetrics' closing `# EOF`."""
    text = _GENERATORS[fmt](registry)
    return text[: -len(EOF)] if fmt == OPENMETRICS and text.endswith(EOF) else text


class _Fixed(Collector):
    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


def render_metric(metric: Metric, fmt: Format) -> bytes:
    """One family as prometheus-client writes it in `fmt`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(metric))
    return render_registry(registry, fmt)


def header(spec: MetricSpec, fmt: Format) -> bytes:
    """The family's `# HELP` and `# TYPE` lines as prometheus-client writes them in `fmt`."""
    return render_metric(spec.family(spec.name, spec.documentation, labels=()), fmt)


class RegistryRenderer:
    """A small registry's exposition in both formats from one `collect()`.

    The text formats differ only in the `# HELP`/`# TYPE` lines (kept per family) and in
    OpenMetrics' `# EOF`; counter and gauge sample lines are the same bytes in both. Anything
    else (histograms, exemplars, names that need quoting) is left to prometheus-client.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._headers: dict[tuple[str, str, str, str, Format], bytes] = {}

    def render(self) -> dict[Format, bytes]:
        parts: dict[Format, list[bytes]] = {fmt: [] for fmt in FORMATS}
        for metric in self._registry.collect():
            if not self._plain(metric):
                for fmt in FORMATS:
                    parts[fmt].append(render_metric(metric, fmt))
                continue
            lines = "".join(sample_line(s.name, s.labels, s.value) for s in metric.samples)
            body = lines.encode()
            for fmt in FORMATS:
                parts[fmt] += [self._header(metric, fmt), body]
        return {fmt: b"".join(pieces) for fmt, pieces in parts.items()}

    def _header(self, metric: Metric, fmt: Format) -> bytes:
        key = (metric.name, metric.type, metric.documentation, metric.unit, fmt)
        text = self._headers.get(key)
        if text is None:
            empty = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            text = self._headers[key] = render_metric(empty, fmt)
        return text

    @staticmethod
    def _plain(metric: Metric) -> bool:
        if metric.type not in ("counter", "gauge") or metric.unit:
            return False
        suffix = "_total" if metric.type == "counter" else ""
        return all(
            s.name == metric.name + suffix
            and s.timestamp is None
            and s.exemplar is None
            and s.native_histogram is None
            and plain_sample_names(s.name, s.labels)
            for s in metric.samples
        )


def sample_name(spec: MetricSpec) -> str:
    return spec.name + "_total" if spec.family is CounterMetricFamily else spec.name


def target_labels(snapshot: TargetSnapshot) -> tuple[tuple[str, str], ...]:
    return tuple(zip(TARGET_LABELS, (snapshot.waba_id, snapshot.target_name), strict=True))


def render_target(spec: MetricSpec, snapshot: TargetSnapshot) -> bytes:
    """Every sample of one family for one target."""
    dimensions = snapshot.dimensions if spec.per_series else ()
    template = LineTemplate.build(
        sample_name(spec),
        target_labels(snapshot),
        [DIMENSIONS_BY_NAME[name].label for name in dimensions],
    )
    return render_lines(template, spec.samples(snapshot)).encode()


@dataclass(frozen=True, slots=True)
class _TargetFragments:
    """One target's compressed per-series families, and what they were rendered from."""

    conversations: object
    observed: object
    waba_id: str
    dimensions: tuple[str, ...]
    families: Mapping[str, Fragment]

    def fits(self, snapshot: TargetSnapshot) -> bool:
        # Identity, not equality: a poll builds new mappings, a failed poll keeps the old ones.
        return (
            self.conversations is snapshot.conversations
            and self.observed is snapshot.observed
            and self.waba_id == snapshot.waba_id
            and self.dimensions == snapshot.dimensions
        )


@dataclass(frozen=True, slots=True)
class Rendered:
    """One render: the view it shows, and its compressed body in each format."""

    view: StoreView
    bodies: Mapping[Format, Fragment]
    stale_at: float
    """When the next fresh target goes stale, and this render with it (inf: never)."""


class ExpositionCache(Collector):
    """The rendered /metrics body; `invalidate()` after a swap, `body()` per scrape.

    Also a collector of its own self-metrics, for the live registry."""

    def __init__(
        self,
        store: SnapshotStore,
        polled: CollectorRegistry,
        live: CollectorRegistry,
        stale_after: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._polled = RegistryRenderer(polled)
        self._live = live
        self.stale_after = stale_after
        """Replaced on reload; read once per render."""
        self._clock = clock
        self._headers = {
            (spec.name, fmt): fragment(header(spec, fmt)) for spec in METRICS for fmt in FORMATS
        }
        self._targets: dict[str, _TargetFragments] = {}
        self._broken: set[str] = set()
        """Targets whose data could not be rendered last time (logged once, not served)."""
        self._build_lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.renders = 0
        """How many renders ran (the exporter's self-metrics report it)."""
        self.last_render_seconds = 0.0
        self._rendered = self._render()

    # -- rendering --------------------------------------------------------------------------

    def _families(self, snapshot: TargetSnapshot) -> _TargetFragments:
        cached = self._targets.get(snapshot.target_name)
        if cached is not None and cached.fits(snapshot):
            return cached
        families = {
            spec.name: fragment(render_target(spec, snapshot))
            for spec in METRICS
            if spec.per_series
        }
        return _TargetFragments(
            snapshot.conversations,
            snapshot.observed,
            snapshot.waba_id,
            snapshot.dimensions,
            families,
        )

    def _render(self) -> Rendered:
        started = time.perf_counter()
        view = self._store.current()
        now, stale_after = self._clock(), self.stale_after
        fresh = fresh_targets(view, now, stale_after)
        fresh_set = set(fresh)
        # One target's render failing (it cannot, once its answer was parsed; but if it did)
        # leaves out that target's data, never everyone's.
        broken: set[str] = set()
        targets: dict[str, _TargetFragments] = {}
        for name, s in view.snapshots.items():
            try:
                targets[name] = self._families(s)
            except Exception:
                broken.add(name)
                if name not in self._broken:
                    log.exception("rendering the data of target %s failed; left out", name)
        self._targets = targets  # forgets removed targets
        # Per-target gauges (one line per target): cheap, rendered anew every time, once for
        # both formats.
        small = {
            spec.name: fragment(
                b"".join(
                    self._small(spec, s, broken)
                    for name, s in view.snapshots.items()
                    if not spec.data or name in fresh_set
                )
            )
            for spec in METRICS
            if not spec.per_series
        }
        for name in self._broken - broken:
            if name in view.snapshots:
                log.info("the data of target %s renders again", name)
        self._broken = broken
        polled = self._polled.render()
        bodies: dict[Format, Fragment] = {}
        for fmt in FORMATS:
            pieces: list[Fragment] = []
            for spec in METRICS:
                pieces.append(self._headers[spec.name, fmt])
                if not spec.per_series:
                    pieces.append(small[spec.name])
                    continue
                shown: Iterable[str] = fresh if spec.data else view.snapshots
                pieces.extend(targets[n].families[spec.name] for n in shown if n in targets)
            pieces.append(fragment(polled[fmt]))
            bodies[fmt] = join(pieces)
        stale_at = (
            min((view.snapshots[name].last_success or 0.0) + stale_after for name in fresh)
            if fresh
            else float("inf")
        )
        self.renders += 1
        self.last_render_seconds = time.perf_counter() - started
        return Rendered(view, bodies, stale_at)

    def _small(self, spec: MetricSpec, snapshot: TargetSnapshot, broken: set[str]) -> bytes:
        try:
            return render_target(spec, snapshot)
        except Exception:
            name = snapshot.target_name
            if name not in broken and name not in self._broken:
                log.exception("rendering target %s failed; left out", name)
            broken.add(name)
            return b""

    def refresh(self) -> Rendered:
        """Render now, in the caller's thread, and serve that from now on."""
        with self._build_lock:
            self._dirty.clear()
            self._rendered = self._render()
            return self._rendered

    def current(self) -> Rendered:
        return self._rendered

    # -- background thread --------------------------------------------------------------------

    def invalidate(self) -> None:
        """A snapshot was swapped in (or the targets changed): render again soon."""
        self._dirty.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="render", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()

    def _run(self) -> None:
        last = 0.0
        while not self._stop.is_set():
            signalled = self._dirty.wait(STALE_CHECK_SECONDS)
            if self._stop.is_set():
                return
            if not signalled and self._clock() < self._rendered.stale_at:
                continue
            # Let a burst of swaps gather into one render.
            wait = last + REBUILD_SPACING - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            last = time.monotonic()
            try:
                self.refresh()
            except Exception:  # a bug here must not freeze /metrics for good
                log.exception("rendering /metrics failed; serving the previous render")

    # -- self-metrics -----------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """How the cache itself does (a live collector: read on every scrape)."""
        yield CounterMetricFamily(RENDERS.name, RENDERS.documentation, value=self.renders)
        yield GaugeMetricFamily(
            LAST_RENDER_DURATION.name,
            LAST_RENDER_DURATION.documentation,
            value=self.last_render_seconds,
        )

    # -- serving --------------------------------------------------------------------------------

    def body(self, fmt: Format, gzip: bool) -> tuple[Iterable[bytes], int]:
        """The response body (pieces) and its length: the cached render plus the live tail."""
        prefix = self._rendered.bodies[fmt]
        tail = render_registry(self._live, fmt)
        if fmt == OPENMETRICS:
            tail += EOF
        if gzip:
            pieces = gzip_body(prefix, tail)
            return pieces, sum(map(len, pieces))
        return chain(inflate(prefix.deflated), (tail,)), prefix.length + len(tail)
