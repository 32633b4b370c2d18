"""What the sources beside conversation analytics cost: poll CPU and memory per label set.

    python -m bench.sources                      # 200 targets x 500 label sets = 100k
    python -m bench.sources --targets 20 --label-sets 50
    python -m bench.sources --quick              # a smoke run, a few seconds

The simulated Splashify API runs in its own process (bench.benchmark.SimulatorProcess: scaled
accounts, answer cache on), so its CPU is not counted. For each mode, a fresh Python process
builds the exporter (`exporter.app.Exporter`) for every account, with all five conversation
dimensions and all five pricing dimensions, and polls every target twice (`poll_all_once`: the
requests, JSON decoding, parsing, the bucket rules, the snapshots and the render of /metrics):

- **conversations**: `sources: [conversation_analytics]`, the default;
- **all sources**: conversation_analytics, pricing_analytics and message_analytics, one request
  per target carrying the three fields.

Figures per mode: label sets served (conversation label sets, pricing label sets, and one
message label set per target), the CPU of each round (process CPU time, every thread), the CPU
of the second round per 1000 label sets, the resident memory the exporter added (VmRSS after the
second round minus before the exporter was built) and its bytes per label set, and the /metrics
body (plain and gzip). The second round is the steady state: the counters' state exists, the
simulator answers from its cache. A script that reports figures; nothing passes or fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from bench.benchmark import KEY, SimulatorProcess, machine, progress, rss_bytes

MODES = {
    "conversations": ("conversation_analytics",),
    "all sources": ("conversation_analytics", "pricing_analytics", "message_analytics"),
}


@dataclass
class Measurement:
    mode: str
    targets: int
    conversation_label_sets: int
    pricing_label_sets: int
    message_label_sets: int
    first_round_cpu: float
    second_round_cpu: float
    rss_added: int
    body_plain: int
    body_gzip: int

    @property
    def label_sets(self) -> int:
        return self.conversation_label_sets + self.pricing_label_sets + self.message_label_sets


def measure(url: str, targets: int, label_sets: int, mode: str) -> Measurement:
    """In this process: build the exporter for `mode`, poll every target twice, measure."""
    from exporter.app import Exporter
    from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
    from exporter.serve.render import TEXT
    from exporter.simulator import scaled_accounts
    from exporter.vocabulary import MESSAGE_ANALYTICS, PRICING_ANALYTICS

    accounts = scaled_accounts(targets, label_sets)
    config = Config(
        splashify=SplashifyConfig(
            api_key=Secret(KEY),
            base_url=url,
            timeout=600.0,
            max_concurrency=8,
            requests_per_second=1000.0,
        ),
        targets=tuple(Target(name=a.name, waba_id=a.waba_id) for a in accounts),
        poll=PollConfig(interval=1800.0),
        sources=MODES[mode],
    )
    before = rss_bytes(os.getpid())
    exporter = Exporter(config)
    cpu: list[float] = []
    for _ in range(2):
        started = time.process_time()
        if not exporter.poll_all_once():
            raise RuntimeError(f"{mode}: a poll failed")
        cpu.append(time.process_time() - started)
    added = rss_bytes(os.getpid()) - before
    snapshots = exporter.store.current().snapshots.values()
    pricing = [s.sources.get(PRICING_ANALYTICS) for s in snapshots]
    messages = [s.sources.get(MESSAGE_ANALYTICS) for s in snapshots]
    plain = sum(map(len, exporter.cache.body(TEXT, gzip=False)[0]))
    gzipped = sum(map(len, exporter.cache.body(TEXT, gzip=True)[0]))
    return Measurement(
        mode=mode,
        targets=targets,
        conversation_label_sets=sum(len(s.conversations) for s in snapshots),
        pricing_label_sets=sum(len(r.gauges["volume"]) for r in pricing if r is not None),
        message_label_sets=sum(len(r.gauges["sent"]) for r in messages if r is not None),
        first_round_cpu=cpu[0],
        second_round_cpu=cpu[1],
        rss_added=added,
        body_plain=plain,
        body_gzip=gzipped,
    )


def run(targets: int, label_sets: int) -> list[Measurement]:
    """Every mode, each in a fresh process, against one simulator process."""
    sim = SimulatorProcess(targets, label_sets, 0.0)
    try:
        results = []
        for mode in MODES:
            progress(f"{mode}: {targets} targets x {label_sets} label sets, two rounds of polls")
            output = subprocess.run(
                [sys.executable, "-m", "bench.sources", "--measure", mode, "--url", sim.url,
                 "--targets", str(targets), "--label-sets", str(label_sets)],
                capture_output=True, text=True, check=True, timeout=7200,
            ).stdout
            results.append(Measurement(**json.loads(output)))
        return results
    finally:
        sim.stop()


def report(results: Sequence[Measurement], elapsed: float) -> str:
    info = machine()
    lines = [
        f"# Sources: poll cost per label set ({results[0].targets} targets)",
        "",
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
        f"Python {info.get('python', '?')}; run took {elapsed:.0f}s.",
        "",
        "| mode | label sets (conv + pricing + messages) | CPU round 1 s | CPU round 2 s "
        "| CPU round 2 per 1k label sets ms | RSS added MiB | RSS per label set bytes "
        "| /metrics plain MiB | /metrics gzip KiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r.mode} | {r.label_sets:,} ({r.conversation_label_sets:,} + "
            f"{r.pricing_label_sets:,} + {r.message_label_sets:,}) "
            f"| {r.first_round_cpu:.2f} | {r.second_round_cpu:.2f} "
            f"| {1000 * 1000 * r.second_round_cpu / max(1, r.label_sets):.1f} "
            f"| {r.rss_added / 2**20:.1f} | {r.rss_added / max(1, r.label_sets):.0f} "
            f"| {r.body_plain / 2**20:.1f} | {r.body_gzip / 2**10:.0f} |"
        )
    if len(results) == 2:
        base, every = results
        lines += [
            "",
            f"All sources against conversations alone: {every.label_sets / base.label_sets:.2f}x "
            f"the label sets, {every.second_round_cpu / base.second_round_cpu:.2f}x the poll "
            f"CPU, {every.rss_added / max(1, base.rss_added):.2f}x the memory.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--label-sets", type=int, default=500,
                        help="conversation label sets per target (default 500: 100k in all)")
    parser.add_argument("--quick", action="store_true", help="4 targets x 20 label sets")
    parser.add_argument("--json", metavar="PATH", help="also write the raw numbers as JSON")
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.targets, args.label_sets = 4, 20
    if args.measure:
        print(json.dumps(asdict(measure(args.url, args.targets, args.label_sets, args.measure))))
        return 0
    began = time.monotonic()
    results = run(args.targets, args.label_sets)
    sys.stdout.write(report(results, time.monotonic() - began))
    if args.json:
        with open(args.json, "w") as file:
            json.dump([asdict(r) for r in results], file, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
