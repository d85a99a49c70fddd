"""``mgx runs watch`` against a real server: every event once, in order, across a dropped stream."""

from __future__ import annotations

import re

import httpx

from tests.e2e.conftest import ApiServer
from tests.e2e.mgx_cli.conftest import StreamCuttingProxy, new_run, new_task, run_cli

EVENT_LINE = re.compile(r"^#(\d+) ([a-z_.]+): ", re.MULTILINE)


def stored_seqs(api: httpx.Client, run_id: str) -> list[int]:
    return [event["seq"] for event in api.get(f"/runs/{run_id}/logs", params={"limit": 1000}).json()["items"]]


def test_watch_resumes_after_a_cut_stream_without_losing_or_repeating_an_event(
    cli_server: ApiServer, api: httpx.Client
) -> None:
    task_id = new_task(api, "fizzbuzz up to n", auto_approve_plan=True)
    # 1500 bytes: a few events into the live stream (the run is still planning), mid-event.
    proxy = StreamCuttingProxy(cli_server.port, cut_after_bytes=1500)
    try:
        result = run_cli(proxy.base_url, "runs", "start", task_id, "--watch")
    finally:
        proxy.close()

    assert result.returncode == 0, result.stdout + result.stderr
    run_id = re.match(r"run (\S+) started", result.stdout)[1]
    seen = [int(seq) for seq, _ in EVENT_LINE.findall(result.stdout)]
    assert seen == stored_seqs(api, run_id)  # each stored event once, in order
    assert seen == list(range(1, len(seen) + 1))
    assert EVENT_LINE.findall(result.stdout)[-1][1] == "run.completed"
    heads = proxy.event_stream_heads()
    assert len(heads) >= 2, "the stream was never cut"
    resumed_from = int(re.search(r"last-event-id: (\d+)", heads[1], re.IGNORECASE)[1])
    assert 0 < resumed_from < len(seen)
    assert f"resuming after event {resumed_from}" in result.stderr
    assert result.stdout.rstrip().splitlines()[-1].startswith(f"run {run_id} completed: approved")


def test_watch_of_a_run_waiting_for_approval_without_input_exits_5(cli_server: ApiServer, api: httpx.Client) -> None:
    run_id = new_run(api, new_task(api, "slugify titles"))

    result = run_cli(cli_server.base_url, "runs", "watch", run_id, stdin="")

    assert result.returncode == 5, result.stdout + result.stderr
    assert f"mgx runs approve {run_id}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert api.get(f"/runs/{run_id}").json()["status"] == "awaiting_approval"
    api.post(f"/runs/{run_id}/cancel")


def test_service_errors_print_title_and_detail_in_one_line_and_exit_3(cli_server: ApiServer) -> None:
    result = run_cli(cli_server.base_url, "runs", "show", "00000000-0000-0000-0000-000000000000")

    assert result.returncode == 3
    assert result.stderr.startswith("mgx: 404 Not Found: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_service_exits_4(cli_server: ApiServer) -> None:
    result = run_cli("http://127.0.0.1:9", "tasks", "list")

    assert result.returncode == 4
    assert "cannot reach the service at http://127.0.0.1:9" in result.stderr


def test_text_from_the_service_reaches_the_terminal_without_escapes_or_markup(
    cli_server: ApiServer, api: httpx.Client
) -> None:
    """A task's description is anyone's text (and a plan, a reply, a test's output, the model's):
    printed raw, an escape sequence in it would drive the terminal and rich markup would render."""
    description = "see \x1b[2J\x1b]0;owned\x07 and [link=https://evil.example]this[/link]"
    task = api.post("/tasks/", json={"title": "escapes", "description": description})
    assert task.status_code == 201, task.text

    shown = run_cli(cli_server.base_url, "tasks", "show", task.json()["id"])

    assert shown.returncode == 0, shown.stderr
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "[link=https://evil.example]this[/link]" in shown.stdout
