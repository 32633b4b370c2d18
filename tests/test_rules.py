"""The shipped Prometheus rules: promtool accepts them, and their unit tests pass.

`prometheus/tests/alerts_test.yml` holds the rule unit tests (promtool's own format); this
module runs them and checks that every alert has them, and the annotations a pager needs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus"
RULE_FILES = [RULES / "recording_rules.yml", RULES / "alerts.yml"]
UNIT_TESTS = RULES / "tests" / "alerts_test.yml"
REQUIRED_ALERTS = {
    "WhatsAppMarketingConversationSpike",
    "WhatsAppExporterPollFailing",
    "WhatsAppConversationDataStale",
    "WhatsAppExporterAuthFailure",
    "WhatsAppMarketingMessageSpike",
    "WhatsAppDeliveryRateLow",
}
RECORD_NAME = re.compile(r"[a-z_]+:[a-z_]+:[a-z0-9_]+")

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="scripts/test.sh installs Debian's prometheus"
)


def rules(path: Path) -> list[dict]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return rules(RULES / "alerts.yml")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


@needs_promtool
def test_promtool_check_config_of_the_example() -> None:
    result = promtool("check", "config", str(RULES / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_test_rules() -> None:
    result = promtool("test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_the_issue_asks_for_exist() -> None:
    assert {rule["alert"] for rule in alerts()} >= REQUIRED_ALERTS


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_tells_a_human_what_to_do(rule: dict) -> None:
    assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook"} <= set(annotations)
    assert "README: Runbooks" in annotations["runbook"]
    assert "for" in rule


def test_every_alert_has_unit_tests_that_fire_and_stay_silent() -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    assert [str(RULES / f) for f in ("recording_rules.yml", "alerts.yml")] == [
        str((UNIT_TESTS.parent / f).resolve())
        for f in yaml.safe_load(UNIT_TESTS.read_text())["rule_files"]
    ]
    fires: set[str] = set()
    silent: set[str] = set()
    for test in tests:
        for case in test.get("alert_rule_test", []):
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    every = {rule["alert"] for rule in alerts()}
    assert every == fires == silent


def test_the_spike_is_tested_on_a_spike_normal_traffic_a_quiet_account_and_a_gap() -> None:
    names = [test["name"] for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]]
    for case in ("spike fires on a spike", "spike stays silent on normal weekly traffic",
                 "spike stays silent on a quiet account", "spike stays silent on a gap"):
        assert any(name.startswith(case) for name in names), case


def test_the_message_spike_is_tested_like_the_conversation_spike() -> None:
    names = [test["name"] for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]]
    (name,) = [name for name in names if name.startswith("message spike")]
    for case in ("fires on a spike", "normal weekly traffic", "a quiet account", "a gap"):
        assert case in name, case


def test_recording_rules_follow_the_naming_convention() -> None:
    recorded = rules(RULES / "recording_rules.yml")
    assert recorded
    for rule in recorded:
        assert RECORD_NAME.fullmatch(rule["record"]), rule["record"]
        level = rule["record"].split(":")[0]
        assert level.startswith("waba"), rule["record"]


def test_comparisons_with_last_week_read_raw_series() -> None:
    # A recorded series does not exist before the rules were loaded, nor over backfilled
    # history: `offset 1w` must apply to the exporter's own metric.
    for rule in rules(RULES / "recording_rules.yml") + alerts():
        for match in re.finditer(r"([a-z_:]+)(\{[^}]*\})?\s+offset\s+1w", rule["expr"]):
            assert ":" not in match.group(1), rule["expr"]
