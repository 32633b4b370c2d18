"""A real Prometheus server (Debian's package) scrapes the exporter; we query what it stored."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import DEMO_ACCOUNTS, config_dict, free_port, write_config

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="scripts/test.sh installs Debian's prometheus"
)


class Prometheus:
    """`prometheus` on an ephemeral loopback port, scraping `target` every second.

    `config_text` replaces the generated config (it must scrape `target` itself); `data_dir`
    is the TSDB directory, e.g. one that `promtool tsdb create-blocks-from` filled.
    """

    def __init__(
        self,
        tmp_path: Path,
        target: str,
        *,
        config_text: str | None = None,
        data_dir: Path | None = None,
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        config = tmp_path / "prometheus.yml"
        config.write_text(
            config_text
            or "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: whatsapp\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        self.log_path = tmp_path / "prometheus.log"
        self._log = self.log_path.open("w")
        data = data_dir or tmp_path / "data"
        self.process = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def query(self, expression: str) -> list[dict]:
        response = requests.get(self.url + "/api/v1/query", params={"query": expression},
                                timeout=5)
        response.raise_for_status()
        return response.json()["data"]["result"]

    def wait_for(self, expression: str, timeout: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                result = self.query(expression)
                if result:
                    return result
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise AssertionError(f"no result for {expression} within {timeout}s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._log.close()


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator:
    servers: list[Prometheus] = []

    def start(target: str, **options: object) -> Prometheus:
        servers.append(Prometheus(tmp_path, target, **options))  # type: ignore[arg-type]
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def test_prometheus_scrapes_and_stores_what_we_serve(
    simulator, start_exporter, prometheus_for, tmp_path: Path
) -> None:
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml",
                                                           config_dict(simulator))))
    exporter.wait_ready()
    prometheus = prometheus_for(exporter.url.removeprefix("http://"))

    prometheus.wait_for('up{job="whatsapp"} == 1')
    targets = requests.get(prometheus.url + "/api/v1/targets", timeout=5).json()
    (active,) = targets["data"]["activeTargets"]
    assert (active["health"], active["lastError"]) == ("up", "")

    # What Prometheus stored equals what the exporter serves. Both move only when a poll
    # completes a new bucket, so compare until they agree within a few scrape intervals.
    def served_totals() -> dict[str, float]:
        totals: dict[str, float] = {}
        for sample in exporter.scrape()["whatsapp_conversations_observed"].samples:
            name = sample.labels["waba_name"]
            totals[name] = totals.get(name, 0) + sample.value
        return totals

    def stored_totals() -> dict[str, float]:
        stored = prometheus.wait_for(
            "sum by (waba_name) (whatsapp_conversations_observed_total)")
        return {r["metric"]["waba_name"]: float(r["value"][1]) for r in stored}

    deadline = time.monotonic() + 15
    while (served := served_totals()) != (stored := stored_totals()):
        assert time.monotonic() < deadline, (served, stored)
        time.sleep(0.5)
    assert set(served) == {a.name for a in DEMO_ACCOUNTS}
    conversations = prometheus.wait_for("sum by (waba_name) (whatsapp_conversations)")
    assert all(float(r["value"][1]) > 0 for r in conversations)

    success = prometheus.wait_for("whatsapp_exporter_poll_success")
    assert {float(r["value"][1]) for r in success} == {1.0}
    # Series of every data metric arrived with their labels.
    for metric in (
        "whatsapp_conversations",
        "whatsapp_conversations_bucket_start_timestamp_seconds",
        "whatsapp_exporter_api_requests_total",
        "whatsapp_exporter_build_info",
    ):
        assert prometheus.wait_for(metric), metric
