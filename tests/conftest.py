"""Shared fixtures: the simulator on loopback, config files, and the exporter as a real process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml
from hypothesis import settings
from prometheus_client import disable_created_metrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import DEMO_ACCOUNTS, Simulator

# Long enough to be found by a grep, unlike anything else in a log or a page.
TEST_API_KEY = "pk_live_TEST-7f3c9a1e5b2d4c6e8f0a"

__all__ = ["DEMO_ACCOUNTS"]

# Hypothesis fails an example that takes over 200 ms as "unreliable timing"; a loaded CI machine
# can stall that long (GC, CPU steal). Property tests check results, never speed.
settings.register_profile("whatsapp-exporter", deadline=None)
settings.load_profile("whatsapp-exporter")

WABA_ACCOUNTS = [a for a in DEMO_ACCOUNTS if a.customer_id is None]
CUSTOMER_ACCOUNTS = [a for a in DEMO_ACCOUNTS if a.customer_id is not None]

# As the CLI does at start: `_created` series mean nothing to this exporter.
disable_created_metrics()


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    with Simulator(api_key=TEST_API_KEY) as sim:
        yield sim


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_dict(sim: Simulator, **overrides: object) -> dict:
    """A config with every demo account as a target (WABAs by id, the customer by its id)."""
    targets = [{"waba_id": a.waba_id, "name": a.name} for a in WABA_ACCOUNTS]
    targets += [{"customer_id": a.customer_id, "name": a.name} for a in CUSTOMER_ACCOUNTS]
    config: dict = {
        "splashify": {"base_url": sim.url, "api_key": "${TEST_SPLASHIFY_KEY}"},
        "poll": {"interval": "60s"},
        "targets": targets,
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def exporter_env() -> dict[str, str]:
    return {**os.environ, "TEST_SPLASHIFY_KEY": TEST_API_KEY, "PYTHONUNBUFFERED": "1"}


def run_exporter(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m exporter ARGS` to completion; `env` adds to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**exporter_env(), **(env or {})},
    )


def parse_metrics(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


class ExporterProcess:
    """The exporter as users run it: a real process serving HTTP on loopback."""

    def __init__(
        self,
        *args: str,
        log_path: Path,
        port: int | None = None,
        command: tuple[str, ...] = ("-m", "exporter"),
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """`command` runs the exporter (e.g. tests.fastclock's); `port` to take over one;
        `preexec_fn` runs in the child before it starts (e.g. to set a resource limit)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._log = log_path.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                *command,
                *args,
                "--web.listen-address",
                f"127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
            env=exporter_env(),
            preexec_fn=preexec_fn,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"exporter exited early:\n{self.output()}")
            try:
                if requests.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"exporter not ready after {timeout}s:\n{self.output()}")

    def wait_alive(self, timeout: float = 20) -> None:
        """Until /healthz answers: the server is up, polls may still be running."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert self.process.poll() is None, f"exporter exited early:\n{self.output()}"
            assert time.monotonic() < deadline, f"exporter not up:\n{self.output()}"
            time.sleep(0.1)

    def wait_for(self, condition, what: str, timeout: float = 30) -> dict:
        """Scrape until `condition(families)` holds; the families of that scrape."""
        deadline = time.monotonic() + timeout
        while True:
            families = self.scrape()
            if condition(families):
                return families
            assert self.process.poll() is None, f"exporter died:\n{self.output()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output()}"
            time.sleep(0.2)

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def scrape_text(self) -> str:
        response = self.get("/metrics")
        assert response.status_code == 200
        return response.text

    def scrape(self) -> dict:
        return parse_metrics(self.scrape_text())

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self._log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._log.close()


@pytest.fixture
def start_exporter(tmp_path: Path) -> Iterator:
    started: list[ExporterProcess] = []

    def start(*args: str, **options) -> ExporterProcess:
        log_path = tmp_path / f"exporter-{len(started)}.log"
        process = ExporterProcess(*args, log_path=log_path, **options)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def poll_clock(request) -> int:
    """The exporter's clock (whole seconds) when it built `request`, read from its query.

    The exporter reads its clock before it sends, the simulator its own on arrival (`time`);
    a half-hour turn between the two must not make a test expect the other bucket.
    """
    from exporter.upstream.query import END_MARGIN_SECONDS

    return request.query.end + END_MARGIN_SECONDS


def expected_observed(
    sim: Simulator,
    answered: list,
    delay: float,
    point_keys: list[str],
    *,
    first: object | None = None,
) -> dict[tuple[str, ...], int]:
    """What `whatsapp_conversations_observed_total` must read after these answered requests.

    Computed independently of exporter/pipeline/buckets.py: per bucket and label set, the
    highest count any answer gave once the bucket was complete (by the exporter's clock), summed;
    every label set of every answered window has a series (0 until a bucket of it completes).
    A fresh exporter does not count the history it finds: the buckets complete at its first
    attempt (`first`, by default the first answered request) count only what later answers
    added above the first answer's count.
    """
    from exporter.pipeline.buckets import latest_complete_bucket

    baseline = latest_complete_bucket(poll_clock(first or answered[0]), delay)
    best: dict[tuple[int, tuple[str, ...]], int] = {}
    remembered: dict[tuple[int, tuple[str, ...]], int] = {}
    totals: dict[tuple[str, ...], int] = {}
    for number, request in enumerate(answered):
        complete = latest_complete_bucket(poll_clock(request), delay)
        for point in sim.expected_points(request.account_waba_id, request.query, request.time):
            labels = tuple(point.get(key, "") for key in point_keys)
            totals.setdefault(labels, 0)
            if point["start"] <= complete:
                key = (point["start"], labels)
                best[key] = max(best.get(key, 0), point["conversation"])
                if number == 0 and point["start"] <= baseline:
                    remembered[key] = max(remembered.get(key, 0), point["conversation"])
    for key, count in best.items():
        totals[key[1]] += count - remembered.get(key, 0)
    return totals
