"""The ``mgx`` command line: ``mgx tasks ...`` and ``mgx runs ...``, each one REST operation (or,
for ``watch``, the run's event stream), shown as tables and lines, or as JSON with ``--json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from mgx_agent.file_names import RESERVED_ARTIFACT_NAMES
from mgx_cli import exit_codes
from mgx_cli.client import DEFAULT_API_URL, ServiceClient, ServiceError, ServiceUnreachable
from mgx_cli.display import plain, terminal_text
from mgx_cli.watch import AwaitingApproval, RunWatcher


class Context:
    def __init__(self, url: str, api_key: str | None, as_json: bool, timeout: float) -> None:
        self.url = url
        self.api_key = api_key
        self.as_json = as_json
        self.timeout = timeout
        self.console = Console()

    def client(self) -> ServiceClient:
        return ServiceClient(self.url, self.api_key, timeout=self.timeout)

    def show(self, value: Any, human: Any = None) -> None:
        """``value`` as JSON with ``--json``; otherwise ``human`` (a rich renderable or text)."""
        if self.as_json or human is None:
            click.echo(json.dumps(value, indent=2))
        elif isinstance(human, str):
            self.console.print(terminal_text(human), markup=False, highlight=False)
        else:
            self.console.print(human)


pass_context = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="MGX_API_URL", default=DEFAULT_API_URL, show_default=True,
              help="The service's address (MGX_API_URL).")
@click.option("--api-key", envvar="MGX_API_KEY", default=None, help="API key, when the service has API_KEYS (MGX_API_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Print the service's JSON instead of tables.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds to wait for each answer.")
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None, as_json: bool, timeout: float) -> None:
    """Drive an MGX Agent API service: create tasks, start runs, follow them live, approve plans,
    download the code. Exit status: 0 done; 1 the watched run did not complete; 2 wrong usage;
    3 the service refused (its reason is printed); 4 the service cannot be reached; 5 the run
    waits for an approval nobody gave here; 130 interrupted."""
    ctx.obj = Context(url, api_key or None, as_json, timeout)


@cli.group()
def tasks() -> None:
    """Create, list and show tasks."""


@tasks.command("create")
@click.argument("title")
@click.option("-d", "--description", default="", help="What to build, in words (defaults to the title).")
@click.option("--auto-approve", is_flag=True, help="Runs skip the approval step.")
@click.option("--max-revision-rounds", type=click.IntRange(0, 5), help="Review/revise cycles (0-5).")
@click.option("--config", "config_json", help='Task config as JSON, e.g. \'{"budget_usd": 0.5}\'.')
@click.option("--idempotency-key", help="Retry-safe creation: the same key gives back the same task.")
@click.option("-q", "--quiet", is_flag=True, help="Print the new task's id only.")
@pass_context
def create_task(obj: Context, title: str, description: str, auto_approve: bool, max_revision_rounds: int | None,
                config_json: str | None, idempotency_key: str | None, quiet: bool) -> None:
    """Store a new task."""
    config = _json_option(config_json, "--config") if config_json else {}
    if auto_approve:
        config["auto_approve_plan"] = True
    if max_revision_rounds is not None:
        config["max_revision_rounds"] = max_revision_rounds
    body = {"title": title, "description": description or title, "config": config}
    with obj.client() as client:
        task = client.create_task(body, idempotency_key)
    if quiet:
        click.echo(task["id"])
    else:
        obj.show(task, f"task {task['id']} created: {task['title']}")


@tasks.command("list")
@click.option("--status", help="Only tasks with this status.")
@click.option("-q", "--search", "query", help="Text in the title or description.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@pass_context
def list_tasks(obj: Context, status: str | None, query: str | None, limit: int) -> None:
    """List tasks, newest first."""
    with obj.client() as client:
        page = client.list_tasks(status=status, q=query, limit=limit)
    table = Table("id", "status", "title", "runs", "updated")
    for task in page["items"]:
        runs = f"{task.get('successful_runs', 0)} ok, {task.get('failed_runs', 0)} failed"
        table.add_row(*map(plain, (task["id"], task.get("status"), task["title"], runs, str(task.get("updated_at", ""))[:19])))
    table.caption = f"{len(page['items'])} of {page['total']}"
    obj.show(page, table)


@tasks.command("show")
@click.argument("task_id")
@pass_context
def show_task(obj: Context, task_id: str) -> None:
    """One task."""
    with obj.client() as client:
        task = client.get_task(task_id)
    obj.show(task, _fields(task, "id", "title", "description", "status", "config", "last_run_id", "last_run_status",
                           "created_at", "updated_at"))


@cli.group()
def runs() -> None:
    """Start, follow, approve, cancel and download runs."""


@runs.command("start")
@click.argument("task_id")
@click.option("--label", help="A label for this run.")
@click.option("-w", "--watch", "then_watch", is_flag=True, help="Follow the run (see `mgx runs watch`).")
@click.option("-y", "--yes", is_flag=True, help="With --watch: approve the plan without asking.")
@click.option("-q", "--quiet", is_flag=True, help="Print the new run's id only.")
@pass_context
def start_run(obj: Context, task_id: str, label: str | None, then_watch: bool, yes: bool, quiet: bool) -> None:
    """Start a run of a task (Mike plans first, then it waits for approval)."""
    body: dict[str, Any] = {"task_id": task_id}
    if label:
        body["label"] = label
    with obj.client() as client:
        run = client.start_run(body)
        if quiet:
            click.echo(run["id"])
        else:
            obj.show(run, f"run {run['id']} started: {run['status']}")
        if then_watch:
            _watch(obj, client, run["id"], yes, after=0)


@runs.command("list")
@click.option("--task", "task_id", help="Only runs of this task.")
@click.option("--status", help="Only runs with this status.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
@pass_context
def list_runs(obj: Context, task_id: str | None, status: str | None, limit: int) -> None:
    """List runs, newest first."""
    with obj.client() as client:
        page = client.list_runs(task_id=task_id, status=status, limit=limit)
    table = Table("id", "task", "status", "phase", "cost", "created")
    for run in page["items"]:
        cost = ((run.get("usage") or {}).get("total") or {}).get("cost_usd", 0)
        table.add_row(*map(plain, (run["id"], run["task_id"][:8], run["status"], run.get("phase") or "-",
                                   f"${cost:.4f}", str(run.get("created_at", ""))[:19])))
    table.caption = f"{len(page['items'])} of {page['total']}"
    obj.show(page, table)


@runs.command("show")
@click.argument("run_id")
@pass_context
def show_run(obj: Context, run_id: str) -> None:
    """A run's status, phase, plan, result, error and usage."""
    with obj.client() as client:
        run = client.get_run(run_id)
    total = (run.get("usage") or {}).get("total") or {}
    result = run.get("result") or {}
    summary = {
        **{key: run.get(key) for key in ("id", "task_id", "status", "phase", "complexity", "label")},
        "plan": (run.get("plan") or {}).get("summary"),
        "outcome": _outcome(result) if result else None,
        "files": ", ".join([*result.get("files", []), *result.get("tests", [])]) or None,
        "error": run.get("error"),
        "tokens": total.get("total_tokens", 0),
        "cost_usd": total.get("cost_usd", 0),
        "artifacts": ", ".join(artifact["name"] for artifact in run.get("artifacts") or []),
    }
    obj.show(run, _fields(summary, *summary))


@runs.command("watch")
@click.argument("run_id")
@click.option("-y", "--yes", is_flag=True, help="Approve the plan without asking.")
@click.option("--after", type=click.IntRange(min=0), default=0, help="Start after this event seq.")
@pass_context
def watch_run(obj: Context, run_id: str, yes: bool, after: int) -> None:
    """Follow a run live until it ends; asks approve/reject when its plan waits."""
    with obj.client() as client:
        _watch(obj, client, run_id, yes, after)


def _watch(obj: Context, client: ServiceClient, run_id: str, yes: bool, after: int) -> None:
    live = obj.console.is_terminal and not obj.as_json
    status = RunWatcher(client, obj.console, live=live, assume_yes=yes).watch(run_id, after=after)
    result = client.get_run(run_id).get("result") or {}
    click.echo(terminal_text(f"run {run_id} {status}" + (f": {_outcome(result)}" if result else "")))
    if status != "completed":
        raise SystemExit(exit_codes.RUN_NOT_COMPLETED)


@runs.command("approve")
@click.argument("run_id")
@click.option("--comment", help="A note stored with the approval.")
@pass_context
def approve_run(obj: Context, run_id: str, comment: str | None) -> None:
    """Approve a plan that waits (the run goes on to coding)."""
    with obj.client() as client:
        run = client.approve(run_id, comment)
    obj.show(run, f"run {run_id} approved: {run['status']}")


@runs.command("reject")
@click.argument("run_id")
@click.option("--feedback", help="What to change; Mike re-plans with it.")
@click.option("--end", "end_run", is_flag=True, help="End the run as rejected instead of re-planning.")
@pass_context
def reject_run(obj: Context, run_id: str, feedback: str | None, end_run: bool) -> None:
    """Reject a plan: re-plan with feedback, or end the run."""
    if not end_run and not feedback:
        raise click.UsageError("give --feedback to re-plan, or --end to end the run")
    with obj.client() as client:
        run = client.reject(run_id, feedback, replan=not end_run)
    obj.show(run, f"run {run_id} rejected: {run['status']}")


@runs.command("cancel")
@click.argument("run_id")
@pass_context
def cancel_run(obj: Context, run_id: str) -> None:
    """Cancel a run that has not ended (artifacts so far are kept)."""
    with obj.client() as client:
        run = client.cancel(run_id)
    obj.show(run, f"run {run_id} {run['status']}")


@runs.command("logs")
@click.argument("run_id")
@pass_context
def run_logs(obj: Context, run_id: str) -> None:
    """What the team did, as a readable transcript."""
    with obj.client() as client:
        if obj.as_json:
            obj.show(client.json("GET", f"/runs/{run_id}/logs", params={"limit": 1000}))
        else:
            click.echo(terminal_text(client.transcript(run_id)), nl=False)


@runs.command("artifacts")
@click.argument("run_id")
@pass_context
def run_artifacts(obj: Context, run_id: str) -> None:
    """The files a run produced."""
    with obj.client() as client:
        artifacts = client.artifacts(run_id)
    table = Table("name", "media type", "bytes", "sha256")
    for artifact in artifacts:
        table.add_row(*map(plain, (artifact["name"], artifact["media_type"], artifact["size"], artifact["sha256"][:16])))
    obj.show(artifacts, table)


@runs.command("download")
@click.argument("run_id")
@click.option("-o", "--output", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write to (default: ./mgx-run-<first 8 characters of the id>).")
@click.option("--all", "everything", is_flag=True, help="Also the plan, review and sandbox report.")
@pass_context
def download_run(obj: Context, run_id: str, directory: Path | None, everything: bool) -> None:
    """Write the run's code and test files to a directory."""
    directory = directory or Path(f"mgx-run-{run_id[:8]}")
    with obj.client() as client:
        names = [artifact["name"] for artifact in client.artifacts(run_id)]
        wanted = [name for name in names if everything or name not in RESERVED_ARTIFACT_NAMES]
        targets = {name: _inside(directory, name) for name in wanted}
        for name, target in targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(client.artifact(run_id, name))
            click.echo(str(target))
    if not targets:
        click.echo(f"run {run_id} has no files to download yet", err=True)


def _outcome(result: dict[str, Any]) -> str:
    """The run's outcome as a person reads it, saying when the offline demo model wrote it."""
    text = str(result.get("outcome", "?"))
    if result.get("stop_reason"):
        text += f" ({result['stop_reason']})"
    return text + (", written by the offline demo model" if result.get("demo") else "")


def _inside(directory: Path, name: str) -> Path:
    """Where artifact ``name`` goes under ``directory``; a name that would leave it is refused."""
    parts = PurePosixPath(name).parts
    if not parts or PurePosixPath(name).is_absolute() or any(part in {"..", ""} for part in parts) or "\\" in name:
        raise click.ClickException(f"refusing to write artifact {name!r}: not a plain relative path")
    return directory.joinpath(*parts)


def _fields(values: dict[str, Any], *names: str) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    for name in names:
        value = values.get(name)
        text = json.dumps(value) if isinstance(value, dict | list) else ("-" if value is None else str(value))
        table.add_row(name, plain(text))
    return table


def _json_option(text: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object", param_hint=option)
    return value


def main() -> None:
    """The console script: map every outcome to one line and a documented exit status."""
    try:
        status = cli.main(prog_name="mgx", standalone_mode=False)
    except click.UsageError as exc:
        exc.show()
        sys.exit(exit_codes.USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exit_codes.USAGE if exc.exit_code == 2 else exc.exit_code)
    except ServiceError as exc:
        click.echo(terminal_text(f"mgx: {exc}"), err=True)
        sys.exit(exit_codes.SERVICE_ERROR)
    except ServiceUnreachable as exc:
        click.echo(terminal_text(f"mgx: {exc}"), err=True)
        sys.exit(exit_codes.UNREACHABLE)
    except AwaitingApproval as exc:
        click.echo(terminal_text(f"mgx: {exc}"), err=True)
        sys.exit(exit_codes.AWAITING_APPROVAL)
    except (click.Abort, KeyboardInterrupt):
        click.echo("mgx: interrupted", err=True)
        sys.exit(exit_codes.INTERRUPTED)
    sys.exit(status if isinstance(status, int) else exit_codes.OK)
