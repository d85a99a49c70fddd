"""docker-compose.yml, checked without a Docker engine: against the Compose specification's JSON
schema (as vendored by check-jsonschema) and for what the service needs from it."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from typing import Any

import jsonschema
import pytest

from tests.unit.deploy.deployment_files import (
    COMPOSE_FILE,
    PROJECT_ROOT,
    dockerfile_instructions,
    final_stage,
    known_env_names,
    runner_grace_default,
    yaml_documents,
)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    (document,) = yaml_documents(COMPOSE_FILE)
    return document


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    return json.loads((files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json").read_text())


def schema_errors(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    validator_class = jsonschema.validators.validator_for(schema)
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_compose_file_follows_the_compose_specification(
    compose: dict[str, Any], compose_schema: dict[str, Any]
) -> None:
    assert schema_errors(compose_schema, compose) == []


def test_schema_check_rejects_a_misspelt_condition(compose: dict[str, Any], compose_schema: dict[str, Any]) -> None:
    api = {**compose["services"]["api"], "depends_on": {"postgres": {"condition": "healthy"}}}
    broken = {**compose, "services": {**compose["services"], "api": api}}
    assert schema_errors(compose_schema, broken)


def test_images_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"migrate", "api", "postgres", "redis"}
    assert services["postgres"]["image"] == "postgres:15-alpine"
    assert services["redis"]["image"] == "redis:7-alpine"
    for name, service in services.items():
        if name != "migrate":  # a one-shot job: its exit status is its health
            assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_api_starts_after_healthy_dependencies(compose: dict[str, Any]) -> None:
    depends_on = compose["services"]["api"]["depends_on"]
    assert depends_on == {
        "migrate": {"condition": "service_completed_successfully"},
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }


def test_migrations_run_once_before_any_api_replica(compose: dict[str, Any]) -> None:
    migrate, api = compose["services"]["migrate"], compose["services"]["api"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]
    assert migrate["restart"] == "no"
    assert migrate["image"] == api["image"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    # The API serves only, so scaled replicas never migrate concurrently.
    assert api["command"] == ["python", "-m", "backend.app.main"]
    assert api["environment"]["DB_AUTO_MIGRATE"] == "false"
    database = {key: value for key, value in api["environment"].items() if key.startswith(("DB_", "DATABASE_"))}
    assert {key: migrate["environment"][key] for key in database if key != "DB_AUTO_MIGRATE"} == {
        key: value for key, value in database.items() if key != "DB_AUTO_MIGRATE"
    }


def test_api_is_built_here_and_checked_like_the_image(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert api["build"] == "."
    assert (PROJECT_ROOT / "Dockerfile").exists()
    image_healthcheck = next(i for i in final_stage(dockerfile_instructions()) if i.keyword == "HEALTHCHECK")
    assert api["healthcheck"]["test"] == ["CMD", *image_healthcheck.exec_form()]


def test_postgres_data_lives_in_a_named_volume(compose: dict[str, Any]) -> None:
    volume, _, target = compose["services"]["postgres"]["volumes"][0].partition(":")
    assert volume in compose["volumes"]
    assert target == "/var/lib/postgresql/data"


def test_api_reads_dotenv_and_known_settings_only(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert {"path": ".env", "required": False} in api["env_file"]
    assert set(api["environment"]) <= known_env_names()
    assert api["environment"]["DB_HOST"] == "postgres"
    assert api["environment"]["REDIS_URL"].startswith("redis://redis:")


def test_api_stop_grace_covers_the_runner_grace(compose: dict[str, Any]) -> None:
    grace = compose["services"]["api"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", grace)
    assert match, grace
    assert int(match.group(1)) > runner_grace_default()
