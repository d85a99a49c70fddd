"""How a run looks in a terminal: one line per event, the live progress panel, the plan.

``RunProgress`` folds the events into what a person wants to see at a glance (status, phase,
role, round, elapsed time, tokens, cost); ``describe_event`` is the one line an event gets.

What the service sends is the model's text, the generated tests' output and other users' words:
it reaches the terminal through ``terminal_text`` / ``plain`` only, without control characters
(an escape sequence in a reply could clear the screen, retitle the window or plant a link) and
never read as rich markup (``[link=...]`` in a plan would make one).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from mgx_cli.client import RunEvent

# C0 controls but tab and newline, DEL, and C1 controls (ESC's 8-bit forms among them).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(value: Any) -> str:
    """``value`` as text safe to print: CRLF line ends (models write them) become newlines, and
    every other control character but tab becomes U+FFFD."""
    return _CONTROL.sub("\ufffd", str(value).replace("\r\n", "\n"))


def plain(value: Any) -> Text:
    """``value`` as a rich ``Text`` cell: safe to print, and no markup read into it."""
    return Text(terminal_text(value))

# Events a person follows on the live display; the others only update the panel.
NOTABLE_EVENTS = frozenset(
    {"run.status", "run.phase", "agent.message", "artifact.created", "sandbox.result", "run.plan_ready",
     "run.approved", "run.rejected", "run.completed", "run.failed", "run.cancelled", "run.expired"}
)


def _round_label(data: dict[str, Any]) -> str:
    # The service counts rounds from 0; people count from 1.
    return f" (round {int(data['round']) + 1})" if isinstance(data.get("round"), int) else ""


def _first_line(text: Any, limit: int = 100) -> str:
    lines = [line.strip() for line in str(text or "").splitlines() if line.strip() and not line.startswith("```")]
    line = lines[0] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_event(event: RunEvent) -> str:
    """One line saying what the event means."""
    data = event.data
    kind = event.type
    if kind == "run.created":
        text = f"run #{data.get('number', '?')} created"
    elif kind == "run.status":
        text = f"status {data.get('previous', '?')} -> {data.get('status')}"
        error = data.get("error")
        if isinstance(error, dict) and error.get("code"):
            text += f": {error['code']}: {_first_line(error.get('message'))}"
        elif data.get("outcome"):
            text += f" (outcome {data['outcome']})"
    elif kind == "run.phase":
        if data.get("state") == "finished":
            text = f"phase {data.get('phase')} finished in {float(data.get('seconds') or 0):.2f}s"
        else:
            text = f"phase {data.get('phase')} {data.get('state', 'started')}{_round_label(data)}"
    elif kind == "agent.message":
        text = f"{data.get('role')}: {data.get('action')}: {_first_line(data.get('content'))}"
    elif kind == "artifact.created":
        text = f"artifact {data.get('name')} ({data.get('size', '?')} bytes)"
    elif kind == "sandbox.result":
        report = data.get("report") or {}
        text = (f"tests {report.get('status')}: {report.get('passed', 0)} passed, {report.get('failed', 0)} failed, "
                f"{report.get('errors', 0)} errors")
    elif kind == "run.usage":
        total = data.get("total") or {}
        text = f"usage {total.get('total_tokens', 0)} tokens, ${float(total.get('cost_usd') or 0):.4f}"
    elif kind in {"run.plan_ready", "run.approval_required"}:
        plan = data.get("plan") or {}
        text = f"plan: {_first_line(plan.get('summary'))} ({len(plan.get('steps') or [])} steps)"
    elif kind == "run.approved":
        text = "plan approved" + (f": {data['comment']}" if data.get("comment") else "")
    elif kind == "run.rejected" and data.get("feedback") is not None:
        text = f"plan rejected: {_first_line(data.get('feedback'))}"
    else:
        text = kind.removeprefix("run.")
    return terminal_text(f"#{event.seq} {kind}: {text}")


@dataclass
class RunProgress:
    run_id: str
    status: str = "?"
    phase: str = "-"
    role: str = "-"
    round: str = ""
    tokens: int = 0
    cost_usd: float = 0.0
    last_line: str = ""
    started: float = field(default_factory=time.monotonic)

    def observe(self, event: RunEvent) -> None:
        data = event.data
        if event.type == "run.status":
            self.status = str(data.get("status"))
        elif event.type == "run.phase":
            state = data.get("state")
            self.phase = f"{data.get('phase')}" if state != "finished" else f"{data.get('phase')} (done)"
            if isinstance(data.get("round"), int):
                self.round = str(int(data["round"]) + 1)
        elif event.type == "agent.message":
            self.role = str(data.get("role"))
        elif event.type == "run.usage":
            total = data.get("total") or {}
            self.tokens = int(total.get("total_tokens") or 0)
            self.cost_usd = float(total.get("cost_usd") or 0.0)
        if event.type != "run.usage":
            self.last_line = describe_event(event)

    def render(self) -> RenderableType:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("status", plain(self.status))
        table.add_row("phase", plain(self.phase + (f"  round {self.round}" if self.round else "")))
        table.add_row("role", plain(self.role))
        table.add_row("elapsed", f"{time.monotonic() - self.started:.1f}s")
        table.add_row("tokens", str(self.tokens))
        table.add_row("cost", f"${self.cost_usd:.4f}")
        return Panel(Group(table, Text(self.last_line, overflow="ellipsis", no_wrap=True)),
                     title=f"run {self.run_id}", expand=False)


def render_plan(plan: dict[str, Any]) -> RenderableType:
    lines = Text()
    lines.append(terminal_text(f"{plan.get('summary', '(no summary)')}\n"), style="bold")
    if plan.get("complexity"):
        lines.append(terminal_text(f"complexity {plan['complexity']}\n"))
    for number, step in enumerate(plan.get("steps") or [], start=1):
        lines.append(terminal_text(f"{number}. {step.get('title')} [{step.get('assignee', '?')}]\n"))
        if step.get("detail"):
            lines.append(terminal_text(f"   {step['detail']}\n"))
    criteria = plan.get("acceptance_criteria") or []
    if criteria:
        lines.append("acceptance criteria:\n")
        for criterion in criteria:
            lines.append(terminal_text(f"  - {criterion}\n"))
    return Panel(lines, title="plan", expand=False)
