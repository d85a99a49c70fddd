"""Metrics and logs of real server processes: counters add up across uvicorn workers
(``API_WORKERS`` = 2, multiprocess mode), log lines are JSON with request and run ids, and no
secret reaches the logs (at DEBUG), ``/health/status`` or any response body."""

from __future__ import annotations

import json
import re
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis

from tests.e2e.conftest import ServerFactory, service_env, wait_until
from tests.observability_support import parse_metrics, total
from tests.services import redis_url_for_tests, tcp_reachable, unavailable

pytestmark = pytest.mark.slow

ENTRY_POINT = [sys.executable, "-m", "backend.app.main"]


# Under ``uvicorn backend.app.main:app`` uvicorn logs its first lines in its own format, before
# the app is imported and takes its loggers over ("INFO:     Started server process [..]").
UVICORN_STARTUP_LINE = re.compile(r"(DEBUG|INFO|WARNING):\s{2,}")


def json_log(path: Path, *, uvicorn_cli: bool = False) -> list[dict[str, Any]]:
    """The server's log lines: every one must be JSON (the test harness's markers aside)."""
    entries = []
    for line in path.read_text().splitlines():
        if line.startswith("--- starting") or (uvicorn_cli and UVICORN_STARTUP_LINE.match(line)):
            continue
        entries.append(json.loads(line))
    return entries


def test_counters_add_up_across_workers(postgres_url: str, api_servers: ServerFactory) -> None:
    env = service_env(postgres_url, None, api_workers=2, log_format="json", runner_workers=0)
    server = api_servers(env, name="workers", command=ENTRY_POINT)
    sent = 0
    served_by: set[int] = set()

    def get(number: int) -> None:
        # A fresh connection per request, so either worker may accept it.
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            response = client.get("/tasks/", headers={"X-Request-ID": f"spread-{number}"})
            assert response.status_code == 200

    with ThreadPoolExecutor(8) as pool:
        while len(served_by) < 2 and sent < 800:
            list(pool.map(get, range(sent, sent + 40)))
            sent += 40
            served_by = {
                entry["pid"]
                for entry in json_log(server.log_path)
                if entry["logger"] == "backend.access" and entry.get("request_id", "").startswith("spread-")
            }
    assert len(served_by) == 2, f"one worker served all {sent} requests"

    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for _ in range(4):  # whichever worker answers the scrape, it reports both workers' requests
            samples = parse_metrics(client.get("/metrics").text)
            assert total(samples, "mgx_http_requests_total", route="/tasks/", status="200") == sent
            assert total(samples, "mgx_http_request_duration_seconds_count", route="/tasks/") == sent
            assert total(samples, "mgx_runs", status="queued") == 0  # emitted once, not per worker

    access = [entry for entry in json_log(server.log_path) if entry["logger"] == "backend.access"]
    assert len([entry for entry in access if entry["path"] == "/tasks/"]) == sent, "one access line per request"
    assert not any(entry["logger"] == "uvicorn.access" for entry in json_log(server.log_path))


@pytest.fixture
def redis_url_with_password() -> Any:
    """A Redis URL whose password is real: a throw-away ACL user on the test server."""
    base = redis_url_for_tests()
    if not tcp_reachable(base, 6379):
        unavailable("Redis", base)
    user, password = f"mgx-test-{secrets.token_hex(4)}", f"redis-pw-{secrets.token_hex(8)}"
    admin = redis.Redis.from_url(base)
    admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], channels=["*"], categories=["+@all"])
    parts = urlsplit(base)
    netloc = f"{user}:{password}@{parts.hostname}:{parts.port or 6379}"
    try:
        yield urlunsplit((parts.scheme, netloc, parts.path, "", "")), password
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_no_secret_reaches_logs_status_or_error_bodies(
    postgres_url: str, fake_llm: Any, api_servers: ServerFactory, redis_url_with_password: tuple[str, str]
) -> None:
    fake, _ = fake_llm
    redis_url, redis_password = redis_url_with_password
    database_password = f"db-pw-{secrets.token_hex(8)}"
    database_url = postgres_url.replace("postgres@", f"postgres:{database_password}@", 1)
    known = {
        "database password": database_password,
        "unused DB_PASSWORD": f"db-password-{secrets.token_hex(8)}",
        "LLM API key": f"sk-llm-{secrets.token_hex(12)}",
        "Redis password": redis_password,
        "API key": f"key-{secrets.token_hex(12)}",
        "a wrong API key someone tried": f"wrong-{secrets.token_hex(12)}",
    }
    assert database_password in database_url
    env = service_env(
        database_url,
        fake.base_url,
        redis_url=redis_url,
        db_password=known["unused DB_PASSWORD"],
        mgx_llm_api_key=known["LLM API key"],
        api_keys=f"ops:{known['API key']}:admin",
        log_level="DEBUG",
        log_format="json",
        runner_workers=1,
    )
    server = api_servers(env, name="secrets")
    seen: list[str] = []
    auth = {"Authorization": f"Bearer {known['API key']}"}

    with httpx.Client(base_url=server.base_url, timeout=15) as client:

        def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
            response = client.request(method, path, **kwargs)
            seen.append(f"{method} {path} {response.status_code}\n{response.headers}\n{response.text}")
            return response

        status = call("GET", "/health/status")
        assert status.status_code == 200 and status.json()["redis"]["configured"] is True
        call("GET", "/health/ready")
        call("GET", "/")
        wrong = known["a wrong API key someone tried"]
        assert call("GET", "/tasks/").status_code == 401
        assert call("GET", "/tasks/", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
        assert call("GET", "/tasks/", headers={"X-API-Key": wrong}).status_code == 401
        malformed = {**auth, "Content-Type": "application/json"}
        assert call("POST", "/tasks/", headers=malformed, content=b"{oops").status_code == 422
        assert call("POST", "/tasks/", headers=auth, content=b"x", params={"k": "v"}).status_code == 415
        assert call("GET", "/runs/00000000-0000-0000-0000-000000000000", headers=auth).status_code == 404

        config = {"auto_approve_plan": True, "max_revision_rounds": 0}
        body = {"title": "secrets", "description": "write add(a, b)", "config": config}
        task = call("POST", "/tasks/", headers=auth, json=body).json()
        run = call("POST", "/runs/", headers=auth, json={"task_id": task["id"]}).json()

        def finished() -> dict[str, Any] | None:
            current = client.get(f"/runs/{run['id']}", headers=auth).json()
            return current if current["status"] in {"completed", "failed"} else None

        seen.append(json.dumps(wait_until(finished, 30, "the run to finish")))
        call("GET", f"/runs/{run['id']}/logs", headers=auth)
        # Browsers' EventSource sends the key as a query parameter: it must not be logged either.
        call("GET", f"/runs/{run['id']}/events", params={"access_token": known["API key"]})
        call("GET", "/metrics", headers=auth)
        call("GET", "/health/status")
    server.stop()
    time.sleep(0.1)

    log_text = server.log_path.read_text()
    everything = log_text + "\n".join(seen)
    for what, value in known.items():
        assert value not in everything, f"the {what} appears in the logs or a response"

    entries = json_log(server.log_path, uvicorn_cli=True)
    assert any(entry["level"] == "DEBUG" for entry in entries), "the service logged at DEBUG"
    assert any(entry["logger"] == "uvicorn.error" for entry in entries), "uvicorn's own lines are JSON too"
    access = [entry for entry in entries if entry["logger"] == "backend.access"]
    assert access and all(entry.get("request_id") for entry in access)
    llm_requests = [e for e in entries if e["logger"] == "mgx_agent.llm.http" and "/chat/completions" in e["message"]]
    assert llm_requests, "the LLM calls were logged"
    assert {entry.get("run_id") for entry in llm_requests} == {run["id"]}, "every line of the run carries its run_id"
