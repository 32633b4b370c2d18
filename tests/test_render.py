"""The render-once cache: same bytes as prometheus-client, rendered per swap, never blocking."""

from __future__ import annotations

import dataclasses
import gzip
import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.pipeline.snapshot import SnapshotStore, TargetSnapshot
from exporter.serve.collector import ConversationCollector
from exporter.serve.render import OPENMETRICS, TAIL_MAX_AGE, TEXT, ExpositionCache

NOW = 1_700_000_200.0
DIMS = ("CONVERSATION_CATEGORY", "COUNTRY")


def snapshot(name: str, waba_id: str, *, scale: int = 1, last_success: float = NOW - 100):
    return TargetSnapshot(
        target_name=name,
        waba_id=waba_id,
        poll_success=True,
        poll_duration=0.25,
        last_success=last_success,
        bucket_start=1_699_999_200,
        conversations={("MARKETING", "IN"): 42 * scale, ('SER"VICE', "K\\W"): 0},
        observed={("MARKETING", "IN"): 1_234_567 * scale, ('SER"VICE', "K\\W"): 7},
        dimensions=DIMS,
    )


class Setup:
    def __init__(self, stale_after: float = 3600) -> None:
        self.now = NOW
        self.store = SnapshotStore(DIMS)
        self.polled = CollectorRegistry()
        self.errors = Counter("demo_errors", "Errors.", ["waba_name"], registry=self.polled)
        self.live = CollectorRegistry()
        Gauge("demo_live", "Live.", registry=self.live).set(5)
        collector = ConversationCollector(self.store, stale_after, clock=lambda: self.now)
        self.everything = CollectorRegistry()
        for part in (collector, self.errors, *self.live._collector_to_names):
            self.everything.register(part)
        self.tick = 0.0  # the clock that ages the live tail
        self.cache = ExpositionCache(
            self.store,
            self.polled,
            self.live,
            stale_after,
            clock=lambda: self.now,
            tail_clock=lambda: self.tick,
        )
        self.store.on_change = self.cache.invalidate

    def body(self, fmt: str, compressed: bool) -> bytes:
        pieces, length = self.cache.body(fmt, gzip=compressed)
        data = b"".join(pieces)
        assert len(data) == length
        return gzip.decompress(data) if compressed else data


@pytest.mark.parametrize("compressed", [False, True])
def test_the_body_is_prometheus_clients_own_bytes(compressed: bool) -> None:
    s = Setup()
    s.store.put(snapshot("acme", "1153"))
    s.store.put(snapshot("globex", "2264", scale=3))
    s.store.put(TargetSnapshot("failing", "", False, 1.5, dimensions=DIMS))
    s.errors.labels("acme").inc(2)
    s.cache.refresh()
    assert s.body(TEXT, compressed) == generate_latest(s.everything)
    assert s.body(OPENMETRICS, compressed) == generate_openmetrics(s.everything)


def test_nothing_changes_until_a_render() -> None:
    s = Setup()
    s.store.put(snapshot("acme", "1153"))
    before = s.body(TEXT, False)
    assert b'waba_name="acme"' not in before  # the initial render had no targets
    s.errors.labels("acme").inc()  # polled self-metrics, too, wait for the render
    assert s.body(TEXT, False) == before
    s.cache.refresh()
    after = s.body(TEXT, False)
    assert b'waba_name="acme"' in after and b'demo_errors_total{waba_name="acme"} 1.0' in after


def test_live_metrics_are_at_most_a_second_old() -> None:
    s = Setup()
    gauge = Gauge("demo_moving", "Moves.", registry=s.live)
    gauge.set(1)
    assert b"demo_moving 1.0" in s.body(TEXT, True)
    gauge.set(2)
    s.tick += TAIL_MAX_AGE / 2
    assert b"demo_moving 1.0" in s.body(TEXT, True)  # scrapes within a second share them
    assert b"demo_moving 1.0" in s.body(TEXT, False)
    s.tick += TAIL_MAX_AGE / 2
    assert b"demo_moving 2.0" in s.body(TEXT, True)
    assert s.body(OPENMETRICS, True).endswith(b"demo_moving 2.0\n# EOF\n")
    gauge.set(3)
    s.cache.refresh()  # a render shows them anew at once
    assert b"demo_moving 3.0" in s.body(TEXT, True)
    gauge.set(4)
    s.cache.refresh_live()  # and so does a reload's outcome
    assert b"demo_moving 4.0" in s.body(TEXT, False)


def test_the_gzip_body_as_a_file_is_the_same_bytes() -> None:
    s = Setup()
    s.store.put(snapshot("acme", "1153"))
    s.cache.refresh()
    pieces, length = s.cache.body(TEXT, gzip=True)
    file = s.cache.gzip_file(TEXT)
    assert file is not None and file.length == length
    reader = file.reader()
    assert reader.tell() == 0 and reader.read() == b"".join(pieces)
    assert s.cache.gzip_file(TEXT) is file  # one file until the body changes
    s.tick += TAIL_MAX_AGE
    assert s.cache.gzip_file(TEXT) is not file


def _blocks(text: bytes) -> dict[str, bytes]:
    """Family name (a counter's without `_total`, as OpenMetrics writes it) -> its lines."""
    blocks: dict[str, bytes] = {}
    for block in text.split(b"# HELP ")[1:]:
        blocks[block.split(b" ", 1)[0].decode().removesuffix("_total")] = b"# HELP " + block
    return blocks


def test_name_filters_are_served_from_the_render() -> None:
    s = Setup()
    s.store.put(snapshot("acme", "1153"))
    s.errors.labels("acme").inc()
    s.cache.refresh()
    cases = {
        ("whatsapp_conversations",): {"whatsapp_conversations"},
        ("whatsapp_conversations_observed_total",): {"whatsapp_conversations_observed"},
        ("whatsapp_conversations_observed", "demo_errors_total", "demo_live"): {
            "whatsapp_conversations_observed", "demo_errors", "demo_live"
        },
    }
    for fmt in (TEXT, OPENMETRICS):
        full = _blocks(s.body(fmt, False).removesuffix(b"# EOF\n"))
        for names, families in cases.items():
            for compressed in (False, True):
                pieces, length = s.cache.filtered_body(names, fmt, gzip=compressed)
                data = b"".join(pieces)
                assert len(data) == length
                text = gzip.decompress(data) if compressed else data
                if fmt == OPENMETRICS:
                    assert text.endswith(b"# EOF\n")
                    text = text.removesuffix(b"# EOF\n")
                # (text 0.0.4 writes a counter's `_created` samples as a family of their own)
                expected = {
                    name: block
                    for name, block in full.items()
                    if name.removesuffix("_created") in families
                }
                assert _blocks(text) == expected, (names, fmt)
    assert b"".join(s.cache.filtered_body(["nothing"], TEXT, gzip=False)[0]) == b""


def test_inflated_pieces_are_bounded() -> None:
    from exporter.serve.exposition import INFLATE_CHUNK, fragment, inflate

    text = b"".join(b"whatsapp_conversations{n=\"%d\"} 1.0\n" % i for i in range(200_000))
    pieces = list(inflate(fragment(text).deflated))
    assert b"".join(pieces) == text
    assert max(map(len, pieces)) <= INFLATE_CHUNK


def test_stale_data_leaves_with_the_next_render() -> None:
    s = Setup(stale_after=600)
    s.store.put(snapshot("acme", "1153", last_success=NOW - 100))
    rendered = s.cache.refresh()
    assert rendered.stale_at == NOW - 100 + 600
    assert b"whatsapp_conversations{" in s.body(TEXT, False)
    s.now = NOW + 1000
    s.cache.refresh()
    text = s.body(TEXT, False)
    assert b"whatsapp_conversations{" not in text
    assert b'whatsapp_exporter_poll_success{waba_id="1153",waba_name="acme"} 1.0' in text
    assert s.cache.current().stale_at == float("inf")


def test_a_target_is_rendered_again_only_when_its_data_changed() -> None:
    s = Setup()
    s.store.put(snapshot("acme", "1153"))
    s.store.put(snapshot("globex", "2264"))
    s.cache.refresh()
    first = dict(s.cache._targets)
    # A failed poll keeps the data (same mappings): nothing of acme's series is rendered again.
    s.store.put(dataclasses.replace(s.store.get("acme"), poll_success=False))
    s.store.put(snapshot("globex", "2264", scale=2))  # a new poll: new mappings
    s.cache.refresh()
    assert s.cache._targets["acme"] is first["acme"]
    assert s.cache._targets["globex"] is not first["globex"]
    assert b'whatsapp_exporter_poll_success{waba_id="1153",waba_name="acme"} 0.0' in s.body(
        TEXT, False
    )


def test_removed_targets_are_forgotten() -> None:
    s = Setup()
    s.store.put(snapshot("acme", "1153"))
    s.cache.refresh()
    s.store.retain([], DIMS)
    s.cache.refresh()
    assert "acme" not in s.cache._targets
    assert b"acme" not in s.body(TEXT, False)


def test_the_thread_renders_after_a_swap_and_a_scrape_never_waits_for_it() -> None:
    s = Setup()
    s.cache.start()
    try:
        s.store.put(snapshot("acme", "1153"))
        done = threading.Event()
        # Liveness, not speed: the render thread picks the swap up without anyone asking.
        for _ in range(100):
            if "acme" in s.cache.current().view.snapshots:
                done.set()
                break
            threading.Event().wait(0.05)
        assert done.is_set()
        # While a render holds the lock, a scrape still gets the last body at once.
        with s.cache._build_lock:
            served = threading.Thread(target=lambda: s.body(TEXT, True))
            served.start()
            served.join(timeout=10)
            assert not served.is_alive()
    finally:
        s.cache.stop()


def test_a_failing_render_keeps_the_previous_body(monkeypatch, caplog) -> None:
    s = Setup()
    s.store.put(snapshot("acme", "1153"))
    s.cache.refresh()
    before = s.body(TEXT, False)

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(s.cache, "_render", broken)
    s.cache.start()
    try:
        s.cache.invalidate()
        for _ in range(100):
            if "rendering /metrics failed" in caplog.text:
                break
            threading.Event().wait(0.05)
        assert "rendering /metrics failed" in caplog.text
        assert s.body(TEXT, False) == before
    finally:
        s.cache.stop()


def test_a_small_registry_renders_as_prometheus_client_renders_it() -> None:
    from prometheus_client import Histogram, Info

    from exporter.serve.render import RegistryRenderer, render_registry

    registry = CollectorRegistry()
    errors = Counter("demo_errors", 'Errors, by "reason".\nTwo lines.', ["waba_name", "reason"],
                     registry=registry)
    errors.labels('a"c\\me', "auth").inc(3)
    errors.labels("globex", "timeout").inc(1_500_000)
    Gauge("demo_targets", "Targets.", registry=registry).set(0.25)
    Gauge("demo_unset", "No samples.", ["x"], registry=registry)
    Histogram("demo_seconds", "A histogram.", registry=registry).observe(0.3)  # left to p-c
    Info("demo_build", "An info.", registry=registry).info({"version": "1"})  # left to p-c
    rendered = RegistryRenderer(registry).render()
    assert rendered[TEXT] == render_registry(registry, TEXT) == generate_latest(registry)
    assert rendered[OPENMETRICS] == render_registry(registry, OPENMETRICS)
    assert rendered[OPENMETRICS] + b"# EOF\n" == generate_openmetrics(registry)
