"""The spend of an execution that lost its lease, so the run's record keeps it.

A run resumes from its last checkpoint, and so do its usage counts: an LLM call that an
execution made (and the provider billed) after that checkpoint, before it crashed or stalled,
would vanish when the next execution overwrites ``usage``. The reaper, which takes the lease
away, adds that difference to ``runs.abandoned_usage`` first.
"""

from __future__ import annotations

from typing import Any

from mgx_agent.metrics import RoleUsage, RunUsage

_COUNTS = ("prompt_tokens", "completion_tokens", "llm_calls", "cache_hits", "cache_misses", "estimated_calls")


def spent_after_checkpoint(usage: dict[str, Any] | None, checkpoint: dict[str, Any] | None) -> RunUsage:
    """What ``usage`` (as last recorded) counts beyond the usage saved in ``checkpoint``, per role."""
    recorded = RunUsage.from_dict(usage)
    saved = RunUsage.from_dict((checkpoint or {}).get("usage"))
    lost = RunUsage()
    for name, role in recorded.roles.items():
        before = saved.roles.get(name, RoleUsage())
        counts = {key: max(0, getattr(role, key) - getattr(before, key)) for key in _COUNTS}
        cost = max(0.0, role.cost_usd - before.cost_usd)
        if any(counts.values()) or cost:
            lost.roles[name] = RoleUsage(cost_usd=cost, cost_known=role.cost_known, **counts)
    return lost


def add_abandoned(abandoned: dict[str, Any] | None, lost: RunUsage) -> dict[str, Any]:
    """``abandoned`` (a ``RunUsage`` dict, or None) plus ``lost``."""
    total = RunUsage.from_dict(abandoned)
    for name, role in lost.roles.items():
        total.role(name).add(role)
    return total.to_dict()
