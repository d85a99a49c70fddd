"""deploy/k8s/, checked offline against the Kubernetes JSON schemas shipped in the
kubernetes-validate wheel, and against the app: probe paths, settings names, grace periods."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from backend.app.main import create_app
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.unit.deploy.deployment_files import (
    K8S_DIR,
    dockerfile_instructions,
    final_stage,
    k8s_resources,
    known_env_names,
    runner_grace_default,
    yaml_documents,
)

# The oldest Kubernetes release still in common support, and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.28", kubernetes_validate.utils.latest_version()]
DEPLOYMENT = "Deployment/mgx-agent-api"
MIGRATION_JOB = "Job/mgx-agent-api-migrate"
CONFIG_MAP = "ConfigMap/mgx-agent-api-config"
SECRET = "Secret/mgx-agent-api-secrets"
SERVICE = "Service/mgx-agent-api"


@pytest.fixture(scope="module")
def resources() -> dict[str, dict[str, Any]]:
    return k8s_resources()


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["spec"]["template"]["spec"]


def test_expected_objects_are_defined(resources: dict[str, dict[str, Any]]) -> None:
    assert set(resources) == {DEPLOYMENT, MIGRATION_JOB, CONFIG_MAP, SECRET, SERVICE}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_match_the_kubernetes_schemas_offline(
    resources: dict[str, dict[str, Any]], version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    for name, resource in resources.items():
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(map(str, error.path))
            pytest.fail(f"{name} is invalid for Kubernetes {version} at {path}: {error.message}")


def test_strict_validation_rejects_a_misspelt_field(resources: dict[str, dict[str, Any]]) -> None:
    deployment = resources[DEPLOYMENT]
    container = {**pod_spec(deployment)["containers"][0], "livenesProbes": {}}
    broken = {**deployment, "spec": {**deployment["spec"], "template": {"spec": {"containers": [container]}}}}
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    assert "livenesProbes" in caught.value.message


def test_probe_paths_are_routes_of_the_app(
    resources: dict[str, dict[str, Any]], sqlite_template: Path, tmp_path: Path
) -> None:
    paths = set(create_app(make_settings(sqlite_copy(sqlite_template, tmp_path))).openapi()["paths"])
    container = pod_spec(resources[DEPLOYMENT])["containers"][0]
    port_names = {port["name"] for port in container["ports"]}
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/health/live"
    assert probes["readinessProbe"]["path"] == "/health/ready"
    for kind, probe in probes.items():
        assert probe["path"] in paths, kind
        assert probe["port"] in port_names, kind


def prestop_sleep_seconds(container: dict[str, Any]) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return int(command[1])


def test_termination_grace_covers_prestop_and_runner_grace(resources: dict[str, dict[str, Any]]) -> None:
    spec = pod_spec(resources[DEPLOYMENT])
    configured = float(resources[CONFIG_MAP]["data"].get("RUNNER_SHUTDOWN_GRACE_SECONDS", runner_grace_default()))
    runner_grace = max(configured, runner_grace_default())
    sleep = prestop_sleep_seconds(spec["containers"][0])
    assert sleep > 0
    assert spec["terminationGracePeriodSeconds"] > sleep + runner_grace


@pytest.mark.parametrize("name", [DEPLOYMENT, MIGRATION_JOB])
def test_pods_run_as_the_image_user_without_privileges(resources: dict[str, dict[str, Any]], name: str) -> None:
    image_uid = int(next(i for i in final_stage(dockerfile_instructions()) if i.keyword == "USER").arguments.split(":")[0])
    spec = pod_spec(resources[name])
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == image_uid
    for container in spec["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("name", [DEPLOYMENT, MIGRATION_JOB])
def test_containers_declare_resources(resources: dict[str, dict[str, Any]], name: str) -> None:
    for container in pod_spec(resources[name])["containers"]:
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]


def test_environment_names_are_service_settings(resources: dict[str, dict[str, Any]]) -> None:
    names = set(resources[CONFIG_MAP]["data"]) | set(resources[SECRET]["stringData"])
    for name in (DEPLOYMENT, MIGRATION_JOB):
        for container in pod_spec(resources[name])["containers"]:
            names |= {variable["name"] for variable in container.get("env", [])}
    assert names - known_env_names() == set()


@pytest.mark.parametrize("name", [DEPLOYMENT, MIGRATION_JOB])
def test_pods_read_the_config_map_and_secret(resources: dict[str, dict[str, Any]], name: str) -> None:
    for container in pod_spec(resources[name])["containers"]:
        sources = {
            (kind, reference["name"]) for source in container["envFrom"] for kind, reference in source.items()
        }
        assert sources == {
            ("configMapRef", resources[CONFIG_MAP]["metadata"]["name"]),
            ("secretRef", resources[SECRET]["metadata"]["name"]),
        }


def test_migrations_run_in_the_job_not_in_the_serving_pods(resources: dict[str, dict[str, Any]]) -> None:
    assert resources[CONFIG_MAP]["data"]["DB_AUTO_MIGRATE"] == "false"
    job = pod_spec(resources[MIGRATION_JOB])
    assert job["containers"][0]["command"] == ["alembic", "upgrade", "head"]
    assert job["restartPolicy"] == "Never"
    api = pod_spec(resources[DEPLOYMENT])["containers"][0]
    assert api["command"] == ["python", "-m", "backend.app.main"]
    assert api["image"] == job["containers"][0]["image"]


def test_service_routes_to_the_api_pods(resources: dict[str, dict[str, Any]]) -> None:
    service = resources[SERVICE]["spec"]
    deployment = resources[DEPLOYMENT]["spec"]
    assert service["selector"].items() <= deployment["template"]["metadata"]["labels"].items()
    assert deployment["selector"]["matchLabels"].items() <= deployment["template"]["metadata"]["labels"].items()
    port_names = {port["name"] for port in pod_spec(resources[DEPLOYMENT])["containers"][0]["ports"]}
    assert {port["targetPort"] for port in service["ports"]} <= port_names


def test_kustomization_lists_the_serving_resources_only() -> None:
    (kustomization,) = yaml_documents(K8S_DIR / "kustomization.yaml")
    listed = kustomization["resources"]
    assert all((K8S_DIR / name).exists() for name in listed)
    assert "secret.example.yaml" not in listed and "migration-job.yaml" not in listed


def test_example_settings_need_no_redis(resources: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Nobody provides a Redis in deploy/k8s/: with the example's values, readiness checks none
    and the cache is per pod (README, Kubernetes, says how to add one)."""
    from backend.config import load_settings

    for name, value in {**resources[CONFIG_MAP]["data"], **resources[SECRET]["stringData"]}.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.redis_url is None
    assert settings.mgx_cache_backend != "redis"
