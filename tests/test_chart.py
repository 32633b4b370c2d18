"""The Helm chart (charts/whatsapp-exporter), checked with real parts and offline.

- Helm's own Go SDK (helm-python-sdk) lints and renders the chart; no helm binary, no cluster.
- Every rendered manifest is validated: the built-in kinds against the Kubernetes 1.30 OpenAPI
  schemas (kubernetes-validate, strict: unknown fields fail), the Prometheus Operator's kinds
  against the models generated from its CRDs (a round trip that loses no field).
- The PrometheusRule's groups go through `promtool check rules` and equal prometheus/'s rules;
  the dashboard ConfigMaps hold grafana/dashboards/ byte for byte.
- Each pod's command line is run for real: the volumes are laid out in a directory as the kubelet
  would mount them, SHARD_INDEX comes from the pod-index label as the downward API gives it, and
  the exporter's own `--check-config` (or a real server, for TLS and basic auth) takes the args.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import helm_python as helm
import kubernetes_validate
import pytest
import requests
import yaml

import exporter
from exporter.simulator import Simulator

from .conftest import DEMO_ACCOUNTS, TEST_API_KEY, exporter_env, free_port

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "whatsapp-exporter"
KUBERNETES = "1.30"
RELEASE, NAMESPACE = "wa", "monitoring"
FULLNAME = "wa-whatsapp-exporter"
RULE_FILES = ["recording_rules.yml", "alerts.yml"]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

# Twelve WABAs, so that each of three shards owns some (the hash decides which).
TARGETS = [{"waba_id": str(100000000000000 + 7919 * i), "name": f"waba-{i}"} for i in range(12)]
EXISTING_KEY = {"existingSecret": "splashify", "secretKey": "key"}
# Secrets that exist in the cluster before the install: name -> {key: text}.
CLUSTER_SECRETS = {"splashify": {"key": TEST_API_KEY}}

MINIMAL = {"apiKey": EXISTING_KEY, "config": {"targets": TARGETS}}
FULL = {
    "shards": 3,
    "apiKey": {"value": TEST_API_KEY},
    "config": {
        "splashify": {"requests_per_second": 5},
        "poll": {"interval": "5m"},
        "dimensions": ["CONVERSATION_CATEGORY", "COUNTRY"],
        "targets": TARGETS,
    },
    "persistence": {
        "enabled": True,
        "storageClass": "fast",
        "size": "2Gi",
        "retentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"},
    },
    "web": {
        "tls": {"enabled": True, "secretName": "wa-tls"},
        "basicAuth": {
            "enabled": True,
            "passwordHash": "$2b$04$" + "x" * 53,
            "secretName": "wa-scrape",
        },
    },
    "serviceMonitor": {
        "enabled": True,
        "labels": {"release": "kube-prometheus-stack"},
        "metricRelabelings": [
            {"action": "drop", "sourceLabels": ["__name__"], "regex": "process_.*"}
        ],
    },
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "dashboards": {"enabled": True, "annotations": {"grafana_folder": "WhatsApp"}},
    "podAnnotations": {"example.com/team": "messaging"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "monitoring", "effect": "NoSchedule"}
    ],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "whatsapp-exporter"}},
        }
    ],
    "extraArgs": ["--web.enable-lifecycle"],
}
DEMO = {
    "demo": {"enabled": True, "scenario": "marketing-spike"},
    "shards": 2,
    "serviceMonitor": {"enabled": True},
}
VALUE_SETS = {"defaults": None, "minimal": MINIMAL, "full": FULL, "demo": DEMO}

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="scripts/test.sh installs Debian's prometheus"
)
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict | None) -> list[dict]:
    """Every manifest the chart renders for `values`, parsed (NOTES.txt left out)."""
    rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def notes(chart: helm.Chart, values: dict | None) -> str:
    rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def named(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in of_kind(docs, kind) if d["metadata"]["name"] == name)


def container(docs: list[dict]) -> dict:
    [only] = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return only


def render_error(chart: helm.Chart, values: dict) -> str:
    with pytest.raises(helm.HelmError) as caught:
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    return str(caught.value)


# --- The pod as the kubelet would start it ------------------------------------------------------


class Pod:
    """One pod of the rendered StatefulSet, laid out under `root`: each volume's files where its
    mount puts them (ConfigMaps and Secrets from the render, or from `cluster_secrets` for those
    the user creates), env from the downward API, `$(VAR)` expanded in the args as Kubernetes
    does, and every mounted path moved under `root`."""

    def __init__(
        self,
        docs: list[dict],
        ordinal: int,
        root: Path,
        cluster_secrets: dict[str, dict[str, str]] | None = None,
    ) -> None:
        statefulset = one(docs, "StatefulSet")
        template = statefulset["spec"]["template"]
        spec = template["spec"]
        [self.container] = spec["containers"]
        self.root = root
        self.labels = {**template["metadata"]["labels"], POD_INDEX_LABEL: str(ordinal)}
        self.mounts = {m["mountPath"]: m for m in self.container.get("volumeMounts", [])}
        # Longest first, so that /a/b is moved before /a; one pass, so nothing moves twice.
        self._moved = re.compile(
            "|".join(re.escape(p) for p in sorted(self.mounts, key=len, reverse=True))
        )
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        templates = statefulset["spec"].get("volumeClaimTemplates", [])
        claims = {c["metadata"]["name"] for c in templates}
        for path, mount in self.mounts.items():
            target = root / path.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            if mount["name"] in claims:
                continue
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                data = named(docs, "ConfigMap", volume["configMap"]["name"])["data"]
                self._write(target, data, volume["configMap"].get("items"))
            elif "secret" in volume:
                self._write(
                    target,
                    self._secret(docs, volume["secret"]["secretName"], cluster_secrets or {}),
                    volume["secret"].get("items"),
                )
            else:
                assert "emptyDir" in volume, volume
        self.env = {}
        for variable in self.container.get("env", []):
            assert "value" not in variable, f"a value inline in the pod spec: {variable}"
            field = variable["valueFrom"]["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", field)
            assert label, f"unexpected downward API field {field}"
            self.env[variable["name"]] = self.labels.get(label.group(1), "")

    @staticmethod
    def _secret(docs: list[dict], name: str, cluster: dict[str, dict[str, str]]) -> dict:
        for doc in of_kind(docs, "Secret"):
            if doc["metadata"]["name"] == name:
                return {k: base64.b64decode(v).decode() for k, v in doc["data"].items()}
        return cluster[name]

    def _write(self, target: Path, data: dict[str, str], items: list[dict] | None) -> None:
        pairs = [(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]
        for key, path in pairs:
            (target / path).write_text(self.move(data[key]))

    def move(self, text: str) -> str:
        """Mounted paths in `text`, moved under the pod's root."""
        return self._moved.sub(lambda m: str(self.root) + m.group(0), text)

    def expand(self, text: str) -> str:
        """`$(VAR)` from the container's env, as Kubernetes expands args and commands."""
        return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: self.env[m.group(1)], text)

    def args(self) -> list[str]:
        return [self.move(self.expand(arg)) for arg in self.container["args"]]

    def exec_probe(self, probe: dict) -> list[str]:
        command = [self.move(self.expand(arg)) for arg in probe["exec"]["command"]]
        assert command[0] == "python"
        return [sys.executable, *command[1:]]


def exporter_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, check=True
    ).stdout


def known_args(args: list[str]) -> list[str]:
    """The args, less --persistence.file while the exporter does not have that flag yet."""
    if "--persistence.file" in exporter_help():
        return args
    return [a for a in args if not a.startswith("--persistence.file")]


def check_config(pod: Pod) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *known_args(pod.args()), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        env=exporter_env(),
    )


# --- Lint and schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_is_clean_in_strict_mode(values: dict | None) -> None:
    report = helm.lint(CHART, values=values, strict=True, kube_version=f"v{KUBERNETES}.0")
    assert report["errors"] == []
    # Severity 1 is information ("icon is recommended"); strict lint fails on 2 and above.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_values_schema_refuses_mistakes(chart: helm.Chart) -> None:
    assert "/shards" in render_error(chart, {"shards": 0})
    assert "/shards" in render_error(chart, {"shards": "3"})
    assert "/persistence" in render_error(chart, {"persistence": {"enable": True}})
    assert "logFormat" in render_error(chart, {"logFormat": "xml"})


def monitoring_models():
    from cloudcoil.models.prometheus_operator import v1

    return {
        "ServiceMonitor": v1.ServiceMonitor,
        "PodMonitor": v1.PodMonitor,
        "PrometheusRule": v1.PrometheusRule,
    }


def validate(doc: dict) -> None:
    """Raises unless `doc` matches its kind's schema, unknown fields included."""
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        model = monitoring_models()[doc["kind"]]
        # The models ignore unknown fields: a dump that differs from the input names them.
        dumped = model.model_validate(doc).model_dump(
            by_alias=True, exclude_unset=True, mode="json"
        )
        assert dumped == doc, f"{doc['kind']} does not round-trip through the operator's model"
    else:
        # SchemaNotFoundError for a kind with no schema fails the test too.
        assert kubernetes_validate.validate(doc, KUBERNETES, strict=True) == KUBERNETES


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_manifest_matches_the_kubernetes_1_30_schemas(chart, values) -> None:
    docs = render(chart, values)
    assert docs
    for doc in docs:
        validate(doc)


def test_the_validation_catches_unknown_fields(chart: helm.Chart) -> None:
    """The checks above can fail: a typo in a built-in kind or in an operator kind is caught."""
    docs = render(chart, FULL)
    statefulset = one(docs, "StatefulSet")
    statefulset["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(statefulset)
    monitor = one(docs, "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeTimout"] = "10s"
    with pytest.raises(AssertionError, match="round-trip"):
        validate(monitor)
    rule = one(docs, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["recrod"] = "x"
    with pytest.raises(AssertionError, match="round-trip"):
        validate(rule)


# --- Shards -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shards", [1, 3])
def test_shards_are_a_statefulset_with_one_shard_flag_per_pod(chart, shards, tmp_path) -> None:
    docs = render(chart, {**MINIMAL, "shards": shards})
    statefulset = one(docs, "StatefulSet")
    service = one(docs, "Service")
    assert statefulset["spec"]["replicas"] == shards
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"] == FULLNAME
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == statefulset["spec"]["selector"]["matchLabels"]
    assert f"--shard=$(SHARD_INDEX)/{shards}" in container(docs)["args"]
    assert container(docs)["env"] == [
        {
            "name": "SHARD_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{POD_INDEX_LABEL}']"}},
        }
    ]
    pdbs = of_kind(docs, "PodDisruptionBudget")
    if shards == 1:
        assert pdbs == []
    else:
        [pdb] = pdbs
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"] == statefulset["spec"]["selector"]

    # Each pod, started as the kubelet starts it: the exporter's own --check-config reads the
    # mounted config and key and takes its share. The shares cover every target exactly once.
    owned: list[str] = []
    for ordinal in range(shards):
        result = check_config(Pod(docs, ordinal, tmp_path / f"pod-{ordinal}", CLUSTER_SECRETS))
        assert result.returncode == 0, result.stdout + result.stderr
        if shards == 1:
            match = re.match(r"config OK: (\d+) target\(s\) \(([^)]*)\)", result.stdout)
        else:
            match = re.match(
                rf"config OK: (\d+) of 12 target\(s\) in shard {ordinal}/{shards} "
                r"\(([^)]*)\)",
                result.stdout,
            )
        assert match, result.stdout
        names = [] if match.group(2) == "none" else match.group(2).split(", ")
        assert len(names) == int(match.group(1))
        owned += names
    assert sorted(owned) == sorted(t["name"] for t in TARGETS)


def test_a_pod_without_its_index_label_does_not_start(chart, tmp_path) -> None:
    """Without the pod-index label (a cluster older than 1.28) the flag is empty, and the
    exporter refuses it rather than polling every target."""
    docs = render(chart, {**MINIMAL, "shards": 3})
    pod = Pod(docs, 0, tmp_path, CLUSTER_SECRETS)
    pod.env["SHARD_INDEX"] = ""
    result = check_config(pod)
    assert result.returncode == 2
    assert "--shard" in result.stdout + result.stderr


# --- Config and secrets -------------------------------------------------------------------------


def all_text(chart: helm.Chart, values: dict) -> str:
    rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    return "\n".join(rendered.values())


def test_an_existing_secret_is_mounted_as_the_key_file(chart, tmp_path) -> None:
    docs = render(chart, MINIMAL)
    assert of_kind(docs, "Secret") == []
    spec = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "api-key"]
    assert volume["secret"]["secretName"] == "splashify"
    assert volume["secret"]["items"] == [{"key": "key", "path": "api-key"}]
    config = yaml.safe_load(one(docs, "ConfigMap")["data"]["config.yaml"])
    assert config["splashify"] == {"api_key_file": "/etc/whatsapp-exporter/secret/api-key"}
    assert config["targets"] == TARGETS
    pod = Pod(docs, 0, tmp_path, CLUSTER_SECRETS)
    assert (tmp_path / "etc/whatsapp-exporter/secret/api-key").read_text() == TEST_API_KEY
    assert check_config(pod).returncode == 0


def test_a_key_given_as_a_value_lives_only_in_the_secret_the_chart_creates(chart) -> None:
    values = {"apiKey": {"value": TEST_API_KEY}, "config": {"targets": TARGETS}}
    docs = render(chart, values)
    [secret] = of_kind(docs, "Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-api-key"
    assert base64.b64decode(secret["data"]["api-key"]).decode() == TEST_API_KEY
    text = all_text(chart, values)
    assert TEST_API_KEY not in text
    assert text.count(base64.b64encode(TEST_API_KEY.encode()).decode()) == 1
    spec = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "api-key"]
    assert volume["secret"]["secretName"] == f"{FULLNAME}-api-key"
    # A new key rolls the pods: the exporter reads the key file at start.
    other = render(chart, {**values, "apiKey": {"value": TEST_API_KEY + "2"}})
    annotations = one(docs, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert (
        annotations["checksum/secret"]
        != one(other, "StatefulSet")["spec"]["template"]["metadata"]["annotations"][
            "checksum/secret"
        ]
    )


def test_without_a_key_the_pod_says_what_is_missing(chart, tmp_path) -> None:
    docs = render(chart, {"config": {"targets": TARGETS}})
    assert of_kind(docs, "Secret") == []
    assert "WARNING: no API key" in notes(chart, {"config": {"targets": TARGETS}})
    result = check_config(Pod(docs, 0, tmp_path))
    assert result.returncode == 2
    assert "splashify.api_key: required" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"apiKey": {"existingSecret": "s", "value": "k"}}, "apiKey: set existingSecret or value"),
        ({"config": {"splashify": {"api_key": "k"}}}, "splashify.api_key: not in the config"),
        ({"config": {"splashify": {"api_key_file": "/k"}}}, "put the key in a Secret"),
        ({"config": {"shard": {"index": 0, "total": 2}}}, "config.shard: set by the chart"),
        ({"config": {"web": {"listen_address": ":1"}}}, "config.web: set by the chart"),
        (
            {"config": {"targets": [{"waba_id": 102290129340398}]}},
            "config.targets[0].waba_id: quote it",
        ),
        (
            {"config": {"targets": [{"customer_id": "c", "phone_numbers": [912240289385]}]}},
            "config.targets[0].phone_numbers[0]: quote it",
        ),
        ({"web": {"tls": {"enabled": True}}}, "web.tls.secretName: required"),
        (
            {"web": {"basicAuth": {"enabled": True, "secretName": "s"}}},
            "web.basicAuth.passwordHash: required",
        ),
        (
            {"web": {"basicAuth": {"enabled": True, "passwordHash": "$2b$"}}},
            "web.basicAuth.secretName: required",
        ),
    ],
)
def test_values_that_cannot_work_fail_the_render_with_one_line(chart, values, message) -> None:
    assert message in render_error(chart, values)


def test_the_demo_needs_no_config_and_no_key(chart, tmp_path) -> None:
    docs = render(chart, DEMO)
    assert of_kind(docs, "ConfigMap") == [] and of_kind(docs, "Secret") == []
    args = container(docs)["args"]
    assert args[:2] == ["--demo", "--demo.scenario=marketing-spike"]
    assert not any(a.startswith("--config") for a in args)
    result = check_config(Pod(docs, 1, tmp_path))
    assert result.returncode == 0, result.stderr
    assert "in shard 1/2" in result.stdout


# --- Persistence --------------------------------------------------------------------------------


def test_persistence_is_off_by_default(chart) -> None:
    docs = render(chart, MINIMAL)
    statefulset = one(docs, "StatefulSet")
    assert "volumeClaimTemplates" not in statefulset["spec"]
    assert "persistentVolumeClaimRetentionPolicy" not in statefulset["spec"]
    assert not any(a.startswith("--persistence.file") for a in container(docs)["args"])
    assert "/var/lib/whatsapp-exporter" not in {
        m["mountPath"] for m in container(docs)["volumeMounts"]
    }


def test_persistence_puts_the_file_on_a_volume_per_pod(chart) -> None:
    docs = render(chart, FULL)
    statefulset = one(docs, "StatefulSet")
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "2Gi"}},
    }
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenScaled": "Delete",
        "whenDeleted": "Retain",
    }
    assert {"name": "data", "mountPath": "/var/lib/whatsapp-exporter"} in container(docs)[
        "volumeMounts"
    ]
    assert "--persistence.file=/var/lib/whatsapp-exporter/state.db" in container(docs)["args"]
    # The volume is writable by the image's user through the pod's fsGroup.
    assert statefulset["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


def test_no_mount_is_inside_another(chart) -> None:
    """A volume mounted inside a read-only ConfigMap or Secret volume can fail to start."""
    for values in (MINIMAL, FULL):
        paths = [m["mountPath"] for m in container(render(chart, values))["volumeMounts"]]
        for path in paths:
            assert not [p for p in paths if p != path and p.startswith(path + "/")], paths


# --- Security -----------------------------------------------------------------------------------


def image_uid() -> int:
    [user] = re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    return int(user)


@pytest.mark.parametrize("values", [MINIMAL, FULL, DEMO], ids=["minimal", "full", "demo"])
def test_the_pods_are_locked_down_by_default(chart, values) -> None:
    docs = render(chart, values)
    spec = one(docs, "StatefulSet")["spec"]["template"]["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == image_uid() == 10001
    assert spec["securityContext"]["runAsGroup"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["name"] == spec["serviceAccountName"]
    assert account["automountServiceAccountToken"] is False
    main = container(docs)
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert main["resources"]["requests"]["cpu"] and main["resources"]["requests"]["memory"]
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ready = main["readinessProbe"]
    assert (
        ready.get("httpGet", {}).get("path") == "/ready" or "/ready" in ready["exec"]["command"][2]
    )
    # Nothing inline: every env var comes from the downward API.
    assert all("valueFrom" in e and "value" not in e for e in main["env"])


def test_a_service_account_token_only_when_asked(chart) -> None:
    docs = render(chart, {**MINIMAL, "serviceAccount": {"automountServiceAccountToken": True}})
    assert one(docs, "StatefulSet")["spec"]["template"]["spec"]["automountServiceAccountToken"]
    docs = render(chart, {**MINIMAL, "serviceAccount": {"create": False}})
    assert of_kind(docs, "ServiceAccount") == []
    assert one(docs, "StatefulSet")["spec"]["template"]["spec"]["serviceAccountName"] == "default"


def test_the_image_defaults_to_the_projects_image_and_the_charts_app_version(chart) -> None:
    assert chart.metadata["appVersion"] == exporter.__version__
    assert "docker build -t whatsapp-exporter ." in (ROOT / "Dockerfile").read_text()
    main = container(render(chart, MINIMAL))
    assert main["image"] == f"whatsapp-exporter:{exporter.__version__}"
    assert main["imagePullPolicy"] == "IfNotPresent"
    main = container(
        render(
            chart,
            {
                **MINIMAL,
                "image": {
                    "repository": "registry.example.com/wa",
                    "tag": "9.9.9",
                    "pullPolicy": "Always",
                },
            },
        )
    )
    assert (main["image"], main["imagePullPolicy"]) == ("registry.example.com/wa:9.9.9", "Always")


# --- ServiceMonitor, TLS and basic auth ---------------------------------------------------------


def test_the_service_monitor_gives_the_targets_the_job_the_alerts_select(chart) -> None:
    docs = render(chart, {**MINIMAL, "serviceMonitor": {"enabled": True}})
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert endpoint["scheme"] == "http" and "tlsConfig" not in endpoint
    assert endpoint["relabelings"] == [
        {"action": "replace", "targetLabel": "job", "replacement": "whatsapp-exporter"},
        {
            "action": "replace",
            "sourceLabels": ["__meta_kubernetes_pod_name"],
            "targetLabel": "instance",
        },
    ]
    alerts = yaml.safe_load((ROOT / "prometheus" / "alerts.yml").read_text())
    [down] = [
        r for g in alerts["groups"] for r in g["rules"] if r.get("alert") == "WhatsAppExporterDown"
    ]
    assert 'up{job="whatsapp-exporter"}' in down["expr"]


def test_another_job_name_changes_the_service_monitor_and_the_down_alert_together(chart) -> None:
    values = {
        **MINIMAL,
        "serviceMonitor": {"enabled": True, "jobName": "wa-prod"},
        "prometheusRule": {"enabled": True},
    }
    docs = render(chart, values)
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["relabelings"][0]["replacement"] == "wa-prod"
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    original = shipped_groups()
    changed = [
        (g["name"], r.get("alert") or r.get("record"))
        for g, o in zip(groups, original, strict=True)
        for r, ro in zip(g["rules"], o["rules"], strict=True)
        if r != ro
    ]
    assert changed == [("whatsapp-exporter.alerts", "WhatsAppExporterDown")]
    down = groups[-1]["rules"][-1]
    assert down["expr"].startswith('up{job="wa-prod"} == 0')


def test_tls_and_basic_auth_reach_the_exporter_the_probes_and_the_service_monitor(chart) -> None:
    docs = render(chart, FULL)
    main = container(docs)
    assert "--web.config.file=/etc/whatsapp-exporter/web/web-config.yml" in main["args"]
    web_config = yaml.safe_load(
        base64.b64decode(named(docs, "Secret", f"{FULLNAME}-web-config")["data"]["web-config.yml"])
    )
    assert web_config == {
        "tls_server_config": {
            "cert_file": "/etc/whatsapp-exporter/tls/tls.crt",
            "key_file": "/etc/whatsapp-exporter/tls/tls.key",
        },
        "basic_auth_users": {"prometheus": FULL["web"]["basicAuth"]["passwordHash"]},
    }
    assert main["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": "http",
        "scheme": "HTTPS",
    }
    assert main["readinessProbe"]["exec"]["command"] == [
        "python",
        "/etc/whatsapp-exporter/config/ready-probe.py",
        "https://127.0.0.1:9477/ready",
        "/etc/whatsapp-exporter/scrape-auth",
    ]
    [endpoint] = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": "wa-tls", "key": "ca.crt"}},
        "serverName": f"{FULLNAME}.{NAMESPACE}.svc",
    }
    assert endpoint["basicAuth"] == {
        "username": {"name": "wa-scrape", "key": "username"},
        "password": {"name": "wa-scrape", "key": "password"},
    }
    assert endpoint["metricRelabelings"] == FULL["serviceMonitor"]["metricRelabelings"]


def make_certificate(directory: Path, names: list[str]) -> dict[str, str]:
    """A self-signed certificate for `names` (and 127.0.0.1), as a kubernetes.io/tls Secret."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    san = ",".join([f"DNS:{n}" for n in names] + ["IP:127.0.0.1"])
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={names[0]}",
            "-addext",
            f"subjectAltName={san}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return {"tls.crt": cert.read_text(), "tls.key": key.read_text(), "ca.crt": cert.read_text()}


@needs_openssl
def test_a_tls_and_basic_auth_pod_serves_and_its_probes_pass(chart, tmp_path) -> None:
    """The rendered pod for real: the exporter with the chart's args and mounted files, the
    readiness script with the Secret Prometheus uses, and a scrape as the ServiceMonitor does."""
    port = free_port()
    password = "s3cret-scrape"
    tls = make_certificate(tmp_path, [f"{FULLNAME}.{NAMESPACE}.svc"])
    with Simulator(api_key=TEST_API_KEY) as sim:
        values = {
            "apiKey": {"value": TEST_API_KEY},
            "config": {
                "splashify": {"base_url": sim.url},
                "poll": {"interval": "60s"},
                "targets": [
                    {"waba_id": a.waba_id, "name": a.name}
                    for a in DEMO_ACCOUNTS
                    if a.customer_id is None
                ],
            },
            "web": {
                "port": port,
                "tls": {"enabled": True, "secretName": "wa-tls"},
                "basicAuth": {
                    "enabled": True,
                    "secretName": "wa-scrape",
                    "passwordHash": bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode(),
                },
            },
        }
        docs = render(chart, values)
        secrets = {"wa-tls": tls, "wa-scrape": {"username": "prometheus", "password": password}}
        pod = Pod(docs, 0, tmp_path / "pod", secrets)
        args = [
            a.replace(f"--web.listen-address=:{port}", f"--web.listen-address=127.0.0.1:{port}")
            for a in known_args(pod.args())
        ]
        log = (tmp_path / "exporter.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=exporter_env(),
        )
        try:
            probe = pod.exec_probe(container(docs)["readinessProbe"])
            deadline = time.monotonic() + 60
            while subprocess.run(probe, capture_output=True).returncode != 0:
                assert process.poll() is None, (tmp_path / "exporter.log").read_text()
                assert time.monotonic() < deadline, "the readiness probe never passed"
                time.sleep(0.3)
            ca = tmp_path / "ca.crt"
            ca.write_text(tls["ca.crt"])
            url = f"https://127.0.0.1:{port}"
            # What the ServiceMonitor's scrape does: https, the CA of the TLS Secret, basic auth.
            scrape = requests.get(
                url + "/metrics", verify=str(ca), timeout=10, auth=("prometheus", password)
            )
            assert scrape.status_code == 200 and "whatsapp_conversations" in scrape.text
            assert requests.get(url + "/metrics", verify=str(ca), timeout=10).status_code == 401
            # The liveness probe's path needs no credentials.
            assert requests.get(url + "/healthz", verify=str(ca), timeout=10).status_code == 200
            # The readiness script fails on wrong credentials.
            (tmp_path / "pod/etc/whatsapp-exporter/scrape-auth/password").write_text("wrong")
            failed = subprocess.run(probe, capture_output=True, text=True)
            assert failed.returncode == 1 and "401" in failed.stderr
        finally:
            process.terminate()
            process.wait(10)
            log.close()


# --- Rules and dashboards: one source of truth --------------------------------------------------


def shipped_groups() -> list[dict]:
    return [
        group
        for name in RULE_FILES
        for group in yaml.safe_load((ROOT / "prometheus" / name).read_text())["groups"]
    ]


def test_the_charts_copies_of_rules_and_dashboards_are_the_originals() -> None:
    """Helm cannot read outside the chart, so it carries copies; scripts/sync-chart-files.sh
    refreshes them."""
    hint = "run scripts/sync-chart-files.sh and commit the copies"
    for name in RULE_FILES:
        copy = CHART / "files" / "prometheus" / name
        assert copy.read_bytes() == (ROOT / "prometheus" / name).read_bytes(), f"{copy}: {hint}"
    copies = sorted((CHART / "files" / "dashboards").glob("*.json"))
    assert [c.name for c in copies] == [d.name for d in DASHBOARDS], hint
    for original, copy in zip(DASHBOARDS, copies, strict=True):
        assert copy.read_bytes() == original.read_bytes(), f"{copy}: {hint}"


def test_the_prometheus_rule_holds_exactly_the_shipped_rules(chart) -> None:
    docs = render(
        chart, {**MINIMAL, "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}
    )
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"]["groups"] == shipped_groups()


@needs_promtool
def test_promtool_accepts_the_prometheus_rules_groups(chart, tmp_path) -> None:
    groups = one(render(chart, FULL), "PrometheusRule")["spec"]["groups"]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in shipped_groups())
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_the_dashboards_are_config_maps_for_grafanas_sidecar(chart) -> None:
    docs = render(chart, FULL)
    maps = [d for d in of_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"]]
    assert len(maps) == len(DASHBOARDS)
    for dashboard, config_map in zip(
        DASHBOARDS, sorted(maps, key=lambda m: m["metadata"]["name"]), strict=True
    ):
        assert config_map["metadata"]["name"] == f"{FULLNAME}-dashboard-{dashboard.stem}"
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "WhatsApp"}
        assert config_map["data"] == {dashboard.name: dashboard.read_text()}
    docs = render(
        chart,
        {
            **MINIMAL,
            "dashboards": {
                "enabled": True,
                "label": "example.com/dashboard",
                "labelValue": "yes",
                "namespace": "grafana",
            },
        },
    )
    maps = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].find("-dashboard-") > 0]
    assert {m["metadata"]["namespace"] for m in maps} == {"grafana"}
    assert all(m["metadata"]["labels"]["example.com/dashboard"] == "yes" for m in maps)


def test_monitoring_resources_are_off_by_default(chart) -> None:
    kinds = {doc["kind"] for doc in render(chart, MINIMAL)}
    assert kinds == {"ConfigMap", "Service", "ServiceAccount", "StatefulSet"}


# Documented as one row each, not key by key.
WHOLE = {
    "config",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
}


def value_keys(values: dict, prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = prefix + key
        if isinstance(value, dict) and value and path not in WHOLE:
            yield from value_keys(value, path + ".")
        else:
            yield path


def test_the_charts_readme_documents_every_value(chart) -> None:
    readme = (CHART / "README.md").read_text()
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `"))
    missing = [key for key in value_keys(chart.values) if f"`{key}`" not in table]
    assert missing == []
