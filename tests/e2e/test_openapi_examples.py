"""Every request-body example in ``/openapi.json`` (what Swagger UI and ReDoc pre-fill) is
accepted by a live server as sent: only the ids, placeholders by nature, are swapped for real ones."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ApiServer

APPROVAL_TIMEOUT_SECONDS = 20


@pytest.fixture
def api(demo_api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo_api_server.base_url, timeout=10) as client:
        yield client


def body_operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if isinstance(operation, dict) and operation.get("requestBody")
    ]


def fresh_task(api: httpx.Client) -> str:
    return api.post("/tasks/", json={"title": "fizzbuzz up to n"}).json()["id"]


def run_awaiting_approval(api: httpx.Client) -> str:
    run_id = api.post("/runs/", json={"task_id": fresh_task(api)}).json()["id"]
    deadline = time.monotonic() + APPROVAL_TIMEOUT_SECONDS
    while (status := api.get(f"/runs/{run_id}").json()["status"]) != "awaiting_approval":
        assert time.monotonic() < deadline, f"run {run_id} stayed {status}"
        time.sleep(0.05)
    return run_id


def test_every_request_body_example_is_accepted_as_sent(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    operations = body_operations(spec)
    assert len(operations) >= 6
    ids = {"task_id": fresh_task, "run_id": run_awaiting_approval}

    for method, path, operation in operations:
        media = operation["requestBody"]["content"].get("application/json")
        assert media is not None and "example" in media, f"{method.upper()} {path} has no request example"
        body = dict(media["example"])
        url = re.sub(r"\{(\w+)\}", lambda match: ids[match[1]](api), path)
        if "task_id" in body:
            body["task_id"] = fresh_task(api)

        response = api.request(method, url, json=body)

        assert response.is_success, f"{method.upper()} {path} with its example {body}: {response.status_code} {response.text}"
