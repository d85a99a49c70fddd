"""A stand-in for mgx_agent/engines/metagpt_worker.py that needs no MetaGPT: the same line
protocol (mgx_agent/engines/protocol.py), with the native MGXStyleTeam doing the work, run
with the service's own interpreter. The adapter cannot tell the difference, so the default
suite tests the adapter end to end through the real service.

Like the real worker it claims stdout for the protocol and sends everything else printed to
stderr (it prints chatter on purpose). Every model call asks the service first and every
reply is reported; the generated tests are sent to the service's sandbox. A task containing
CRASH-THE-WORKER makes it die with a message on stderr, as a broken MetaGPT install would;
one containing REPORT-THE-ENVIRONMENT logs the names of its environment variables.
"""

from __future__ import annotations

import os
import sys

_PROTOCOL_OUT = os.fdopen(os.dup(1), "wb", buffering=0)
os.dup2(2, 1)
sys.stdout = sys.stderr
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

if "--check" in sys.argv:  # answered before the team's imports, as quickly as a probe wants
    _PROTOCOL_OUT.write(
        b'{"engine": "metagpt", "version": "stand-in", "python": "%s"}\n'
        % sys.version.split()[0].encode()
    )
    sys.exit(0)

import asyncio
import json
import threading
from typing import Any

from mgx_agent.config import SandboxConfig, TeamConfig
from mgx_agent.engines.protocol import PROTOCOL_VERSION, decode, encode
from mgx_agent.errors import MGXError
from mgx_agent.events import AgentMessage, TeamEvent, UsageUpdated
from mgx_agent.llm import LLMConfig, LLMSession, OpenAICompatibleClient
from mgx_agent.team import MGXStyleTeam

lock = threading.Lock()


def send(message: dict[str, Any]) -> None:
    with lock:
        _PROTOCOL_OUT.write(encode(message))


class Link:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop, self.pending, self.next_id = loop, {}, 0
        threading.Thread(target=self.read, daemon=True).start()

    async def request(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.next_id += 1
        future = self.pending[self.next_id] = self.loop.create_future()
        send({"type": "request", "id": self.next_id, "kind": kind, **fields})
        return await future

    def read(self) -> None:
        for line in sys.stdin.buffer:
            message = decode(line)
            if message["type"] == "cancel":
                os._exit(0)
            self.loop.call_soon_threadsafe(
                lambda m=message: self.pending.pop(m["id"]).set_result(m)
            )
        os._exit(0)


class GatedClient:
    """The service's own client, asking the service before every call."""

    accepts_sampling_params = True

    def __init__(self, inner: OpenAICompatibleClient, link: Link) -> None:
        self.inner, self.link, self.provider = inner, link, inner.provider

    async def complete(self, messages: Any, *, model: str, context: Any, **kwargs: Any) -> Any:
        await self.link.request("model_call", role=context.role, action=context.action)
        return await self.inner.complete(messages, model=model, context=context, **kwargs)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ServiceSandbox:
    def __init__(self, link: Link) -> None:
        self.link = link

    async def run(self, files: list[Any], tests: list[Any]) -> Any:
        reply = await self.link.request(
            "sandbox", files=[f.to_dict() for f in files], tests=[t.to_dict() for t in tests]
        )

        class Report:
            def to_dict(self) -> dict[str, Any]:
                return reply["report"]

        return Report()


async def forward(event: TeamEvent) -> None:
    if isinstance(event, UsageUpdated):
        return  # the service counts usage itself, from the agent messages
    data = event.to_dict()
    if isinstance(event, AgentMessage) and event.llm is not None:
        data["llm"] = {
            "model": event.llm.model,
            "prompt_tokens": event.llm.prompt_tokens,
            "completion_tokens": event.llm.completion_tokens,
            "estimated": event.llm.estimated,
        }
    send({"type": "event", "event": data})


async def serve(start: dict[str, Any]) -> None:
    link = Link(asyncio.get_running_loop())
    send(
        {"type": "hello", "protocol": PROTOCOL_VERSION, "engine": "metagpt", "version": "stand-in"}
    )
    if "REPORT-THE-ENVIRONMENT" in start["task"]:
        # What the worker was given, for the test that no service variable leaks into it.
        seen = {
            "env": sorted(os.environ),
            "cwd": os.getcwd(),
            "root": os.environ.get("METAGPT_PROJECT_ROOT"),
        }
        send(
            {
                "type": "event",
                "event": {"type": "run.log", "level": "info", "message": json.dumps(seen)},
            }
        )
    llm = start["llm"]
    client = OpenAICompatibleClient(
        LLMConfig(
            _env_file=None,
            base_url=llm["base_url"],
            api_key=llm["api_key"] or None,
            model=llm["model"],
            max_retries=llm["max_retries"],
            timeout_seconds=llm["timeout_seconds"],
        )
    )
    limits = start["limits"]
    config = TeamConfig(
        max_rounds=20,
        max_revision_rounds=limits["revision_rounds"],
        enable_caching=False,
        auto_approve_plan=start["auto_approve"],
        require_passing_tests=limits["require_passing_tests"],
        sandbox=SandboxConfig(mode="off"),
    )
    session = LLMSession(
        GatedClient(client, link),
        default_model=llm["model"],
        role_models=llm["role_models"],
        run_label=llm["run_label"],
    )
    team = MGXStyleTeam(config, session, forward, sandbox=ServiceSandbox(link))
    try:
        if start["action"] == "plan":
            await team.analyze_and_plan(start["task"])
        else:
            team.restore(start["state"])
            if start["action"] == "replan":
                await team.reject_plan(start["feedback"] or "")
            else:
                team.approve_plan()
                await team.execute()
        send({"type": "done", "state": team.state})
    except MGXError as exc:
        send({"type": "error", "code": exc.code, "message": exc.message, "detail": ""})
    finally:
        await client.aclose()


def main() -> None:
    print("stand-in worker chatter that must never reach the protocol stream")
    start = decode(sys.stdin.buffer.readline())
    if "CRASH-THE-WORKER" in start["task"]:
        sys.stderr.write("stand-in worker: ImportError: MetaGPT could not load its provider\n")
        sys.stderr.flush()
        os._exit(3)
    asyncio.run(serve(start))


if __name__ == "__main__":
    main()
