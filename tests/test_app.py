"""The wiring: many targets share one client, one limiter and one store."""

from __future__ import annotations

import dataclasses

from exporter.app import Exporter
from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.simulator import DEMO_ACCOUNTS, Simulator
from tests.conftest import TEST_API_KEY

RATE = 8


def test_requests_per_second_holds_across_all_targets() -> None:
    accounts = [
        dataclasses.replace(DEMO_ACCOUNTS[i % 4], waba_id=str(700000000000000 + i),
                            name=f"t{i:02d}", customer_id=None)
        for i in range(24)
    ]
    with Simulator(api_key=TEST_API_KEY, accounts=accounts) as sim:
        config = Config(
            splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url,
                                      max_concurrency=6, requests_per_second=RATE),
            targets=tuple(Target(name=a.name, waba_id=a.waba_id) for a in accounts),
            poll=PollConfig(interval=60),
        )
        exporter = Exporter(config)
        assert exporter.poll_all_once()
        assert exporter.is_ready()
        times = sorted(r.time for r in sim.requests)
    assert len(times) == 24
    # Requests are spaced 1/RATE apart; arrival times may bunch by a few milliseconds.
    for i, first in enumerate(times):
        in_one_second = [t for t in times[i:] if t < first + 1.0]
        assert len(in_one_second) <= RATE + 1, in_one_second


def test_readiness_counts_targets_not_yet_polled() -> None:
    with Simulator(api_key=TEST_API_KEY) as sim:
        config = Config(
            splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url),
            targets=(Target(name="a", waba_id=DEMO_ACCOUNTS[0].waba_id),
                     Target(name="b", waba_id=DEMO_ACCOUNTS[1].waba_id)),
        )
        exporter = Exporter(config)
        assert not exporter.is_ready()
        exporter.pollers[0].poll()
        assert not exporter.is_ready()
        exporter.pollers[1].poll()
        assert not exporter.is_ready(), "polled, but /metrics does not show it yet"
        exporter.cache.refresh()
        assert exporter.is_ready()


def test_metrics_serves_what_prometheus_client_would_render() -> None:
    import gzip

    from exporter.serve.render import OPENMETRICS, TEXT

    with Simulator(api_key=TEST_API_KEY) as sim:
        config = Config(
            splashify=SplashifyConfig(api_key=Secret(TEST_API_KEY), base_url=sim.url),
            targets=tuple(Target(name=a.name, waba_id=a.waba_id) for a in DEMO_ACCOUNTS[:3]),
        )
        exporter = Exporter(config)
        assert exporter.poll_all_once()

        def steady(text: bytes) -> list[bytes]:
            # Process and render figures move between two renders; everything else must not.
            moving = (b"process_", b"whatsapp_exporter_last_render", b"whatsapp_exporter_renders")

            def name(line: bytes) -> bytes:
                return line.split(b" ")[2] if line.startswith(b"#") else line

            return [line for line in text.split(b"\n") if not name(line).startswith(moving)]

        pieces, _ = exporter.cache.body(TEXT, gzip=True)
        served = gzip.decompress(b"".join(pieces))
        assert served.count(b"\nwhatsapp_conversations{") > 50
        assert steady(served) == steady(exporter.exposition())
        pieces, _ = exporter.cache.body(OPENMETRICS, gzip=False)
        assert b"".join(pieces).endswith(b"# EOF\n")
