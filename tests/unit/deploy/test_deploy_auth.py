"""The deployment files and authentication: each way of running the image listens on 0.0.0.0, so
each must either configure API_KEYS or keep an open API off the network."""

from __future__ import annotations

from typing import Any

from backend.app.auth import ensure_not_open_on_network
from backend.config import load_settings
from tests.unit.deploy.deployment_files import COMPOSE_FILE, k8s_resources, yaml_documents


def test_compose_takes_api_keys_from_dotenv_and_runs_open_only_on_loopback() -> None:
    (compose,) = yaml_documents(COMPOSE_FILE)
    api: dict[str, Any] = compose["services"]["api"]
    # Not overridden under `environment`, so API_KEYS from .env (env_file) reaches the service.
    assert "API_KEYS" not in api["environment"]
    assert {"path": ".env", "required": False} in api["env_file"]
    environment = {key.lower(): str(value) for key, value in api["environment"].items() if "$" not in str(value)}
    settings = load_settings(_env_file=None, **environment)
    ensure_not_open_on_network(settings)  # starts without a .env
    if settings.allow_open_access:
        for port in api["ports"]:
            assert port.startswith("127.0.0.1:"), f"an open API published beyond the host: {port}"


def test_kubernetes_secret_example_carries_valid_api_keys() -> None:
    resources = k8s_resources()
    config = resources["ConfigMap/mgx-agent-api-config"]["data"]
    secret = resources["Secret/mgx-agent-api-secrets"]["stringData"]
    assert "API_KEYS" not in config and "ALLOW_OPEN_ACCESS" not in config
    settings = load_settings(
        _env_file=None,
        api_host=config["API_HOST"],
        api_keys=secret["API_KEYS"],
    )
    assert settings.api_key_entries(), "the example Secret configures no key"
    ensure_not_open_on_network(settings)  # the pods start with the example's shape
