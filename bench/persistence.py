"""What `--persistence.file` costs: the save's CPU per poll, against the poll's own, and the file's
size. A script that reports figures; nothing here passes or fails on a timing.

    python -m bench.persistence --series 10000,100000 --targets 200     # ~2 min
    python -m bench.persistence --quick                                  # a smoke run

For each case, the simulated Splashify API runs in its own process (its answer cache on, so
that it answers from memory), with `targets` synthetic accounts of `series / 2 / targets` label
sets each (N series = N/2 label sets, as in bench/benchmark.py), all five dimensions, lookback 6h.
In this process, one `Exporter` (the real wiring) polls every target once per round:

1. **without** the flag: a warm-up round, then `--rounds` timed rounds; **poll CPU** is this
   process's CPU (fetching, decoding, folding, rendering) per target poll;
2. **with** `--persistence.file` (a fresh file in a temporary directory): the same rounds; each
   save is timed inside (`time.thread_time` of the worker thread, and wall time, which includes
   SQLite's fsync). The first round's saves also encode every label set; later rounds reuse the
   encoded labels of an unchanged index, as a running exporter does.

Reported: save CPU per target poll (first round and later rounds), its share of the poll's CPU,
wall time per save, the file's size (main file + WAL while running, and after a clean close),
and what reading it back at start costs (open, check and decode every row).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

KEY = "bench-persistence-key"


def _simulator_main(conn: Any, count: int, label_sets: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from exporter.simulator import Simulator, scaled_accounts

    simulator = Simulator(
        api_key=KEY, accounts=scaled_accounts(count, label_sets), answer_cache=True
    ).start()
    conn.send(simulator.url)
    with contextlib.suppress(EOFError, OSError):
        conn.recv()
    simulator.stop()


@dataclass
class Row:
    series: int
    targets: int
    label_sets_per_target: int
    poll_cpu_ms: float
    """This process's CPU per target poll, without the flag (fetch, parse, fold, render)."""
    save_cpu_first_ms: float
    save_cpu_ms: float
    """Per target poll, in the rounds after the first (labels already encoded)."""
    save_share_pct: float
    save_wall_ms: float
    file_bytes_running: int
    file_bytes_closed: int
    restore_cpu_ms: float
    restore_wall_ms: float


def _file_bytes(path: Path) -> int:
    return sum(
        os.path.getsize(f"{path}{suffix}")
        for suffix in ("", "-wal", "-shm")
        if os.path.exists(f"{path}{suffix}")
    )


def measure(series: int, targets: int, rounds: int, workdir: Path) -> Row:
    from prometheus_client import disable_created_metrics

    from exporter.app import Exporter
    from exporter.config import Config, PollConfig, Secret, SplashifyConfig, Target
    from exporter.pipeline.persistence import open_state_file
    from exporter.simulator import scaled_accounts

    disable_created_metrics()
    label_sets = max(1, round(series / 2 / targets))
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    simulator = context.Process(
        target=_simulator_main, args=(child, targets, label_sets), daemon=True
    )
    simulator.start()
    try:
        url = parent.recv()
        accounts = scaled_accounts(targets, label_sets)
        config = Config(
            splashify=SplashifyConfig(
                api_key=Secret(KEY),
                base_url=url,
                timeout=60.0,
                max_concurrency=8,
                requests_per_second=10000.0,
            ),
            targets=tuple(Target(name=a.name, waba_id=a.waba_id) for a in accounts),
            poll=PollConfig(interval=600.0, stale_after=86400.0),
        )

        def rounds_cpu(exporter: Exporter, count: int) -> list[float]:
            spent = []
            for _ in range(count):
                before = time.process_time()
                if not exporter.poll_all_once():
                    raise RuntimeError("a poll failed")
                spent.append(time.process_time() - before)
            return spent

        plain = Exporter(config)
        rounds_cpu(plain, 1)  # warm: the simulator's answer cache, imports, first allocations
        poll_cpu = statistics.mean(rounds_cpu(plain, rounds)) / targets

        path = workdir / f"state-{series}.db"
        state_file = open_state_file(str(path))
        saves: list[tuple[float, float]] = []
        lock = threading.Lock()
        save = state_file.save

        def timed_save(*args: Any) -> bool:
            cpu, wall = time.thread_time(), time.perf_counter()
            ok = save(*args)
            with lock:
                saves.append((time.thread_time() - cpu, time.perf_counter() - wall))
            return ok

        state_file.save = timed_save  # type: ignore[method-assign]
        persisted = Exporter(config, state_file=state_file)
        rounds_cpu(persisted, 1)
        first = saves[:]
        saves.clear()
        rounds_cpu(persisted, rounds)
        running = _file_bytes(path)
        state_file.close()
        closed = _file_bytes(path)

        cpu, wall = time.process_time(), time.perf_counter()
        again = open_state_file(str(path))
        restored = again.restore(config)
        restore_cpu, restore_wall = time.process_time() - cpu, time.perf_counter() - wall
        again.close()
        if len(restored) != targets:
            raise RuntimeError(f"restored {len(restored)} of {targets} targets")
        save_cpu = statistics.mean(c for c, _ in saves)
        return Row(
            series=series,
            targets=targets,
            label_sets_per_target=label_sets,
            poll_cpu_ms=poll_cpu * 1000,
            save_cpu_first_ms=statistics.mean(c for c, _ in first) * 1000,
            save_cpu_ms=save_cpu * 1000,
            save_share_pct=100 * save_cpu / poll_cpu,
            save_wall_ms=statistics.mean(w for _, w in saves) * 1000,
            file_bytes_running=running,
            file_bytes_closed=closed,
            restore_cpu_ms=restore_cpu * 1000,
            restore_wall_ms=restore_wall * 1000,
        )
    finally:
        with contextlib.suppress(OSError, ValueError):
            parent.send("stop")
        simulator.join(10)
        if simulator.is_alive():
            simulator.kill()


def _size(count: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"


def report(rows: Sequence[Row]) -> str:
    lines = [
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} CPUs, {platform.system()} {platform.machine()}",
        "",
        "| series | targets | label sets/target | poll CPU/target ms | save CPU first ms | "
        "save CPU ms | save/poll CPU | save wall ms | file running | file closed | "
        "restore CPU ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.series} | {r.targets} | {r.label_sets_per_target} | {r.poll_cpu_ms:.2f} | "
            f"{r.save_cpu_first_ms:.2f} | {r.save_cpu_ms:.2f} | {r.save_share_pct:.1f}% | "
            f"{r.save_wall_ms:.2f} | {_size(r.file_bytes_running)} | "
            f"{_size(r.file_bytes_closed)} | {r.restore_cpu_ms:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.persistence", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="10000,100000",
                        help="comma-separated series counts (default 10000,100000)")
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per phase")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 200 series, 4 targets")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead")
    args = parser.parse_args(argv)
    if args.quick:
        cases, targets, rounds = [200], 4, 1
    else:
        cases = [int(s) for s in args.series.split(",")]
        targets, rounds = args.targets, args.rounds
    with tempfile.TemporaryDirectory(prefix="bench-persistence-") as directory:
        rows = [measure(series, targets, rounds, Path(directory)) for series in cases]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
