"""Following a run to its end: the live progress panel on a terminal (plain lines when the output
is piped), and the approval question when the plan waits for a person.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click
from rich.console import Console
from rich.live import Live

from mgx_cli.client import ServiceClient, ServiceError
from mgx_cli.display import NOTABLE_EVENTS, RunProgress, describe_event, render_plan, terminal_text

APPROVAL_CHOICES = {
    "y": "approve the plan",
    "n": "reject it and re-plan with your feedback",
    "e": "end the run as rejected",
    "d": "detach: stop watching, the run keeps waiting",
}


class AwaitingApproval(Exception):
    """The run waits for approval and nobody here answered (no input, or detached)."""


class RunWatcher:
    def __init__(
        self,
        client: ServiceClient,
        console: Console,
        *,
        live: bool,
        assume_yes: bool = False,
        prompt: Callable[..., str] = click.prompt,
    ) -> None:
        self.client = client
        self.console = console
        self.live = live
        self.assume_yes = assume_yes
        self.prompt = prompt

    def watch(self, run_id: str, after: int = 0) -> str:
        """Follow ``run_id`` until its terminal event; return its final status."""
        progress = RunProgress(run_id)
        final_status = "?"
        with self._display(progress) as display:
            for event in self.client.events(run_id, after=after, on_reconnect=self._say_reconnecting):
                progress.observe(event)
                if display is None:
                    click.echo(describe_event(event))
                else:
                    if event.type in NOTABLE_EVENTS:
                        display.console.print(describe_event(event), markup=False, highlight=False)
                    display.update(progress.render(), refresh=True)
                if event.type == "run.approval_required":
                    self._pause(display)
                    try:
                        self._decide(run_id)
                    finally:
                        self._resume(display)
                if event.terminal:
                    final_status = str(event.data.get("status") or event.type.removeprefix("run."))
        return final_status

    @staticmethod
    def _say_reconnecting(reason: str, last_seq: int) -> None:
        click.echo(f"mgx: event stream interrupted ({reason}); resuming after event {last_seq}", err=True)

    @contextlib.contextmanager
    def _display(self, progress: RunProgress) -> Iterator[Live | None]:
        if not self.live:
            yield None
            return
        with Live(progress.render(), console=self.console, refresh_per_second=4, transient=False) as live:
            yield live

    @staticmethod
    def _pause(display: Live | None) -> None:
        if display is not None:
            display.stop()

    @staticmethod
    def _resume(display: Live | None) -> None:
        if display is not None:
            display.start(refresh=True)

    def _decide(self, run_id: str) -> None:
        """Answer the approval question, unless the run has moved on (a replayed event, or
        someone else answered): the run's current status and plan decide, not the old event."""
        run = self.client.get_run(run_id)
        if run["status"] != "awaiting_approval":
            return
        if self.assume_yes:
            self._answer(lambda: self.client.approve(run_id, "approved with --yes"), "plan approved (--yes)")
            return
        self.console.print(render_plan(run.get("plan") or {}))
        for key, meaning in APPROVAL_CHOICES.items():
            self.console.print(f"  {key}: {meaning}", markup=False, highlight=False)
        try:
            choice = self.prompt("Approve the plan?", type=click.Choice(list(APPROVAL_CHOICES)), show_choices=True)
            if choice == "y":
                self._answer(lambda: self.client.approve(run_id), "plan approved")
            elif choice == "n":
                feedback = self.prompt("What should change")
                self._answer(lambda: self.client.reject(run_id, feedback, replan=True), "plan rejected: re-planning")
            elif choice == "e":
                self._answer(lambda: self.client.reject(run_id, None, replan=False), "plan rejected: run ended")
            else:
                raise AwaitingApproval(f"detached; the run waits for approval: mgx runs approve {run_id}")
        except click.Abort:  # no more input (Ctrl+D, or stdin is not a terminal and empty)
            raise AwaitingApproval(
                f"run {run_id} waits for approval: answer with `mgx runs approve {run_id}` or "
                f"`mgx runs reject {run_id} --feedback ...`, or watch with --yes"
            ) from None

    def _answer(self, send: Callable[[], object], said: str) -> None:
        try:
            send()
        except ServiceError as exc:
            if exc.status != 409:
                raise
            # Someone answered first; the events that follow say what happened.
            self.console.print(terminal_text(f"not answered: {exc}"), markup=False, highlight=False)
            return
        self.console.print(said, markup=False, highlight=False)
