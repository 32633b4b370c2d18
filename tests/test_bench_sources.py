"""A smoke run of bench/sources.py (`--quick`): both modes measured what they say.

No timing is judged; what is checked is that the all-sources mode served the conversation label
sets of the conversations mode plus pricing label sets and one message label set per target.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.sources import MODES, main


def test_quick_run_measures_both_modes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sources.json"
    assert main(["--quick", "--json", str(out)]) == 0
    conversations, every = json.loads(out.read_text())
    assert [conversations["mode"], every["mode"]] == list(MODES)
    assert conversations["conversation_label_sets"] == 4 * 20
    assert conversations["pricing_label_sets"] == conversations["message_label_sets"] == 0
    assert every["conversation_label_sets"] == conversations["conversation_label_sets"]
    assert every["pricing_label_sets"] > 0 and every["message_label_sets"] == 4
    assert every["body_plain"] > conversations["body_plain"]
    for row in (conversations, every):
        assert row["first_round_cpu"] > 0 and row["second_round_cpu"] > 0 and row["rss_added"] > 0
    assert "| all sources |" in capsys.readouterr().out
