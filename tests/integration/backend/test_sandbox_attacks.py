"""Attacks carried by the generated code and tests, through the real service and team.

The protocol-level fake model plays Bob (and, where it matters, Alex) writing the attack; the
rest of the team is the offline demo behind the same fake. Each attack test inside the sandbox
*passes when the attack is blocked*, and the host checks its own evidence too: listeners that
saw no connection, canary files unchanged, no process left, no staging directory left, an event
loop that kept answering.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sysconfig
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import backend
import httpx
import pytest
from mgx_agent.testing.fake_llm import FakeLLMServer

from backend.app.main import create_app
from tests.conftest import make_settings
from tests.databases import sqlite_copy
from tests.integration.backend.conftest import FAST_RUNNER_SETTINGS, fake_llm_config
from tests.processes import processes_with

pytestmark = pytest.mark.slow

SECRET = f"canary-secret-{uuid.uuid4().hex}"
TERMINAL = {"completed", "failed", "cancelled", "rejected", "expired"}


def bob_reply(source: str, name: str = "test_attack.py") -> str:
    return f"Here are the tests.\n\n```python\n# file: {name}\n{source.strip()}\n```\n"


def code_reply(files: dict[str, str]) -> str:
    blocks = [f"```python\n# file: {name}\n{body.strip()}\n```" for name, body in files.items()]
    return "Here is the code.\n\n" + "\n\n".join(blocks) + "\n"


@pytest.fixture
async def service(
    sqlite_template: Path, tmp_path: Path, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """The service on SQLite with the bubblewrap sandbox on, secrets in its environment, a canary
    ``.env`` next to its database, and its sandbox staging under this test's directory."""
    staging_root = tmp_path / "staging"
    staging_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(staging_root))
    for variable in ("MGX_LLM_API_KEY", "DB_PASSWORD", "API_KEYS_CANARY"):
        monkeypatch.setenv(variable, SECRET)
    (tmp_path / ".env").write_text(f"MGX_LLM_API_KEY={SECRET}\n")
    settings = make_settings(
        sqlite_copy(sqlite_template, tmp_path),
        **{
            **FAST_RUNNER_SETTINGS,
            "mgx_sandbox": "auto",
            "mgx_sandbox_memory_mb": 256,
            "mgx_sandbox_disk_mb": 96,
            "mgx_sandbox_timeout_seconds": 30,
            "mgx_max_revision_rounds": 0,
        },
    )
    app = create_app(settings, fake_llm_config(fake_llm))
    # Entered and left by hand, like run_app: the lifespan's task group must not span the
    # fixture's own tasks.
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
    client.staging_root = staging_root  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


async def run_to_the_end(client: httpx.AsyncClient, timeout: float = 60) -> tuple[dict, dict]:
    task = await client.post(
        "/tasks/",
        json={"title": "fizzbuzz", "description": "write fizzbuzz(n)", "config": {"auto_approve_plan": True}},
    )
    run = (await client.post("/runs/", json={"task_id": task.json()["id"]})).json()
    deadline = time.monotonic() + timeout
    while run["status"] not in TERMINAL:
        assert time.monotonic() < deadline, f"run stayed {run['status']}"
        await asyncio.sleep(0.05)
        run = (await client.get(f"/runs/{run['id']}")).json()
    report = await client.get(f"/runs/{run['id']}/artifacts/sandbox-report.json")
    assert report.status_code == 200, (run["status"], run.get("error"))
    return run, report.json()


async def test_generated_tests_cannot_reach_host_sockets_files_or_secrets(
    service: httpx.AsyncClient, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    unix_path = tmp_path / "host.sock"
    unix_listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix_listener.bind(str(unix_path))
    unix_listener.listen()
    unix_listener.setblocking(False)
    tcp_listener = socket.create_server(("127.0.0.1", 0))
    tcp_listener.setblocking(False)
    tcp_port = tcp_listener.getsockname()[1]
    canary_dir = tmp_path / "outside"
    canary_dir.mkdir()
    canary_file = canary_dir / "keep.txt"
    canary_file.write_text("original")
    site_packages = sysconfig.get_paths()["purelib"]
    service_code = os.path.dirname(backend.__file__)
    database = next(tmp_path.glob("*.db"))
    host_pid = os.getpid()
    writable_targets = [str(canary_dir), site_packages, service_code, str(Path.home()), "/etc"]
    attack = f"""
import os, socket, pytest

SECRET = {SECRET[:20]!r} + {SECRET[20:]!r}  # split: the test's own source is logged

def test_host_unix_socket_is_unreachable():
    with pytest.raises(OSError):
        socket.socket(socket.AF_UNIX).connect({str(unix_path)!r})

@pytest.mark.parametrize("path", ["/var/run/postgresql/.s.PGSQL.5432", "/run/postgresql/.s.PGSQL.5432",
                                  "/run/mysqld/mysqld.sock", "/var/run/mysqld/mysqld.sock"])
def test_database_unix_sockets_are_unreachable(path):
    with pytest.raises(OSError):
        socket.socket(socket.AF_UNIX).connect(path)

@pytest.mark.parametrize("port", [{tcp_port}, 5432, 6379, 3306])
def test_loopback_tcp_of_the_host_is_unreachable(port):
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)

@pytest.mark.parametrize("path", [{str(tmp_path / '.env')!r}, {str(database)!r}, "/etc/shadow",
                                  {str(canary_file)!r}, "/proc/{host_pid}/environ"])
def test_host_files_are_invisible(path):
    with pytest.raises(OSError):
        open(path, "rb").read()

def test_no_secret_in_any_visible_environment():
    assert SECRET not in repr(dict(os.environ))
    for pid in [p for p in os.listdir("/proc") if p.isdigit()] if os.path.isdir("/proc") else []:
        try:
            assert SECRET.encode() not in open(f"/proc/{{pid}}/environ", "rb").read()
        except OSError:
            pass

@pytest.mark.parametrize("directory", {writable_targets!r})
def test_nothing_outside_the_workspace_is_writable(directory):
    with pytest.raises(OSError):
        with open(os.path.join(directory, "mgx-attack-{SECRET[-8:]}"), "w") as handle:
            handle.write("pwned")
"""
    fake_llm.enqueue(bob_reply(attack), action="WriteTest")

    run, report = await run_to_the_end(service)

    assert report["isolation"] == "bubblewrap"
    assert report["failed"] == 0 and report["errors"] == 0, report["output_tail"]
    assert report["passed"] == 1 + 4 + 4 + 5 + 1 + len(writable_targets), report["output_tail"]
    with pytest.raises(BlockingIOError):
        unix_listener.accept()
    with pytest.raises(BlockingIOError):
        tcp_listener.accept()
    unix_listener.close()
    tcp_listener.close()
    assert canary_file.read_text() == "original" and os.listdir(canary_dir) == ["keep.txt"]
    for directory in writable_targets:
        assert not Path(directory, f"mgx-attack-{SECRET[-8:]}").exists()
    logs = (await service.get(f"/runs/{run['id']}/logs", headers={"Accept": "text/plain"})).text
    assert SECRET not in logs and SECRET not in json.dumps(report)


async def test_processes_memory_and_disk_are_capped_and_nothing_survives_the_run(
    service: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    token = f"mgx-daemon-{uuid.uuid4().hex}"
    attack = f"""
import errno, os, signal, time

TOKEN = {token!r}

def _sleeper():
    os.execv("/bin/sh", [TOKEN, "-c", "sleep 60"])

def test_a_daemon_started_by_the_tests_dies_with_the_run():
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            _sleeper()
        os._exit(0)
    os.wait()

def test_a_fork_bomb_stops_at_the_process_cap():
    children = []
    try:
        for _ in range(500):
            pid = os.fork()
            if pid == 0:
                _sleeper()
            children.append(pid)
    except OSError as exc:
        assert exc.errno == errno.EAGAIN
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    assert len(children) < 500

def test_memory_spread_over_several_processes_is_capped():
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            block = bytearray(100 * 1024 * 1024)
            for offset in range(0, len(block), 4096):
                block[offset] = 1
            time.sleep(1)
            os._exit(0)
        children.append(pid)
    killed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        killed += os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert killed >= 1

def test_filling_the_disk_stops_at_the_cap():
    written, files = 0, []
    chunk = b"x" * (1024 * 1024)
    try:
        while written < 5 * 1024 ** 3:  # files of 16 MiB: under the per-file limit
            files.append(f"fill-{{len(files)}}.bin")
            with open(files[-1], "wb") as handle:
                for _ in range(16):
                    handle.write(chunk)
                    handle.flush()
                    written += len(chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        for name in files:
            os.remove(name)
    assert written < 200 * 1024 * 1024

def test_a_mode_000_directory_is_left_behind():
    os.makedirs("locked/inner")
    open("locked/inner/data", "w").write("x" * 1000)
    os.chmod("locked/inner", 0)
    os.chmod("locked", 0)
"""
    fake_llm.enqueue(bob_reply(attack), action="WriteTest")
    before = set(os.listdir(service.staging_root))  # type: ignore[attr-defined]

    _, report = await run_to_the_end(service)

    assert report["isolated"]["processes"] == "cgroup", report["isolated"]
    assert report["failed"] == 0 and report["errors"] == 0, report["output_tail"]
    assert report["passed"] == 5, report["output_tail"]
    assert report["isolated"]["peak_memory_mb"] <= 256
    assert processes_with(token) == [], "a process of the run outlived it"
    assert set(os.listdir(service.staging_root)) == before  # type: ignore[attr-defined]


async def test_a_fifo_or_huge_junit_file_cannot_stall_the_service(
    service: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    attack = """
import os

def test_junit_replaced_by_a_fifo():
    for path in ("junit.xml", "../junit.xml", "/sandbox/junit.xml", "/sandbox/tmp/junit.xml"):
        try:
            os.mkfifo(path)
        except OSError:
            pass

def test_a_60_mb_junit_file():
    with open("../junit-big.xml", "w") as handle:
        handle.write("<testsuite tests='999'>" + "<testcase name='x'/>" * (3 * 1024 * 1024))
"""
    fake_llm.enqueue(bob_reply(attack), action="WriteTest")
    latencies: list[float] = []
    stop = asyncio.Event()

    async def probe_liveness() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            assert (await service.get("/health/live")).status_code == 200
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe_liveness())
    try:
        _, report = await run_to_the_end(service)
    finally:
        stop.set()
        await prober

    assert report["passed"] == 2 and report["failed"] == 0, report["output_tail"]
    assert len(latencies) > 10 and max(latencies) < 0.1, max(latencies)


async def test_a_conftest_among_the_code_files_is_refused_and_cannot_forge_the_result(
    service: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    forger = """
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    outcome.get_result().outcome = "passed"
"""
    fake_llm.enqueue(code_reply({"fizzbuzz.py": "def fizzbuzz(n):\n    return 'nope'", "conftest.py": forger}), action="WriteCode")
    fake_llm.enqueue(code_reply({"fizzbuzz.py": "def fizzbuzz(n):\n    return 'nope'"}), action="WriteCode")
    tests = """
from fizzbuzz import fizzbuzz

def test_three():
    assert fizzbuzz(3) == "Fizz"

def test_five():
    assert fizzbuzz(5) == "Buzz"
"""
    fake_llm.enqueue(bob_reply(tests, "test_fizzbuzz.py"), action="WriteTest")

    run, report = await run_to_the_end(service)

    asks = [r for r in fake_llm.requests if r.run_label == run["id"] and r.action == "WriteCode"]
    assert len(asks) == 2 and "conftest.py" in asks[1].prompt_text
    assert (report["passed"], report["failed"]) == (0, 2), report["output_tail"]
    names = {item["name"] for item in (await service.get(f"/runs/{run['id']}/artifacts")).json()}
    assert "conftest.py" not in names


async def test_a_code_file_named_like_an_artifact_cannot_replace_it(
    service: httpx.AsyncClient, fake_llm: FakeLLMServer
) -> None:
    fake_llm.enqueue(code_reply({"plan.json": '{"summary": "forged"}'}), action="WriteCode")

    run, _ = await run_to_the_end(service)

    asks = [r for r in fake_llm.requests if r.run_label == run["id"] and r.action == "WriteCode"]
    assert len(asks) >= 2 and "plan.json" in asks[1].prompt_text
    plan = (await service.get(f"/runs/{run['id']}/artifacts/plan.json")).json()
    assert plan.get("summary") != "forged" and plan.get("steps")


async def test_with_bubblewrap_unavailable_no_test_is_executed(
    sqlite_template: Path, tmp_path: Path, fake_llm: FakeLLMServer
) -> None:
    marker = tmp_path / "executed"
    fake_llm.enqueue(bob_reply(f"def test_x():\n    open({str(marker)!r}, 'w')\n"), action="WriteTest")
    settings = make_settings(
        sqlite_copy(sqlite_template, tmp_path),
        **{**FAST_RUNNER_SETTINGS, "mgx_sandbox": "auto", "mgx_sandbox_bwrap": str(tmp_path / "no-bwrap"),
           "mgx_max_revision_rounds": 0},
    )  # fmt: skip
    app = create_app(settings, fake_llm_config(fake_llm))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            status = (await client.get("/health/status")).json()["sandbox"]
            _, report = await run_to_the_end(client)

    assert status["backend"] == "unavailable" and status["executes_tests"] is False
    assert "MGX_SANDBOX=unsafe-subprocess" in status["fix"]
    assert report["status"] == "unavailable" and "no usable bwrap" in report["reason"]
    assert not marker.exists()
