"""Every flag of the command line (docs/contract.md), run as a real process: exit codes,
verdicts, output."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import requests

from exporter import __version__
from exporter.pipeline.sharding import shard_of
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
    (
        {"splashify": {"base_ur": "http://x", "api_key": "k-123456"}},
        "unknown key splashify.base_ur",
    ),
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
    assert sum(s.value for s in families["whatsapp_conversations"].samples) > 0
    # A fresh process counts none of the history it finds: every counter series starts at 0.
    counters = families["whatsapp_conversations_observed"].samples
    assert counters and {s.value for s in counters} == {0.0}


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


# --- --shard ---------------------------------------------------------------------------------


def demo_id(account) -> str:
    """The id a demo account is sharded by: its customer id if it has one, as config_dict has."""
    return account.customer_id or account.waba_id


def owned_names(index: int, total: int) -> set[str]:
    return {a.name for a in DEMO_ACCOUNTS if shard_of(demo_id(a), total) == index}


def empty_shard() -> tuple[int, int]:
    """A shard that owns none of the demo accounts (there are more shards than accounts)."""
    for total in range(2, 64):
        for index in range(total):
            if not owned_names(index, total):
                return index, total
    raise AssertionError("every shard owns a demo account")


def polled_names(stdout: str) -> list[str]:
    return [s.labels["waba_name"]
            for s in parse_metrics(stdout)["whatsapp_exporter_poll_success"].samples]


def test_two_shards_together_poll_every_target_exactly_once(simulator, tmp_path) -> None:
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    results = [run_exporter("--config", str(config), "--once", "--shard", f"{i}/2")
               for i in range(2)]
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    names = [name for r in results for name in polled_names(r.stdout)]
    assert sorted(names) == sorted(a.name for a in DEMO_ACCOUNTS)
    assert all(polled_names(r.stdout) for r in results), "the demo accounts split over both"
    for i, result in enumerate(results):
        conversations = parse_metrics(result.stdout)["whatsapp_conversations"].samples
        assert {s.labels["waba_name"] for s in conversations} == owned_names(i, 2)
        assert f"shard {i}/2: polling {len(owned_names(i, 2))} of 4 target(s)" in result.stderr
    # One request per account in all: no account was polled by both replicas.
    assert sorted(r.account_waba_id for r in simulator.requests) \
        == sorted(a.waba_id for a in DEMO_ACCOUNTS)


def test_the_shard_flag_overrides_the_config(simulator, tmp_path) -> None:
    config = write_config(tmp_path / "c.yaml",
                          config_dict(simulator, shard={"index": 0, "total": 2}))
    from_file = run_exporter("--config", str(config), "--check-config")
    from_flag = run_exporter("--config", str(config), "--check-config", "--shard", "1/2")
    everything = run_exporter("--config", str(config), "--check-config", "--shard", "0/1")
    for result, (index, total) in ((from_file, (0, 2)), (from_flag, (1, 2))):
        assert result.returncode == 0, result.stderr
        names = [a.name for a in DEMO_ACCOUNTS if a.name in owned_names(index, total)]
        assert result.stdout.startswith(
            f"config OK: {len(names)} of 4 target(s) in shard {index}/{total} "
            f"({', '.join(names)}); "
        ), result.stdout
    assert everything.stdout.startswith("config OK: 4 target(s) (")
    once = run_exporter("--config", str(config), "--once", "--shard", "1/2")
    assert once.returncode == 0, once.stderr
    assert set(polled_names(once.stdout)) == owned_names(1, 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2/2", "--shard: INDEX must be from 0 to TOTAL - 1"),
        ("0/0", "--shard: TOTAL must be at least 1"),
        ("1", "--shard: expected INDEX/TOTAL such as 0/2 or 1/2, got '1'"),
        ("-1/2", "--shard: expected INDEX/TOTAL"),
        ("", "--shard: expected INDEX/TOTAL"),
    ],
)
@pytest.mark.parametrize("mode", [(), ("--check-config",), ("--once",), ("--demo", "--once")])
def test_a_bad_shard_flag_is_one_line_and_exit_2(simulator, tmp_path, value, expected, mode):
    config = write_config(tmp_path / "c.yaml", config_dict(simulator))
    result = run_exporter("--config", str(config), *mode, f"--shard={value}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"whatsapp-exporter: {expected}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert simulator.requests == []


def test_a_shard_that_owns_nothing_serves_its_own_metrics(simulator, start_exporter,
                                                           tmp_path) -> None:
    index, total = empty_shard()
    config = str(write_config(tmp_path / "c.yaml", config_dict(simulator)))
    check = run_exporter("--config", config, "--check-config", "--shard", f"{index}/{total}")
    assert check.stdout.startswith(f"config OK: 0 of 4 target(s) in shard {index}/{total} (none)")
    once = run_exporter("--config", config, "--once", "--shard", f"{index}/{total}")
    assert once.returncode == 0, once.stderr
    assert polled_names(once.stdout) == []
    assert parse_metrics(once.stdout)["whatsapp_exporter_targets"].samples[0].value == 0

    exporter = start_exporter("--config", config, "--shard", f"{index}/{total}")
    exporter.wait_ready()
    families = exporter.scrape()
    assert families["whatsapp_exporter_targets"].samples[0].value == 0
    assert not families["whatsapp_conversations"].samples
    assert families["whatsapp_exporter_build_info"].samples
    assert f"shard {index}/{total} owns none of the 4 target(s)" in exporter.output()
    assert "Traceback" not in exporter.output()
    assert simulator.requests == []


def test_a_reload_keeps_the_shard_flag(simulator, start_exporter, tmp_path) -> None:
    path = tmp_path / "c.yaml"
    write_config(path, config_dict(simulator))
    exporter = start_exporter("--config", str(path), "--shard", "1/2", "--web.enable-lifecycle")
    exporter.wait_ready()
    assert set(polled_names(exporter.scrape_text())) == owned_names(1, 2)

    # The file now names the other shard; the flag still wins, by HTTP and by SIGHUP.
    write_config(path, config_dict(simulator, shard={"index": 0, "total": 2}))
    response = requests.post(exporter.url + "/-/reload", timeout=10)
    assert response.status_code == 200
    assert response.text.startswith(
        f"config reloaded: {len(owned_names(1, 2))} of 4 target(s) in shard 1/2 ("
    ), response.text
    exporter.process.send_signal(signal.SIGHUP)
    exporter.wait_for(
        lambda _: exporter.output().count("shard 1/2: polling") == 3,
        "the SIGHUP reload to be logged",
    )
    text = exporter.scrape_text()
    families = parse_metrics(text)
    assert set(polled_names(text)) == owned_names(1, 2)
    assert families["whatsapp_exporter_config_last_reload_successful"].samples[0].value == 1
    assert families["whatsapp_exporter_targets"].samples[0].value == len(owned_names(1, 2))
    assert "shard 0/2" not in exporter.output()


def test_demo_with_a_shard() -> None:
    result = run_exporter("--demo", "--once", "--shard", "1/2")
    assert result.returncode == 0, result.stderr
    assert set(polled_names(result.stdout)) == owned_names(1, 2)
