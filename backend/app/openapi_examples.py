"""The request-body examples of ``/openapi.json``, which Swagger UI and ReDoc pre-fill.

Without them Swagger UI makes one up from the schema (``"string"``, ``additionalProp1``), which
the API refuses. Each example here is accepted as sent (``tests/e2e/test_openapi_examples.py``
sends every one to a live server and expects 2xx); ids in paths and bodies stand in for
ids of your own. An operation with a request body and no example here fails that test.
"""

from __future__ import annotations

from typing import Any

EXAMPLE_TASK_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"

REQUEST_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/tasks/"): {
        "title": "ISO-8601 durations",
        "description": "Write parse_duration(text) -> timedelta for strings like PT1H30M",
        "config": {"max_revision_rounds": 1, "models": {"alex": "gpt-4o-mini"}},
    },
    ("patch", "/tasks/{task_id}"): {
        "description": "Write parse_duration(text) -> timedelta; also accept weeks (P2W)",
        "config": {"max_revision_rounds": 2},
    },
    ("post", "/runs/"): {"task_id": EXAMPLE_TASK_ID, "label": "first try", "overrides": {"budget_usd": 0.5}},
    ("patch", "/runs/{run_id}"): {"label": "first try", "notes": "plan looked right"},
    ("post", "/runs/{run_id}/approve"): {"comment": "go ahead"},
    ("post", "/runs/{run_id}/reject"): {"feedback": "also accept weeks (P2W)", "replan": True},
}


def add_request_examples(schema: dict[str, Any]) -> None:
    """Set each known operation's JSON request body ``example`` in the OpenAPI ``schema``."""
    for (method, path), example in REQUEST_EXAMPLES.items():
        operation = schema.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        media = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if media is not None:
            media["example"] = example
