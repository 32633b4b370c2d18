"""The exporter as a real process against the simulator, checked over HTTP and by promtool."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from exporter.pipeline.buckets import latest_complete_bucket
from exporter.simulator import Simulator
from exporter.vocabulary import DIMENSIONS
from tests.conftest import (
    CUSTOMER_ACCOUNTS,
    DEMO_ACCOUNTS,
    TEST_API_KEY,
    config_dict,
    parse_metrics,
    poll_clock,
    write_config,
)

LABELS = [d.label for d in DIMENSIONS]
POINT_KEYS = [d.point_key for d in DIMENSIONS]


def by_labels(family, waba_name: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(sample.labels[label] for label in LABELS): sample.value
        for sample in family.samples
        if sample.labels["waba_name"] == waba_name
    }


def expected_for(sim: Simulator, request, bucket: int | None = None, upto: int | None = None):
    """Sum of the simulator's answer to `request`, per label set, for one bucket or a range."""
    counts: dict[tuple[str, ...], int] = {}
    for point in sim.expected_points(request.account_waba_id, request.query, request.time):
        if (bucket is not None and point["start"] != bucket) or (
            upto is not None and point["start"] > upto
        ):
            continue
        labels = tuple(point.get(key, "") for key in POINT_KEYS)
        counts[labels] = counts.get(labels, 0) + point["conversation"]
    return counts


def test_metrics_equal_the_simulators_counts(simulator, start_exporter, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.yaml", config_dict(simulator))
    exporter = start_exporter("--config", str(config))
    exporter.wait_ready()
    families = exporter.scrape()

    names = {
        s.labels["waba_name"]: s.labels["waba_id"]
        for s in families["whatsapp_exporter_poll_success"].samples
        if s.value == 1
    }
    assert names == {a.name: a.waba_id for a in DEMO_ACCOUNTS}, exporter.output()

    bucket_starts = {
        s.labels["waba_name"]: s.value
        for s in families["whatsapp_conversations_bucket_start_timestamp_seconds"].samples
    }
    for account in DEMO_ACCOUNTS:
        (request,) = [r for r in simulator.requests_for(account.waba_id) if r.status == 200][:1]
        bucket = latest_complete_bucket(poll_clock(request), 1800)
        assert bucket_starts[account.name] == bucket

        gauge = by_labels(families["whatsapp_conversations"], account.name)
        expected = expected_for(simulator, request, bucket=bucket)
        assert {k: v for k, v in gauge.items() if v} == expected
        assert set(gauge) == set(expected_for(simulator, request)), "zero-fill: window labels"

        # A fresh process counts none of the history it finds (a restart must not add it to
        # increase()): every label set of the window has its counter, at 0.
        counter = by_labels(families["whatsapp_conversations_observed"], account.name)
        assert counter == dict.fromkeys(expected_for(simulator, request), 0)
        assert sum(expected.values()) > 0


def test_customer_target_is_labelled_with_its_waba_id(simulator, start_exporter, tmp_path):
    account = CUSTOMER_ACCOUNTS[0]
    config = config_dict(simulator, targets=[{"customer_id": account.customer_id}])
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml", config)))
    exporter.wait_ready()
    (sample,) = exporter.scrape()["whatsapp_exporter_poll_success"].samples
    assert sample.labels == {"waba_id": account.waba_id, "waba_name": account.customer_id}


def test_only_enabled_dimensions_become_labels(simulator, start_exporter, tmp_path) -> None:
    config = config_dict(simulator, dimensions=["COUNTRY", "CONVERSATION_CATEGORY"])
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml", config)))
    exporter.wait_ready()
    families = exporter.scrape()
    for name in ("whatsapp_conversations", "whatsapp_conversations_observed"):
        assert {tuple(sorted(s.labels)) for s in families[name].samples} == {
            ("conversation_category", "country", "waba_id", "waba_name")
        }


@pytest.mark.skipif(shutil.which("promtool") is None, reason="scripts/test.sh installs promtool")
def test_promtool_accepts_the_exposition(simulator, start_exporter, tmp_path) -> None:
    exporter = start_exporter(
        "--config", str(write_config(tmp_path / "c.yaml", config_dict(simulator)))
    )
    exporter.wait_ready()
    text = exporter.scrape_text()
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", "promtool lint findings"


def test_endpoints_gzip_and_the_key_never_shows(simulator, start_exporter, tmp_path) -> None:
    exporter = start_exporter(
        "--config",
        str(write_config(tmp_path / "c.yaml", config_dict(simulator))),
        "--log-level",
        "debug",
    )
    exporter.wait_ready()
    assert exporter.get("/healthz").text == "ok\n"
    assert exporter.get("/ready").status_code == 200
    assert exporter.get("/nope").status_code == 404

    landing = exporter.get("/")
    assert landing.headers["Content-Type"].startswith("text/html")
    assert 'href="metrics"' in landing.text
    assert all(a.name in landing.text for a in DEMO_ACCOUNTS)

    raw = requests.get(
        exporter.url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    unzipped = gzip.decompress(raw.raw.read()).decode()
    assert "whatsapp_conversations{" in unzipped

    plain = exporter.scrape_text()
    assert parse_metrics(plain)["whatsapp_exporter_build_info"].samples[0].value == 1
    for text in (landing.text, unzipped, plain, exporter.output()):
        assert TEST_API_KEY not in text
    assert "polled " in exporter.output(), "debug logging on: the grep above read real lines"


def test_sigterm_stops_cleanly(simulator, start_exporter, tmp_path) -> None:
    exporter = start_exporter(
        "--config", str(write_config(tmp_path / "c.yaml", config_dict(simulator)))
    )
    exporter.wait_ready()
    started = time.monotonic()
    assert exporter.stop() == 0
    assert time.monotonic() - started < 5
    assert "Traceback" not in exporter.output()
