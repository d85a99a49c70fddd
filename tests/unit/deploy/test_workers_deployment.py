"""The worker role's deployment files: docker-compose.workers.yml (an override of
docker-compose.yml) and deploy/k8s-workers/ (a Kustomize overlay of deploy/k8s/), checked offline
against their schemas and against the worker's app: probe paths, settings names, grace periods."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from backend.services.run_metrics import RunGauges
from backend.worker.app import create_worker_app
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.unit.deploy.deployment_files import (
    COMPOSE_FILE,
    PROJECT_ROOT,
    k8s_resources,
    known_env_names,
    runner_grace_default,
    yaml_documents,
)

WORKERS_COMPOSE_FILE = PROJECT_ROOT / "docker-compose.workers.yml"
OVERLAY_DIR = PROJECT_ROOT / "deploy" / "k8s-workers"
WORKER_COMMAND = ["python", "-m", "backend.worker"]


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    (document,) = yaml_documents(WORKERS_COMPOSE_FILE)
    return document


@pytest.fixture(scope="module")
def worker_deployment() -> dict[str, Any]:
    (document,) = yaml_documents(OVERLAY_DIR / "worker-deployment.yaml")
    return document


def worker_routes(sqlite_template: Path, tmp_path: Path) -> set[str]:
    app = create_worker_app(make_settings(sqlite_copy(sqlite_template, tmp_path), runner_workers=1))
    return {route.path for route in app.routes}  # type: ignore[attr-defined]


def test_compose_override_follows_the_compose_specification(override: dict[str, Any]) -> None:
    schema = json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [error.message for error in validator.iter_errors(override)] == []


def test_compose_worker_executes_runs_and_the_api_none(override: dict[str, Any]) -> None:
    (base,) = yaml_documents(COMPOSE_FILE)
    worker = override["services"]["worker"]
    assert override["services"]["api"]["environment"] == {"RUNNER_WORKERS": "0"}
    assert worker["command"] == WORKER_COMMAND
    assert worker["image"] == base["services"]["api"]["image"]
    assert set(worker["environment"]) <= known_env_names()
    assert worker["environment"]["DB_AUTO_MIGRATE"] == "false"
    assert worker["depends_on"] == base["services"]["api"]["depends_on"]
    assert worker["healthcheck"]["test"] == base["services"]["api"]["healthcheck"]["test"]
    assert worker["security_opt"] == base["services"]["api"]["security_opt"]
    assert "ports" not in worker
    # The API's database settings, spelled out again (YAML anchors do not cross files).
    database = dict(base["x-database"])
    assert {key: worker["environment"][key] for key in database} == database
    grace = re.fullmatch(r"(\d+)s", worker["stop_grace_period"])
    assert grace and int(grace.group(1)) > runner_grace_default()


def test_overlay_builds_on_the_base_and_moves_runs_out_of_the_api_pods() -> None:
    (kustomization,) = yaml_documents(OVERLAY_DIR / "kustomization.yaml")
    assert kustomization["resources"] == ["../k8s", "worker-deployment.yaml"]
    (patch,) = yaml_documents(OVERLAY_DIR / kustomization["patches"][0]["path"])
    base = k8s_resources()[f"Deployment/{patch['metadata']['name']}"]
    (container,) = patch["spec"]["template"]["spec"]["containers"]
    assert container["name"] in {c["name"] for c in base["spec"]["template"]["spec"]["containers"]}
    assert container["env"] == [{"name": "RUNNER_WORKERS", "value": "0"}]


@pytest.mark.parametrize("version", ["1.28", kubernetes_validate.utils.latest_version()])
def test_worker_deployment_matches_the_kubernetes_schemas_offline(worker_deployment: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(worker_deployment, version, strict=True)


def test_worker_pods_are_probed_on_worker_routes_and_read_the_api_settings(
    worker_deployment: dict[str, Any], sqlite_template: Path, tmp_path: Path
) -> None:
    spec = worker_deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == WORKER_COMMAND
    routes = worker_routes(sqlite_template, tmp_path)
    ports = {port["name"] for port in container["ports"]}
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[kind]["httpGet"]["path"] in routes, kind
        assert container[kind]["httpGet"]["port"] in ports, kind
    resources = k8s_resources()
    api = resources["Deployment/mgx-agent-api"]["spec"]["template"]["spec"]
    assert container["envFrom"] == api["containers"][0]["envFrom"]
    assert container["image"] == api["containers"][0]["image"]
    assert spec["securityContext"] == api["securityContext"]
    config = resources["ConfigMap/mgx-agent-api-config"]["data"]
    assert int(config["RUNNER_WORKERS"]) >= 1, "the workers read RUNNER_WORKERS from the ConfigMap"
    grace = max(float(config.get("RUNNER_SHUTDOWN_GRACE_SECONDS", 0)), runner_grace_default())
    assert spec["terminationGracePeriodSeconds"] > grace
    # The worker is not behind the Service: it takes no requests.
    selector = resources["Service/mgx-agent-api"]["spec"]["selector"]
    assert not selector.items() <= worker_deployment["spec"]["template"]["metadata"]["labels"].items()


def test_keda_example_scales_the_worker_deployment_on_the_exported_queue_metric(
    worker_deployment: dict[str, Any],
) -> None:
    (scaled,) = yaml_documents(OVERLAY_DIR / "keda-scaledobject.example.yaml")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker_deployment["metadata"]["name"]
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    exported = {family.name for family in RunGauges(True, {}, None).families()}
    assert set(re.findall(r"mgx_\w+", query)) <= exported, query
