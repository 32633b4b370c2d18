"""The status page in a real browser, from a running exporter: headless Chromium loads `/`, and
the test reads the DOM it rendered. Plus: the page and its JSON sit behind basic auth."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import bcrypt
import pytest
import requests

from exporter.simulator import DEMO_ACCOUNTS, Fault, Simulator
from tests.conftest import TEST_API_KEY, config_dict, write_config
from tests.pagedom import read_page

ACME, GLOBEX, KOPI, GULF = DEMO_ACCOUNTS
XSS_NAME = '<script>document.documentElement.setAttribute("data-xss", "name")</script>'
XSS_MESSAGE = (
    "<img src=x onerror=\"document.documentElement.setAttribute('data-xss', 'error')\"> "
    "Request to WhatsApp failed"
)
EXPECTED = {
    ACME.name: "ok",
    XSS_NAME: "failing",
    KOPI.name: "paused",
    GULF.name: "stale",
}
CHROMIUM = shutil.which("chromium")


def dump_dom(url: str, profile: Path) -> str:
    """The DOM that Chromium rendered from `url` (scripts, had there been any, included).

    The flags keep a headless Chromium from calling home (background networking, component
    updates, sync, QUIC): on a machine without internet those connections only fail.
    """
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",  # as root, Chromium refuses to start with its sandbox
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "</html>" in result.stdout, result.stderr[-3000:]
    return result.stdout


def four_state_config(sim: Simulator) -> dict:
    targets = [
        {"waba_id": ACME.waba_id, "name": ACME.name},
        {"waba_id": GLOBEX.waba_id, "name": XSS_NAME},
        {"waba_id": KOPI.waba_id, "name": KOPI.name},
        {"customer_id": GULF.customer_id, "name": GULF.name},
    ]
    return config_dict(
        sim,
        targets=targets,
        poll={"interval": "1s", "stale_after": "3s"},
        splashify={"base_url": sim.url, "api_key": "${TEST_SPLASHIFY_KEY}", "timeout": "0.5s"},
    )


def wait_for_states(exporter, expected: dict[str, str], timeout: float = 60) -> dict:
    """/api/v1/targets, once every target is in its expected state."""
    deadline = time.monotonic() + timeout
    while True:
        document = exporter.get("/api/v1/targets").json()
        states = {t["name"]: t["state"] for t in document["data"]["activeTargets"]}
        if states == expected:
            return document
        assert exporter.process.poll() is None, exporter.output()
        assert time.monotonic() < deadline, f"states {states}:\n{exporter.output()}"
        time.sleep(0.2)


@pytest.mark.skipif(CHROMIUM is None, reason="scripts/test.sh installs Debian's chromium")
def test_a_browser_shows_each_target_and_its_state(simulator, start_exporter, tmp_path) -> None:
    simulator.set_fault(
        Fault.status(502, {"success": False, "message": XSS_MESSAGE}), waba_id=GLOBEX.waba_id
    )
    simulator.set_fault(Fault.rate_limited(retry_after="600"), waba_id=KOPI.waba_id)
    path = write_config(tmp_path / "c.yaml", four_state_config(simulator))
    exporter = start_exporter("--config", str(path))
    exporter.wait_ready()
    simulator.set_fault(Fault.status(500), waba_id=GULF.waba_id)  # from now on: goes stale
    document = wait_for_states(exporter, EXPECTED)

    page = read_page(dump_dom(exporter.url + "/", tmp_path / "profile"))
    assert {name: row.state for name, row in page.rows.items()} == EXPECTED
    for row in page.rows.values():
        assert row.cells["State"] == row.state, "the badge says what the row's state is"
    # The markup in the name and in the upstream's message stayed text: nothing ran.
    assert not any("data-xss" in attributes for _, attributes in page.elements)
    assert page.scripts == 0
    assert page.rows[XSS_NAME].cells["Target"] == XSS_NAME
    assert XSS_MESSAGE in page.rows[XSS_NAME].cells["Last error"]
    assert page.rows[KOPI.name].cells["Paused until"] != "not paused"
    assert page.rows[ACME.name].cells["Series"] != "0"

    # The scheduler's next run, after the last poll began.
    healthy = next(t for t in document["data"]["activeTargets"] if t["name"] == ACME.name)
    assert healthy["nextPoll"] is not None and healthy["nextPoll"] > healthy["lastPoll"]
    assert TEST_API_KEY not in exporter.get("/").text + exporter.get("/api/v1/targets").text


def test_the_page_and_its_json_need_the_password_when_one_is_set(
    simulator, start_exporter, tmp_path
) -> None:
    digest = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users: {{prom: '{digest}'}}\n")
    path = write_config(tmp_path / "c.yaml", config_dict(simulator))
    exporter = start_exporter("--config", str(path), "--web.config.file", str(tmp_path / "web.yml"))
    exporter.wait_alive()
    assert exporter.get("/healthz").status_code == 200
    for page in ("/", "/api/v1/targets"):
        assert exporter.get(page).status_code == 401
        assert exporter.get(page, auth=("prom", "wrong")).status_code == 401
        answer = exporter.get(page, auth=("prom", "s3cret"))
        assert answer.status_code == 200, page
    assert requests.get(exporter.url + "/", auth=("prom", "s3cret"), timeout=10).text.startswith(
        "<!DOCTYPE html>"
    )
