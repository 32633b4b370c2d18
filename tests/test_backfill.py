"""`whatsapp-exporter backfill`: the samples it writes are what the live exporter serves.

The central test replays the same hours twice against one simulator and one fake clock: once
as a live exporter polled every two minutes, once as a backfill written afterwards. Every value
the live exporter served must be the backfill's value at that time. The rest checks the
OpenMetrics text (promtool must turn it into blocks), the flags and the exit codes.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

from exporter.app import Exporter
from exporter.backfill import command as backfill
from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
from exporter.config.model import DEFAULT_SOURCES
from exporter.pipeline.sharding import shard_of
from exporter.serve.metrics import DATA_METRICS
from exporter.simulator import Simulator
from exporter.vocabulary import HALF_HOUR_SECONDS, SOURCES
from tests.conftest import (
    CUSTOMER_ACCOUNTS,
    TEST_API_KEY,
    WABA_ACCOUNTS,
    config_dict,
    exporter_env,
    parse_metrics,
    write_config,
)

DATA_FAMILIES = {
    spec.name + ("_total" if spec.family is CounterMetricFamily else "") for spec in DATA_METRICS
}
ALL_SOURCES = tuple(source.name for source in SOURCES)
HOUR = 3600
# An afternoon in India, a bucket boundary: every demo account is busy somewhere.
START = int(datetime(2026, 6, 10, 8, 0, tzinfo=timezone.utc).timestamp())
HOURS = 3


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    with Simulator(api_key=TEST_API_KEY, clock=clock) as simulator:
        yield simulator


def make_config(sim: Simulator, sources: tuple[str, ...] = DEFAULT_SOURCES) -> Config:
    waba, customer = WABA_ACCOUNTS[0], CUSTOMER_ACCOUNTS[0]
    return Config(
        sources=sources,
        splashify=SplashifyConfig(
            api_key=Secret(TEST_API_KEY), base_url=sim.url, requests_per_second=1000
        ),
        targets=(
            Target(name=waba.name, waba_id=waba.waba_id),
            Target(name=customer.name, customer_id=customer.customer_id),
        ),
        poll=PollConfig(interval=60),
    )


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def served(text: str) -> Samples:
    """The data samples of one scrape, keyed by (sample name, sorted labels)."""
    samples: Samples = {}
    for family in parse_metrics(text).values():
        for sample in family.samples:
            if sample.name in DATA_FAMILIES:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def backfilled(text: str) -> dict[int, Samples]:
    """The backfill's samples by timestamp."""
    by_time: dict[int, Samples] = {}
    for family in parse_om(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            by_time.setdefault(int(float(sample.timestamp)), {})[key] = sample.value
    return by_time


@pytest.mark.parametrize("sources", [DEFAULT_SOURCES, ALL_SOURCES], ids=["default", "all"])
def test_backfill_writes_what_the_live_exporter_served(
    sim: Simulator, clock: Clock, tmp_path: Path, sources: tuple[str, ...]
) -> None:
    config = make_config(sim, sources)
    live = Exporter(config, clock=clock)
    poll_times = range(START, START + HOURS * HOUR + 1, 120)
    scrapes: dict[int, Samples] = {}
    for t in poll_times:
        clock.now = t
        assert live.poll_all_once()
        scrapes[t] = served(live.exposition().decode())

    # Later, with the same data upstream, the backfill of those hours.
    clock.now = START + HOURS * HOUR
    times = tuple(backfill.sample_times(START, clock.now, 60))
    plan = backfill.Plan(START, clock.now, 60, (), times)
    out = tmp_path / "history.om"
    backfill.run(config, plan, str(out))
    written = backfilled(out.read_text())

    exact = 0
    for t, live_samples in scrapes.items():
        replayed = written[t]
        # Same bucket, same counts, same counter, for every series the live exporter served.
        for key, value in live_samples.items():
            assert replayed.get(key) == value, (t, key)
        # Beyond those, only series at 0: label sets the backfill saw in the bucket in progress
        # (settled counts), where the live exporter saw a provisional count of 0.
        extra = {key: value for key, value in replayed.items() if key not in live_samples}
        assert set(extra.values()) <= {0.0}, (t, extra)
        if t % HALF_HOUR_SECONDS <= 60:  # no bucket in progress in the live window
            assert not extra, t
            exact += 1
    assert exact >= 2 * HOURS
    buckets = {v for s in scrapes.values() for (n, _), v in s.items() if n.endswith("_seconds")}
    assert len(buckets) >= 2 * HOURS  # the bucket moved on every half hour
    an_hour_in = written[START + HOUR].items()
    names = {n for (n, _), _ in an_hour_in}
    busy = ["whatsapp_conversations"]
    if sources == ALL_SOURCES:
        busy += ["whatsapp_pricing_volume", "whatsapp_messages_sent", "whatsapp_pricing_cost"]
        assert {
            "whatsapp_pricing_volume_observed_total",
            "whatsapp_pricing_cost",
            "whatsapp_messages_delivered_observed_total",
            "whatsapp_messages_bucket_start_timestamp_seconds",
        } <= names
    else:
        assert not any(n.startswith(("whatsapp_pricing", "whatsapp_messages")) for n in names)
    for name in busy:
        assert sum(v for (n, _), v in an_hour_in if n == name) > 0, name


def test_backfill_output_is_openmetrics_that_promtool_loads(
    sim: Simulator, clock: Clock, tmp_path: Path
) -> None:
    if shutil.which("promtool") is None:
        pytest.skip("scripts/test.sh installs Debian's prometheus (promtool)")
    clock.now = START + 2 * HOUR
    config = make_config(sim)
    times = tuple(backfill.sample_times(START, clock.now, 60))
    labels = (("job", "whatsapp-exporter"), ("instance", 'odd"host\\:9477'))
    out = tmp_path / "history.om"
    series, samples = backfill.run(config, backfill.Plan(START, clock.now, 60, labels, times),
                                   str(out))
    text = out.read_text()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in parse_om(text)}
    assert {f.type for f in families.values()} == {"gauge", "counter"}
    assert families["whatsapp_conversations_observed"].type == "counter"
    every = [s for f in families.values() for s in f.samples]
    assert len(every) == samples
    assert len({(s.name, tuple(sorted(s.labels.items()))) for s in every}) == series
    assert {s.labels["instance"] for s in every} == {'odd"host\\:9477'}
    # Series by series, each in time order: what promtool needs.
    last: dict[tuple, float] = {}
    for sample in every:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        assert float(sample.timestamp) > last.get(key, -math.inf)
        last[key] = float(sample.timestamp)
    blocks = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(out), str(tmp_path / "d")],
        capture_output=True, text=True, timeout=120,
    )
    assert blocks.returncode == 0, blocks.stderr
    listing = subprocess.run(
        ["promtool", "tsdb", "list", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    # BLOCK ULID, MIN TIME, MAX TIME, DURATION, NUM SAMPLES, ...: every sample made it.
    rows = [line.split() for line in listing.stdout.splitlines()[1:] if line.strip()]
    assert sum(int(row[4]) for row in rows) == samples


def run_backfill(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "backfill", *args],
        capture_output=True, text=True, timeout=timeout, env=exporter_env(),
    )


def test_cli_against_a_config(simulator: Simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    out = tmp_path / "h.om"
    result = run_backfill("--config", str(config), "--start", "now-1h", "--step", "2m",
                          "--label", "job=whatsapp-exporter", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stderr and "promtool tsdb create-blocks-from" in result.stderr
    assert TEST_API_KEY not in result.stderr + out.read_text()
    names = {s.labels["waba_name"] for f in parse_om(out.read_text()) for s in f.samples}
    assert names == {a.name for a in WABA_ACCOUNTS + CUSTOMER_ACCOUNTS}


def test_each_replica_backfills_only_its_own_shard(simulator: Simulator, tmp_path: Path) -> None:
    config = config_dict(simulator)
    everyone = {a.name for a in WABA_ACCOUNTS + CUSTOMER_ACCOUNTS}
    names = []
    for index in range(2):
        # The flag for replica 0; `shard:` in the config for replica 1 (the flag would win).
        if index == 0:
            path, flags = write_config(tmp_path / "c0.yaml", config), ["--shard", "0/2"]
        else:
            path = write_config(tmp_path / "c1.yaml", {**config, "shard": {"index": 1, "total": 2}})
            flags = []
        result = run_backfill("--config", str(path), "--start", "now-10m", "--step", "5m", *flags)
        assert result.returncode == 0, result.stderr
        names.append({s.labels["waba_name"] for f in parse_om(result.stdout) for s in f.samples})
    # Both replicas together: every target once, split by the hash the live replicas use.
    assert names[0] and names[1]
    assert names[0] | names[1] == everyone and not names[0] & names[1]
    for index in range(2):
        assert names[index] == {
            t["name"]
            for t in config["targets"]
            if shard_of(t.get("waba_id") or t["customer_id"], 2) == index
        }


def test_a_shard_without_targets_writes_an_empty_history(
    simulator: Simulator, tmp_path: Path
) -> None:
    account = WABA_ACCOUNTS[0]
    config = config_dict(simulator, targets=[{"waba_id": account.waba_id, "name": "only"}])
    index = 1 - shard_of(account.waba_id, 2)  # the replica that does not own it
    result = run_backfill("--config", str(write_config(tmp_path / "c.yaml", config)),
                          "--start", "now-10m", "--shard", f"{index}/2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("# EOF\n")
    assert [s for f in parse_om(result.stdout) for s in f.samples] == []
    assert f"shard {index}/2 owns no target" in result.stderr


def test_cli_demo_to_stdout_with_the_spike_scenario() -> None:
    result = run_backfill("--demo", "--demo.scenario", "marketing-spike",
                          "--start", "now-20m", "--step", "5m")
    assert result.returncode == 0, result.stderr
    families = {f.name: f for f in parse_om(result.stdout)}
    marketing: dict[float, float] = {}
    for sample in families["whatsapp_conversations"].samples:
        labels = sample.labels
        if (labels["waba_name"], labels["conversation_category"]) == ("acme-india", "MARKETING"):
            stamp = float(sample.timestamp)
            marketing[stamp] = marketing.get(stamp, 0) + sample.value
    # The campaign adds 1000 marketing conversations per half hour to acme-india (each combo's
    # share rounds down by less than one).
    assert marketing and min(marketing.values()) >= 990


def test_a_failing_target_writes_nothing_and_exits_1(simulator: Simulator, tmp_path: Path) -> None:
    config = config_dict(simulator)
    config["splashify"]["api_key"] = "wrong-key"
    out = tmp_path / "h.om"
    result = run_backfill("--config", str(write_config(tmp_path / "c.yaml", config)),
                          "--start", "now-1h", "-o", str(out))
    assert result.returncode == 1
    assert "auth" in result.stderr and "nothing written" in result.stderr
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "now-366d"], "--start: too old"),
        (["--start", "now-1h", "--end", "now+1h"], "not a time"),
        (["--start", "now-1h", "--end", "2999-01-01"], "--end: in the future"),
        (["--start", "now-1h", "--end", "now-2h"], "--start: must be before --end"),
        (["--start", "yesterday"], "not a time"),
        (["--start", "now-1h", "--step", "10m"], "--step"),
        (["--start", "now-1h", "--step", "1.5s"], "--step"),
        (["--start", "now-1h", "--label", "waba_name=x"], "exporter's own labels"),
        (["--start", "now-1h", "--label", "__name__=x"], "reserved"),
        (["--start", "now-1h", "--label", "job"], "NAME=VALUE"),
        (["--start", "now-1h", "--label", "job=a", "--label", "job=b"], "twice"),
        (["--start", "now-1h", "--demo.scenario", "marketing-spike", "--config", "x"], "--demo"),
        (["--start", "now-1h", "--shard", "2/2"], "--shard: INDEX must be"),
        (["--start", "now-1h", "--shard", "half"], "--shard: expected INDEX/TOTAL"),
    ],
)
def test_usage_errors_exit_2(
    simulator: Simulator, tmp_path: Path, args: list[str], message: str
) -> None:
    if "--config" not in args:
        args = [*args, "--config", str(write_config(tmp_path / "c.yaml", config_dict(simulator)))]
    result = run_backfill(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback


def test_an_unwritable_output_exits_2(simulator: Simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    result = run_backfill("--config", str(config), "--start", "now-10m",
                          "-o", str(tmp_path / "missing" / "h.om"))
    assert result.returncode == 2
    assert "--output: cannot write" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_config_exits_2(tmp_path: Path) -> None:
    result = run_backfill("--config", str(tmp_path / "absent.yaml"), "--start", "now-1h")
    assert result.returncode == 2
    assert "config error" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", 1_000_000.0),
        ("now-1h", 1_000_000.0 - 3600),
        ("now - 1d", 1_000_000.0 - 86400),
        ("1767225600", 1767225600.0),
        ("2026-01-01", 1767225600.0),
        ("2026-01-01T00:30", 1767227400.0),
        ("2026-01-01T00:30:00Z", 1767227400.0),
        ("2026-01-01T06:00:00+05:30", 1767227400.0),
    ],
)
def test_parse_time(text: str, expected: float) -> None:
    assert backfill.parse_time(text, now=1_000_000.0) == expected


def test_sample_times_are_multiples_of_the_step() -> None:
    assert backfill.sample_times(61, 300, 60) == [120, 180, 240, 300]
    assert backfill.sample_times(60, 60, 60) == [60]
    assert backfill.sample_times(61, 119, 60) == []
