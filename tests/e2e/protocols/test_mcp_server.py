"""The MCP server at /mcp, driven by the official SDK's client over Streamable HTTP against the
real uvicorn process of ``conftest``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult

from tests.e2e.conftest import ApiServer
from tests.e2e.protocols.conftest import ALICE, BOB

pytestmark = pytest.mark.slow

Elicitation = Any  # an async (context, params) -> ElicitResult callback


@asynccontextmanager
async def mcp_session(
    server: ApiServer, key: str, *, mode: str = "auto", elicitation: Elicitation | None = None
) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
        transport = streamable_http_client(f"{server.base_url}/mcp", http_client=http)
        async with Client(transport, mode=mode, elicitation_callback=elicitation) as client:
            yield client


def answered(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def problem(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error, result.structured_content
    assert result.structured_content is not None
    return result.structured_content


def answering(*decisions: dict[str, str], asked: list[str]) -> Elicitation:
    """An elicitation callback that gives ``decisions`` in turn and records each question."""
    pending = list(decisions)

    async def answer(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content=pending.pop(0))

    return answer


async def test_requests_without_a_valid_key_are_refused(server: ApiServer) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        missing = await http.post("/mcp", json=body)
        wrong = await http.post("/mcp", json=body, headers={"Authorization": "Bearer not-a-key"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.headers["content-type"] == "application/problem+json"


async def test_a_host_outside_the_allowlist_is_refused(server: ApiServer) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the tools."""
    headers = {"Authorization": f"Bearer {ALICE}", "Host": "evil.example", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        response = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers)
    assert response.status_code == 421


async def test_tools_are_listed_with_schemas_and_descriptions(server: ApiServer) -> None:
    async with mcp_session(server, ALICE) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        templates = {item.uri_template for item in (await client.list_resource_templates()).resource_templates}
    assert set(tools) == {
        "create_task", "start_run", "get_run", "wait_run", "approve_plan", "reject_plan", "cancel_run", "list_runs",
        "get_artifact",
    }
    assert all(tool.description for tool in tools.values())
    assert tools["get_run"].input_schema["required"] == ["run_id"]
    assert "status" in tools["get_run"].output_schema["properties"]
    assert tools["get_run"].annotations.read_only_hint is True
    assert tools["cancel_run"].annotations.destructive_hint is True
    assert templates == {"mgx://runs/{run_id}/artifacts/{+name}", "mgx://runs/{run_id}/plan"}


async def test_a_run_completes_with_progress_and_the_plan_approved_by_elicitation(server: ApiServer) -> None:
    asked: list[str] = []
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    elicitation = answering({"decision": "approve", "feedback": ""}, asked=asked)
    async with mcp_session(server, ALICE, elicitation=elicitation) as client:
        assert client.protocol_version == "2026-07-28"
        started = answered(await client.call_tool("start_run", {"description": "write fizzbuzz(n)"}))
        assert started["status"] == "queued"
        run = answered(
            await client.call_tool(
                "wait_run", {"run_id": started["id"], "timeout_seconds": 30}, progress_callback=on_progress
            )
        )
        assert run["status"] == "completed", run["error"]
        names = {artifact["name"] for artifact in run["artifacts"]}
        code = next(artifact for artifact in run["artifacts"] if artifact["name"].endswith(".py"))
        resource = await client.read_resource(code["uri"])
        text = await client.call_tool("get_artifact", {"run_id": run["id"], "name": code["name"]})
        plan = await client.read_resource(f"mgx://runs/{run['id']}/plan")

    assert len(asked) == 1 and "plan" in asked[0]
    messages = [message or "" for _, message in progress]
    assert any(message.startswith("phase coding") for message in messages)
    assert any(message.startswith("alex") for message in messages)
    assert [value for value, _ in progress] == sorted({value for value, _ in progress})
    assert {"plan.json", "review.md"} <= names
    assert "def " in resource.contents[0].text
    assert not text.is_error and text.content[0].text == resource.contents[0].text
    assert '"summary"' in plan.contents[0].text


async def test_a_handshake_era_session_is_asked_by_elicitation_request_and_a_rejection_replans(
    server: ApiServer,
) -> None:
    asked: list[str] = []
    elicitation = answering(
        {"decision": "reject", "feedback": "use a generator"}, {"decision": "reject", "feedback": ""}, asked=asked
    )
    async with mcp_session(server, ALICE, mode="legacy", elicitation=elicitation) as client:
        assert client.protocol_version == "2025-11-25"
        started = answered(await client.call_tool("start_run", {"description": "write fizzbuzz(n)"}))
        run = answered(await client.call_tool("wait_run", {"run_id": started["id"], "timeout_seconds": 30}))
    # Rejected with feedback: re-planned and asked again; rejected without: the run ends.
    assert len(asked) == 2
    assert run["status"] == "rejected"


async def test_without_elicitation_the_plan_waits_for_the_approve_and_reject_tools(server: ApiServer) -> None:
    async with mcp_session(server, ALICE) as client:
        task = answered(await client.call_tool("create_task", {"title": "fizzbuzz", "description": "write fizzbuzz(n)"}))
        run = answered(await client.call_tool("start_run", {"task_id": task["id"]}))
        waiting = answered(await client.call_tool("wait_run", {"run_id": run["id"], "timeout_seconds": 30}))
        assert waiting["status"] == "awaiting_approval"
        assert waiting["plan"]["summary"] and "approve_plan" in waiting["next_step"]

        missing_feedback = problem(await client.call_tool("reject_plan", {"run_id": run["id"]}))
        replanned = answered(await client.call_tool("reject_plan", {"run_id": run["id"], "feedback": "smaller"}))
        waiting = answered(await client.call_tool("wait_run", {"run_id": run["id"], "timeout_seconds": 30}))
        approved = answered(await client.call_tool("approve_plan", {"run_id": run["id"], "comment": "go"}))
        twice = problem(await client.call_tool("approve_plan", {"run_id": run["id"]}))
        finished = answered(await client.call_tool("wait_run", {"run_id": run["id"], "timeout_seconds": 30}))
        cancelled = problem(await client.call_tool("cancel_run", {"run_id": run["id"]}))
        listed = answered(await client.call_tool("list_runs", {"task_id": task["id"]}))

    assert missing_feedback["status"] == 422 and "feedback" in missing_feedback["detail"]
    assert replanned["status"] == "queued"
    assert waiting["status"] == "awaiting_approval"
    assert approved["status"] == "queued"
    assert twice["status"] == 409 and twice["current_status"] != "awaiting_approval"
    assert finished["status"] == "completed"
    assert cancelled["status"] == 409 and cancelled["type"] == "urn:mgx:problem:conflict"
    assert cancelled["current_status"] == "completed"
    assert [item["id"] for item in listed["items"]] == [run["id"]] and listed["total"] == 1


async def test_start_run_needs_a_task_or_a_description(server: ApiServer) -> None:
    async with mcp_session(server, ALICE) as client:
        neither = problem(await client.call_tool("start_run", {}))
        unknown = problem(await client.call_tool("start_run", {"task_id": "00000000-0000-0000-0000-000000000000"}))
    assert neither["status"] == 400
    assert unknown["status"] == 404


async def test_a_key_sees_and_acts_on_its_own_runs_only(server: ApiServer) -> None:
    async with mcp_session(server, ALICE) as alice:
        run = answered(await alice.call_tool("start_run", {"description": "alice's secret project"}))
        waiting = answered(await alice.call_tool("wait_run", {"run_id": run["id"], "timeout_seconds": 30}))
        assert waiting["status"] == "awaiting_approval"
        async with mcp_session(server, BOB) as bob:
            seen = problem(await bob.call_tool("get_run", {"run_id": run["id"]}))
            approved = problem(await bob.call_tool("approve_plan", {"run_id": run["id"]}))
            cancelled = problem(await bob.call_tool("cancel_run", {"run_id": run["id"]}))
            waited = problem(await bob.call_tool("wait_run", {"run_id": run["id"], "timeout_seconds": 1}))
            listed = answered(await bob.call_tool("list_runs", {}))
            artifact = problem(await bob.call_tool("get_artifact", {"run_id": run["id"], "name": "plan.json"}))
            with pytest.raises(MCPError) as plan_error:
                await bob.read_resource(f"mgx://runs/{run['id']}/plan")
        still = answered(await alice.call_tool("get_run", {"run_id": run["id"]}))
        alice_cancelled = answered(await alice.call_tool("cancel_run", {"run_id": run["id"]}))

    assert seen["status"] == approved["status"] == cancelled["status"] == waited["status"] == 404
    assert artifact["status"] == 404
    assert run["id"] not in {item["id"] for item in listed["items"]}
    assert "does not exist" in plan_error.value.error.message
    assert still["status"] == "awaiting_approval"
    assert alice_cancelled["status"] == "cancelled"
