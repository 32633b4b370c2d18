"""The backfill's output: OpenMetrics text with timestamps, for
`promtool tsdb create-blocks-from openmetrics`.

Every data family of the metrics table that the enabled sources serve, once, with the HELP and
TYPE lines, label escaping and number format of /metrics; within a family series follow each
other, each with its samples in time order; `# EOF` last.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from exporter.backfill.history import TargetSeries, served_families
from exporter.serve.exposition import escape_label_value, format_value
from exporter.serve.metrics import family_labels
from exporter.serve.render import OPENMETRICS, header, sample_name
from exporter.vocabulary import Layout


def write_openmetrics(
    out: TextIO,
    targets: Sequence[TargetSeries],
    times: Sequence[int],
    layout: Layout,
    extra_labels: Sequence[tuple[str, str]],
) -> tuple[int, int]:
    """Write every family, series by series, samples in time order; (series, samples) written."""
    extra = "".join(f',{name}="{escape_label_value(value)}"' for name, value in extra_labels)
    stamps = [str(t) for t in times]
    series_count = samples = 0
    for spec in served_families(layout):
        label_names = family_labels(spec, layout)
        out.write(header(spec, OPENMETRICS).decode())
        name = sample_name(spec)
        for target in targets:
            for labels, series in sorted(target.families[spec.name].items()):
                values = (target.waba_id, target.target_name, *labels)
                pairs = ",".join(
                    f'{n}="{escape_label_value(v)}"'
                    for n, v in zip(label_names, values, strict=True)
                )
                prefix = f"{name}{{{pairs}{extra}}} "
                wrote = False
                for first, end, value in series.runs(len(times)):
                    text = prefix + format_value(value) + " "
                    out.writelines(text + stamps[i] + "\n" for i in range(first, end))
                    samples += end - first
                    wrote = True
                series_count += wrote
    out.write("# EOF\n")
    return series_count, samples


