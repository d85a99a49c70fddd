"""RunUsage and RunTimings: per-role accounting, totals and JSON round trips."""

from __future__ import annotations

import json
import time

import pytest

from mgx_agent.llm import TokenUsage
from mgx_agent.metrics import RoleUsage, RunTimings, RunUsage


def test_total_sums_every_role() -> None:
    usage = RunUsage()
    usage.record_call("mike", TokenUsage(100, 20), 0.001, True)
    usage.record_call("alex", TokenUsage(300, 200), 0.004, True)
    usage.record_cache_hit("alex")
    usage.record_cache_miss("mike")
    total = usage.total
    assert (total.prompt_tokens, total.completion_tokens, total.total_tokens) == (400, 220, 620)
    assert total.cost_usd == pytest.approx(0.005)
    assert (total.llm_calls, total.cache_hits, total.cache_misses) == (2, 1, 1)


def test_one_unknown_price_makes_the_total_cost_unknown() -> None:
    usage = RunUsage()
    usage.record_call("mike", TokenUsage(1, 1), 0.5, True)
    usage.record_call("bob", TokenUsage(1, 1), 0.0, False)
    data = usage.to_dict()
    assert data["roles"]["mike"]["cost_known"] is True
    assert data["roles"]["bob"]["cost_known"] is False
    assert data["total"]["cost_known"] is False


def test_usage_dict_is_json_ready_and_round_trips() -> None:
    usage = RunUsage()
    usage.record_call("charlie", TokenUsage(10, 5), 0.000123, True)
    usage.record_cache_hit("charlie")
    data = json.loads(json.dumps(usage.to_dict()))
    assert set(data) == {"total", "roles"}
    assert data["roles"]["charlie"]["total_tokens"] == 15
    restored = RunUsage.from_dict(data)
    assert restored.to_dict() == usage.to_dict()
    restored.record_call("charlie", TokenUsage(1, 1), 0.0, True)
    assert restored.roles["charlie"].llm_calls == 2


def test_empty_usage_has_zero_totals() -> None:
    assert RunUsage().to_dict() == {"total": RoleUsage().to_dict(), "roles": {}}
    assert RunUsage.from_dict(None).roles == {}


def test_phase_records_elapsed_seconds_and_accumulates() -> None:
    timings = RunTimings()
    with timings.phase("coding") as timer:
        time.sleep(0.02)
    with timings.phase("coding"):
        time.sleep(0.01)
    assert timer.seconds >= 0.02
    assert timings.seconds("coding") >= 0.03
    assert timings.seconds("coding") > timer.seconds
    assert list(timings.to_dict()) == ["coding"]


def test_phase_is_recorded_when_it_fails() -> None:
    timings = RunTimings()
    with pytest.raises(RuntimeError):
        with timings.phase("testing"):
            raise RuntimeError("sandbox broke")
    assert "testing" in timings.to_dict()


def test_timings_round_trip_and_total() -> None:
    timings = RunTimings.from_dict({"planning": 1.5, "coding": 2.25})
    timings.record("reviewing", 0.25)
    assert timings.total_seconds == pytest.approx(4.0)
    assert RunTimings.from_dict(timings.to_dict()).to_dict() == timings.to_dict()
