"""Performance benchmark: /metrics latency, bytes, memory, CPU and the poll cycle, against a
plain hand-written prometheus_client exporter and nginx serving the same bytes. A script that
reports figures; nothing here passes or fails on a timing (tests/test_benchmark.py runs
`--quick`).

    python -m bench.benchmark --series 10000,100000 --targets 200 --latency 0.1
    python -m bench.benchmark --quick          # a tiny smoke run, a few seconds

For each cardinality, in one run:

1. The simulated Splashify API starts in its own process (so its CPU does not share the
   benchmark's GIL) with `--targets` synthetic accounts (`scaled_accounts`), a per-request
   `--latency`, and its answer cache on, warmed before each polling phase with the very query
   the exporters will send (so the simulator answers from memory and is not what the poll cycle
   measures; misses during a cycle are reported).
2. **ours**: `python -m exporter --config <tmp yaml>` with every target, all five dimensions,
   `--concurrency` and `--rps` as `splashify.max_concurrency` and `requests_per_second`, and a
   30m poll interval, so that the scrapes run between the first and the second round of polls.
3. **nginx**: Debian's nginx (installed with apt-get when missing), a child process on a
   loopback port with its own temporary prefix and config, one worker, `sendfile on`,
   `gzip_static on`, serving the very bytes ours returned (plain, and the gzip body as the
   `.gz` file).
4. **handwritten**: `bench/handwritten.py`, the plain prometheus_client exporter that polls the
   same simulator sequentially.

Definitions (printed with the report too):

- **series**: sample lines of the two per-label-set data metrics, `whatsapp_conversations` and
  `whatsapp_conversations_observed_total`; N series are N/2 label sets, i.e.
  `round(N / 2 / targets)` label sets per account. Other lines (self-metrics, process_*) are
  served but not counted.
- **p50 / p99**: nearest-rank percentiles of the wall time of N sequential scrapes, each on a
  fresh connection with `http.client` (connect, send, read the whole body; a gzip body is not
  decompressed inside the timed region). Servers whose untimed warm-up scrape took more than
  `--slow-threshold` seconds get `--slow-scrapes` timed scrapes instead of `--scrapes`.
- **bytes**: the body served, plain and gzip.
  Fast servers get more timed scrapes: after `--scrapes`, scraping goes on for up to
  `--scrape-seconds` or `--max-scrapes`, whichever comes first.
- **RSS**: VmRSS of the server process (nginx: master and worker) after its first poll cycle
  and all the scrapes.
- **CPU / scrape**: utime + stime of the server process and its children (/proc/PID/stat)
  across the timed scrapes, minus its idle rate (measured over a quiet period before the
  scrapes, as long as the scrapes are expected to take, between `--quiet-min` and `--quiet-max`
  seconds), divided by the number of scrapes.
- **N at once**: `--burst` connections (500) opened at the same moment, each scraping once
  with gzip; the seconds until the last answer, and how many got none within 30 s (ours and
  nginx only).
- **poll cycle**: from the first request the simulator received to the answer it sent last, in
  the first round of polls (the simulator's request log). The exporter's first round starts at
  once. Also reported: from that first request until `/ready` answered 200 (ours; polled every
  50 ms), and the CPU the exporter spent in that time. **ideal** = max(targets x latency /
  concurrency, targets / rps) for ours; targets x latency for the sequential handwritten one.
- **max req/s**: the most requests the simulator received in any half-open 1-second window of
  the cycle, against the configured `--rps`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import http.client
import json
import math
import multiprocessing
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from exporter.simulator import Simulator, scaled_accounts
from exporter.upstream.query import AnalyticsQuery, build_fields, query_window, waba_path
from exporter.vocabulary import DIMENSIONS, HALF_HOUR_SECONDS

ROOT = Path(__file__).resolve().parent.parent
KEY = "bench-key-5c1e0d"
KEY_ENV = "BENCH_SPLASHIFY_KEY"
ALL_DIMENSIONS = tuple(d.api_name for d in DIMENSIONS)
DATA_PREFIXES = (b"whatsapp_conversations{", b"whatsapp_conversations_observed_total{")
UNSTABLE_PREFIXES = ("process_", "python_gc_")
"""Lines that change from one scrape to the next (CPU seconds, memory, GC counts)."""
SERVERS = ("ours", "nginx", "handwritten")
NGINX = "/usr/sbin/nginx"
POLL_INTERVAL = "30m"
CACHE_KEY_MARGIN_AFTER = 65.0
"""The answer cache's key moves when the half hour turns and again when `end` (60 s behind
the clock) crosses it: a polling phase is not started in that span."""


# -- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree(pid: int) -> list[int]:
    """A process and its direct children (nginx's master and its worker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its children, in seconds."""
    total = 0
    for one in _tree(pid):
        try:
            with open(f"/proc/{one}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            if one == pid:
                raise
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """VmRSS of a process and its children."""
    total = 0
    for one in _tree(pid):
        try:
            with open(f"/proc/{one}/status") as file:
                total += next(
                    int(line.split()[1]) * 1024 for line in file if line.startswith("VmRSS:")
                )
        except (OSError, StopIteration):
            if one == pid:
                raise RuntimeError(f"no VmRSS for pid {pid}") from None
    return total


def find_nginx() -> str | None:
    return shutil.which("nginx") or (NGINX if os.access(NGINX, os.X_OK) else None)


def ensure_nginx() -> str:
    """nginx's path; Debian's package is installed with apt-get when it is missing."""
    found = find_nginx()
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise RuntimeError("nginx is needed (the comparison server) and there is no apt-get")
    progress("installing Debian's nginx (the comparison server)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    found = find_nginx()
    if not found:
        raise RuntimeError("nginx was installed but is not on the PATH")
    return found


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def count_series(body: bytes) -> int:
    return sum(line.startswith(DATA_PREFIXES) for line in body.splitlines())


def stable_lines(body: bytes) -> list[str]:
    """The body's lines without those that change between two scrapes of one process."""
    return [
        line
        for line in body.decode().splitlines()
        if not line.removeprefix("# HELP ").removeprefix("# TYPE ").startswith(UNSTABLE_PREFIXES)
    ]


def http_status(port: int, path: str) -> int | None:
    """The status of GET path, None when nothing answers."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()
    except OSError:
        return None


@dataclass
class Scrape:
    seconds: float
    body: bytes
    encoding: str | None


def scrape(port: int, path: str, want_gzip: bool, timeout: float) -> Scrape:
    """One timed scrape on a fresh connection; the body is read whole, never decompressed."""
    headers = {"Accept-Encoding": "gzip" if want_gzip else "identity"}
    began = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        took = time.perf_counter() - began
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path} on port {port}: HTTP {response.status}")
    encoding = response.getheader("Content-Encoding")
    if (encoding == "gzip") != want_gzip:
        raise RuntimeError(f"GET {path}: asked gzip={want_gzip}, got Content-Encoding {encoding}")
    return Scrape(took, body, encoding)


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most of `times` in any half-open window [t, t + window)."""
    ordered = sorted(times)
    best, first = 0, 0
    for last, t in enumerate(ordered):
        while ordered[first] <= t - window:
            first += 1
        best = max(best, last - first + 1)
    return best


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the simulator, in its own process ------------------------------------------------------


def _simulator_main(
    conn: Any, count: int, label_sets: int, latency: float, warm_workers: int
) -> None:
    """The simulator process: serve, and answer the benchmark's commands on `conn`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    simulator = Simulator(
        api_key=KEY,
        accounts=scaled_accounts(count, label_sets),
        latency=latency,
        answer_cache=True,
    ).start()
    conn.send((simulator.url, os.getpid()))
    try:
        while True:
            command = conn.recv()
            if command == "log":
                conn.send(
                    [(r.time, r.answered, r.account_waba_id, r.status) for r in simulator.requests]
                )
            elif command == "clear":
                simulator.clear_requests()
                conn.send(None)
            elif command == "stats":
                conn.send(simulator.answer_cache_stats)
            else:
                break
    except (EOFError, OSError):
        pass
    finally:
        simulator.stop()


class SimulatorProcess:
    def __init__(self, count: int, label_sets: int, latency: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self.accounts = scaled_accounts(count, label_sets)
        self._process = context.Process(
            target=_simulator_main,
            args=(child_conn, count, label_sets, latency, 16),
            name="bench-simulator",
            daemon=True,
        )
        self._process.start()
        if not self._conn.poll(120):
            self.stop()
            raise RuntimeError("the simulator process did not start")
        self.url, self.pid = self._conn.recv()
        self._lock = threading.Lock()

    def _ask(self, command: str) -> Any:
        with self._lock:
            self._conn.send(command)
            return self._conn.recv()

    def log(self) -> list[tuple[float, float, str | None, int]]:
        return self._ask("log")

    def clear(self) -> None:
        self._ask("clear")

    def cache_stats(self) -> tuple[int, int]:
        return self._ask("stats")

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


# -- child processes -------------------------------------------------------------------------


class Child:
    """A server subprocess; stdout lines are collected, stderr goes to a log file."""

    def __init__(self, name: str, argv: list[str], workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.time()
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.pid = self.process.pid
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name=f"{name}-stdout").start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}; its log ends:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 20) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.05)
            except queue.Empty:
                self.check_alive()
                continue
            if line.startswith(prefix):
                return line
        raise RuntimeError(f"{self.name}: no line {prefix!r} within {timeout:g}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# -- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    """One server at one cardinality. Times in seconds, sizes in bytes."""

    server: str
    series_asked: int
    label_sets_per_account: int
    series: int = 0
    scrapes: int = 0
    reduced_scrapes: bool = False
    plain_seconds: list[float] = field(default_factory=list)
    gzip_seconds: list[float] = field(default_factory=list)
    bytes_plain: int = 0
    bytes_gzip: int = 0
    gzip_matches_plain: bool = False
    """The gzip body decompresses to the plain body (lines that change between scrapes aside)."""
    rss: int = 0
    cpu_per_scrape_plain: float = 0.0
    cpu_per_scrape_gzip: float = 0.0
    idle_cpu_rate: float = 0.0
    quiet_seconds: float = 0.0
    poll_cycle: float | None = None
    ideal: float | None = None
    requests_in_cycle: int = 0
    failed_requests_in_cycle: int = 0
    max_requests_per_second: int | None = None
    rps_limit: float | None = None
    first_request_to_ready: float | None = None
    start_to_ready: float | None = None
    own_cycle_report: float | None = None
    """handwritten: the first cycle as it timed it itself."""
    exporter_cpu_in_cycle: float | None = None
    simulator_cpu_in_cycle: float | None = None
    cache_misses_in_cycle: int | None = None
    burst_size: int = 0
    burst_seconds: float | None = None
    """`burst_size` simultaneous gzip scrapes: seconds until the last was answered."""
    burst_failed: int = 0
    plain_body: bytes = field(default=b"", repr=False)
    gzip_body: bytes = field(default=b"", repr=False)

    @property
    def p50_plain(self) -> float:
        return percentile(self.plain_seconds, 50)

    @property
    def p99_plain(self) -> float:
        return percentile(self.plain_seconds, 99)

    @property
    def p50_gzip(self) -> float:
        return percentile(self.gzip_seconds, 50)

    @property
    def p99_gzip(self) -> float:
        return percentile(self.gzip_seconds, 99)

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["plain_body"], data["gzip_body"]
        data.update(
            p50_plain=self.p50_plain,
            p99_plain=self.p99_plain,
            p50_gzip=self.p50_gzip,
            p99_gzip=self.p99_gzip,
        )
        return data


@dataclass
class Options:
    series: tuple[int, ...] = (10_000, 100_000)
    targets: int = 200
    latency: float = 0.1
    concurrency: int = 8
    rps: float = 100.0
    lookback: float = 6 * 3600.0
    scrapes: int = 20
    max_scrapes: int = 1000
    scrape_seconds: float = 3.0
    burst: int = 500
    slow_scrapes: int = 5
    slow_threshold: float = 1.0
    timeout: float = 120.0
    quiet_min: float = 2.0
    quiet_max: float = 30.0
    boundary_margin: float = 150.0
    """A polling phase is not started this close before a half hour turns (cache keys)."""

    def label_sets(self, series: int) -> int:
        return max(1, round(series / 2 / self.targets))

    @property
    def ideal(self) -> float:
        return max(self.targets * self.latency / self.concurrency, self.targets / self.rps)


# -- measuring -------------------------------------------------------------------------------


def measure_scrapes(result: Result, port: int, path: str, pid: int, options: Options) -> None:
    """Warm-up, idle CPU, timed plain and gzip scrapes, CPU per scrape, RSS (see the docstring)."""
    warm_plain = scrape(port, path, False, options.timeout)
    warm_gzip = scrape(port, path, True, options.timeout)
    slowest = max(warm_plain.seconds, warm_gzip.seconds)
    count = options.scrapes
    if slowest > options.slow_threshold and options.slow_scrapes < options.scrapes:
        count, result.reduced_scrapes = options.slow_scrapes, True
    result.scrapes = count
    expected = count * (warm_plain.seconds + warm_gzip.seconds)
    result.quiet_seconds = min(options.quiet_max, max(options.quiet_min, expected))
    cpu_before, began = cpu_seconds(pid), time.monotonic()
    time.sleep(result.quiet_seconds)
    result.idle_cpu_rate = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - began)

    for want_gzip in (False, True):
        cpu_before, began = cpu_seconds(pid), time.monotonic()
        timed = [scrape(port, path, want_gzip, options.timeout) for _ in range(count)]
        if not result.reduced_scrapes:
            # More scrapes for a fast server: a steadier p50, and CPU over more than a few
            # 10 ms ticks of /proc's accounting.
            until = began + options.scrape_seconds
            while len(timed) < options.max_scrapes and time.monotonic() < until:
                timed.append(scrape(port, path, want_gzip, options.timeout))
        busy = cpu_seconds(pid) - cpu_before - result.idle_cpu_rate * (time.monotonic() - began)
        per_scrape = max(0.0, busy) / len(timed)
        if want_gzip:
            result.gzip_seconds = [s.seconds for s in timed]
            result.cpu_per_scrape_gzip = per_scrape
            result.gzip_body = timed[-1].body
        else:
            result.plain_seconds = [s.seconds for s in timed]
            result.cpu_per_scrape_plain = per_scrape
            result.plain_body = timed[-1].body
    result.scrapes = len(result.gzip_seconds)
    result.rss = rss_bytes(pid)
    result.bytes_plain = len(result.plain_body)
    result.bytes_gzip = len(result.gzip_body)
    result.series = count_series(result.plain_body)
    result.gzip_matches_plain = stable_lines(gzip.decompress(result.gzip_body)) == stable_lines(
        result.plain_body
    )


def burst(result: Result, port: int, path: str, size: int, timeout: float = 30) -> None:
    """`size` connections at the same moment, each one gzip scrape (bounded: every thread
    gives up after `timeout`)."""
    barrier = threading.Barrier(size)
    failed: list[int] = []
    done = [0.0]
    lock = threading.Lock()

    def one() -> None:
        try:
            barrier.wait(timeout)
            scrape(port, path, True, timeout)
        except (OSError, RuntimeError, http.client.HTTPException, threading.BrokenBarrierError):
            with lock:
                failed.append(1)
        finally:
            with lock:
                done[0] = time.perf_counter()

    threads = [threading.Thread(target=one, daemon=True) for _ in range(size)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    for thread in threads:
        thread.join(timeout + 5)
    result.burst_size = size
    result.burst_seconds = max(0.0, done[0] - began)
    result.burst_failed = len(failed) + sum(thread.is_alive() for thread in threads)


def wait_for_stable_cache_keys(margin_before: float) -> None:
    """Sleep past a half-hour turn that would fall inside the next polling phase."""
    if margin_before <= 0:
        return
    into = time.time() % HALF_HOUR_SECONDS
    if into < CACHE_KEY_MARGIN_AFTER:
        wait = CACHE_KEY_MARGIN_AFTER - into
    elif into > HALF_HOUR_SECONDS - margin_before:
        wait = HALF_HOUR_SECONDS - into + CACHE_KEY_MARGIN_AFTER
    else:
        return
    progress(f"waiting {wait:.0f}s for the half hour to turn (the answer cache keys move)")
    time.sleep(wait)


def warm_cache(sim: SimulatorProcess, options: Options) -> float:
    """Ask the simulator once per account the exporters' own question; returns seconds taken."""
    began = time.monotonic()
    start, end = query_window(time.time(), options.lookback)
    fields = build_fields(AnalyticsQuery(start=start, end=end, dimensions=ALL_DIMENSIONS))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"

    def ask(waba_id: str) -> None:
        response = session.get(
            sim.url + waba_path("v25.0", waba_id), params={"fields": fields}, timeout=600
        )
        response.raise_for_status()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(ask, [a.waba_id for a in sim.accounts]))
    return time.monotonic() - began


def cycle_from_log(result: Result, sim: SimulatorProcess, sim_cpu_before: float) -> float:
    """Fill in the poll cycle from the simulator's log; returns the time of the first request."""
    log = [entry for entry in sim.log() if entry[2] is not None]
    if not log:
        raise RuntimeError(f"{result.server}: the simulator saw no request")
    first = min(entry[0] for entry in log)
    result.poll_cycle = max(entry[1] for entry in log) - first
    result.requests_in_cycle = len(log)
    result.failed_requests_in_cycle = sum(entry[3] != 200 for entry in log)
    result.max_requests_per_second = max_in_window([entry[0] for entry in log])
    result.simulator_cpu_in_cycle = cpu_seconds(sim.pid) - sim_cpu_before
    return first


def run_ours(
    sim: SimulatorProcess, result: Result, options: Options, workdir: Path, env: dict[str, str]
) -> None:
    port = free_port()
    config = {
        "splashify": {
            "base_url": sim.url,
            "api_key": "${" + KEY_ENV + "}",
            "timeout": "60s",
            "max_concurrency": options.concurrency,
            "requests_per_second": options.rps,
        },
        "poll": {"interval": POLL_INTERVAL, "lookback": f"{options.lookback:g}s"},
        "dimensions": list(ALL_DIMENSIONS),
        "targets": [{"waba_id": a.waba_id, "name": a.name} for a in sim.accounts],
    }
    config_path = workdir / "ours.yaml"
    config_path.write_text(yaml.safe_dump(config))
    cache_before = prepare_phase(sim, options)
    sim_cpu = cpu_seconds(sim.pid)
    argv = [sys.executable, "-m", "exporter", "--config", str(config_path)]
    argv += ["--web.listen-address", f"127.0.0.1:{port}"]
    child = Child("ours", argv, workdir, env)
    try:
        samples: list[tuple[float, float]] = []  # (wall clock, exporter CPU) while polling
        deadline = time.monotonic() + 600 + options.targets * 5
        while http_status(port, "/ready") != 200:
            child.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("ours: /ready never turned 200; log:\n" + child.log_tail())
            samples.append((time.time(), cpu_seconds(child.pid)))
            time.sleep(0.05)
        ready, cpu_at_ready = time.time(), cpu_seconds(child.pid)
        first = cycle_from_log(result, sim, sim_cpu)
        result.ideal, result.rps_limit = options.ideal, options.rps
        result.first_request_to_ready = ready - first
        result.start_to_ready = ready - child.started
        cpu_at_first = max((cpu for wall, cpu in samples if wall <= first), default=0.0)
        result.exporter_cpu_in_cycle = cpu_at_ready - cpu_at_first
        result.cache_misses_in_cycle = sim.cache_stats()[1] - cache_before
        progress(
            f"ours: first poll cycle {result.poll_cycle:.2f}s (ideal {options.ideal:.2f}s), "
            f"ready {result.first_request_to_ready:.2f}s after the first request; scraping"
        )
        measure_scrapes(result, port, "/metrics", child.pid, options)
        burst(result, port, "/metrics", options.burst)
    finally:
        child.stop()


NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 30s;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ }}
    default_type "text/plain; version=0.0.4; charset=utf-8";
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        root {root};
        gzip_static on;
    }}
}}
"""


def run_nginx(ours: Result, result: Result, options: Options, workdir: Path) -> None:
    """nginx serving the bytes ours served: `metrics.txt`, and `metrics.txt.gz` for a client
    that accepts gzip (gzip_static)."""
    binary = ensure_nginx()
    # Its own prefix, outside the benchmark's 0700 temporary directory: started as root,
    # nginx's worker runs as nobody and must be able to read the files.
    prefix = Path(tempfile.mkdtemp(prefix="whatsapp-bench-nginx-"))
    try:
        root = prefix / "root"
        root.mkdir()
        (root / "metrics.txt").write_bytes(ours.plain_body)
        (root / "metrics.txt.gz").write_bytes(ours.gzip_body)
        for path in (prefix, root):
            path.chmod(0o755)
        for path in root.iterdir():
            path.chmod(0o644)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(prefix=prefix, port=port, root=root))
        argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", "stderr"]
        child = Child("nginx", argv, workdir, dict(os.environ))
        try:
            deadline = time.monotonic() + 30
            while http_status(port, "/metrics.txt") != 200:
                child.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not answer; its log:\n" + child.log_tail())
                time.sleep(0.05)
            measure_scrapes(result, port, "/metrics.txt", child.pid, options)
            burst(result, port, "/metrics.txt", options.burst)
        finally:
            child.stop()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def run_handwritten(
    sim: SimulatorProcess, result: Result, options: Options, workdir: Path, env: dict[str, str]
) -> None:
    targets_path = workdir / "targets.json"
    targets_path.write_text(
        json.dumps([{"waba_id": a.waba_id, "name": a.name} for a in sim.accounts])
    )
    cache_before = prepare_phase(sim, options)
    sim_cpu = cpu_seconds(sim.pid)
    argv = [sys.executable, "-m", "bench.handwritten", "--base-url", sim.url]
    argv += ["--targets", str(targets_path), "--port", "0", "--interval", "1800"]
    argv += ["--lookback", str(options.lookback)]
    child = Child("handwritten", argv, workdir, {**env, "SPLASHIFY_API_KEY": KEY})
    try:
        port = int(child.wait_line("listening on ", 60).rsplit(":", 1)[1])
        timeout = 600 + options.targets * (options.latency + 5)
        line = child.wait_line("first poll cycle: ", timeout)
        result.own_cycle_report = float(line.split(": ")[1].split()[0])
        cycle_from_log(result, sim, sim_cpu)
        result.ideal = options.targets * options.latency
        result.cache_misses_in_cycle = sim.cache_stats()[1] - cache_before
        progress(f"handwritten: first poll cycle {result.poll_cycle:.2f}s; scraping")
        measure_scrapes(result, port, "/metrics", child.pid, options)
    finally:
        child.stop()


def prepare_phase(sim: SimulatorProcess, options: Options) -> int:
    """Before a polling phase: dodge a cache-key turn, warm the cache, clear the log.

    Returns the cache misses so far."""
    wait_for_stable_cache_keys(options.boundary_margin)
    took = warm_cache(sim, options)
    progress(f"simulator answer cache warm ({took:.1f}s)")
    sim.clear()
    return sim.cache_stats()[1]


def run_cardinality(series: int, options: Options, workdir: Path) -> list[Result]:
    label_sets = options.label_sets(series)
    progress(
        f"{series} series: {options.targets} targets x {label_sets} label sets x 2 metrics; "
        f"latency {options.latency * 1000:g} ms"
    )
    env = {**os.environ, KEY_ENV: KEY}
    results = {name: Result(name, series, label_sets) for name in SERVERS}
    sim = SimulatorProcess(options.targets, label_sets, options.latency)
    try:
        run_ours(sim, results["ours"], options, workdir, env)
        progress("nginx: serving the bytes ours served")
        run_nginx(results["ours"], results["nginx"], options, workdir)
        progress("handwritten: first poll cycle (sequential)")
        run_handwritten(sim, results["handwritten"], options, workdir, env)
    finally:
        sim.stop()
    return [results[name] for name in SERVERS]


def run(options: Options) -> list[Result]:
    """Every cardinality; everything started is stopped, also on an exception or Ctrl-C."""
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="whatsapp-bench-") as tmp:
        for series in options.series:
            workdir = Path(tmp) / str(series)
            workdir.mkdir()
            results.extend(run_cardinality(series, options, workdir))
    return results


# -- report ----------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as file:
        for line in file:
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    import prometheus_client

    from exporter import __version__

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "exporter"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "prometheus_client": prometheus_client.__version__
        if hasattr(prometheus_client, "__version__")
        else _dist_version("prometheus-client"),
        "exporter": f"{__version__} at {commit or '?'}"
        + (" + uncommitted changes in exporter/" if dirty else ""),
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _size(count: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"


def _ratio(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:.0f}"


def report(results: list[Result], options: Options, info: dict[str, str], elapsed: float) -> str:
    lines = ["# whatsapp-exporter benchmark", ""]
    lines.append("Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()) + ".")
    lines.append(
        f"Run: series {', '.join(map(str, options.series))}; {options.targets} targets; "
        f"latency {options.latency * 1000:g} ms; concurrency {options.concurrency}; "
        f"rps {options.rps:g}; lookback {options.lookback / 3600:g}h; "
        f"at least {options.scrapes} scrapes per server and encoding, up to "
        f"{options.max_scrapes} within {options.scrape_seconds:g}s ({options.slow_scrapes} for a "
        f"server whose warm-up scrape took over {options.slow_threshold:g}s); "
        f"{options.burst} at once; took {elapsed:.0f}s."
    )
    lines += ["", "## Results", ""]
    header = (
        "| server | series | p50 plain ms | p99 plain ms | p50 gzip ms | p99 gzip ms | "
        "bytes plain | bytes gzip | RSS MiB | CPU/scrape plain ms | CPU/scrape gzip ms | "
        f"poll cycle s | ideal s | cycle/ideal | max req/s (limit) | scrapes | "
        f"{options.burst} at once s (failed) |"
    )
    lines += [header, "|" + "---|" * header.count(" | ") + "---|"]
    for r in results:
        cycle = ideal = ratio = rate = "-"
        if r.poll_cycle is not None and r.ideal is not None:
            cycle, ideal = f"{r.poll_cycle:.2f}", f"{r.ideal:.2f}"
            ratio = f"{r.poll_cycle / r.ideal:.2f}" if r.ideal > 0 else "-"
        if r.max_requests_per_second is not None:
            limit = f"{r.rps_limit:g}" if r.rps_limit is not None else "none"
            rate = f"{r.max_requests_per_second} ({limit})"
        scrapes = f"{r.scrapes}" + ("*" if r.reduced_scrapes else "")
        crowd = "-"
        if r.burst_seconds is not None:
            crowd = f"{r.burst_seconds:.2f} ({r.burst_failed})"
        lines.append(
            f"| {r.server} | {r.series} | {_ms(r.p50_plain)} | {_ms(r.p99_plain)} | "
            f"{_ms(r.p50_gzip)} | {_ms(r.p99_gzip)} | {_size(r.bytes_plain)} | "
            f"{_size(r.bytes_gzip)} | {r.rss / 2**20:.1f} | {_ms(r.cpu_per_scrape_plain)} | "
            f"{_ms(r.cpu_per_scrape_gzip)} | {cycle} | {ideal} | {ratio} | {rate} | {scrapes} | "
            f"{crowd} |"
        )
    if any(r.reduced_scrapes for r in results):
        lines += [
            "",
            f"\\* fewer scrapes: the warm-up scrape took over {options.slow_threshold:g}s, so "
            f"{options.slow_scrapes} timed scrapes per encoding (p99 is then the slowest).",
        ]

    by = {(r.server, r.series_asked): r for r in results}
    lines += ["", "## Ratios", ""]
    lines.append(
        "| series | ours/nginx p50 gzip | ours/nginx CPU/scrape gzip | handwritten/ours p50 gzip "
        "| ours cycle/ideal | ours max req/s / rps | ours first request to /ready s |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for series in options.series:
        ours, nginx, hand = by["ours", series], by["nginx", series], by["handwritten", series]
        cycle = ours.poll_cycle / ours.ideal if ours.poll_cycle and ours.ideal else float("nan")
        rate = (ours.max_requests_per_second or 0) / options.rps
        cpu = (
            _ratio(ours.cpu_per_scrape_gzip / nginx.cpu_per_scrape_gzip)
            if nginx.cpu_per_scrape_gzip > 0
            else "-"
        )
        lines.append(
            f"| {ours.series} | {_ratio(ours.p50_gzip / nginx.p50_gzip)} | {cpu} | "
            f"{_ratio(hand.p50_gzip / ours.p50_gzip)} | {cycle:.2f} | {rate:.2f} | "
            f"{ours.first_request_to_ready:.2f} |"
        )
    lines.append("")
    lines.append(
        "Targets: ours/nginx p50 gzip <= 1.5 at 100k series and <= 2 at 10k; ours/nginx CPU "
        "per gzip scrape <= 2; 500 simultaneous scrapes all answered in under 5 s; "
        "handwritten/ours p50 gzip >= 1000, RSS growth <= 400 B per added series "
        "(10k -> 100k), cycle/ideal <= 1.2 and never above the configured rps (at 100k)."
    )
    if len(options.series) >= 2:
        low, high = min(options.series), max(options.series)
        lines.append("")
        for server in ("ours", "handwritten"):
            a, b = by[server, low], by[server, high]
            if b.series != a.series:
                growth = (b.rss - a.rss) / (b.series - a.series)
                lines.append(
                    f"RSS growth per added series, {a.series} -> {b.series} series, {server}: "
                    f"{growth:.0f} B ({a.rss / 2**20:.1f} -> {b.rss / 2**20:.1f} MiB)."
                )

    lines += ["", "## Poll cycle details", ""]
    for r in results:
        if r.poll_cycle is None:
            continue
        details = [
            f"{r.requests_in_cycle} requests ({r.failed_requests_in_cycle} not 200)",
            f"answer-cache misses {r.cache_misses_in_cycle}",
            f"simulator CPU {r.simulator_cpu_in_cycle:.2f}s",
        ]
        if r.exporter_cpu_in_cycle is not None and r.first_request_to_ready:
            share = r.exporter_cpu_in_cycle / r.first_request_to_ready
            details.append(
                f"exporter CPU from first request to /ready {r.exporter_cpu_in_cycle:.2f}s "
                f"({share:.0%} of a core)"
            )
        if r.start_to_ready is not None:
            details.append(f"process start to /ready {r.start_to_ready:.2f}s")
        if r.own_cycle_report is not None:
            details.append(f"its own timing of the cycle {r.own_cycle_report:.2f}s")
        lines.append(f"- {r.server}, {r.series} series: " + "; ".join(details) + ".")

    lines += ["", "## Definitions", ""]
    lines += [
        "- series: sample lines of whatsapp_conversations and "
        "whatsapp_conversations_observed_total (N series = N/2 label sets).",
        "- p50/p99: nearest rank over sequential scrapes (at least --scrapes, more for a fast "
        "server: up to --max-scrapes within --scrape-seconds), fresh connection each, whole "
        "body read, "
        "gzip not decompressed in the timed region.",
        "- RSS: VmRSS (nginx: master + worker) after the first poll cycle and all scrapes. "
        "CPU/scrape: utime+stime of the process and its children over the scrapes minus the "
        "idle rate of a quiet period before them, per scrape.",
        "- poll cycle: simulator log, first request received to last answer sent, first round. "
        "ideal: max(targets x latency / concurrency, targets / rps) for ours, targets x latency "
        "for the sequential handwritten exporter.",
        "- max req/s: most requests received in any half-open 1 s window of the cycle.",
        "- nginx: Debian's nginx, one worker, sendfile and gzip_static on, serving the bytes ours "
        "served (the gzip body as the .gz file, sent with Content-Encoding: gzip).",
        f"- N at once: {options.burst} connections opened together, one gzip scrape each; "
        "seconds until the last answer (failed: no answer within 30 s).",
    ]
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------------------


def _series_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of integers: {text!r}"
        ) from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("every cardinality must be at least 2")
    return values


def parse_options(argv: Sequence[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.benchmark", description=__doc__.split("\n\n")[0]
    )
    defaults = Options()
    parser.add_argument(
        "--series",
        type=_series_list,
        default=defaults.series,
        help="cardinalities, comma separated (default 10000,100000)",
    )
    parser.add_argument("--targets", type=int, default=defaults.targets)
    parser.add_argument(
        "--latency",
        type=float,
        default=defaults.latency,
        help="simulated upstream latency per request, seconds (default 0.1)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help="splashify.max_concurrency of ours (default 8)",
    )
    parser.add_argument(
        "--rps",
        type=float,
        default=defaults.rps,
        help="splashify.requests_per_second of ours (default 100)",
    )
    parser.add_argument(
        "--lookback",
        type=float,
        default=defaults.lookback,
        help="poll.lookback in seconds, for both exporters (default 21600)",
    )
    parser.add_argument(
        "--scrapes",
        type=int,
        default=defaults.scrapes,
        help="timed scrapes per server and encoding (default 20)",
    )
    parser.add_argument(
        "--max-scrapes",
        type=int,
        default=defaults.max_scrapes,
        help="timed scrapes per server and encoding at most, for a fast server (default 1000)",
    )
    parser.add_argument(
        "--scrape-seconds",
        type=float,
        default=defaults.scrape_seconds,
        help="a fast server is scraped for up to this long per encoding (default 3)",
    )
    parser.add_argument(
        "--burst",
        type=int,
        default=defaults.burst,
        help="simultaneous scrapes of the crowd check (default 500)",
    )
    parser.add_argument(
        "--slow-scrapes",
        type=int,
        default=defaults.slow_scrapes,
        help="timed scrapes for a server whose warm-up scrape was slow (default 5)",
    )
    parser.add_argument(
        "--slow-threshold",
        type=float,
        default=defaults.slow_threshold,
        help="seconds a warm-up scrape takes to count as slow (default 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout,
        help="HTTP timeout of a scrape, seconds (default 120)",
    )
    parser.add_argument(
        "--quiet-max",
        type=float,
        default=defaults.quiet_max,
        help="longest quiet period for the idle CPU rate, seconds (default 30)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny smoke run: 2 targets, 100 and 200 series, no latency, "
        "3 scrapes (other flags are ignored)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        options = Options(
            series=(100, 200),
            targets=2,
            latency=0.0,
            scrapes=3,
            max_scrapes=3,
            burst=20,
            slow_scrapes=3,
            quiet_min=0.2,
            quiet_max=0.5,
            boundary_margin=0.0,
        )
    else:
        options = Options(
            series=args.series,
            targets=args.targets,
            latency=args.latency,
            concurrency=args.concurrency,
            rps=args.rps,
            lookback=args.lookback,
            scrapes=args.scrapes,
            max_scrapes=max(args.max_scrapes, args.scrapes),
            scrape_seconds=args.scrape_seconds,
            burst=args.burst,
            slow_scrapes=min(args.slow_scrapes, args.scrapes),
            slow_threshold=args.slow_threshold,
            timeout=args.timeout,
            quiet_max=args.quiet_max,
        )
    if options.targets < 1 or options.concurrency < 1 or options.rps <= 0 or options.scrapes < 1:
        parser.error("--targets, --concurrency, --rps and --scrapes must be positive")
    return options, args


def main(argv: Sequence[str] | None = None) -> int:
    options, args = parse_options(argv)

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    began = time.monotonic()
    try:
        results = run(options)
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    info = machine()
    elapsed = time.monotonic() - began
    sys.stdout.write(report(results, options, info, elapsed))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "options": dataclasses.asdict(options),
                    "ideal": options.ideal,
                    "elapsed_seconds": elapsed,
                    "results": [r.as_json() for r in results],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
