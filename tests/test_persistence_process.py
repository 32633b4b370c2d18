"""`--persistence.file` in real processes: a real Prometheus across a restart, SIGKILL at
random moments of saves, a full disk, and the command line's faults.

Exporters whose buckets must complete within a test run `tests.fastclock` (the real command
line with a fast data clock, the simulator in this process on the same clock); the rest run
`python -m exporter` on the real clock.
"""

from __future__ import annotations

import itertools
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import time
from array import array
from pathlib import Path

import pytest
import yaml

from exporter.config import Config, Secret, SplashifyConfig, Target, load_config
from exporter.pipeline.persistence import open_state_file
from exporter.simulator import Simulator, scaled_accounts
from exporter.simulator.traffic import answer_points
from exporter.upstream.query import AnalyticsQuery
from tests.conftest import (
    TEST_API_KEY,
    WABA_ACCOUNTS,
    config_dict,
    free_port,
    parse_metrics,
    run_exporter,
    write_config,
)
from tests.fastclock import FastClock
from tests.test_prometheus import Prometheus

H = 1800
SPEED = 600.0
"""Fake seconds per real second: a half-hour bucket completes every 3 s."""
ORIGIN = 1_781_084_832.0  # 2026-06-10 09:47:12 UTC, an afternoon in India: busy accounts
FASTCLOCK = ("-m", "tests.fastclock")


def fast_clock() -> FastClock:
    return FastClock(SPEED, ORIGIN, time.time())


def fast_config(sim: Simulator, accounts, **poll) -> dict:
    return {
        "splashify": {"base_url": sim.url, "api_key": "${TEST_SPLASHIFY_KEY}", "timeout": "0.9s"},
        # In fake seconds, except the interval, which the scheduler keeps in real seconds.
        "poll": {"interval": "1s", "lookback": "6h", "delay": "30m", "stale_after": "30d", **poll},
        "targets": [{"waba_id": a.waba_id, "name": a.name} for a in accounts],
    }


def unreadable_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if ".unreadable-" in p.name]


def final_bucket(account, start: int) -> int:
    """The simulator's settled count of one half hour of one account, all label sets."""
    points = answer_points(account, AnalyticsQuery(start=start, end=start + H), start + 10 * H)
    return sum(int(p["conversation"]) for p in points)


def added_up(series: list[dict]) -> float:
    """What the counter samples add up to over the range, as increase() counts (a drop is a
    reset from 0), without extrapolation. A series that appears after the first scrape starts
    from 0 (the exporter creates counter series at 0)."""
    first_scrape = min(float(s["values"][0][0]) for s in series)
    total = 0.0
    for s in series:
        values = [float(v) for _, v in s["values"]]
        previous = values[0] if float(s["values"][0][0]) == first_scrape else 0.0
        for value in values:
            total += value - previous if value >= previous else value
            previous = value
    return total


def resets(series: list[dict]) -> int:
    count = 0
    for s in series:
        values = [float(v) for _, v in s["values"]]
        count += sum(1 for a, b in itertools.pairwise(values) if b < a)
    return count


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="scripts/test.sh installs Debian's prometheus"
)
def test_prometheus_adds_up_exactly_across_a_restart_with_the_file(
    start_exporter, tmp_path: Path
) -> None:
    clock = fast_clock()
    accounts = WABA_ACCOUNTS[:2]
    with Simulator(api_key=TEST_API_KEY, accounts=accounts, clock=clock) as sim:
        config = write_config(tmp_path / "c.yaml", fast_config(sim, accounts))
        state = tmp_path / "state.db"
        flags = {
            "persisted": ("--persistence.file", str(state)),
            "plain": (),
        }
        ports = {kind: free_port() for kind in flags}

        def start(kind: str):
            return start_exporter(
                *clock.argv(), "--config", str(config), *flags[kind],
                port=ports[kind], command=FASTCLOCK,
            )

        exporters = {kind: start(kind) for kind in flags}
        for exporter in exporters.values():
            exporter.wait_ready()
        prometheus = Prometheus(
            tmp_path,
            "",
            config_text="global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n"
            + "".join(
                f"  - job_name: {kind}\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
                for kind, port in ports.items()
            ),
        )
        try:
            for kind in flags:
                prometheus.wait_for(f'up{{job="{kind}"}} == 1')
            time.sleep(9)  # three buckets complete
            for exporter in exporters.values():
                assert exporter.stop(signal.SIGKILL) == -signal.SIGKILL
            time.sleep(4)  # one bucket or two complete while both are down
            exporters = {kind: start(kind) for kind in flags}
            for exporter in exporters.values():
                exporter.wait_ready()
            time.sleep(9)
            # The bucket reported and the counter, as Prometheus stored them.
            window = "[90s]"
            report = {}
            for kind in flags:
                for account in accounts:
                    selector = f'{{job="{kind}",waba_name="{account.name}"}}'
                    counters = prometheus.query(
                        f"whatsapp_conversations_observed_total{selector}{window}"
                    )
                    (buckets,) = prometheus.query(
                        f"whatsapp_conversations_bucket_start_timestamp_seconds{selector}{window}"
                    )
                    times = [float(t) for t, _ in buckets["values"]]
                    starts = [int(float(v)) for _, v in buckets["values"]]
                    # Every bucket after the one the first scrape saw, up to the last one seen.
                    true = sum(
                        final_bucket(account, b) for b in range(starts[0] + H, starts[-1] + H, H)
                    )
                    # The restart: the one gap between scrapes that answered. Down meanwhile:
                    # the buckets after the last one reported before it, up to the first after.
                    (gap,) = [i for i in range(len(times) - 1) if times[i + 1] - times[i] > 2.5]
                    downtime = sum(
                        final_bucket(account, b)
                        for b in range(starts[gap] + H, starts[gap + 1] + H, H)
                    )
                    report[kind, account.name] = (added_up(counters), true, downtime,
                                                  resets(counters), len(starts))
        finally:
            prometheus.stop()
    print("\n(kind, account): (added up, true, downtime buckets, resets, scrapes)", report)
    for account in accounts:
        added, true, downtime, reset_count, scrapes = report["persisted", account.name]
        assert scrapes >= 15
        assert downtime > 0, "buckets completed while the exporter was down"
        assert reset_count == 0, "Prometheus sees no reset"
        assert added == true, "exact across the restart"
        added, true, downtime, reset_count, _ = report["plain", account.name]
        assert reset_count > 0
        assert added <= true, "nothing added"
        assert true - added <= downtime, "at most the downtime's buckets missing"
        assert true - added > 0, "the test can tell the two apart"


def wal_ends_inside_a_transaction(path: Path) -> bool:
    """Whether the WAL holds frames written after its last commit (a transaction cut short)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    if len(data) < 32:
        return False
    page_size = struct.unpack(">I", data[8:12])[0]
    salts = data[16:24]
    frame = 24 + page_size
    last_commit, frames = -1, 0
    offset = 32
    while offset + 24 <= len(data):
        header = data[offset : offset + 24]
        if header[8:16] != salts:
            break
        if offset + frame > len(data):
            return True  # a frame only partly written
        if struct.unpack(">I", header[4:8])[0]:
            last_commit = frames
        frames += 1
        offset += frame
    return frames > last_commit + 1


_DIMENSION_LABELS = (
    "conversation_category",
    "conversation_direction",
    "conversation_type",
    "country",
    "phone_number",
)


def _labels(labels: dict[str, str]) -> tuple[str, ...]:
    return tuple(labels[name] for name in _DIMENSION_LABELS)


def wait_for_a_write(path: Path, timeout: float = 10) -> None:
    """Until the file's modification time changes: a save has begun writing."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    deadline = time.monotonic() + timeout
    while (path.stat().st_mtime_ns if path.exists() else 0) == before:
        assert time.monotonic() < deadline, f"no write to {path} within {timeout}s"
        time.sleep(0.0005)


def test_sigkill_at_random_moments_never_loses_what_was_served(
    start_exporter, tmp_path: Path, monkeypatch
) -> None:
    """The real exporter, killed again and again: while it starts (opening and reading the
    file, the first poll's saves), as a save begins writing, and at any moment between polls.
    After every kill the file reads back whole and holds at least every value ever served; after
    every restart no counter is lower than it was (Prometheus would see no reset)."""
    monkeypatch.setenv("TEST_SPLASHIFY_KEY", TEST_API_KEY)
    clock = fast_clock()
    accounts = scaled_accounts(3, 400)
    rng = random.Random(11)
    state = tmp_path / "state.db"
    wal = Path(f"{state}-wal")
    with Simulator(api_key=TEST_API_KEY, accounts=accounts, clock=clock) as sim:
        path = write_config(tmp_path / "c.yaml", fast_config(sim, accounts, lookback="2h"))
        config = load_config(str(path))
        served: dict[tuple[str, tuple[str, ...]], float] = {}  # the highest value of each
        moments = ["starting", "writing", "anytime"] * 4
        for kill, moment in enumerate(moments):
            exporter = start_exporter(
                *clock.argv(), "--config", str(path), "--persistence.file", str(state),
                command=FASTCLOCK,
            )
            if moment == "starting":
                time.sleep(rng.uniform(0.0, 1.2))
            else:
                exporter.wait_ready()
                families = exporter.scrape()
                for sample in families["whatsapp_conversations_observed"].samples:
                    key = (sample.labels["waba_name"], _labels(sample.labels))
                    assert sample.value >= served.get(key, 0), (kill, key, "lower than before")
                    served[key] = sample.value
                if moment == "writing":
                    wait_for_a_write(wal)
                    time.sleep(rng.uniform(0, 0.004))
                else:
                    time.sleep(rng.uniform(0, 1.0))
            exporter.stop(signal.SIGKILL)
            # The file reads back whole, and holds at least everything that was served.
            state_file = open_state_file(str(state))
            restored = state_file.restore(config)
            state_file.close()
            assert not unreadable_files(tmp_path), exporter.output()
            if served:
                assert set(restored) == {a.name for a in accounts}, (kill, moment)
            for name, counters in restored.items():
                observed = counters[("conversation_analytics", "conversation")]
                for labels, value in observed.totals.items():
                    assert value >= served.get((name, labels), 0), (kill, moment, name, labels)
    assert sum(served.values()) > 0, "buckets completed: the counters moved"


SIZE = 20000
VALUES = """
def values(number, salt):
    # Save N's arrays: recognisable as N's, and incompressible (megabytes per transaction).
    return array("q", ((number * 1000003 + n * 7919 + salt) * 2654435761 % 2**61
                       for n in range(SIZE)))
""".replace("SIZE", str(SIZE))
SAVER = (
    """
import sys
from array import array
from exporter.config import Config, Secret, SplashifyConfig, Target
from exporter.pipeline.buckets import ObservedState
from exporter.pipeline.persistence import open_state_file
"""
    + VALUES
    + """
target = Target(name="big", waba_id="1")
config = Config(splashify=SplashifyConfig(api_key=Secret("k")), targets=(target,),
                dimensions=("PHONE",))
index = {(f"91{n:010d}",): n for n in range(SIZE)}
state_file = open_state_file(sys.argv[1])
restored = state_file.restore(config)
number = restored["big"][("conversation_analytics", "conversation")].floor if restored else 0
while True:
    number += 1
    state = ObservedState(index=index, total_values=values(number, 0),
                          last_seen=values(number, 1),
                          counted_values={0: values(number, 2), 1800: values(number, 3)},
                          floor=number)
    state_file.save(target, config, state)
    print(number, flush=True)
""".replace("SIZE", str(SIZE))
)


def test_sigkill_inside_a_save_keeps_the_last_complete_state(tmp_path: Path) -> None:
    """The state file alone, saving a 20000-series state (about 640 kB per transaction) in a
    loop and printing each number once its save returned; killed at random moments, mostly
    inside a write. The file must then hold exactly the last save that returned, or the one
    being written if its commit had reached the file, and nothing mixed."""
    namespace: dict = {"array": array}
    exec(VALUES, namespace)
    values = namespace["values"]
    rng = random.Random(7)
    state = tmp_path / "state.db"
    wal = Path(f"{state}-wal")
    interrupted = 0
    kills = 20
    config_target = Target(name="big", waba_id="1")
    config = Config(
        splashify=SplashifyConfig(api_key=Secret("k")),
        targets=(config_target,),
        dimensions=("PHONE",),
    )
    for _ in range(kills):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(state)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert saver.stdout is not None
        acknowledged = int(saver.stdout.readline())  # one save done: the next is under way
        wait_for_a_write(wal)
        time.sleep(rng.uniform(0, 0.003))
        saver.kill()
        rest, _ = saver.communicate()
        lines = rest.split()
        if lines:
            acknowledged = int(lines[-1])
        interrupted += wal_ends_inside_a_transaction(wal)
        state_file = open_state_file(str(state))
        ((restored,),) = (c.values() for c in state_file.restore(config).values())
        state_file.close()
        assert not unreadable_files(tmp_path)
        number = restored.floor
        assert number in (acknowledged, acknowledged + 1), (number, acknowledged)
        # Nothing mixed: every array is save N's.
        assert restored.total_values == values(number, 0)
        assert restored.last_seen == values(number, 1)
        assert restored.counted_values == {0: values(number, 2), 1800: values(number, 3)}
    print(f"\n{kills} kills, {interrupted} inside a transaction")
    assert interrupted > 0, "no kill landed inside a write"


def _value(families: dict, name: str) -> float:
    (sample,) = families[name].samples
    return sample.value


def test_a_full_disk_fails_saves_visibly_while_polling_goes_on(
    simulator, start_exporter, tmp_path: Path
) -> None:
    settings = config_dict(simulator, poll={"interval": "2s"})
    settings["splashify"]["timeout"] = "1.5s"
    config = write_config(tmp_path / "c.yaml", settings)
    state = tmp_path / "state.db"
    # The file exists (its schema written); then the process may write only a little more:
    # RLIMIT_FSIZE makes a write past it fail (EFBIG), as a full disk does.
    assert run_exporter("--config", str(config), "--once", "--persistence.file",
                        str(state)).returncode == 0
    limit = os.path.getsize(state) + 4096
    exporter = start_exporter(
        "--config", str(config), "--persistence.file", str(state),
        preexec_fn=lambda: resource.setrlimit(
            resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)
        ),
    )
    exporter.wait_ready()
    failing = exporter.wait_for(
        lambda f: _value(f, "whatsapp_exporter_persistence_last_save_success") == 0,
        "a save to fail",
    )
    assert _value(failing, "whatsapp_exporter_persistence_save_failures") >= 1
    # Polling and serving go on.
    polled = _value(failing, "whatsapp_exporter_renders")
    exporter.wait_for(
        lambda f: _value(f, "whatsapp_exporter_renders") > polled + 2
        and {s.value for s in f["whatsapp_exporter_poll_success"].samples} == {1.0},
        "polls to go on",
    )
    # Space again (the soft limit goes up to the hard one): the next save works.
    resource.prlimit(
        exporter.process.pid,
        resource.RLIMIT_FSIZE,
        (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
    )
    exporter.wait_for(
        lambda f: _value(f, "whatsapp_exporter_persistence_last_save_success") == 1,
        "saves to work again",
    )
    assert exporter.stop() == 0
    log = exporter.output()
    assert log.count("cannot save the counter state") == 1, log
    assert log.count("works again") == 1, log


def test_a_second_process_on_the_same_file_exits_2_with_one_line(
    simulator, start_exporter, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    state = tmp_path / "state.db"
    first = start_exporter("--config", str(config), "--persistence.file", str(state))
    first.wait_ready()
    for mode in ((), ("--once",)):
        second = run_exporter("--config", str(config), "--persistence.file", str(state), *mode)
        assert second.returncode == 2
        assert second.stderr.splitlines() == [
            f"whatsapp-exporter: --persistence.file: {state} is in use by another process"
        ]
    assert first.process.poll() is None
    assert not unreadable_files(tmp_path)


def test_once_restores_and_saves_and_bad_paths_are_one_line(
    simulator, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    state = tmp_path / "state.db"
    for restored in (0, len(WABA_ACCOUNTS) + 1):
        result = run_exporter("--config", str(config), "--once", "--persistence.file", str(state))
        assert result.returncode == 0, result.stderr
        families = parse_metrics(result.stdout)
        assert _value(families, "whatsapp_exporter_persistence_restored_targets") == restored
        assert _value(families, "whatsapp_exporter_persistence_last_save_success") == 1
    # Without the flag there is no file and no persistence metric.
    plain = run_exporter("--config", str(config), "--once")
    assert "whatsapp_exporter_persistence" not in plain.stdout
    # --check-config does not touch the file.
    other = tmp_path / "untouched.db"
    assert run_exporter("--config", str(config), "--check-config", "--persistence.file",
                        str(other)).returncode == 0
    assert not other.exists()
    missing = run_exporter("--config", str(config), "--once", "--persistence.file",
                           str(tmp_path / "no" / "state.db"))
    assert missing.returncode == 2
    assert len(missing.stderr.splitlines()) == 1 and "does not exist" in missing.stderr
    # A file that cannot be read back: moved aside with a warning, and the run goes on.
    state.write_bytes(b"\0garbage" * 1000)
    result = run_exporter("--config", str(config), "--once", "--persistence.file", str(state))
    assert result.returncode == 0, result.stderr
    (moved,) = unreadable_files(tmp_path)
    assert moved.read_bytes() == b"\0garbage" * 1000
    assert "cannot be read back" in result.stderr and "Traceback" not in result.stderr


def test_the_demo_config_example_and_compose_name_the_volume() -> None:
    root = Path(__file__).resolve().parent.parent
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    exporter = compose["services"]["exporter"]
    assert any("/var/lib/whatsapp-exporter" in str(v) for v in exporter.get("volumes", []))
    assert "--persistence.file" in " ".join(map(str, exporter.get("command", [])))
    assert "VOLUME" in (root / "Dockerfile").read_text()
    assert "--persistence.file" in (root / "config.example.yaml").read_text()
