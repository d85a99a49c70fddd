"""The out-of-process adapter against workers that break the line protocol: every way a worker
can go wrong becomes an EngineError with a code and the cause, never a hang or a traceback."""

from __future__ import annotations

import sys

import pytest

from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.engines.out_of_process import EngineError, OutOfProcessEngine, WorkerCommand
from mgx_agent.llm import LLMConfig

HELLO = (
    'print(\'{"type": "hello", "protocol": 1, "engine": "metagpt", "version": "x"}\', flush=True)'
)


def engine_running(script: str) -> OutOfProcessEngine:
    command = WorkerCommand(
        "metagpt", (sys.executable, "-c", f"import sys; sys.stdin.readline()\n{script}")
    )
    config = TeamConfig(engine="metagpt", sandbox=SandboxConfig(mode="off"))
    llm = LLMConfig(_env_file=None, base_url="http://127.0.0.1:9/v1", api_key="k")
    return OutOfProcessEngine(command, config, llm)


@pytest.mark.parametrize(
    ("script", "code", "said"),
    [
        ("print('MetaGPT says hello on stdout', flush=True)", "engine_protocol", "not JSON"),
        (
            f'{HELLO}\nprint(\'{{"type": "gossip"}}\', flush=True)',
            "engine_protocol",
            "unknown message 'gossip'",
        ),
        (
            'print(\'{"type": "hello", "protocol": 9}\', flush=True)',
            "engine_protocol",
            "speaks protocol 9",
        ),
        (
            f'{HELLO}\nprint(\'{{"type": "event", "event": {{"type": "run.phase"}}}}\', flush=True)',
            "engine_protocol",
            "malformed 'run.phase' event",
        ),
        (
            "sys.stderr.write('Traceback: the real cause'); sys.exit(7)",
            "engine_crashed",
            "status 7",
        ),
        (
            f'{HELLO}\nprint(\'{{"type": "error", "code": "llm_auth", "message": "401 from the provider"}}\', flush=True)',
            "llm_auth",
            "401 from the provider",
        ),
    ],
    ids=["chatter", "unknown-type", "wrong-version", "malformed-event", "died", "reported-error"],
)
async def test_a_worker_breaking_the_protocol_fails_the_call_with_its_cause(
    script: str, code: str, said: str
) -> None:
    engine = engine_running(script)
    with pytest.raises(EngineError) as caught:
        await engine.analyze_and_plan("write fizzbuzz(n)")
    assert caught.value.code == code
    assert said in caught.value.message
    if code == "engine_crashed":
        assert "Traceback: the real cause" in caught.value.message


async def test_a_missing_interpreter_is_engine_unavailable_with_the_reason() -> None:
    config = TeamConfig(engine="metagpt")
    llm = LLMConfig(_env_file=None, base_url="http://127.0.0.1:9/v1", api_key="k")
    engine = OutOfProcessEngine(
        WorkerCommand("metagpt", ("/nonexistent/python", "worker.py")), config, llm
    )
    with pytest.raises(EngineError) as caught:
        await engine.analyze_and_plan("write fizzbuzz(n)")
    assert caught.value.code == "engine_unavailable"
    assert "/nonexistent/python is not an executable interpreter" in caught.value.message


async def test_the_demo_model_is_refused_by_the_metagpt_engine() -> None:
    engine = OutOfProcessEngine(
        WorkerCommand("metagpt", (sys.executable, "worker.py")),
        TeamConfig(engine="metagpt"),
        LLMConfig(_env_file=None),
    )
    with pytest.raises(EngineError) as caught:
        await engine.analyze_and_plan("write fizzbuzz(n)")
    assert caught.value.code == "engine_unavailable"
    assert "demo model runs in the native engine only" in caught.value.message
