"""Peak memory of the exporter under hostile answers: a gzip bomb and a huge cardinality.

A script that reports figures; nothing here passes or fails on them (tests/test_benchmark.py
runs `--quick`).

    python -m bench.memory            # the full run: a 400 MB gzip bomb, 200,000 label sets
    python -m bench.memory --quick    # tiny sizes, a few seconds

Each scenario runs the exporter's `--once` (the console script's own `main`) as a child process
against the simulator (in this process, on loopback) with one target whose answer is the
scenario's. The child writes its peak resident set size (`VmHWM` of /proc/self/status, the
kernel's high-water mark) as it exits: the most memory the exporter held at any moment of its
poll, parse and render, not a sample taken afterwards. (Not `ru_maxrss` from `wait4`: the
kernel carries the high-water mark of the forked copy of this process, which is large after
building the answers, over the exec.) The outcome is the target's `poll_success` and the
reason counted in `whatsapp_exporter_poll_errors_total`, read from the `--once` output.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.simulator import DEMO_ACCOUNTS, Fault, Simulator
from exporter.simulator.faults import cardinality_points, gzip_bomb
from exporter.upstream.query import AnalyticsQuery, query_window

KEY = "bench-memory-key"

# The exporter's command line, plus its peak RSS written to argv[1] at exit.
_CHILD = """
import atexit, sys
def _peak(path=sys.argv[1]):
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(path, "w") as out:
        out.write(peak)
atexit.register(_peak)
sys.argv = ["whatsapp-exporter", *sys.argv[2:]]
from exporter.cli import main
sys.exit(main())
"""
ACCOUNT = DEMO_ACCOUNTS[0]


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault | None
    limits: dict[str, object]
    wire: str
    """What the answer is, as sent (size on the wire, decoded size)."""


@dataclass
class Result:
    scenario: str
    answer: str
    limits: str
    outcome: str
    peak_rss_mib: float
    exit_code: int


def _json_size(label_sets: int, buckets: int = 1) -> int:
    start, end = query_window(1_800_000_000, 6 * 3600)
    query = AnalyticsQuery(start=start, end=end, dimensions=("PHONE",))
    points = cardinality_points(query, label_sets, buckets)
    body = {"conversation_analytics": {"data": [{"data_points": points}]}, "id": ACCOUNT.waba_id}
    return len(json.dumps(body))


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


def scenarios(quick: bool) -> list[Scenario]:
    bomb = 4 << 20 if quick else 400_000_000
    many = 2_000 if quick else 200_000
    bomb_limit = "1MiB" if quick else "64MiB"
    series_limit = 500 if quick else 50_000
    raised_limit = many + 1
    bomb_wire = len(gzip_bomb(ACCOUNT.waba_id, bomb))
    many_size = _json_size(many)
    # The largest answer both default limits let through: every label set allowed, in every
    # half hour of the 6h window.
    widest, buckets = (400, 12) if quick else (50_000, 12)
    widest_size = _json_size(widest, buckets)
    return [
        Scenario("healthy (demo account)", None, {}, "a few dozen label sets"),
        Scenario(
            "gzip bomb",
            Fault.gzip_bomb(bomb),
            {"max_response_bytes": bomb_limit},
            f"{_mb(bomb_wire)} gzip, {_mb(bomb)} decoded",
        ),
        Scenario(
            f"{many:,} label sets",
            Fault.cardinality(many),
            {"max_series_per_target": series_limit},
            f"{_mb(many_size)} JSON",
        ),
        Scenario(
            f"{widest:,} label sets x {buckets} half hours",
            Fault.cardinality(widest, buckets),
            {"max_series_per_target": widest} if quick else {},
            f"{_mb(widest_size)} JSON",
        ),
        Scenario(
            f"{many:,} label sets, limit raised",
            Fault.cardinality(many),
            {"max_series_per_target": raised_limit, "max_response_bytes": "1GiB"},
            f"{_mb(many_size)} JSON",
        ),
    ]


def run_once(sim: Simulator, scenario: Scenario, workdir: Path) -> Result:
    sim.clear_faults()
    if scenario.fault is not None:
        sim.set_fault(scenario.fault)
    config = {
        "splashify": {"base_url": sim.url, "api_key": KEY, "max_retries": 0, "timeout": "60s"},
        "poll": {"interval": "5m"},
        "dimensions": ["PHONE"] if scenario.fault is not None else None,
        "targets": [{"waba_id": ACCOUNT.waba_id, "name": "bench"}],
        "limits": scenario.limits or None,
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in config.items() if v is not None}))
    peak_path = workdir / "peak"
    peak_path.unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(peak_path), "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Result(
        scenario=scenario.name,
        answer=scenario.wire,
        limits=", ".join(f"{k}: {v}" for k, v in scenario.limits.items()) or "defaults",
        outcome=_outcome(done.stdout),
        peak_rss_mib=round(int(peak_path.read_text()) / 1024, 1),  # VmHWM is in kB
        exit_code=done.returncode,
    )


def _outcome(text: str) -> str:
    success = None
    reasons = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "whatsapp_exporter_poll_success":
                success = sample.value == 1
            if sample.name == "whatsapp_exporter_poll_errors_total" and sample.value:
                reasons.append(sample.labels["reason"])
    if success:
        return "success"
    return "failed: " + (", ".join(reasons) or "?")


def report(results: Sequence[Result]) -> str:
    lines = [
        "| scenario | answer | limits | outcome | peak RSS MiB |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r.scenario} | {r.answer} | {r.limits} | {r.outcome} | {r.peak_rss_mib:.1f} |"
        for r in results
    ]
    lines.append("")
    lines.append(
        f"Machine: python {platform.python_version()}, {platform.machine()}; peak RSS is VmHWM "
        "of the exporter's --once process (one target)."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    results = []
    with Simulator(api_key=KEY, accounts=[ACCOUNT]) as sim, tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios(args.quick):
            results.append(run_once(sim, scenario, Path(tmp)))
            print(f"  {scenario.name}: {results[-1].peak_rss_mib:.1f} MiB", file=sys.stderr)
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
