"""The web console in headless Chromium, against one API process with API keys and the fake LLM
server: a task created in the console runs live to completion, a rejected plan is re-planned, a
revision round shows its diff, a run is cancelled, one key does not see another's runs, and the
event stream survives a cut connection. Every page loads nothing from another origin and logs no
error; screenshots of the approval view and the run page are saved."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from mgx_agent.testing.fake_llm import FakeLLMServer, FakeRequest, demo_responder
from tests.e2e.browsers import RecordedPage, browser, recorded  # noqa: F401 (fixtures)
from tests.e2e.conftest import ApiServer, service_env
from tests.e2e.cutting_proxy import CuttingProxy

pytestmark = pytest.mark.slow

ALICE_KEY, BOB_KEY = "alice-console-key-4b1d", "bob-console-key-9e22"
# Tasks whose description says this get one revision round from the fake LLM server.
REVISION_MARKER = "(one revision round please)"
REVIEW_NOTE = "Name the sequence's rules in the module docstring"
REVISED_LINE = '"""FizzBuzz: multiples of 3 are Fizz, of 5 Buzz, of both FizzBuzz."""'
MARKUP_TITLE = '<img src=x onerror="window.injected=1">fizzbuzz'
# Where the screenshots go: MGX_SCREENSHOT_DIR if set (docs/console-run.png comes from there).
SCREENSHOT_ENV = "MGX_SCREENSHOT_DIR"


class RevisionScript:
    """Fake LLM behaviour for marked tasks: Charlie asks for a change in the first review, and
    Alex's second version of the code makes it. Everything else is the demo model's answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[tuple[str | None, str | None], int] = {}

    def __call__(self, request: FakeRequest) -> str | None:
        if REVISION_MARKER not in request.prompt_text:
            return None
        with self._lock:
            key = (request.run_label, request.action)
            self._calls[key] = count = self._calls.get(key, 0) + 1
        if request.action == "ReviewCode" and count == 1:
            return f"VERDICT: CHANGES_REQUIRED\n- {REVIEW_NOTE}"
        if request.action == "WriteCode" and count == 2:
            return demo_responder(request).replace('"""FizzBuzz."""', REVISED_LINE)
        return None


class Console:
    """The API (through a proxy that can cut connections) and helpers for its console."""

    def __init__(self, server: ApiServer, proxy: CuttingProxy, screenshots: Path) -> None:
        self.server = server
        self.proxy = proxy
        self.base_url = proxy.base_url
        self.screenshots = screenshots

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, headers={"X-API-Key": key}, timeout=10)

    def create_run(self, key: str, title: str, description: str = "write fizzbuzz(n)", **config: object) -> dict:
        with self.api(key) as client:
            task = client.post("/tasks/", json={"title": title, "description": description, "config": config})
            run = client.post("/runs/", json={"task_id": task.json()["id"]})
            assert run.status_code == 201, run.text
            return run.json()

    def logged_seqs(self, key: str, run_id: str) -> list[int]:
        with self.api(key) as client:
            items = client.get(f"/runs/{run_id}/logs", params={"limit": 1000}).json()["items"]
        return [item["seq"] for item in items]

    def sign_in(self, page: Page, key: str, path: str = "#/runs") -> None:
        page.goto(f"{self.base_url}/console/{path}")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_test_id("signed-in").wait_for()

    def screenshot(self, page: Page, name: str, *, full_page: bool = True) -> Path:
        path = self.screenshots / name
        page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    workdir = tmp_path_factory.mktemp("console")
    screenshots = Path(os.environ.get(SCREENSHOT_ENV) or workdir / "screenshots")
    screenshots.mkdir(parents=True, exist_ok=True)
    with FakeLLMServer() as fake_llm:
        fake_llm.set_responder(RevisionScript())
        env = service_env(
            f"sqlite:///{workdir / 'mgx.db'}",
            fake_llm.base_url,
            LOG_LEVEL="WARNING",
            API_KEYS=f"alice:{ALICE_KEY},bob:{BOB_KEY}",
            RUNNER_WORKERS=2,
            RUNNER_POLL_SECONDS=0.2,
            RUNNER_HEARTBEAT_SECONDS=0.5,
            RUNNER_SHUTDOWN_GRACE_SECONDS=0.5,
        )
        server = ApiServer(env, workdir, name="console-api").start()
        try:
            with CuttingProxy(server.port) as proxy:
                yield Console(server, proxy, screenshots)
        finally:
            server.kill()  # nothing here needs a graceful stop, and it takes seconds


def assert_clean(recorded: RecordedPage, console: Console, allowed_errors: tuple[str, ...] = ()) -> None:
    assert recorded.off_host(console.base_url) == []
    unexpected = [error for error in recorded.errors if not any(allowed in error for allowed in allowed_errors)]
    assert unexpected == []


def shown_seqs(page: Page) -> list[int]:
    items = page.locator("#timeline li[data-seq]")
    return [int(seq) for seq in items.evaluate_all("items => items.map((item) => item.dataset.seq)")]


def wait_for_stream_to_reach(page: Page, seq: int) -> None:
    """The status and buttons can come from a refresh of the run before the stream has delivered
    the events stored with that change; a comparison with the log waits for the stream."""
    expect(page.locator("#timeline")).to_have_attribute("data-last-seq", str(seq))


def wait_for_status(page: Page, status: str) -> None:
    page.locator(f"#run-status [data-status='{status}']").wait_for()


def test_a_task_created_in_the_console_runs_live_through_approval_to_completion(
    console: Console, recorded: RecordedPage
) -> None:
    page = recorded.page
    page.set_viewport_size({"width": 1280, "height": 900})
    console.sign_in(page, ALICE_KEY)
    expect(page.get_by_test_id("signed-in")).to_have_text("Signed in as alice")
    page.get_by_role("link", name="New task").first.click()
    page.get_by_label("Title").fill("FizzBuzz")
    page.get_by_label("What should the team build?").fill("write fizzbuzz(n) returning the sequence for 1..n")
    page.get_by_label("Budget per run (USD)").fill("2.50")
    page.get_by_label("Alex (codes)").fill("gpt-4o-mini")
    page.get_by_label("Stream live tokens while models write").check()
    page.get_by_role("button", name="Create and start a run").click()

    # The plan arrives over the stream and the run waits for approval.
    page.get_by_role("button", name="Approve plan").wait_for()
    expect(page.get_by_role("tab", name="Plan")).to_have_attribute("aria-selected", "true")
    plan = page.get_by_test_id("plan")
    assert plan.locator(".checklist li").count() >= 2
    assert "Acceptance criteria" in plan.inner_text()
    assert "after that the run expires" in page.locator("#approval-expiry").inner_text()
    console.screenshot(page, "console-approval.png")

    page.get_by_label("Comment (optional)").fill("looks right")
    page.get_by_role("button", name="Approve plan").click()
    wait_for_status(page, "completed")
    state = page.locator("#stream-state")

    # Live token previews came over the stream while the team wrote (deltas are not stored).
    assert int(state.get_attribute("data-deltas") or 0) > 0
    page.get_by_role("tab", name="Timeline").click()
    timeline = page.locator("#timeline")
    run_id = page.url.rsplit("/", 1)[-1]
    logged = console.logged_seqs(ALICE_KEY, run_id)
    wait_for_stream_to_reach(page, logged[-1])
    assert shown_seqs(page) == logged
    for role, action in [("Mike", "DraftPlan"), ("Alex", "WriteCode"), ("Bob", "WriteTest"), ("Charlie", "ReviewCode")]:
        message = timeline.locator(".event-message").filter(has_text=action)
        assert role in message.first.inner_text() and "tokens" in message.first.inner_text()
    assert "Plan approved: looks right" in timeline.inner_text()
    console.screenshot(page, "console-run.png", full_page=False)  # docs/console-run.png

    page.get_by_role("tab", name="Files").click()
    page.locator("pre.code .hljs-keyword").first.wait_for()  # highlighted Python
    assert "def fizzbuzz" in page.locator("pre.code").inner_text()
    page.locator("button.file", has_text="test_fizzbuzz.py").click()
    page.locator("pre.code", has_text="def test_").wait_for()
    page.get_by_role("tab", name="Tests").click()
    assert page.locator("section.sandbox .badge").inner_text() != ""
    page.get_by_role("tab", name="Review").click()
    assert page.locator(".reviews li[data-verdict='APPROVED']").count() == 1
    page.get_by_role("tab", name="Usage").click()
    usage = page.locator("#usage-table")
    assert {"Mike", "Alex", "Bob", "Charlie", "Total"} <= set(usage.locator("th[scope='row']").all_inner_texts())
    assert "Budget $2.50, left $" in page.get_by_test_id("budget").inner_text()

    with page.expect_download() as download:
        page.get_by_role("button", name="Download all files").click()
    assert download.value.suggested_filename.endswith(".zip")
    with page.expect_download() as transcript:
        page.get_by_role("button", name="Transcript").click()
    assert "run.completed" in Path(transcript.value.path()).read_text()
    page.get_by_role("tab", name="Files").click()
    with page.expect_download() as raw:  # a raw link, fetched with the key
        page.get_by_role("link", name="raw").click()
    assert raw.value.suggested_filename == "test_fizzbuzz.py"  # the file chosen before
    assert_clean(recorded, console)


def test_reject_with_feedback_replans_across_a_dropped_connection_then_cancel_ends_the_run(console: Console, recorded: RecordedPage) -> None:
    # The title is markup that would run a script if it were ever parsed as HTML.
    run = console.create_run(ALICE_KEY, MARKUP_TITLE)
    page = recorded.page
    console.sign_in(page, ALICE_KEY, f"#/runs/{run['id']}")
    page.get_by_role("button", name="Reject plan").wait_for()
    expect(page.locator("#run-title")).to_contain_text(MARKUP_TITLE)
    assert page.locator("#run-title img").count() == 0 and page.evaluate("window.injected") is None

    # The network drops: the console says so, and Mike re-plans while it is cut off.
    state = page.locator("#stream-state")
    expect(state).to_have_attribute("data-state", "live")
    console.proxy.cut()
    expect(state).to_have_attribute("data-state", "reconnecting")
    expect(state).to_have_text("Reconnecting…")
    page.get_by_label("What should change?").fill("Also handle n = 0")
    page.get_by_role("button", name="Reject plan").click()

    page.get_by_test_id("plan").filter(has_text="Revised after feedback: Also handle n = 0").wait_for()
    page.get_by_role("button", name="Approve plan").wait_for()
    assert "Version 2 of the plan" in page.get_by_test_id("plan").inner_text()
    assert int(state.get_attribute("data-connections") or 0) >= 2
    page.get_by_role("tab", name="Timeline").click()
    assert "Plan rejected: Also handle n = 0 (re-planning)" in page.locator("#timeline").inner_text()
    # Resumed with Last-Event-ID: every stored event shown once, in order, none lost in the drop.
    logged = console.logged_seqs(ALICE_KEY, run["id"])
    wait_for_stream_to_reach(page, logged[-1])
    assert shown_seqs(page) == logged
    assert page.locator("#timeline").get_attribute("data-duplicates") == "0"
    page.get_by_role("button", name="Cancel run").click()
    wait_for_status(page, "cancelled")
    page.locator("#timeline li[data-type='run.cancelled']").wait_for()
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    expect(page.locator("#approval")).to_be_hidden()
    expect(page.locator("#stream-state")).to_have_attribute("data-state", "ended")
    # Chromium reports the stream cut mid-response as a failed load; nothing else is an error.
    assert_clean(recorded, console, allowed_errors=("net::ERR_INCOMPLETE_CHUNKED_ENCODING",))


def test_a_revision_round_shows_what_the_reviewer_asked_next_to_the_diff(
    console: Console, recorded: RecordedPage
) -> None:
    run = console.create_run(ALICE_KEY, "fizzbuzz revised", f"write fizzbuzz(n) {REVISION_MARKER}", auto_approve_plan=True)
    page = recorded.page
    page.set_viewport_size({"width": 390, "height": 844})  # long diff lines scroll in their box on a phone
    console.sign_in(page, ALICE_KEY, f"#/runs/{run['id']}")
    wait_for_status(page, "completed")
    page.get_by_role("tab", name="Revisions").click()
    revision = page.locator("section.revision[data-round='1']")
    assert REVIEW_NOTE in revision.locator(".asked").inner_text()
    code_diff = revision.locator("figure.diff[data-file='fizzbuzz.py']")
    assert code_diff.get_attribute("data-state") == "changed"
    assert code_diff.locator(".diff-del").inner_text().endswith('"""FizzBuzz."""')
    assert code_diff.locator(".diff-add").inner_text().endswith(REVISED_LINE)
    # Only Alex revised (the review was about the code): the tests' side says so.
    assert "The tests did not change in this round." in revision.locator(".changed").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("tab", name="Revisions").press("ArrowRight")  # the tabs work from the keyboard
    expect(page.get_by_role("tab", name="Tests")).to_be_focused()
    expect(page.get_by_role("tab", name="Tests")).to_have_attribute("aria-selected", "true")
    page.get_by_role("tab", name="Review").click()
    verdicts = page.locator(".reviews > li").evaluate_all("items => items.map((i) => i.dataset.verdict)")
    assert verdicts == ["CHANGES_REQUIRED", "APPROVED"]
    assert_clean(recorded, console)


def test_one_key_does_not_see_another_keys_runs_and_manages_its_own_tasks(console: Console, recorded: RecordedPage) -> None:
    alices = console.create_run(ALICE_KEY, "alice's private fizzbuzz")
    page = recorded.page
    page.goto(f"{console.base_url}/console/")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That API key is not valid").wait_for()

    page.get_by_label("API key").fill(BOB_KEY)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_test_id("signed-in").wait_for()
    page.locator("#runs-table tbody tr").first.wait_for()
    assert page.locator(f"#runs-table tr[data-run-id='{alices['id']}']").count() == 0
    assert "alice's" not in page.locator("#runs-table").inner_text()
    bobs = console.create_run(BOB_KEY, "bob's fizzbuzz")
    page.locator(f"#runs-table tr[data-run-id='{bobs['id']}']").wait_for()  # appears without a reload
    cancelled = console.create_run(BOB_KEY, "bob's cancelled fizzbuzz")
    with console.api(BOB_KEY) as client:
        assert client.post(f"/runs/{cancelled['id']}/cancel").status_code == 200
    page.locator(f"#runs-table tr[data-run-id='{cancelled['id']}']").wait_for()
    page.get_by_label("Status").select_option("awaiting_approval")  # the filter
    page.locator(f"#runs-table tr[data-run-id='{bobs['id']}'][data-status='awaiting_approval']").wait_for()
    expect(page.locator(f"#runs-table tr[data-run-id='{cancelled['id']}']")).to_have_count(0)
    page.get_by_role("link", name="Tasks").click()
    page.locator("#tasks-table tbody tr").first.wait_for()
    assert "alice's" not in page.locator("#tasks-table").inner_text()

    # Bob's own tasks: searched, edited and deleted, on a phone.
    with console.api(BOB_KEY) as client:
        for title in ("bob's alpha", "bob's beta"):
            assert client.post("/tasks/", json={"title": title}).status_code == 201
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_label("Search").fill("beta")
    rows = page.locator("#tasks-table tbody tr[data-task-id]")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("bob's beta")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    rows.get_by_role("link", name="Edit").click()
    title = page.get_by_label("Title")
    expect(title).to_have_value("bob's beta")
    title.fill("bob's gamma")
    page.get_by_label("Max revision rounds").fill("2")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_label("Search").fill("gamma")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("bob's gamma")
    task_id = rows.get_attribute("data-task-id")
    rows.get_by_role("button", name="Delete").click()
    rows.get_by_role("button", name="Confirm delete").click()
    page.get_by_text("No tasks match the search").wait_for()
    with console.api(BOB_KEY) as client:
        assert client.get(f"/tasks/{task_id}").status_code == 404

    page.goto(f"{console.base_url}/console/#/runs/{alices['id']}")
    assert "does not exist" in page.get_by_test_id("error-text").inner_text()
    # Chromium logs each refused request (the wrong key's 401, Bob's 404) as a console error.
    assert_clean(recorded, console, allowed_errors=("status of 401", "status of 404"))
