"""Load check: many concurrent scrapers hammer /metrics while polls run; count errors and torn
snapshots. A script, not a timed test (tests/test_loadcheck.py runs a short one for the
zero-error, zero-torn properties only).

The exporter runs in a child process against the simulator with a shared clock that runs
`speed` times faster than real time, so that with speed 1800 every poll (every second) moves to
a new half-hour bucket: a scrape that mixed two polls would show a bucket start with counts
from another bucket. For every scrape and every target the check recomputes, from the
simulator's deterministic traffic model, the counts of the bucket the scrape says it reports,
and compares; it also checks that every counter series never decreases between two scrapes of
the same scraper.

    python -m bench.loadcheck --scrapers 50 --seconds 20 --targets 20
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import socket
import statistics
import threading
import time
from dataclasses import dataclass

import requests
from prometheus_client import disable_created_metrics
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import DEMO_ACCOUNTS, SimAccount, Simulator, answer_points
from exporter.upstream.query import AnalyticsQuery
from exporter.vocabulary import DIMENSIONS

DIMS = tuple(d.api_name for d in DIMENSIONS)
POINT_KEYS = [d.point_key for d in DIMENSIONS]
LABELS = [d.label for d in DIMENSIONS]
KEY = "loadcheck-key"


def accounts(count: int) -> list[SimAccount]:
    return [
        dataclasses.replace(
            DEMO_ACCOUNTS[i % len(DEMO_ACCOUNTS)],
            waba_id=str(800000000000000 + i),
            name=f"load-{i:03d}",
            customer_id=None,
        )
        for i in range(count)
    ]


class FastClock:
    """Wall-clock time, running `speed` times faster from `origin` on."""

    def __init__(self, speed: float, origin: float) -> None:
        self.speed, self.origin, self.real_origin = speed, origin, time.time()

    def __call__(self) -> float:
        return self.origin + (time.time() - self.real_origin) * self.speed


def _serve(port: int, target_count: int, speed: float, origin: float, ready) -> None:
    """The child process: simulator + exporter (scheduler and HTTP), on the fast clock."""
    from exporter.app import Exporter
    from exporter.config import (
        Config,
        ListenAddress,
        PollConfig,
        Secret,
        SplashifyConfig,
        Target,
        WebConfig,
    )
    from exporter.serve.statuspage import render_status_page
    from exporter.serve.web import make_app, start_http_server

    clock = FastClock(speed, origin)
    sim = Simulator(api_key=KEY, accounts=accounts(target_count), clock=clock).start()
    config = Config(
        splashify=SplashifyConfig(
            api_key=Secret(KEY),
            base_url=sim.url,
            timeout=0.9,
            max_concurrency=8,
            requests_per_second=1000,
        ),
        targets=tuple(Target(name=a.name, waba_id=a.waba_id) for a in sim.accounts),
        poll=PollConfig(interval=1.0, stale_after=365 * 86400.0),
        web=WebConfig(ListenAddress("127.0.0.1", port)),
    )
    disable_created_metrics()  # as the CLI does at start
    exporter = Exporter(config, clock=clock)
    start_http_server(
        config.web.listen_address,
        make_app(
            exporter.registry,
            exporter.is_ready,
            lambda: render_status_page(exporter.status_view()),
            cache=exporter.cache,
        ),
    )
    exporter.start_polling()
    ready.set()
    while True:
        time.sleep(3600)


@dataclass
class Report:
    scrapes: int = 0
    errors: int = 0
    torn: int = 0
    counter_decreases: int = 0
    buckets_seen: int = 0
    latencies: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        ordered = sorted(self.latencies) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"scrapes={self.scrapes} errors={self.errors} torn={self.torn} "
            f"counter_decreases={self.counter_decreases} "
            f"distinct_buckets_seen={self.buckets_seen} "
            f"latency_p50={statistics.median(ordered) * 1000:.1f}ms "
            f"p99={p99 * 1000:.1f}ms"
        )


class Checker:
    def __init__(self, target_count: int) -> None:
        self.by_name = {a.name: a for a in accounts(target_count)}
        self._cache: dict[tuple[str, int], dict[tuple[str, ...], int]] = {}
        self._lock = threading.Lock()

    def bucket_counts(self, name: str, bucket: int) -> dict[tuple[str, ...], int]:
        with self._lock:
            cached = self._cache.get((name, bucket))
        if cached is None:
            query = AnalyticsQuery(start=bucket, end=bucket + 1800, dimensions=DIMS)
            cached = {}
            for point in answer_points(self.by_name[name], query, bucket + 10 * 1800):
                labels = tuple(point.get(k, "") for k in POINT_KEYS)
                cached[labels] = cached.get(labels, 0) + point["conversation"]
            with self._lock:
                self._cache[(name, bucket)] = cached
        return cached

    def torn_targets(self, text: str) -> tuple[int, set[int], dict]:
        families = {f.name: f for f in text_string_to_metric_families(text)}
        starts = {
            s.labels["waba_name"]: int(s.value)
            for s in families["whatsapp_conversations_bucket_start_timestamp_seconds"].samples
        }
        gauges: dict[str, dict[tuple[str, ...], int]] = {}
        for sample in families["whatsapp_conversations"].samples:
            if sample.value:
                labels = tuple(sample.labels[label] for label in LABELS)
                gauges.setdefault(sample.labels["waba_name"], {})[labels] = int(sample.value)
        torn = sum(
            gauges.get(name, {}) != self.bucket_counts(name, bucket)
            for name, bucket in starts.items()
        )
        counters = {
            (s.labels["waba_name"], *(s.labels[label] for label in LABELS)): s.value
            for s in families["whatsapp_conversations_observed"].samples
        }
        return torn, set(starts.values()), counters


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(scrapers: int, seconds: float, targets: int, speed: float = 1800.0) -> Report:
    port = free_port()
    # A bucket boundary plus a margin, so that the first poll already has a busy history.
    origin = time.time() // 1800 * 1800 - 1800 * 24 + 60
    ready = multiprocessing.get_context("spawn").Event()
    child = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(port, targets, speed, origin, ready), daemon=True
    )
    child.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the exporter did not start")
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 20
        while requests.get(url.replace("/metrics", "/ready"), timeout=5).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the exporter never became ready")
            time.sleep(0.1)
        return _hammer(url, scrapers, seconds, Checker(targets))
    finally:
        child.kill()
        child.join()


def _hammer(url: str, scrapers: int, seconds: float, checker: Checker) -> Report:
    report, lock = Report(), threading.Lock()
    buckets: set[int] = set()
    stop_at = time.monotonic() + seconds

    def scraper() -> None:
        session, previous = requests.Session(), {}
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                response = session.get(url, timeout=10)
                response.raise_for_status()
                text = response.text
            except requests.RequestException:
                with lock:
                    report.errors += 1
                continue
            took = time.monotonic() - started
            torn, seen, counters = checker.torn_targets(text)
            decreases = sum(counters.get(k, v) < v for k, v in previous.items())
            previous = counters
            with lock:
                report.scrapes += 1
                report.torn += torn
                report.counter_decreases += decreases
                report.latencies.append(took)
                buckets.update(seen)

    threads = [threading.Thread(target=scraper) for _ in range(scrapers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.buckets_seen = len(buckets)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--targets", type=int, default=20)
    args = parser.parse_args()
    report = run(args.scrapers, args.seconds, args.targets)
    print(report.summary())
    raise SystemExit(0 if report.errors == report.torn == report.counter_decreases == 0 else 1)


if __name__ == "__main__":
    main()
