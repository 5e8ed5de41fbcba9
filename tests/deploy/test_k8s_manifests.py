"""deploy/k8s/ validates offline against the Kubernetes API schemas (``kubernetes-validate``,
strict: an unknown or misplaced field fails), and its pieces fit together and fit the app: the
probes name the app's real routes, every setting is one the app reads, the Redis configuration
is deploy/redis.conf with its AOF."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from fastapi.routing import APIRoute

from app.routes.health import READY_PING_S, health_router
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
# The oldest release still widely run, and the newest the schemas cover.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
SETTINGS_VARS = {f"RETRIEVAL_{name.upper()}" for name in Settings.model_fields}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [
        doc
        for _, doc in _documents()
        if doc["kind"] == kind and name in (None, doc["metadata"]["name"])
    ]
    return found


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("file", "doc"), _documents(), ids=[f for f, _ in _documents()])
def test_each_manifest_validates(file: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_rejects_what_a_cluster_would() -> None:
    # Without this the test above could pass on anything (e.g. an unknown kind read as valid).
    deployment = _one("Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    _container(broken)["readinessProbe"]["httpGet"]["path"] = ["/readyz"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    misplaced = yaml.safe_load(yaml.safe_dump(deployment))
    misplaced["spec"]["livenessProbe"] = _container(deployment)["livenessProbe"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misplaced, KUBERNETES_VERSIONS[0], strict=True)


def test_the_set_is_complete() -> None:
    kinds = sorted(doc["kind"] for _, doc in _documents())
    assert kinds == sorted([
        "ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
        "PersistentVolumeClaim", "PodDisruptionBudget", "Service", "Service", "StatefulSet",
    ])  # fmt: skip
    assert _one("HorizontalPodAutoscaler")["apiVersion"] == "autoscaling/v2"


def test_probes_point_at_the_apps_routes_on_its_port() -> None:
    routes = {r.path for r in health_router(Settings()).routes if isinstance(r, APIRoute)}
    api = _container(_one("Deployment"))
    (port,) = api["ports"]
    assert port["containerPort"] == 8000  # the image's CMD serves there
    assert '"--port", "8000"' in (ROOT / "Dockerfile").read_text()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = api[probe]["httpGet"]
        assert get["path"] == path and path in routes
        assert get["port"] == port["name"]
    # /readyz bounds its store ping itself: a slow store answers 503 (and says why) before
    # the probe gives up on the pod.
    assert api["readinessProbe"]["timeoutSeconds"] > READY_PING_S


def test_settings_are_the_apps_and_the_keys_come_from_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = _container(_one("Deployment"))
    (source,) = api["envFrom"]
    config = _one("ConfigMap", source["configMapRef"]["name"])["data"]
    env = {entry["name"]: entry for entry in api["env"]}
    assert set(config) <= SETTINGS_VARS, set(config) - SETTINGS_VARS
    assert set(env) <= SETTINGS_VARS, set(env) - SETTINGS_VARS
    assert "RETRIEVAL_API_KEYS" not in config  # never in a ConfigMap
    assert env["RETRIEVAL_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "RETRIEVAL_API_KEYS"
    # The values are ones the app accepts, read the way the pod reads them.
    for var in list(os.environ):
        if var.startswith("RETRIEVAL_"):
            monkeypatch.delenv(var)
    for var, value in config.items():
        monkeypatch.setenv(var, value)
    settings = Settings()
    assert settings.redis_url is not None and not settings.allow_anonymous
    # ONNX Runtime's threads match the CPU the pod may use, not the node's cores.
    assert settings.inference_threads == int(api["resources"]["limits"]["cpu"])


def test_replicas_share_the_blob_volume_and_the_redis_pod() -> None:
    deployment, claim = _one("Deployment"), _one("PersistentVolumeClaim")
    api = _container(deployment)
    config = _one("ConfigMap", api["envFrom"][0]["configMapRef"]["name"])["data"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # pods on several nodes at once
    (volume,) = [
        v
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]
    ]
    (mount,) = [m for m in api["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == config["RETRIEVAL_DATA_DIR"]
    # redis-0.<headless service>: the StatefulSet's one pod under its stable name.
    statefulset = _one("StatefulSet")
    headless = _one("Service", statefulset["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    url = re.fullmatch(r"redis://([^:/]+):(\d+)/\d+", config["RETRIEVAL_REDIS_URL"])
    assert url is not None, config["RETRIEVAL_REDIS_URL"]
    host, port = url.groups()
    assert host == f"{statefulset['metadata']['name']}-0.{headless['metadata']['name']}"
    (redis_port,) = _container(statefulset)["ports"]
    assert int(port) == redis_port["containerPort"] == headless["spec"]["ports"][0]["port"]


def test_services_and_autoscaler_select_the_right_pods() -> None:
    deployment, statefulset = _one("Deployment"), _one("StatefulSet")
    api_labels = deployment["spec"]["template"]["metadata"]["labels"]
    redis_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= api_labels.items()
    assert statefulset["spec"]["selector"]["matchLabels"].items() <= redis_labels.items()
    service = _one("Service", "retrieval-api")
    assert service["spec"]["selector"].items() <= api_labels.items()
    assert not service["spec"]["selector"].items() <= redis_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == _container(deployment)["ports"][0]["name"]
    hpa = _one("HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    # A CPU utilization target is a fraction of the request: without one it never scales.
    assert "cpu" in _container(deployment)["resources"]["requests"]
    # Only the API's pods reach Redis, which has no password.
    policy = _one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= redis_labels.items()
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert peer["podSelector"]["matchLabels"].items() <= api_labels.items()


def test_redis_runs_deploy_redis_conf_with_aof_on_its_persistent_volume() -> None:
    statefulset = _one("StatefulSet")
    redis = _container(statefulset)
    shipped = (ROOT / "deploy" / "redis.conf").read_text()
    (config_volume,) = [
        v for v in statefulset["spec"]["template"]["spec"]["volumes"] if "configMap" in v
    ]
    config_map = _one("ConfigMap", config_volume["configMap"]["name"])["data"]
    assert config_map == {"redis.conf": shipped}
    lines = {line.strip() for line in config_map["redis.conf"].splitlines()}
    assert {"appendonly yes", "appendfsync everysec", "maxmemory-policy noeviction"} <= lines
    mounts = {m["name"]: m["mountPath"] for m in redis["volumeMounts"]}
    assert redis["command"] == ["redis-server", f"{mounts[config_volume['name']]}/redis.conf"]
    # The AOF goes to the working directory (redis.conf sets no `dir`), /data in the image:
    # that is where the claim template's volume is.
    (template,) = statefulset["spec"]["volumeClaimTemplates"]
    assert mounts[template["metadata"]["name"]] == "/data"
    assert not re.search(r"^\s*dir\s", config_map["redis.conf"], re.MULTILINE)


def test_the_s3_variant_note_names_every_s3_setting_and_keeps_the_keys_out() -> None:
    text = (K8S / "api-configmap.yaml").read_text()
    config = _one("ConfigMap", "retrieval-settings")["data"]
    assert config["RETRIEVAL_BLOB_BACKEND"] == "directory"  # the RWX claim by default
    noted = set(re.findall(r"RETRIEVAL_S3_[A-Z_]+", text))
    s3_settings = {v for v in SETTINGS_VARS if v.startswith("RETRIEVAL_S3_")}
    assert noted == s3_settings  # every S3 setting is named, and only real ones
    assert not noted & set(config)  # a note: the default is the directory
    assert "Secret" in text and "EXTRA_REQUIREMENTS=serve-s3" in text
