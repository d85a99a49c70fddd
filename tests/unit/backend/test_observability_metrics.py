"""Metrics plumbing without a server: the multiprocess directory, scrapes without the database,
and how committed events are counted."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from backend.db.types import utcnow
from backend.observability import metrics
from backend.services.events import StreamEvent
from backend.services.run_metrics import RunGauges, RunMetricsRecorder, observe_llm_call


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def event(event_type: str, data: dict) -> StreamEvent:
    return StreamEvent(uuid.uuid4(), uuid.uuid4(), 1, event_type, data, utcnow())


def test_without_a_configured_directory_a_fresh_one_is_made_and_removed() -> None:
    environ: dict[str, str] = {}
    created = metrics.prepare_multiprocess_dir(environ)
    assert created is not None and created.is_dir() and not any(created.iterdir())
    assert environ[metrics.MULTIPROC_DIR_VARIABLE] == str(created)
    metrics.remove_multiprocess_dir(created)
    assert not created.exists()


def test_a_configured_directory_is_emptied_of_old_metric_files(tmp_path: Path) -> None:
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "gauge_livesum_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("not ours")
    environ = {metrics.MULTIPROC_DIR_VARIABLE: str(tmp_path)}

    assert metrics.prepare_multiprocess_dir(environ) is None, "the operator's directory is not ours to remove"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_live_gauges_of_dead_workers_are_dropped_and_their_counters_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead, alive = int(finished.stdout), os.getpid()
    for name in (f"gauge_livesum_{dead}.db", f"counter_{dead}.db", f"gauge_livesum_{alive}.db"):
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(metrics, "MULTIPROCESS", True)
    monkeypatch.setenv(metrics.MULTIPROC_DIR_VARIABLE, str(tmp_path))

    metrics.forget_dead_workers()

    assert sorted(path.name for path in tmp_path.iterdir()) == [f"counter_{dead}.db", f"gauge_livesum_{alive}.db"]


def test_a_scrape_that_cannot_read_the_database_says_so() -> None:
    families = {family.name: family for family in RunGauges(database_up=False).families()}
    assert set(families) == {"mgx_database_up", "mgx_build_info"}
    assert families["mgx_database_up"].samples[0].value == 0


def test_run_gauges_list_every_status() -> None:
    families = {family.name: family for family in RunGauges(by_status={"queued": 2, "running": 1}).families()}
    by_status = {item.labels["status"]: item.value for item in families["mgx_runs"].samples}
    assert by_status["queued"] == 2 and by_status["completed"] == 0 and len(by_status) == 9
    assert families["mgx_runner_running_runs"].samples[0].value == 1
    assert families["mgx_runner_oldest_queued_age_seconds"].samples[0].value == 0


def test_a_cache_hit_counts_a_lookup_but_no_call() -> None:
    model = f"model-{uuid.uuid4().hex[:6]}"
    observe_llm_call("alex", {"model": model, "cache": "hit"})
    call = {"model": model, "cache": "miss", "prompt_tokens": 10, "completion_tokens": 4, "cost_usd": 0.5}
    observe_llm_call("alex", call)
    assert sample("mgx_llm_calls_total", model=model, role="alex") == 1
    assert sample("mgx_llm_tokens_total", model=model, role="alex", kind="prompt") == 10
    assert sample("mgx_llm_tokens_total", model=model, role="alex", kind="completion") == 4
    assert sample("mgx_llm_cost_usd_total", model=model, role="alex") == 0.5


async def test_a_malformed_event_is_skipped_and_the_rest_counted(caplog: pytest.LogCaptureFixture) -> None:
    phase = f"phase-{uuid.uuid4().hex[:6]}"
    recorder = RunMetricsRecorder(session_factory=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, "backend.metrics"):
        recorder.observe(
            [
                event("run.phase", {"phase": phase, "state": "finished"}),  # no seconds
                event("run.phase", {"phase": phase, "state": "finished", "seconds": 1.5}),
                event("run.phase", {"phase": phase, "state": "started"}),
            ]
        )
    assert sample("mgx_run_phase_duration_seconds_count", phase=phase) == 1
    assert sample("mgx_run_phase_duration_seconds_sum", phase=phase) == 1.5
    assert "malformed run.phase" in caplog.text


async def test_a_run_created_here_is_timed_from_its_creation_event_without_reading_the_database() -> None:
    # No session factory: a read back would fail and leave no observation.
    recorder = RunMetricsRecorder(session_factory=None)  # type: ignore[arg-type]
    run_id, task_id, created = uuid.uuid4(), uuid.uuid4(), utcnow()
    before = sample("mgx_run_duration_seconds_sum", status="completed")
    count = sample("mgx_run_duration_seconds_count", status="completed")
    recorder.observe([StreamEvent(run_id, task_id, 1, "run.created", {"number": 1}, created)])
    ended = StreamEvent(
        run_id, task_id, 9, "run.completed", {"status": "completed"}, created + timedelta(seconds=2.5)
    )
    recorder.observe([ended])
    assert not recorder._pending  # nothing scheduled to read
    assert sample("mgx_run_duration_seconds_count", status="completed") == count + 1
    assert sample("mgx_run_duration_seconds_sum", status="completed") == pytest.approx(before + 2.5)
