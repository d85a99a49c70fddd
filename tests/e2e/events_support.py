"""Small fixtures of the live-event end-to-end tests: API processes configured by their settings
alone, and a synchronous SSE reader."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import REPO_ROOT, SERVICE_ENV_PREFIXES, ApiServer



def api_process(name: str, workdir: Path, *, port: int = 0, **settings: object) -> ApiServer:
    """An API process (not started) whose service settings are exactly ``settings``, with the
    sandbox and the LLM cache off; the caller's own service settings are not inherited."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(SERVICE_ENV_PREFIXES)}
    env.update(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1", MGX_SANDBOX="off", MGX_ENABLE_CACHING="false")
    env.update({key.upper(): str(value) for key, value in settings.items()})
    # Live, not ready: some of these processes run with a dependency down on purpose.
    return ApiServer(env, workdir, name=name, ready_path="/health/live", port=port)


def iter_sse(response: httpx.Response) -> Iterator[tuple[str | None, str, dict[str, Any]]]:
    """``(id, event, data)`` per SSE message of a streamed response; comments skipped."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if "data" in fields:
                yield fields.get("id"), fields.get("event", "message"), json.loads(fields["data"])
            fields = {}
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")
