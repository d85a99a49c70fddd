"""``/openapi.json`` is the truth: every operation declares its schemas and its error responses."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app.main import create_app
from tests.conftest import make_settings
from tests.databases import sqlite_copy

BODY_METHODS = {"post", "put", "patch"}


@pytest.fixture
def openapi(sqlite_template: Path, tmp_path: Path) -> dict:
    with TestClient(create_app(make_settings(sqlite_copy(sqlite_template, tmp_path)))) as client:
        return client.get("/openapi.json").json()


def operations(openapi: dict):  # type: ignore[no-untyped-def]
    for path, methods in openapi["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_every_success_response_has_a_schema(openapi: dict) -> None:
    for path, method, operation in operations(openapi):
        success = {code: spec for code, spec in operation["responses"].items() if code.startswith("2")}
        assert success, f"{method} {path} declares no success response"
        for code, spec in success.items():
            if code == "204":
                continue
            content = spec.get("content", {})
            assert content, f"{method} {path} {code} documents no content"
            if "application/json" in content:
                assert content["application/json"]["schema"], f"{method} {path} {code}"


def test_error_responses_are_problem_json(openapi: dict) -> None:
    assert "Problem" in openapi["components"]["schemas"]
    for path, method, operation in operations(openapi):
        for code, spec in operation["responses"].items():
            if code.startswith(("4", "5")):
                assert "application/problem+json" in spec["content"], f"{method} {path} {code}"
        if "{" in path:
            assert "404" in operation["responses"], f"{method} {path} does not declare 404"
        if "requestBody" in operation:
            assert operation["requestBody"]["content"]["application/json"]["schema"], f"{method} {path}"
            assert {"415", "422"} <= set(operation["responses"]), f"{method} {path}"
        elif method in BODY_METHODS and not path.endswith("/cancel"):
            raise AssertionError(f"{method} {path} has no request schema")


def test_default_validation_schema_is_not_used(openapi: dict) -> None:
    for path, method, operation in operations(openapi):
        for spec in operation["responses"].values():
            for media in spec.get("content", {}).values():
                assert "HTTPValidationError" not in str(media.get("schema")), f"{method} {path}"


def test_routes_added_to_the_app_must_be_plain_path_operations() -> None:
    """``add_routes`` registers a router's routes on the app directly; a router that includes
    another (whose include-time options would be lost) is refused."""
    from fastapi import APIRouter, FastAPI

    from backend.app.main import add_routes

    inner, outer = APIRouter(), APIRouter(prefix="/outer")

    @inner.get("/inner")
    async def inner_route() -> dict:
        return {}

    outer.include_router(inner, prefix="/nested")
    app = FastAPI()
    with pytest.raises(TypeError, match="only plain path operations"):
        add_routes(app, outer)
    add_routes(app, inner)
    with TestClient(app) as client:
        assert client.get("/inner").json() == {}
