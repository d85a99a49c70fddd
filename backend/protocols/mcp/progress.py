"""One progress line per run event a person following the run cares about (phases, agent
messages, status changes, files, test results); the rest of the log is not progress."""

from __future__ import annotations

from backend.services.events import StreamEvent

MESSAGE_PREVIEW_CHARACTERS = 200


def progress_message(event: StreamEvent) -> str | None:
    data = event.data
    if event.type == "run.status":
        return f"status: {data.get('previous')} -> {data.get('status')}"
    if event.type == "run.phase":
        return f"phase {data.get('phase')} {data.get('state', '')}".rstrip()
    if event.type == "agent.message":
        content = " ".join(str(data.get("content", "")).split())
        if len(content) > MESSAGE_PREVIEW_CHARACTERS:
            content = content[:MESSAGE_PREVIEW_CHARACTERS] + "..."
        return f"{data.get('role', 'agent')} ({data.get('action', '')}): {content}"
    if event.type == "run.plan_ready":
        return f"plan ready: {(data.get('plan') or {}).get('summary', '')}"
    if event.type == "run.approval_required":
        return "the plan waits for approval"
    if event.type == "artifact.created":
        return f"file {data.get('name')} ({data.get('size')} bytes)"
    if event.type == "sandbox.result":
        report = data.get("report") or {}
        return f"tests: {report.get('passed')} passed, {report.get('failed')} failed, {report.get('errors')} errors"
    return None
