"""A smoke run of bench/persistence.py (`--quick`): it measured what it says it measured.

No timing is judged here; the figures are the benchmark's to report.
"""

from __future__ import annotations

import json

import pytest

from bench.persistence import main


def test_quick_run_reports_a_sane_row(capsys) -> None:
    assert main(["--quick", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["series"], row["targets"], row["label_sets_per_target"]) == (200, 4, 25)
    assert row["poll_cpu_ms"] > 0 and row["save_cpu_ms"] > 0 and row["save_cpu_first_ms"] > 0
    assert row["save_share_pct"] == pytest.approx(100 * row["save_cpu_ms"] / row["poll_cpu_ms"])
    # The file holds the state: it was read back for every target (or main() would have raised).
    assert row["file_bytes_closed"] > 0 and row["file_bytes_running"] >= row["file_bytes_closed"]
