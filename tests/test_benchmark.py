"""A smoke run of bench/benchmark.py (`--quick`): every row and column is there and sane.

Nothing here judges a timing: the figures are the benchmark's to report. What is checked is
that the run measured what it says it measured: the cardinality asked for, real bodies (the
gzip one decompresses to the plain one), nginx serving ours' bytes, one request per target in
each poll cycle, the crowd of simultaneous scrapes, and that every process it started is gone.
The comparison server is Debian's nginx (scripts/test.sh installs it); without it, this skips.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.benchmark import SERVERS, find_nginx, main

COLUMNS = [
    "server",
    "series",
    "p50 plain ms",
    "p99 plain ms",
    "p50 gzip ms",
    "p99 gzip ms",
    "bytes plain",
    "bytes gzip",
    "RSS MiB",
    "CPU/scrape plain ms",
    "CPU/scrape gzip ms",
    "poll cycle s",
    "ideal s",
    "cycle/ideal",
    "max req/s (limit)",
    "scrapes",
    "20 at once s (failed)",
]


def _children() -> set[int]:
    """Live child processes of this process."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.add(int(entry))
    return found


def _table(report: str, header_start: str) -> list[list[str]]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return [rows[0], *rows[2:]]  # without the |---| line


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.skipif(
    find_nginx() is None, reason="needs nginx, the comparison server (apt-get install nginx)"
)
def test_quick_run_reports_every_server_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _children()
    raw = tmp_path / "bench.json"
    assert main(["--quick", "--json", str(raw)]) == 0
    report = capsys.readouterr().out

    header, *rows = _table(report, "| server |")
    assert header == COLUMNS
    assert [(row[0], row[1]) for row in rows] == [
        (server, series) for series in ("100", "200") for server in SERVERS
    ]
    for row in rows:
        assert len(row) == len(COLUMNS)
        for cell in row[2:11]:
            assert float(cell.split()[0]) >= 0
    ratios_header, *ratio_rows = _table(report, "| series |")
    assert ratios_header[1:4] == [
        "ours/nginx p50 gzip",
        "ours/nginx CPU/scrape gzip",
        "handwritten/ours p50 gzip",
    ]
    assert [row[0] for row in ratio_rows] == ["100", "200"]
    assert "RSS growth per added series, 100 -> 200 series, ours:" in report
    assert "RSS growth per added series, 100 -> 200 series, handwritten:" in report
    assert "series: sample lines of whatsapp_conversations and" in report
    assert "Machine: cpu " in report and " cores " in report and " python " in report

    data = json.loads(raw.read_text())
    results = {(r["server"], r["series_asked"]): r for r in data["results"]}
    assert set(results) == {(s, n) for s in SERVERS for n in (100, 200)}
    for (server, asked), result in results.items():
        assert result["series"] == asked, (server, asked)
        assert result["label_sets_per_account"] * 2 * data["options"]["targets"] == asked
        assert 0 < result["bytes_gzip"] < result["bytes_plain"]
        assert result["gzip_matches_plain"], (server, asked)
        assert result["scrapes"] == 3
        assert len(result["plain_seconds"]) == len(result["gzip_seconds"]) == 3
        assert all(t > 0 for t in result["plain_seconds"] + result["gzip_seconds"])
        assert result["rss"] > 0
        assert result["cpu_per_scrape_plain"] >= 0 and result["cpu_per_scrape_gzip"] >= 0
        if server == "handwritten":
            assert result["burst_seconds"] is None
        else:
            assert result["burst_size"] == 20 and result["burst_failed"] == 0
            assert result["burst_seconds"] > 0
        if server == "nginx":
            ours = results["ours", asked]
            assert (result["bytes_plain"], result["bytes_gzip"]) == (
                ours["bytes_plain"],
                ours["bytes_gzip"],
            )
            assert result["poll_cycle"] is None
        else:
            assert result["requests_in_cycle"] == data["options"]["targets"]
            assert result["failed_requests_in_cycle"] == 0
            assert result["poll_cycle"] >= 0
            assert 1 <= result["max_requests_per_second"] <= data["options"]["targets"]
    assert results["ours", 100]["rps_limit"] == data["options"]["rps"]
    assert results["ours", 100]["first_request_to_ready"] >= 0

    # The simulator, exporters and file server are all stopped. (multiprocessing's resource
    # tracker is its own helper, and lives as long as this process.)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _children() - before}
    assert not {pid: cmd for pid, cmd in left.items() if b"resource_tracker" not in cmd}


def test_memory_quick_run_reports_every_scenario_and_its_outcome(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.memory import main as memory_main

    raw = tmp_path / "memory.json"
    assert memory_main(["--quick", "--json", str(raw)]) == 0
    report = capsys.readouterr().out
    header, *rows = _table(report, "| scenario |")
    assert header == ["scenario", "answer", "limits", "outcome", "peak RSS MiB"]
    outcomes = {row[0]: row[3] for row in rows}
    assert outcomes == {
        "healthy (demo account)": "success",
        "gzip bomb": "failed: limit_exceeded",
        "2,000 label sets": "failed: limit_exceeded",
        "400 label sets x 12 half hours": "success",
        "2,000 label sets, limit raised": "success",
    }
    results = json.loads(raw.read_text())
    assert [r["scenario"] for r in results] == [row[0] for row in rows]
    assert all(r["peak_rss_mib"] > 0 for r in results)  # measured, not judged
    assert [r["exit_code"] for r in results] == [0, 1, 1, 0, 0]
