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

import contextlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
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
    is_served,
)

log = logging.getLogger(__name__)

REBUILD_SPACING = 1.0
"""Seconds between two renders at most: a burst of polls (the first round, 200 targets in a few
seconds) is rendered once a second instead of once per poll. Data is at most this much later
on /metrics than in the store."""

STALE_CHECK_SECONDS = 1.0
"""How often the render thread looks for targets whose data just went stale."""

TAIL_MAX_AGE = 1.0
"""How old the live self-metrics of a scrape (process CPU and memory, build info, the render
figures) may be: scrapes within this many seconds of each other share one render of them and
one assembled body, so that a scrape runs no Python rendering at all. A reload's outcome and a
new render of the data are shown at once, whatever the age."""

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
        self.registry = registry
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
    per_series = spec.per_series and spec.source is not None
    template = LineTemplate.build(
        sample_name(spec),
        target_labels(snapshot),
        snapshot.series_layout.labels(spec.source) if per_series and spec.source else (),
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
    sources: object = None
    layout: object = None

    def fits(self, snapshot: TargetSnapshot) -> bool:
        # Identity, not equality: a poll builds new mappings, a failed poll keeps the old ones.
        return (
            self.conversations is snapshot.conversations
            and self.observed is snapshot.observed
            and self.sources is snapshot.sources
            and self.waba_id == snapshot.waba_id
            and self.dimensions == snapshot.dimensions
            and self.layout == snapshot.layout
        )


@dataclass(frozen=True, slots=True)
class Rendered:
    """One render: the view it shows, and its compressed body in each format."""

    view: StoreView
    bodies: Mapping[Format, Fragment]
    stale_at: float
    """When the next fresh target goes stale, and this render with it (inf: never)."""
    families: Mapping[Format, Mapping[str, tuple[Fragment, ...]]] = dataclass_field(
        default_factory=dict
    )
    """The pieces of each family of `collector.METRICS` (header included), for `name[]`."""


class BodyFile:
    """A complete response body in an anonymous in-memory file, for a server's sendfile().

    The descriptor is closed when the last reference goes (the cache's, or that of a response
    still being sent), never while a response uses it."""

    def __init__(self, fd: int, length: int) -> None:
        self.fd = fd
        self.length = length

    @classmethod
    def create(cls, pieces: Iterable[bytes]) -> BodyFile | None:
        """The pieces written to a memfd (Linux), or to an unlinked temporary file; None if
        neither can be had."""
        try:
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("whatsapp-exporter-metrics", os.MFD_CLOEXEC)
            else:
                fd, name = tempfile.mkstemp(prefix="whatsapp-exporter-metrics-")
                os.unlink(name)
        except OSError:
            return None
        try:
            length = 0
            for piece in pieces:
                view = memoryview(piece)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                    length += written
        except OSError:
            os.close(fd)
            return None
        return cls(fd, length)

    def reader(self) -> BodyReader:
        return BodyReader(self)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class BodyReader:
    """One response's file object over a `BodyFile`: a position of its own over the shared
    descriptor, which `close()` leaves open for the other responses."""

    def __init__(self, body: BodyFile) -> None:
        self._body: BodyFile | None = body
        self._fd = body.fd
        self._position = 0

    def fileno(self) -> int:
        if self._body is None:
            raise ValueError("closed")
        return self._fd

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        if self._body is None:
            raise ValueError("closed")
        left = self._body.length - self._position
        data = os.pread(self._fd, left if size < 0 else min(size, left), self._position)
        self._position += len(data)
        return data

    def close(self) -> None:
        self._body = None


class _Served:
    """What scrapes of one format get until the data is rendered again or the live tail ages:
    the render, the live tail, the complete gzip body in pieces, and (once asked) as a file."""

    __slots__ = ("at", "file", "gzip", "length", "live_version", "rendered", "tail")

    def __init__(
        self, rendered: Rendered, tail: bytes, at: float, live_version: int, fmt: Format
    ) -> None:
        self.rendered = rendered
        self.tail = tail
        self.at = at
        self.live_version = live_version
        self.gzip = gzip_body(rendered.bodies[fmt], tail)
        self.length = sum(map(len, self.gzip))
        self.file: BodyFile | None = None


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
        tail_clock: Callable[[], float] = time.monotonic,
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
        self.tail_max_age = TAIL_MAX_AGE
        self._tail_clock = tail_clock
        self._live_version = 0
        self._served: dict[Format, _Served] = {}
        self._served_lock = threading.Lock()
        self._rendered = self._render()

    # -- rendering --------------------------------------------------------------------------

    def _families(self, snapshot: TargetSnapshot) -> _TargetFragments:
        cached = self._targets.get(snapshot.target_name)
        if cached is not None and cached.fits(snapshot):
            return cached
        layout = snapshot.series_layout
        families = {
            spec.name: fragment(render_target(spec, snapshot))
            for spec in METRICS
            if spec.per_series and is_served(spec, layout)
        }
        return _TargetFragments(
            snapshot.conversations,
            snapshot.observed,
            snapshot.waba_id,
            snapshot.dimensions,
            families,
            snapshot.sources,
            snapshot.layout,
        )

    def _render(self) -> Rendered:
        started = time.perf_counter()
        view = self._store.current()
        served = [spec for spec in METRICS if is_served(spec, view.series_layout)]
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
            for spec in served
            if not spec.per_series
        }
        for name in self._broken - broken:
            if name in view.snapshots:
                log.info("the data of target %s renders again", name)
        self._broken = broken
        polled = self._polled.render()
        bodies: dict[Format, Fragment] = {}
        families: dict[Format, dict[str, tuple[Fragment, ...]]] = {}
        for fmt in FORMATS:
            pieces: list[Fragment] = []
            by_family = families[fmt] = {}
            for spec in served:
                family = [self._headers[spec.name, fmt]]
                if not spec.per_series:
                    family.append(small[spec.name])
                else:
                    shown: Iterable[str] = fresh if spec.data else view.snapshots
                    family.extend(
                        targets[name].families[spec.name] for name in shown if name in targets
                    )
                by_family[spec.name] = tuple(family)
                pieces.extend(family)
            pieces.append(fragment(polled[fmt]))
            bodies[fmt] = join(pieces)
        stale_at = (
            min((view.snapshots[name].last_success or 0.0) + stale_after for name in fresh)
            if fresh
            else float("inf")
        )
        self.renders += 1
        self.last_render_seconds = time.perf_counter() - started
        return Rendered(view, bodies, stale_at, families)

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

    def refresh_live(self) -> None:
        """The live self-metrics changed in a way a scrape must show at once (a reload)."""
        self._live_version += 1

    def _current(self, fmt: Format) -> _Served:
        """The served body of `fmt`, assembled anew after a render or when its tail aged."""
        served = self._served.get(fmt)
        if self._fits(served):
            assert served is not None
            return served
        with self._served_lock:
            served = self._served.get(fmt)
            if self._fits(served):
                assert served is not None
                return served
            version, at = self._live_version, self._tail_clock()
            tail = render_registry(self._live, fmt)
            if fmt == OPENMETRICS:
                tail += EOF
            served = self._served[fmt] = _Served(self._rendered, tail, at, version, fmt)
            return served

    def _fits(self, served: _Served | None) -> bool:
        if served is None:
            return False
        age = self._tail_clock() - served.at
        return (
            served.rendered is self._rendered
            and served.live_version == self._live_version
            and 0 <= age < self.tail_max_age
        )

    def body(self, fmt: Format, gzip: bool) -> tuple[Iterable[bytes], int]:
        """The response body (pieces) and its length: the cached render plus the live tail."""
        served = self._current(fmt)
        if gzip:
            return served.gzip, served.length
        prefix, tail = served.rendered.bodies[fmt], served.tail
        return chain(inflate(prefix.deflated), (tail,)), prefix.length + len(tail)

    def gzip_file(self, fmt: Format) -> BodyFile | None:
        """The complete gzip body of `fmt` as a file (see `BodyFile`), or None."""
        served = self._current(fmt)
        if served.file is None:
            with self._served_lock:
                if served.file is None:
                    served.file = BodyFile.create(served.gzip)
        return served.file

    def filtered_body(
        self, names: Iterable[str], fmt: Format, gzip: bool
    ) -> tuple[Iterable[bytes], int]:
        """Only the families named (a family's name or one of its sample names), from the
        render: no collect() of the data, and no more memory than those families take."""
        wanted = frozenset(names)
        rendered = self._rendered
        pieces: list[Fragment] = []
        for spec in METRICS:
            if spec.name in wanted or sample_name(spec) in wanted:
                # A family of a source that is not enabled was not rendered: nothing to add.
                pieces.extend(rendered.families[fmt].get(spec.name, ()))
        prefix = join(pieces)
        tail = _render_wanted(self._polled.registry, wanted, fmt)
        tail += _render_wanted(self._live, wanted, fmt)
        if fmt == OPENMETRICS:
            tail += EOF
        if gzip:
            body = gzip_body(prefix, tail)
            return body, sum(map(len, body))
        return chain(inflate(prefix.deflated), (tail,)), prefix.length + len(tail)



def _render_wanted(registry: CollectorRegistry, wanted: frozenset[str], fmt: Format) -> bytes:
    """The families of a (small) registry that `wanted` names, as prometheus-client writes them."""
    return b"".join(
        render_metric(metric, fmt)
        for metric in registry.collect()
        if metric.name in wanted or any(sample.name in wanted for sample in metric.samples)
    )
