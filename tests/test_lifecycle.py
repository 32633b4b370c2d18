"""The process over its life: readiness, reload, auth failures in the log, shutdown."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import requests

from exporter.simulator import Fault
from tests.conftest import DEMO_ACCOUNTS, WABA_ACCOUNTS, config_dict, write_config


def samples(families, name: str) -> dict[str, float]:
    return {s.labels["waba_name"]: s.value for s in families[name].samples}


def observed_sum(families, waba_name: str) -> float:
    return sum(
        s.value
        for s in families["whatsapp_conversations_observed"].samples
        if s.labels["waba_name"] == waba_name
    )


def test_ready_waits_for_every_first_poll_and_counts_failures_as_polled(
    simulator, start_exporter, tmp_path: Path
) -> None:
    slow, failing = WABA_ACCOUNTS[0], WABA_ACCOUNTS[1]
    simulator.set_fault(Fault.slow(3), waba_id=slow.waba_id, times=1)
    simulator.set_fault(Fault.forbidden(), waba_id=failing.waba_id)
    config = config_dict(simulator)
    config["splashify"]["timeout"] = "5s"
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml", config)))
    exporter.wait_alive()
    assert exporter.get("/ready").status_code == 503  # the slow target is still being polled
    exporter.wait_ready()
    families = exporter.scrape()
    assert samples(families, "whatsapp_exporter_poll_success")[failing.name] == 0
    assert samples(families, "whatsapp_exporter_poll_success")[slow.name] == 1


def test_reload_by_sighup_and_http(simulator, start_exporter, tmp_path: Path) -> None:
    kept, dropped, added = WABA_ACCOUNTS[0], WABA_ACCOUNTS[1], WABA_ACCOUNTS[2]
    path = tmp_path / "c.yaml"
    first = config_dict(
        simulator, targets=[{"waba_id": a.waba_id, "name": a.name} for a in (kept, dropped)]
    )
    exporter = start_exporter("--config", str(write_config(path, first)), "--web.enable-lifecycle")
    exporter.wait_ready()
    before = exporter.scrape()
    kept_total = observed_sum(before, kept.name)  # 0 until a bucket completes after the start

    # SIGHUP: one target removed, one added; the kept one keeps its counter.
    second = config_dict(
        simulator, targets=[{"waba_id": a.waba_id, "name": a.name} for a in (kept, added)]
    )
    write_config(path, second)
    exporter.process.send_signal(signal.SIGHUP)
    after = exporter.wait_for(
        lambda f: set(samples(f, "whatsapp_exporter_poll_success")) == {kept.name, added.name},
        "the reload to take effect",
    )
    assert observed_sum(after, kept.name) >= kept_total
    assert dropped.name not in {
        s.labels["waba_name"] for s in after["whatsapp_exporter_api_requests"].samples
    }
    assert after["whatsapp_exporter_config_last_reload_successful"].samples[0].value == 1
    assert after["whatsapp_exporter_targets"].samples[0].value == 2

    # A bad config is refused with its one line; the running config stays.
    path.write_text(path.read_text().replace("targets:", "targetz:"))
    response = requests.post(exporter.url + "/-/reload", timeout=10)
    assert response.status_code == 500
    assert (
        response.text.strip() == "failed to reload config: unknown key targetz (one of "
        "splashify, poll, dimensions, filters, sources, pricing, messages, targets, web, shard, "
        "limits)"
    )
    families = exporter.scrape()
    assert families["whatsapp_exporter_config_last_reload_successful"].samples[0].value == 0
    assert set(samples(families, "whatsapp_exporter_poll_success")) == {kept.name, added.name}
    assert exporter.get("/-/reload").status_code == 405

    write_config(path, second)
    response = requests.post(exporter.url + "/-/reload", timeout=10)
    assert response.status_code == 200 and response.text.startswith("config reloaded")
    families = exporter.scrape()
    assert families["whatsapp_exporter_config_last_reload_successful"].samples[0].value == 1
    assert "Traceback" not in exporter.output()


def test_reload_with_new_dimensions_relabels_every_series(
    simulator, start_exporter, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    exporter = start_exporter(
        "--config", str(write_config(path, config_dict(simulator))), "--web.enable-lifecycle"
    )
    exporter.wait_ready()
    write_config(path, config_dict(simulator, dimensions=["COUNTRY"]))
    assert requests.post(exporter.url + "/-/reload", timeout=10).status_code == 200
    families = exporter.wait_for(
        lambda f: f["whatsapp_conversations"].samples, "the relabelled series"
    )
    label_sets = {tuple(sorted(s.labels)) for s in families["whatsapp_conversations"].samples}
    assert label_sets == {("country", "waba_id", "waba_name")}


def test_an_auth_failure_is_logged_once_per_change(simulator, start_exporter, tmp_path) -> None:
    simulator.set_fault(Fault.unauthorized(), waba_id=WABA_ACCOUNTS[0].waba_id)
    config = config_dict(simulator, poll={"interval": "1s"})
    config["splashify"]["timeout"] = "0.5s"
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml", config)))
    exporter.wait_ready()
    name = WABA_ACCOUNTS[0].name
    exporter.wait_for(
        lambda f: (
            sum(
                s.value
                for s in f["whatsapp_exporter_poll_errors"].samples
                if s.labels == {"waba_name": name, "reason": "auth"}
            )
            >= 3
        ),
        "three auth failures",
    )
    simulator.clear_faults()
    exporter.wait_for(
        lambda f: samples(f, "whatsapp_exporter_poll_success").get(name) == 1, "recovery"
    )
    lines = [line for line in exporter.output().splitlines() if f"target {name}" in line]
    assert len([line for line in lines if "ERROR" in line and "(auth)" in line]) == 1, lines
    assert any("recovered" in line for line in lines)


def test_sigterm_with_a_poll_in_flight_exits_promptly(
    simulator, start_exporter, tmp_path: Path
) -> None:
    simulator.set_fault(Fault.slow(20))
    config = config_dict(simulator)
    config["splashify"]["timeout"] = "30s"
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml", config)))
    exporter.wait_alive()
    time.sleep(0.5)  # every first poll is now waiting on the slow upstream
    assert exporter.get("/ready").status_code == 503
    started = time.monotonic()
    assert exporter.stop() == 0
    took = time.monotonic() - started
    # Polls in flight would need 20 s; the stop gives them SHUTDOWN_GRACE_SECONDS (0.8 s) and
    # takes about 1 s, with room here for a busy CI machine.
    assert took < 8, f"shutdown took {took:.2f}s"
    assert "Traceback" not in exporter.output()
    print(f"\nshutdown with polls in flight took {took:.2f}s")


def test_a_stale_target_loses_its_data_series(simulator, start_exporter, tmp_path) -> None:
    victim = WABA_ACCOUNTS[0]
    config = config_dict(simulator, poll={"interval": "1s", "stale_after": "3s"})
    config["splashify"]["timeout"] = "0.5s"
    exporter = start_exporter("--config", str(write_config(tmp_path / "c.yaml", config)))
    exporter.wait_ready()
    simulator.set_fault(Fault.status(503), waba_id=victim.waba_id)

    def victim_gone(families) -> bool:
        names = {s.labels["waba_name"] for s in families["whatsapp_conversations"].samples}
        return victim.name not in names and len(names) == len(DEMO_ACCOUNTS) - 1

    families = exporter.wait_for(victim_gone, "the stale target's series to go")
    assert samples(families, "whatsapp_exporter_poll_success")[victim.name] == 0
    assert victim.name not in {
        s.labels["waba_name"] for s in families["whatsapp_conversations_observed"].samples
    }
    simulator.clear_faults()
    exporter.wait_for(
        lambda f: (
            victim.name in {s.labels["waba_name"] for s in f["whatsapp_conversations"].samples}
        ),
        "the series to come back after recovery",
    )


def test_the_reload_endpoint_is_off_unless_enabled(simulator, start_exporter, tmp_path) -> None:
    exporter = start_exporter(
        "--config", str(write_config(tmp_path / "c.yaml", config_dict(simulator)))
    )
    exporter.wait_ready()
    response = requests.post(exporter.url + "/-/reload", timeout=10)
    assert response.status_code == 403 and "--web.enable-lifecycle" in response.text
