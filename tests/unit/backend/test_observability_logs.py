"""Log lines: text and JSON formats with request and run context, and where the context reaches."""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import pytest

from backend.observability.logs import (
    REQUEST_ID,
    RUN_ID,
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    bind_run_id,
    run_log_context,
)


def make_record(
    message: str = "run %s started", *args: object, exc: bool = False, **extra: object
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad value")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("backend.runner", logging.INFO, __file__, 1, message, args or ("r-1",), exc_info)
    for name, value in extra.items():
        setattr(record, name, value)
    ContextFilter().filter(record)
    return record


@pytest.fixture
def context() -> None:
    request_token, run_token = REQUEST_ID.set("req-1"), RUN_ID.set("run-1")
    yield
    REQUEST_ID.reset(request_token)
    RUN_ID.reset(run_token)


def test_json_line_has_the_fields_and_the_context(context: None) -> None:
    line = JsonFormatter().format(make_record(status=200, method="GET", color_message="not ours"))
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "backend.runner"
    assert entry["message"] == "run r-1 started"
    assert (entry["request_id"], entry["run_id"]) == ("req-1", "run-1")
    assert (entry["status"], entry["method"]) == (200, "GET")
    assert entry["timestamp"].endswith("+00:00") and "T" in entry["timestamp"]
    assert "color_message" not in entry, "only known fields are written"


def test_json_line_is_one_line_even_with_a_traceback_or_newlines() -> None:
    line = JsonFormatter().format(make_record("first\nsecond %s", "x", exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "first\nsecond x"
    assert "ValueError: bad value" in entry["exception"]
    assert "request_id" not in entry and "run_id" not in entry, "absent context is left out"


def test_text_line_ends_with_the_context_before_any_traceback(context: None) -> None:
    text = TextFormatter().format(make_record(exc=True))
    first, *rest = text.splitlines()
    assert first.endswith("INFO backend.runner run r-1 started request_id=req-1 run_id=run-1")
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: bad value"


def test_text_line_without_context_is_the_plain_line() -> None:
    assert TextFormatter().format(make_record()).endswith("INFO backend.runner run r-1 started")


async def test_a_bound_run_id_stays_with_its_task_and_the_tasks_it_starts() -> None:
    seen: dict[str, str | None] = {}

    async def child() -> None:
        seen["child"] = RUN_ID.get()

    async def run() -> None:
        bind_run_id("run-7")
        await asyncio.create_task(child())
        seen["run"] = RUN_ID.get()

    await asyncio.create_task(run())
    assert seen == {"child": "run-7", "run": "run-7"}
    assert RUN_ID.get() is None, "the worker's binding does not leak to its caller"


def test_a_run_log_context_ends_with_its_block() -> None:
    with run_log_context("run-8"):
        assert make_record().run_id == "run-8"
    assert make_record().run_id is None


def test_explicit_context_on_a_record_wins(context: None) -> None:
    record = make_record(request_id="explicit")
    assert (record.request_id, record.run_id) == ("explicit", "run-1")
