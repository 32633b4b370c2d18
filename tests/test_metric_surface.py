"""The metric surface that dashboards and alert rules depend on, pinned in a golden file.

Every `whatsapp_*` family that `--demo --once --persistence.file F` prints (all dimensions
enabled), with its type,
label names and HELP text, must equal tests/golden/metric_surface.txt line for line. A change
here breaks users' dashboards: make it on purpose, regenerate with
`UPDATE_GOLDEN=1 python -m pytest tests/test_metric_surface.py`, and say so in the changelog.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.serve.metrics import METRICS, SELF_METRICS
from tests.conftest import parse_metrics, run_exporter

GOLDEN = Path(__file__).parent / "golden" / "metric_surface.txt"


def surface(exposition: str) -> str:
    """One line per family: `name type label,names  HELP`, sorted by name."""
    lines = []
    for name, family in sorted(parse_metrics(exposition).items()):
        if not name.startswith("whatsapp_"):
            continue
        labels: list[str] = []
        for sample in family.samples:
            labels += [label for label in sample.labels if label not in labels]
        lines.append(f"{name} {family.type} {','.join(labels) or '-'}  {family.documentation}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def demo_surface(tmp_path_factory: pytest.TempPathFactory) -> str:
    # With a state file, so that the persistence self-metrics are on the surface too.
    state = tmp_path_factory.mktemp("state") / "state.db"
    result = run_exporter("--demo", "--once", "--persistence.file", str(state))
    assert result.returncode == 0, result.stderr
    return surface(result.stdout)


def test_the_surface_equals_the_golden_file(demo_surface: str) -> None:
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(demo_surface, encoding="utf-8")
    assert demo_surface == GOLDEN.read_text(encoding="utf-8")


def test_every_metric_of_the_table_is_on_the_surface(demo_surface: str) -> None:
    names = {line.split(" ", 1)[0] for line in demo_surface.splitlines()}
    assert {spec.name for spec in (*METRICS, *SELF_METRICS)} <= names


def test_the_comparison_sees_a_renamed_label() -> None:
    text = '# HELP whatsapp_x Help.\n# TYPE whatsapp_x gauge\nwhatsapp_x{a="1"} 1.0\n'
    assert surface(text) == "whatsapp_x gauge a  Help.\n"
    assert surface(text.replace("{a=", "{b=")) != surface(text)
