"""Every flag of CONTRACT.md, run as a real process: exit codes, verdicts, output."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter import __version__
from exporter.simulator import Fault
from tests.conftest import (
    DEMO_ACCOUNTS,
    TEST_API_KEY,
    WABA_ACCOUNTS,
    config_dict,
    free_port,
    parse_metrics,
    run_exporter,
    write_config,
)


def test_version() -> None:
    result = run_exporter("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"whatsapp-exporter {__version__}")


def test_once_prints_the_exposition_and_exits_0(simulator, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    result = run_exporter("--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    families = parse_metrics(result.stdout)
    assert {s.value for s in families["whatsapp_exporter_poll_success"].samples} == {1.0}
    assert families["whatsapp_conversations"].samples
    assert TEST_API_KEY not in result.stdout + result.stderr


def test_once_exits_1_when_a_target_fails_and_serves_the_others(simulator, tmp_path) -> None:
    failing = WABA_ACCOUNTS[0]
    simulator.set_fault(Fault.forbidden(), waba_id=failing.waba_id)
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    result = run_exporter("--config", str(config), "--once")
    assert result.returncode == 1
    success = {s.labels["waba_name"]: s.value
               for s in parse_metrics(result.stdout)["whatsapp_exporter_poll_success"].samples}
    assert success == {a.name: 0.0 if a is failing else 1.0 for a in DEMO_ACCOUNTS}
    assert "permission" in result.stderr and failing.name in result.stderr
    assert TEST_API_KEY not in result.stdout + result.stderr


def test_env_var_names_the_config(simulator, tmp_path, monkeypatch) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    monkeypatch.setenv("WHATSAPP_EXPORTER_CONFIG", str(config))
    result = run_exporter("--check-config")
    assert result.returncode == 0, result.stderr


def test_check_config_ok(simulator, tmp_path) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    result = run_exporter("--config", str(config), "--check-config")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: 4 target(s)")
    assert len(result.stdout.strip().splitlines()) == 1
    assert TEST_API_KEY not in result.stdout
    assert simulator.requests == [], "checking a config does not call the upstream"


BAD_CONFIGS = [
    ({"targets": [{"name": "x"}]}, "targets[0].waba_id: required"),
    ({"poll": {"delay": "3x"}}, 'poll.delay: not a duration: "3x"'),
    ({"splashify": {"base_ur": "http://x", "api_key": "k"}}, "unknown key splashify.base_ur"),
    ({"dimensions": ["CUNTRY"]}, "dimensions[0]"),
]


@pytest.mark.parametrize(("override", "expected"), BAD_CONFIGS)
@pytest.mark.parametrize("mode", [(), ("--check-config",), ("--once",)])
def test_bad_config_is_one_line_and_exit_2(simulator, tmp_path, override, expected, mode):
    config = write_config(tmp_path / "c.yaml", config_dict(simulator, **override))
    result = run_exporter("--config", str(config), *mode)
    assert result.returncode == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_config_file(tmp_path) -> None:
    result = run_exporter("--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr and "Traceback" not in result.stderr


def test_an_unset_key_variable_is_a_config_error(simulator, tmp_path) -> None:
    config = config_dict(simulator)
    config["splashify"]["api_key"] = "${NOT_SET_ANYWHERE_42}"
    result = run_exporter("--config", str(write_config(tmp_path / "c.yaml", config)),
                          "--check-config")
    assert result.returncode == 2
    assert "splashify.api_key" in result.stderr and "NOT_SET_ANYWHERE_42" in result.stderr


@pytest.mark.parametrize("address", ["nope", "127.0.0.1:99999", "127.0.0.1:"])
def test_bad_listen_address_flag(simulator, tmp_path, address: str) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    result = run_exporter("--config", str(config), "--web.listen-address", address)
    assert result.returncode == 2
    assert "--web.listen-address" in result.stderr and "Traceback" not in result.stderr


def test_unknown_flag_is_usage_error() -> None:
    assert run_exporter("--frobnicate").returncode == 2


def test_demo_once_needs_no_config_and_no_key(tmp_path) -> None:
    result = run_exporter("--demo", "--once", "--config", str(tmp_path / "absent.yaml"))
    assert result.returncode == 0, result.stderr
    families = parse_metrics(result.stdout)
    assert {s.labels["waba_name"] for s in families["whatsapp_exporter_poll_success"].samples} \
        == {a.name for a in DEMO_ACCOUNTS}
    assert sum(s.value for s in families["whatsapp_conversations_observed"].samples) > 0


def test_demo_serves_metrics(start_exporter) -> None:
    exporter = start_exporter("--demo")
    exporter.wait_ready()
    families = exporter.scrape()
    categories = {s.labels["conversation_category"]
                  for s in families["whatsapp_conversations"].samples}
    assert {"MARKETING", "UTILITY", "SERVICE", "AUTHENTICATION"} <= categories


def test_json_logs(simulator, tmp_path) -> None:
    import json

    simulator.set_fault(Fault.unauthorized())
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    result = run_exporter("--config", str(config), "--once", "--log-format", "json")
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert lines and all(line["level"] == "error" for line in lines)
    assert all("auth" in line["message"] for line in lines)


def test_listen_address_in_use_is_a_clear_error(simulator, tmp_path) -> None:
    import socket

    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        config = write_config(tmp_path / "c.yaml", config_dict(simulator))
        result = run_exporter("--config", str(config), "--web.listen-address",
                              f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert "cannot listen on" in result.stderr and "Traceback" not in result.stderr
